#!/bin/sh
# vgpu-stream(1) renders without groff or man warnings and names exactly the
# options `vgpu-stream --help` names (--help is the source of truth).
# Usage: test_vgpu_stream_man.sh PAGE VGPU_STREAM
set -u
page=$1
prog=$2
command -v groff >/dev/null 2>&1 || {
        echo "skipped: groff is not installed (Debian: groff-base)"
        exit 77
}
work=$(mktemp -d /tmp/vgpu-man.XXXXXX) || exit 1
trap 'rm -rf "$work"' EXIT
fails=0
bad() {
        fails=$((fails + 1))
        echo "FAIL: $*"
}
w=$(LC_ALL=C.UTF-8 groff -ww -z -man -t "$page" 2>&1)
[ -z "$w" ] || bad "groff warnings: $w"
if command -v man >/dev/null 2>&1; then
        w=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null)
        [ -z "$w" ] || bad "man warnings: $w"
fi
LC_ALL=C groff -man -Tascii -P-cbou "$page" 2>/dev/null >"$work/page.txt"
"$prog" --help >"$work/help" 2>&1 || bad "$prog --help failed"
opts() { grep -o -e '--[a-z][a-z0-9-]*' | sort -u; }
opts <"$work/help" >"$work/help.opts"
opts <"$work/page.txt" >"$work/page.opts"
for o in $(cat "$work/help.opts"); do
        grep -qx -e "$o" "$work/page.opts" || bad "the page does not describe $o (from --help)"
done
for o in $(cat "$work/page.opts"); do
        grep -qx -e "$o" "$work/help.opts" || bad "the page names $o, which --help does not know"
done
[ "$(wc -l <"$work/help.opts")" -ge 8 ] || bad "too few options in --help"
[ $fails -eq 0 ] || exit 1
echo "PASS: $(wc -l <"$work/help.opts") options"
