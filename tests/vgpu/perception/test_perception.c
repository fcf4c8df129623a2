/* SPDX-License-Identifier: MIT */
/* libvgpu-perception against the stub producer on a memfd "guest RAM":
 * discovery over scattered pages, frames and metadata, torn and corrupt
 * frames, restart, reset, resolution change, zero-copy, control requests,
 * waiting, and the bad inputs of the region parser. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <vgpu/perception.h>
#include <vmie/vmie.h>

#include "vgpu/perception/stub_producer.h"

#define RAM_SIZE (8u << 20)
#define GPA_BASE 0x100000ull

struct fx {
        int fd;
        uint8_t *ram;
        struct vmie_ram *vr;
        struct stub_producer sp;
        struct vgpu_perception *p;
};

static struct vmie_ram *open_ram(int fd, unsigned flags)
{
        struct vmie_range r = {.gpa = GPA_BASE, .len = RAM_SIZE, .file_offset = 0};
        struct vmie_ram *vr = NULL;
        assert_int_equal(vmie_ram_open_fd(fd, &r, 1, flags, &vr), 0);
        return vr;
}

/* A heartbeat standing still this long is a dead producer. Long by default:
 * on a loaded machine a publisher thread can be off the CPU for a while. */
static uint32_t fx_stale_ms = 10000;

static void fx_open(struct fx *f, unsigned ram_flags, unsigned flags, uint32_t w, uint32_t h)
{
        struct vgpu_perception_options o = {.flags = flags, .rescan_min_ms = 20, .stale_ms = fx_stale_ms};
        memset(f, 0, sizeof(*f));
        f->fd = memfd_create("vgpu-test-ram", MFD_CLOEXEC);
        assert_true(f->fd >= 0);
        assert_int_equal(ftruncate(f->fd, RAM_SIZE), 0);
        f->ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, f->fd, 0);
        assert_true(f->ram != MAP_FAILED);
        if (w)
                assert_int_equal(stub_producer_init(&f->sp, f->ram, RAM_SIZE, GPA_BASE, 0x1111, w, h, 3, 7),
                                 0);
        f->vr = open_ram(f->fd, ram_flags);
        assert_int_equal(vgpu_perception_new(f->vr, &o, &f->p), 0);
}

static void fx_close(struct fx *f)
{
        vgpu_perception_free(f->p);
        vmie_ram_free(f->vr);
        stub_producer_fini(&f->sp);
        munmap(f->ram, RAM_SIZE);
        close(f->fd);
}

/* A mapped frame's spans copied out in order; the bytes copied. */
static size_t gather(const struct iovec *sp, size_t n, uint8_t *buf, size_t cap)
{
        size_t off = 0;

        for (size_t i = 0; i < n; i++) {
                assert_true(off + sp[i].iov_len <= cap);
                memcpy(buf + off, sp[i].iov_base, sp[i].iov_len);
                off += sp[i].iov_len;
        }
        return off;
}

static void check_pattern(const uint8_t *buf, const struct vgpu_frame_info *fi)
{
        for (uint32_t y = 0; y < fi->height; y++)
                for (uint32_t x = 0; x < fi->width; x++) {
                        uint8_t px[4];
                        stub_pattern_pixel(fi->seq, x, y, px);
                        assert_memory_equal(buf + (size_t)y * fi->stride + (size_t)x * 4, px, 4);
                }
}

static void read_good(struct fx *f, uint8_t *buf, size_t cap, struct vgpu_frame_info *fi)
{
        assert_int_equal(vgpu_perception_read(f->p, buf, cap, fi), 0);
        assert_int_equal(vgpu_checksum(buf, fi->data_len), fi->checksum);
        check_pattern(buf, fi);
}

static void frames_over_scattered_pages(unsigned ram_flags)
{
        struct fx f;
        struct vgpu_frame_info fi;
        struct vgpu_perception_stats st;
        struct vgpu_producer_info pi;
        static uint8_t buf[200 * 150 * 4];

        fx_open(&f, ram_flags, VGPU_PERCEPTION_VERIFY, 200, 150);
        assert_int_equal(vgpu_perception_read(f.p, buf, sizeof(buf), &fi), -ENODATA);
        assert_int_equal(vgpu_perception_state(f.p), VGPU_PERCEPTION_READY);
        for (int i = 0; i < 10; i++) {
                uint64_t seq = stub_producer_publish(&f.sp);
                read_good(&f, buf, sizeof(buf), &fi);
                assert_int_equal(fi.seq, seq);
                assert_int_equal(fi.width, 200);
                assert_int_equal(fi.height, 150);
                assert_int_equal(fi.stride, 800);
                assert_int_equal(fi.format, VGPU_FMT_BGRA8888);
                assert_int_equal(fi.nonce, 0x1111);
                assert_int_equal(fi.timestamp_ns, seq * 1000);
        }
        assert_int_equal(vgpu_perception_producer(f.p, &pi), 0);
        assert_int_equal(pi.pid, 4242);
        assert_int_equal(pi.npages, f.sp.npages);
        assert_int_equal(pi.page0_gpa, GPA_BASE + f.sp.page_off[0]);
        /* Too small a buffer: metadata, no copy. */
        assert_int_equal(vgpu_perception_read(f.p, buf, 100, &fi), -ENOSPC);
        assert_int_equal(fi.data_len, 200 * 150 * 4);
        vgpu_perception_stats(f.p, &st);
        assert_int_equal(st.scans, 1); /* one scan, then O(1) per frame */
        assert_int_equal(st.scan_bytes, RAM_SIZE);
        assert_int_equal(st.frames, 10);
        fx_close(&f);
}

static void test_frames_mapped(void **state)
{
        frames_over_scattered_pages(0);
}

static void test_frames_pread(void **state)
{
        frames_over_scattered_pages(VMIE_RAM_NO_MMAP);
}

static void test_no_producer_is_a_state(void **state)
{
        struct fx f;
        struct vgpu_frame_info fi;
        struct vgpu_perception_stats st;
        uint8_t b[16];

        fx_open(&f, 0, 0, 0, 0);
        for (int i = 0; i < 50; i++)
                assert_int_equal(vgpu_perception_read(f.p, b, sizeof(b), &fi), -ENOENT);
        assert_int_equal(vgpu_perception_state(f.p), VGPU_PERCEPTION_NO_PRODUCER);
        vgpu_perception_stats(f.p, &st);
        assert_true(st.scans <= 2); /* rate-limited, not one scan per call */
        assert_int_equal(vgpu_perception_wait(f.p, 0, 30, 0, NULL), -ENOENT);
        fx_close(&f);
}

static void test_torn_and_corrupt(void **state)
{
        struct fx f;
        struct vgpu_frame_info fi;
        struct vgpu_perception_stats st;
        static uint8_t buf[64 * 64 * 4];

        fx_open(&f, 0, VGPU_PERCEPTION_VERIFY, 64, 64);
        stub_producer_publish(&f.sp);
        read_good(&f, buf, sizeof(buf), &fi);
        /* A slot left odd (producer died mid-write) is never returned. */
        uint32_t *lock =
            (uint32_t *)(void *)stub_producer_at(&f.sp, 512 + (uint64_t)fi.slot * f.sp.slot_size);
        (*lock)++;
        assert_int_equal(vgpu_perception_read(f.p, buf, sizeof(buf), &fi), -EAGAIN);
        (*lock)++;
        /* A checksum that does not match: refused with VERIFY. */
        f.sp.corrupt_checksum = true;
        stub_producer_publish(&f.sp);
        assert_int_equal(vgpu_perception_read(f.p, buf, sizeof(buf), &fi), -EAGAIN);
        vgpu_perception_stats(f.p, &st);
        assert_true(st.checksum_errors >= 1);
        f.sp.corrupt_checksum = false;
        stub_producer_publish(&f.sp);
        read_good(&f, buf, sizeof(buf), &fi);
        fx_close(&f);
}

static void test_restart_new_nonce(void **state)
{
        struct fx f;
        struct vgpu_frame_info fi;
        static uint8_t buf[64 * 64 * 4];

        fx_open(&f, 0, VGPU_PERCEPTION_VERIFY, 64, 64);
        stub_producer_publish(&f.sp);
        read_good(&f, buf, sizeof(buf), &fi);
        /* The process exits, its pages are reused; a new run elsewhere.
         * (Past rescan_min_ms: a region lost at once is rate-limited.) */
        usleep(30000);
        stub_producer_wipe(&f.sp);
        stub_producer_fini(&f.sp);
        assert_int_equal(stub_producer_init(&f.sp, f.ram, RAM_SIZE, GPA_BASE, 0x2222, 64, 64, 3, 99), 0);
        f.sp.heartbeat = 5;
        stub_producer_publish(&f.sp);
        read_good(&f, buf, sizeof(buf), &fi);
        assert_int_equal(fi.nonce, 0x2222);
        assert_int_equal(fi.seq, 1);
        fx_close(&f);
}

static void test_dead_producer_left_in_ram(void **state)
{
        struct fx f;
        struct vgpu_frame_info fi;
        struct stub_producer old;
        static uint8_t buf[32 * 32 * 4];
        uint8_t *copy = malloc(RAM_SIZE);

        assert_non_null(copy);
        fx_stale_ms = 100;
        fx_open(&f, 0, VGPU_PERCEPTION_VERIFY, 32, 32);
        fx_stale_ms = 10000;
        f.sp.heartbeat = 1000; /* an old run with a high clock */
        stub_producer_publish(&f.sp);
        read_good(&f, buf, sizeof(buf), &fi);
        /* It dies, its region intact; nothing beats any more. */
        old = f.sp;
        memset(&f.sp, 0, sizeof(f.sp));
        assert_int_equal(vgpu_perception_wait(f.p, fi.seq, 400, 0, NULL), -ENOENT);
        assert_int_equal(vgpu_perception_state(f.p), VGPU_PERCEPTION_NO_PRODUCER);
        stub_producer_fini(&old);
        free(copy);
        fx_close(&f);
}

static void test_guest_reset(void **state)
{
        struct fx f;
        struct vgpu_frame_info fi;
        static uint8_t buf[32 * 32 * 4];

        fx_open(&f, 0, VGPU_PERCEPTION_VERIFY, 32, 32);
        stub_producer_publish(&f.sp);
        read_good(&f, buf, sizeof(buf), &fi);
        /* Reset: RAM cleared, a new memctx epoch; the producer starts again. */
        stub_producer_fini(&f.sp);
        memset(f.ram, 0, RAM_SIZE);
        struct vmie_ram *nr = open_ram(f.fd, 0);
        assert_int_equal(vgpu_perception_reset(f.p, nr), 0);
        vmie_ram_free(f.vr);
        f.vr = nr;
        assert_int_equal(vgpu_perception_read(f.p, buf, sizeof(buf), &fi), -ENOENT);
        assert_int_equal(stub_producer_init(&f.sp, f.ram, RAM_SIZE, GPA_BASE, 0x3333, 32, 32, 2, 5), 0);
        stub_producer_publish(&f.sp);
        assert_int_equal(vgpu_perception_reset(f.p, NULL), 0);
        read_good(&f, buf, sizeof(buf), &fi);
        assert_int_equal(fi.nonce, 0x3333);
        fx_close(&f);
}

static void test_resolution_change(void **state)
{
        struct fx f;
        struct vgpu_frame_info fi;
        static uint8_t buf[128 * 96 * 4];

        fx_open(&f, 0, VGPU_PERCEPTION_VERIFY, 128, 96);
        stub_producer_publish(&f.sp);
        read_good(&f, buf, sizeof(buf), &fi);
        /* New geometry announced, its first frame not out yet: the old
         * slot is not read with the new geometry (nor returned). */
        stub_producer_resize(&f.sp, 64, 48);
        assert_int_equal(vgpu_perception_read(f.p, buf, sizeof(buf), &fi), -EAGAIN);
        stub_producer_publish(&f.sp);
        read_good(&f, buf, sizeof(buf), &fi);
        assert_int_equal(fi.width, 64);
        assert_int_equal(fi.height, 48);
        assert_int_equal(fi.stride, 256);
        assert_int_equal(fi.geometry_gen, 2);
        fx_close(&f);
}

static void test_zero_copy(void **state)
{
        struct fx f;
        struct vgpu_frame_info fi;
        const struct iovec *sp;
        size_t n;
        static uint8_t buf[100 * 80 * 4];

        fx_open(&f, 0, 0, 100, 80);
        stub_producer_publish(&f.sp);
        assert_int_equal(vgpu_perception_map(f.p, &sp, &n, &fi), 0);
        assert_int_equal(gather(sp, n, buf, sizeof(buf)), fi.data_len);
        assert_int_equal(vgpu_perception_still_valid(f.p, &fi), 1);
        check_pattern(buf, &fi);
        /* The slot is rewritten (nslots publishes later): no longer valid. */
        for (uint32_t i = 0; i < f.sp.nslots; i++)
                stub_producer_publish(&f.sp);
        assert_int_equal(vgpu_perception_still_valid(f.p, &fi), 0);
        fx_close(&f);

        fx_open(&f, VMIE_RAM_NO_MMAP, 0, 100, 80);
        stub_producer_publish(&f.sp);
        assert_int_equal(vgpu_perception_map(f.p, &sp, &n, &fi), -ENOTSUP);
        fx_close(&f);
}

/* Zero-copy with VGPU_PERCEPTION_VERIFY: the checksum is recomputed in
 * place over the spans; a lying checksum or an odd seqlock is refused, a
 * good frame (also one whose length is not a multiple of the checksum's
 * 32-byte block) is handed out. */
static void test_zero_copy_verify(void **state)
{
        static const uint32_t dims[][2] = {{100, 80}, {33, 3}};
        for (size_t d = 0; d < 2; d++) {
                struct fx f;
                struct vgpu_frame_info fi;
                struct vgpu_perception_stats st;
                const struct iovec *sp;
                size_t n;
                static uint8_t buf[100 * 80 * 4], copy[100 * 80 * 4];

                fx_open(&f, 0, VGPU_PERCEPTION_VERIFY, dims[d][0], dims[d][1]);
                stub_producer_publish(&f.sp);
                assert_int_equal(vgpu_perception_map(f.p, &sp, &n, &fi), 0);
                assert_int_equal(gather(sp, n, buf, sizeof(buf)), fi.data_len);
                assert_int_equal(vgpu_perception_still_valid(f.p, &fi), 1);
                assert_int_equal(vgpu_checksum(buf, fi.data_len), fi.checksum);
                check_pattern(buf, &fi);
                /* The copy path (checksum fused into the copy) agrees. */
                assert_int_equal(vgpu_perception_read(f.p, copy, sizeof(copy), &fi), 0);
                assert_memory_equal(copy, buf, fi.data_len);

                /* A checksum that does not match: refused, counted. */
                f.sp.corrupt_checksum = true;
                stub_producer_publish(&f.sp);
                assert_int_equal(vgpu_perception_map(f.p, &sp, &n, &fi), -EAGAIN);
                vgpu_perception_stats(f.p, &st);
                assert_true(st.checksum_errors >= 1);
                f.sp.corrupt_checksum = false;

                /* A slot left odd is refused too. */
                uint64_t seq = stub_producer_publish(&f.sp);
                uint32_t *lock = (uint32_t *)(void *)stub_producer_at(
                    &f.sp, 512 + (uint64_t)(seq % f.sp.nslots) * f.sp.slot_size);
                (*lock)++;
                assert_int_equal(vgpu_perception_map(f.p, &sp, &n, &fi), -EAGAIN);
                (*lock)++;
                assert_int_equal(vgpu_perception_map(f.p, &sp, &n, &fi), 0);
                assert_int_equal(fi.seq, seq);
                fx_close(&f);
        }
}

/* After discovery every page of the region is in this process's page
 * tables (mapped mode), so frame reads take no page faults: checked in
 * /proc/self/pagemap (bit 63, "present", readable without privileges). */
static void test_region_pages_resident(void **state)
{
        struct fx f;
        fx_open(&f, 0, 0, 640, 480);
        stub_producer_publish(&f.sp);
        assert_int_equal(vgpu_perception_discover(f.p), 0);
        int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
        if (pm < 0) {
                fx_close(&f);
                skip();
        }
        for (uint32_t i = 0; i < f.sp.npages; i++) {
                const void *ptr;
                uint64_t e = 0;
                assert_int_equal(vmie_ram_peek(f.vr, GPA_BASE + f.sp.page_off[i], VGPU_PAGE_SIZE, &ptr), 0);
                off_t at = (off_t)((uintptr_t)ptr / VGPU_PAGE_SIZE * sizeof(e));
                assert_int_equal(pread(pm, &e, sizeof(e), at), (ssize_t)sizeof(e));
                if (!(e >> 63))
                        fail_msg("region page %u (GPA 0x%llx) is not mapped after discovery", i,
                                 (unsigned long long)(GPA_BASE + f.sp.page_off[i]));
        }
        close(pm);
        fx_close(&f);
}

static void test_control(void **state)
{
        struct fx f;
        struct vgpu_control c;
        uint64_t gpa;
        uint32_t seq, seq2;
        int32_t res = 1;
        uint32_t args[4] = {1, 0, 0, 0};

        fx_open(&f, 0, 0, 32, 32);
        assert_int_equal(vgpu_perception_control(f.p, VGPU_OP_PAUSE, args, &c, &gpa, &seq), 0);
        assert_int_equal(gpa, GPA_BASE + f.sp.page_off[0] + VGPU_TAG_SIZE + VGPU_CONTROL_OFFSET);
        assert_int_equal(c.req_seq_check, ~seq);
        assert_int_equal(vgpu_perception_control_ack(f.p, seq, &res), 0);
        /* What CMD_MEMWRITE PHYS does, then the producer's loop. */
        memcpy(f.ram + (gpa - GPA_BASE), &c, sizeof(c));
        assert_int_equal(stub_producer_poll_control(&f.sp), 1);
        assert_int_equal(vgpu_perception_control_ack(f.p, seq, &res), 1);
        assert_int_equal(res, 0);
        struct vgpu_producer_info pi;
        assert_int_equal(vgpu_perception_producer(f.p, &pi), 0);
        assert_true(pi.flags & VGPU_HF_PAUSED);
        assert_int_equal(vgpu_perception_control(f.p, VGPU_OP_FULL_FRAME, NULL, &c, &gpa, &seq2), 0);
        assert_true(seq2 != seq && seq2 != 0);
        assert_int_equal(vgpu_perception_control(f.p, 99, NULL, &c, &gpa, &seq2), -EINVAL);
        fx_close(&f);
}

struct pub_thread {
        struct stub_producer *sp;
        volatile int stop;
        uint32_t delay_us;
        uint64_t published;
};

static void *publisher(void *arg)
{
        struct pub_thread *t = arg;
        while (!t->stop) {
                stub_producer_publish(t->sp);
                t->published++;
                if (t->delay_us)
                        usleep(t->delay_us);
        }
        return NULL;
}

static void test_wait_paced(void **state)
{
        struct fx f;
        struct vgpu_frame_info fi;
        struct pub_thread t = {.delay_us = 5000};
        pthread_t th;
        uint32_t polls = 0, total = 0;
        static uint8_t buf[32 * 32 * 4];

        fx_open(&f, 0, VGPU_PERCEPTION_VERIFY, 32, 32);
        t.sp = &f.sp;
        assert_int_equal(vgpu_perception_wait(f.p, 0, 20, 0, &polls), -ETIMEDOUT);
        assert_int_equal(vgpu_perception_wait(f.p, 0, 1000, 1, &polls), -EDQUOT);
        assert_int_equal(polls, 1);
        assert_int_equal(pthread_create(&th, NULL, publisher, &t), 0);
        uint64_t last = 0;
        for (int i = 0; i < 20; i++) {
                assert_int_equal(vgpu_perception_wait(f.p, last, 2000, 0, &polls), 0);
                total += polls;
                assert_int_equal(vgpu_perception_read(f.p, buf, sizeof(buf), &fi), 0);
                assert_true(fi.seq > last);
                last = fi.seq;
        }
        t.stop = 1;
        pthread_join(th, NULL);
        /* Paced, not spinning: a 5 ms cadence needs a handful of header
         * reads per frame, not thousands. */
        assert_true(total < 20 * 200);
        fx_close(&f);
}

/* The producer writes as fast as it can; no frame returned as good may
 * disagree with its checksum, with or without the library verifying. */
static void stress(unsigned ram_flags, unsigned flags)
{
        struct fx f;
        struct vgpu_frame_info fi;
        struct pub_thread t = {0};
        pthread_t th;
        static uint8_t buf[256 * 128 * 4];
        int good = 0;
        uint64_t last = 0;

        fx_open(&f, ram_flags, flags, 256, 128);
        t.sp = &f.sp;
        stub_producer_publish(&f.sp);
        assert_int_equal(pthread_create(&th, NULL, publisher, &t), 0);
        for (int i = 0; i < 3000; i++) {
                int r = vgpu_perception_read(f.p, buf, sizeof(buf), &fi);
                if (r == -EAGAIN)
                        continue;
                assert_int_equal(r, 0);
                assert_int_equal(vgpu_checksum(buf, fi.data_len), fi.checksum);
                assert_true(fi.seq >= last);
                last = fi.seq;
                good++;
        }
        t.stop = 1;
        pthread_join(th, NULL);
        struct vgpu_perception_stats st;
        vgpu_perception_stats(f.p, &st);
        print_message("stress: %d good frames, %llu torn attempts, %llu published\n", good,
                      (unsigned long long)st.torn, (unsigned long long)t.published);
        assert_true(good > 0);
        fx_close(&f);
}

static void test_stress_torn(void **state)
{
        stress(0, 0);
        stress(0, VGPU_PERCEPTION_VERIFY);
        stress(VMIE_RAM_NO_MMAP, 0);
}

/* ---- bad inputs ---- */

static struct vgpu_header *hdr_of(struct fx *f)
{
        return (struct vgpu_header *)(void *)stub_producer_at(&f->sp, 0);
}

static void expect_no_producer(struct fx *f)
{
        uint8_t b[64];
        struct vgpu_frame_info fi;
        assert_int_equal(vgpu_perception_discover(f->p), -ENOENT);
        assert_int_equal(vgpu_perception_read(f->p, b, sizeof(b), &fi), -ENOENT);
}

/* Mutation i of a valid header; NULL name past the last one. */
static const char *mutate_header(struct vgpu_header *h, int i)
{
        switch (i) {
        case 0:
                h->magic ^= 1;
                return "magic";
        case 1:
                h->version = 2;
                return "version";
        case 2:
                h->header_size = 128;
                return "header_size";
        case 3:
                h->nonce ^= 4;
                return "nonce";
        case 4:
                h->nslots = 0;
                return "nslots 0";
        case 5:
                h->nslots = VGPU_MAX_SLOTS + 1;
                return "nslots big";
        case 6:
                h->width = 0;
                return "width 0";
        case 7:
                h->width = VGPU_MAX_DIM + 1;
                return "width big";
        case 8:
                h->height = VGPU_MAX_DIM + 1;
                return "height big";
        case 9:
                h->format = 9;
                return "format";
        case 10:
                h->stride = h->width * 4 - 4;
                return "stride small";
        case 11:
                h->stride = h->width * 4 + 2;
                return "stride unaligned";
        case 12:
                h->slot_size = 64;
                return "slot_size small";
        case 13:
                h->slot_size += 8;
                return "slot_size unaligned";
        case 14:
                h->nslots = 16;
                return "slots past region";
        case 15:
                h->slots_offset = ~0ull - 63;
                return "slots_offset huge";
        case 16:
                h->slots_offset += 8;
                return "slots_offset unaligned";
        case 17:
                h->slots_offset = 256;
                return "slots over control";
        case 18:
                h->control_offset = VGPU_PAYLOAD - 32;
                return "control past page 0";
        case 19:
                h->control_offset = 128;
                return "control in header";
        case 20:
                h->latest_seq = 5;
                h->latest_slot = h->nslots;
                return "latest_slot";
        case 21:
                h->stride = 0xfffffffc;
                return "stride huge";
        default:
                return NULL;
        }
}

static void test_bad_headers(void **state)
{
        struct fx f;
        struct vgpu_header good;
        const char *what;

        for (int i = 0;; i++) {
                fx_open(&f, 0, 0, 64, 64);
                good = *hdr_of(&f);
                what = mutate_header(hdr_of(&f), i);
                if (!what) {
                        fx_close(&f);
                        break;
                }
                print_message("bad header: %s\n", what);
                expect_no_producer(&f);
                *hdr_of(&f) = good;
                assert_int_equal(vgpu_perception_discover(f.p), 0);
                fx_close(&f);
        }
}

static void test_bad_tags(void **state)
{
        struct fx f;
        struct vgpu_page_tag *t;

        /* A missing page: incomplete region. */
        fx_open(&f, 0, 0, 64, 64);
        t = (struct vgpu_page_tag *)(void *)(f.ram + f.sp.page_off[3]);
        t->check ^= 1;
        expect_no_producer(&f);
        fx_close(&f);

        /* npages larger than RAM (tags consistent): bounded, refused. */
        fx_open(&f, 0, 0, 64, 64);
        for (uint32_t i = 0; i < f.sp.npages; i++) {
                t = (struct vgpu_page_tag *)(void *)(f.ram + f.sp.page_off[i]);
                t->npages = RAM_SIZE / 4096 + 1;
                t->check = vgpu_tag_check(t->magic, t->index, t->nonce, t->npages);
        }
        expect_no_producer(&f);
        fx_close(&f);

        /* A tag-valid page whose index >= npages is not a tag. */
        struct vgpu_page_tag bad = {.magic = VGPU_TAG_MAGIC, .index = 5, .nonce = 9, .npages = 5};
        bad.check = vgpu_tag_check(bad.magic, bad.index, bad.nonce, bad.npages);
        fx_open(&f, 0, 0, 0, 0);
        memcpy(f.ram + 4096, &bad, sizeof(bad));
        expect_no_producer(&f);
        fx_close(&f);
}

static void test_page_moved_rediscovers(void **state)
{
        struct fx f;
        struct vgpu_frame_info fi;
        struct vgpu_perception_stats st;
        static uint8_t buf[64 * 64 * 4];

        fx_open(&f, 0, VGPU_PERCEPTION_VERIFY, 64, 64);
        stub_producer_publish(&f.sp);
        read_good(&f, buf, sizeof(buf), &fi);
        /* The guest migrates the header page to page 0 of RAM (free in the
         * stub): copy, repoint, clear the old one. */
        usleep(30000); /* past rescan_min_ms, see test_quick_loss_is_rate_limited */
        uint64_t old = f.sp.page_off[0];
        memcpy(f.ram, f.ram + old, 4096);
        memset(f.ram + old, 0, 4096);
        f.sp.page_off[0] = 0;
        stub_producer_publish(&f.sp);
        read_good(&f, buf, sizeof(buf), &fi);
        vgpu_perception_stats(f.p, &st);
        assert_int_equal(st.scans, 2);
        assert_true(st.tag_mismatches >= 1);
        assert_int_equal(st.rediscoveries, 1);
        fx_close(&f);
}

/* A region lost right after its scan (a guest rewriting tags on purpose)
 * does not buy a full RAM scan per read. */
static void test_quick_loss_is_rate_limited(void **state)
{
        struct fx f;
        struct vgpu_frame_info fi;
        struct vgpu_perception_stats st;
        static uint8_t buf[32 * 32 * 4];

        fx_open(&f, 0, VGPU_PERCEPTION_VERIFY, 32, 32);
        stub_producer_publish(&f.sp);
        read_good(&f, buf, sizeof(buf), &fi);
        struct vgpu_page_tag *t = (struct vgpu_page_tag *)(void *)(f.ram + f.sp.page_off[0]);
        t->nonce ^= 1; /* the header page's tag: every read touches it */
        int enoent = 0;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (int i = 0; i < 200; i++) {
                int r = vgpu_perception_read(f.p, buf, sizeof(buf), &fi);
                enoent += r == -ENOENT;
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
        vgpu_perception_stats(f.p, &st);
        assert_int_equal(enoent, 200);
        /* One scan per rescan_min_ms (20) at most, plus the first. */
        assert_true(st.scans <= 2 + (uint64_t)ms / 20);
        t->nonce ^= 1;
        fx_close(&f);
}

static void test_duplicate_page(void **state)
{
        struct fx f;
        struct vgpu_frame_info fi;
        struct vgpu_perception_stats st;
        static uint8_t buf[64 * 64 * 4];

        /* The migrated page's old copy stays intact below the live one (it
         * comes first in GPA order, so the first pick is the stale one). */
        fx_open(&f, 0, 0, 64, 64);
        uint32_t idx = f.sp.npages - 2;
        stub_producer_publish(&f.sp);
        memcpy(f.ram, f.ram + f.sp.page_off[idx], 4096);
        uint64_t keep = f.sp.page_off[idx];
        assert_true(keep > 0);
        for (int i = 0; i < 6; i++)
                stub_producer_publish(&f.sp); /* the live copy moves on */
        for (int i = 0; i < 4; i++) {
                int r = vgpu_perception_read(f.p, buf, sizeof(buf), &fi);
                if (r == 0) {
                        assert_int_equal(vgpu_checksum(buf, fi.data_len), fi.checksum);
                        check_pattern(buf, &fi);
                } else {
                        assert_int_equal(r, -EAGAIN);
                }
                stub_producer_publish(&f.sp);
        }
        read_good(&f, buf, sizeof(buf), &fi);
        vgpu_perception_stats(f.p, &st);
        assert_int_equal(st.duplicate_pages, 1);
        fx_close(&f);
}

static void test_two_producers_newest_wins(void **state)
{
        struct fx f;
        struct stub_producer b;
        struct vgpu_frame_info fi;
        static uint8_t buf[32 * 32 * 4];

        fx_open(&f, 0, VGPU_PERCEPTION_VERIFY, 32, 32);
        stub_producer_publish(&f.sp);
        /* A second run in the upper half of RAM, with a newer heartbeat. */
        assert_int_equal(stub_producer_init(&b, f.ram + RAM_SIZE / 2, RAM_SIZE / 2, GPA_BASE + RAM_SIZE / 2,
                                            0x4444, 32, 32, 2, 3),
                         0);
        b.heartbeat = 500;
        stub_producer_publish(&b);
        read_good(&f, buf, sizeof(buf), &fi);
        assert_int_equal(fi.nonce, 0x4444);
        stub_producer_fini(&b);
        fx_close(&f);
}

/* The fuzzer's seeds hold valid regions with a frame: keep them so. */
static void test_fuzz_seeds_are_valid(void **state)
{
        static const char *const names[] = {"one_page", "scattered", "split"};
        static uint8_t img[64 << 10], buf[64 << 10];

        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                char path[512];
                snprintf(path, sizeof(path), "%s/fuzz_vgpu_perception/%s", VMSIG_FUZZ_CORPUS, names[i]);
                FILE *f = fopen(path, "rb");
                assert_non_null(f);
                size_t n = fread(img, 1, sizeof(img), f);
                fclose(f);
                assert_true(n > 4096);
                size_t isz = (n - 1) & ~(size_t)4095;
                struct vmie_range r[2] = {{.gpa = 0x1000, .len = isz, .file_offset = 0}};
                size_t nr = 1;
                if (img[0] & 4) {
                        uint64_t half = (isz / 2) & ~0xfffull;
                        r[0].len = half;
                        r[1] = (struct vmie_range){.gpa = 1ull << 32, .len = isz - half, .file_offset = half};
                        nr = 2;
                }
                struct vmie_ram *vr = NULL;
                struct vgpu_perception *p = NULL;
                struct vgpu_frame_info fi;
                struct vgpu_perception_options o = {.flags = VGPU_PERCEPTION_VERIFY};
                assert_int_equal(vmie_ram_wrap(img + 1, isz, r, nr, 0, &vr), 0);
                assert_int_equal(vgpu_perception_new(vr, &o, &p), 0);
                assert_int_equal(vgpu_perception_read(p, buf, sizeof(buf), &fi), 0);
                assert_int_equal(fi.seq, 1);
                vgpu_perception_free(p);
                vmie_ram_free(vr);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_frames_mapped),
            cmocka_unit_test(test_frames_pread),
            cmocka_unit_test(test_no_producer_is_a_state),
            cmocka_unit_test(test_torn_and_corrupt),
            cmocka_unit_test(test_restart_new_nonce),
            cmocka_unit_test(test_dead_producer_left_in_ram),
            cmocka_unit_test(test_guest_reset),
            cmocka_unit_test(test_resolution_change),
            cmocka_unit_test(test_zero_copy),
            cmocka_unit_test(test_zero_copy_verify),
            cmocka_unit_test(test_region_pages_resident),
            cmocka_unit_test(test_control),
            cmocka_unit_test(test_wait_paced),
            cmocka_unit_test(test_stress_torn),
            cmocka_unit_test(test_bad_headers),
            cmocka_unit_test(test_bad_tags),
            cmocka_unit_test(test_page_moved_rediscovers),
            cmocka_unit_test(test_quick_loss_is_rate_limited),
            cmocka_unit_test(test_duplicate_page),
            cmocka_unit_test(test_two_producers_newest_wins),
            cmocka_unit_test(test_fuzz_seeds_are_valid),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
