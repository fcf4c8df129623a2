/* SPDX-License-Identifier: MIT */
/* memctx stub: synthetic guest RAM in a memfd with real x86-64 4-level page
 * tables (layout in stub_internal.h), a self-healing bootstrap on a worker
 * thread (fail_boots=N) and CMD_MEMWRITE through the adapter's own RW fd.
 *
 * RAM: a memfd with mode 0400, sealed at open (F_SEAL_SHRINK, F_SEAL_GROW,
 * F_SEAL_FUTURE_WRITE, F_SEAL_SEAL) after the adapter mapped it shared and
 * writable: that mapping is the only way the guest image is ever written.
 * No route turns the read-only fd a control receives into write access:
 * a reopen through /proc needs the mode (root gets an fd, but write(),
 * ftruncate, fallocate and writable shared mappings fail on the seals), and
 * the size can never change, so nobody's mapping can fault.
 *
 * Everything else is the memctx engine (memctx_engine.h), shared with the
 * real adapter: MEMWRITE queue, worker, inline path, libvmie's write
 * planner. This file supplies the RAM source (that mapping, wrapped as a
 * vmie_ram), the root source (the synthetic guest's fixed kernel root) and
 * the bootstrap, which runs on the engine's worker.
 *
 * Threads: the loop thread owns registration and the backoff timer; the
 * worker owns the RAM for guest writes. Boot results cross to the loop
 * through the engine's eventfd (VMSIG_RDY_EVENTFD). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vmie/vmie.h>
#include <vmsig/adapter.h>
#include <vmsig/backoff.h>
#include <vmsig/event.h>
#include <vmsig/memctx.h>

#include "adapters/memctx_engine.h"
#include "adapters/stub_internal.h"

#define COOKIE_BOOT_DONE 1u
#define COOKIE_RETRY     2u
#define RETRY_MAX_MS     5000u

struct memctx_stub {
        uint32_t endpoint;
        uint64_t low; /* bytes below 4 GiB == bytes above */
        uint32_t fail_boots;
        struct vmsig_memctx layout; /* ranges, kernel_root; fd unused */

        int ram_fd;   /* sealed; only reopened read-only for controls */
        uint8_t *ram; /* shared writable mapping of it, made before sealing */
        size_t ram_len;
        struct vmie_ram *vram; /* the same mapping, for libvmie (read-only view) */
        struct vmsig_backoff backoff;
        const struct vmsig_emit_sink *sink;
        struct mce *engine;

        /* under the engine's lock */
        bool booted; /* the root is known: MEMWRITE may proceed */
        bool result_pending;
        int result;
        int result_fd; /* read-only reopen on success */
        char result_msg[VMSIG_MSG_MAX];

        /* worker only */
        unsigned attempts;
        bool image_built;

        /* loop only */
        bool registered;
};

/* ---- guest RAM access (worker) ---- */

/* The file's bytes [off, off+len), checked against its size. */
static int write_full(struct memctx_stub *s, const void *buf, size_t len, uint64_t off)
{
        if (off > s->ram_len || len > s->ram_len - off)
                return -EIO;
        memcpy(s->ram + off, buf, len);
        return 0;
}

static int write_table(struct memctx_stub *s, uint64_t gpa, const uint64_t *t)
{
        return write_full(s, t, 512 * sizeof(uint64_t), gpa); /* tables live in low RAM: off == gpa */
}

/* Lay the synthetic guest's page tables and banner into RAM (see
 * stub_internal.h for the map). */
static int build_image(struct memctx_stub *s)
{
        const uint64_t rw = VMSIG_STUB_PTE_P | VMSIG_STUB_PTE_RW;
        uint64_t t[512];
        int r;

        /* kernel PML4 -> PDPT -> PD; user PML4 shares the kernel half */
        memset(t, 0, sizeof(t));
        t[511] = 0x2000 | rw;
        if ((r = write_table(s, VMSIG_STUB_KERNEL_ROOT, t)) < 0)
                return r;
        t[0] = 0x7000 | rw | VMSIG_STUB_PTE_US;
        if ((r = write_table(s, VMSIG_STUB_USER_ROOT, t)) < 0)
                return r;

        memset(t, 0, sizeof(t));
        t[510] = 0x3000 | rw; /* 0xffffffff80000000 */
        if ((r = write_table(s, 0x2000, t)) < 0)
                return r;

        memset(t, 0, sizeof(t));
        t[0] = 0x4000 | rw;
        for (uint64_t i = 1; i < s->low / (UINT64_C(2) << 20); i++)
                t[i] = (i << 21) | rw | VMSIG_STUB_PTE_PS;
        for (uint64_t i = 0; i < s->low / (UINT64_C(2) << 20); i++)
                t[256 + i] = (VMSIG_STUB_HIGH_GPA + (i << 21)) | rw | VMSIG_STUB_PTE_PS;
        if ((r = write_table(s, 0x3000, t)) < 0)
                return r;

        for (uint64_t i = 0; i < 512; i++)
                t[i] = (i << 12) | rw;
        t[(VMSIG_STUB_RO_VA - VMSIG_STUB_KERNEL_BASE) >> 12] &= ~VMSIG_STUB_PTE_RW;
        t[(VMSIG_STUB_NP_VA - VMSIG_STUB_KERNEL_BASE) >> 12] = 0;
        if ((r = write_table(s, 0x4000, t)) < 0)
                return r;

        /* user: 0x400000 = PML4[0] PDPT[0] PD[2] PT[0..] */
        memset(t, 0, sizeof(t));
        t[0] = 0x8000 | rw | VMSIG_STUB_PTE_US;
        if ((r = write_table(s, 0x7000, t)) < 0)
                return r;
        memset(t, 0, sizeof(t));
        t[(VMSIG_STUB_USER_VA >> 21) & 511] = 0x9000 | rw | VMSIG_STUB_PTE_US;
        if ((r = write_table(s, 0x8000, t)) < 0)
                return r;
        memset(t, 0, sizeof(t));
        for (uint64_t i = 0; i < VMSIG_STUB_USER_PAGES; i++)
                t[((VMSIG_STUB_USER_VA >> 12) & 511) + i] =
                    (VMSIG_STUB_USER_GPA + (i << 12)) | rw | VMSIG_STUB_PTE_US;
        if ((r = write_table(s, 0x9000, t)) < 0)
                return r;

        return write_full(s, VMSIG_STUB_BANNER, sizeof(VMSIG_STUB_BANNER), VMSIG_STUB_BANNER_GPA);
}

/* ---- bootstrap (worker) ---- */

static int boot_attempt(struct memctx_stub *s, int *ret_fd, char *msg, size_t msglen)
{
        const struct vmie_as as = {.ram = s->vram, .root = VMSIG_STUB_KERNEL_ROOT, .levels = 4};
        char path[64];
        char banner[sizeof(VMSIG_STUB_BANNER)];
        int r;

        s->attempts++;
        if (!s->image_built) {
                if ((r = build_image(s)) < 0) {
                        snprintf(msg, msglen, "building synthetic guest failed: %s", strerror(-r));
                        return r;
                }
                s->image_built = true;
        }
        if (s->attempts <= s->fail_boots) {
                snprintf(msg, msglen, "kernel root not found yet, guest still booting (attempt %u)",
                         s->attempts);
                return -EAGAIN;
        }
        /* Prove the root the way a control would: walk to the banner. */
        r = vmie_read_virt(&as, VMSIG_STUB_BANNER_VA, banner, sizeof(banner), NULL);
        if (r == 0 && memcmp(banner, VMSIG_STUB_BANNER, sizeof(banner)) != 0)
                r = -EBADMSG;
        if (r < 0) {
                snprintf(msg, msglen, "banner not found under root 0x%" PRIx64 ": %s", VMSIG_STUB_KERNEL_ROOT,
                         strerror(-r));
                return r;
        }
        /* A fresh open file description: O_RDONLY for real, not a dup of ours. */
        snprintf(path, sizeof(path), "/proc/self/fd/%d", s->ram_fd);
        *ret_fd = open(path, O_RDONLY | O_CLOEXEC);
        if (*ret_fd < 0) {
                r = -errno;
                snprintf(msg, msglen, "reopening guest RAM read-only failed: %s", strerror(-r));
                return r;
        }
        snprintf(msg, msglen, "kernel root 0x%" PRIx64 " after %u attempt(s)", VMSIG_STUB_KERNEL_ROOT,
                 s->attempts);
        return 0;
}

/* ---- the engine's ops ---- */

/* Worker: one bootstrap attempt, its result handed to the loop. */
static void stub_boot(void *ud)
{
        struct memctx_stub *s = ud;
        char msg[VMSIG_MSG_MAX] = "";
        int fd = -1;
        int r = boot_attempt(s, &fd, msg, sizeof(msg));

        mce_lock(s->engine);
        if (r == 0)
                s->booted = true;
        s->result_pending = true;
        s->result = r;
        s->result_fd = fd;
        memcpy(s->result_msg, msg, sizeof(msg));
        mce_unlock(s->engine);
        mce_notify(s->engine);
}

static int stub_target(void *ud, struct mce_target *t, char *msg, size_t len)
{
        struct memctx_stub *s = ud;

        if (!s->booted) {
                snprintf(msg, len, "address-space context not ready (guest still booting)");
                return -EAGAIN;
        }
        t->ram = s->vram;
        t->root = VMSIG_STUB_KERNEL_ROOT;
        t->levels = 4;
        return 0;
}

static int stub_write(void *ud, const void *buf, size_t len, uint64_t off)
{
        return write_full(ud, buf, len, off);
}

/* Straight from the control's file into our mapping: one copy. */
static int stub_write_fd(void *ud, int src_fd, uint64_t src_off, size_t len, uint64_t off, size_t *done)
{
        struct memctx_stub *s = ud;

        *done = 0;
        if (off > s->ram_len || len > s->ram_len - off)
                return -EIO;
        return mce_copy_fd_to_mem(src_fd, src_off, s->ram + off, len, done);
}

static const struct mce_ops stub_engine_ops = {
    .boot = stub_boot,
    .target = stub_target,
    .write = stub_write,
    .write_fd = stub_write_fd,
};

/* ---- ops ---- */

static void memctx_close(void *instance)
{
        struct memctx_stub *s = instance;

        if (!s)
                return;
        /* joins the worker, then answers every write (engine rules) */
        mce_stop(s->engine);
        if (s->result_fd >= 0)
                close(s->result_fd);
        vmsig_backoff_done(&s->backoff);
        mce_free(s->engine);
        vmie_ram_free(s->vram);
        if (s->ram)
                munmap(s->ram, s->ram_len);
        if (s->ram_fd >= 0)
                close(s->ram_fd);
        free(s);
}

/* The memfd and our writable mapping of it; then mode and seals, so that
 * the mapping stays the only way in (see the top of this file). */
static int ram_create(struct memctx_stub *s)
{
        const int seals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE | F_SEAL_SEAL;

        s->ram_len = (size_t)(2 * s->low);
        s->ram_fd = memfd_create("vmsig-stub-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (s->ram_fd < 0 || ftruncate(s->ram_fd, (off_t)s->ram_len) < 0 || fchmod(s->ram_fd, 0400) < 0)
                return -errno;
        void *p = mmap(NULL, s->ram_len, PROT_READ | PROT_WRITE, MAP_SHARED, s->ram_fd, 0);
        if (p == MAP_FAILED)
                return -errno;
        s->ram = p;
        if (fcntl(s->ram_fd, F_ADD_SEALS, seals) < 0)
                return -errno;
        /* sealed, it cannot shrink: libvmie may read through the mapping */
        const struct vmie_range rr[2] = {{0, s->low, 0}, {VMSIG_STUB_HIGH_GPA, s->low, s->low}};
        return vmie_ram_wrap(s->ram, s->ram_len, rr, 2, 0, &s->vram);
}

/* ram_mib: halves must be whole 2 MiB pages; the PD holds 256 of each. */
static const struct opt_spec memctx_stub_opts[] = {
    {.key = "ram_mib",
     .type = OPT_U64,
     .min = VMSIG_STUB_RAM_MIB_MIN,
     .max = VMSIG_STUB_RAM_MIB_MAX,
     .def = VMSIG_STUB_RAM_MIB_DEFAULT,
     .multiple = 4},
    {.key = "fail_boots", .type = OPT_U64, .min = 0, .max = 1000000, .def = 0},
    {.key = "retry_ms", .type = OPT_U64, .min = 1, .max = 60000, .def = 20},
};

static int memctx_open(const struct vmsig_adapter_cfg *cfg, uint32_t endpoint, void **ret_instance)
{
        uint64_t v[OPT_COUNT(memctx_stub_opts)];
        struct memctx_stub *s;
        int r;

        if (adapter_options_parse(cfg ? cfg->options : NULL, memctx_stub_opts, OPT_COUNT(memctx_stub_opts),
                                  NULL, v, NULL, 0) < 0)
                return -EINVAL;
        uint64_t ram_mib = v[0], fail_boots = v[1], retry_ms = v[2];

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->endpoint = endpoint;
        s->low = ram_mib << 19; /* half of ram_mib MiB */
        s->fail_boots = (uint32_t)fail_boots;
        s->ram_fd = s->result_fd = s->backoff.fd = -1;

        s->layout.endpoint = endpoint;
        s->layout.kernel_root = VMSIG_STUB_KERNEL_ROOT;
        s->layout.kernel_base = VMSIG_STUB_KERNEL_BASE; /* the synthetic image starts there */
        s->layout.paging = VMSIG_PAGING_4LEVEL;
        s->layout.os_kind = VMSIG_OS_SYNTHETIC;
        s->layout.nranges = 2;
        s->layout.ranges[0] = (struct vmsig_ram_range){0, s->low, 0};
        s->layout.ranges[1] = (struct vmsig_ram_range){VMSIG_STUB_HIGH_GPA, s->low, s->low};
        s->layout.fd = -1;

        r = ram_create(s);
        if (r < 0)
                goto fail;
        r = mce_new(&stub_engine_ops, s, &s->engine);
        if (r < 0)
                goto fail;
        uint32_t max_ms = retry_ms * 16 > RETRY_MAX_MS ? RETRY_MAX_MS : (uint32_t)retry_ms * 16;
        r = vmsig_backoff_init(&s->backoff, (uint32_t)retry_ms, max_ms);
        if (r < 0)
                goto fail;
        *ret_instance = s;
        return 0;
fail:
        memctx_close(s);
        return r;
}

static void kick_boot(struct memctx_stub *s)
{
        mce_lock(s->engine);
        mce_set_boot_locked(s->engine, true);
        mce_unlock(s->engine);
}

static int memctx_attach(void *instance, const struct vmsig_emit_sink *sink, struct vmsig_fd_reg *reg,
                         size_t cap, size_t *ret_n)
{
        struct memctx_stub *s = instance;
        int r;

        if (cap < 2 || !sink || !sink->register_memctx)
                return -EINVAL;
        r = mce_start(s->engine, sink);
        if (r < 0)
                return r;
        s->sink = sink;
        reg[0] = (struct vmsig_fd_reg){mce_evfd(s->engine), EPOLLIN, VMSIG_RDY_EVENTFD, COOKIE_BOOT_DONE};
        reg[1] = (struct vmsig_fd_reg){s->backoff.fd, EPOLLIN, VMSIG_RDY_TIMERFD, COOKIE_RETRY};
        *ret_n = 2;
        kick_boot(s);
        return 0;
}

static void boot_finished(struct memctx_stub *s)
{
        char msg[VMSIG_MSG_MAX];
        bool pending;
        int r, fd;

        mce_lock(s->engine);
        pending = s->result_pending;
        r = s->result;
        fd = s->result_fd;
        memcpy(msg, s->result_msg, sizeof(msg));
        s->result_pending = false;
        s->result_fd = -1;
        mce_unlock(s->engine);
        if (!pending)
                return;

        if (r < 0) {
                /* A booting guest is transient: report the first failure only. */
                int first = vmsig_backoff_failed(&s->backoff);
                if (first < 0)
                        (void)vmsig_sink_diag(s->sink, s->endpoint, VMSIG_SRC_MEMCTX, first,
                                              "bootstrap retry timer failed: %s", strerror(-first));
                else if (first == 1)
                        (void)vmsig_sink_diag(s->sink, s->endpoint, VMSIG_SRC_MEMCTX, r,
                                              "memctx bootstrap: %.120s; retrying", msg);
                return;
        }

        vmsig_backoff_succeeded(&s->backoff);
        struct vmsig_memctx ctx = s->layout;
        uint64_t epoch = 0;
        ctx.fd = fd;
        r = s->sink->register_memctx(s->sink, &ctx, &epoch);
        close(fd); /* the core keeps its own dup */
        if (r < 0) {
                (void)vmsig_sink_diag(s->sink, s->endpoint, VMSIG_SRC_MEMCTX, r,
                                      "registering memctx failed: %s", strerror(-r));
                return;
        }
        s->registered = true;
}

static void memctx_on_readiness(void *instance, uint64_t cookie, uint32_t events)
{
        struct memctx_stub *s = instance;

        if (cookie == COOKIE_BOOT_DONE)
                boot_finished(s);
        else if (cookie == COOKIE_RETRY)
                kick_boot(s);
}

static int memctx_submit(void *instance, const struct vmsig_event *ev, const void *payload,
                         size_t payload_len)
{
        struct memctx_stub *s = instance;

        return mce_submit(s->engine, ev, payload, payload_len);
}

static const struct vmsig_adapter_ops memctx_stub_ops = {
    .name = "memctx-stub",
    .seam = VMSIG_SRC_MEMCTX,
    .open = memctx_open,
    .attach = memctx_attach,
    .on_readiness = memctx_on_readiness,
    .submit = memctx_submit,
    .close = memctx_close,
};

const struct adapter_desc memctx_stub_adapter = {&memctx_stub_ops, memctx_stub_opts,
                                                 OPT_COUNT(memctx_stub_opts)};
