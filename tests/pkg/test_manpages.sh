#!/bin/sh
# The man pages in docs/man:
#   - render without a single groff or man warning;
#   - vmsigd(8) and vmsigctl(1) name every option their --help names, and no
#     option that --help does not know (--help is the source of truth);
#   - vmsigctl(1) names every command of vmsigctl --help;
#   - vmsig-uinput(1) names its commands and options, and no other option.
# Exit 77 (skip) when groff is not installed.
# usage: test_manpages.sh MANDIR VMSIGD VMSIGCTL [VMSIG_UINPUT]
set -u
mandir=$1
vmsigd=$2
vmsigctl=$3
vmsig_uinput=${4:-}

command -v groff >/dev/null 2>&1 || {
        echo "SKIP: groff is not installed (Debian: groff-base)"
        exit 77
}
fails=0
bad() {
        fails=$((fails + 1))
        printf 'FAIL: %s\n' "$*"
}
work=$(mktemp -d "${TMPDIR:-/tmp}/vmsig-man-test.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT INT TERM

for page in vmsigd.8 vmsigctl.1 vmsigd.conf.5 vmsig-trigger.5 vmsig-uinput.1; do
        f=$mandir/$page
        [ -f "$f" ] || {
                bad "$page is missing"
                continue
        }
        w=$(LC_ALL=C.UTF-8 groff -ww -z -man -t "$f" 2>&1)
        [ -z "$w" ] || bad "groff warnings for $page: $w"
        if command -v man >/dev/null 2>&1; then
                w=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$f" 2>&1 >/dev/null)
                [ -z "$w" ] || bad "man warnings for $page: $w"
        fi
        # Plain text for the comparisons below (no hyphenation: .nh).
        LC_ALL=C groff -man -Tascii -P-cbou "$f" 2>/dev/null | sed 's/  */ /g' >"$work/$page.txt"
done

# options: --long and -x forms, from --help and from the page's text
options_of() { grep -o -e '--[a-z][a-z0-9-]*' -e '^ *-[a-zA-Z],' -e '[ [(]-[a-zA-Z]\b' | sed 's/^[ [(]*//; s/,$//' | sort -u; }

check_options() {
        prog=$1
        page=$2
        "$prog" --help >"$work/help" 2>&1 || bad "$prog --help failed"
        options_of <"$work/help" >"$work/help.opts"
        options_of <"$work/$page.txt" >"$work/page.opts"
        for o in $(cat "$work/help.opts"); do
                grep -qx -e "$o" "$work/page.opts" || bad "$page does not describe $o (from --help)"
        done
        for o in $(cat "$work/page.opts"); do
                grep -qx -e "$o" "$work/help.opts" || bad "$page names $o, which --help does not know"
        done
        n=$(wc -l <"$work/help.opts")
        [ "$n" -ge 3 ] || bad "found only $n options in $prog --help"
}
check_options "$vmsigd" vmsigd.8
check_options "$vmsigctl" vmsigctl.1

# vmsigctl commands: the first word of each line of the Commands block
"$vmsigctl" --help | sed -n '/^Commands/,/^$/p' | sed -n 's/^  \([a-z][a-z]*\) .*/\1/p' >"$work/cmds"
[ "$(wc -l <"$work/cmds")" -ge 5 ] || bad "found only $(wc -l <"$work/cmds") commands in vmsigctl --help"
for c in $(cat "$work/cmds"); do
        sed -n '/^COMMANDS/,/^OPTIONS/p' "$work/vmsigctl.1.txt" | grep -q "^ *$c\( \|$\)" ||
                bad "vmsigctl.1 does not describe the command '$c'"
done
# vmsigctl exit codes 0..5
for code in 0 1 2 3 4 5; do
        sed -n '/^EXIT STATUS/,/^[A-Z]/p' "$work/vmsigctl.1.txt" | grep -q "^ *$code\b" ||
                bad "vmsigctl.1 does not describe exit code $code"
done

# vmsig-uinput: its --help lists the commands and the options of hold (not
# -h/--help itself, which the page adds).
if [ -n "$vmsig_uinput" ]; then
        "$vmsig_uinput" --help >"$work/uhelp" 2>&1 || bad "$vmsig_uinput --help failed"
        options_of <"$work/uhelp" >"$work/uhelp.opts"
        printf '%s\n' -h --help >>"$work/uhelp.opts"
        options_of <"$work/vmsig-uinput.1.txt" >"$work/upage.opts"
        for o in $(cat "$work/uhelp.opts"); do
                grep -qx -e "$o" "$work/upage.opts" || bad "vmsig-uinput.1 does not describe $o"
        done
        for o in $(cat "$work/upage.opts"); do
                grep -qx -e "$o" "$work/uhelp.opts" || bad "vmsig-uinput.1 names $o, which --help does not know"
        done
        grep -qx -e --allow-uid "$work/uhelp.opts" || bad "found no --allow-uid in vmsig-uinput --help"
        for c in $(sed -n 's/^  \([a-z][a-z]*\)  .*/\1/p' "$work/uhelp"); do
                sed -n '/^COMMANDS/,/^OPTIONS/p' "$work/vmsig-uinput.1.txt" | grep -q "^ *$c\( \|$\)" ||
                        bad "vmsig-uinput.1 does not describe the command '$c'"
        done
        for f in "KEYBOARD=" "QEMU_ARGS=" "input-linux" "by-vmsig/vmsig-VM-kbd" "vmsig-uinput@"; do
                grep -qF -e "$f" "$work/vmsig-uinput.1.txt" || bad "vmsig-uinput.1 does not mention $f"
        done
fi

if [ "$fails" -eq 0 ]; then
        echo "ok: 5 man pages render cleanly and match --help"
fi
[ "$fails" -eq 0 ]
