#!/usr/bin/env bash
# The Linux vgpu-stream, run from outside with --dump and --control-file (no
# VM): the region parses (tags, header, checksums, pattern pixels), a restart
# gets a new nonce, control requests are acknowledged (pause, fps cap, crop,
# full frame) and a half-written request is ignored.
# Usage: test_vgpu_stream.sh VGPU_STREAM VGPU_REGION_CHECK
set -euo pipefail
STREAM=$1
CHECK=$2
T=$(mktemp -d /tmp/vgpu-stream-test.XXXXXX)
PID=
cleanup() {
        [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
        rm -rf "$T"
}
trap cleanup EXIT

fail() {
        echo "FAIL: $*" >&2
        exit 1
}

# wait_for DESC CHECK-ARGS...: polls the dump until the checker accepts it
# (10 s deadline).
wait_for() {
        local desc=$1
        shift
        local deadline=$((SECONDS + 10))
        until "$CHECK" "$@" "$T/live.dump" >"$T/last" 2>"$T/last.err"; do
                [ $SECONDS -lt $deadline ] || fail "$desc: $(cat "$T/last.err")"
                sleep 0.05
        done
        echo "ok: $desc: $(cat "$T/last")"
}

field() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" "$T/last"; }

echo "== a finite run fills the ring with verifiable pattern frames"
"$STREAM" --frames 20 --fps 0 --slots 4 --width 333 --height 77 --dump "$T/a.dump"
"$CHECK" --pattern --full-ring --frames 20 --size 333x77 --gen 1 --ack 0 "$T/a.dump" | tee "$T/last"
nonce_a=$(field nonce)

echo "== a restart has a new nonce"
"$STREAM" --quiet --frames 3 --fps 0 --dump "$T/b.dump"
"$CHECK" --pattern --full-ring --frames 3 --size 640x480 "$T/b.dump" | tee "$T/last"
[ "$(field nonce)" != "$nonce_a" ] || fail "restart kept nonce $nonce_a"

echo "== a request present at start is acknowledged (fps cap)"
echo "1 2 25" >"$T/ctl1"
"$STREAM" --quiet --frames 5 --fps 0 --control-file "$T/ctl1" --dump "$T/c.dump"
"$CHECK" --pattern --frames 5 --ack 1 --ack-result 0 "$T/c.dump" | tee "$T/last"
[ "$(field interval_us)" = 40000 ] || fail "fps cap 25 gave interval_us $(field interval_us)"

echo "== a bad request is refused with -EINVAL, an unknown op with -EOPNOTSUPP"
echo "7 1 5" >"$T/ctl2"
"$STREAM" --quiet --frames 2 --fps 0 --control-file "$T/ctl2" --dump "$T/d.dump"
"$CHECK" --ack 7 --ack-result -22 "$T/d.dump" >/dev/null
echo "8 99" >"$T/ctl2"
"$STREAM" --quiet --frames 2 --fps 0 --control-file "$T/ctl2" --dump "$T/d.dump"
"$CHECK" --ack 8 --ack-result -95 "$T/d.dump" >/dev/null
echo "ok: refused"

echo "== live: half-written request ignored, pause, full frame, crop, resume"
ctl=$T/live.ctl
echo "1 1 1 0 0 0 12345" >"$ctl" # wrong req_seq_check: a half-written block
"$STREAM" --quiet --fps 50 --control-file "$ctl" --dump "$T/live.dump" &
PID=$!
wait_for "frames flow" --pattern --min-seq 5 --ack 0
echo "1 1 1" >"$ctl"
wait_for "pause acknowledged" --ack 1 --ack-result 0 --flags 1
paused_seq=$(field latest_seq)
sleep 0.3 # no frame may appear while paused (an absence needs a wait)
wait_for "still paused" --ack 1 --flags 1
[ "$(field latest_seq)" = "$paused_seq" ] || fail "frames published while paused: $paused_seq -> $(field latest_seq)"
paused_dropped=$(field dropped)
echo "2 4" >"$ctl"
wait_for "full frame while paused" --pattern --ack 2 --ack-result 0 --flags 1
[ "$(field latest_seq)" = $((paused_seq + 1)) ] || fail "full frame: latest_seq $(field latest_seq), expected $((paused_seq + 1))"
# Paused time is not missed cadence.
[ "$(field dropped)" = "$paused_dropped" ] || fail "the pause counted as dropped frames: $paused_dropped -> $(field dropped)"
echo "3 3 0 0 100 50" >"$ctl"
echo "4 1 0" >"$T/next" # resume after the crop is taken
wait_for "crop acknowledged" --ack 3 --ack-result 0 --size 640x480
mv "$T/next" "$ctl"
wait_for "resumed with the crop: geometry 100x50, same region" --ack 4 --flags 0 --size 100x50 --gen 2 --min-seq $((paused_seq + 5))
echo "5 3 0 0 0 0" >"$ctl"
wait_for "crop removed" --ack 5 --size 640x480 --gen 3
kill -TERM "$PID"
wait "$PID" || fail "vgpu-stream exited $? on SIGTERM"
PID=
"$CHECK" --ack 5 "$T/live.dump" >/dev/null
echo "PASS"
