#!/bin/sh
# The libvirt qemu hook (packaging/libvirt-hook/qemu) against sample domain
# XML, in a temporary trigger directory:
#   - prepare/start begin write the trigger file by rename (new inode, no
#     temporary left behind), start after prepare leaves it alone;
#   - reconnect begin (a domain already running when libvirtd starts) and
#     attach begin write it too, and leave an identical file alone;
#   - the file names no RAM path (vmsigd asks QEMU for it), whatever
#     memory_backing_dir qemu.conf sets;
#   - stopped/release end remove it, twice is fine;
#   - VMs without a vmsig QMP socket are left alone;
#   - bad input exits non-zero with a clear message and writes nothing;
#   - virsh is never called.
# Runs the hook under every POSIX shell it finds (sh, dash, busybox sh).
# usage: test_libvirt_hook.sh HOOK DATADIR
set -u

hook=$1
data=$2
work=$(mktemp -d "${TMPDIR:-/tmp}/vmsig-hook-test.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT INT TERM

fails=0
checks=0
ok() { checks=$((checks + 1)); }
bad() {
        checks=$((checks + 1))
        fails=$((fails + 1))
        printf 'FAIL [%s]: %s\n' "$shell_name" "$*"
}

# A virsh that tells on anyone calling it.
mkdir -p "$work/bin"
cat >"$work/bin/virsh" <<EOF
#!/bin/sh
echo called >"$work/virsh-called"
exit 1
EOF
chmod +x "$work/bin/virsh"

export VMSIG_TRIGGER_DIR="$work/vms"
# What older hooks read (memory_backing_dir): the hook must not need it.
export VMSIG_LIBVIRT_QEMU_CONF="$data/qemu.conf"
export VMSIG_QMP_DIR=/run/vmsig/qmp

# run_hook ARGS... < XML: status in $rc, stderr in $err, stdout in $out
run_hook() {
        PATH="$work/bin:$PATH" $shell "$hook" "$@" >"$work/out" 2>"$work/err"
        rc=$?
        out=$(cat "$work/out")
        err=$(cat "$work/err")
}

# The trigger directory holds exactly the given names (ls -A, sorted).
expect_dir() {
        got=$(ls -A "$VMSIG_TRIGGER_DIR" | tr '\n' ' ')
        [ "$got" = "$1" ] && ok || bad "$2: trigger dir holds '$got', expected '$1'"
}

# expect_fail WHAT PATTERN ARGS... < XML: non-zero, message matches, nothing written
expect_fail() {
        what=$1
        pat=$2
        shift 2
        run_hook "$@"
        [ "$rc" -ne 0 ] && ok || bad "$what: exit 0, expected a failure"
        printf '%s\n' "$err" | grep -q "^vmsig hook: .*$pat" && ok ||
                bad "$what: message '$err' does not match '$pat'"
        expect_dir "" "$what"
}

inode() { ls -i "$1" | sed 's/^ *\([0-9]*\).*/\1/'; }

xml=$data/domain-vmsig.xml
expected="name=win10
driver=qemu
qmp=/run/vmsig/qmp/win10.sock"

test_one_shell() {
        rm -rf "$VMSIG_TRIGGER_DIR" "$work/virsh-called"
        mkdir "$VMSIG_TRIGGER_DIR"

        # prepare begin: written, readable, not group/other writable
        run_hook win10 prepare begin - <"$xml"
        [ "$rc" -eq 0 ] && ok || bad "prepare begin: exit $rc: $err"
        [ -z "$out$err" ] && ok || bad "prepare begin: unexpected output '$out$err'"
        expect_dir "win10 " "prepare begin"
        [ "$(cat "$VMSIG_TRIGGER_DIR/win10")" = "$expected" ] && ok ||
                bad "prepare begin: content is '$(cat "$VMSIG_TRIGGER_DIR/win10")'"
        case $(ls -l "$VMSIG_TRIGGER_DIR/win10") in
        -rw-r--r--*) ok ;;
        *) bad "prepare begin: mode $(ls -l "$VMSIG_TRIGGER_DIR/win10")" ;;
        esac

        # start begin with the same XML: the file stays as it is
        i1=$(inode "$VMSIG_TRIGGER_DIR/win10")
        run_hook win10 start begin - <"$xml"
        [ "$rc" -eq 0 ] && [ "$(inode "$VMSIG_TRIGGER_DIR/win10")" = "$i1" ] && ok ||
                bad "start begin after prepare: rc $rc, file rewritten"

        # a stale file with other content is replaced by rename: new inode
        printf 'name=win10\ndriver=stub\n' >"$VMSIG_TRIGGER_DIR/win10"
        i1=$(inode "$VMSIG_TRIGGER_DIR/win10")
        run_hook win10 start begin - <"$xml"
        [ "$rc" -eq 0 ] && ok || bad "start begin over a stale file: exit $rc: $err"
        [ "$(inode "$VMSIG_TRIGGER_DIR/win10")" != "$i1" ] && ok ||
                bad "start begin: stale file rewritten in place, not replaced by rename"
        [ "$(cat "$VMSIG_TRIGGER_DIR/win10")" = "$expected" ] && ok || bad "start begin: stale content kept"
        expect_dir "win10 " "start begin (no temporary left)"

        # other operations: nothing at all, nothing on stdout (migrate/restore
        # would take stdout as the new XML)
        for o in "started begin -" "migrate begin -" "restore begin -" "started end -"; do
                # shellcheck disable=SC2086
                run_hook win10 $o <"$xml"
                [ "$rc" -eq 0 ] && [ -z "$out" ] && ok || bad "$o: rc $rc, stdout '$out'"
        done
        expect_dir "win10 " "other operations"

        # stopped end removes; release end again is fine
        run_hook win10 stopped end - <"$xml"
        [ "$rc" -eq 0 ] && ok || bad "stopped end: exit $rc: $err"
        expect_dir "" "stopped end"
        run_hook win10 release end shutdown <"$xml"
        [ "$rc" -eq 0 ] && ok || bad "release end after stopped end: exit $rc: $err"
        # ... also with a name vmsig could never have used
        run_hook "../etc" release end - </dev/null
        [ "$rc" -eq 0 ] && ok || bad "release end of '../etc': exit $rc"

        # reconnect begin (libvirtd restarted, the domain runs): an identical
        # file is left alone, a lost one comes back; attach begin likewise
        run_hook win10 prepare begin - <"$xml"
        i1=$(inode "$VMSIG_TRIGGER_DIR/win10" 2>/dev/null)
        run_hook win10 reconnect begin - <"$xml"
        [ "$rc" -eq 0 ] && [ -z "$out" ] && [ "$(inode "$VMSIG_TRIGGER_DIR/win10")" = "$i1" ] && ok ||
                bad "reconnect begin over the same file: rc $rc, '$out$err', file rewritten"
        rm -f "$VMSIG_TRIGGER_DIR/win10"
        run_hook win10 reconnect begin - <"$xml"
        [ "$rc" -eq 0 ] && [ -z "$out" ] && ok || bad "reconnect begin: rc $rc, '$out$err'"
        [ "$(cat "$VMSIG_TRIGGER_DIR/win10" 2>&1)" = "$expected" ] && ok ||
                bad "reconnect begin: trigger file is '$(cat "$VMSIG_TRIGGER_DIR/win10" 2>&1)'"
        rm -f "$VMSIG_TRIGGER_DIR/win10"
        run_hook win10 attach begin - <"$xml"
        [ "$rc" -eq 0 ] && [ "$(cat "$VMSIG_TRIGGER_DIR/win10" 2>&1)" = "$expected" ] && ok ||
                bad "attach begin: rc $rc, '$err', file '$(cat "$VMSIG_TRIGGER_DIR/win10" 2>&1)'"
        expect_dir "win10 " "reconnect/attach"
        run_hook win10 stopped end - </dev/null
        expect_dir "" "reconnect/attach: stopped end"

        # a VM without a vmsig QMP socket is none of the hook's business
        run_hook "plain vm" prepare begin - <"$data/domain-plain.xml"
        [ "$rc" -eq 0 ] && [ -z "$err" ] && ok || bad "plain VM: rc $rc, '$err'"
        sed "s|unix:/run/vmsig/qmp/win10.sock|unix:/var/lib/other/win10.qmp|" "$xml" >"$work/x.xml"
        run_hook win10 prepare begin - <"$work/x.xml"
        [ "$rc" -eq 0 ] && ok || bad "QMP socket outside the vmsig directory: exit $rc"
        expect_dir "" "VMs that do not take part"

        # a long name: libvirt's directory takes its first 20 characters
        long=a-very-long-domain-name.x1
        sed "s|<name>win10</name>|<name>$long</name>|; s|id='7'|id='12'|" "$xml" >"$work/x.xml"
        run_hook "$long" prepare begin - <"$work/x.xml"
        grep -qx "name=$long" "$VMSIG_TRIGGER_DIR/$long" 2>/dev/null &&
                ! grep -q "^ram=" "$VMSIG_TRIGGER_DIR/$long" && ok ||
                bad "long name: rc $rc, $err, $(cat "$VMSIG_TRIGGER_DIR/$long" 2>&1)"
        run_hook "$long" release end - </dev/null
        expect_dir "" "long name removed"

        # one NUMA cell, shared through memAccess; default memory_backing_dir
        sed "/<access mode=/d; s|<cpu mode='host-passthrough' check='none' migratable='on'/>|<cpu mode='host-passthrough'>\\
    <numa>\\
      <cell id='0' cpus='0-1' memory='4194304' unit='KiB' memAccess='shared'/>\\
    </numa>\\
  </cpu>|" "$xml" >"$work/x.xml"
        VMSIG_LIBVIRT_QEMU_CONF=/nonexistent run_hook win10 prepare begin - <"$work/x.xml"
        [ "$(cat "$VMSIG_TRIGGER_DIR/win10" 2>&1)" = "$expected" ] && ok ||
                bad "NUMA cell: rc $rc, $err, $(cat "$VMSIG_TRIGGER_DIR/win10" 2>&1)"
        run_hook win10 stopped end - </dev/null
        expect_dir "" "NUMA VM removed"

        # invalid input: non-zero, a clear message, nothing written
        expect_fail "empty stdin" "not a libvirt domain XML" win10 prepare begin - </dev/null
        printf 'this is not XML\n' >"$work/x.xml"
        expect_fail "garbage" "not a libvirt domain XML" win10 prepare begin - <"$work/x.xml"
        sed '/<memoryBacking>/,/<\/memoryBacking>/d' "$xml" >"$work/x.xml"
        expect_fail "no memoryBacking" "needs file-backed guest RAM" win10 start begin - <"$work/x.xml"
        sed "s|<source type='file'/>|<source type='memfd'/>|" "$xml" >"$work/x.xml"
        expect_fail "memfd RAM" "needs file-backed guest RAM" win10 start begin - <"$work/x.xml"
        sed "/<access mode='shared'/d" "$xml" >"$work/x.xml"
        expect_fail "private RAM" "must be shared" win10 start begin - <"$work/x.xml"
        sed "s|<access mode='shared'/>|<access mode='shared'/><hugepages/>|" "$xml" >"$work/x.xml"
        expect_fail "hugepages" "hugepage" win10 start begin - <"$work/x.xml"
        sed "s|<cpu mode='host-passthrough' check='none' migratable='on'/>|<cpu><numa>\\
<cell id='0' cpus='0' memory='1048576' memAccess='shared'/>\\
<cell id='1' cpus='1' memory='1048576' memAccess='shared'/></numa></cpu>|" "$xml" >"$work/x.xml"
        expect_fail "two NUMA cells" "2 NUMA cells" win10 start begin - <"$work/x.xml"
        sed "s|<name>win10</name>|<name>win 10</name>|" "$xml" >"$work/x.xml"
        expect_fail "name with a blank" "not usable by vmsig" "win 10" start begin - <"$work/x.xml"
        expect_fail "name mismatch" "names the domain 'win10'" win11 start begin - <"$xml"
        sed "s|/run/vmsig/qmp/win10.sock|/run/vmsig/qmp/../../../etc/x.sock|" "$xml" >"$work/x.xml"
        expect_fail "QMP path with .." "not canonical" win10 start begin - <"$work/x.xml"
        expect_fail "no guest argument" "usage" "" prepare begin - <"$xml"
        rmdir "$VMSIG_TRIGGER_DIR"
        VMSIG_TRIGGER_DIR="$work/vms" expect_fail_nodir
        mkdir "$VMSIG_TRIGGER_DIR"

        [ ! -e "$work/virsh-called" ] && ok || bad "the hook called virsh"
}

expect_fail_nodir() {
        run_hook win10 prepare begin - <"$xml"
        [ "$rc" -ne 0 ] && printf '%s\n' "$err" | grep -q "trigger directory .* does not exist" && ok ||
                bad "missing trigger directory: rc $rc, '$err'"
        [ ! -e "$VMSIG_TRIGGER_DIR" ] && ok || bad "missing trigger directory: something was created"
}

shells=sh
command -v dash >/dev/null 2>&1 && shells="$shells dash"
command -v busybox >/dev/null 2>&1 && busybox sh -c true 2>/dev/null && shells="$shells busybox"
for shell_name in $shells; do
        case $shell_name in
        busybox) shell="busybox sh" ;;
        *) shell=$shell_name ;;
        esac
        before=$fails
        test_one_shell
        [ "$fails" -eq "$before" ] && echo "ok: the hook under $shell_name"
done
echo "$checks checks, $fails failed"
[ "$fails" -eq 0 ]
