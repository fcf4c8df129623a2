/* SPDX-License-Identifier: MIT */
/* The vgpu-stream producer core (src/vgpu/stream/region.c) against the
 * strict test reader: scattered pages, frames across page boundaries,
 * control requests, geometry changes and region recreation. */

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "vgpu/region_reader.h"
#include "vgpu/stream/pattern.h"
#include "vgpu/stream/region.h"

/* A page provider handing out pages of one pool in a shuffled order, like
 * guest-physical pages; release checks the tags were wiped first. */
#define POOL_PAGES 512u
struct pool {
        unsigned char *mem;
        uint32_t order[POOL_PAGES];
        uint32_t used;
        int released, tags_wiped;
};

static int pool_alloc(void *ctx, uint32_t npages, unsigned char **pages)
{
        struct pool *p = ctx;
        if (p->used + npages > POOL_PAGES)
                return -ENOMEM;
        for (uint32_t i = 0; i < npages; i++)
                pages[i] = p->mem + (size_t)p->order[p->used++] * VGPU_PAGE_SIZE;
        return 0;
}

static void pool_release(void *ctx, uint32_t npages, unsigned char **pages)
{
        struct pool *p = ctx;
        static const unsigned char zero[VGPU_TAG_SIZE];
        p->released++;
        p->tags_wiped = 1;
        for (uint32_t i = 0; i < npages; i++)
                if (memcmp(pages[i], zero, sizeof(zero)) != 0)
                        p->tags_wiped = 0;
}

static void pool_init(struct pool *p)
{
        memset(p, 0, sizeof(*p));
        p->mem = aligned_alloc(VGPU_PAGE_SIZE, (size_t)POOL_PAGES * VGPU_PAGE_SIZE);
        assert_non_null(p->mem);
        memset(p->mem, 0xa5, (size_t)POOL_PAGES * VGPU_PAGE_SIZE);
        for (uint32_t i = 0; i < POOL_PAGES; i++)
                p->order[i] = i;
        srand(7);
        for (uint32_t i = POOL_PAGES - 1; i > 0; i--) {
                uint32_t j = (uint32_t)rand() % (i + 1), t = p->order[i];
                p->order[i] = p->order[j];
                p->order[j] = t;
        }
}

/* What a host does: find the tagged pages of `nonce` and order them. */
static uint32_t gather(const struct pool *p, uint64_t nonce, const unsigned char **out, uint32_t max)
{
        uint32_t n = 0;
        for (uint32_t i = 0; i < POOL_PAGES; i++) {
                const unsigned char *pg = p->mem + (size_t)i * VGPU_PAGE_SIZE;
                struct vgpu_page_tag t;
                memcpy(&t, pg, sizeof(t));
                if (t.magic != VGPU_TAG_MAGIC || t.nonce != nonce || t.index >= max ||
                    t.check != vgpu_tag_check(t.magic, t.index, t.nonce, t.npages))
                        continue;
                out[t.index] = pg;
                n++;
        }
        return n;
}

static void fill(unsigned char *buf, uint32_t w, uint32_t h, uint32_t stride, uint32_t salt)
{
        for (uint32_t y = 0; y < h; y++)
                for (uint32_t x = 0; x < stride; x++)
                        buf[(size_t)y * stride + x] = (unsigned char)(x * 7 + y * 13 + salt);
}

static void test_checksum_split(void **state)
{
        unsigned char buf[1000];
        for (size_t i = 0; i < sizeof(buf); i++)
                buf[i] = (unsigned char)(i * 31 + 5);
        /* Every length around the 32-byte block size, then some larger. */
        for (size_t len = 0; len < 420; len += len < 140 ? 1 : 37) {
                for (size_t cut1 = 0; cut1 <= len; cut1 += 3) {
                        size_t cut2 = cut1 + (len - cut1) / 2;
                        struct vgpu_csum c;
                        vgpu_csum_init(&c);
                        vgpu_csum_update(&c, buf, cut1);
                        vgpu_csum_update(&c, buf + cut1, cut2 - cut1);
                        vgpu_csum_update(&c, buf + cut2, len - cut2);
                        assert_int_equal(vgpu_csum_final(&c), vgpu_checksum(buf, len));
                }
        }
}

/* Known answers from an independent implementation of docs/vgpu-stream.md
 * section 5 (tests/vgpu/perception/make_fuzz_seeds.py checksum()), over
 * bytes (i * 31 + 5) & 255: pins the definition, tail and length fold. */
static void test_checksum_known_answers(void **state)
{
        static const struct {
                size_t len;
                uint64_t sum;
        } kat[] = {
            {0, 0x5f85987280a86cb6ull},  {1, 0xd7d0744391a60284ull},  {7, 0x7a6d605c39e12980ull},
            {8, 0x4df6e5c5901986d0ull},  {31, 0xc1200ce478cd3dedull}, {32, 0x151b1b6666f9dbeaull},
            {33, 0x63db64458ca11bcfull}, {64, 0x3e40af146aa4ca0bull}, {100, 0x770be4390cfdbe03ull},
        };
        unsigned char buf[100];
        for (size_t i = 0; i < sizeof(buf); i++)
                buf[i] = (unsigned char)(i * 31 + 5);
        for (size_t i = 0; i < sizeof(kat) / sizeof(kat[0]); i++)
                assert_int_equal(vgpu_checksum(buf, kat[i].len), kat[i].sum);
        /* A zero tail byte still counts: the length is folded in. */
        unsigned char z[40] = {0};
        assert_int_not_equal(vgpu_checksum(z, 33), vgpu_checksum(z, 34));
        /* A flipped top bit is seen (the rotate carries it down). */
        unsigned char a[64];
        memcpy(a, buf, 64);
        a[7] ^= 0x80;
        assert_int_not_equal(vgpu_checksum(a, 64), vgpu_checksum(buf, 64));
        a[39] ^= 0x80; /* same lane, next block: must not cancel */
        assert_int_not_equal(vgpu_checksum(a, 64), vgpu_checksum(buf, 64));
}

static void test_frames_scattered(void **state)
{
        struct pool p;
        pool_init(&p);
        struct vgpu_region_pages prov = {pool_alloc, pool_release, &p};
        /* 333 pixels a row: rows are not a multiple of 8 bytes, and slots
         * straddle many payload boundaries. */
        const uint32_t w = 333, h = 77, stride = w * 4 + 20;
        struct vgpu_region_params rp = {
            .width = w, .height = h, .format = VGPU_FMT_BGRX8888, .nslots = 3, .pages = &prov};
        struct vgpu_region *r;
        assert_int_equal(vgpu_region_create(&r, &rp), 0);
        unsigned char *src = malloc((size_t)stride * h);
        for (uint32_t f = 1; f <= 7; f++) {
                fill(src, w, h, stride, f);
                assert_int_equal(vgpu_region_publish_frame(r, src, w, h, stride, 1000 * f), (int64_t)f);
        }
        /* Wrong geometry is refused. */
        assert_int_equal(vgpu_region_publish_frame(r, src, w + 1, h, stride, 0), -EINVAL);

        uint32_t np = vgpu_region_npages(r);
        const unsigned char *pages[POOL_PAGES];
        assert_int_equal(gather(&p, vgpu_region_nonce(r), pages, POOL_PAGES), np);
        struct rr_region g;
        char err[256];
        assert_int_equal(rr_open(&g, pages, np, err, sizeof(err)), 0);
        assert_int_equal(g.hdr.latest_seq, 7);
        assert_int_equal(g.hdr.latest_slot, 0); /* 7th frame: slot (7-1) % 3 */
        assert_int_equal(g.hdr.frames_published, 7);

        unsigned char *data = malloc(g.hdr.slot_size);
        unsigned char *expect = malloc((size_t)w * 4 * h);
        for (uint32_t i = 0; i < 3; i++) {
                struct vgpu_slot sh;
                assert_int_equal(rr_slot(&g, i, &sh, data, err, sizeof(err)), 1);
                /* Slot i holds frame 7 - ((7 - 1 - i) % 3 ... ): frames 7, 5, 6. */
                uint64_t want = i == 0 ? 7 : (i == 1 ? 5 : 6);
                assert_int_equal(sh.frame_seq, want);
                assert_int_equal(sh.timestamp_ns, 1000 * want);
                assert_int_equal(sh.stride, w * 4);
                fill(src, w, h, stride, (uint32_t)want);
                for (uint32_t y = 0; y < h; y++)
                        memcpy(expect + (size_t)y * w * 4, src + (size_t)y * stride, (size_t)w * 4);
                assert_memory_equal(data, expect, (size_t)w * 4 * h);
        }

        /* A corrupted pixel is caught by the checksum. */
        struct vgpu_slot sh;
        uint64_t off = g.hdr.slots_offset + sizeof(struct vgpu_slot) + 5000;
        uint64_t pg;
        uint32_t in;
        vgpu_locate(off, &pg, &in);
        ((unsigned char *)pages[pg])[in] ^= 1;
        assert_int_equal(rr_slot(&g, 0, &sh, data, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "checksum"));

        vgpu_region_destroy(r);
        assert_int_equal(p.released, 1);
        assert_true(p.tags_wiped);
        free(data);
        free(expect);
        free(src);
        free(p.mem);
}

static void write_ctl(struct vgpu_region *r, uint32_t seq, uint32_t op, uint32_t a0, uint32_t check)
{
        struct vgpu_control c = {.req_seq = seq, .op = op, .arg = {a0, 0, 0, 0}, .req_seq_check = check};
        memcpy(vgpu_region_control(r), &c, sizeof(c));
}

static void test_control(void **state)
{
        struct vgpu_region_params rp = {.width = 64, .height = 32, .format = VGPU_FMT_BGRA8888};
        struct vgpu_region *r;
        assert_int_equal(vgpu_region_create(&r, &rp), 0);
        const struct vgpu_header *h = vgpu_region_header(r);
        assert_int_equal(h->nslots, 3);
        assert_int_equal(h->control_offset, VGPU_CONTROL_OFFSET);
        struct vgpu_request q;

        assert_int_equal(vgpu_region_poll_control(r, &q), 0); /* all zero: nothing */
        write_ctl(r, 1, VGPU_OP_PAUSE, 1, 0x1234);            /* half-written */
        assert_int_equal(vgpu_region_poll_control(r, &q), 0);
        write_ctl(r, 1, VGPU_OP_PAUSE, 1, ~1u);
        assert_int_equal(vgpu_region_poll_control(r, &q), 1);
        assert_int_equal(q.seq, 1);
        assert_int_equal(q.op, VGPU_OP_PAUSE);
        assert_int_equal(q.arg[0], 1);
        assert_int_equal(vgpu_region_poll_control(r, &q), 0); /* handled once */
        vgpu_region_ack(r, 1, -22);
        assert_int_equal(h->ctrl_ack_seq, 1);
        assert_int_equal(h->ctrl_ack_result, -22);
        write_ctl(r, 2, VGPU_OP_FULL_FRAME, 0, ~2u);
        assert_int_equal(vgpu_region_poll_control(r, &q), 1);
        assert_int_equal(q.seq, 2);
        vgpu_region_set_flags(r, VGPU_HF_PAUSED);
        assert_int_equal(h->flags, VGPU_HF_PAUSED);
        vgpu_region_destroy(r);
}

static void test_geometry(void **state)
{
        struct pool p;
        pool_init(&p);
        struct vgpu_region_pages prov = {pool_alloc, pool_release, &p};
        struct vgpu_region_params rp = {.width = 100,
                                        .height = 100,
                                        .format = VGPU_FMT_BGRA8888,
                                        .nslots = 2,
                                        .capacity_pixels = 200 * 100,
                                        .pages = &prov};
        struct vgpu_region *r;
        assert_int_equal(vgpu_region_create(&r, &rp), 0);
        uint64_t nonce = vgpu_region_nonce(r);
        unsigned char *buf = calloc(400 * 4, 400);
        assert_int_equal(vgpu_region_publish_frame(r, buf, 100, 100, 400, 1), 1);

        int recreated = -1;
        assert_int_equal(vgpu_region_set_geometry(r, 200, 100, VGPU_FMT_BGRA8888, &recreated), 0);
        assert_int_equal(recreated, 0);
        assert_int_equal(vgpu_region_nonce(r), nonce);
        const struct vgpu_header *h = vgpu_region_header(r);
        assert_int_equal(h->geometry_gen, 2);
        assert_int_equal(h->width, 200);
        assert_int_equal(h->stride, 800);
        assert_int_equal(vgpu_region_publish_frame(r, buf, 100, 100, 400, 2), -EINVAL);
        assert_int_equal(vgpu_region_publish_frame(r, buf, 200, 100, 800, 2), 2);

        assert_int_equal(vgpu_region_set_geometry(r, 400, 300, VGPU_FMT_BGRA8888, &recreated), 0);
        assert_int_equal(recreated, 1);
        assert_int_not_equal(vgpu_region_nonce(r), nonce);
        assert_int_equal(p.released, 1);
        assert_true(p.tags_wiped);
        h = vgpu_region_header(r);
        assert_int_equal(h->geometry_gen, 3);
        assert_int_equal(h->latest_seq, 0); /* a new region starts empty */
        assert_int_equal(vgpu_region_publish_frame(r, buf, 400, 300, 1600, 3), 3);

        const unsigned char *pages[POOL_PAGES];
        uint32_t np = vgpu_region_npages(r);
        assert_int_equal(gather(&p, vgpu_region_nonce(r), pages, POOL_PAGES), np);
        struct rr_region g;
        char err[256];
        assert_int_equal(rr_open(&g, pages, np, err, sizeof(err)), 0);
        assert_int_equal(g.hdr.latest_seq, 3);

        assert_int_equal(vgpu_region_set_geometry(r, 0, 300, VGPU_FMT_BGRA8888, NULL), -EINVAL);
        vgpu_region_destroy(r);
        free(buf);
        free(p.mem);
}

static void test_bad_params(void **state)
{
        struct vgpu_region *r = NULL;
        struct vgpu_region_params rp = {.width = 0, .height = 10, .format = VGPU_FMT_BGRA8888};
        assert_int_equal(vgpu_region_create(&r, &rp), -EINVAL);
        rp.width = 10;
        rp.format = 9;
        assert_int_equal(vgpu_region_create(&r, &rp), -EINVAL);
        rp.format = VGPU_FMT_BGRA8888;
        rp.nslots = VGPU_MAX_SLOTS + 1;
        assert_int_equal(vgpu_region_create(&r, &rp), -EINVAL);
        assert_null(r);
        vgpu_region_destroy(NULL);
}

/* The reader algorithm of docs/vgpu-stream.md section 4 against a producer
 * publishing as fast as it can from another thread: a copy that passes the
 * seqlock check always has the right checksum and pattern. */
#define STRESS_W    64u
#define STRESS_H    48u
#define STRESS_GOOD 1000u    /* accepted reads wanted */
#define STRESS_MAX  5000000u /* attempts, a bound on a starved reader */
struct stress {
        struct vgpu_region *r;
        int done;
        uint64_t published;
};

static void *stress_writer(void *arg)
{
        struct stress *s = arg;
        unsigned char *buf = malloc(STRESS_W * 4 * STRESS_H);
        while (!__atomic_load_n(&s->done, __ATOMIC_ACQUIRE)) {
                vgpu_pattern_fill(buf, STRESS_W, STRESS_H, vgpu_region_next_seq(s->r));
                if (vgpu_region_publish_frame(s->r, buf, STRESS_W, STRESS_H, STRESS_W * 4, 0) > 0)
                        s->published++;
        }
        free(buf);
        return NULL;
}

static void test_seqlock_stress(void **state)
{
        /* One slot: the reader always races the writer. */
        struct vgpu_region_params rp = {
            .width = STRESS_W, .height = STRESS_H, .format = VGPU_FMT_BGRA8888, .nslots = 1};
        struct stress s = {0};
        assert_int_equal(vgpu_region_create(&s.r, &rp), 0);
        uint32_t np = vgpu_region_npages(s.r);
        const unsigned char **pages = calloc(np, sizeof(*pages));
        for (uint32_t i = 0; i < np; i++)
                pages[i] = vgpu_region_page(s.r, i);
        struct rr_region g;
        char err[256];
        assert_int_equal(rr_open(&g, pages, np, err, sizeof(err)), 0);
        const struct vgpu_header *h = vgpu_region_header(s.r);
        unsigned char *data = malloc(g.hdr.slot_size);

        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, stress_writer, &s), 0);
        uint64_t good = 0, torn = 0, empty = 0;
        for (uint32_t n = 0; n < STRESS_MAX && good < STRESS_GOOD; n++) {
                uint64_t seq = __atomic_load_n(&h->latest_seq, __ATOMIC_ACQUIRE);
                uint32_t slot = __atomic_load_n(&h->latest_slot, __ATOMIC_RELAXED);
                if (seq == 0) {
                        empty++;
                        sched_yield();
                        continue;
                }
                uint64_t base = g.hdr.slots_offset + (uint64_t)slot * g.hdr.slot_size, pg;
                uint32_t in;
                vgpu_locate(base, &pg, &in);
                const uint32_t *lock = (const uint32_t *)(pages[pg] + in);
                uint32_t l1 = __atomic_load_n(lock, __ATOMIC_ACQUIRE);
                struct vgpu_slot sh;
                assert_int_equal(rr_read(&g, base, &sh, sizeof(sh)), 0);
                int fits = sh.data_len <= g.hdr.slot_size - sizeof(sh);
                if (fits)
                        assert_int_equal(rr_read(&g, base + sizeof(sh), data, sh.data_len), 0);
                __atomic_thread_fence(__ATOMIC_ACQUIRE);
                uint32_t l2 = __atomic_load_n(lock, __ATOMIC_RELAXED);
                if ((l1 & 1) || l1 != l2 || !fits) {
                        torn++;
                        continue;
                }
                /* Accepted: it must be a whole, correct frame. */
                assert_int_equal(vgpu_checksum(data, sh.data_len), sh.checksum);
                assert_true(sh.frame_seq >= seq);
                size_t bad;
                assert_int_equal(vgpu_pattern_verify(data, STRESS_W, STRESS_H, sh.frame_seq, &bad), 0);
                good++;
        }
        __atomic_store_n(&s.done, 1, __ATOMIC_RELEASE);
        pthread_join(t, NULL);
        printf("stress: %llu reads accepted, %llu torn and rejected, %llu before the first frame; %llu "
               "published\n",
               (unsigned long long)good, (unsigned long long)torn, (unsigned long long)empty,
               (unsigned long long)s.published);
        assert_int_equal(good, STRESS_GOOD);
        free(data);
        free(pages);
        vgpu_region_destroy(s.r);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_checksum_split),   cmocka_unit_test(test_checksum_known_answers),
            cmocka_unit_test(test_frames_scattered), cmocka_unit_test(test_control),
            cmocka_unit_test(test_geometry),         cmocka_unit_test(test_bad_params),
            cmocka_unit_test(test_seqlock_stress),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
