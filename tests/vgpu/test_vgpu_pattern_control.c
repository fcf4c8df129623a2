/* SPDX-License-Identifier: MIT */
/* The test pattern against the formula as docs/vgpu-stream.md writes it
 * (computed here independently of pattern.c), and the control-request
 * semantics (vgpu_control_apply): ranges, results, state. */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "vgpu/stream/control.h"
#include "vgpu/stream/pattern.h"

static void test_pattern_formula(void **state)
{
        const uint32_t w = 37, h = 5;
        const uint64_t n = 300;
        unsigned char *buf = malloc(w * 4 * h);
        vgpu_pattern_fill(buf, w, h, n);
        for (uint32_t y = 0; y < h; y++) {
                for (uint32_t x = 0; x < w; x++) {
                        const unsigned char *p = buf + (y * w + x) * 4;
                        if (y == 0 && x < 6)
                                continue; /* the stamp */
                        assert_int_equal(p[0], (x + 4 * n) % 256);
                        assert_int_equal(p[1], (y + n) % 256);
                        assert_int_equal(p[2], (x ^ y ^ n) % 256);
                        assert_int_equal(p[3], 255);
                }
        }
        assert_memory_equal(buf, "VGPUPAT1", 8);
        uint64_t got_n = 0, got_sum = 0;
        for (int i = 7; i >= 0; i--) {
                got_n = got_n << 8 | buf[8 + i];
                got_sum = got_sum << 8 | buf[16 + i];
        }
        assert_int_equal(got_n, n);
        assert_int_equal(got_sum, vgpu_checksum(buf + w * 4, (size_t)w * 4 * (h - 1)));

        size_t bad = 0;
        assert_int_equal(vgpu_pattern_verify(buf, w, h, n, &bad), 0);
        assert_int_equal(vgpu_pattern_verify(buf, w, h, n + 1, &bad), -1);
        buf[w * 4 * 3 + 9] ^= 0x10;
        assert_int_equal(vgpu_pattern_verify(buf, w, h, n, &bad), -1);
        assert_int_equal(bad, w * 4 * 3 + 9);
        free(buf);
}

static int apply(struct vgpu_ctl_state *st, uint32_t op, uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3)
{
        struct vgpu_request q = {.seq = 9, .op = op, .arg = {a0, a1, a2, a3}};
        return vgpu_control_apply(st, &q, 1024, 768);
}

static void test_control_ops(void **state)
{
        struct vgpu_ctl_state st = {0};
        assert_int_equal(apply(&st, VGPU_OP_PAUSE, 1, 0, 0, 0), 0);
        assert_true(st.paused);
        assert_int_equal(apply(&st, VGPU_OP_PAUSE, 2, 0, 0, 0), -22);
        assert_true(st.paused);
        assert_int_equal(apply(&st, VGPU_OP_PAUSE, 0, 0, 0, 0), 0);
        assert_false(st.paused);

        assert_int_equal(apply(&st, VGPU_OP_FPS_CAP, 15, 0, 0, 0), 0);
        assert_int_equal(st.fps_cap, 15);
        assert_int_equal(apply(&st, VGPU_OP_FPS_CAP, 1001, 0, 0, 0), -22);
        assert_int_equal(st.fps_cap, 15);

        assert_int_equal(apply(&st, VGPU_OP_REGION, 24, 16, 1000, 752), 0);
        assert_int_equal(st.crop_w, 1000);
        assert_int_equal(apply(&st, VGPU_OP_REGION, 25, 16, 1000, 752), -22);       /* leaves the screen */
        assert_int_equal(apply(&st, VGPU_OP_REGION, 8, 0, UINT32_MAX - 4, 8), -22); /* no wrap-around */
        assert_int_equal(apply(&st, VGPU_OP_REGION, 0, 0, 7, 8), -22);              /* narrower than 8 */
        assert_int_equal(apply(&st, VGPU_OP_REGION, 1024, 0, 8, 8), -22);
        assert_int_equal(st.crop_x, 24); /* refused requests change nothing */
        assert_int_equal(apply(&st, VGPU_OP_REGION, 0, 0, 0, 0), 0);
        assert_int_equal(st.crop_w, 0);

        assert_int_equal(apply(&st, VGPU_OP_FULL_FRAME, 0, 0, 0, 0), 1); /* acked after the frame */
        assert_int_equal(st.full_frame_seq, 9);
        assert_int_equal(apply(&st, 0, 0, 0, 0, 0), -95);
        assert_int_equal(apply(&st, 77, 0, 0, 0, 0), -95);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_pattern_formula),
            cmocka_unit_test(test_control_ops),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
