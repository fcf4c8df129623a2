/* SPDX-License-Identifier: MIT */
/* memctx: the guest's address-space context from a real QEMU, and
 * CMD_MEMWRITE into its RAM.
 *
 * Pipeline, redone on every QMP (re)connect and guest RESET:
 *   1. probe (loop): HMP `info mtree -f` -> RAM layout (mtree_ram_layout,
 *      fail closed);
 *   2. registers (loop): HMP `info registers` -> CR0, CR3, CR4.LA57, IDT base;
 *   3. bootstrap (worker): open the RAM file, find and validate the kernel
 *      root with libvmie (Linux: the vCPU's CR3 checked by translating the
 *      IDT base, then the kernel's own swapper_pg_dir preferred when it can
 *      be found; Windows: the root's self-reference or vmie's scan);
 *   4. register (loop, via an eventfd): register_memctx with a read-only fd.
 * A failing step while the guest is still booting is transient: the
 * vmsig_backoff timer re-kicks it, one DIAG on the first failure only.
 *
 * fds: the read-only RAM fd is the only one handed out; the worker writes
 * guest memory through a separate O_RDWR fd that never leaves the adapter.
 * The RAM file belongs to the QEMU user, who may swap or shrink it: it is
 * opened without following symlinks or blocking, must be a regular file
 * owned by QEMU's uid and not writable by group/others, and is read with
 * pread only (libvmie's safe mode), so a shrunk file fails reads, never
 * raises SIGBUS (docs/architecture.md, "Trusting the RAM file").
 * Threads: the loop owns the session, the pipeline and registration; the
 * worker owns the RAM (vmie_ram + RW fd) and the kernel root used by
 * MEMWRITE. Generations (ram_gen, root_gen) tell the worker what the loop
 * invalidated; results of an older generation are dropped. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <linux/openat2.h>

#include <vmie/vmie.h>
#include <vmsig/adapter.h>
#include <vmsig/backoff.h>
#include <vmsig/event.h>
#include <vmsig/memctx.h>

#include "host/mtree.h"
#include "adapters/vmconn.h"
#include "adapters/memwrite_job.h"

#define COOKIE_QMP   1u
#define COOKIE_RETRY 2u /* the session's reconnect timer */
#define COOKIE_BOOT  3u /* worker -> loop */
#define COOKIE_KICK  4u /* our bootstrap backoff */
#define JOBS_MAX     32u
#define HMP_TIMEOUT_MS 10000u /* our own pipeline steps: nobody waits on them */
#define PAGE_4K      UINT64_C(4096)
#define SIZE_2M      (UINT64_C(2) << 20)
/* Linux maps its image in [-2 GiB, -1 GiB); an IDT still in there means the
 * kernel has not reached trap_init (its final IDT lives in the cpu entry
 * area), so the CR3 may be an early page table that is freed later. */
#define LINUX_IMAGE_START UINT64_C(0xffffffff80000000)
#define LINUX_IMAGE_END   UINT64_C(0xffffffffc0000000)
#define UNSETTLED_MAX_NS  (30ull * 1000000000ull) /* then accept the CR3 anyway */

enum os_mode { OS_AUTO, OS_LINUX, OS_WINDOWS };

enum phase {
        PH_IDLE,  /* not connected */
        PH_PROBE, /* info mtree -f in flight (or to redo after the backoff) */
        PH_REGS,  /* info registers in flight (or to redo) */
        PH_BOOT,  /* worker bootstrapping */
        PH_DONE,  /* registered */
};

struct regs {
        uint64_t cr0, cr3, cr4, idt;
        bool smm;
};

struct boot_req {
        uint64_t ram_gen, root_gen;
        struct mtree_layout layout;
        struct regs regs;
        int uid_err;    /* 0, or why QEMU's uid is unknown */
        uid_t qemu_uid; /* SO_PEERCRED of the QMP socket: owns the RAM file */
};

struct boot_res {
        uint64_t root_gen;
        int r;
        bool refused; /* the RAM file failed a trust check (not transient) */
        char msg[VMSIG_MSG_MAX];
        struct vmie_kroot kr;
        int fd; /* read-only RAM fd on success */
};

struct memctx {
        bool busy; /* the worker is working outside the lock (owns m->w) */
        uint32_t endpoint;
        char *qmp_path, *ram_path;
        enum os_mode os;
        struct vmconn_opts copts;
        const struct vmsig_emit_sink *sink;
        struct vmconn_listener l;

        /* loop only */
        bool attached;
        enum phase phase;
        uint64_t step_gen; /* HMP replies of an older step are stale */
        bool registered;
        struct mtree_layout layout;
        struct vmsig_backoff backoff;
        int evfd;
        char refused[VMSIG_MSG_MAX]; /* last refusal reported, "" after a success */

        /* shared, under lock */
        pthread_t worker;
        bool worker_started;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool stop;
        uint64_t ram_gen, root_gen; /* written by the loop */
        bool boot_pending;
        struct boot_req req;
        bool res_pending;
        struct boot_res res;
        struct mw_job *head, *tail;
        unsigned njobs;

        /* worker only */
        struct {
                uint64_t ram_gen, root_gen;
                struct mtree_layout layout;
                struct vmie_ram *ram;
                int ro_fd, rw_fd;
                bool root_ok;
                uint64_t root;
                unsigned levels;          /* of the last registers seen */
                char why[VMSIG_MSG_MAX];  /* why ram is NULL: "" = QEMU not connected */
                uint64_t unsettled_since; /* monotonic ns; 0 = not waiting for swapper */
        } w;
        struct mw_late late; /* the worker's, read by close() after the join */
};

static uint64_t now_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- emitting (any thread) ---- */

static void emit_diag(struct memctx *m, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void emit_diag(struct memctx *m, int code, const char *fmt, ...)
{
        struct vmsig_diag_body d;
        struct vmsig_event ev;
        va_list ap;

        memset(&d, 0, sizeof(d));
        d.code = code;
        va_start(ap, fmt);
        vsnprintf(d.msg, sizeof(d.msg), fmt, ap);
        va_end(ap);
        vmsig_event_init(&ev, VMSIG_EV_DIAG, m->endpoint, VMSIG_SRC_MEMCTX);
        ev.hdr.ts_ns = now_ns();
        vmsig_event_set_body(&ev, &d, sizeof(d));
        (void)m->sink->emit(m->sink, &ev);
}

static void ack(struct memctx *m, const struct vmsig_event_hdr *hdr, int result, uint64_t value,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void ack(struct memctx *m, const struct vmsig_event_hdr *hdr, int result, uint64_t value,
                const char *fmt, ...)
{
        struct vmsig_event cmd, ev;
        char msg[VMSIG_MSG_MAX];
        va_list ap;

        if (result == 0 && (hdr->flags & VMSIG_F_FF))
                return;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        cmd.hdr = *hdr;
        vmsig_ack_init(&ev, &cmd, VMSIG_SRC_MEMCTX, result, value, "%s", msg);
        late_or_emit(m->sink, &ev, &m->late);
}

/* ---- worker: guest RAM ---- */

static void w_close_ram(struct memctx *m)
{
        m->w.ram = vmie_ram_free(m->w.ram);
        if (m->w.ro_fd >= 0)
                close(m->w.ro_fd);
        if (m->w.rw_fd >= 0)
                close(m->w.rw_fd);
        m->w.ro_fd = m->w.rw_fd = -1;
        m->w.root_ok = false;
}

/* Open the RAM file the QEMU user controls: no symlink anywhere in the path
 * (openat2 where the kernel has it, else O_NOFOLLOW on the last component),
 * and O_NONBLOCK so a FIFO swapped in cannot block us in open(). */
static int open_untrusted(const char *path, int acc)
{
        const int flags = acc | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY;
        int fd;
#ifdef SYS_openat2
        struct open_how how = {.flags = (uint64_t)flags,
                               .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS};

        fd = (int)syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof(how));
        /* fall back on ENOSYS (older kernel) and EPERM (a seccomp filter
         * that does not know openat2) */
        if (fd >= 0 || (errno != ENOSYS && errno != EPERM))
                return fd < 0 ? -errno : fd;
#endif
        fd = open(path, flags);
        return fd < 0 ? -errno : fd;
}

static const char *file_type(mode_t mode)
{
        switch (mode & S_IFMT) {
        case S_IFIFO:
                return "a FIFO";
        case S_IFSOCK:
                return "a socket";
        case S_IFCHR:
                return "a character device";
        case S_IFBLK:
                return "a block device";
        case S_IFDIR:
                return "a directory";
        default:
                return "not a regular file";
        }
}

/* The trust checks, on what an fd refers to (never on the path). 0, or a
 * negative errno with the reason in msg. */
static int check_ram_stat(const char *path, const struct stat *st, uid_t qemu_uid, uint64_t need, char *msg,
                          size_t len)
{
        if (!S_ISREG(st->st_mode)) {
                snprintf(msg, len, "guest RAM %s: refused: %s", path, file_type(st->st_mode));
                return -EINVAL;
        }
        if (st->st_uid != qemu_uid) {
                snprintf(msg, len, "guest RAM %s: refused: owned by uid %u, QEMU runs as uid %u", path,
                         (unsigned)st->st_uid, (unsigned)qemu_uid);
                return -EPERM;
        }
        /* A control could reopen its read-only fd through /proc for writing
         * with whatever the inode allows, even where it cannot reach the
         * path. The group bits also carry an ACL's mask. */
        if (st->st_mode & (S_IWGRP | S_IWOTH)) {
                snprintf(msg, len, "guest RAM %s: refused: writable by group/others (mode %04o)", path,
                         (unsigned)(st->st_mode & 07777));
                return -EPERM;
        }
        if ((uint64_t)st->st_size < need) {
                snprintf(msg, len, "guest RAM %s: %" PRIu64 " bytes, the layout needs %" PRIu64, path,
                         (uint64_t)st->st_size, need);
                return -ERANGE;
        }
        return 0;
}

static int w_open_ram(struct memctx *m, const struct mtree_layout *lay, uid_t qemu_uid, char *msg, size_t len)
{
        struct vmie_range rr[MTREE_MAX_RANGES];
        struct stat st, st2;
        int r;

        w_close_ram(m);
        r = open_untrusted(m->ram_path, O_RDONLY);
        if (r < 0) {
                if (r == -ELOOP || r == -EXDEV)
                        snprintf(msg, len, "guest RAM %s: refused: a symlink (in the path)", m->ram_path);
                else
                        snprintf(msg, len, "guest RAM %s: %s", m->ram_path, strerror(-r));
                goto fail;
        }
        m->w.ro_fd = r;
        if (fstat(m->w.ro_fd, &st) < 0) {
                r = -errno;
                snprintf(msg, len, "guest RAM %s: %s", m->ram_path, strerror(-r));
                goto fail;
        }
        r = check_ram_stat(m->ram_path, &st, qemu_uid, lay->file_end, msg, len);
        if (r < 0)
                goto fail;
        /* handed out: no O_NONBLOCK surprise for controls */
        (void)fcntl(m->w.ro_fd, F_SETFL, fcntl(m->w.ro_fd, F_GETFL) & ~O_NONBLOCK);
        /* never handed out: the only way guest memory gets written. Opened
         * the same way; it must be the very file just checked. */
        r = open_untrusted(m->ram_path, O_RDWR);
        if (r >= 0)
                m->w.rw_fd = r;
        if (r < 0 || fstat(m->w.rw_fd, &st2) < 0) {
                r = r < 0 ? r : -errno;
                snprintf(msg, len, "guest RAM %s (read-write): %s", m->ram_path, strerror(-r));
                goto fail;
        }
        if (st2.st_dev != st.st_dev || st2.st_ino != st.st_ino) {
                r = -ESTALE;
                snprintf(msg, len, "guest RAM %s: refused: replaced while being opened", m->ram_path);
                goto fail;
        }
        for (size_t i = 0; i < lay->n_ranges; i++)
                rr[i] =
                    (struct vmie_range){lay->ranges[i].gpa, lay->ranges[i].len, lay->ranges[i].file_offset};
        /* safe mode: the QEMU user can shrink the file at any time */
        r = vmie_ram_open_fd(m->w.ro_fd, rr, lay->n_ranges, VMIE_RAM_NO_MMAP, &m->w.ram);
        if (r < 0) {
                snprintf(msg, len, "guest RAM layout rejected: %s", strerror(-r));
                goto fail;
        }
        m->w.layout = *lay;
        m->w.why[0] = '\0';
        return 0;
fail:
        w_close_ram(m);
        snprintf(m->w.why, sizeof(m->w.why), "%s", msg);
        return r;
}

/* Before each publication: the checks again (the QEMU user may have changed
 * the mode or shrunk the file since it was opened). */
static int w_recheck_ram(struct memctx *m, uid_t qemu_uid, char *msg, size_t len)
{
        struct stat st;

        if (fstat(m->w.ro_fd, &st) < 0) {
                int r = -errno;
                snprintf(msg, len, "guest RAM %s: %s", m->ram_path, strerror(-r));
                return r;
        }
        return check_ram_stat(m->ram_path, &st, qemu_uid, m->w.layout.file_end, msg, len);
}

/* The RAM file is shorter than the layout: the QEMU user shrank it. */
static bool w_shrunk(const struct memctx *m, uint64_t *ret_size)
{
        struct stat st;

        if (fstat(m->w.ro_fd, &st) < 0)
                return false;
        *ret_size = (uint64_t)st.st_size;
        return (uint64_t)st.st_size < m->w.layout.file_end;
}

static bool page_matches(const struct vmie_ram *ram, uint64_t pa, const uint64_t *cand)
{
        uint64_t pg[512];

        if (vmie_ram_read(ram, pa, pg, sizeof(pg)) < 0)
                return false;
        if (memcmp(pg + 256, cand + 256, 256 * sizeof(uint64_t)) != 0)
                return false;
        for (unsigned i = 0; i < 256; i++)
                if (pg[i])
                        return false;
        return true;
}

/* A process's PGD dies with the process (a CR3 sampled while a short-lived
 * process runs is stale soon after); swapper_pg_dir lives as long as the
 * kernel. It sits in the kernel image, has an empty user half and the same
 * kernel half as every PGD: look for it there. 0 if not found. */
static uint64_t linux_swapper(const struct vmie_ram *ram, uint64_t root, unsigned levels)
{
        struct vmie_as as = {.ram = ram, .root = root, .levels = (uint8_t)levels};
        uint64_t cand[512];
        struct vmie_xlate x;

        if (vmie_ram_read(ram, root, cand, sizeof(cand)) < 0)
                return 0;
        for (uint64_t va = LINUX_IMAGE_START; va < LINUX_IMAGE_END; va += SIZE_2M) {
                if (vmie_walk(&as, va, &x) < 0)
                        continue;
                if (x.page_size >= SIZE_2M) {
                        uint64_t base = x.gpa & ~(SIZE_2M - 1);
                        for (uint64_t o = 0; o < SIZE_2M; o += PAGE_4K)
                                if (page_matches(ram, base + o, cand))
                                        return base + o;
                        continue;
                }
                for (uint64_t o = 0; o < SIZE_2M; o += PAGE_4K)
                        if (vmie_walk(&as, va + o, &x) == 0 &&
                            page_matches(ram, x.gpa & ~(PAGE_4K - 1), cand))
                                return x.gpa & ~(PAGE_4K - 1);
        }
        return 0;
}

static int w_boot(struct memctx *m, const struct boot_req *q, struct boot_res *res)
{
        char *msg = res->msg;
        const size_t len = sizeof(res->msg);
        const struct regs *g = &q->regs;
        unsigned levels = (g->cr4 & (UINT64_C(1) << 12)) ? 5 : 4;
        int r;

        if (q->uid_err) {
                snprintf(msg, len, "guest RAM %s: who runs QEMU (QMP peer): %s", m->ram_path,
                         strerror(-q->uid_err));
                return q->uid_err;
        }
        if (q->ram_gen != m->w.ram_gen || !m->w.ram ||
            memcmp(&q->layout, &m->w.layout, sizeof(q->layout)) != 0) {
                r = w_open_ram(m, &q->layout, q->qemu_uid, msg, len);
                if (r < 0) {
                        m->w.ram_gen = q->ram_gen; /* w.why belongs to it */
                        res->refused =
                            r == -EPERM || r == -EINVAL || r == -ELOOP || r == -EXDEV || r == -ESTALE;
                        return r;
                }
                m->w.ram_gen = q->ram_gen;
        } else if ((r = w_recheck_ram(m, q->qemu_uid, msg, len)) < 0) {
                res->refused = r != -ERANGE;
                return r;
        }
        m->w.levels = levels;
        if (!(g->cr0 & (UINT64_C(1) << 31)) || vmie_cr3_root(g->cr3, 0) == 0) {
                snprintf(msg, len, "guest still booting (paging off, CR3 0x%" PRIx64 ")", g->cr3);
                return -EAGAIN;
        }
        if (g->smm) {
                snprintf(msg, len, "vCPU in SMM: its CR3 is firmware's");
                return -EAGAIN;
        }

        struct vmie_kroot kr;
        uint64_t root = vmie_cr3_root(g->cr3, 0);
        uint16_t self;
        /* A root with a self-reference is Windows' (Linux has none). */
        if (m->os != OS_LINUX && levels == 4 && vmie_windows_validate_root(m->w.ram, root, 0, &self) == 0) {
                memset(&kr, 0, sizeof(kr));
                kr.root = root;
                kr.os = VMIE_OS_WINDOWS;
                kr.method = VMIE_KROOT_CR3;
                kr.levels = 4;
                kr.selfref_index = self;
                res->kr = kr;
                snprintf(msg, len, "Windows kernel root 0x%" PRIx64 " (vCPU CR3)", root);
                return 0;
        }
        r = -ENOENT;
        if (m->os != OS_WINDOWS) {
                if (!(g->idt >> 63)) {
                        snprintf(msg, len, "guest still booting (IDT at 0x%" PRIx64 ")", g->idt);
                        r = -EAGAIN;
                } else {
                        struct vmie_linux_hint h = {
                            .cr3 = g->cr3, .check_va = g->idt, .levels = (uint8_t)levels};
                        r = vmie_linux_kernel_root(m->w.ram, &h, &kr);
                        if (r == 0) {
                                /* early boot: the IDT is still in the image (its final home is the
                                 * cpu entry area) and the CR3 an early table freed later */
                                bool early = g->idt >= LINUX_IMAGE_START && g->idt < LINUX_IMAGE_END;
                                uint64_t sw = early ? 0 : linux_swapper(m->w.ram, kr.root, kr.levels);
                                struct vmie_kroot ks;
                                h.cr3 = sw;
                                if (sw && vmie_linux_kernel_root(m->w.ram, &h, &ks) == 0) {
                                        kr = ks;
                                } else {
                                        /* kernels unlike ours: accept the CR3 after a while */
                                        uint64_t t = now_ns();
                                        if (!m->w.unsettled_since)
                                                m->w.unsettled_since = t;
                                        if (t - m->w.unsettled_since < UNSETTLED_MAX_NS) {
                                                snprintf(msg, len,
                                                         early ? "Linux still in early boot (IDT 0x%" PRIx64
                                                                 ")"
                                                               : "no swapper_pg_dir in the kernel image yet "
                                                                 "(CR3 0x%" PRIx64 ")",
                                                         early ? g->idt : g->cr3);
                                                return -EAGAIN;
                                        }
                                }
                                m->w.unsettled_since = 0;
                                res->kr = kr;
                                snprintf(msg, len, "Linux kernel root 0x%" PRIx64 ", %u-level", kr.root,
                                         kr.levels);
                                return 0;
                        }
                        if (r != -ENOENT) {
                                snprintf(msg, len, "Linux root check: %s", strerror(-r));
                                return r;
                        }
                }
        }
        if (m->os != OS_LINUX) {
                int rw = vmie_windows_kernel_root(m->w.ram, 0, &kr);
                if (rw == 0) {
                        res->kr = kr;
                        snprintf(msg, len, "Windows kernel root 0x%" PRIx64 " (%s)", kr.root,
                                 kr.method == VMIE_KROOT_LOWSTUB ? "low stub" : "self-ref scan");
                        return 0;
                }
                if (r != -EAGAIN)
                        r = rw;
        }
        if (r == -ENOENT)
                snprintf(msg, len, "no kernel root under CR3 0x%" PRIx64 " yet (IDT 0x%" PRIx64 ")", g->cr3,
                         g->idt);
        else if (r != -EAGAIN)
                snprintf(msg, len, "kernel root search: %s", strerror(-r));
        return r;
}

/* ---- worker: MEMWRITE ---- */

static int write_full(int fd, const uint8_t *p, uint64_t len, uint64_t off)
{
        while (len) {
                ssize_t n = pwrite(fd, p, len, (off_t)off);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        return -EIO;
                p += n;
                len -= (uint64_t)n;
                off += (uint64_t)n;
        }
        return 0;
}

static void w_memwrite(struct memctx *m, const struct mw_job *j)
{
        const bool phys = j->flags & VMSIG_MEMWRITE_PHYS;
        size_t cap = j->len / PAGE_4K + 2 + MTREE_MAX_RANGES, n = 0;
        struct vmie_chunk *ch;
        uint64_t bad = 0, fsize = 0;
        int r;

        if (!m->w.ram) {
                ack(m, &j->hdr, -ENOTCONN, 0, "guest RAM not available (%s)",
                    m->w.why[0] ? m->w.why : "QEMU not connected");
                return;
        }
        if (!phys && !j->hdr.cr3 && !m->w.root_ok) {
                ack(m, &j->hdr, -EAGAIN, 0, "no kernel root yet");
                return;
        }
        if (j->addr + j->len < j->addr) {
                ack(m, &j->hdr, -EFAULT, 0, "extent 0x%" PRIx64 "+%u wraps", j->addr, j->len);
                return;
        }
        ch = calloc(cap, sizeof(*ch));
        if (!ch) {
                ack(m, &j->hdr, -ENOMEM, 0, "out of memory");
                return;
        }
        if (phys) {
                /* every byte must be RAM before anything is written */
                for (uint64_t pos = 0; pos < j->len;) {
                        uint64_t off, avail;
                        if (vmie_ram_gpa_to_offset(m->w.ram, j->addr + pos, &off, &avail) < 0) {
                                ack(m, &j->hdr, -EFAULT, 0, "not RAM at gpa 0x%" PRIx64, j->addr + pos);
                                goto out;
                        }
                        uint64_t c = j->len - pos < avail ? j->len - pos : avail;
                        if (n == cap) {
                                ack(m, &j->hdr, -EFAULT, 0, "extent too fragmented");
                                goto out;
                        }
                        ch[n++] = (struct vmie_chunk){off, j->addr + pos, c};
                        pos += c;
                }
        } else {
                struct vmie_as as = {.ram = m->w.ram,
                                     .root = j->hdr.cr3 ? vmie_cr3_root(j->hdr.cr3, 0) : m->w.root,
                                     .levels = (uint8_t)m->w.levels};
                /* a raw CR3 value: PCID/PWT/PCD (bits 0..11) and bits 52..63
                 * are not part of the root (same rule as the stub) */
                if (j->hdr.cr3 && vmie_ram_gpa_to_offset(m->w.ram, as.root, NULL, NULL) < 0) {
                        ack(m, &j->hdr, -EINVAL, 0,
                            "bad cr3 0x%" PRIx64 ": root 0x%" PRIx64 " outside guest RAM", j->hdr.cr3,
                            as.root);
                        goto out;
                }
                r = vmie_extent_plan(&as, j->addr, j->len, VMIE_EXTENT_WRITABLE, ch, cap, &n, &bad);
                if (r < 0 && w_shrunk(m, &fsize)) {
                        ack(m, &j->hdr, -EIO, 0, "guest RAM %s shrank to %" PRIu64 " bytes", m->ram_path,
                            fsize);
                        goto out;
                }
                if (r < 0) {
                        struct vmie_xlate x;
                        uint64_t page = bad & ~(PAGE_4K - 1);
                        if (r == -EACCES)
                                ack(m, &j->hdr, r, 0, "read-only page at 0x%" PRIx64, page);
                        else if (r == -EFAULT && vmie_walk(&as, bad, &x) == 0)
                                ack(m, &j->hdr, r, 0, "not RAM at gpa 0x%" PRIx64 " (va 0x%" PRIx64 ")",
                                    x.gpa, bad);
                        else if (r == -EFAULT)
                                ack(m, &j->hdr, r, 0, "unmapped page at 0x%" PRIx64, page);
                        else if (r == -ERANGE)
                                ack(m, &j->hdr, -EFAULT, 0, "non-canonical address 0x%" PRIx64, bad);
                        else if (r == -ENXIO)
                                ack(m, &j->hdr, -EINVAL, 0,
                                    "bad page tables (root 0x%" PRIx64 ") at 0x%" PRIx64, as.root, bad);
                        else
                                ack(m, &j->hdr, r, 0, "planning the write failed: %s", strerror(-r));
                        goto out;
                }
        }
        /* pwrite past a shrunk end would grow the QEMU user's file */
        if (w_shrunk(m, &fsize)) {
                ack(m, &j->hdr, -EIO, 0, "guest RAM %s shrank to %" PRIu64 " bytes", m->ram_path, fsize);
                goto out;
        }
        const uint8_t *p = j->data;
        for (size_t i = 0; i < n; p += ch[i].len, i++) {
                r = write_full(m->w.rw_fd, p, ch[i].len, ch[i].file_offset);
                if (r < 0) {
                        ack(m, &j->hdr, r, 0, "writing guest RAM failed: %s", strerror(-r));
                        goto out;
                }
        }
        ack(m, &j->hdr, 0, j->len, "wrote %u bytes at %s0x%" PRIx64, j->len, phys ? "gpa " : "", j->addr);
out:
        free(ch);
}

static void *worker_main(void *arg)
{
        struct memctx *m = arg;

        pthread_mutex_lock(&m->lock);
        for (;;) {
                m->busy = false;
                while (!m->stop && !m->boot_pending && !m->head)
                        pthread_cond_wait(&m->cond, &m->lock);
                if (m->stop || m->late.gone)
                        break; /* detached: start nothing more, close() answers the rest */
                m->busy = true;
                /* what the loop invalidated since we last looked */
                uint64_t ram_gen = m->ram_gen, root_gen = m->root_gen;
                pthread_mutex_unlock(&m->lock);
                if (ram_gen != m->w.ram_gen && m->w.ram)
                        w_close_ram(m); /* QEMU gone: the file may be deleted */
                if (ram_gen != m->w.ram_gen)
                        m->w.why[0] = '\0'; /* a refusal was about the old QEMU */
                if (root_gen != m->w.root_gen)
                        m->w.root_ok = false;
                m->w.root_gen = root_gen;
                pthread_mutex_lock(&m->lock);

                if (m->boot_pending) {
                        struct boot_req q = m->req;
                        struct boot_res res;
                        m->boot_pending = false;
                        pthread_mutex_unlock(&m->lock);
                        memset(&res, 0, sizeof(res));
                        res.root_gen = q.root_gen;
                        res.fd = -1;
                        res.r = w_boot(m, &q, &res);
                        if (res.r == 0) {
                                res.fd = fcntl(m->w.ro_fd, F_DUPFD_CLOEXEC, 3);
                                if (res.fd < 0) {
                                        res.r = -errno;
                                        snprintf(res.msg, sizeof(res.msg), "dup: %s", strerror(errno));
                                }
                        }
                        if (res.r == 0 && q.root_gen == root_gen) {
                                m->w.root_ok = true;
                                m->w.root = res.kr.root;
                        }
                        pthread_mutex_lock(&m->lock);
                        if (m->res_pending && m->res.fd >= 0)
                                close(m->res.fd); /* superseded, never seen by the loop */
                        m->res = res;
                        m->res_pending = true;
                        pthread_mutex_unlock(&m->lock);
                        (void)eventfd_write(m->evfd, 1);
                        pthread_mutex_lock(&m->lock);
                        continue;
                }
                struct mw_job *j = m->head;
                m->head = j->next;
                if (!m->head)
                        m->tail = NULL;
                m->njobs--;
                pthread_mutex_unlock(&m->lock);
                w_memwrite(m, j);
                free(j);
                pthread_mutex_lock(&m->lock);
        }
        pthread_mutex_unlock(&m->lock);
        return NULL;
}

/* ---- loop: the pipeline ---- */

static void step_probe(struct memctx *m);
static void step_regs(struct memctx *m);

static void failed(struct memctx *m, int code, const char *what, const char *msg)
{
        int first = vmsig_backoff_failed(&m->backoff);

        if (first < 0)
                emit_diag(m, first, "memctx: bootstrap retry timer failed: %s", strerror(-first));
        else if (first == 1) /* a booting guest is transient: say it once */
                emit_diag(m, code, "memctx %s: %.120s; retrying", what, msg);
}

static void invalidate(struct memctx *m, bool ram_too)
{
        if (m->registered) {
                (void)m->sink->unregister_memctx(m->sink);
                m->registered = false;
        }
        m->step_gen++;
        pthread_mutex_lock(&m->lock);
        m->root_gen++;
        if (ram_too)
                m->ram_gen++;
        m->boot_pending = false;
        pthread_mutex_unlock(&m->lock);
}

static int parse_hex(const char *text, const char *key, uint64_t *ret)
{
        const char *p = strstr(text, key);
        char *end;

        if (!p)
                return -ENOENT;
        p += strlen(key);
        while (*p == ' ')
                p++;
        errno = 0;
        unsigned long long v = strtoull(p, &end, 16);
        if (end == p || errno)
                return -EBADMSG;
        *ret = v;
        return 0;
}

static int parse_regs(const char *text, struct regs *g)
{
        uint64_t smm = 0;

        memset(g, 0, sizeof(*g));
        if (parse_hex(text, "CR0=", &g->cr0) < 0 || parse_hex(text, "CR3=", &g->cr3) < 0 ||
            parse_hex(text, "CR4=", &g->cr4) < 0 || parse_hex(text, "IDT=", &g->idt) < 0)
                return -EBADMSG;
        (void)parse_hex(text, "SMM=", &smm);
        g->smm = smm != 0;
        return 0;
}

static void regs_reply(struct vmconn_listener *l, const struct qmp_reply *r, void *ud)
{
        struct memctx *m = l->userdata;
        struct regs g;

        if ((uint64_t)(uintptr_t)ud != m->step_gen || m->phase != PH_REGS)
                return;
        if (r->error) {
                /* QEMU refused or did not answer in time: retry after the backoff */
                if (r->error == -EREMOTEIO || r->error == -ETIMEDOUT || r->error == -EINPROGRESS)
                        failed(m, r->error, "registers", r->reason ? r->reason : "HMP error");
                return; /* connection loss: gone() restarts everything */
        }
        if (parse_regs(r->text ? r->text : "", &g) < 0) {
                failed(m, -EBADMSG, "registers", "no CR0/CR3/CR4/IDT in `info registers`");
                return;
        }
        uid_t uid = 0;
        int ue = vmconn_peer_uid(&m->l, &uid);
        pthread_mutex_lock(&m->lock);
        m->req.ram_gen = m->ram_gen;
        m->req.root_gen = m->root_gen;
        m->req.layout = m->layout;
        m->req.regs = g;
        m->req.uid_err = ue;
        m->req.qemu_uid = uid;
        m->boot_pending = true;
        pthread_cond_signal(&m->cond);
        pthread_mutex_unlock(&m->lock);
        m->phase = PH_BOOT;
}

static void step_regs(struct memctx *m)
{
        m->phase = PH_REGS;
        int r = vmconn_hmp(&m->l, "info registers", regs_reply, (void *)(uintptr_t)m->step_gen);
        if (r < 0 && r != -ENOTCONN)
                failed(m, r, "registers", strerror(-r));
}

static void mtree_reply(struct vmconn_listener *l, const struct qmp_reply *r, void *ud)
{
        struct memctx *m = l->userdata;
        char err[160] = "";

        if ((uint64_t)(uintptr_t)ud != m->step_gen || m->phase != PH_PROBE)
                return;
        if (r->error) {
                if (r->error == -EREMOTEIO || r->error == -ETIMEDOUT || r->error == -EINPROGRESS)
                        failed(m, r->error, "probe", r->reason ? r->reason : "HMP error");
                return;
        }
        int e =
            mtree_ram_layout(r->text ? r->text : "", r->text ? r->text_len : 0, &m->layout, err, sizeof(err));
        if (e < 0) {
                /* fail closed: no guessed layout, ever */
                failed(m, e, "probe (info mtree -f)", err);
                return;
        }
        if (m->layout.n_ranges > VMSIG_MEMCTX_MAX_RANGES) {
                failed(m, -E2BIG, "probe", "too many RAM ranges");
                return;
        }
        step_regs(m);
}

static void step_probe(struct memctx *m)
{
        m->phase = PH_PROBE;
        int r = vmconn_hmp(&m->l, "info mtree -f", mtree_reply, (void *)(uintptr_t)m->step_gen);
        if (r < 0 && r != -ENOTCONN)
                failed(m, r, "probe", strerror(-r));
}

static void boot_done(struct memctx *m)
{
        struct boot_res res;
        bool pending;

        pthread_mutex_lock(&m->lock);
        pending = m->res_pending;
        res = m->res;
        m->res_pending = false;
        m->res.fd = -1;
        bool stale = res.root_gen != m->root_gen;
        pthread_mutex_unlock(&m->lock);
        if (!pending)
                return;
        if (stale || m->phase != PH_BOOT) {
                if (res.fd >= 0)
                        close(res.fd);
                return;
        }
        if (res.r < 0 && res.refused) {
                /* not a booting guest: say it whenever the reason changes */
                int first = vmsig_backoff_failed(&m->backoff);
                if (first < 0)
                        emit_diag(m, first, "memctx: bootstrap retry timer failed: %s", strerror(-first));
                if (strcmp(m->refused, res.msg) != 0) {
                        snprintf(m->refused, sizeof(m->refused), "%s", res.msg);
                        emit_diag(m, res.r, "memctx: %s", res.msg);
                }
                return;
        }
        if (res.r < 0) {
                failed(m, res.r, "bootstrap", res.msg);
                return;
        }
        m->refused[0] = '\0';
        struct vmsig_memctx ctx;
        memset(&ctx, 0, sizeof(ctx));
        ctx.endpoint = m->endpoint;
        ctx.kernel_root = res.kr.root;
        ctx.paging = res.kr.levels == 5 ? VMSIG_PAGING_5LEVEL : VMSIG_PAGING_4LEVEL;
        ctx.os_kind = res.kr.os == VMIE_OS_WINDOWS ? VMSIG_OS_WINDOWS : VMSIG_OS_LINUX;
        ctx.nranges = (uint32_t)m->layout.n_ranges;
        for (size_t i = 0; i < m->layout.n_ranges; i++)
                ctx.ranges[i] = (struct vmsig_ram_range){m->layout.ranges[i].gpa, m->layout.ranges[i].len,
                                                         m->layout.ranges[i].file_offset};
        ctx.fd = res.fd;
        uint64_t epoch = 0;
        int r = m->sink->register_memctx(m->sink, &ctx, &epoch);
        close(res.fd); /* the core keeps its own dup */
        if (r < 0) {
                failed(m, r, "register", strerror(-r));
                return;
        }
        vmsig_backoff_succeeded(&m->backoff);
        m->registered = true;
        m->phase = PH_DONE;
}

static void kick(struct memctx *m)
{
        /* the backoff fired: start over from the probe, since the layout
         * itself changes while firmware runs (PAM, SMRAM) */
        if (m->phase != PH_IDLE && m->phase != PH_DONE) {
                m->step_gen++;
                step_probe(m);
        }
}

static void backoff_disarm(struct memctx *m)
{
        struct itimerspec off = {0};

        (void)timerfd_settime(m->backoff.fd, 0, &off, NULL);
}

/* ---- session callbacks ---- */

static void restart(struct memctx *m, bool ram_too)
{
        invalidate(m, ram_too);
        /* a reset storm (firmware resets too) is one failure streak: only
         * success resets the DIAG counter, so just drop a pending retry */
        backoff_disarm(m);
        step_probe(m);
}

static void l_ready(struct vmconn_listener *l)
{
        restart(l->userdata, true); /* maybe a new QEMU: a new RAM file */
}

static void l_event(struct vmconn_listener *l, const struct qmp_event *ev)
{
        struct memctx *m = l->userdata;

        /* a reset starts a new kernel: the old root means nothing */
        if (!strcmp(ev->name, "RESET"))
                restart(m, false);
}

static void l_gone(struct vmconn_listener *l, int err, const char *reason)
{
        struct memctx *m = l->userdata;

        invalidate(m, true);
        backoff_disarm(m);
        m->phase = PH_IDLE;
}

static const struct vmconn_listener_ops listener_ops = {
    .ready = l_ready,
    .event = l_event,
    .gone = l_gone,
};

/* ---- ops ---- */

static void memctx_close(void *instance)
{
        struct memctx *m = instance;

        if (!m)
                return;
        vmconn_detach(&m->l);
        if (m->worker_started) {
                pthread_mutex_lock(&m->lock);
                m->stop = true;
                pthread_cond_broadcast(&m->cond);
                pthread_mutex_unlock(&m->lock);
                pthread_join(m->worker, NULL);
        }
        /* The ACK the worker could not deliver, then "not applied" for
         * every write it never started (we are closing: the ACKs pass). */
        mw_late_flush(m->sink, &m->late);
        while (m->head) {
                struct mw_job *j = m->head;
                m->head = j->next;
                if (m->sink)
                        ack(m, &j->hdr, -ECANCELED, 0, "not applied: the VM's memctx adapter was detached first");
                free(j);
        }
        if (m->res_pending && m->res.fd >= 0)
                close(m->res.fd);
        w_close_ram(m);
        vmsig_backoff_done(&m->backoff);
        if (m->evfd >= 0)
                close(m->evfd);
        pthread_cond_destroy(&m->cond);
        pthread_mutex_destroy(&m->lock);
        free(m->qmp_path);
        free(m->ram_path);
        free(m);
}

/* In the order of enum os_mode: the checker reports the word's index. */
static const struct opt_spec memctx_opts[] = {
    VMCONN_OPT_RETRY,
    {.key = "os", .type = OPT_WORD, .words = "auto|linux|windows"},
};
enum { OPT_RETRY_MS, OPT_RETRY_MAX_MS, OPT_OS };

static int memctx_open(const struct vmsig_adapter_cfg *cfg, uint32_t endpoint, void **ret_instance)
{
        uint64_t v[OPT_COUNT(memctx_opts)];
        struct memctx *m;
        int r;

        if (!cfg || !cfg->qmp_path || !*cfg->qmp_path || !cfg->ram_path || !*cfg->ram_path)
                return -EINVAL;
        if (adapter_options_parse(cfg->options, memctx_opts, OPT_COUNT(memctx_opts), NULL, v, NULL, 0) < 0)
                return -EINVAL;
        uint64_t retry_ms = v[OPT_RETRY_MS], retry_max_ms = v[OPT_RETRY_MAX_MS];
        enum os_mode mode = (enum os_mode)v[OPT_OS];

        m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->endpoint = endpoint;
        m->os = mode;
        m->copts.retry_min_ms = (uint32_t)retry_ms;
        m->copts.retry_max_ms = (uint32_t)retry_max_ms;
        snprintf(m->copts.vm_name, sizeof(m->copts.vm_name), "%s", cfg->vm_name ? cfg->vm_name : "");
        m->evfd = m->backoff.fd = m->w.ro_fd = m->w.rw_fd = m->res.fd = -1;
        pthread_mutex_init(&m->lock, NULL);
        pthread_cond_init(&m->cond, NULL);
        m->qmp_path = strdup(cfg->qmp_path);
        m->ram_path = strdup(cfg->ram_path);
        if (!m->qmp_path || !m->ram_path) {
                r = -ENOMEM;
                goto fail;
        }
        m->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (m->evfd < 0) {
                r = -errno;
                goto fail;
        }
        r = vmsig_backoff_init(&m->backoff, (uint32_t)retry_ms, (uint32_t)retry_max_ms);
        if (r < 0)
                goto fail;
        *ret_instance = m;
        return 0;
fail:
        memctx_close(m);
        return r;
}

static int memctx_attach(void *instance, const struct vmsig_emit_sink *sink, struct vmsig_fd_reg *reg,
                         size_t cap, size_t *ret_n)
{
        struct memctx *m = instance;
        int r;

        if (cap < 2 || !sink || !sink->register_memctx)
                return -EINVAL;
        if (m->attached)
                return -EALREADY;
        m->sink = sink;
        r = -pthread_create(&m->worker, NULL, worker_main, m);
        if (r < 0)
                return r;
        m->worker_started = true;
        m->l = (struct vmconn_listener){.ops = &listener_ops,
                                        .sink = sink,
                                        .cookie_qmp = COOKIE_QMP,
                                        .cookie_timer = COOKIE_RETRY,
                                        .userdata = m,
                                        .timeout_ms = HMP_TIMEOUT_MS};
        r = vmconn_attach(m->qmp_path, &m->copts, &m->l);
        if (r < 0)
                return r; /* close() joins the worker */
        m->attached = true;
        reg[0] = (struct vmsig_fd_reg){m->evfd, EPOLLIN, VMSIG_RDY_EVENTFD, COOKIE_BOOT};
        reg[1] = (struct vmsig_fd_reg){m->backoff.fd, EPOLLIN, VMSIG_RDY_TIMERFD, COOKIE_KICK};
        *ret_n = 2;
        if (vmconn_get_state(&m->l, NULL) == VMCONN_READY) /* the vmhost adapter connected it */
                restart(m, true);
        return 0;
}

static void memctx_on_readiness(void *instance, uint64_t cookie, uint32_t events)
{
        struct memctx *m = instance;

        if (vmconn_on_readiness(&m->l, cookie, events))
                return;
        if (cookie == COOKIE_BOOT)
                boot_done(m);
        else if (cookie == COOKIE_KICK)
                kick(m);
}

static int memctx_submit(void *instance, const struct vmsig_event *ev, const void *payload,
                         size_t payload_len)
{
        struct memctx *m = instance;
        struct mw_job *j;
        int err;

        if (ev->hdr.kind != VMSIG_EV_CMD_MEMWRITE)
                return VMSIG_SUBMIT_NOT_MINE;
        j = mw_job_new(ev, payload, payload_len, &err);
        if (!j)
                return err;

        pthread_mutex_lock(&m->lock);
        if (!m->worker_started || m->njobs >= JOBS_MAX) {
                bool started = m->worker_started;
                pthread_mutex_unlock(&m->lock);
                free(j);
                return started ? -EBUSY : -ENOTCONN;
        }
        /* See memwrite_job.h. Only when the worker has caught up with every
         * invalidation, so m->w is current. */
        if (!m->busy && !m->head && !m->boot_pending && m->ram_gen == m->w.ram_gen &&
            m->root_gen == m->w.root_gen && j->len <= MEMWRITE_INLINE_BYTES) {
                w_memwrite(m, j);
                pthread_mutex_unlock(&m->lock);
                free(j);
                return VMSIG_SUBMIT_ACCEPTED;
        }
        if (m->tail)
                m->tail->next = j;
        else
                m->head = j;
        m->tail = j;
        m->njobs++;
        pthread_cond_signal(&m->cond);
        pthread_mutex_unlock(&m->lock);
        return VMSIG_SUBMIT_ACCEPTED;
}

static const struct vmsig_adapter_ops memctx_ops = {
    .name = "memctx-qemu",
    .seam = VMSIG_SRC_MEMCTX,
    .open = memctx_open,
    .attach = memctx_attach,
    .on_readiness = memctx_on_readiness,
    .submit = memctx_submit,
    .close = memctx_close,
};

const struct adapter_desc memctx_qemu_adapter = {&memctx_ops, memctx_opts, OPT_COUNT(memctx_opts)};
