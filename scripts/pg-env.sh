#!/usr/bin/env bash
# PostgreSQL for mailgate's tests (Debian 12): installs Debian's `postgresql` if missing, makes a
# cluster, starts it, makes sure the tests can log in over TCP on loopback, and prints the admin
# URL the tests use (the store suite and the multi-node tests create a database per test
# through it and drop it afterwards).
#
#   scripts/pg-env.sh url      ensure all of that (idempotent, fast when done), print the URL
#
# When MAILGATE_TEST_PG_URL is set and answers, it is used as it is (nothing installed).
# A fresh Debian install only lets the `postgres` OS user in (peer auth on the socket) and asks
# for a password on 127.0.0.1: this script then gives the `postgres` role a test password and
# uses it in the URL. Meant for test machines and CI, not for a production database.
# MG_TEST_PG_CLUSTER (default main) names the cluster to use or create.
set -euo pipefail

readonly TEST_PASSWORD=mailgate-test-db
readonly CLUSTER=${MG_TEST_PG_CLUSTER:-main}
readonly DEADLINE_SECS=30

log() { echo "pg-env: $*" >&2; }
die() { log "error: $*"; exit 1; }

# From / : the checkout may sit in a directory the postgres user cannot enter.
as_postgres() {
    if (($(id -u) == 0)); then (cd / && runuser -u postgres -- "$@"); else (cd / && sudo -n -u postgres "$@"); fi
}
as_root() {
    if (($(id -u) == 0)); then "$@"; else sudo -n "$@"; fi
}

# Whether URL answers a query (never prompts for a password).
answers() {
    PGCONNECT_TIMEOUT=3 psql -w -q -X -At "$1" -c 'SELECT 1' >/dev/null 2>&1
}

install() {
    command -v pg_lsclusters >/dev/null && command -v psql >/dev/null && return 0
    log "installing postgresql"
    if ! compgen -G '/var/lib/apt/lists/*_Packages' >/dev/null; then
        as_root apt-get update -qq
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql ||
        { as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql; }
}

# Prints "VERSION PORT STATUS" of the cluster, creating it when there is none.
cluster() {
    local line
    line=$(pg_lsclusters -h 2>/dev/null | awk -v c="$CLUSTER" '$2 == c' | head -n1)
    if [[ -z $line ]]; then
        local version
        version=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -n | tail -n1)
        [[ -n $version ]] || die "postgresql is installed but no server version found under /usr/lib/postgresql"
        log "creating cluster $version/$CLUSTER"
        as_root pg_createcluster "$version" "$CLUSTER" >/dev/null
        line=$(pg_lsclusters -h | awk -v c="$CLUSTER" '$2 == c' | head -n1)
    fi
    awk '{ print $1, $3, $4 }' <<<"$line"
}

cmd_url() {
    if [[ -n ${MAILGATE_TEST_PG_URL:-} ]] && answers "$MAILGATE_TEST_PG_URL"; then
        echo "$MAILGATE_TEST_PG_URL"
        return 0
    fi
    install
    local version port status
    read -r version port status < <(cluster)
    if [[ $status != online* ]]; then
        log "starting cluster $version/$CLUSTER"
        as_root pg_ctlcluster --skip-systemctl-redirect "$version" "$CLUSTER" start
    fi
    local deadline=$((SECONDS + DEADLINE_SECS))
    until as_postgres psql -q -X -At -p "$port" -c 'SELECT 1' >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "PostgreSQL $version/$CLUSTER on port $port did not come up (see /var/log/postgresql)"
        sleep 0.2
    done
    local url="postgres://postgres@127.0.0.1:$port/test"
    if ! answers "postgres://postgres@127.0.0.1:$port/postgres"; then
        # Not trusted on 127.0.0.1 (Debian's default asks for a password): set a test password.
        as_postgres psql -q -X -p "$port" -c "ALTER ROLE postgres PASSWORD '$TEST_PASSWORD'" >/dev/null
        url="postgres://postgres:$TEST_PASSWORD@127.0.0.1:$port/test"
        answers "${url%/test}/postgres" ||
            die "cannot log in as postgres on 127.0.0.1:$port even with a password; check pg_hba.conf"
    fi
    if [[ -z $(as_postgres psql -X -At -p "$port" -c "SELECT 1 FROM pg_database WHERE datname = 'test'") ]]; then
        as_postgres createdb -p "$port" test
    fi
    # Databases of earlier test runs that died before dropping them (those still in use stay).
    as_postgres psql -X -At -p "$port" -c "SELECT datname FROM pg_database WHERE datname LIKE 'mg\_%'" |
        while read -r db; do
            as_postgres psql -q -X -p "$port" -c "DROP DATABASE \"$db\"" >/dev/null 2>&1 || true
        done
    answers "$url" || die "cannot connect to $url"
    echo "$url"
}

case ${1:-} in
url) cmd_url ;;
*)
    echo "usage: pg-env.sh url" >&2
    exit 2
    ;;
esac
