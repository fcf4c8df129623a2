# SPDX-License-Identifier: MIT
# shellcheck shell=sh
# Runs INSIDE the stock-kernel guest as /test/run.sh (busybox sh), put there
# by uinput-in-guest.sh with the binaries in /test/bin. One line per check:
#   VMSIG-CHECK PASS name
#   VMSIG-CHECK FAIL name: reason
# then VMSIG-CHECKS-DONE pass=N fail=M. /test/mode picks the part (each
# boot stays well under ctest's 3 minutes): "core" the unit test, vmsigd and
# the event streams, the vmsigd restarts; "pkg" the udev rule and the
# holder under a (simulated) systemd fd store; "bench" bench/actuate's
# uinput part instead (VMSIG-BENCH lines).
#
# The path under test is the one users run: `vmsig-uinput hold` creates the
# pair and serves it; vmsigd (driver=qemu, input_options=uinput=SOCK) takes
# dups of the fds; vmsigctl injects; vmsig-evdev-frames reads the devices
# through evdev, as QEMU's input-linux would, one line per SYN_REPORT frame.
export PATH=/test/bin:/bin:/sbin
B=/test/bin
W=/run/vmsig
FR=$W/frames.log
PASS=0
FAIL=0
VM=demo

pass() {
        echo "VMSIG-CHECK PASS $1"
        PASS=$((PASS + 1))
}
fail() {
        echo "VMSIG-CHECK FAIL $1: $2"
        FAIL=$((FAIL + 1))
}
now_ms() { awk '{ printf "%d\n", $1 * 1000 }' /proc/uptime; }
# wait_for SECONDS CMD...: polls CMD every 50 ms until it succeeds.
wait_for() {
        _end=$(($(now_ms) + $1 * 1000))
        shift
        while ! "$@" >/dev/null 2>&1; do
                [ "$(now_ms)" -ge "$_end" ] && return 1
                usleep 50000
        done
}
finish() {
        echo "VMSIG-CHECKS-DONE pass=$PASS fail=$FAIL"
        [ "$FAIL" = 0 ]
        exit $?
}

mkdir -p $W/uinput $W/vms
# Ctrl-Alt-Del (a key chord below) must not reboot the guest should a key
# reach the console: the reader grabs the devices as QEMU does, and this
# turns the kernel's reboot into a signal to /init, which ignores it.
echo 0 >/proc/sys/kernel/ctrl-alt-del
echo "stock guest: $(uname -r), $(grep -c ^processor /proc/cpuinfo) vCPU"

PART=$(cat /test/mode 2>/dev/null)
if [ "$PART" = bench ]; then
        echo "VMSIG-BENCH-BEGIN (TCG guest, kernel $(uname -r))"
        $B/actuate --input-only >$W/bench.out 2>&1
        rc=$?
        sed 's/^/VMSIG-BENCH /' $W/bench.out
        echo "VMSIG-BENCH-END rc=$rc"
        exit 0
fi

# ---- the module and the unit tests that skipped on the host ----
if [ -c /dev/uinput ]; then pass uinput-module-loaded; else fail uinput-module-loaded "no /dev/uinput"; fi
if out=$($B/vmsig-uinput probe 2>&1) && [ "$out" = "/dev/uinput is usable" ]; then pass vmsig-uinput-probe; else fail vmsig-uinput-probe "$out"; fi

if [ "$PART" = core ]; then
        # test_vmctl: its test_uinput_real skips without /dev/uinput; here it must run.
        $B/test_vmctl >$W/test_vmctl.log 2>&1
        rc=$?
        sed 's/^/  test_vmctl: /' $W/test_vmctl.log
        if [ $rc = 0 ] && grep -q '^\[       OK \] test_uinput_real' $W/test_vmctl.log && ! grep -q SKIP $W/test_vmctl.log; then
                pass test_vmctl-uinput-real
        else
                fail test_vmctl-uinput-real "rc=$rc (see test_vmctl lines above)"
        fi
fi

# ---- vmsig-uinput hold ----
$B/vmsig-uinput hold $VM --dir $W/uinput >$W/hold.out 2>&1 &
HOLD=$!
if wait_for 10 test -S $W/uinput/$VM.sock -a -f $W/uinput/$VM.env; then
        pass hold-socket-and-env
else
        fail hold-socket-and-env "$(cat $W/hold.out)"
        finish
fi
# shellcheck disable=SC1090
. $W/uinput/$VM.env
sysname() { cat "/sys/class/input/${1#/dev/input/}/device/$2" 2>/dev/null; }
if [ "$(sysname "$KEYBOARD" name)" = "vmsig $VM keyboard" ] && [ "$(sysname "$POINTER" name)" = "vmsig $VM pointer" ] &&
        [ "$(sysname "$KEYBOARD" phys)" = "vmsig/$VM/kbd" ] && [ "$(sysname "$POINTER" phys)" = "vmsig/$VM/ptr" ]; then
        pass hold-devices-named
else
        fail hold-devices-named "KEYBOARD=$KEYBOARD POINTER=$POINTER: $(sysname "$KEYBOARD" name) / $(sysname "$POINTER" name)"
fi
case $QEMU_ARGS in
"-object input-linux,id=vmsig-kbd,evdev=$KEYBOARD,grab-toggle=ctrl-ctrl -object input-linux,id=vmsig-ptr,evdev=$POINTER")
        pass hold-qemu-args ;;
*) fail hold-qemu-args "QEMU_ARGS=$QEMU_ARGS" ;;
esac
if grep -qx "KEYBOARD=$KEYBOARD" $W/hold.out; then pass hold-stdout; else fail hold-stdout "$(cat $W/hold.out)"; fi

$B/vmsig-evdev-frames kbd="$KEYBOARD" ptr="$POINTER" >$FR 2>&1 &
READER=$!
wait_for 10 grep -q '^READING 2' $FR || fail evdev-reader "$(cat $FR)"
sed 's/^/  /' $FR
# The pointer has what QEMU input-linux needs to treat it as a mouse
# (REL_X or ABS_X AND a button), the keyboard no buttons.
caps=$(cat "/sys/class/input/${POINTER#/dev/input/}/device/capabilities/key" 2>/dev/null)
case $caps in
*70000*) pass pointer-has-buttons ;;
*) fail pointer-has-buttons "key caps: $caps" ;;
esac

if [ "$PART" = pkg ]; then
        # ---- the udev rule (packaging/60-vmsig-uinput.rules), applied by udevadm test ----
        if [ -x $B/udevadm ] && [ -f /etc/udev/rules.d/60-vmsig-uinput.rules ]; then
                mkdir -p /run/udev
                # udev_check NAME NODE ROLE: properties, link, group kvm and mode 0660
                udev_check() {
                        _out=$($B/udevadm test --action=add "/sys/class/input/${2#/dev/input/}" 2>&1)
                        _link=/dev/input/by-vmsig/vmsig-$VM-$3
                        _miss=""
                        for _p in "VMSIG_VM=$VM" "VMSIG_ROLE=$3" "LIBINPUT_IGNORE_DEVICE=1" "DEVLINKS=$_link"; do
                                echo "$_out" | grep -qx "$_p" || _miss="$_miss $_p"
                        done
                        echo "$_out" | grep -q '^TAGS=.*:vmsig:' || _miss="$_miss TAGS:vmsig"
                        [ "$(readlink -f "$_link")" = "$2" ] || _miss="$_miss link->$(readlink -f "$_link")"
                        [ "$(stat -c '%G %a' "$2")" = "kvm 660" ] || _miss="$_miss perms:$(stat -c '%G %a' "$2")"
                        if [ -z "$_miss" ]; then pass "$1"; else fail "$1" "missing:$_miss"; fi
                }
                udev_check udev-rule-keyboard "$KEYBOARD" kbd
                udev_check udev-rule-pointer "$POINTER" ptr
                # Look-alikes: names and ids anyone allowed to open /dev/uinput can
                # choose. None may be linked, tagged or given to kvm, and nothing of
                # the name may reach a shell.
                n=0
                lookalike() { # CHECK NAME PHYS VENDOR PRODUCT
                        n=$((n + 1))
                        $B/vmsig-uinput-lookalike "$2" "$3" "$4" "$5" >$W/look$n.out 2>&1 &
                        _pid=$!
                        if ! wait_for 10 grep -q '^/dev/input/event' $W/look$n.out; then
                                fail "$1" "lookalike not created: $(cat $W/look$n.out)"
                                kill $_pid
                                return
                        fi
                        _node=$(head -n 1 $W/look$n.out)
                        _out=$($B/udevadm test --action=add "/sys/class/input/${_node#/dev/input/}" 2>&1)
                        if echo "$_out" | grep -qE '^(VMSIG_|DEVLINKS=.*by-vmsig|TAGS=.*:vmsig:)' ||
                                [ "$(stat -c %G "$_node")" = kvm ] || [ -e /tmp/pwned ]; then
                                fail "$1" "$(echo "$_out" | grep -E '^(VMSIG_|DEVLINKS|TAGS)|PROGRAM' | tr '\n' '|')"
                        else
                                pass "$1"
                        fi
                        kill $_pid
                        wait $_pid 2>/dev/null
                }
                # shellcheck disable=SC2016 # the $(...) is the attack, kept literal
                lookalike udev-ignores-shell-in-name 'vmsig $(touch /tmp/pwned) keyboard' vmsig/x/kbd 5653 0001
                lookalike udev-ignores-slash-in-name 'vmsig ../../x keyboard' vmsig/x/kbd 5653 0001
                lookalike udev-ignores-four-words 'vmsig a b keyboard' vmsig/a/kbd 5653 0001
                lookalike udev-ignores-option-name 'vmsig -n keyboard' vmsig/-n/kbd 5653 0001
                lookalike udev-ignores-other-vendor 'vmsig ok keyboard' vmsig/ok/kbd 1234 0001
                lookalike udev-ignores-role-mismatch 'vmsig ok keyboard' vmsig/ok/kbd 5653 0002
                lookalike udev-ignores-other-phys 'vmsig ok keyboard' usb-0000:00:14.0-1/input0 5653 0001
        else
                fail udev-rule "udevadm or the rule file missing in the guest"
        fi
fi

# ---- vmsigd with the VM's input through the holder ----
cat >$W/vmsigd.conf <<EOF
[daemon]
socket = $W/vmsigd.sock
trigger_dir = $W/vms
audit = file:$W/audit.log
EOF
# No QEMU in here: vmhost and memctx wait for QMP and RAM; input needs neither.
umask 022
cat >$W/vms/.$VM.tmp <<EOF
name=$VM
driver=qemu
qmp=$W/qmp-$VM.sock
ram=/dev/shm/$VM.ram
input_options=uinput=$W/uinput/$VM.sock
EOF
mv $W/vms/.$VM.tmp $W/vms/$VM
DPID=""
start_vmsigd() {
        : >$W/vmsigd.log
        $B/vmsigd -c $W/vmsigd.conf >>$W/vmsigd.log 2>&1 &
        DPID=$!
        if wait_for 20 grep -q 'vmsigd: ready:' $W/vmsigd.log &&
                wait_for 20 sh -c "$B/vmsigctl -s $W/vmsigd.sock list | grep -q '$VM'"; then
                pass "vmsigd-start-$1"
        else
                fail "vmsigd-start-$1" "$(tail -n 20 $W/vmsigd.log)"
                return 1
        fi
}
stop_vmsigd() { # SIGNAL
        kill -"$1" "$DPID" 2>/dev/null
        wait "$DPID" 2>/dev/null
        DPID=""
}
ctl() { $B/vmsigctl -s $W/vmsigd.sock "$@"; }

MARK=0
mark() { MARK=$(wc -l <$FR); }
frames() { # LABEL: the frames of LABEL since the mark, one per line
        tail -n +$((MARK + 1)) $FR | awk -v l="$1" '$1 == "FRAME" && $2 == l { $1 = ""; $2 = ""; sub(/^ +/, ""); print }'
}
# shellcheck disable=SC2317 # called through wait_for
count_at_least() { [ "$(frames "$1" | wc -l)" -ge "$2" ]; }
# expect NAME LABEL FRAME...: exactly these frames on LABEL since the mark.
expect() {
        _name=$1 _label=$2
        shift 2
        _want=$(printf '%s\n' "$@")
        wait_for 10 count_at_least "$_label" $#
        usleep 200000 # anything extra would already be queued behind them
        _got=$(frames "$_label")
        if [ "$_got" = "$_want" ]; then
                pass "$_name"
        else
                fail "$_name" "$_label frames: got [$(echo "$_got" | tr '\n' '|')] want [$(echo "$_want" | tr '\n' '|')]"
        fi
}
# inject NAME vmsigctl-input-args...: the command must succeed
inject() {
        _name=$1
        shift
        mark
        if ! _o=$(ctl input $VM "$@" 2>&1); then
                fail "$_name" "vmsigctl input $VM $*: $_o"
                return 1
        fi
}

# the pair still there, and the reader never saw it go
nodes_alive() {
        [ "$(sysname "$KEYBOARD" name)" = "vmsig $VM keyboard" ] && [ "$(sysname "$POINTER" name)" = "vmsig $VM pointer" ] &&
                ! grep -q '^GONE' $FR
}

if [ "$PART" = core ]; then
        start_vmsigd first || finish
        # No QEMU runs in here: had vmctl fallen back to QMP, every command below
        # would fail; frames on the devices prove the uinput path.
        sed 's/^/  vmsigd: /' $W/vmsigd.log

        inject key-a key a && expect key-a kbd "KEY_30=1" "KEY_30=0"
        inject key-chord key leftctrl leftalt delete &&
                expect key-chord kbd "KEY_29=1" "KEY_56=1" "KEY_111=1" "KEY_111=0" "KEY_56=0" "KEY_29=0"
        inject move-abs-one-frame move 1000 2000 && expect move-abs-one-frame ptr "ABS_X=1000 ABS_Y=2000"
        inject move-abs-max move 32767 0 && expect move-abs-max ptr "ABS_X=32767 ABS_Y=0"
        inject move-rel rel -5 3 && expect move-rel ptr "REL_X=-5 REL_Y=3"
        inject move-rel-x-only rel 7 0 && expect move-rel-x-only ptr "REL_X=7"
        inject click-left click left && expect click-left ptr "BTN_LEFT=1" "BTN_LEFT=0"
        inject click-right click right && expect click-right ptr "BTN_RIGHT=1" "BTN_RIGHT=0"
        inject click-middle click middle && expect click-middle ptr "BTN_MIDDLE=1" "BTN_MIDDLE=0"
        inject wheel-up wheel 3 && expect wheel-up ptr "REL_WHEEL=1" "REL_WHEEL=1" "REL_WHEEL=1"
        inject wheel-down wheel -2 && expect wheel-down ptr "REL_WHEEL=-1" "REL_WHEEL=-1"
        inject type-text type "Hi" &&
                expect type-text kbd "KEY_42=1" "KEY_35=1" "KEY_35=0" "KEY_42=0" "KEY_23=1" "KEY_23=0"

        # The grab toggle: both Ctrl keys held would detach the devices from the VM
        # (QEMU input-linux grab-toggle=ctrl-ctrl). The second Ctrl is refused; the
        # first one is released; the guest never sees the second.
        mark
        if o=$(ctl input $VM key leftctrl rightctrl 2>&1); then
                fail grab-toggle-refused "vmsigctl accepted both Ctrl keys: $o"
        else
                case $o in
                *grab*) pass grab-toggle-refused ;;
                *) fail grab-toggle-refused "refused, but the message does not say why: $o" ;;
                esac
                echo "  vmsigctl: $o"
        fi
        expect grab-toggle-not-delivered kbd "KEY_29=1" "KEY_29=0"
        mark
        if o=$(ctl input $VM key rightctrl leftctrl 2>&1); then
                fail grab-toggle-refused-reverse "vmsigctl accepted both Ctrl keys: $o"
        else
                pass grab-toggle-refused-reverse
        fi
        expect grab-toggle-reverse-not-delivered kbd "KEY_97=1" "KEY_97=0"
        mark
        if o=$(ctl input $VM move 40000 1 2>&1); then
                fail move-out-of-range-refused "accepted: $o"
        else
                pass move-out-of-range-refused
        fi
        inject after-refusals key b && expect after-refusals kbd "KEY_48=1" "KEY_48=0"

        # ---- the devices outlive vmsigd (graceful stop and crash) ----
        x=100
        for sig in TERM KILL; do
                x=$((x + 11))
                stop_vmsigd $sig
                if nodes_alive; then pass "devices-survive-vmsigd-$sig"; else fail "devices-survive-vmsigd-$sig" "$(grep GONE $FR)"; fi
                start_vmsigd "after-$sig" || continue
                # the same reader, on the same open evdev fds, sees the new commands
                # (a new position each time: evdev drops a repeat of the current one)
                inject "inject-after-$sig" move $x $((x * 2)) && expect "inject-after-$sig" ptr "ABS_X=$x ABS_Y=$((x * 2))"
                inject "key-after-$sig" key z && expect "key-after-$sig" kbd "KEY_44=1" "KEY_44=0"
        done
        stop_vmsigd TERM
fi

# ---- vmsig-uinput stops: the devices and its files go ----
kill -TERM $HOLD
wait $HOLD
hold_rc=$?
if [ $hold_rc = 0 ] && [ ! -e $W/uinput/$VM.sock ] && [ ! -e $W/uinput/$VM.env ]; then
        pass hold-stop-cleans-up
else
        fail hold-stop-cleans-up "rc=$hold_rc, left: $(ls $W/uinput)"
fi
if wait_for 10 sh -c "[ \$(grep -c '^GONE' $FR) = 2 ]"; then pass devices-gone-after-hold-stop; else fail devices-gone-after-hold-stop "$(tail -n 3 $FR)"; fi
kill $READER 2>/dev/null
echo "  frames seen: $(grep -c '^FRAME' $FR)"

if [ "$PART" = pkg ]; then
        # ---- under systemd (simulated: notify socket + fd store): a restart of the
        # holder takes the same devices back, as vmsig-uinput@.service promises ----
        VM=svc
        rm -f $W/vms/demo
        mkdir -p $W/sim
        # A placeholder takes the lowest free event number now; freed before the
        # restart, it goes to a look-alike of the keyboard (same name, phys, id),
        # which the restarted holder must not take for its own.
        $B/vmsig-uinput-lookalike "placeholder" x 1234 1 >$W/placeholder.out 2>&1 &
        PLACEHOLDER=$!
        wait_for 10 grep -q '^/dev/input/event' $W/placeholder.out
        $B/vmsig-fdstore-sim $W/sim $B/vmsig-uinput hold $VM --dir $W/uinput >$W/sim.out 2>&1 &
        SIM=$!
        if wait_for 10 grep -q '^SIM READY 1' $W/sim.out && [ "$(grep -c '^SIM STORED' $W/sim.out)" = 2 ]; then
                pass svc-ready-fds-stored
        else
                fail svc-ready-fds-stored "$(cat $W/sim.out)"
        fi
        # shellcheck disable=SC1090
        . $W/uinput/$VM.env
        K1=$KEYBOARD P1=$POINTER
        FR=$W/frames-svc.log
        $B/vmsig-evdev-frames kbd="$K1" ptr="$P1" >$FR 2>&1 &
        READER=$!
        wait_for 10 grep -q '^READING 2' $FR || fail svc-reader "$(cat $FR)"
        kill $PLACEHOLDER
        wait $PLACEHOLDER 2>/dev/null
        $B/vmsig-uinput-lookalike "vmsig $VM keyboard" vmsig/$VM/kbd 5653 0001 >$W/impostor.out 2>&1 &
        IMPOSTOR=$!
        wait_for 10 grep -q '^/dev/input/event' $W/impostor.out
        echo "  placeholder was $(cat $W/placeholder.out), look-alike keyboard is $(cat $W/impostor.out), real one $K1"
        rm -f $W/uinput/$VM.env
        kill -USR1 $SIM # systemctl restart vmsig-uinput@svc
        if wait_for 10 grep -q '^SIM READY 2' $W/sim.out; then pass svc-restarted; else fail svc-restarted "$(cat $W/sim.out)"; fi
        grep '^SIM EXITED 1' $W/sim.out | sed 's/^/  /'
        wait_for 10 test -f $W/uinput/$VM.env
        # shellcheck disable=SC1090
        . $W/uinput/$VM.env 2>/dev/null
        if nodes_alive && [ "$KEYBOARD" = "$K1" ] && [ "$POINTER" = "$P1" ]; then
                pass svc-restart-keeps-devices
        else
                fail svc-restart-keeps-devices "before $K1 $P1, after ${KEYBOARD:-?} ${POINTER:-?}; $(grep GONE $FR | tr '\n' ' ')"
        fi
        umask 022
        printf 'name=%s\ndriver=qemu\nqmp=%s\nram=%s\ninput_options=uinput=%s\n' $VM $W/qmp-$VM.sock /dev/shm/$VM.ram \
                $W/uinput/$VM.sock >$W/vms/.$VM.tmp
        mv $W/vms/.$VM.tmp $W/vms/$VM
        kill $IMPOSTOR
        wait $IMPOSTOR 2>/dev/null
        if start_vmsigd svc; then
                inject svc-inject-after-restart move 4321 1234 && expect svc-inject-after-restart ptr "ABS_X=4321 ABS_Y=1234"
                inject svc-key-after-restart key c && expect svc-key-after-restart kbd "KEY_46=1" "KEY_46=0"
                stop_vmsigd TERM
        fi
        kill -TERM $SIM # systemctl stop: the service ends, the store is flushed
        wait $SIM
        if wait_for 10 sh -c "[ \$(grep -c '^GONE' $FR) = 2 ]"; then pass svc-stop-devices-gone; else fail svc-stop-devices-gone "$(tail -n 3 $FR)"; fi
        kill $READER 2>/dev/null
fi
finish
