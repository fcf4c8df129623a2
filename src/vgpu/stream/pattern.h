/* SPDX-License-Identifier: MIT */
#ifndef VGPU_STREAM_PATTERN_H
#define VGPU_STREAM_PATTERN_H

/* The deterministic test pattern of `vgpu-stream --source pattern`, so a host
 * can recompute every pixel from (n, width, height). The formula is part of
 * the contract (docs/vgpu-stream.md, "Test pattern"):
 *
 *   BGRA bytes, stride = width * 4. For every pixel (x, y) of frame n:
 *     B = (x + 4n) mod 256, G = (y + n) mod 256, R = (x ^ y ^ n) mod 256, A = 255
 *   then row 0 bytes 0..7 are overwritten with ASCII "VGPUPAT1", bytes 8..15
 *   with n (uint64, little-endian) and bytes 16..23 with
 *   vgpu_checksum(bytes 4*width .. 4*width*height - 1), i.e. of rows 1.. */

#include <stddef.h>
#include <stdint.h>

#define VGPU_PATTERN_MAGIC     "VGPUPAT1"
#define VGPU_PATTERN_MIN_WIDTH 8u

/* Fills buf (width * 4 * height bytes) with frame n. */
void vgpu_pattern_fill(unsigned char *buf, uint32_t width, uint32_t height, uint64_t n);

/* Checks a frame against the formula; returns 0, or -1 with the first
 * differing byte offset in *bad_off. */
int vgpu_pattern_verify(const unsigned char *buf, uint32_t width, uint32_t height, uint64_t n,
                        size_t *bad_off);

#endif
