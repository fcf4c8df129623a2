/* SPDX-License-Identifier: MIT */
/* The stub adapters driven directly through their ops, with a test sink that
 * plays the core: it records emitted events, validates and dups the memctx
 * fd, and runs a small poll loop over the registered fds (reading timerfd /
 * eventfd counters first, as the core does). */
/* cmocka needs these first, in this order */
/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <vmsig/adapter.h>
#include <vmsig/event.h>
#include <vmsig/memctx.h>

#include "adapters/stub_internal.h"
#include "vmctl/vmctl.h"

#define MAX_EVENTS 1024
#define WAIT_MS    5000

struct tsink {
        struct vmsig_emit_sink sink; /* first: callbacks cast back */
        pthread_mutex_t mu;
        struct vmsig_event ev[MAX_EVENTS];
        size_t nev;

        struct vmsig_fd_reg regs[VMSIG_FD_REG_MAX];
        size_t nregs;
        unsigned timer_fires, eventfd_fires;

        unsigned registered, unregistered, refused;
        struct vmsig_memctx ctx; /* ctx.fd is our own dup */

        const struct vmsig_adapter_ops *ops;
        void *inst;
        uint32_t endpoint;
};

static int t_emit(const struct vmsig_emit_sink *sink, const struct vmsig_event *ev)
{
        struct tsink *ts = (struct tsink *)sink;

        pthread_mutex_lock(&ts->mu);
        if (ts->nev < MAX_EVENTS)
                ts->ev[ts->nev++] = *ev;
        pthread_mutex_unlock(&ts->mu);
        return 0;
}

static int t_register(const struct vmsig_emit_sink *sink, const struct vmsig_memctx *ctx, uint64_t *ret_epoch)
{
        struct tsink *ts = (struct tsink *)sink;
        int fl = fcntl(ctx->fd, F_GETFL);

        /* the core refuses anything but a read-only fd */
        if (fl < 0 || (fl & O_ACCMODE) != O_RDONLY) {
                ts->refused++;
                return -EPERM;
        }
        if (ts->ctx.fd >= 0)
                close(ts->ctx.fd);
        ts->ctx = *ctx;
        ts->ctx.fd = fcntl(ctx->fd, F_DUPFD_CLOEXEC, 3);
        assert_true(ts->ctx.fd >= 0);
        ts->ctx.epoch = ++ts->registered;
        *ret_epoch = ts->ctx.epoch;
        return 0;
}

static int t_unregister(const struct vmsig_emit_sink *sink)
{
        ((struct tsink *)sink)->unregistered++;
        return 0;
}

static int t_watch(const struct vmsig_emit_sink *sink, const struct vmsig_fd_reg *reg)
{
        struct tsink *ts = (struct tsink *)sink;

        if (ts->nregs == VMSIG_FD_REG_MAX)
                return -ENOSPC;
        ts->regs[ts->nregs++] = *reg;
        return 0;
}

static int t_unwatch(const struct vmsig_emit_sink *sink, int fd)
{
        struct tsink *ts = (struct tsink *)sink;

        for (size_t i = 0; i < ts->nregs; i++)
                if (ts->regs[i].fd == fd) {
                        ts->regs[i] = ts->regs[--ts->nregs];
                        return 0;
                }
        return -ENOENT;
}

static struct tsink *ts_new(void)
{
        struct tsink *ts = calloc(1, sizeof(*ts));

        assert_non_null(ts);
        pthread_mutex_init(&ts->mu, NULL);
        ts->sink.emit = t_emit;
        ts->sink.register_memctx = t_register;
        ts->sink.unregister_memctx = t_unregister;
        ts->sink.watch_fd = t_watch;
        ts->sink.unwatch_fd = t_unwatch;
        ts->ctx.fd = -1;
        ts->endpoint = 7;
        return ts;
}

static int ts_open(struct tsink *ts, const struct vmsig_adapter_ops *ops, const char *options)
{
        struct vmsig_adapter_cfg cfg = {.vm_name = "test", .options = options};

        ts->ops = ops;
        return ops->open(&cfg, ts->endpoint, &ts->inst);
}

static void ts_attach(struct tsink *ts, const struct vmsig_adapter_ops *ops, const char *options)
{
        assert_int_equal(ts_open(ts, ops, options), 0);
        assert_int_equal(ops->attach(ts->inst, &ts->sink, ts->regs, VMSIG_FD_REG_MAX, &ts->nregs), 0);
        for (size_t i = 0; i < ts->nregs; i++) {
                int fl = fcntl(ts->regs[i].fd, F_GETFD);
                assert_true(fl >= 0 && (fl & FD_CLOEXEC));
        }
}

static void ts_free(struct tsink *ts)
{
        if (ts->inst)
                ts->ops->close(ts->inst);
        if (ts->ctx.fd >= 0)
                close(ts->ctx.fd);
        pthread_mutex_destroy(&ts->mu);
        free(ts);
}

/* One loop iteration over the registered fds. */
static void ts_pump(struct tsink *ts, int timeout_ms)
{
        struct pollfd p[VMSIG_FD_REG_MAX];
        struct vmsig_fd_reg regs[VMSIG_FD_REG_MAX];
        size_t n = ts->nregs;

        memcpy(regs, ts->regs, sizeof(regs));
        for (size_t i = 0; i < n; i++)
                p[i] = (struct pollfd){.fd = regs[i].fd, .events = (short)regs[i].epoll_events};
        if (poll(p, n, timeout_ms) <= 0)
                return;
        for (size_t i = 0; i < n; i++) {
                if (!p[i].revents)
                        continue;
                if (regs[i].shape != VMSIG_RDY_FD) {
                        uint64_t v;
                        if (read(regs[i].fd, &v, sizeof(v)) != sizeof(v))
                                continue; /* spurious */
                        if (regs[i].shape == VMSIG_RDY_TIMERFD)
                                ts->timer_fires++;
                        else
                                ts->eventfd_fires++;
                }
                ts->ops->on_readiness(ts->inst, regs[i].cookie, (uint32_t)p[i].revents);
        }
}

static uint64_t now_ms(void)
{
        return vmsig_now_ns() / 1000000u;
}

/* Events of kind (and corr, unless 0). */
static size_t ts_count(struct tsink *ts, uint16_t kind, uint64_t corr)
{
        size_t n = 0;

        pthread_mutex_lock(&ts->mu);
        for (size_t i = 0; i < ts->nev; i++)
                if (ts->ev[i].hdr.kind == kind && (!corr || ts->ev[i].hdr.corr == corr))
                        n++;
        pthread_mutex_unlock(&ts->mu);
        return n;
}

static bool ts_wait(struct tsink *ts, uint16_t kind, uint64_t corr, size_t n)
{
        uint64_t end = now_ms() + WAIT_MS;

        while (ts_count(ts, kind, corr) < n) {
                if (now_ms() > end)
                        return false;
                ts_pump(ts, 10);
        }
        return true;
}

static bool ts_wait_registered(struct tsink *ts)
{
        uint64_t end = now_ms() + WAIT_MS;

        while (!ts->registered) {
                if (now_ms() > end)
                        return false;
                ts_pump(ts, 10);
        }
        return true;
}

/* The i-th (from 0) event of kind; or the last one with i < 0. */
static struct vmsig_event ts_get(struct tsink *ts, uint16_t kind, int idx)
{
        struct vmsig_event out;
        int seen = 0, found = 0;

        memset(&out, 0, sizeof(out));
        pthread_mutex_lock(&ts->mu);
        for (size_t i = 0; i < ts->nev; i++) {
                if (ts->ev[i].hdr.kind != kind)
                        continue;
                if (idx < 0 || seen == idx) {
                        out = ts->ev[i];
                        found = 1;
                        if (idx >= 0)
                                break;
                }
                seen++;
        }
        pthread_mutex_unlock(&ts->mu);
        assert_true(found);
        return out;
}

static struct vmsig_ack_body ts_ack(struct tsink *ts, uint64_t corr)
{
        struct vmsig_ack_body b;

        assert_true(ts_wait(ts, VMSIG_EV_ACT_ACK, corr, 1));
        memset(&b, 0, sizeof(b));
        pthread_mutex_lock(&ts->mu);
        for (size_t i = 0; i < ts->nev; i++)
                if (ts->ev[i].hdr.kind == VMSIG_EV_ACT_ACK && ts->ev[i].hdr.corr == corr) {
                        assert_int_equal(ts->ev[i].hdr.body_len, sizeof(b));
                        assert_int_equal(ts->ev[i].hdr.endpoint, ts->endpoint);
                        assert_int_equal(ts->ev[i].hdr.peer, 42);
                        assert_int_equal(ts->ev[i].hdr.source, ts->ops->seam);
                        memcpy(&b, ts->ev[i].body, sizeof(b));
                        break;
                }
        pthread_mutex_unlock(&ts->mu);
        return b;
}

static int count_fds(void)
{
        DIR *d = opendir("/proc/self/fd");
        int n = 0;

        assert_non_null(d);
        while (readdir(d))
                n++;
        closedir(d);
        return n;
}

static void cmd_init(struct vmsig_event *ev, uint16_t kind, uint64_t corr, uint16_t flags)
{
        memset(ev, 0, sizeof(*ev));
        vmsig_event_init(ev, kind, 7, (uint8_t)vmsig_kind_seam(kind));
        ev->hdr.corr = corr;
        ev->hdr.peer = 42;
        ev->hdr.flags = flags;
}

/* ---- memctx ---- */

struct ram {
        uint8_t *p;
        size_t size;
};

static struct ram map_ram(const struct vmsig_memctx *ctx)
{
        struct ram r = {0};

        for (uint32_t i = 0; i < ctx->nranges; i++)
                r.size += ctx->ranges[i].len;
        r.p = mmap(NULL, r.size, PROT_READ, MAP_SHARED, ctx->fd, 0);
        assert_true(r.p != MAP_FAILED);
        return r;
}

static const uint8_t *ram_at(const struct ram *ram, const struct vmsig_memctx *ctx, uint64_t gpa)
{
        uint64_t off;

        assert_int_equal(vmsig_memctx_gpa_to_offset(ctx, gpa, &off, NULL), 0);
        assert_true(off < ram->size);
        return ram->p + off;
}

/* The test's own 4-level walk over the read-only mapping, the way a control
 * would do it. Returns the leaf level (1 = 4 KiB, 2 = 2 MiB, 3 = 1 GiB),
 * -ENOENT when not present, -EFAULT when a table is outside RAM. */
static int t_walk(const struct ram *ram, const struct vmsig_memctx *ctx, uint64_t root, uint64_t va,
                  uint64_t *ret_gpa, bool *ret_rw)
{
        uint64_t table = root & VMSIG_STUB_PTE_ADDR;

        *ret_rw = true;
        for (int level = 4; level >= 1; level--) {
                unsigned shift = 12 + 9 * (unsigned)(level - 1);
                uint64_t off, e;

                if (vmsig_memctx_gpa_to_offset(ctx, table + ((va >> shift) & 511) * 8, &off, NULL) < 0)
                        return -EFAULT;
                memcpy(&e, ram->p + off, sizeof(e));
                if (!(e & VMSIG_STUB_PTE_P))
                        return -ENOENT;
                *ret_rw = *ret_rw && (e & VMSIG_STUB_PTE_RW);
                if (level == 1 || (level <= 3 && (e & VMSIG_STUB_PTE_PS))) {
                        uint64_t size = UINT64_C(1) << shift;
                        *ret_gpa = (e & VMSIG_STUB_PTE_ADDR & ~(size - 1)) | (va & (size - 1));
                        return level;
                }
                table = e & VMSIG_STUB_PTE_ADDR;
        }
        return -EFAULT;
}

static void check_booted_ctx(struct tsink *ts, uint64_t ram_mib)
{
        const struct vmsig_memctx *c = &ts->ctx;
        uint64_t half = ram_mib << 19, gpa;
        bool rw;

        assert_int_equal(ts->registered, 1);
        assert_int_equal(ts->refused, 0);
        assert_int_equal(c->endpoint, 7);
        assert_int_equal(c->paging, VMSIG_PAGING_4LEVEL);
        assert_int_equal(c->os_kind, VMSIG_OS_SYNTHETIC);
        assert_int_equal(c->kernel_root, VMSIG_STUB_KERNEL_ROOT);
        assert_int_equal(c->kernel_base, VMSIG_STUB_KERNEL_BASE);
        assert_int_equal(c->nranges, 2);
        assert_int_equal(c->ranges[0].gpa, 0);
        assert_int_equal(c->ranges[0].len, half);
        assert_int_equal(c->ranges[0].file_offset, 0);
        assert_int_equal(c->ranges[1].gpa, VMSIG_STUB_HIGH_GPA);
        assert_int_equal(c->ranges[1].len, half);
        assert_int_equal(c->ranges[1].file_offset, half);

        /* read-only for real: no writable shared mapping, no write(2) */
        assert_int_equal(fcntl(c->fd, F_GETFL) & O_ACCMODE, O_RDONLY);
        errno = 0;
        assert_true(mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, c->fd, 0) == MAP_FAILED);
        assert_int_equal(errno, EACCES);
        assert_true(pwrite(c->fd, "x", 1, 0) < 0);

        struct ram ram = map_ram(c);
        assert_int_equal(ram.size, 2 * half);

        /* banner: found by walking the tables, in a 2 MiB page */
        assert_int_equal(t_walk(&ram, c, c->kernel_root, VMSIG_STUB_BANNER_VA, &gpa, &rw), 2);
        assert_int_equal(gpa, VMSIG_STUB_BANNER_GPA);
        assert_string_equal((const char *)ram_at(&ram, c, gpa), VMSIG_STUB_BANNER);
        /* the same through the process root: the kernel half is shared */
        assert_int_equal(t_walk(&ram, c, VMSIG_STUB_USER_ROOT, VMSIG_STUB_BANNER_VA, &gpa, &rw), 2);
        assert_int_equal(gpa, VMSIG_STUB_BANNER_GPA);

        /* 4 KiB pages at the start of the kernel half, one RO, one absent */
        assert_int_equal(t_walk(&ram, c, c->kernel_root, VMSIG_STUB_KERNEL_BASE + 0x20123, &gpa, &rw), 1);
        assert_int_equal(gpa, 0x20123);
        assert_true(rw);
        assert_int_equal(t_walk(&ram, c, c->kernel_root, VMSIG_STUB_RO_VA, &gpa, &rw), 1);
        assert_false(rw);
        assert_int_equal(t_walk(&ram, c, c->kernel_root, VMSIG_STUB_NP_VA, &gpa, &rw), -ENOENT);
        /* last byte of low RAM, then nothing */
        assert_int_equal(t_walk(&ram, c, c->kernel_root, VMSIG_STUB_KERNEL_BASE + half - 1, &gpa, &rw), 2);
        assert_int_equal(gpa, half - 1);
        if (VMSIG_STUB_KERNEL_BASE + half < VMSIG_STUB_HIGH_VA) /* at 1024 MiB the windows abut */
                assert_int_equal(t_walk(&ram, c, c->kernel_root, VMSIG_STUB_KERNEL_BASE + half, &gpa, &rw),
                                 -ENOENT);

        /* high RAM through its own window, landing at file offset low */
        assert_int_equal(t_walk(&ram, c, c->kernel_root, VMSIG_STUB_HIGH_VA + half - 8, &gpa, &rw), 2);
        assert_int_equal(gpa, VMSIG_STUB_HIGH_GPA + half - 8);
        uint64_t off;
        assert_int_equal(vmsig_memctx_gpa_to_offset(c, gpa, &off, NULL), 0);
        assert_int_equal(off, 2 * half - 8);

        /* user pages only in the process space */
        assert_int_equal(t_walk(&ram, c, VMSIG_STUB_USER_ROOT, VMSIG_STUB_USER_VA + 0x1010, &gpa, &rw), 1);
        assert_int_equal(gpa, VMSIG_STUB_USER_GPA + 0x1010);
        assert_int_equal(t_walk(&ram, c, c->kernel_root, VMSIG_STUB_USER_VA, &gpa, &rw), -ENOENT);

        munmap(ram.p, ram.size);
}

static void test_memctx_boot(void **state)
{
        static const struct {
                const char *opts;
                uint64_t mib;
        } cases[] = {{NULL, 8}, {"ram_mib=16", 16}, {"ram_mib=1024", 1024}};

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                int fds = count_fds();
                struct tsink *ts = ts_new();

                ts_attach(ts, vmsig_memctx_stub_ops(), cases[i].opts);
                assert_int_equal(ts->nregs, 2);
                assert_int_equal(ts->regs[0].shape, VMSIG_RDY_EVENTFD);
                assert_int_equal(ts->regs[1].shape, VMSIG_RDY_TIMERFD);
                assert_true(ts_wait_registered(ts));
                check_booted_ctx(ts, cases[i].mib);
                assert_int_equal(ts_count(ts, VMSIG_EV_DIAG, 0), 0);
                assert_int_equal(ts->timer_fires, 0);
                ts_free(ts);
                assert_int_equal(count_fds(), fds);
        }
}

static void test_memctx_fail_boots(void **state)
{
        int fds = count_fds();
        struct tsink *ts = ts_new();
        struct vmsig_diag_body d;

        ts_attach(ts, vmsig_memctx_stub_ops(), "fail_boots=3,retry_ms=5");
        assert_true(ts_wait_registered(ts));
        /* three failures, three re-kicks, one line */
        assert_int_equal(ts->timer_fires, 3);
        assert_int_equal(ts_count(ts, VMSIG_EV_DIAG, 0), 1);
        struct vmsig_event ev = ts_get(ts, VMSIG_EV_DIAG, 0);
        assert_int_equal(ev.hdr.source, VMSIG_SRC_MEMCTX);
        assert_int_equal(ev.hdr.body_len, sizeof(d));
        memcpy(&d, ev.body, sizeof(d));
        assert_int_equal(d.code, -EAGAIN);
        assert_non_null(strstr(d.msg, "attempt 1"));
        check_booted_ctx(ts, 8);

        /* nothing more afterwards: the timer is disarmed */
        for (int i = 0; i < 5; i++)
                ts_pump(ts, 10);
        assert_int_equal(ts->timer_fires, 3);
        assert_int_equal(ts->registered, 1);
        assert_int_equal(ts_count(ts, VMSIG_EV_DIAG, 0), 1);
        ts_free(ts);
        assert_int_equal(count_fds(), fds);
}

static void mw_init(struct vmsig_event *ev, uint64_t corr, uint16_t hflags, uint64_t cr3, uint64_t addr,
                    uint32_t mflags, const void *data, uint32_t len)
{
        struct vmsig_memwrite_body b;
        const size_t head = offsetof(struct vmsig_memwrite_body, data);

        cmd_init(ev, VMSIG_EV_CMD_MEMWRITE, corr, hflags);
        ev->hdr.cr3 = cr3;
        memset(&b, 0, sizeof(b));
        b.addr = addr;
        b.len = len;
        b.flags = mflags;
        if (data && len <= sizeof(b.data))
                memcpy(b.data, data, len);
        assert_int_equal(vmsig_event_set_body(ev, &b, data ? head + len : head), 0);
}

/* Submit an inline write and wait for its ACK. */
static struct vmsig_ack_body mw(struct tsink *ts, uint64_t corr, uint64_t cr3, uint64_t addr, uint32_t mflags,
                                const void *data, uint32_t len)
{
        struct vmsig_event ev;

        mw_init(&ev, corr, 0, cr3, addr, mflags, data, len);
        assert_int_equal(ts->ops->submit(ts->inst, &ev, NULL, 0), VMSIG_SUBMIT_ACCEPTED);
        return ts_ack(ts, corr);
}

static void test_memctx_memwrite(void **state)
{
        int fds = count_fds();
        struct tsink *ts = ts_new();
        struct vmsig_ack_body a;
        struct vmsig_event ev;
        const uint64_t low = 4 << 20;

        ts_attach(ts, vmsig_memctx_stub_ops(), NULL);
        assert_true(ts_wait_registered(ts));
        struct ram ram = map_ram(&ts->ctx);
        const struct vmsig_memctx *c = &ts->ctx;

        /* inline, kernel root */
        a = mw(ts, 1, 0, VMSIG_STUB_KERNEL_BASE + 0x20010, 0, "HELLO", 5);
        assert_int_equal(a.result, 0);
        assert_int_equal(a.value, 5);
        assert_int_equal(a.cmd_kind, VMSIG_EV_CMD_MEMWRITE);
        assert_memory_equal(ram_at(&ram, c, 0x20010), "HELLO", 5);

        /* payload, from the last 4 KiB page into the first 2 MiB page */
        enum { PLEN = 4096 + 0x80 };
        uint8_t *buf = malloc(PLEN), *want = malloc(PLEN);
        assert_non_null(buf);
        assert_non_null(want);
        for (int i = 0; i < PLEN; i++)
                want[i] = buf[i] = (uint8_t)(i * 7 + 3);
        mw_init(&ev, 2, VMSIG_F_SRC_PAYLOAD, 0, VMSIG_STUB_KERNEL_BASE + 0x1ff000, 0, NULL, PLEN);
        assert_int_equal(ts->ops->submit(ts->inst, &ev, buf, PLEN), VMSIG_SUBMIT_ACCEPTED);
        memset(buf, 0, PLEN); /* the payload is only valid during submit */
        free(buf);
        a = ts_ack(ts, 2);
        assert_int_equal(a.result, 0);
        assert_int_equal(a.value, PLEN);
        assert_memory_equal(ram_at(&ram, c, 0x1ff000), want, PLEN);
        free(want);
        assert_string_equal((const char *)ram_at(&ram, c, VMSIG_STUB_BANNER_GPA), VMSIG_STUB_BANNER);

        /* guest-physical, above 4 GiB: file offset low + 0x100 */
        a = mw(ts, 3, 0, VMSIG_STUB_HIGH_GPA + 0x100, VMSIG_MEMWRITE_PHYS, "PHYS", 4);
        assert_int_equal(a.result, 0);
        assert_memory_equal(ram.p + low + 0x100, "PHYS", 4);

        /* virtual, through the high window */
        a = mw(ts, 4, 0, VMSIG_STUB_HIGH_VA + 0x3000, 0, "HIGHVA", 6);
        assert_int_equal(a.result, 0);
        assert_memory_equal(ram.p + low + 0x3000, "HIGHVA", 6);

        /* a process cr3, crossing two user pages */
        a = mw(ts, 5, VMSIG_STUB_USER_ROOT, VMSIG_STUB_USER_VA + 0xffe, 0, "USER", 4);
        assert_int_equal(a.result, 0);
        assert_memory_equal(ram_at(&ram, c, VMSIG_STUB_USER_GPA + 0xffe), "USER", 4);

        /* ---- rejections: nothing at all may change ---- */
        uint8_t *snap = malloc(ram.size);
        assert_non_null(snap);
        memcpy(snap, ram.p, ram.size);
        static const char junk[64] = "JUNKJUNKJUNKJUNKJUNKJUNKJUNKJUNKJUNKJUNKJUNKJUNKJUNKJUNKJUNKJUN";

        a = mw(ts, 10, 0, VMSIG_STUB_NP_VA + 8, 0, junk, 8);
        assert_int_equal(a.result, -EFAULT);
        assert_string_equal(a.msg, "unmapped page at 0xffffffff80031000");

        /* writable page, then read-only: the first half must not land */
        a = mw(ts, 11, 0, VMSIG_STUB_RO_VA - 16, 0, junk, 32);
        assert_int_equal(a.result, -EACCES);
        assert_string_equal(a.msg, "read-only page at 0xffffffff80030000");

        /* end of the mapped kernel half */
        a = mw(ts, 12, 0, VMSIG_STUB_KERNEL_BASE + low - 8, 0, junk, 16);
        assert_int_equal(a.result, -EFAULT);
        assert_non_null(strstr(a.msg, "unmapped page at 0xffffffff80400000"));

        /* the same through a payload spanning many good pages first */
        enum { BIG = 64 * 1024 };
        uint8_t *big = malloc(BIG);
        assert_non_null(big);
        memset(big, 0xa5, BIG);
        mw_init(&ev, 13, VMSIG_F_SRC_PAYLOAD, 0, VMSIG_STUB_KERNEL_BASE + low - BIG + 4096, 0, NULL, BIG);
        assert_int_equal(ts->ops->submit(ts->inst, &ev, big, BIG), VMSIG_SUBMIT_ACCEPTED);
        free(big);
        assert_int_equal(ts_ack(ts, 13).result, -EFAULT);

        /* a raw CR3 (PCID 8): the root is bits 12..51, as in the real adapter */
        a = mw(ts, 14, 0x6008, VMSIG_STUB_USER_VA, 0, junk, 4);
        assert_int_equal(a.result, 0);
        memcpy(snap + VMSIG_STUB_USER_GPA, junk, 4); /* low RAM: offset == gpa */
        a = mw(ts, 15, 0x80000000, VMSIG_STUB_USER_VA, 0, junk, 4);
        assert_int_equal(a.result, -EINVAL);
        assert_non_null(strstr(a.msg, "outside guest RAM"));
        /* a valid root without that mapping */
        a = mw(ts, 16, VMSIG_STUB_KERNEL_ROOT, VMSIG_STUB_USER_VA, 0, junk, 4);
        assert_int_equal(a.result, -EFAULT);

        a = mw(ts, 17, 0, low - 4, VMSIG_MEMWRITE_PHYS, junk, 8);
        assert_int_equal(a.result, -EFAULT);
        assert_string_equal(a.msg, "not RAM at gpa 0x400000"); /* the real adapter's words */
        a = mw(ts, 18, 0, 0x0000800000000000ull, 0, junk, 4);  /* non-canonical */
        assert_int_equal(a.result, -EFAULT);
        assert_string_equal(a.msg, "non-canonical address 0x800000000000");
        a = mw(ts, 19, 0, UINT64_MAX - 1, VMSIG_MEMWRITE_PHYS, junk, 4); /* wraps */
        assert_int_equal(a.result, -EFAULT);

        /* FF: a failure still answers */
        mw_init(&ev, 20, VMSIG_F_FF, 0, VMSIG_STUB_NP_VA, 0, junk, 4);
        assert_int_equal(ts->ops->submit(ts->inst, &ev, NULL, 0), VMSIG_SUBMIT_ACCEPTED);
        assert_int_equal(ts_ack(ts, 20).result, -EFAULT);

        assert_memory_equal(ram.p, snap, ram.size);
        free(snap);

        /* FF success: no ACK; a later ACKed write proves it was processed */
        mw_init(&ev, 30, VMSIG_F_FF, 0, VMSIG_STUB_KERNEL_BASE + 0x50000, 0, "FF!", 3);
        assert_int_equal(ts->ops->submit(ts->inst, &ev, NULL, 0), VMSIG_SUBMIT_ACCEPTED);
        assert_int_equal(mw(ts, 31, 0, VMSIG_STUB_KERNEL_BASE + 0x50010, 0, "ACK", 3).result, 0);
        assert_int_equal(ts_count(ts, VMSIG_EV_ACT_ACK, 30), 0);
        assert_memory_equal(ram_at(&ram, c, 0x50000), "FF!", 3);

        /* bad bodies are refused at submit; the core ACKs those */
        mw_init(&ev, 40, 0, 0, VMSIG_STUB_KERNEL_BASE, 0, junk, 0);
        assert_int_equal(ts->ops->submit(ts->inst, &ev, NULL, 0), -EINVAL); /* len 0 */
        mw_init(&ev, 41, 0, 0, VMSIG_STUB_KERNEL_BASE, 0, NULL, VMSIG_MEMWRITE_INLINE_MAX + 1);
        assert_int_equal(ts->ops->submit(ts->inst, &ev, NULL, 0), -EINVAL); /* no room inline */
        mw_init(&ev, 42, 0, 0, VMSIG_STUB_KERNEL_BASE, 0, junk, 8);
        ev.hdr.body_len -= 1;
        assert_int_equal(ts->ops->submit(ts->inst, &ev, NULL, 0), -EINVAL); /* truncated inline */
        ev.hdr.body_len = 8;
        assert_int_equal(ts->ops->submit(ts->inst, &ev, NULL, 0), -EINVAL); /* short header */
        mw_init(&ev, 43, VMSIG_F_SRC_PAYLOAD, 0, VMSIG_STUB_KERNEL_BASE, 0, NULL, 16);
        assert_int_equal(ts->ops->submit(ts->inst, &ev, junk, 15), -EINVAL); /* length mismatch */
        assert_int_equal(ts->ops->submit(ts->inst, &ev, NULL, 0), -EINVAL);  /* missing tail */
        mw_init(&ev, 44, 0, 0, VMSIG_STUB_KERNEL_BASE, 0x80, junk, 4);
        assert_int_equal(ts->ops->submit(ts->inst, &ev, NULL, 0), -EINVAL); /* unknown flag */
        cmd_init(&ev, VMSIG_EV_MOVE_ABS, 45, 0);
        assert_int_equal(ts->ops->submit(ts->inst, &ev, NULL, 0), VMSIG_SUBMIT_NOT_MINE);
        cmd_init(&ev, VMSIG_EV_CMD_POWER, 46, 0);
        assert_int_equal(ts->ops->submit(ts->inst, &ev, NULL, 0), VMSIG_SUBMIT_NOT_MINE);

        /* exactly one ACK per ACKed command: 1-5, 10-20, 31 */
        for (int i = 0; i < 3; i++)
                ts_pump(ts, 10);
        assert_int_equal(ts_count(ts, VMSIG_EV_ACT_ACK, 0), 5 + 11 + 1);
        assert_int_equal(ts->unregistered, 0);

        munmap(ram.p, ram.size);
        ts_free(ts);
        assert_int_equal(count_fds(), fds);
}

static void test_memctx_not_ready_and_close(void **state)
{
        int fds = count_fds();
        struct tsink *ts = ts_new();
        struct vmsig_event ev;

        /* still "booting": one DIAG, MEMWRITE says so, close with the timer armed */
        ts_attach(ts, vmsig_memctx_stub_ops(), "fail_boots=1000000,retry_ms=60000");
        assert_true(ts_wait(ts, VMSIG_EV_DIAG, 0, 1));
        mw_init(&ev, 1, 0, 0, VMSIG_STUB_KERNEL_BASE, 0, "x", 1);
        assert_int_equal(ts->ops->submit(ts->inst, &ev, NULL, 0), VMSIG_SUBMIT_ACCEPTED);
        assert_int_equal(ts_ack(ts, 1).result, -EAGAIN);
        assert_int_equal(ts->registered, 0);
        ts_free(ts);
        assert_int_equal(count_fds(), fds);

        /* close with writes queued and a boot result not yet collected */
        ts = ts_new();
        ts_attach(ts, vmsig_memctx_stub_ops(), NULL);
        for (uint64_t i = 0; i < 32; i++) {
                mw_init(&ev, 100 + i, 0, 0, VMSIG_STUB_KERNEL_BASE + 0x60000 + i, 0, "q", 1);
                assert_int_equal(ts->ops->submit(ts->inst, &ev, NULL, 0), VMSIG_SUBMIT_ACCEPTED);
        }
        ts_free(ts);
        assert_int_equal(count_fds(), fds);

        /* open then close, never attached */
        ts = ts_new();
        assert_int_equal(ts_open(ts, vmsig_memctx_stub_ops(), "ram_mib=16"), 0);
        ts_free(ts);
        assert_int_equal(count_fds(), fds);
}

/* ---- input ---- */

static int in_submit(struct tsink *ts, uint16_t kind, uint64_t corr, uint16_t flags, int32_t x, int32_t y,
                     uint32_t code, int32_t value)
{
        struct vmsig_event ev;
        struct vmsig_input_body b = {.x = x, .y = y, .code = code, .value = value};

        cmd_init(&ev, kind, corr, flags);
        vmsig_event_set_body(&ev, &b, sizeof(b));
        return ts->ops->submit(ts->inst, &ev, NULL, 0);
}

static char *slurp(const char *path)
{
        static char buf[4096];
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n;

        assert_true(fd >= 0);
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        assert_true(n >= 0);
        buf[n] = '\0';
        return buf;
}

static void test_input(void **state)
{
        int fds = count_fds();
        char dir[] = "/tmp/vmsig-input-XXXXXX", path[128], opts[160];
        struct tsink *ts = ts_new();
        struct vmsig_ack_body a;
        struct vmsig_event ev;
        struct stat st;

        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/rec", dir);
        snprintf(opts, sizeof(opts), "record=%s", path);
        ts_attach(ts, vmsig_input_stub_ops(), opts);
        assert_int_equal(ts->nregs, 0);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);

        assert_int_equal(in_submit(ts, VMSIG_EV_MOVE_ABS, 1, VMSIG_F_FF, 100, 200, 0, 0), 0);
        assert_int_equal(in_submit(ts, VMSIG_EV_MOVE_REL, 2, 0, -5, 3, 0, 0), 0);
        assert_int_equal(in_submit(ts, VMSIG_EV_BUTTON, 3, 0, 0, 0, VMSIG_BTN_LEFT, 1), 0);
        assert_int_equal(in_submit(ts, VMSIG_EV_KEY, 4, VMSIG_F_FF, 0, 0, 30, 1), 0);
        assert_int_equal(in_submit(ts, VMSIG_EV_WHEEL, 5, 0, 0, -1, 0, 0), 0);
        assert_int_equal(in_submit(ts, VMSIG_EV_MOVE_ABS, 6, 0, 0, VMSIG_ABS_MAX, 0, 0), 0);
        assert_int_equal(in_submit(ts, VMSIG_EV_WHEEL, 8, 0, -VMCTL_WHEEL_MAX, VMCTL_WHEEL_MAX, 0, 0), 0);
        assert_int_equal(in_submit(ts, VMSIG_EV_KEY, 9, 0, 0, 0, 0x2bf, 0), 0);

        /* refused before anything is recorded */
        assert_int_equal(in_submit(ts, VMSIG_EV_MOVE_ABS, 20, 0, VMSIG_ABS_MAX + 1, 0, 0, 0), -ERANGE);
        assert_int_equal(in_submit(ts, VMSIG_EV_MOVE_ABS, 21, 0, 0, -1, 0, 0), -ERANGE);
        assert_int_equal(in_submit(ts, VMSIG_EV_KEY, 22, 0, 0, 0, 0, 1), -EINVAL);
        assert_int_equal(in_submit(ts, VMSIG_EV_KEY, 23, 0, 0, 0, 768, 1), -EINVAL);
        assert_int_equal(in_submit(ts, VMSIG_EV_KEY, 24, 0, 0, 0, 30, 5), -EINVAL);
        assert_int_equal(in_submit(ts, VMSIG_EV_BUTTON, 25, 0, 0, 0, 4, 1), -EINVAL);
        assert_int_equal(in_submit(ts, VMSIG_EV_BUTTON, 26, 0, 0, 0, 0, 1), -EINVAL);
        /* the real input path's rules (vmctl_validate), not laxer ones: at
         * most VMCTL_WHEEL_MAX clicks, BTN_* codes are not keys, nothing
         * beyond what QEMU forwards */
        assert_int_equal(in_submit(ts, VMSIG_EV_WHEEL, 30, 0, 0, VMCTL_WHEEL_MAX + 1, 0, 0), -ERANGE);
        assert_int_equal(in_submit(ts, VMSIG_EV_WHEEL, 31, 0, -VMCTL_WHEEL_MAX - 1, 0, 0, 0), -ERANGE);
        assert_int_equal(in_submit(ts, VMSIG_EV_KEY, 32, 0, 0, 0, 0x110, 1), -EOPNOTSUPP);
        assert_int_equal(in_submit(ts, VMSIG_EV_KEY, 33, 0, 0, 0, 0x2c0, 1), -EOPNOTSUPP);
        assert_int_equal(in_submit(ts, VMSIG_EV_KEY, 34, 0, 0, 0, 0x2bf, 7), -EINVAL);
        cmd_init(&ev, VMSIG_EV_MOVE_REL, 27, 0);
        ev.hdr.body_len = 8;
        assert_int_equal(ts->ops->submit(ts->inst, &ev, NULL, 0), -EINVAL);
        cmd_init(&ev, VMSIG_EV_CMD_POWER, 28, 0);
        assert_int_equal(ts->ops->submit(ts->inst, &ev, NULL, 0), VMSIG_SUBMIT_NOT_MINE);
        cmd_init(&ev, VMSIG_EV_CMD_MEMWRITE, 29, 0);
        assert_int_equal(ts->ops->submit(ts->inst, &ev, NULL, 0), VMSIG_SUBMIT_NOT_MINE);

        a = ts_ack(ts, 6);
        assert_int_equal(a.result, 0);
        assert_int_equal(a.value, 6);
        assert_int_equal(a.cmd_kind, VMSIG_EV_MOVE_ABS);
        assert_int_equal(ts_ack(ts, 2).value, 2);
        assert_int_equal(ts_ack(ts, 3).value, 3);
        assert_int_equal(ts_ack(ts, 5).value, 5);
        assert_int_equal(ts_ack(ts, 9).value, 8);
        assert_int_equal(ts_count(ts, VMSIG_EV_ACT_ACK, 0), 6); /* none for FF 1 and 4 */
        assert_string_equal(slurp(path), "MOVE_ABS x=100 y=200 ff=1\n"
                                         "MOVE_REL x=-5 y=3 ff=0\n"
                                         "BUTTON code=1 value=1 ff=0\n"
                                         "KEY code=30 value=1 ff=1\n"
                                         "WHEEL x=0 y=-1 ff=0\n"
                                         "MOVE_ABS x=0 y=32767 ff=0\n"
                                         "WHEEL x=-64 y=64 ff=0\n"
                                         "KEY code=703 value=0 ff=0\n");

        /* an accepted FF command is recorded even if close follows at once */
        assert_int_equal(in_submit(ts, VMSIG_EV_KEY, 7, VMSIG_F_FF, 0, 0, 30, 0), 0);
        ts_free(ts);
        assert_non_null(strstr(slurp(path), "KEY code=30 value=0 ff=1\n"));

        /* without record=: still counted */
        ts = ts_new();
        ts_attach(ts, vmsig_input_stub_ops(), NULL);
        assert_int_equal(in_submit(ts, VMSIG_EV_MOVE_REL, 1, VMSIG_F_FF, 1, 1, 0, 0), 0);
        assert_int_equal(in_submit(ts, VMSIG_EV_MOVE_REL, 2, 0, 1, 1, 0, 0), 0);
        assert_int_equal(ts_ack(ts, 2).value, 2);
        ts_free(ts);

        unlink(path);
        rmdir(dir);
        assert_int_equal(count_fds(), fds);
}

/* ---- vmhost ---- */

static struct vmsig_ack_body power(struct tsink *ts, uint64_t corr, uint32_t op, uint16_t flags)
{
        struct vmsig_event ev;
        struct vmsig_power_body b = {.op = op};

        cmd_init(&ev, VMSIG_EV_CMD_POWER, corr, flags);
        vmsig_event_set_body(&ev, &b, sizeof(b));
        assert_int_equal(ts->ops->submit(ts->inst, &ev, NULL, 0), VMSIG_SUBMIT_ACCEPTED);
        return ts_ack(ts, corr);
}

static struct vmsig_status_body last_status(struct tsink *ts)
{
        struct vmsig_status_body b;
        struct vmsig_event ev = ts_get(ts, VMSIG_EV_STATUS, -1);

        assert_int_equal(ev.hdr.body_len, sizeof(b));
        assert_int_equal(ev.hdr.source, VMSIG_SRC_VMHOST);
        memcpy(&b, ev.body, sizeof(b));
        return b;
}

static void expect_ok(struct tsink *ts, uint64_t corr, uint32_t op, uint8_t state, size_t new_status)
{
        size_t before = ts_count(ts, VMSIG_EV_STATUS, 0);
        struct vmsig_ack_body a = power(ts, corr, op, 0);

        assert_int_equal(a.result, 0);
        assert_int_equal(a.value, state);
        assert_int_equal(ts_count(ts, VMSIG_EV_STATUS, 0), before + new_status);
        assert_int_equal(last_status(ts).run_state, state);
}

static void expect_err(struct tsink *ts, uint64_t corr, uint32_t op, int err, const char *msg)
{
        size_t before = ts_count(ts, VMSIG_EV_STATUS, 0);
        struct vmsig_ack_body a = power(ts, corr, op, 0);

        assert_int_equal(a.result, err);
        assert_non_null(strstr(a.msg, msg));
        assert_int_equal(ts_count(ts, VMSIG_EV_STATUS, 0), before);
}

static void test_vmhost(void **state)
{
        int fds = count_fds();
        struct tsink *ts = ts_new();
        struct vmsig_ack_body a;
        struct vmsig_event ev;

        ts_attach(ts, vmsig_vmhost_stub_ops(), "powerdown_ms=20");
        assert_int_equal(ts->nregs, 1);
        assert_int_equal(ts->regs[0].shape, VMSIG_RDY_TIMERFD);
        assert_int_equal(ts_count(ts, VMSIG_EV_STATUS, 0), 1);
        assert_int_equal(last_status(ts).run_state, VMSIG_RUN_RUNNING);
        assert_string_equal(last_status(ts).reason, "attached");

        expect_ok(ts, 1, VMSIG_POWER_PAUSE, VMSIG_RUN_PAUSED, 1);
        expect_err(ts, 2, VMSIG_POWER_PAUSE, -EALREADY, "VM is already paused");
        expect_err(ts, 3, VMSIG_POWER_POWERDOWN, -EINVAL, "VM is not running");
        expect_err(ts, 4, VMSIG_POWER_ON, -EINVAL, "use resume");
        expect_ok(ts, 5, VMSIG_POWER_RESUME, VMSIG_RUN_RUNNING, 1);
        expect_err(ts, 6, VMSIG_POWER_RESUME, -EALREADY, "VM is already running");

        /* reset: "reset", then running again */
        expect_ok(ts, 7, VMSIG_POWER_RESET, VMSIG_RUN_RUNNING, 2);
        struct vmsig_event r = ts_get(ts, VMSIG_EV_STATUS, 3);
        struct vmsig_status_body rb;
        memcpy(&rb, r.body, sizeof(rb));
        assert_string_equal(rb.reason, "reset");

        /* powerdown: ACK at once, shutdown when the timer fires */
        size_t before = ts_count(ts, VMSIG_EV_STATUS, 0);
        a = power(ts, 8, VMSIG_POWER_POWERDOWN, 0);
        assert_int_equal(a.result, 0);
        assert_string_equal(a.msg, "powerdown requested");
        assert_int_equal(ts_count(ts, VMSIG_EV_STATUS, 0), before);
        expect_err(ts, 9, VMSIG_POWER_POWERDOWN, -EALREADY, "already requested");
        assert_true(ts_wait(ts, VMSIG_EV_STATUS, 0, before + 1));
        assert_int_equal(ts->timer_fires, 1);
        assert_int_equal(last_status(ts).run_state, VMSIG_RUN_SHUTDOWN);
        assert_non_null(strstr(last_status(ts).reason, "ACPI"));

        expect_err(ts, 10, VMSIG_POWER_PAUSE, -EINVAL, "VM is not running");
        expect_err(ts, 11, VMSIG_POWER_RESUME, -EINVAL, "VM is not paused");
        expect_err(ts, 12, VMSIG_POWER_OFF, -EALREADY, "already shut down");
        expect_err(ts, 13, VMSIG_POWER_RESET, -EINVAL, "shut down");

        /* service commands ACK even with FF */
        a = power(ts, 14, VMSIG_POWER_ON, VMSIG_F_FF);
        assert_int_equal(a.result, 0);
        assert_int_equal(last_status(ts).run_state, VMSIG_RUN_RUNNING);

        /* off cancels a pending powerdown */
        before = ts_count(ts, VMSIG_EV_STATUS, 0);
        assert_int_equal(power(ts, 15, VMSIG_POWER_POWERDOWN, 0).result, 0);
        expect_ok(ts, 16, VMSIG_POWER_OFF, VMSIG_RUN_SHUTDOWN, 1);
        expect_ok(ts, 17, VMSIG_POWER_ON, VMSIG_RUN_RUNNING, 1);
        for (int i = 0; i < 6; i++)
                ts_pump(ts, 10);
        assert_int_equal(ts_count(ts, VMSIG_EV_STATUS, 0), before + 2);
        assert_int_equal(last_status(ts).run_state, VMSIG_RUN_RUNNING);

        /* status query: a STATUS to the asker, then the ACK, FF or not */
        before = ts_count(ts, VMSIG_EV_STATUS, 0);
        cmd_init(&ev, VMSIG_EV_CMD_STATUS_QUERY, 18, VMSIG_F_FF);
        assert_int_equal(ts->ops->submit(ts->inst, &ev, NULL, 0), VMSIG_SUBMIT_ACCEPTED);
        assert_int_equal(ts_count(ts, VMSIG_EV_STATUS, 0), before + 1);
        struct vmsig_event q = ts_get(ts, VMSIG_EV_STATUS, -1);
        assert_int_equal(q.hdr.peer, 42);
        assert_int_equal(q.hdr.corr, 18);
        a = ts_ack(ts, 18);
        assert_int_equal(a.result, 0);
        assert_int_equal(a.value, VMSIG_RUN_RUNNING);
        assert_string_equal(a.msg, "state: running");
        pthread_mutex_lock(&ts->mu);
        assert_int_equal(ts->ev[ts->nev - 1].hdr.kind, VMSIG_EV_ACT_ACK); /* after the STATUS */
        pthread_mutex_unlock(&ts->mu);

        /* bad bodies and foreign kinds */
        struct vmsig_power_body pb = {.op = 0};
        cmd_init(&ev, VMSIG_EV_CMD_POWER, 19, 0);
        vmsig_event_set_body(&ev, &pb, sizeof(pb));
        assert_int_equal(ts->ops->submit(ts->inst, &ev, NULL, 0), -EINVAL);
        pb.op = VMSIG_POWER_POWERDOWN + 1;
        vmsig_event_set_body(&ev, &pb, sizeof(pb));
        assert_int_equal(ts->ops->submit(ts->inst, &ev, NULL, 0), -EINVAL);
        ev.hdr.body_len = 2;
        assert_int_equal(ts->ops->submit(ts->inst, &ev, NULL, 0), -EINVAL);
        cmd_init(&ev, VMSIG_EV_CMD_STATUS_QUERY, 20, 0);
        ev.hdr.body_len = 4;
        assert_int_equal(ts->ops->submit(ts->inst, &ev, NULL, 0), -EINVAL);
        cmd_init(&ev, VMSIG_EV_MOVE_ABS, 21, 0);
        assert_int_equal(ts->ops->submit(ts->inst, &ev, NULL, 0), VMSIG_SUBMIT_NOT_MINE);
        cmd_init(&ev, VMSIG_EV_CMD_MEMWRITE, 22, 0);
        assert_int_equal(ts->ops->submit(ts->inst, &ev, NULL, 0), VMSIG_SUBMIT_NOT_MINE);
        assert_int_equal(ts_count(ts, VMSIG_EV_ACT_ACK, 19) + ts_count(ts, VMSIG_EV_ACT_ACK, 20), 0);

        /* close with a powerdown pending */
        assert_int_equal(power(ts, 23, VMSIG_POWER_POWERDOWN, 0).result, 0);
        ts_free(ts);

        /* initial state from the options */
        ts = ts_new();
        ts_attach(ts, vmsig_vmhost_stub_ops(), "state=shutdown");
        assert_int_equal(last_status(ts).run_state, VMSIG_RUN_SHUTDOWN);
        expect_ok(ts, 1, VMSIG_POWER_ON, VMSIG_RUN_RUNNING, 1);
        ts_free(ts);
        ts = ts_new();
        ts_attach(ts, vmsig_vmhost_stub_ops(), "state=paused");
        assert_int_equal(last_status(ts).run_state, VMSIG_RUN_PAUSED);
        expect_ok(ts, 1, VMSIG_POWER_RESET, VMSIG_RUN_RUNNING, 2);
        ts_free(ts);

        assert_int_equal(count_fds(), fds);
}

/* ---- options ---- */

static void test_open_rejects(void **state)
{
        static const struct {
                int which; /* 0 memctx, 1 input, 2 vmhost */
                const char *opts;
                int rc;
        } cases[] = {
            {0, "bogus=1", -EINVAL},
            {0, "ram_mib=3", -EINVAL},
            {0, "ram_mib=10", -EINVAL},
            {0, "ram_mib=2048", -EINVAL},
            {0, "ram_mib=abc", -EINVAL},
            {0, "ram_mib=", -EINVAL},
            {0, "ram_mib", -EINVAL},
            {0, "ram_mib=8,", -EINVAL},
            {0, "ram_mib=8,ram_mib=16", -EINVAL},
            {0, "retry_ms=0", -EINVAL},
            {0, "fail_boots=-1", -EINVAL},
            {0, "=1", -EINVAL},
            {0, "ram_mib=16,fail_boots=2,retry_ms=5", 0},
            {0, "", 0},
            {1, "recrd=/tmp/x", -EINVAL},
            {1, "record=", -EINVAL},
            {1, "record=/nonexistent-vmsig-dir/rec", -ENOENT},
            {2, "state=flying", -EINVAL},
            {2, "state=", -EINVAL},
            {2, "powerdown_ms=0", -EINVAL},
            {2, "powerdown_ms=x", -EINVAL},
            {2, "foo=bar", -EINVAL},
            {2, "state=paused,powerdown_ms=1", 0},
        };
        const struct vmsig_adapter_ops *ops[] = {vmsig_memctx_stub_ops(), vmsig_input_stub_ops(),
                                                 vmsig_vmhost_stub_ops()};
        int fds = count_fds();

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct tsink *ts = ts_new();
                int rc = ts_open(ts, ops[cases[i].which], cases[i].opts);
                if (rc != cases[i].rc)
                        fail_msg("case %zu \"%s\": got %d, want %d", i, cases[i].opts, rc, cases[i].rc);
                if (rc < 0)
                        ts->inst = NULL;
                ts_free(ts);
        }
        assert_int_equal(count_fds(), fds);

        /* identity of the factories */
        assert_string_equal(ops[0]->name, "memctx-stub");
        assert_int_equal(ops[0]->seam, VMSIG_SRC_MEMCTX);
        assert_int_equal(ops[1]->seam, VMSIG_SRC_INPUT);
        assert_int_equal(ops[2]->seam, VMSIG_SRC_VMHOST);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_memctx_boot),     cmocka_unit_test(test_memctx_fail_boots),
            cmocka_unit_test(test_memctx_memwrite), cmocka_unit_test(test_memctx_not_ready_and_close),
            cmocka_unit_test(test_input),           cmocka_unit_test(test_vmhost),
            cmocka_unit_test(test_open_rejects),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
