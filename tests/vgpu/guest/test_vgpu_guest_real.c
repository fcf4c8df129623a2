/* SPDX-License-Identifier: MIT */
/* vgpu-stream in the real TCG test guest, read from the host through vmsigd's
 * memctx with libvgpu-perception, and through vmsigctl frame:
 * - at least 100 consecutive frames with strictly increasing sequence
 *   numbers, each checksum right and each pixel the documented pattern;
 * - a control request (fps cap) written with CMD_MEMWRITE and acknowledged;
 *   then the producer at its maximum rate while the host keeps reading: no
 *   frame with a bad checksum is ever returned as good;
 * - a PNG from `vmsigctl frame -o` whose pixels are the pattern;
 * - a producer restart (the guest's loop starts a new run: a new nonce);
 * - a guest reset (a new memctx epoch; the producer starts again). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include <inttypes.h>
#include <png.h>

#include <vgpu/perception.h>
#include <vmie/vmie.h>

#include "../../daemon/vmsigd_harness.h"
#include "../../vm/vm_guest.h"
#include "pattern.h"

static struct vh H;
static struct vm_guest G = {.pid = -1};
static char gdir[256];

struct reader {
        struct vmsig_client *c;
        uint32_t ep;
        uint64_t epoch;
        struct vmie_ram *ram;
        struct vgpu_perception *p;
        uint8_t *buf;
        size_t cap;
};

static int setup(void **state)
{
        return vm_guest_make_vgpu(gdir, sizeof(gdir), "vgpu-guest", "VMSIG_GUEST_DIR", "VGPU_FRAMES=300 ",
                                  "pattern");
}

static int teardown(void **state)
{
        vh_teardown(&H);
        vm_guest_stop(&G);
        vm_guest_remove_dir(gdir);
        return 0;
}

/* The next valid memctx with an epoch above r->epoch: (re)open the RAM. */
static void take_memctx(struct reader *r)
{
        for (;;) {
                struct vmsig_memctx ctx;
                assert_int_equal(vh_wait_memctx(r->c, r->ep, &ctx, 120000), 0);
                if (ctx.epoch <= r->epoch && r->ram) {
                        close(ctx.fd);
                        continue;
                }
                struct vmie_range rg[VMSIG_MEMCTX_MAX_RANGES];
                for (uint32_t i = 0; i < ctx.nranges; i++)
                        rg[i] = (struct vmie_range){ctx.ranges[i].gpa, ctx.ranges[i].len,
                                                    ctx.ranges[i].file_offset};
                struct vmie_ram *ram = NULL;
                assert_int_equal(vmie_ram_open_fd(ctx.fd, rg, ctx.nranges, 0, &ram), 0);
                close(ctx.fd);
                if (r->p) {
                        assert_int_equal(vgpu_perception_reset(r->p, ram), 0);
                } else {
                        struct vgpu_perception_options o = {.flags = VGPU_PERCEPTION_VERIFY};
                        assert_int_equal(vgpu_perception_new(ram, &o, &r->p), 0);
                }
                vmie_ram_free(r->ram);
                r->ram = ram;
                printf("# memctx epoch %" PRIu64 "\n", ctx.epoch);
                r->epoch = ctx.epoch;
                return;
        }
}

/* The n the pattern was drawn with, from the frame's own row 0. */
static uint64_t pattern_n(const uint8_t *px)
{
        uint64_t n;
        assert_memory_equal(px, VGPU_PATTERN_MAGIC, 8);
        memcpy(&n, px + 8, 8);
        return n;
}

/* Next good frame newer than after (any seq after a new nonce). */
static void dump_regions(struct reader *r);
static int next_frame(struct reader *r, uint64_t after, uint64_t nonce, struct vgpu_frame_info *fi, int ms)
{
        long deadline = vm_guest_now_ms() + ms;
        int rc = 0;
        while (vm_guest_now_ms() < deadline) {
                rc = vgpu_perception_wait(r->p, after, 500, 0, NULL);
                if (rc == -ETIMEDOUT || rc == -ENOENT)
                        continue;
                rc = vgpu_perception_read(r->p, r->buf, r->cap, fi);
                if (rc == 0 && (fi->seq > after || fi->nonce != nonce))
                        return 0;
                if (rc == -EAGAIN || rc == -ENOENT || rc == -ENODATA || rc == -ESTALE || rc == 0)
                        continue;
                return rc;
        }
        struct vgpu_perception_stats st;
        struct vgpu_producer_info pi = {0};
        vgpu_perception_stats(r->p, &st);
        int pr = vgpu_perception_producer(r->p, &pi);
        printf("# no frame after seq %" PRIu64 " in %d ms: last %d (%s); state %d, %" PRIu64
               " scans, %" PRIu64 " torn, %" PRIu64 " checksum, %" PRIu64
               " tag mismatches; producer %d: latest %" PRIu64 " published %" PRIu64 " %ux%u\n",
               after, ms, rc, strerror(-rc), vgpu_perception_state(r->p), st.scans, st.torn,
               st.checksum_errors, st.tag_mismatches, pr, pi.latest_seq, pi.frames_published, pi.width,
               pi.height);
        dump_regions(r);
        printf("# serial tail: %s\n",
               vm_guest_serial_text(&G)
                   ? vm_guest_serial_text(&G) + (strlen(vm_guest_serial_text(&G)) > 4000
                                                     ? strlen(vm_guest_serial_text(&G)) - 4000
                                                     : 0)
                   : "");
        return -ETIMEDOUT;
}

/* Diagnosis: every tagged region in RAM right now. */
static void dump_regions(struct reader *r)
{
        struct vmie_range rg;
        struct {
                uint64_t nonce;
                uint32_t npages, count;
                uint64_t page0;
        } g[64];
        int ng = 0;
        for (size_t i = 0; i < vmie_ram_nranges(r->ram) && vmie_ram_range(r->ram, i, &rg) == 0; i++)
                for (uint64_t a = rg.gpa; a + 4096 <= rg.gpa + rg.len; a += 4096) {
                        struct vgpu_page_tag t;
                        if (vmie_ram_read(r->ram, a, &t, sizeof(t)) < 0 || t.magic != VGPU_TAG_MAGIC ||
                            t.check != vgpu_tag_check(t.magic, t.index, t.nonce, t.npages))
                                continue;
                        int k;
                        for (k = 0; k < ng && (g[k].nonce != t.nonce || g[k].npages != t.npages); k++)
                                ;
                        if (k == ng && ng < 64)
                                g[ng++] = (typeof(g[0])){t.nonce, t.npages, 0, 0};
                        if (k < 64) {
                                g[k].count++;
                                if (t.index == 0)
                                        g[k].page0 = a;
                        }
                }
        for (int k = 0; k < ng; k++) {
                struct vgpu_header h = {0};
                if (g[k].page0)
                        vmie_ram_read(r->ram, g[k].page0 + 32, &h, sizeof(h));
                printf("# region %016" PRIx64 ": %u/%u pages, page0 0x%" PRIx64 ", heartbeat %" PRIu64
                       " latest %" PRIu64 " magic %d\n",
                       g[k].nonce, g[k].count, g[k].npages, g[k].page0, h.heartbeat_ns, h.latest_seq,
                       h.magic == VGPU_HDR_MAGIC);
        }
}

static void check_frame(struct reader *r, const struct vgpu_frame_info *fi)
{
        size_t bad = 0;
        assert_int_equal(vgpu_checksum(r->buf, fi->data_len), fi->checksum);
        assert_int_equal(fi->width, 320);
        assert_int_equal(fi->height, 200);
        uint64_t n = pattern_n(r->buf);
        if (vgpu_pattern_verify(r->buf, fi->width, fi->height, n, &bad) != 0)
                fail_msg("frame %" PRIu64 " (n %" PRIu64 "): pixel byte %zu is not the pattern", fi->seq, n,
                         bad);
}

/* 100 consecutive frames of one producer run: seq strictly increasing. */
static uint64_t read_run(struct reader *r, int want, uint64_t *ret_nonce)
{
        struct vgpu_frame_info fi;
        uint64_t last = 0, nonce = 0, dropped = 0;
        int got = 0;
        long t0 = vm_guest_now_ms();

        while (got < want) {
                assert_int_equal(next_frame(r, last, nonce, &fi, 30000), 0);
                if (fi.nonce != nonce) { /* a restart in the middle: count again */
                        if (nonce)
                                printf("# producer restarted after %d frames; counting again\n", got);
                        nonce = fi.nonce;
                        got = 0;
                        last = 0;
                }
                assert_true(fi.seq > last);
                if (last && fi.seq > last + 1)
                        dropped += fi.seq - last - 1;
                check_frame(r, &fi);
                last = fi.seq;
                got++;
        }
        printf("# %d consecutive frames of run %016" PRIx64 " up to seq %" PRIu64 " in %ld ms (%" PRIu64
               " skipped by the reader)\n",
               want, nonce, last, vm_guest_now_ms() - t0, dropped);
        *ret_nonce = nonce;
        return last;
}

/* The PNG (RGB) against the pattern: n mod 256 from pixel (0, 1)'s G. */
static void check_png(const char *path)
{
        png_image img = {.version = PNG_IMAGE_VERSION};
        assert_true(png_image_begin_read_from_file(&img, path));
        img.format = PNG_FORMAT_RGB;
        uint8_t *rgb = malloc(PNG_IMAGE_SIZE(img));
        assert_non_null(rgb);
        assert_true(png_image_finish_read(&img, NULL, rgb, 0, NULL));
        assert_int_equal(img.width, 320);
        assert_int_equal(img.height, 200);
        uint8_t n = (uint8_t)(rgb[(size_t)img.width * 3 + 1] - 1);
        for (uint32_t y = 1; y < img.height; y++)
                for (uint32_t x = 0; x < img.width; x++) {
                        const uint8_t *p = rgb + ((size_t)y * img.width + x) * 3;
                        if (p[2] != (uint8_t)(x + 4 * n) || p[1] != (uint8_t)(y + n) ||
                            p[0] != (uint8_t)(x ^ y ^ n))
                                fail_msg("%s: pixel (%u,%u) is not the pattern of n=%u", path, x, y, n);
                }
        free(rgb);
}

static void test_vgpu_stream_in_real_guest(void **state)
{
        const char *extra[] = {"-action", "reboot=reset", NULL};
        struct vm_guest_opts o = {.mem = "256M", .extra = extra};
        struct reader r = {.cap = 320 * 200 * 4};
        char out[8192], png[300];
        uint64_t nonce1, nonce2, nonce3, last;
        struct vgpu_perception_stats st;

        if (!gdir[0])
                skip();
        r.buf = malloc(r.cap);
        assert_non_null(r.buf);
        assert_int_equal(vm_guest_start(&G, "vgpu", &o), 0);
        assert_int_equal(vm_guest_wait_serial(&G, "VGPU-RUN 1", 120000), 0);
        assert_int_equal(vh_start(&H, NULL), 0);
        r.c = vh_client(&H, "vgpu-test");
        assert_non_null(r.c);
        assert_int_equal(vh_subscribe(r.c, 0, VMSIG_KIND_BIT(VMSIG_EV_ROSTER), NULL, NULL), 0);
        assert_int_equal(vh_vm_add_qemu(&H, "vgpu", G.qmp, G.shm), 0);
        r.ep = vh_wait_vm(r.c, "vgpu");
        assert_true(r.ep != 0);
        assert_int_equal(vh_subscribe(r.c, r.ep, VMSIG_KIND_BIT(VMSIG_EV_MEMCTX), NULL, NULL), 0);
        take_memctx(&r);

        /* 1. 100 consecutive frames. */
        last = read_run(&r, 100, &nonce1);
        vgpu_perception_stats(r.p, &st);
        printf("# discovery: %" PRIu64 " scan(s), %" PRIu64 " MiB in %.1f ms (%.2f GB/s)\n", st.scans,
               st.scan_bytes >> 20, st.scan_ns / 1e6,
               st.scans ? (double)st.scan_bytes / (double)st.scan_ns : 0.0);

        /* 2. A control request through vmsigctl (CMD_MEMWRITE PHYS under the
         * memwrite lease), acknowledged by the producer: fps cap off. */
        int rc = vh_vmsigctl(&H, -1, out, sizeof(out), "frame", "vgpu", "--request", "fps=0", (char *)NULL);
        printf("# vmsigctl frame --request fps=0: %s", out);
        assert_int_equal(rc, 0);
        assert_non_null(strstr(out, "acknowledged, result 0"));
        /* The producer now writes as fast as it can; keep reading. */
        struct vgpu_perception_stats st0;
        vgpu_perception_stats(r.p, &st0);
        last = read_run(&r, 100, &nonce1);
        vgpu_perception_stats(r.p, &st);
        printf("# at max rate: %" PRIu64 " torn attempts retried, %" PRIu64 " checksum mismatches refused\n",
               st.torn - st0.torn, st.checksum_errors - st0.checksum_errors);

        /* 3. A PNG through vmsigctl. */
        snprintf(png, sizeof(png), "%s/shot.png", gdir);
        rc = vh_vmsigctl(&H, -1, out, sizeof(out), "frame", "vgpu", "-o", png, (char *)NULL);
        printf("# vmsigctl frame -o: %s", out);
        assert_int_equal(rc, 0);
        check_png(png);

        /* 4. The producer restarts (its run ends; the guest starts another). */
        struct vgpu_frame_info fi;
        long t = vm_guest_now_ms();
        do
                assert_int_equal(next_frame(&r, last, nonce1, &fi, 90000), 0);
        while (fi.nonce == nonce1 && (last = fi.seq) && vm_guest_now_ms() - t < 90000);
        assert_true(fi.nonce != nonce1);
        last = read_run(&r, 20, &nonce2);
        assert_true(nonce2 != nonce1);
        printf("# restart: new nonce %016" PRIx64 " found in %ld ms\n", nonce2, vm_guest_now_ms() - t);

        /* 5. A guest reset: a new memctx epoch, the producer starts again. */
        t = vm_guest_now_ms();
        assert_int_equal(vh_vmsigctl(&H, -1, out, sizeof(out), "power", "vgpu", "reset", (char *)NULL), 0);
        take_memctx(&r);
        last = read_run(&r, 20, &nonce3);
        assert_true(nonce3 != nonce2);
        printf("# reset: frames again %ld ms after the reset\n", vm_guest_now_ms() - t);

        vgpu_perception_stats(r.p, &st);
        printf("# totals: %" PRIu64 " frames, %" PRIu64 " scans, %" PRIu64 " rediscoveries, %" PRIu64
               " torn, %" PRIu64 " checksum refusals\n",
               st.frames, st.scans, st.rediscoveries, st.torn, st.checksum_errors);
        vgpu_perception_free(r.p);
        vmie_ram_free(r.ram);
        free(r.buf);
        assert_int_equal(vh_stop(&H, 10000), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_vgpu_stream_in_real_guest, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
