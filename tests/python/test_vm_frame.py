# SPDX-License-Identifier: MIT
"""vm.frame() against the real producer in a real TCG guest (label vm):
the guest's initrd gets the static vgpu-stream from
tests/vgpu/guest/make-initrd.sh (`--source pattern`, 320x200, 30 fps), the
guest is registered with a real vmsigd, and the package reads its frames
through the memory context with libvgpu-perception. Checks: a frame
arrives; its pixels are the documented pattern (docs/vgpu-stream.md §10,
recomputed in Python); save_png writes a PNG that decodes (zlib) to the
same pixels; the numpy view; frames() yields increasing sequence numbers;
a pause request is acknowledged and shown in the producer's header; after
a guest reset (a new memory-context epoch) frames come from the new
producer run."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time

import pytest
from conftest import wait_for
from guest_harness import BOOT_TIMEOUT, Guest
from pngcheck import read_png
from vgpu_pattern import checksum, pattern

import vmsig

W, H = 320, 200


@pytest.fixture
def producer_guest():
    for var in ("VGPU_STREAM", "VGPU_MKINITRD", "VMSIG_GUEST_DIR"):
        if not os.environ.get(var):
            pytest.fail(f"{var} is not set (run through ctest)")
    out = tempfile.mkdtemp(prefix="vmsig-pyframe-initrd.", dir="/tmp")
    g = None
    try:
        # one long producer run (no restart in the middle of the test)
        subprocess.run([os.environ["VGPU_MKINITRD"], "pattern", os.environ["VMSIG_GUEST_DIR"],
                        os.environ["VGPU_STREAM"], out], check=True, timeout=120,
                       env=dict(os.environ, VGPU_FRAMES="1000000"))
        g = Guest("frame", env_dir=out, extra=["-action", "reboot=reset"])  # a reset reboots
        yield g
    finally:
        if g is not None:
            g.stop()
            assert not os.path.exists(g.shm)
        shutil.rmtree(out, ignore_errors=True)


def check_pattern(f: vmsig.Frame) -> None:
    assert (f.width, f.height, f.stride, f.format) == (W, H, 4 * W, "BGRA8888")
    assert len(f.data) == f.stride * f.height
    assert checksum(f.data) == f.checksum
    n = int.from_bytes(f.data[8:16], "little")
    assert n == f.seq, "the pattern is drawn with n = frame_seq"
    assert f.data == pattern(W, H, n), f"frame {f.seq}: pixels are not the pattern"


def test_frames_of_the_real_producer(producer_guest, daemon, tmp_path):
    guest = producer_guest
    t0 = time.monotonic()
    print("# waiting for the guest to boot (TCG)", flush=True)
    wait_for(lambda: guest.proc.poll() is not None or "VGPU-RUN 1" in guest.serial_text(),
             timeout=BOOT_TIMEOUT, what="the guest to boot and start vgpu-stream")
    assert guest.proc.poll() is None, "QEMU exited"
    tmp = os.path.join(daemon.trig, ".g.tmp")
    with open(tmp, "w") as fh:
        fh.write(f"name=guest\ndriver=qemu\nqmp={guest.qmp}\nram={guest.shm}\n")
    os.rename(tmp, os.path.join(daemon.trig, "guest.vm"))
    print(f"# booted in {time.monotonic() - t0:.1f} s", flush=True)

    with vmsig.connect(daemon.sock, name="pytest-frame") as bus:
        vm = bus.vm("guest", wait=30)
        vm.wait_ready(seams=vmsig.Seam.MEMCTX, memory=True, timeout=120)
        try:
            f = vm.frame(timeout=60)
        except vmsig.FrameError:
            print("# guest serial (tail):", guest.serial_text()[-3000:])
            raise
        print(f"# first frame: {f} after {time.monotonic() - t0:.1f} s", flush=True)
        check_pattern(f)

        # PNG: decoded back with zlib, the same pixels as RGB
        path = tmp_path / "shot.png"
        f.save_png(path)
        w, h, rgb = read_png(path.read_bytes())
        assert (w, h) == (W, H)
        px = f.data
        assert rgb[0::3] == px[2::4] and rgb[1::3] == px[1::4] and rgb[2::3] == px[0::4]

        # numpy: shape and values (B, G, R, A) of the formula
        try:
            import numpy
        except ImportError:
            numpy = None
        if numpy is not None:
            a = f.to_numpy()
            assert a.shape == (H, W, 4) and a.dtype == numpy.uint8
            n = f.seq
            for x, y in ((0, 1), (5, 7), (319, 199), (100, 50)):
                assert tuple(int(v) for v in a[y, x]) == ((x + 4 * n) & 255, (y + n) & 255, (x ^ y ^ n) & 255, 255)

        # the reader is kept: later frames cost no new RAM scan
        st = vm.producer()["stats"]
        scans = st["scans"]
        t1 = time.perf_counter()
        for _ in range(20):
            vm.frame()
        t2 = time.perf_counter()
        f.to_png()
        t3 = time.perf_counter()
        print(f"# figures: discovery {st['scans']} scan(s) of {st['scan_bytes'] >> 20} MiB in "
              f"{st['scan_ns'] / 1e6:.0f} ms; frame() {(t2 - t1) / 20 * 1e3:.2f} ms per {W}x{H} frame; "
              f"to_png {(t3 - t2) * 1e3:.1f} ms", flush=True)
        got = []
        for fr in vm.frames(timeout=30):
            got.append(fr)
            if len(got) == 5:
                break
        seqs = [fr.seq for fr in got]
        print(f"# frames() gave seq {seqs}", flush=True)
        assert len(got) == 5 and all(b > a for a, b in zip(seqs, seqs[1:]))
        assert len({fr.nonce for fr in got}) == 1
        check_pattern(got[-1])
        later = vm.frame()
        assert later.seq >= got[-1].seq
        info = vm.producer()
        assert info["stats"]["scans"] == scans and info["width"] == W and info["nonce"] == later.nonce

        # a control request through CMD_MEMWRITE (PHYS) under the memwrite lease
        vm.frame_request("pause", timeout=30)
        assert vm.producer()["paused"]
        vm.frame_request("resume", timeout=30)
        assert not vm.producer()["paused"]
        nxt = next(vm.frames(timeout=30))
        assert nxt.seq >= later.seq

        # a guest reset: a new epoch; the reader finds the new producer run,
        # both for an iterator that was running and for frame()
        it = vm.frames(timeout=90)
        before = next(it)
        epoch = vm.memory().epoch
        vm.reset()
        print("# reset; waiting for the new producer run", flush=True)
        fresh = None
        for fr in it:
            if fr.nonce != before.nonce:
                fresh = fr
                break
        assert fresh is not None, "frames() ended without a frame of the new producer run"
        print(f"# after the reset: {fresh}", flush=True)
        check_pattern(fresh)
        assert vm.memory().epoch > epoch
        again = vm.frame()
        assert again.nonce == fresh.nonce and again.seq >= fresh.seq
        print(f"# done in {time.monotonic() - t0:.1f} s", flush=True)
