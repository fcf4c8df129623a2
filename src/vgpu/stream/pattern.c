/* SPDX-License-Identifier: MIT */
/* The verifiable moving test pattern (formula in pattern.h). */

#include "pattern.h"

#include <string.h>

#include "vgpu/stream.h"

static void fill_row(unsigned char *p, uint32_t width, uint32_t y, uint64_t n)
{
        unsigned char g = (unsigned char)(y + n);
        unsigned char ry = (unsigned char)(y ^ n);
        unsigned char b0 = (unsigned char)(4 * n);
        for (uint32_t x = 0; x < width; x++, p += 4) {
                p[0] = (unsigned char)(x + b0);
                p[1] = g;
                p[2] = (unsigned char)(x ^ ry);
                p[3] = 255;
        }
}

static void stamp(unsigned char *buf, uint32_t width, uint32_t height, uint64_t n)
{
        size_t row = (size_t)width * 4;
        uint64_t sum = vgpu_checksum(buf + row, row * (height - 1));
        memcpy(buf, VGPU_PATTERN_MAGIC, 8);
        for (int i = 0; i < 8; i++) {
                buf[8 + i] = (unsigned char)(n >> (8 * i));
                buf[16 + i] = (unsigned char)(sum >> (8 * i));
        }
}

void vgpu_pattern_fill(unsigned char *buf, uint32_t width, uint32_t height, uint64_t n)
{
        size_t row = (size_t)width * 4;
        for (uint32_t y = 0; y < height; y++)
                fill_row(buf + y * row, width, y, n);
        stamp(buf, width, height, n);
}

int vgpu_pattern_verify(const unsigned char *buf, uint32_t width, uint32_t height, uint64_t n,
                        size_t *bad_off)
{
        size_t row = (size_t)width * 4;
        unsigned char line[VGPU_MAX_DIM * 4];
        if (width < VGPU_PATTERN_MIN_WIDTH || width > VGPU_MAX_DIM) {
                *bad_off = 0;
                return -1;
        }
        for (uint32_t y = 0; y < height; y++) {
                fill_row(line, width, y, n);
                if (y == 0)
                        stamp(line, width, 1, n); /* checksum bytes compared below */
                const unsigned char *got = buf + y * row;
                for (size_t i = 0; i < row; i++) {
                        if (y == 0 && i >= 16 && i < 24)
                                continue;
                        if (got[i] != line[i]) {
                                *bad_off = y * row + i;
                                return -1;
                        }
                }
        }
        uint64_t sum = vgpu_checksum(buf + row, row * (height - 1));
        for (int i = 0; i < 8; i++) {
                if (buf[16 + i] != (unsigned char)(sum >> (8 * i))) {
                        *bad_off = 16 + (size_t)i;
                        return -1;
                }
        }
        return 0;
}
