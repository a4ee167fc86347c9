#!/usr/bin/env bash
# Real mail servers on loopback for mailgate's integration tests (Debian 12).
#
#   scripts/test-env.sh install            install the Debian packages (idempotent, fast if present)
#   scripts/test-env.sh start DIR IDP_PORT start Postfix + Dovecot with everything under DIR
#   scripts/test-env.sh stop DIR           stop them (idempotent)
#
# Shape: client -> Postfix smtpd (relay / submission ports, SASL via Dovecot auth)
#        -> Dovecot LMTP -> Maildir under DIR/mail/<domain>/<user>/Maildir; Dovecot IMAP reads it.
# XOAUTH2/OAUTHBEARER tokens are checked by Dovecot against an OAuth2 introspection endpoint on
# 127.0.0.1:IDP_PORT that the tests provide: /introspect/imap for IMAP logins, /introspect/smtp for
# SMTP logins.
#
# `start` writes DIR/env (KEY=VALUE lines) for the tests. Ports are MG_TEST_PORT_BASE (default 24000)
# plus fixed offsets, see set_ports. Recipe and gotchas: /work/shared/docs/test-servers.md.
set -euo pipefail

readonly PACKAGES=(dovecot-core dovecot-imapd dovecot-lmtpd dovecot-submissiond postfix openssl)
readonly DOMAIN=example.test
readonly USER_SENDER=sender@example.test PASS_SENDER=sender-pass-1
readonly USER_READER=reader@example.test PASS_READER=reader-pass-1
readonly DEADLINE_SECS=20

log() { echo "test-env: $*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
    cat >&2 <<'EOF'
usage: test-env.sh install
       test-env.sh start DIR IDP_PORT
       test-env.sh stop DIR
EOF
    exit 2
}

# ---------------------------------------------------------------------------------------------
# install

cmd_install() {
    local missing=() pkg status
    for pkg in "${PACKAGES[@]}"; do
        status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
        [[ $status == installed ]] || missing+=("$pkg")
    done
    ((${#missing[@]} == 0)) && return 0

    log "installing ${missing[*]}"
    echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections
    if ! compgen -G '/var/lib/apt/lists/*_Packages' >/dev/null; then
        apt-get update -qq
    fi
    # Debian's maintainer scripts would start the system daemons on ports 25/143/993; ours use
    # their own ports, so this is harmless, but stop them afterwards to keep the machine quiet.
    if ! apt_install "${missing[@]}"; then
        log "install failed; running apt-get update and retrying"
        apt-get update -qq
        apt_install "${missing[@]}"
    fi
    postfix stop >/dev/null 2>&1 || true
    doveadm stop >/dev/null 2>&1 || true
}

apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

# ---------------------------------------------------------------------------------------------
# helpers

# Sets the port variables from MG_TEST_PORT_BASE.
set_ports() {
    local base=${MG_TEST_PORT_BASE:-24000}
    [[ $base =~ ^[0-9]+$ ]] && ((base > 1024 && base < 65500)) ||
        die "MG_TEST_PORT_BASE must be a number between 1025 and 65499, got '$base'"
    SMTP_RELAY_PORT=$((base + 0))     # Postfix smtpd, no auth
    SMTP_STARTTLS_PORT=$((base + 1))  # Postfix submission, STARTTLS, AUTH only after TLS
    SMTP_TLS_PORT=$((base + 2))       # Postfix submission, implicit TLS
    SMTP_PLAIN_PORT=$((base + 3))     # Postfix submission, no TLS, AUTH in clear
    IMAP_STARTTLS_PORT=$((base + 4))  # Dovecot IMAP (STARTTLS offered)
    IMAP_TLS_PORT=$((base + 5))       # Dovecot IMAPS
    LMTP_PORT=$((base + 6))           # Dovecot LMTP (Postfix delivers here; tests may inject)
    AUTH_PORT=$((base + 7))           # Dovecot auth (client protocol) for Postfix SASL
    IMAP_EXPIRED_PORT=$((base + 8))   # Dovecot IMAPS with an expired certificate
    IMAP_UNTRUSTED_PORT=$((base + 9)) # Dovecot IMAPS with a certificate from an unknown CA
    # For benchmarks: Dovecot submission (STARTTLS, real XOAUTH2) relaying every mail at once to
    # a sink on SINK_PORT, which the benchmark starts (Postfix's smtp-sink). Postfix also routes
    # the domain sink.test there (the queueing MTA a user would pick instead).
    SUBMISSION_SINK_PORT=$((base + 10))
    SINK_PORT=$((base + 11))
    ALL_PORTS=("$SMTP_RELAY_PORT" "$SMTP_STARTTLS_PORT" "$SMTP_TLS_PORT" "$SMTP_PLAIN_PORT"
        "$IMAP_STARTTLS_PORT" "$IMAP_TLS_PORT" "$LMTP_PORT" "$AUTH_PORT"
        "$IMAP_EXPIRED_PORT" "$IMAP_UNTRUSTED_PORT" "$SUBMISSION_SINK_PORT")
}

# Prints the ports among "$@" that have a listening TCP socket (any address). Uses ss rather than
# test connections, which the servers would log as errors (e.g. SSL_accept on TLS ports).
listening() {
    local wanted=" $* "
    ss -Hltn | awk '{ sub(/.*:/, "", $4); print $4 }' | sort -u | while read -r p; do
        [[ $wanted == *" $p "* ]] && echo "$p"
    done
    return 0
}

# True when process $1 exists and is not a zombie (PID 1 here may reap exited daemons late).
pid_alive() {
    local state
    [[ -n $1 ]] || return 1
    state=$(sed -n 's/^.*) \(.\).*/\1/p' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ -n $state && $state != Z ]]
}

# Makes $1 absolute and canonical (it need not exist yet).
abs_path() {
    realpath -m -- "$1"
}

# Postfix (user postfix) and Dovecot (users dovecot, dovenull) daemons open files under DIR after
# dropping root, so every directory above DIR must be searchable by "other".
check_traversable() {
    local d=$1
    while [[ $d != / ]]; do
        d=$(dirname "$d")
        if [[ $(stat -c %A "$d") != ?????????[xt] ]]; then
            die "$d is not searchable by other users (postfix/dovecot daemons run as their own" \
                "users and must reach files under the run dir); use another DIR or chmod o+x $d"
        fi
    done
}

# ---------------------------------------------------------------------------------------------
# TLS material

# A leaf certificate for localhost/127.0.0.1 signed by CA $1 (key $2) with openssl ca, so that the
# validity period can be set with -startdate/-enddate (OpenSSL 3.0 x509 has no -not_before).
# Args: CA_CERT CA_KEY OUT_CERT OUT_KEY STARTDATE ENDDATE
sign_leaf() {
    local ca=$1 ca_key=$2 out=$3 out_key=$4 start=$5 end=$6 db=$TLS/ca-db
    rm -rf "$db"
    mkdir -p "$db"
    : >"$db/index.txt"
    openssl rand -hex 16 >"$db/serial"
    cat >"$db/ca.cnf" <<EOF
[ ca ]
default_ca = test_ca
[ test_ca ]
database = $db/index.txt
new_certs_dir = $db
serial = $db/serial
default_md = sha256
policy = policy_any
unique_subject = no
[ policy_any ]
commonName = supplied
[ ext_server ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
EOF
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$out_key" -subj /CN=localhost -out "$db/leaf.csr" 2>>"$TLS/openssl.log"
    openssl ca -batch -notext -config "$db/ca.cnf" -cert "$ca" -keyfile "$ca_key" \
        -extensions ext_server -startdate "$start" -enddate "$end" \
        -in "$db/leaf.csr" -out "$out" 2>>"$TLS/openssl.log"
    rm -rf "$db"
}

# A self-signed CA certificate. Args: OUT_CERT OUT_KEY COMMON_NAME
make_ca() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$2" -out "$1" -days 3650 -subj "/CN=$3" \
        -addext 'basicConstraints=critical,CA:TRUE' \
        -addext 'keyUsage=critical,keyCertSign,cRLSign' 2>>"$TLS/openssl.log"
}

# Generates DIR/tls/* unless a complete, still valid set exists (keeps restarts fast and lets a
# test keep trusting the same CA across restarts).
make_tls() {
    local f fmt='+%Y%m%d%H%M%SZ'
    mkdir -p "$TLS"
    if [[ -f $TLS/complete ]] && openssl x509 -checkend 86400 -noout -in "$TLS/server.pem" >/dev/null 2>&1; then
        return 0
    fi
    rm -f "$TLS"/*.pem "$TLS/complete" "$TLS/openssl.log"
    make_ca "$TLS/ca.pem" "$TLS/ca-key.pem" 'mailgate test CA'
    sign_leaf "$TLS/ca.pem" "$TLS/ca-key.pem" "$TLS/server.pem" "$TLS/server-key.pem" \
        "$(date -u -d '-1 hour' "$fmt")" "$(date -u -d '+825 days' "$fmt")"
    # Expired: valid from 30 days ago until yesterday.
    sign_leaf "$TLS/ca.pem" "$TLS/ca-key.pem" "$TLS/expired.pem" "$TLS/expired-key.pem" \
        "$(date -u -d '-30 days' "$fmt")" "$(date -u -d '-1 day' "$fmt")"
    # Untrusted: a valid localhost certificate from a CA the tests do not know.
    make_ca "$TLS/untrusted-ca.pem" "$TLS/untrusted-ca-key.pem" 'mailgate UNTRUSTED test CA'
    sign_leaf "$TLS/untrusted-ca.pem" "$TLS/untrusted-ca-key.pem" "$TLS/untrusted.pem" \
        "$TLS/untrusted-key.pem" "$(date -u -d '-1 hour' "$fmt")" "$(date -u -d '+825 days' "$fmt")"
    for f in "$TLS"/*-key.pem; do chmod 600 "$f"; done
    touch "$TLS/complete"
}

# ---------------------------------------------------------------------------------------------
# Dovecot

# Dovecot 2.3 cannot pick a certificate per listener (its "local" filter matches the IP only, and
# "-o ssl_cert=<file" on a login service's command line is not read as a file), so the two IMAPS
# listeners with an expired and an untrusted certificate are separate small Dovecot instances that
# share the auth and mail settings (and the Maildirs) of the main one.
readonly DOVECOT_INSTANCES=(dovecot dovecot-expired dovecot-untrusted)

write_dovecot_config() {
    local conf=$DIR/dovecot idp=$1
    mkdir -p "$conf" "$DIR/mail"
    chown mail:mail "$DIR/mail"
    # Passwords for plain/login; the scheme prefix makes the file self-describing.
    printf '%s:{PLAIN}%s\n' "$USER_SENDER" "$PASS_SENDER" "$USER_READER" "$PASS_READER" >"$conf/users"
    local proto
    for proto in imap smtp; do
        cat >"$conf/oauth2-$proto.conf.ext" <<EOF
introspection_mode = post
introspection_url = http://127.0.0.1:$idp/introspect/$proto
username_attribute = username
# Compare only the domain: the token is a tenant-wide app token (IdP says app@example.test).
username_format = %Ld
active_attribute = active
active_value = true
EOF
    done

    cat >"$conf/common.conf" <<EOF
# Generated by scripts/test-env.sh: settings shared by all Dovecot instances of this run dir.
listen = 127.0.0.1
shutdown_clients = yes
ssl = yes
ssl_min_protocol = TLSv1.2

# Mail is stored as the system user "mail" (Dovecot refuses uid 0 outright); tests run as root
# and read the Maildirs directly.
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:~/Maildir
mail_max_userip_connections = 1000

auth_mechanisms = plain login xoauth2 oauthbearer
disable_plaintext_auth = no
auth_failure_delay = 0 secs
auth_cache_size = 0
auth_verbose = yes

passdb {
  driver = passwd-file
  mechanisms = plain login
  args = scheme=PLAIN username_format=%Lu $conf/users
}
$(protocol_passdbs imap imap)
$(protocol_passdbs smtp smtp)
$(protocol_passdbs submission smtp)
# Any address at any domain is deliverable and readable (tests send to fresh addresses).
userdb {
  driver = static
  args = uid=mail gid=mail home=$DIR/mail/%d/%n allow_all_users=yes
}

service anvil {
  # Otherwise every failed login from 127.0.0.1 delays the next ones by 2-15 s.
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
EOF

    cat >"$conf/dovecot.conf" <<EOF
# Generated by scripts/test-env.sh; overwritten on every start.
!include $conf/common.conf
instance_name = $INSTANCE
base_dir = $conf/run
state_dir = $conf/state
log_path = $DIR/dovecot.log
protocols = imap lmtp submission
ssl_cert = <$TLS/server.pem
ssl_key = <$TLS/server-key.pem
submission_relay_host = 127.0.0.1
submission_relay_port = $SINK_PORT
submission_relay_trusted = yes
hostname = localhost

service submission-login {
  service_count = 0
  inet_listener submission {
    address = 127.0.0.1
    port = $SUBMISSION_SINK_PORT
  }
}

service imap-login {
  # One login process serves many connections (the default forks one per connection).
  service_count = 0
  inet_listener imap {
    address = 127.0.0.1
    port = $IMAP_STARTTLS_PORT
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $IMAP_TLS_PORT
    ssl = yes
  }
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $LMTP_PORT
  }
}
service auth {
  inet_listener auth-postfix {
    address = 127.0.0.1
    port = $AUTH_PORT
  }
}
EOF

    write_dovecot_cert_instance expired "$IMAP_EXPIRED_PORT"
    write_dovecot_cert_instance untrusted "$IMAP_UNTRUSTED_PORT"
}

# The passdbs of protocol $1 (imap, submission, or smtp: Postfix's Dovecot SASL client sends
# service=smtp), checking tokens at the IdP's introspection URL for $2 (imap or smtp).
# Protocol-specific passdbs run before the global ones.
protocol_passdbs() {
    cat <<EOF
protocol $1 {
  # Dovecot 2.3.19 holds every failed login until its 0.5 s failure timer ticks, even with
  # auth_failure_delay = 0, unless the request carries the "nodelay" field (and the fields of a
  # passdb that fails are dropped). This passdb matches anything, adds nodelay and leaves the state
  # "failed" (continue-fail), so the passdbs after it still decide alone, and negative tests get
  # their answer at once. It must come before the oauth2 passdb: XOAUTH2 sends its JSON challenge
  # only when the last deciding passdb says "password mismatch".
  passdb {
    driver = static
    args = nopassword=y nodelay=y
    result_success = continue-fail
  }
  # One oauth2 passdb per protocol, so the IdP can tell IMAP from SMTP checks by URL.
  passdb {
    driver = oauth2
    mechanisms = xoauth2 oauthbearer
    args = $DIR/dovecot/oauth2-$2.conf.ext
  }
}
EOF
}

# An IMAPS-only instance serving DIR/tls/NAME.pem. Args: NAME PORT
write_dovecot_cert_instance() {
    local name=$1 port=$2 conf=$DIR/dovecot-$1
    mkdir -p "$conf"
    cat >"$conf/dovecot.conf" <<EOF
# Generated by scripts/test-env.sh; overwritten on every start.
!include $DIR/dovecot/common.conf
instance_name = $INSTANCE-$name
base_dir = $conf/run
state_dir = $conf/state
log_path = $DIR/dovecot-$name.log
protocols = imap
ssl_cert = <$TLS/$name.pem
ssl_key = <$TLS/$name-key.pem

service imap-login {
  service_count = 0
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $port
    ssl = yes
  }
}
EOF
}

# Starts the Dovecot instance whose files are in DIR/$1.
start_dovecot() {
    local conf=$DIR/$1/dovecot.conf log=$DIR/$1.log
    doveconf -c "$conf" -n >/dev/null 2>"$DIR/$1-config.err" ||
        die "invalid Dovecot config $conf: $(cat "$DIR/$1-config.err")"
    rm -f "$DIR/$1-config.err"
    # setsid + redirected stdio: the daemon must not keep our caller's stderr open or share its
    # process group.
    setsid dovecot -c "$conf" </dev/null >>"$log" 2>&1 ||
        { tail -n 30 "$log" >&2; die "dovecot ($1) failed to start"; }
}

# ---------------------------------------------------------------------------------------------
# Postfix

write_postfix_config() {
    local conf=$DIR/postfix
    mkdir -p "$conf"
    cat >"$conf/recipient_access" <<'EOF'
# Test hooks: recipients whose local part starts with reject / tempfail.
/^reject[^@]*@/    550 5.1.1 test reject
/^tempfail[^@]*@/  451 4.3.0 test temporary failure
EOF

    cat >"$conf/main.cf" <<EOF
# Generated by scripts/test-env.sh; overwritten on every start.
compatibility_level = 3.6
queue_directory = $DIR/postfix-queue
data_directory = $DIR/postfix-data
maillog_file = $DIR/postfix.log
maillog_file_prefixes = $DIR
myhostname = mailgate-test.localhost
mydomain = localhost
myorigin = \$myhostname
mydestination =
local_recipient_maps =
relay_domains =
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_banner = \$myhostname ESMTP mailgate test relay
biff = no
append_dot_mydomain = no
# Everything, for every domain, goes to Dovecot LMTP.
default_transport = lmtp:inet:127.0.0.1:$LMTP_PORT
relay_transport = lmtp:inet:127.0.0.1:$LMTP_PORT
# Benchmarks: the domain sink.test goes to the sink on SINK_PORT (started by the benchmark).
transport_maps = inline:{ sink.test=smtp:[127.0.0.1]:$SINK_PORT }
smtp_dns_support_level = disabled
lmtp_dns_support_level = disabled
message_size_limit = 52428800
mailbox_size_limit = 0
# Long enough for real-size (2 KB) XOAUTH2 initial responses sent inline with AUTH.
line_length_limit = 32768
# The default 1s stalls clients whenever the queue manager lags behind.
in_flow_delay = 0
# Retry deferred mail soon (e.g. after Dovecot was restarted), not after the default 5 minutes.
queue_run_delay = 10s
minimal_backoff_time = 10s
maximal_backoff_time = 60s
smtpd_client_connection_count_limit = 0
# No 1 s sleep before error replies (failed AUTH, rejected RCPT): negative tests run fast.
smtpd_error_sleep_time = 0

smtpd_tls_cert_file = $TLS/server.pem
smtpd_tls_key_file = $TLS/server-key.pem
smtpd_tls_security_level = may
smtpd_sasl_type = dovecot
smtpd_sasl_path = inet:127.0.0.1:$AUTH_PORT
smtpd_sasl_auth_enable = no
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = check_recipient_access regexp:$conf/recipient_access
EOF

    # Submission ports: AUTH required; no permit_mynetworks (every client is on 127.0.0.1).
    local sub='-o smtpd_sasl_auth_enable=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject'
    cat >"$conf/master.cf" <<EOF
# Generated by scripts/test-env.sh. chroot is "n" everywhere (the run dir is not a chroot jail).
# service type  private unpriv  chroot  wakeup  maxproc command + args
127.0.0.1:$SMTP_RELAY_PORT inet n - n - - smtpd
  -o syslog_name=postfix/relay
127.0.0.1:$SMTP_STARTTLS_PORT inet n - n - - smtpd
  -o syslog_name=postfix/starttls
  -o smtpd_tls_security_level=may
  -o smtpd_tls_auth_only=yes
  $sub
127.0.0.1:$SMTP_TLS_PORT inet n - n - - smtpd
  -o syslog_name=postfix/tls
  -o smtpd_tls_wrappermode=yes
  -o smtpd_tls_security_level=encrypt
  $sub
127.0.0.1:$SMTP_PLAIN_PORT inet n - n - - smtpd
  -o syslog_name=postfix/plain
  -o smtpd_tls_security_level=none
  -o smtpd_tls_auth_only=no
  $sub
pickup     unix  n  -  n  60    1  pickup
cleanup    unix  n  -  n  -     0  cleanup
qmgr       unix  n  -  n  300   1  qmgr
tlsmgr     unix  -  -  n  1000? 1  tlsmgr
rewrite    unix  -  -  n  -     -  trivial-rewrite
bounce     unix  -  -  n  -     0  bounce
defer      unix  -  -  n  -     0  bounce
trace      unix  -  -  n  -     0  bounce
verify     unix  -  -  n  -     1  verify
flush      unix  n  -  n  1000? 0  flush
proxymap   unix  -  -  n  -     -  proxymap
proxywrite unix  -  -  n  -     1  proxymap
smtp       unix  -  -  n  -     -  smtp
relay      unix  -  -  n  -     -  smtp
showq      unix  n  -  n  -     -  showq
error      unix  -  -  n  -     -  error
retry      unix  -  -  n  -     -  error
discard    unix  -  -  n  -     -  discard
local      unix  -  n  n  -     -  local
virtual    unix  -  n  n  -     -  virtual
lmtp       unix  -  -  n  -     -  lmtp
anvil      unix  -  -  n  -     1  anvil
scache     unix  -  -  n  -     1  scache
postlog    unix-dgram n - n -   1  postlogd
EOF
    # Postfix re-reads a main.cf younger than ~2 s in a loop: backdate it.
    touch -d '-1 min' "$conf/main.cf" "$conf/master.cf"
}

start_postfix() {
    # postfix needs an absolute -c path; "start" creates the missing queue subdirectories
    # (post-install create-missing) but not the queue directory itself.
    mkdir -p "$DIR/postfix-queue"
    setsid postfix -c "$DIR/postfix" start </dev/null >>"$DIR/postfix-start.log" 2>&1 ||
        { tail -n 30 "$DIR/postfix-start.log" "$DIR/postfix.log" >&2 2>/dev/null; die "postfix failed to start"; }
}

# ---------------------------------------------------------------------------------------------
# start / stop

# The PID in the pid file a daemon writes itself: NAME is postfix or a Dovecot instance.
daemon_pid() {
    local f
    case $1 in
    postfix) f=$DIR/postfix-queue/pid/master.pid ;;
    *) f=$DIR/$1/run/master.pid ;;
    esac
    tr -d ' ' 2>/dev/null <"$f" || true
}

# Fills the associative array PIDS (name -> pid) from DIR/pids, falling back to the daemons' own
# pid files (e.g. when a start was interrupted before DIR/pids was written).
read_pids() {
    declare -gA PIDS=()
    local name pid
    if [[ -f $DIR/pids ]]; then
        while read -r name pid; do
            [[ -n $name ]] && PIDS[$name]=$pid
        done <"$DIR/pids"
    fi
    for name in postfix "${DOVECOT_INSTANCES[@]}"; do
        [[ -n ${PIDS[$name]:-} ]] || PIDS[$name]=$(daemon_pid "$name")
    done
}

# Prints the last lines of every log in DIR to stderr.
show_logs() {
    local f
    for f in "$DIR"/*.log; do
        [[ -s $f ]] && { echo "--- tail $f" >&2; tail -n 20 "$f" >&2; }
    done
}

# Waits until every port in ALL_PORTS listens.
wait_ports_open() {
    local deadline=$((SECONDS + DEADLINE_SECS)) up
    while :; do
        up=$(listening "${ALL_PORTS[@]}" | wc -l)
        ((up == ${#ALL_PORTS[@]})) && return 0
        if ((SECONDS >= deadline)); then
            show_logs
            log "not listening after ${DEADLINE_SECS}s: $(comm -23 <(printf '%s\n' "${ALL_PORTS[@]}" | sort) \
                <(listening "${ALL_PORTS[@]}" | sort) | tr '\n' ' ')"
            return 1
        fi
        sleep 0.05
    done
}

# Writes DIR/env: KEY=VALUE lines without quotes, read by the Rust tests (keep the names stable).
write_env() {
    local idp=$1
    cat >"$DIR/env.tmp" <<EOF
MG_TEST_DIR=$DIR
MG_TEST_HOST=127.0.0.1
MG_TEST_CA=$TLS/ca.pem
MG_TLS_DIR=$TLS
MG_SMTP_RELAY_PORT=$SMTP_RELAY_PORT
MG_SMTP_STARTTLS_PORT=$SMTP_STARTTLS_PORT
MG_SMTP_TLS_PORT=$SMTP_TLS_PORT
MG_SMTP_PLAIN_PORT=$SMTP_PLAIN_PORT
MG_IMAP_STARTTLS_PORT=$IMAP_STARTTLS_PORT
MG_IMAP_TLS_PORT=$IMAP_TLS_PORT
MG_LMTP_PORT=$LMTP_PORT
MG_DOVECOT_AUTH_PORT=$AUTH_PORT
MG_IMAP_EXPIRED_PORT=$IMAP_EXPIRED_PORT
MG_IMAP_UNTRUSTED_PORT=$IMAP_UNTRUSTED_PORT
MG_SUBMISSION_SINK_PORT=$SUBMISSION_SINK_PORT
MG_SINK_PORT=$SINK_PORT
MG_IDP_PORT=$idp
MG_IDP_INTROSPECT_IMAP_URL=http://127.0.0.1:$idp/introspect/imap
MG_IDP_INTROSPECT_SMTP_URL=http://127.0.0.1:$idp/introspect/smtp
MG_MAIL_ROOT=$DIR/mail
MG_DOVECOT_CONFIG=$DIR/dovecot/dovecot.conf
MG_POSTFIX_CONFIG=$DIR/postfix
MG_USER_SENDER=$USER_SENDER
MG_PASS_SENDER=$PASS_SENDER
MG_USER_READER=$USER_READER
MG_PASS_READER=$PASS_READER
MG_DOMAIN=$DOMAIN
EOF
    mv "$DIR/env.tmp" "$DIR/env"
}

cmd_start() {
    (($# == 2)) || usage
    DIR=$(abs_path "$1")
    local idp=$2 name busy
    [[ $idp =~ ^[0-9]+$ ]] && ((idp > 0 && idp < 65536)) || die "IDP_PORT must be a port number, got '$idp'"
    set_ports
    TLS=$DIR/tls
    # Names the Dovecot processes (ps) and keeps instances of different run dirs apart.
    INSTANCE="mgtest-$(printf '%s' "$DIR" | cksum | cut -d' ' -f1)"

    mkdir -p "$DIR"
    # Daemons running as postfix/dovecot/dovenull must reach files under DIR.
    chmod 755 "$DIR"
    check_traversable "$DIR"

    stop_dir quiet
    busy=$(listening "${ALL_PORTS[@]}" | tr '\n' ' ')
    [[ -z $busy ]] || die "port(s) ${busy% } already in use on this machine (this run dir needs" \
        "${ALL_PORTS[0]}-${ALL_PORTS[-1]}; set MG_TEST_PORT_BASE to move them)"

    # From here on, a failure must not leave half of the servers running.
    trap 'stop_dir quiet' EXIT
    make_tls
    write_dovecot_config "$idp"
    write_postfix_config
    for name in "${DOVECOT_INSTANCES[@]}"; do start_dovecot "$name"; done
    start_postfix
    for name in postfix "${DOVECOT_INSTANCES[@]}"; do
        printf '%s %s\n' "$name" "$(daemon_pid "$name")"
    done >"$DIR/pids"

    wait_ports_open || die "test servers did not come up (logs: $DIR/*.log)"
    write_env "$idp"
    trap - EXIT
    log "running in $DIR (ports ${ALL_PORTS[0]}-${ALL_PORTS[-1]}); env: $DIR/env"
}

# Stops whatever runs from DIR. Arg "quiet": no message when nothing was running.
stop_dir() {
    local quiet=${1:-} name pid deadline ports=() running=0
    read_pids
    # The ports of the running instance (MG_TEST_PORT_BASE may differ now), except the IdP's;
    # without DIR/env (an interrupted start), those of this invocation.
    if [[ -f $DIR/env ]]; then
        mapfile -t ports < <(sed -n '/^MG_IDP_PORT=/d; /^MG_SINK_PORT=/d; s/^MG_[A-Z_]*_PORT=//p' "$DIR/env")
    elif [[ -n ${ALL_PORTS+x} ]]; then
        ports=("${ALL_PORTS[@]}")
    fi

    # SIGTERM to each master: what "postfix stop" and "doveadm stop" do, minus their polling
    # (postfix stop polls with "sleep 1"), and all daemons stop in parallel.
    for name in "${!PIDS[@]}"; do
        pid=${PIDS[$name]}
        if pid_alive "$pid"; then
            running=1
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done

    # Wait for the masters to exit (they stop their children first), then for the ports to close.
    deadline=$((SECONDS + DEADLINE_SECS))
    for name in "${!PIDS[@]}"; do
        pid=${PIDS[$name]}
        while pid_alive "$pid"; do
            if ((SECONDS >= deadline)); then
                log "$name (pid $pid) did not stop in ${DEADLINE_SECS}s; killing its process group"
                kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
                break
            fi
            sleep 0.05
        done
    done
    while ((running && ${#ports[@]} > 0)) && [[ -n $(listening "${ports[@]}") ]]; do
        ((SECONDS < deadline)) || { log "still listening after stop: $(listening "${ports[@]}" | tr '\n' ' ')"; break; }
        sleep 0.05
    done
    rm -f "$DIR/pids" "$DIR/env"
    [[ $quiet == quiet && $running == 0 ]] || log "stopped $DIR"
}

cmd_stop() {
    (($# == 1)) || usage
    DIR=$(abs_path "$1")
    [[ -d $DIR ]] || return 0
    stop_dir
}

main() {
    (($# >= 1)) || usage
    local cmd=$1
    shift
    case $cmd in
    install) cmd_install "$@" ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    *) usage ;;
    esac
}

main "$@"
