#!/usr/bin/env bash
# Runs mailgate's benchmarks (release build) against the real test servers and prints the
# figures; docs/benchmarks.md records them. Not part of the test suite.
#
#   scripts/bench.sh            every benchmark
#   MG_BENCH_MAILS=2000 MG_BENCH_MESSAGES=500 MG_BENCH_SESSIONS=4 scripts/bench.sh   (defaults 5000, 2000, 8)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
# shellcheck source=scripts/servers.sh
source scripts/servers.sh

scripts/test-env.sh install
command -v fetchmail >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fetchmail
cargo build --quiet --release -p mailgate-testkit --bin mailgate-fake-idp
cargo bench --no-run --quiet -p mailgate

trap servers_stop EXIT
servers_start "$ROOT/target/release/mailgate-fake-idp"

export MAILGATE_TEST_ENV="$RUN_DIR/env"
cargo bench --quiet -p mailgate --bench send
cargo bench --quiet -p mailgate --bench retrieve
