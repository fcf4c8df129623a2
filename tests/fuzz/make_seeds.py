#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the structured seeds of fuzz_vmhost, fuzz_client and
fuzz_memctx_regs into corpus/ (run from anywhere; idempotent).

The real-* seeds are not made here: they are QEMU 7.2 output captured from
the test guest (tests/vm/qemu.sh, q35, TCG, Debian 6.1 cloud kernel) over
QMP, `info registers` at prelaunch (-S), in the kernel's decompressor and in
a running kernel; the reply and event shapes used below are the ones that
guest sent (CRLF line ends, "timestamp" first, RESET/SHUTDOWN data with
"guest" and "reason")."""
import os
import re
import struct

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'corpus')


def write(harness, seeds):
    d = os.path.join(CORPUS, harness)
    os.makedirs(d, exist_ok=True)
    for k, v in seeds.items():
        with open(os.path.join(d, k), 'wb') as f:
            f.write(v)


# ---- fuzz_vmhost: scripts of what QEMU does (ops: see fuzz_vmhost.c) ----
G=b'\x00'; HUP=b'\x06'
def R(t,a=0): return bytes([2,t,a])
def E(n,v=0): return bytes([3,n,v])
def P(op,flags=0): return bytes([4,op|flags])
def Q(a=0): return bytes([5,a])
def J(v,err=False): return bytes([7,len(v)|(0x80 if err else 0)])+v
def RAW(b): return bytes([1,len(b)])+b
RUN,PAUSED,SHUT,PRE,SUSP,PANIC=0,1,2,3,4,5
hs = G + R(0) + R(1,RUN)          # greeting, caps, the adapter's query-status
seeds = {
 'connect-running': hs,
 'stop-resume-events': hs + E(2) + R(1,PAUSED) + E(3) + R(1,RUN),
 'reset-event-reason': hs + E(1,1) + R(1,RUN),
 'shutdown-guest': hs + E(0,2) + R(1,SHUT),
 'panicked': hs + E(5,3) + R(1,PANIC),
 'powerdown-event': hs + E(4) + R(1,RUN),
 'status-query': hs + Q() + R(1,RUN) + Q() + R(1,PRE),
 'query-malformed': hs + Q() + R(7) + Q() + R(5,3) + Q() + J(b'{"status": "running", "singlestep": false, "running": true}'),
 'power-pause-resume': hs + P(4) + E(2) + R(0) + R(1,PAUSED) + P(5) + E(3) + R(0) + R(1,RUN),
 'power-off-quit': hs + P(2) + E(0,1) + R(0) + HUP,
 'power-reset': hs + P(3) + E(1,1) + R(0) + R(1,RUN),
 'power-powerdown': hs + P(6) + E(4) + R(0) + R(1,RUN),
 'on-from-shutdown': hs + E(0,2) + R(1,SHUT) + P(1) + R(1,SHUT) + E(1,1) + R(0) + R(1,RUN) + R(0),
 'on-reset-parked': hs + E(0,2) + R(1,SHUT) + P(1) + R(1,SHUT) + R(0) + E(1,1) + R(1,RUN) + R(0),
 'on-becomes-shutdown': hs + E(0,2) + R(1,SHUT) + P(1) + R(1,SHUT) + E(0,1) + R(0) + R(1,SHUT),
 'on-parked-timeout': hs + E(0,2) + R(1,SHUT) + P(1) + R(1,SHUT) + R(0) + bytes([5, 0xff]),
 'on-suspended-wakeup': hs + E(6) + R(1,SUSP) + P(1) + R(1,SUSP) + R(3),
 'on-already-running': hs + P(1) + R(1,RUN) + P(1) + P(1),
 'on-paused-cont': hs + E(2) + R(1,PAUSED) + P(1) + R(1,PAUSED) + R(0),
 'errors': hs + P(3) + R(4) + P(4) + R(3) + P(5) + R(6) + P(6,0x80) + J(b'{"class": "GenericError", "desc": "x"}', True),
 'bad-bodies': hs + P(0) + P(7) + P(4,0x40) + Q(0x40),
 'not-connected': P(1) + Q() + P(4) + G + R(0) + R(1,RUN),
 'hangup-inflight': hs + P(1) + Q() + P(3) + HUP,
 'hangup-parked-reconnect': hs + E(0,2) + R(1,SHUT) + P(1) + R(1,SHUT) + R(0) + HUP + G + R(0) + R(1,SHUT),
 'event-before-caps': G + E(2) + R(0) + R(1,PAUSED),
 'event-odd-data': hs + E(0,4) + R(1,RUN) + E(1,5) + R(1,RUN) + E(5,6) + R(1,RUN) + E(8) + E(9) + E(10) + E(11),
 'raw-real-lines': G + RAW(b'{"return": {}, "id": 1}\r\n') + RAW(b'{"return": {"status": "running", "singlestep": false, "running": true}, "id": 2}\r\n') + RAW(b'{"timestamp": {"seconds": 1796013357, "microseconds": 671831}, "event": "STOP"}\r\n') + R(1,PAUSED),
}
write('fuzz_vmhost', seeds)


# ---- fuzz_client: the daemon's writes and fds (ops: see fuzz_client.c) ----
MEMCTX,ROSTER,STATUS,ACK,DIAG,GRANT,DENY,REVOKE=0,1,2,3,4,5,6,7
F_RET=8; F_FD=16
def ev(k, flags, body, fd=0, split=0, bl=255):
    return bytes([2,k,flags,bl,fd,split]) + struct.pack('<H', len(body)) + body
def raw(b, fd=0): 
    out=b''
    while b:
        c=b[:255]; b=b[255:]; out += bytes([0,len(c),fd]) + c; fd=0
    return out
READ=b'\x01'; EOF=b'\x03'
def reply(corr, rt, res, msg):
    p = struct.pack('<QHHi', corr, rt, 0, res) + msg.encode().ljust(160, b'\0')
    return struct.pack('<IHH', len(p), 7, 0) + p
def memctx_body(epoch, valid, ranges, root=0x1000, paging=4, os_=3):
    b = struct.pack('<QQBBBBI', epoch, root, valid, paging, os_, len(ranges), 0)
    for r in ranges: b += struct.pack('<QQQ', *r)
    return b
def roster(change, seams, run, name):
    return struct.pack('<BBBBI', change, seams, run, 0, 0) + name.encode().ljust(64, b'\0')
def status(run, reason):
    return struct.pack('<B7x', run) + reason.encode().ljust(160, b'\0')[:160]
def lease(cls, reason, hid, uid, pid, name):
    return struct.pack('<BBHIIi', cls, reason, 0, hid, uid, pid) + name.encode().ljust(64, b'\0')
stub = [(0, 4<<20, 0), (1<<32, 4<<20, 4<<20)]
q35 = [(0, 0x80000000, 0), (1<<32, 0x40000000, 0x80000000)]
sub = raw(reply(1, 5, 0, "subscribed")) 
retained = ev(ROSTER, F_RET, roster(1, 0xe, 1, "vm1")) + ev(STATUS, F_RET, status(1, "attached")) + ev(MEMCTX, F_RET|F_FD, memctx_body(1,1,stub), fd=1)
seeds = {
 'subscribe-replay': sub + retained + READ,
 'replay-one-read': sub + retained,
 'memctx-q35-linux': sub + ev(MEMCTX, F_FD, memctx_body(3,1,q35,root=0x2a0c000,os_=1), fd=1) + READ,
 'memctx-invalidate': ev(MEMCTX, F_FD, memctx_body(1,1,stub), fd=1) + READ + ev(MEMCTX, 0, memctx_body(1,0,stub)) + READ,
 'memctx-split-fd-early': ev(MEMCTX, F_FD, memctx_body(2,1,stub), fd=1, split=40) + READ,
 'memctx-split-fd-late': ev(MEMCTX, F_FD, memctx_body(2,1,stub), fd=0x11, split=40) + READ,
 'memctx-split-read-between': sub + ev(STATUS, 0, status(2, "STOP")) + READ + ev(MEMCTX, F_FD, memctx_body(4,1,stub), fd=1) + READ,
 'two-memctx-one-read': ev(MEMCTX, F_FD, memctx_body(1,1,stub), fd=1) + ev(MEMCTX, F_FD, memctx_body(2,1,stub), fd=1) + READ,
 'bad-fd-on-status': ev(STATUS, 0, status(1, "x"), fd=1) + READ,
 'bad-memctx-no-fd': ev(MEMCTX, F_FD, memctx_body(1,1,stub)) + READ,
 'bad-rw-fd': ev(MEMCTX, F_FD, memctx_body(1,1,stub), fd=2) + READ,
 'bad-wo-fd': ev(MEMCTX, F_FD, memctx_body(1,1,stub), fd=3) + READ,
 'bad-two-fds': ev(MEMCTX, F_FD, memctx_body(1,1,stub), fd=4) + READ,
 'bad-memctx-overlap': ev(MEMCTX, F_FD, memctx_body(1,1,[(0,8192,0),(4096,4096,8192)]), fd=1) + READ,
 'bad-memctx-wrap': ev(MEMCTX, 0, memctx_body(1,0,[(0xfffffffffffff000,0x2000,0)])) + READ,
 'bad-memctx-17-ranges': ev(MEMCTX, 0, struct.pack('<QQBBBBI', 1, 0x1000, 0, 4, 3, 17, 0) + b''.join(struct.pack('<QQQ',i<<20,4096,i<<12) for i in range(16))) + READ,
 'memctx-16-ranges': ev(MEMCTX, F_FD, memctx_body(5,1,[(i<<20,4096,i<<12) for i in range(16)]), fd=1) + READ,
 'bad-memctx-short-body': ev(MEMCTX, 0, memctx_body(1,0,stub), bl=20) + READ,
 'leases-acks-diag': ev(GRANT, 0, lease(1,0,7,1000,1234,"vmsigctl")) + ev(DENY, 0, lease(1,0,7,1000,1234,"vmsigctl")) + ev(REVOKE, 0, lease(1,2,7,1000,1234,"vmsigctl")) + READ + ev(ACK, 0, struct.pack('<iHHQ', -16, 40, 0, 0) + b'on: already in progress'.ljust(160,b'\0')) + ev(DIAG, 0, struct.pack('<iI', -11, 0) + b'memctx registers: retrying'.ljust(160,b'\0')) + READ,
 'error-frame': raw(struct.pack('<IHH', 168, 3, 0) + struct.pack('<iI', -105, 0) + b'too slow: queue over its limit'.ljust(160, b'\0')) + READ,
 'eof-mid-frame': ev(MEMCTX, F_FD, memctx_body(1,1,stub), fd=1, split=100)[:-50] + EOF + READ,
 'fd-on-partial-then-eof': raw(b'\x10\x00', fd=1) + EOF + READ,
}
write('fuzz_client', seeds)


# ---- fuzz_memctx_regs: `info registers` text, NUL, guest RAM writes ----
def real(name):
    return open(os.path.join(CORPUS, 'fuzz_memctx_regs', name)).read()
running = real('real-running-7.2')
P,RW,US,PS=1,2,4,0x80
def W(gpa, val): return struct.pack('<HQ', gpa//8, val)
def idx(va, lvl): return (va >> (12 + 9*(lvl-1))) & 511
def ram4(root=0x1000, swapper=0x8000, fourk=False, five=False):
    w = b''
    if swapper is None: swapper = 0x1f000  # written, then wiped below
    nosw = swapper == 0x1f000
    top = root
    if five:
        # PML5 at root: entry 511 and 508 share the PML4 at 0xa000 (la57: kernel top index 511)
        w += W(root + 511*8, 0xa000|P|RW) + W(root + 0*8, 0x7000|P|RW|US)
        w += W(swapper + 511*8, 0xa000|P|RW)
        top = 0xa000
        w += W(top + 511*8, 0x2000|P|RW) + W(top + 508*8, 0x4000|P|RW)
    else:
        w += W(root + 0*8, 0x7000|P|RW|US)                 # a process: user half in use
        w += W(root + 511*8, 0x2000|P|RW) + W(root + 508*8, 0x4000|P|RW)
        w += W(swapper + 511*8, 0x2000|P|RW) + W(swapper + 508*8, 0x4000|P|RW)  # swapper_pg_dir: kernel half only
    w += W(0x2000 + 510*8, 0x3000|P|RW)                      # PDPT: -2 GiB
    if fourk:
        w += W(0x3000, 0xb000|P|RW)                          # PD -> PT
        w += b''.join(W(0xb000 + i*8, (i*0x1000)|P|RW) for i in range(32))  # 128 KiB of 4 KiB pages
    else:
        w += W(0x3000, 0|P|RW|PS)                            # the kernel image: a 2 MiB page at GPA 0
    w += W(0x4000, 0x5000|P|RW) + W(0x5000, 0x6000|P|RW) + W(0x6000, 0x9000|P|RW)  # cpu entry area: the IDT
    if nosw: w += W(0x1f000 + 511*8, 0) + W(0x1f000 + 508*8, 0)
    return w
def sub(text, **kv):
    for k,v in kv.items():
        text = re.sub(k + r'=\s*[0-9a-f]+', '%s=%016x' % (k, v), text, count=1)
    return text
seeds = {
 'linux-4level-swapper': sub(running, CR3=0x1000).encode() + b'\0' + ram4(),
 'linux-4level-4k-pages': sub(running, CR3=0x1000).encode() + b'\0' + ram4(fourk=True),
 'linux-5level-swapper': sub(running, CR3=0x1000, CR4=0x6b0|0x1000).encode() + b'\0' + ram4(five=True),
 'linux-kpti-pcid': sub(running, CR3=0x11801).encode() + b'\0' + ram4(root=0x10000),
 'linux-no-swapper': sub(running, CR3=0x1000).encode() + b'\0' + ram4(swapper=None) ,
 'smm': sub(running, CR3=0x1000).replace('SMM=0','SMM=1').encode() + b'\0' + ram4(),
 'bad-no-cr3': running.replace('CR3=','CRx=').encode(),
 'bad-cr3-not-hex': running.replace('CR3=', 'CR3=zz').encode(),
 'bad-idt-missing': '\n'.join(l for l in running.split('\n') if not l.startswith('IDT')).encode(),
 'bad-empty': b'',
 'bad-truncated': running[:running.index('CR0=')+20].encode(),
}
write('fuzz_memctx_regs', seeds)
