#!/usr/bin/env bash
# Runs mailgate's whole test suite on this machine: installs what the tests need (Debian's
# Postfix, Dovecot, openssl), starts real mail servers and the OAuth provider stand-in on
# loopback, runs clippy and every test with cargo-nextest, and stops everything again.
#
#   scripts/test.sh                 everything
#   scripts/test.sh -E 'test(send)' extra arguments go to `cargo nextest run`
#
# Environment: MG_TEST_PORT_BASE (default 24000) moves every test port; MG_SKIP_CLIPPY=1 skips clippy.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
RUN_DIR="$ROOT/target/test-env"
BASE=${MG_TEST_PORT_BASE:-24000}
IDP_PORT=$((BASE + 20))

log() { echo "test.sh: $*" >&2; }

cleanup() {
    scripts/test-env.sh stop "$RUN_DIR" || true
    if [[ -f "$RUN_DIR/idp.pid" ]]; then
        kill "$(cat "$RUN_DIR/idp.pid")" 2>/dev/null || true
        rm -f "$RUN_DIR/idp.pid"
    fi
}

command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
scripts/test-env.sh install

if [[ -z ${MG_SKIP_CLIPPY:-} ]]; then
    log "clippy"
    cargo clippy --workspace --all-targets --quiet -- -D warnings
fi

log "building"
cargo build --quiet -p mailgate-testkit --bin mailgate-fake-idp
cargo build --quiet -p mailgate --bin mailgate

mkdir -p "$RUN_DIR"
chmod 755 "$ROOT/target" "$RUN_DIR"
cleanup
trap cleanup EXIT

# The stand-in signs its RS256 tokens with this key (ring cannot generate RSA keys).
if [[ ! -s "$RUN_DIR/idp-key.pem" ]]; then
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$RUN_DIR/idp-key.pem" 2>/dev/null
fi
setsid "$ROOT/target/debug/mailgate-fake-idp" --listen "127.0.0.1:$IDP_PORT" --key "$RUN_DIR/idp-key.pem" \
    </dev/null >"$RUN_DIR/idp.log" 2>&1 &
echo $! >"$RUN_DIR/idp.pid"
for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$IDP_PORT") 2>/dev/null && break
    sleep 0.05
done

scripts/test-env.sh start "$RUN_DIR" "$IDP_PORT"

log "running tests"
MAILGATE_TEST_ENV="$RUN_DIR/env" cargo nextest run --workspace --no-fail-fast "$@"
