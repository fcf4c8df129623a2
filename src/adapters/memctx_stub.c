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
 * Threads: the loop thread owns registration and the backoff timer; the
 * worker owns the RAM for guest writes. Boot results cross to the loop
 * through an eventfd (VMSIG_RDY_EVENTFD); MEMWRITE ACKs go out via sink->emit. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vmsig/adapter.h>
#include <vmsig/backoff.h>
#include <vmsig/event.h>
#include <vmsig/memctx.h>

#include "adapters/stub_internal.h"
#include "adapters/memwrite_job.h"

#define COOKIE_BOOT_DONE 1u
#define COOKIE_RETRY     2u
#define JOBS_MAX         32u /* queued MEMWRITEs; beyond that submit says -EBUSY */
#define PAGE_4K          UINT64_C(4096)
#define RETRY_MAX_MS     5000u

/* One contiguous piece of a write in the RAM file. */
struct seg {
        uint64_t off;
        uint64_t len;
};

struct memctx_stub {
        bool busy; /* the worker is working outside the lock */
        uint32_t endpoint;
        uint64_t low; /* bytes below 4 GiB == bytes above */
        uint32_t fail_boots;
        struct vmsig_memctx layout; /* ranges, kernel_root; fd unused */

        int ram_fd;   /* sealed; only reopened read-only for controls */
        uint8_t *ram; /* shared writable mapping of it, made before sealing */
        size_t ram_len;
        int evfd;   /* worker -> loop: a boot attempt finished */
        struct vmsig_backoff backoff;
        const struct vmsig_emit_sink *sink;

        pthread_t worker;
        bool worker_started;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        /* under lock */
        bool stop;
        bool boot_requested;
        bool booted; /* the root is known: MEMWRITE may proceed */
        struct mw_job *head, *tail;
        unsigned njobs;
        bool result_pending;
        int result;
        int result_fd; /* read-only reopen on success */
        char result_msg[VMSIG_MSG_MAX];

        /* worker only (late: read by close() after the join) */
        struct mw_late late;
        unsigned attempts;
        bool image_built;

        /* loop only */
        bool registered;
};

/* ---- guest RAM access (worker) ---- */

static int gpa_to_off(const struct memctx_stub *s, uint64_t gpa, uint64_t *ret_off, uint64_t *ret_avail)
{
        return vmsig_memctx_gpa_to_offset(&s->layout, gpa, ret_off, ret_avail);
}

/* Guest RAM bytes [off, off+len) of the file, checked against its size. */
static uint8_t *ram_at(const struct memctx_stub *s, uint64_t off, uint64_t len)
{
        return off <= s->ram_len && len <= s->ram_len - off ? s->ram + off : NULL;
}

static int write_full(struct memctx_stub *s, const void *buf, size_t len, uint64_t off)
{
        uint8_t *p = ram_at(s, off, len);

        if (!p)
                return -EIO;
        memcpy(p, buf, len);
        return 0;
}

static int read_pte(const struct memctx_stub *s, uint64_t gpa, uint64_t *ret)
{
        uint64_t off;
        const uint8_t *p;

        if (gpa_to_off(s, gpa, &off, NULL) < 0 || !(p = ram_at(s, off, sizeof(*ret))))
                return -EFAULT;
        memcpy(ret, p, sizeof(*ret));
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

/* Walk va under root. ret_gpa: the physical address; ret_left: bytes to the
 * end of the page; ret_rw: writable at every level. -EFAULT when some
 * level is not present or a table lies outside RAM. */
static int walk(const struct memctx_stub *s, uint64_t root, uint64_t va, uint64_t *ret_gpa,
                uint64_t *ret_left, bool *ret_rw)
{
        uint64_t table = root & VMSIG_STUB_PTE_ADDR;
        bool rw = true;

        /* non-canonical addresses have no translation at all */
        if ((uint64_t)((int64_t)(va << 16) >> 16) != va)
                return -EFAULT;
        for (int level = 4; level >= 1; level--) {
                unsigned shift = 12 + 9 * (unsigned)(level - 1);
                uint64_t e;
                int r = read_pte(s, table + ((va >> shift) & 511) * 8, &e);

                if (r < 0)
                        return r;
                if (!(e & VMSIG_STUB_PTE_P))
                        return -EFAULT;
                rw = rw && (e & VMSIG_STUB_PTE_RW);
                if (level == 1 || ((level == 2 || level == 3) && (e & VMSIG_STUB_PTE_PS))) {
                        uint64_t size = UINT64_C(1) << shift;
                        uint64_t base = e & VMSIG_STUB_PTE_ADDR & ~(size - 1);
                        *ret_gpa = base | (va & (size - 1));
                        *ret_left = size - (va & (size - 1));
                        *ret_rw = rw;
                        return 0;
                }
                table = e & VMSIG_STUB_PTE_ADDR;
        }
        return -EFAULT; /* not reached */
}

/* ---- bootstrap (worker) ---- */

static int boot_attempt(struct memctx_stub *s, int *ret_fd, char *msg, size_t msglen)
{
        char path[64];
        char banner[sizeof(VMSIG_STUB_BANNER)];
        uint64_t gpa, left, off;
        bool rw;
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
        r = walk(s, VMSIG_STUB_KERNEL_ROOT, VMSIG_STUB_BANNER_VA, &gpa, &left, &rw);
        if (r == 0)
                r = gpa_to_off(s, gpa, &off, NULL);
        if (r == 0 && !ram_at(s, off, sizeof(banner)))
                r = -EIO;
        if (r == 0)
                memcpy(banner, s->ram + off, sizeof(banner));
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

/* ---- MEMWRITE (worker) ---- */

static void ack(struct memctx_stub *s, const struct vmsig_event_hdr *hdr, int result, uint64_t value,
                const char *msg)
{
        struct vmsig_event cmd, ev;

        if (result == 0 && (hdr->flags & VMSIG_F_FF))
                return;
        cmd.hdr = *hdr;
        vmsig_ack_init(&ev, &cmd, VMSIG_SRC_MEMCTX, result, value, "%s", msg);
        late_or_emit(s->sink, &ev, &s->late);
}

/* Resolve the whole extent into file segments, checking every page before a
 * single byte is written. */
static int plan_write(const struct memctx_stub *s, const struct mw_job *j, struct seg *segs, size_t *ret_n,
                      char *msg, size_t msglen)
{
        bool phys = j->flags & VMSIG_MEMWRITE_PHYS;
        /* a raw CR3 value: PCID/PWT/PCD (bits 0..11) and bits 52..63 are not
         * part of the root (same rule as the real adapter, vmie_cr3_root) */
        uint64_t root = j->hdr.cr3 ? j->hdr.cr3 & VMSIG_STUB_PTE_ADDR : s->layout.kernel_root;
        size_t n = 0;

        if (j->addr + j->len < j->addr) {
                snprintf(msg, msglen, "extent 0x%" PRIx64 "+%u wraps", j->addr, j->len);
                return -EFAULT;
        }
        if (!phys && j->hdr.cr3) {
                uint64_t off;
                if (gpa_to_off(s, root, &off, NULL) < 0) {
                        snprintf(msg, msglen, "bad cr3 0x%" PRIx64 ": root 0x%" PRIx64 " outside guest RAM",
                                 j->hdr.cr3, root);
                        return -EINVAL;
                }
        }
        for (uint64_t pos = 0; pos < j->len;) {
                uint64_t a = j->addr + pos, gpa, left, off, avail;
                bool rw = true;
                int r;

                if (phys) {
                        gpa = a;
                        left = PAGE_4K - (a & (PAGE_4K - 1));
                } else {
                        r = walk(s, root, a, &gpa, &left, &rw);
                        if (r == -EFAULT) {
                                snprintf(msg, msglen, "unmapped page at 0x%" PRIx64, a & ~(PAGE_4K - 1));
                                return r;
                        }
                        if (r < 0) {
                                snprintf(msg, msglen, "page walk at 0x%" PRIx64 " failed: %s", a,
                                         strerror(-r));
                                return r;
                        }
                        if (!rw) {
                                snprintf(msg, msglen, "read-only page at 0x%" PRIx64, a & ~(PAGE_4K - 1));
                                return -EACCES;
                        }
                }
                if (gpa_to_off(s, gpa, &off, &avail) < 0) {
                        if (phys)
                                snprintf(msg, msglen, "unmapped page at 0x%" PRIx64, gpa & ~(PAGE_4K - 1));
                        else
                                snprintf(msg, msglen,
                                         "unmapped page at 0x%" PRIx64 " (maps gpa 0x%" PRIx64
                                         " outside guest RAM)",
                                         a & ~(PAGE_4K - 1), gpa);
                        return -EFAULT;
                }
                uint64_t chunk = j->len - pos;
                if (chunk > left)
                        chunk = left;
                if (chunk > avail)
                        chunk = avail;
                if (n && segs[n - 1].off + segs[n - 1].len == off)
                        segs[n - 1].len += chunk;
                else
                        segs[n++] = (struct seg){off, chunk};
                pos += chunk;
        }
        *ret_n = n;
        return 0;
}

static void do_memwrite(struct memctx_stub *s, const struct mw_job *j, bool booted)
{
        char msg[VMSIG_MSG_MAX] = "";
        struct seg *segs;
        size_t n = 0;
        int r;

        if (!booted) {
                ack(s, &j->hdr, -EAGAIN, 0, "address-space context not ready (guest still booting)");
                return;
        }
        /* at most one segment per 4 KiB page touched */
        segs = calloc(j->len / PAGE_4K + 2, sizeof(*segs));
        if (!segs) {
                ack(s, &j->hdr, -ENOMEM, 0, "out of memory");
                return;
        }
        r = plan_write(s, j, segs, &n, msg, sizeof(msg));
        if (r == 0) {
                const uint8_t *p = j->data;
                for (size_t i = 0; i < n && r == 0; p += segs[i].len, i++)
                        r = write_full(s, p, segs[i].len, segs[i].off);
                if (r < 0)
                        snprintf(msg, sizeof(msg), "writing guest RAM failed: %s", strerror(-r));
                else
                        snprintf(msg, sizeof(msg), "wrote %u bytes at %s0x%" PRIx64, j->len,
                                 (j->flags & VMSIG_MEMWRITE_PHYS) ? "gpa " : "", j->addr);
        }
        free(segs);
        ack(s, &j->hdr, r, r == 0 ? j->len : 0, msg);
}

static void *worker_main(void *arg)
{
        struct memctx_stub *s = arg;

        pthread_mutex_lock(&s->lock);
        for (;;) {
                while (!s->stop && !s->boot_requested && !s->head)
                        pthread_cond_wait(&s->cond, &s->lock);
                if (s->stop || s->late.gone)
                        break; /* detached: start nothing more, close() answers the rest */
                if (s->boot_requested) {
                        char msg[VMSIG_MSG_MAX] = "";
                        int fd = -1, r;

                        s->boot_requested = false;
                        s->busy = true;
                        pthread_mutex_unlock(&s->lock);
                        r = boot_attempt(s, &fd, msg, sizeof(msg));
                        pthread_mutex_lock(&s->lock);
                        s->busy = false;
                        if (r == 0)
                                s->booted = true;
                        s->result_pending = true;
                        s->result = r;
                        s->result_fd = fd;
                        memcpy(s->result_msg, msg, sizeof(msg));
                        pthread_mutex_unlock(&s->lock);
                        (void)eventfd_write(s->evfd, 1); /* cannot overflow in practice */
                        pthread_mutex_lock(&s->lock);
                        continue;
                }
                struct mw_job *j = s->head;
                bool booted = s->booted;
                s->head = j->next;
                if (!s->head)
                        s->tail = NULL;
                s->njobs--;
                s->busy = true;
                pthread_mutex_unlock(&s->lock);
                do_memwrite(s, j, booted);
                free(j);
                pthread_mutex_lock(&s->lock);
                s->busy = false;
        }
        pthread_mutex_unlock(&s->lock);
        return NULL;
}

/* ---- ops ---- */

static void memctx_close(void *instance)
{
        struct memctx_stub *s = instance;

        if (!s)
                return;
        if (s->worker_started) {
                pthread_mutex_lock(&s->lock);
                s->stop = true;
                pthread_cond_broadcast(&s->cond);
                pthread_mutex_unlock(&s->lock);
                pthread_join(s->worker, NULL);
        }
        /* The ACK the worker could not deliver, then "not applied" for
         * every write it never started (we are closing: the ACKs pass). */
        mw_late_flush(s->sink, &s->late);
        while (s->head) {
                struct mw_job *j = s->head;
                s->head = j->next;
                if (s->sink)
                        ack(s, &j->hdr, -ECANCELED, 0, "not applied: the VM's memctx adapter was detached first");
                free(j);
        }
        if (s->result_fd >= 0)
                close(s->result_fd);
        vmsig_backoff_done(&s->backoff);
        if (s->evfd >= 0)
                close(s->evfd);
        if (s->ram)
                munmap(s->ram, s->ram_len);
        if (s->ram_fd >= 0)
                close(s->ram_fd);
        pthread_cond_destroy(&s->cond);
        pthread_mutex_destroy(&s->lock);
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
        return 0;
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
        s->ram_fd = s->evfd = s->result_fd = s->backoff.fd = -1;
        pthread_mutex_init(&s->lock, NULL);
        pthread_cond_init(&s->cond, NULL);

        s->layout.endpoint = endpoint;
        s->layout.kernel_root = VMSIG_STUB_KERNEL_ROOT;
        s->layout.paging = VMSIG_PAGING_4LEVEL;
        s->layout.os_kind = VMSIG_OS_SYNTHETIC;
        s->layout.nranges = 2;
        s->layout.ranges[0] = (struct vmsig_ram_range){0, s->low, 0};
        s->layout.ranges[1] = (struct vmsig_ram_range){VMSIG_STUB_HIGH_GPA, s->low, s->low};
        s->layout.fd = -1;

        r = ram_create(s);
        if (r < 0)
                goto fail;
        s->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (s->evfd < 0) {
                r = -errno;
                goto fail;
        }
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
        pthread_mutex_lock(&s->lock);
        s->boot_requested = true;
        pthread_cond_signal(&s->cond);
        pthread_mutex_unlock(&s->lock);
}

static int memctx_attach(void *instance, const struct vmsig_emit_sink *sink, struct vmsig_fd_reg *reg,
                         size_t cap, size_t *ret_n)
{
        struct memctx_stub *s = instance;
        int r;

        if (cap < 2 || !sink || !sink->register_memctx)
                return -EINVAL;
        if (s->worker_started)
                return -EALREADY;
        s->sink = sink;
        r = -pthread_create(&s->worker, NULL, worker_main, s);
        if (r < 0)
                return r;
        s->worker_started = true;
        reg[0] = (struct vmsig_fd_reg){s->evfd, EPOLLIN, VMSIG_RDY_EVENTFD, COOKIE_BOOT_DONE};
        reg[1] = (struct vmsig_fd_reg){s->backoff.fd, EPOLLIN, VMSIG_RDY_TIMERFD, COOKIE_RETRY};
        *ret_n = 2;
        kick_boot(s);
        return 0;
}

static void emit_diag(struct memctx_stub *s, int code, const char *msg)
{
        struct vmsig_event ev;
        struct vmsig_diag_body d;

        memset(&d, 0, sizeof(d));
        d.code = code;
        snprintf(d.msg, sizeof(d.msg), "%s", msg);
        vmsig_event_init(&ev, VMSIG_EV_DIAG, s->endpoint, VMSIG_SRC_MEMCTX);
        ev.hdr.ts_ns = vmsig_stub_now_ns();
        vmsig_event_set_body(&ev, &d, sizeof(d));
        (void)s->sink->emit(s->sink, &ev);
}

static void boot_finished(struct memctx_stub *s)
{
        char msg[VMSIG_MSG_MAX];
        bool pending;
        int r, fd;

        pthread_mutex_lock(&s->lock);
        pending = s->result_pending;
        r = s->result;
        fd = s->result_fd;
        memcpy(msg, s->result_msg, sizeof(msg));
        s->result_pending = false;
        s->result_fd = -1;
        pthread_mutex_unlock(&s->lock);
        if (!pending)
                return;

        if (r < 0) {
                /* A booting guest is transient: report the first failure only. */
                int first = vmsig_backoff_failed(&s->backoff);
                if (first < 0) {
                        char buf[VMSIG_MSG_MAX];
                        snprintf(buf, sizeof(buf), "bootstrap retry timer failed: %s", strerror(-first));
                        emit_diag(s, first, buf);
                } else if (first == 1) {
                        char buf[VMSIG_MSG_MAX];
                        snprintf(buf, sizeof(buf), "memctx bootstrap: %.120s; retrying", msg);
                        emit_diag(s, r, buf);
                }
                return;
        }

        vmsig_backoff_succeeded(&s->backoff);
        struct vmsig_memctx ctx = s->layout;
        uint64_t epoch = 0;
        ctx.fd = fd;
        r = s->sink->register_memctx(s->sink, &ctx, &epoch);
        close(fd); /* the core keeps its own dup */
        if (r < 0) {
                char buf[VMSIG_MSG_MAX];
                snprintf(buf, sizeof(buf), "registering memctx failed: %s", strerror(-r));
                emit_diag(s, r, buf);
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
        struct mw_job *j;
        int err;

        if (ev->hdr.kind != VMSIG_EV_CMD_MEMWRITE)
                return VMSIG_SUBMIT_NOT_MINE;
        j = mw_job_new(ev, payload, payload_len, &err);
        if (!j)
                return err;

        pthread_mutex_lock(&s->lock);
        if (!s->worker_started || s->njobs >= JOBS_MAX) {
                pthread_mutex_unlock(&s->lock);
                free(j);
                return s->worker_started ? -EBUSY : -ENOTCONN;
        }
        if (!s->busy && !s->head && !s->boot_requested && j->len <= MEMWRITE_INLINE_BYTES) {
                /* See memwrite_job.h: small writes run here while the worker idles. */
                do_memwrite(s, j, s->booted);
                pthread_mutex_unlock(&s->lock);
                free(j);
                return VMSIG_SUBMIT_ACCEPTED;
        }
        if (s->tail)
                s->tail->next = j;
        else
                s->head = j;
        s->tail = j;
        s->njobs++;
        pthread_cond_signal(&s->cond);
        pthread_mutex_unlock(&s->lock);
        return VMSIG_SUBMIT_ACCEPTED;
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
