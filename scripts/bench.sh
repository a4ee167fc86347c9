#!/usr/bin/env bash
# Runs mailgate's benchmarks (release build) against the real test servers and prints the
# figures; docs/benchmarks.md records them. Not part of the test suite.
#
#   scripts/bench.sh            every benchmark
#   MG_BENCH_MAILS=2000 MG_BENCH_MESSAGES=500 MG_BENCH_SESSIONS=4 scripts/bench.sh   (defaults 5000, 2000, 8)
#   MG_BENCH_PG=1 MG_BENCH_NODES=3 MG_BENCH_ONLY=send scripts/bench.sh
#       sending on PostgreSQL (scripts/pg-env.sh starts it; a fresh database per run) with 3 nodes
#       (default 1); MG_BENCH_PG_URL names another admin URL; MG_BENCH_ONLY=send|retrieve runs one
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

if [[ -n ${MG_BENCH_PG:-} && -z ${MG_BENCH_PG_URL:-} ]]; then
    MG_BENCH_PG_URL=$(scripts/pg-env.sh url)
    export MG_BENCH_PG_URL
fi

export MAILGATE_TEST_ENV="$RUN_DIR/env"
[[ ${MG_BENCH_ONLY:-send} == send ]] && cargo bench --quiet -p mailgate --bench send
[[ ${MG_BENCH_ONLY:-retrieve} == retrieve ]] && cargo bench --quiet -p mailgate --bench retrieve
true
