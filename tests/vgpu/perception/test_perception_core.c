/* SPDX-License-Identifier: MIT */
/* libvgpu-perception against the real producer core (src/vgpu/stream,
 * vgpu_region_*) writing into deliberately scattered pages of a memfd
 * "guest RAM": frames and the documented pattern, a control request and its
 * acknowledgement, a geometry change that recreates the region (new nonce),
 * and the producer publishing as fast as it can while the reader reads
 * (no frame with a bad checksum is returned as good). */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include <vgpu/perception.h>
#include <vmie/vmie.h>

#include "pattern.h"
#include "region.h"

#define RAM_SIZE (32u << 20)
#define GPA_BASE 0x200000ull
#define NPAGES   (RAM_SIZE / 4096u)

struct ram {
        int fd;
        uint8_t *map;
        uint32_t next; /* pages handed out, in a scattered order */
};

/* Page k of the stub RAM: a stride coprime with NPAGES scatters them. */
static int alloc_pages(void *ctx, uint32_t npages, unsigned char **pages)
{
        struct ram *r = ctx;
        if (r->next + npages > NPAGES - 1)
                return -ENOMEM;
        for (uint32_t i = 0; i < npages; i++, r->next++)
                pages[i] = r->map + (size_t)((1 + (uint64_t)r->next * 2654435761u) % (NPAGES - 1)) * 4096;
        return 0;
}

static void release_pages(void *ctx, uint32_t npages, unsigned char **pages)
{
}

struct rig {
        struct ram ram;
        struct vgpu_region_pages prov;
        struct vgpu_region *reg;
        struct vmie_ram *vr;
        struct vgpu_perception *p;
        uint8_t *px;
};

static void rig_open(struct rig *g, uint32_t w, uint32_t h, uint64_t capacity)
{
        struct vmie_range rg = {.gpa = GPA_BASE, .len = RAM_SIZE, .file_offset = 0};
        struct vgpu_perception_options o = {.flags = VGPU_PERCEPTION_VERIFY, .stale_ms = 10000};

        memset(g, 0, sizeof(*g));
        g->ram.fd = memfd_create("vgpu-core-ram", MFD_CLOEXEC);
        assert_true(g->ram.fd >= 0);
        assert_int_equal(ftruncate(g->ram.fd, RAM_SIZE), 0);
        g->ram.map = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, g->ram.fd, 0);
        assert_true(g->ram.map != MAP_FAILED);
        g->prov = (struct vgpu_region_pages){.alloc = alloc_pages, .release = release_pages, .ctx = &g->ram};
        struct vgpu_region_params rp = {.width = w,
                                        .height = h,
                                        .format = VGPU_FMT_BGRA8888,
                                        .nslots = 3,
                                        .capacity_pixels = capacity,
                                        .pages = &g->prov};
        assert_int_equal(vgpu_region_create(&g->reg, &rp), 0);
        assert_int_equal(vmie_ram_open_fd(g->ram.fd, &rg, 1, 0, &g->vr), 0);
        assert_int_equal(vgpu_perception_new(g->vr, &o, &g->p), 0);
        g->px = malloc(4096u * 4096u * 4);
        assert_non_null(g->px);
}

static void rig_close(struct rig *g)
{
        vgpu_perception_free(g->p);
        vmie_ram_free(g->vr);
        vgpu_region_destroy(g->reg);
        free(g->px);
        munmap(g->ram.map, RAM_SIZE);
        close(g->ram.fd);
}

static uint64_t publish(struct rig *g, uint32_t w, uint32_t h, uint64_t n)
{
        vgpu_pattern_fill(g->px, w, h, n);
        int64_t seq = vgpu_region_publish_frame(g->reg, g->px, w, h, w * 4, n * 1000);
        assert_true(seq > 0);
        return (uint64_t)seq;
}

static void read_pattern(struct rig *g, uint8_t *buf, size_t cap, uint64_t n, struct vgpu_frame_info *fi)
{
        size_t bad = 0;
        assert_int_equal(vgpu_perception_read(g->p, buf, cap, fi), 0);
        assert_int_equal(vgpu_checksum(buf, fi->data_len), fi->checksum);
        if (vgpu_pattern_verify(buf, fi->width, fi->height, n, &bad) != 0)
                fail_msg("frame %llu: byte %zu is not the pattern of n=%llu", (unsigned long long)fi->seq,
                         bad, (unsigned long long)n);
}

static void test_core_frames_control_resize(void **state)
{
        struct rig g;
        struct vgpu_frame_info fi;
        static uint8_t buf[800 * 600 * 4];

        rig_open(&g, 320, 240, 0);
        for (uint64_t n = 1; n <= 5; n++) {
                uint64_t seq = publish(&g, 320, 240, n);
                read_pattern(&g, buf, sizeof(buf), n, &fi);
                assert_int_equal(fi.seq, seq);
                assert_int_equal(fi.nonce, vgpu_region_nonce(g.reg));
                assert_int_equal(fi.timestamp_ns, n * 1000);
        }

        /* Control: built by the library, "MEMWRITE" into the RAM, handled
         * and acknowledged by the producer core. */
        struct vgpu_control c;
        struct vgpu_request req;
        uint64_t gpa;
        uint32_t rseq;
        int32_t res = 1;
        uint32_t args[4] = {10, 0, 0, 0};
        assert_int_equal(vgpu_perception_control(g.p, VGPU_OP_FPS_CAP, args, &c, &gpa, &rseq), 0);
        assert_true(gpa >= GPA_BASE && gpa + sizeof(c) <= GPA_BASE + RAM_SIZE);
        memcpy(g.ram.map + (gpa - GPA_BASE), &c, sizeof(c));
        assert_int_equal(vgpu_region_poll_control(g.reg, &req), 1);
        assert_int_equal(req.seq, rseq);
        assert_int_equal(req.op, VGPU_OP_FPS_CAP);
        assert_int_equal(req.arg[0], 10);
        assert_int_equal(vgpu_perception_control_ack(g.p, rseq, &res), 0);
        vgpu_region_ack(g.reg, req.seq, 0);
        assert_int_equal(vgpu_perception_control_ack(g.p, rseq, &res), 1);
        assert_int_equal(res, 0);

        /* A larger geometry: the region is recreated with a new nonce. */
        uint64_t old = vgpu_region_nonce(g.reg);
        int recreated = 0;
        assert_int_equal(vgpu_region_set_geometry(g.reg, 800, 600, VGPU_FMT_BGRA8888, &recreated), 0);
        assert_true(recreated);
        publish(&g, 800, 600, 7);
        /* Lost this soon after its scan, the region is looked for again
         * after rescan_min_ms: wait() says when the new run has a frame. */
        assert_int_equal(vgpu_perception_wait(g.p, fi.seq, 5000, 0, NULL), 0);
        read_pattern(&g, buf, sizeof(buf), 7, &fi);
        assert_true(fi.nonce != old);
        assert_int_equal(fi.width, 800);
        assert_int_equal(fi.height, 600);
        rig_close(&g);
}

struct pub {
        struct rig *g;
        volatile int stop;
        uint64_t n;
};

static void *publisher(void *arg)
{
        struct pub *t = arg;
        while (!t->stop) {
                t->n++;
                /* The pattern is drawn once per 16 frames: the rest is the
                 * producer core's copy as fast as it goes. */
                if (t->n % 16 == 1)
                        vgpu_pattern_fill(t->g->px, 320, 240, t->n);
                if (vgpu_region_publish_frame(t->g->reg, t->g->px, 320, 240, 320 * 4, t->n) <= 0)
                        abort();
        }
        return NULL;
}

static void test_core_torn_stress(void **state)
{
        struct rig g;
        struct pub t = {0};
        pthread_t th;
        struct vgpu_frame_info fi;
        static uint8_t buf[320 * 240 * 4];
        int good = 0;

        rig_open(&g, 320, 240, 0);
        publish(&g, 320, 240, 1);
        t.g = &g;
        assert_int_equal(pthread_create(&th, NULL, publisher, &t), 0);
        /* Without the library verifying: the seqlock alone must keep torn
         * frames out; the test recomputes every checksum. */
        struct vgpu_perception_options o = {.stale_ms = 10000};
        struct vgpu_perception *p2 = NULL;
        assert_int_equal(vgpu_perception_new(g.vr, &o, &p2), 0);
        for (int i = 0; i < 2000; i++) {
                int r = vgpu_perception_read(i % 2 ? g.p : p2, buf, sizeof(buf), &fi);
                if (r == -EAGAIN)
                        continue;
                assert_int_equal(r, 0);
                assert_int_equal(vgpu_checksum(buf, fi.data_len), fi.checksum);
                good++;
        }
        t.stop = 1;
        pthread_join(th, NULL);
        struct vgpu_perception_stats s1, s2;
        vgpu_perception_stats(g.p, &s1);
        vgpu_perception_stats(p2, &s2);
        print_message("core stress: %d good, %llu published, torn %llu + %llu, checksum refusals %llu\n",
                      good, (unsigned long long)t.n, (unsigned long long)s1.torn, (unsigned long long)s2.torn,
                      (unsigned long long)s1.checksum_errors);
        assert_true(good > 0);
        vgpu_perception_free(p2);
        rig_close(&g);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_core_frames_control_resize),
            cmocka_unit_test(test_core_torn_stress),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
