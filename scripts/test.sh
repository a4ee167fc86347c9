#!/usr/bin/env bash
# Runs mailgate's whole test suite on this machine: installs what the tests need (Debian's
# Postfix, Dovecot, openssl, PostgreSQL; chromium and chromium-driver for the admin UI's browser
# tests), starts real mail servers, PostgreSQL (if it is not running) and the OAuth provider
# stand-in on loopback, runs clippy and every test with cargo-nextest, and stops the mail servers
# again (PostgreSQL keeps running). Screenshots of the browser tests and the UI latency report land
# in target/test-artifacts/.
#
#   scripts/test.sh                 everything
#   scripts/test.sh -E 'test(send)' extra arguments go to `cargo nextest run`
#
# Environment: MG_TEST_PORT_BASE (default 24000) moves every test port; MG_SKIP_CLIPPY=1 skips clippy;
# MG_SKIP_PACKAGE=1 skips building and checking the Debian package (scripts/package-test.sh);
# MAILGATE_TEST_PG_URL: a PostgreSQL admin URL to use instead of the local cluster
# (scripts/pg-env.sh; each test creates and drops its own database through it).
# A full run (no arguments) also runs schemathesis against a live server (scripts/api-conformance.sh).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
# shellcheck source=scripts/servers.sh
source scripts/servers.sh

log() { echo "test.sh: $*" >&2; }

command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
scripts/test-env.sh install
# The admin UI's browser tests drive Debian's headless Chromium through chromedriver.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    log "installing chromium and chromium-driver"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
MAILGATE_TEST_PG_URL=$(scripts/pg-env.sh url)
export MAILGATE_TEST_PG_URL

if [[ -z ${MG_SKIP_CLIPPY:-} ]]; then
    log "clippy"
    cargo clippy --workspace --all-targets --quiet -- -D warnings
fi

log "building"
cargo build --quiet -p mailgate-testkit --bin mailgate-fake-idp
cargo build --quiet -p mailgate --bin mailgate

trap servers_stop EXIT
servers_start "$ROOT/target/debug/mailgate-fake-idp"

log "running tests"
LOG_DIR="$ROOT/target/test-logs"
rm -rf "$LOG_DIR" "$ROOT/target/test-artifacts"
mkdir -p "$LOG_DIR"
MAILGATE_TEST_ENV="$RUN_DIR/env" MAILGATE_TEST_LOG_DIR="$LOG_DIR" cargo nextest run --workspace --no-fail-fast "$@"
# No secret any test used may appear in any log of the run (only meaningful for a full run).
if (($# == 0)); then
    log "API conformance (schemathesis)"
    MAILGATE_TEST_LOG_DIR="$LOG_DIR" scripts/api-conformance.sh
    scripts/check-secrets.sh "$LOG_DIR"
    if [[ -z ${MG_SKIP_PACKAGE:-} ]]; then
        log "Debian package"
        MG_PACKAGE_PROFILE=dev scripts/package-test.sh
    fi
fi
