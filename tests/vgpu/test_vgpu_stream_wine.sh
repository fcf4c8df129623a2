#!/usr/bin/env bash
# The Windows vgpu-stream.exe under Wine (Debian wine64) on an Xvfb display:
# it starts, fills the ring from the screen source (DXGI desktop duplication
# is expected to be unavailable under Wine, so GDI runs; the output names the
# path), and acknowledges control requests handed in with --control-file,
# checked in its --dump with vgpu-region-check. Then the pattern source must
# give the same verifiable pixels as the Linux build.
# Usage: test_vgpu_stream_wine.sh VGPU_STREAM_EXE VGPU_REGION_CHECK
set -euo pipefail
EXE=$1
CHECK=$2
for tool in wine wineserver Xvfb; do
        command -v $tool >/dev/null || {
                echo "skipped: $tool not installed (Debian packages wine64, wine, xvfb)"
                exit 77
        }
done
[ -f "$EXE" ] || {
        echo "FAIL: $EXE missing (the vgpu_stream_windows_build test makes it)" >&2
        exit 1
}

T=$(mktemp -d /tmp/vgpu-wine.XXXXXX)
export WINEPREFIX=$T/prefix WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
XVFB=
WPID=
cleanup() {
        [ -n "$WPID" ] && kill "$WPID" 2>/dev/null
        wineserver -k 2>/dev/null || true
        [ -n "$XVFB" ] && kill "$XVFB" 2>/dev/null && wait "$XVFB" 2>/dev/null
        rm -rf "$T"
}
trap cleanup EXIT
fail() {
        echo "FAIL: $*" >&2
        [ -f "$T/wine.log" ] && sed 's/^/  wine: /' "$T/wine.log" >&2
        exit 1
}

# A private display: Xvfb picks a free number and writes it when ready.
exec 5>"$T/display"
Xvfb -displayfd 5 -screen 0 800x600x24 -nolisten tcp >"$T/xvfb.log" 2>&1 &
XVFB=$!
exec 5>&-
deadline=$((SECONDS + 20))
until [ -s "$T/display" ]; do
        kill -0 "$XVFB" 2>/dev/null || fail "Xvfb exited: $(cat "$T/xvfb.log")"
        [ $SECONDS -lt $deadline ] || fail "Xvfb did not start in 20 s"
        sleep 0.1
done
export DISPLAY=:$(head -n1 "$T/display")
echo "Xvfb on $DISPLAY, WINEPREFIX $WINEPREFIX"

# wait_for DESC SECONDS CHECK-ARGS...: polls the dump until the checker
# accepts it.
wait_for() {
        local desc=$1 secs=$2
        shift 2
        local deadline=$((SECONDS + secs))
        until "$CHECK" "$@" "$T/live.dump" >"$T/last" 2>"$T/last.err"; do
                kill -0 "$WPID" 2>/dev/null || fail "$desc: vgpu-stream.exe exited"
                [ $SECONDS -lt $deadline ] || fail "$desc within $secs s: $(cat "$T/last.err" 2>/dev/null)"
                sleep 0.2
        done
        echo "ok: $desc: $(cat "$T/last")"
}

echo "== screen source under Wine (the first run creates the Wine prefix)"
wine "$EXE" --source screen --fps 20 --control-file "Z:$T/ctl" --dump "Z:$T/live.dump" >"$T/wine.log" 2>&1 &
WPID=$!
wait_for "ring filled" 150 --full-ring --min-seq 4 --size 800x600 --ack 0
grep -m1 "vgpu-stream: source" "$T/wine.log" | sed 's/^/path: /'
grep -q "vgpu-stream: source \(gdi\|dxgi\)" "$T/wine.log" || fail "no capture path named"
echo "1 2 5" >"$T/ctl" # fps cap 5
wait_for "fps cap acknowledged" 30 --ack 1 --ack-result 0
grep -q "interval_us=200000 " "$T/last" || fail "fps cap 5 not in the header: $(cat "$T/last")"
echo "2 1 1" >"$T/ctl" # pause
wait_for "pause acknowledged" 30 --ack 2 --ack-result 0 --flags 1 --full-ring
kill "$WPID" 2>/dev/null || true
wait "$WPID" 2>/dev/null || true
WPID=
wineserver -k 2>/dev/null || true

echo "== pattern source under Wine: the same pixels as the formula"
timeout 60 wine "$EXE" --source pattern --frames 5 --fps 0 --width 96 --height 40 --dump "Z:$T/pattern.dump" \
        >"$T/wine.log" 2>&1 || fail "pattern run exited $?"
"$CHECK" --pattern --full-ring --frames 5 --size 96x40 "$T/pattern.dump" || fail "pattern dump"
echo "PASS"
