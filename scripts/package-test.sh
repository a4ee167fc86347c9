#!/usr/bin/env bash
# Builds the Debian package and checks it: the systemd unit passes `systemd-analyze verify`,
# and the packaged binary, started with the packaged configuration from a throwaway root,
# becomes ready. Called by scripts/test.sh (skip with MG_SKIP_PACKAGE=1).
#
# MG_PACKAGE_PROFILE (default release) is the Cargo profile of the packaged binary. The test
# command passes `dev`, which reuses the binary the tests just built: what is checked here is
# the packaging (files, unit, configuration, start-up), and a cold release build would add ~10
# minutes on 2 cores. `scripts/package-test.sh` alone builds and checks the shippable package.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
log() { echo "package-test: $*" >&2; }

command -v cargo-deb >/dev/null || cargo install --locked --quiet cargo-deb
profile=${MG_PACKAGE_PROFILE:-release}
log "building the .deb ($profile profile)"
deb=$(cargo deb --quiet -p mailgate --profile "$profile" 2>/dev/null | tail -n 1)
[[ -f $deb ]] || { log "cargo deb produced no package"; exit 1; }
log "built $deb ($(du -h "$deb" | cut -f1))"

work=$(mktemp -d /tmp/mailgate-package-XXXXXX)
chmod 755 "$work"
cleanup() {
    [[ -n ${pid:-} ]] && kill "$pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
dpkg-deb -x "$deb" "$work/root"
for f in usr/bin/mailgate lib/systemd/system/mailgate.service etc/mailgate/mailgate.toml usr/share/doc/mailgate/README.md; do
    [[ -e $work/root/$f ]] || { log "missing in the package: /$f"; exit 1; }
done
dpkg-deb -f "$deb" Package Version Architecture | tr '\n' ' ' >&2; echo >&2

if command -v systemd-analyze >/dev/null; then
    # verify checks that ExecStart exists: point it at the packaged binary.
    sed "s|/usr/bin/mailgate|$work/root/usr/bin/mailgate|" "$work/root/lib/systemd/system/mailgate.service" >"$work/mailgate.service"
    status=0
    out=$(systemd-analyze verify "$work/mailgate.service" 2>&1) || status=$?
    # A non-zero exit is an error; warnings (unknown keys…) name the unit file.
    if ((status != 0)) || grep -v 'Failed to connect to bus' <<<"$out" | grep -qi 'mailgate.service'; then
        log "systemd-analyze verify found problems:"; echo "$out" >&2; exit 1
    fi
    log "systemd unit verified"
else
    log "systemd-analyze not installed: unit not verified"
fi

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
MAILGATE_DATA_DIR="$work/data" MAILGATE_LISTEN="127.0.0.1:$port" \
    "$work/root/usr/bin/mailgate" --config "$work/root/etc/mailgate/mailgate.toml" serve >"$work/serve.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
    if "$work/root/usr/bin/mailgate" healthcheck --url "http://127.0.0.1:$port" --timeout 1 >/dev/null 2>&1; then
        log "the packaged mailgate is ready on port $port"
        [[ -f $work/data/master.key && $(stat -c %a "$work/data/master.key") == 600 ]] || { log "no private master key"; exit 1; }
        exit 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
log "the packaged mailgate did not become ready:"
tail -20 "$work/serve.log" >&2
exit 1
