# SPDX-License-Identifier: MIT
"""vmsig.Frame on its own (PNG bytes decoded back with zlib, the numpy view,
padded rows), and vm.frame() against a real vmsigd whose stub VM has a
memory context but no vgpu-stream producer in its RAM: NoProducerError.
The real producer in a real guest is test_vm_frame.py."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time

import pytest
from conftest import SRC, TIMEOUT
from pngcheck import read_png
from vgpu_pattern import pattern

import vmsig


def make_frame(width: int, height: int, n: int, pad: int = 0) -> vmsig.Frame:
    """A Frame of the test pattern, rows padded with pad junk bytes."""
    px = pattern(width, height, n)
    row = 4 * width
    data = b"".join(px[y * row:(y + 1) * row] + b"\xee" * pad for y in range(height))
    return vmsig.Frame(seq=n, timestamp_ns=123, width=width, height=height, stride=row + pad,
                       format="BGRA8888", nonce=0x1234, checksum=0, data=data)


def rgb_of(px: bytes) -> bytes:
    """BGRA -> RGB, pixel by pixel (the slow obvious way)."""
    return b"".join(bytes((px[i + 2], px[i + 1], px[i])) for i in range(0, len(px), 4))


@pytest.mark.parametrize("pad", [0, 12])
def test_png_decodes_to_the_same_pixels(tmp_path, pad):
    f = make_frame(40, 9, 77, pad)
    want = rgb_of(pattern(40, 9, 77))
    assert f.rgb() == want
    assert f.pixel(5, 3) == tuple(want[3 * (3 * 40 + 5):3 * (3 * 40 + 5) + 3])
    path = tmp_path / "shot.png"
    f.save_png(path)
    assert os.listdir(tmp_path) == ["shot.png"]  # no temporary file left
    w, h, rgb = read_png(path.read_bytes())
    assert (w, h) == (40, 9)
    assert rgb == want
    assert "data" not in repr(f) and "seq=77" in repr(f)


def test_save_png_to_a_bad_path_leaves_nothing(tmp_path):
    f = make_frame(8, 2, 1)
    with pytest.raises(OSError):
        f.save_png(tmp_path / "no-such-dir" / "x.png")
    assert os.listdir(tmp_path) == []


def test_pixel_outside_is_an_index_error():
    f = make_frame(8, 2, 1)
    with pytest.raises(IndexError, match=r"\(8, 0\).*8x2"):
        f.pixel(8, 0)


@pytest.mark.parametrize("pad", [0, 8])
def test_numpy_view(pad):
    numpy = pytest.importorskip("numpy")
    f = make_frame(16, 5, 3, pad)
    a = f.to_numpy()
    assert a.shape == (5, 16, 4) and a.dtype == numpy.uint8
    px = pattern(16, 5, 3)
    for y in range(5):
        for x in range(16):
            assert tuple(int(v) for v in a[y, x]) == tuple(px[4 * (16 * y + x):4 * (16 * y + x) + 4])
    assert int(a[2, 7, 0]) == (7 + 4 * 3) & 255 and int(a[2, 7, 3]) == 255
    assert not a.flags.writeable
    assert (f.array == a).all()


def test_numpy_missing_is_a_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "numpy", None)  # import numpy now fails
    with pytest.raises(ImportError, match="needs numpy"):
        make_frame(8, 2, 1).to_numpy()


def test_no_producer_on_a_stub_vm(stub):
    with vmsig.connect(stub.sock, name="pytest-frame") as bus:
        vm = bus.vm("stub1", wait=TIMEOUT)
        t0 = time.monotonic()
        with pytest.raises(vmsig.NoProducerError) as ei:
            vm.frame(timeout=1.0)
        took = time.monotonic() - t0
        assert ei.value.code == -errno.ENOENT
        assert "stub1" in str(ei.value) and "no vgpu-stream producer" in str(ei.value)
        assert isinstance(ei.value, vmsig.FrameError) and isinstance(ei.value, vmsig.VmsigError)
        assert took >= 1.0  # it looked for the whole timeout
        # the reader is kept: a second call rescans the same RAM view
        with pytest.raises(vmsig.NoProducerError):
            vm.frame(timeout=0)
        with pytest.raises(vmsig.NoProducerError):
            vm.producer(timeout=0)
        with pytest.raises(vmsig.NoProducerError):
            list(vm.frames(timeout=0.3))
        with pytest.raises(vmsig.NoProducerError):
            vm.frame_request("pause", timeout=0.3)
        for bad in ("jump", "fps=", "fps=-1", "region=1,2,3", "region=a,b,c,d"):
            with pytest.raises(ValueError, match="pause, resume, full"):
                vm.frame_request(bad)


def test_frame_needs_the_memctx_capability(start_daemon):
    d = start_daemon("[uid:0]\ncaps = roster,status\n")
    d.add_vm("nomem")
    with vmsig.connect(d.sock) as bus:
        vm = bus.vm("nomem", wait=TIMEOUT)
        with pytest.raises(vmsig.PermissionDenied, match="reading frames needs the memctx capability"):
            vm.frame()


def test_missing_library_is_a_clear_import_error():
    code = ("import vmsig._vgpu as v\ntry:\n    v.lib()\nexcept ImportError as e:\n    print(e)\n")
    env = dict(os.environ, VMSIG_LIBVGPU="/nonexistent/libvgpu-perception.so.0", PYTHONPATH=SRC)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert "cannot load libvgpu-perception (/nonexistent/libvgpu-perception.so.0)" in out.stdout, out
    assert "VMSIG_LIBVGPU" in out.stdout
