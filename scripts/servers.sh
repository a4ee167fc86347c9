# Sourced by scripts/test.sh and scripts/bench.sh: starts and stops the OAuth provider stand-in
# and the real mail servers on loopback. Needs ROOT (the repository) set by the caller.
# Ports: MG_TEST_PORT_BASE (default 24000) + offsets; the stand-in listens on base + 20.

# The daemons drop root and must reach files under the run dir, so it lives under /tmp (every
# parent searchable) rather than in the checkout, which may sit in a private directory.
# target/test-env links to it, where the tests look by default.
RUN_DIR=${MG_TEST_RUN_DIR:-/tmp/mailgate-test-env-$(printf %s "$ROOT" | md5sum | cut -c1-8)}
IDP_PORT=$((${MG_TEST_PORT_BASE:-24000} + 20))

servers_stop() {
    "$ROOT/scripts/test-env.sh" stop "$RUN_DIR" || true
    if [[ -f "$RUN_DIR/idp.pid" ]]; then
        kill "$(cat "$RUN_DIR/idp.pid")" 2>/dev/null || true
        rm -f "$RUN_DIR/idp.pid"
    fi
}

# Args: the fake IdP binary.
servers_start() {
    local idp_bin=$1
    mkdir -p "$RUN_DIR" "$ROOT/target"
    chmod 755 "$RUN_DIR"
    if [[ -d $ROOT/target/test-env && ! -L $ROOT/target/test-env ]]; then
        "$ROOT/scripts/test-env.sh" stop "$ROOT/target/test-env" || true
        rm -rf "$ROOT/target/test-env"
    fi
    ln -sfn "$RUN_DIR" "$ROOT/target/test-env"
    servers_stop
    # The stand-in signs its RS256 tokens with this key (ring cannot generate RSA keys).
    if [[ ! -s "$RUN_DIR/idp-key.pem" ]]; then
        openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$RUN_DIR/idp-key.pem" 2>/dev/null
    fi
    # A stand-in left over from an interrupted run would answer in place of this build's.
    pkill -f "mailgate-fake-idp --listen 127.0.0.1:$IDP_PORT " 2>/dev/null || true
    setsid "$idp_bin" --listen "127.0.0.1:$IDP_PORT" --key "$RUN_DIR/idp-key.pem" \
        </dev/null >"$RUN_DIR/idp.log" 2>&1 &
    local pid=$!
    echo "$pid" >"$RUN_DIR/idp.pid"
    local i
    for i in $(seq 200); do
        kill -0 "$pid" 2>/dev/null || { echo "the OAuth stand-in did not start:" >&2; head -5 "$RUN_DIR/idp.log" >&2; return 1; }
        (exec 3<>"/dev/tcp/127.0.0.1/$IDP_PORT") 2>/dev/null && break
        sleep 0.05
    done
    "$ROOT/scripts/test-env.sh" start "$RUN_DIR" "$IDP_PORT"
}
