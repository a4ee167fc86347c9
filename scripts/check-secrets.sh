#!/usr/bin/env bash
# After a test run: no secret a test used (API keys, passwords, client secrets, private keys —
# recorded in secrets-*.txt) and no access token may appear in any log the run wrote
# (every test process's logs, the servers started as subprocesses).
#
#   scripts/check-secrets.sh DIR
set -euo pipefail
dir=${1:?usage: check-secrets.sh DIR}
shopt -s nullglob
logs=("$dir"/*.log)
secrets=("$dir"/secrets-*.txt)
if ((${#logs[@]} == 0)); then
    echo "check-secrets: no logs in $dir" >&2
    exit 1
fi
count=0
found=0
sort -u "${secrets[@]}" /dev/null | while IFS= read -r secret; do
    [[ ${#secret} -ge 8 ]] || continue
    if grep -lF -- "$secret" "${logs[@]}" >/dev/null; then
        # Name the place, never the secret.
        echo "check-secrets: a secret used by the tests appears in: $(grep -lF -- "$secret" "${logs[@]}" | tr '\n' ' ')" >&2
        exit 3
    fi
done || found=1
if grep -lE 'eyJ0eXAi|eyJhbGci|ya29\.[A-Za-z0-9_-]{20}' "${logs[@]}" >/dev/null; then
    echo "check-secrets: an access token appears in: $(grep -lE 'eyJ0eXAi|eyJhbGci|ya29\.[A-Za-z0-9_-]{20}' "${logs[@]}" | tr '\n' ' ')" >&2
    found=1
fi
count=$(sort -u "${secrets[@]}" /dev/null | wc -l)
if ((found)); then
    exit 1
fi
echo "check-secrets: $count secrets checked against ${#logs[@]} log files: none found"
