#!/usr/bin/env python3
"""Seeds for tests/fuzz/fuzz_vgpu_perception: small guest RAM images holding
a valid vgpu-stream region (include/vgpu/stream.h) on scattered pages, with a
published frame. Usage: make_fuzz_seeds.py OUTDIR"""
import os
import struct
import sys

M64 = (1 << 64) - 1
PAGE, TAG = 4096, 32
PAYLOAD = PAGE - TAG


def tag_check(magic, index, nonce, npages):
    h = 0x9E3779B97F4A7C15
    for v in (magic, index, nonce, npages):
        h = ((h ^ v) * 0x100000001B3) & M64
    return (h ^ (h >> 32)) & 0xFFFFFFFF


def checksum(data):
    """docs/vgpu-stream.md section 5: four lanes over 32-byte blocks."""
    def step(h, w):
        h = ((h ^ w) * 0x100000001B3) & M64
        return ((h << 29) | (h >> 35)) & M64

    lanes = [(0xCBF29CE484222325 + k) & M64 for k in range(4)]
    padded = data + bytes(-len(data) % 32)
    for i in range(0, len(padded), 32):
        for k in range(4):
            lanes[k] = step(lanes[k], struct.unpack_from("<Q", padded, i + 8 * k)[0])
    r = len(data)
    for k in range(4):
        r = step(r, lanes[k])
    return r


def region(w, h, nslots, nonce):
    stride = w * 4
    slot_size = (64 + stride * h + 63) & ~63
    slots_off = 512
    total = slots_off + nslots * slot_size
    stream = bytearray(total)
    pix = bytes(((x + 1) & 255) for x in range(stride * h))
    hdr = struct.pack("<QIIQIIQIIIIIIIIQQQIIiIQQ", 0x4D52545355504756, 1, 256, nonce, 7, 0, 99, 1,
                      w, h, stride, 1, nslots, slot_size, 16666, slots_off, 256, 1, 0, 0, 0, 0, 1, 0)
    hdr += bytes(256 - len(hdr))
    stream[0:256] = hdr
    slot = struct.pack("<IIQQIIIIIIQQ", 2, 1, 1, 1000, w, h, stride, 1, stride * h, 0, checksum(pix), 0)
    stream[slots_off:slots_off + 64] = slot
    stream[slots_off + 64:slots_off + 64 + len(pix)] = pix
    npages = (total + PAYLOAD - 1) // PAYLOAD
    pages = []
    for i in range(npages):
        t = struct.pack("<IIQII", 0x47415447, i, nonce, npages, tag_check(0x47415447, i, nonce, npages))
        t += bytes(TAG - len(t))
        body = bytes(stream[i * PAYLOAD:(i + 1) * PAYLOAD])
        pages.append(t + body + bytes(PAYLOAD - len(body)))
    return pages


def image(pages, slots):
    img = [bytes(PAGE)] * max(slots) + [bytes(PAGE)]
    img = list(img)
    for p, s in zip(pages, slots):
        img[s] = p
    return b"".join(img)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    seeds = {
        "one_page": (0, image(region(4, 4, 1, 0x1234), [2])),
        "scattered": (0, image(region(32, 32, 2, 0x55), [5, 1, 3])),
        "scattered_verify_pread": (3, image(region(32, 32, 2, 0x55), [5, 1, 3])),
        "split": (4, image(region(16, 16, 3, 0x77), [1, 6, 3])),
    }
    for name, (mode, img) in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(bytes([mode]) + img)


if __name__ == "__main__":
    main()
