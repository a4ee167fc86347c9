#!/usr/bin/env bash
# Runs schemathesis (from PyPI) against a live mailgate: every operation of /api/openapi.json,
# with examples, boundary values and generated bodies, positive and negative.
#
#   scripts/api-conformance.sh            uses target/debug/mailgate (built if missing)
#
# Checks (schemathesis 4 `--checks all` except positive_data_acceptance):
#   not_a_server_error, status_code_conformance, content_type_conformance,
#   response_headers_conformance, response_schema_conformance, negative_data_rejection,
#   missing_required_header, unsupported_method, use_after_free, ensure_resource_availability,
#   ignored_auth.
# positive_data_acceptance is left out on purpose: a schema-valid body can still break a rule
# the schema cannot state (a name is required when creating but not when changing — one input
# type serves both; the named account must exist; a sending account must be chosen).
# Environment: MG_ST_EXAMPLES (default 25) generated cases per operation and phase.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
log() { echo "api-conformance: $*" >&2; }

SCHEMATHESIS_VERSION=4.32.5
VENV="$ROOT/target/schemathesis-venv"
if [[ ! -x $VENV/bin/st ]] || ! "$VENV/bin/st" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    log "installing schemathesis $SCHEMATHESIS_VERSION"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

BIN="$ROOT/target/debug/mailgate"
[[ -x $BIN ]] || cargo build --quiet -p mailgate --bin mailgate

WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE="http://127.0.0.1:$PORT"
export MAILGATE_DATA_DIR="$WORK/data" MAILGATE_LISTEN="127.0.0.1:$PORT" MAILGATE_LOG_FORMAT=json
mkdir -p "$MAILGATE_DATA_DIR"
KEY=$("$BIN" api-key create --name conformance --admin 2>/dev/null)
# The suite's secret check (scripts/check-secrets.sh) looks for these in every log.
if [[ -n ${MAILGATE_TEST_LOG_DIR:-} ]]; then
    printf '%s\n' "$KEY" conformance-secret conformance-pw >"$MAILGATE_TEST_LOG_DIR/secrets-conformance.txt"
fi
"$BIN" serve >"$WORK/serve.log" 2>&1 &
SERVER=$!
cleanup() {
    kill "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
    if [[ -n ${MAILGATE_TEST_LOG_DIR:-} ]]; then cp "$WORK/serve.log" "$MAILGATE_TEST_LOG_DIR/api-conformance-serve.log"; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
for _ in $(seq 200); do
    curl -fsS "$BASE/readyz" >/dev/null 2>&1 && break
    kill -0 "$SERVER" 2>/dev/null || { log "mailgate did not start:"; cat "$WORK/serve.log" >&2; exit 1; }
    sleep 0.05
done

# Records to find: schemathesis reuses ids it sees in answers for the operations on one record.
api() {
    curl -sS --fail-with-body -o "$WORK/answer" -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' "$@" \
        || { log "seeding failed: $(cat "$WORK/answer")"; return 1; }
}
api -X POST "$BASE/api/v1/oauth-clients" -d '{"name":"m365","template":"microsoft365","tenant":"contoso.onmicrosoft.com",
  "client_id":"00000000-0000-0000-0000-000000000001","client_secret":"conformance-secret","expires_on":"2030-01-01"}'
# Nothing listens on port 9: tests and sends fail at once instead of waiting for a timeout.
api -X POST "$BASE/api/v1/accounts" -d '{"name":"out","protocol":"smtp","auth":"none","host":"127.0.0.1","port":9,
  "connection":"none","send_address":"app@example.test"}'
api -X POST "$BASE/api/v1/accounts" -d '{"name":"in","protocol":"imap","auth":"plain","username":"u","password":"conformance-pw",
  "host":"127.0.0.1","port":9,"connection":"none","enabled":false}'
api -X PUT "$BASE/api/v1/settings" -d '{"default_account":"out","admin_contacts":["admin@example.test"]}'
api -X POST "$BASE/api/v1/mails" -d '{"to":"someone@example.test","subject":"conformance","text":"hello"}'

log "running schemathesis against $BASE"
"$VENV/bin/st" run "$BASE/api/openapi.json" \
    --header "Authorization: Bearer $KEY" \
    --checks all --exclude-checks positive_data_acceptance \
    --phases examples,coverage,fuzzing \
    --max-examples "${MG_ST_EXAMPLES:-25}" \
    --workers 2 \
    --request-timeout 20 \
    --seed 20261129 \
    --no-color

# The server must have survived everything it was sent.
curl -fsS "$BASE/readyz" >/dev/null || { log "mailgate is not ready after the run"; exit 1; }
if grep -q '"panicked\|panicked at' "$WORK/serve.log"; then
    log "mailgate panicked during the run:"; grep -m5 'panicked' "$WORK/serve.log" >&2; exit 1
fi
log "ok"
