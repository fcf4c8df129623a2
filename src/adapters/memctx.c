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
 * MEMWRITE itself is the memctx engine (memctx_engine.h), shared with the
 * stub: this file supplies its RAM source (the vmie_ram, the RW fd, the
 * shrink check), its root source and the bootstrap it runs on its worker.
 * Threads: the loop owns the session, the pipeline and registration; the
 * worker owns the RAM (vmie_ram + RW fd) and the kernel root used by
 * MEMWRITE. Generations (ram_gen, root_gen) tell the worker what the loop
 * invalidated; results of an older generation are dropped. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
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

#include "adapters/memctx_engine.h"
#include "adapters/ram_proc.h"
#include "adapters/vmconn.h"
#include "host/mtree.h"
#include "util/clock.h"

#define COOKIE_QMP     1u
#define COOKIE_RETRY   2u     /* the session's reconnect timer */
#define COOKIE_BOOT    3u     /* worker -> loop */
#define COOKIE_KICK    4u     /* our bootstrap backoff */
#define HMP_TIMEOUT_MS 10000u /* our own pipeline steps: nobody waits on them */
#define PAGE_4K        UINT64_C(4096)
#define SIZE_2M        (UINT64_C(2) << 20)
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
        PH_PATH,  /* no ram=: qom-get of the backend's mem-path in flight */
        PH_REGS,  /* info registers in flight (or to redo) */
        PH_BOOT,  /* worker bootstrapping */
        PH_DONE,  /* registered */
};

struct regs {
        uint64_t cr0, cr3, cr4, idt;
        bool smm;
};

#define RAM_PATH_MAX 1024 /* with its NUL */

struct boot_req {
        uint64_t ram_gen, root_gen;
        char ram_path[RAM_PATH_MAX]; /* ram=, or the backend's mem-path QEMU reported */
        struct mtree_layout layout;
        struct regs regs;
        int uid_err;    /* 0, or why QEMU's uid is unknown */
        uid_t qemu_uid; /* SO_PEERCRED of the QMP socket: owns the RAM file */
        pid_t qemu_pid; /* RAM without a file (ram_proc.h): whose fd table */
};

struct boot_res {
        uint64_t root_gen;
        int r;
        bool refused; /* the RAM file failed a trust check (not transient) */
        char msg[VMSIG_MSG_MAX];
        struct vmie_kroot kr;
        uint64_t kernel_base; /* 0 = not found */
        int fd;               /* read-only RAM fd on success */
};

struct memctx {
        uint32_t endpoint;
        char *qmp_path, *ram_path; /* ram_path NULL: ask QEMU (qom-get mem-path) */
        uid_t opt_uid;             /* options qemu_pid/qemu_uid (libvirt driver): */
        pid_t opt_pid;             /* who runs QEMU, when the QMP peer is not QEMU */
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
        char qemu_ram_path[RAM_PATH_MAX]; /* without ram=: the backend's mem-path */
        struct vmsig_backoff backoff;
        char refused[VMSIG_MSG_MAX]; /* last refusal reported, "" after a success */

        /* MEMWRITE queue and worker; shared below, under its lock */
        struct mce *engine;
        uint64_t ram_gen, root_gen; /* written by the loop */
        struct boot_req req;        /* valid while a bootstrap is requested */
        bool res_pending;
        struct boot_res res;

        /* worker only */
        struct {
                struct boot_req req; /* the bootstrap being worked on */
                uint64_t ram_gen, root_gen;
                struct mtree_layout layout;
                struct vmie_ram *ram;
                char path[RAM_PATH_MAX]; /* of ram; "" or a directory: QEMU's fd table */
                bool proc;               /* ram came from QEMU's fd table (read-only) */
                char desc[PATH_MAX];     /* ram's name for messages */
                int ro_fd, rw_fd;
                bool root_ok;
                uint64_t root;
                unsigned levels;          /* of the last registers seen */
                char why[VMSIG_MSG_MAX];  /* why ram is NULL: "" = QEMU not connected */
                uint64_t unsettled_since; /* monotonic ns; 0 = not waiting for swapper */
        } w;
};

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

static int w_open_ram(struct memctx *m, const struct mtree_layout *lay, uid_t qemu_uid, pid_t qemu_pid,
                      char *msg, size_t len)
{
        struct vmie_range rr[MTREE_MAX_RANGES];
        struct stat st = {0}, st2;
        int r;

        w_close_ram(m);
        m->w.proc = false;
        snprintf(m->w.desc, sizeof(m->w.desc), "%s", m->w.path);
        if (m->w.path[0]) {
                r = open_untrusted(m->w.path, O_RDONLY);
                if (r < 0) {
                        if (r == -ELOOP || r == -EXDEV)
                                snprintf(msg, len, "guest RAM %s: refused: a symlink (in the path)",
                                         m->w.path);
                        else
                                snprintf(msg, len, "guest RAM %s: %s", m->w.path, strerror(-r));
                        goto fail;
                }
                m->w.ro_fd = r;
                if (fstat(m->w.ro_fd, &st) < 0) {
                        r = -errno;
                        snprintf(msg, len, "guest RAM %s: %s", m->w.path, strerror(-r));
                        goto fail;
                }
        }
        /* No file (memfd, or a mem-path directory whose file QEMU unlinked):
         * QEMU's fd table has it; read-only, so MEMWRITE answers -EROFS. */
        if (!m->w.path[0] || S_ISDIR(st.st_mode)) {
                w_close_ram(m);
                r = ram_proc_open(qemu_pid, qemu_uid, lay->file_end, m->w.path, m->w.desc, sizeof(m->w.desc),
                                  msg, len);
                if (r < 0)
                        goto fail;
                m->w.ro_fd = r;
                m->w.proc = true;
                goto opened;
        }
        r = check_ram_stat(m->w.path, &st, qemu_uid, lay->file_end, msg, len);
        if (r < 0)
                goto fail;
        /* handed out: no O_NONBLOCK surprise for controls */
        (void)fcntl(m->w.ro_fd, F_SETFL, fcntl(m->w.ro_fd, F_GETFL) & ~O_NONBLOCK);
        /* never handed out: the only way guest memory gets written. Opened
         * the same way; it must be the very file just checked. */
        r = open_untrusted(m->w.path, O_RDWR);
        if (r >= 0)
                m->w.rw_fd = r;
        if (r < 0 || fstat(m->w.rw_fd, &st2) < 0) {
                r = r < 0 ? r : -errno;
                snprintf(msg, len, "guest RAM %s (read-write): %s", m->w.path, strerror(-r));
                goto fail;
        }
        if (st2.st_dev != st.st_dev || st2.st_ino != st.st_ino) {
                r = -ESTALE;
                snprintf(msg, len, "guest RAM %s: refused: replaced while being opened", m->w.path);
                goto fail;
        }
opened:
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
                snprintf(msg, len, "guest RAM %s: %s", m->w.desc, strerror(-r));
                return r;
        }
        return check_ram_stat(m->w.desc, &st, qemu_uid, m->w.layout.file_end, msg, len);
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
                snprintf(msg, len, "guest RAM %s: who runs QEMU (QMP peer): %s", q->ram_path,
                         strerror(-q->uid_err));
                return q->uid_err;
        }
        if (q->ram_gen != m->w.ram_gen || !m->w.ram ||
            memcmp(&q->layout, &m->w.layout, sizeof(q->layout)) != 0 || strcmp(q->ram_path, m->w.path) != 0) {
                snprintf(m->w.path, sizeof(m->w.path), "%s", q->ram_path);
                r = w_open_ram(m, &q->layout, q->qemu_uid, q->qemu_pid, msg, len);
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
                                        uint64_t t = vmsig_now_ns();
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
        /* the scan reads all of RAM: not while the IDT says nothing runs yet */
        if (m->os != OS_LINUX && r != -EAGAIN) {
                int rw = vmie_windows_kernel_root(m->w.ram, 0, &kr);
                if (rw == 0) {
                        res->kr = kr;
                        snprintf(msg, len, "Windows kernel root 0x%" PRIx64 " (%s)", kr.root,
                                 kr.method == VMIE_KROOT_LOWSTUB ? "low stub" : "self-ref scan");
                        return 0;
                }
                r = rw;
        }
        if (r == -ENOENT)
                snprintf(msg, len, "no kernel root under CR3 0x%" PRIx64 " yet (IDT 0x%" PRIx64 ")", g->cr3,
                         g->idt);
        else if (r != -EAGAIN)
                snprintf(msg, len, "kernel root search: %s", strerror(-r));
        return r;
}

/* ---- the engine's ops (worker, or inline with the worker idle) ---- */

/* Catch up with what the loop invalidated since we last looked. */
static void w_sync(void *ud)
{
        struct memctx *m = ud;

        mce_lock(m->engine);
        uint64_t ram_gen = m->ram_gen, root_gen = m->root_gen;
        mce_unlock(m->engine);
        if (ram_gen != m->w.ram_gen && m->w.ram)
                w_close_ram(m); /* QEMU gone: the file may be deleted */
        if (ram_gen != m->w.ram_gen)
                m->w.why[0] = '\0'; /* a refusal was about the old QEMU */
        if (root_gen != m->w.root_gen)
                m->w.root_ok = false;
        m->w.root_gen = root_gen;
}

static void w_boot_take(void *ud)
{
        struct memctx *m = ud;

        m->w.req = m->req;
}

static void w_boot_task(void *ud)
{
        struct memctx *m = ud;
        const struct boot_req *q = &m->w.req;
        struct boot_res res;

        memset(&res, 0, sizeof(res));
        res.root_gen = q->root_gen;
        res.fd = -1;
        res.r = w_boot(m, q, &res);
        /* without symbols, from the root just found; unknown is no failure */
        if (res.r == 0 && vmie_kernel_base(m->w.ram, &res.kr, &res.kernel_base) < 0)
                res.kernel_base = 0;
        if (res.r == 0) {
                res.fd = fcntl(m->w.ro_fd, F_DUPFD_CLOEXEC, 3);
                if (res.fd < 0) {
                        res.r = -errno;
                        snprintf(res.msg, sizeof(res.msg), "dup: %s", strerror(errno));
                }
        }
        if (res.r == 0 && q->root_gen == m->w.root_gen) {
                m->w.root_ok = true;
                m->w.root = res.kr.root;
        }
        mce_lock(m->engine);
        if (m->res_pending && m->res.fd >= 0)
                close(m->res.fd); /* superseded, never seen by the loop */
        m->res = res;
        m->res_pending = true;
        mce_unlock(m->engine);
        mce_notify(m->engine);
}

static int w_target(void *ud, struct mce_target *t, char *msg, size_t len)
{
        struct memctx *m = ud;

        if (!m->w.ram) {
                snprintf(msg, len, "guest RAM not available (%s)",
                         m->w.why[0] ? m->w.why : "QEMU not connected");
                return -ENOTCONN;
        }
        t->ram = m->w.ram;
        t->root = m->w.root_ok ? m->w.root : 0;
        t->levels = m->w.levels;
        return 0;
}

static int w_shrunk_msg(void *ud, char *msg, size_t len)
{
        struct memctx *m = ud;
        uint64_t fsize = 0;

        if (!w_shrunk(m, &fsize))
                return 0;
        snprintf(msg, len, "guest RAM %s shrank to %" PRIu64 " bytes", m->w.desc, fsize);
        return -EIO;
}

static int w_write(void *ud, const void *buf, size_t len, uint64_t off)
{
        struct memctx *m = ud;
        const uint8_t *p = buf;

        if (m->w.rw_fd < 0)
                return -EROFS; /* RAM from QEMU's fd table is opened read-only */
        while (len) {
                ssize_t n = pwrite(m->w.rw_fd, p, len, (off_t)off);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        return -EIO;
                p += n;
                len -= (size_t)n;
                off += (uint64_t)n;
        }
        return 0;
}

static int w_write_fd(void *ud, int src_fd, uint64_t src_off, size_t len, uint64_t off, size_t *done)
{
        struct memctx *m = ud;

        *done = 0;
        if (m->w.rw_fd < 0)
                return -EROFS;
        return mce_copy_fd(m->engine, src_fd, src_off, m->w.rw_fd, off, len, done);
}

/* Lock held, worker idle: it has caught up with every invalidation, so
 * m->w is current and a small write may run inline. */
static bool w_current(void *ud)
{
        const struct memctx *m = ud;

        return m->ram_gen == m->w.ram_gen && m->root_gen == m->w.root_gen;
}

static const struct mce_ops engine_ops = {
    .sync = w_sync,
    .boot_take = w_boot_take,
    .boot = w_boot_task,
    .target = w_target,
    .shrunk = w_shrunk_msg,
    .write = w_write,
    .write_fd = w_write_fd,
    .current = w_current,
};

/* ---- loop: the pipeline ---- */

static void step_probe(struct memctx *m);
static void step_regs(struct memctx *m);
static void step_mem_path(struct memctx *m);

static void failed(struct memctx *m, int code, const char *what, const char *msg)
{
        int first = vmsig_backoff_failed(&m->backoff);

        if (first < 0)
                (void)vmsig_sink_diag(m->sink, m->endpoint, VMSIG_SRC_MEMCTX, first,
                                      "memctx: bootstrap retry timer failed: %s", strerror(-first));
        else if (first == 1) /* a booting guest is transient: say it once */
                (void)vmsig_sink_diag(m->sink, m->endpoint, VMSIG_SRC_MEMCTX, code,
                                      "memctx %s: %.120s; retrying", what, msg);
}

static void invalidate(struct memctx *m, bool ram_too)
{
        if (m->registered) {
                (void)m->sink->unregister_memctx(m->sink);
                m->registered = false;
        }
        m->step_gen++;
        mce_lock(m->engine);
        m->root_gen++;
        if (ram_too)
                m->ram_gen++;
        mce_set_boot_locked(m->engine, false);
        mce_unlock(m->engine);
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
        uid_t uid = m->opt_uid;
        pid_t pid = m->opt_pid;
        int ue = 0;
        if (!m->opt_pid) {
                ue = vmconn_peer_uid(&m->l, &uid);
                if (!ue)
                        ue = vmconn_peer_pid(&m->l, &pid);
        }
        mce_lock(m->engine);
        m->req.ram_gen = m->ram_gen;
        m->req.root_gen = m->root_gen;
        m->req.layout = m->layout;
        snprintf(m->req.ram_path, sizeof(m->req.ram_path), "%s",
                 m->ram_path ? m->ram_path : m->qemu_ram_path);
        m->req.regs = g;
        m->req.uid_err = ue;
        m->req.qemu_uid = uid;
        m->req.qemu_pid = pid;
        mce_set_boot_locked(m->engine, true);
        mce_unlock(m->engine);
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
        if (!m->ram_path)
                step_mem_path(m);
        else
                step_regs(m);
}

/* No ram= in the trigger file: QEMU says where the RAM backend's file is
 * (qom-get mem-path of the backend `info mtree -f` named). The answer is the
 * QEMU user's word, so the file gets the same checks as ram= (owned by
 * QEMU's uid, no symlinks, regular, big enough). */
static void mem_path_reply(struct vmconn_listener *l, const struct qmp_reply *r, void *ud)
{
        struct memctx *m = l->userdata;
        const char *p;

        if ((uint64_t)(uintptr_t)ud != m->step_gen || m->phase != PH_PATH)
                return;
        if (r->error) {
                if (r->error == -EREMOTEIO) {
                        /* no mem-path (memfd, anonymous): QEMU's fd table */
                        m->qemu_ram_path[0] = '\0';
                        step_regs(m);
                } else if (r->error == -ETIMEDOUT || r->error == -EINPROGRESS)
                        failed(m, r->error, "RAM path (qom-get)", r->reason ? r->reason : "no answer");
                return;
        }
        p = json_object_is_type(r->value, json_type_string) ? json_object_get_string(r->value) : NULL;
        if (!p || p[0] != '/' || strlen(p) >= sizeof(m->qemu_ram_path)) {
                failed(m, -EBADMSG, "RAM path", "QEMU's mem-path of the RAM backend is not an absolute path");
                return;
        }
        for (const char *c = p; *c; c++)
                if ((unsigned char)*c < 0x20 || *c == 0x7f) {
                        failed(m, -EBADMSG, "RAM path", "QEMU's mem-path has control characters");
                        return;
                }
        snprintf(m->qemu_ram_path, sizeof(m->qemu_ram_path), "%s", p);
        step_regs(m);
}

static void step_mem_path(struct memctx *m)
{
        char obj[16 + MTREE_NAME_MAX];
        struct json_object *args = json_object_new_object();
        int r = -ENOMEM;

        m->phase = PH_PATH;
        snprintf(obj, sizeof(obj), "/objects/%s", m->layout.backend);
        if (args && !json_object_object_add(args, "path", json_object_new_string(obj)) &&
            !json_object_object_add(args, "property", json_object_new_string("mem-path")))
                r = vmconn_execute(&m->l, "qom-get", args, mem_path_reply, (void *)(uintptr_t)m->step_gen);
        json_object_put(args);
        if (r < 0 && r != -ENOTCONN)
                failed(m, r, "RAM path", strerror(-r));
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

        mce_lock(m->engine);
        pending = m->res_pending;
        res = m->res;
        m->res_pending = false;
        m->res.fd = -1;
        bool stale = res.root_gen != m->root_gen;
        mce_unlock(m->engine);
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
                        (void)vmsig_sink_diag(m->sink, m->endpoint, VMSIG_SRC_MEMCTX, first,
                                              "memctx: bootstrap retry timer failed: %s", strerror(-first));
                if (strcmp(m->refused, res.msg) != 0) {
                        snprintf(m->refused, sizeof(m->refused), "%s", res.msg);
                        (void)vmsig_sink_diag(m->sink, m->endpoint, VMSIG_SRC_MEMCTX, res.r, "memctx: %s",
                                              res.msg);
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
        ctx.kernel_base = res.kernel_base;
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
        /* joins the worker, then answers every write (engine rules) */
        mce_stop(m->engine);
        if (m->res_pending && m->res.fd >= 0)
                close(m->res.fd);
        w_close_ram(m);
        vmsig_backoff_done(&m->backoff);
        mce_free(m->engine);
        free(m->qmp_path);
        free(m->ram_path);
        free(m);
}

/* In the order of enum os_mode: the checker reports the word's index. */
static const struct opt_spec memctx_opts[] = {
    VMCONN_OPT_RETRY,
    {.key = "os", .type = OPT_WORD, .words = "auto|linux|windows"},
    /* libvirt driver only (not in the qemu row, so no trigger file sets
     * them): the QMP peer is vmsigd's own monitor proxy, not QEMU */
    {.key = "qemu_pid", .type = OPT_U64, .min = 0, .max = INT32_MAX}, /* 0: the QMP peer */
    {.key = "qemu_uid", .type = OPT_U64, .min = 0, .max = UINT32_MAX - 1},
};
enum { OPT_RETRY_MS, OPT_RETRY_MAX_MS, OPT_OS, OPT_QEMU_PID, OPT_QEMU_UID };
#define QEMU_ROW_OPTS OPT_QEMU_PID /* the qemu driver's row has the options before these */

/* n_opts: how much of memctx_opts this driver's row accepts. */
static int memctx_open_with(const struct vmsig_adapter_cfg *cfg, uint32_t endpoint, size_t n_opts,
                            void **ret_instance)
{
        uint64_t v[OPT_COUNT(memctx_opts)] = {0}; /* the qemu row parses fewer */
        struct memctx *m;
        int r;

        if (!cfg || !cfg->qmp_path || !*cfg->qmp_path || (cfg->ram_path && !*cfg->ram_path) ||
            (cfg->ram_path && strlen(cfg->ram_path) >= RAM_PATH_MAX))
                return -EINVAL;
        if (adapter_options_parse(cfg->options, memctx_opts, n_opts, NULL, v, NULL, 0) < 0)
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
        m->backoff.fd = m->w.ro_fd = m->w.rw_fd = m->res.fd = -1;
        m->opt_pid = (pid_t)v[OPT_QEMU_PID];
        m->opt_uid = (uid_t)v[OPT_QEMU_UID];
        m->qmp_path = strdup(cfg->qmp_path);
        m->ram_path = cfg->ram_path ? strdup(cfg->ram_path) : NULL;
        if (!m->qmp_path || (cfg->ram_path && !m->ram_path)) {
                r = -ENOMEM;
                goto fail;
        }
        r = mce_new(&engine_ops, m, &m->engine);
        if (r < 0)
                goto fail;
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
        r = mce_start(m->engine, sink);
        if (r < 0)
                return r;
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
        reg[0] = (struct vmsig_fd_reg){mce_evfd(m->engine), EPOLLIN, VMSIG_RDY_EVENTFD, COOKIE_BOOT};
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

        return mce_submit(m->engine, ev, payload, payload_len);
}

/* Two rows, two opens: a trigger file's qemu VM must not set qemu_pid or
 * qemu_uid, which only vmsigd's libvirt driver knows. */
static int memctx_open(const struct vmsig_adapter_cfg *cfg, uint32_t endpoint, void **ret_instance)
{
        return memctx_open_with(cfg, endpoint, QEMU_ROW_OPTS, ret_instance);
}

static int memctx_open_libvirt(const struct vmsig_adapter_cfg *cfg, uint32_t endpoint, void **ret_instance)
{
        return memctx_open_with(cfg, endpoint, OPT_COUNT(memctx_opts), ret_instance);
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

static const struct vmsig_adapter_ops memctx_libvirt_ops = {
    .name = "memctx-libvirt",
    .seam = VMSIG_SRC_MEMCTX,
    .open = memctx_open_libvirt,
    .attach = memctx_attach,
    .on_readiness = memctx_on_readiness,
    .submit = memctx_submit,
    .close = memctx_close,
};

const struct adapter_desc memctx_qemu_adapter = {&memctx_ops, memctx_opts, QEMU_ROW_OPTS};
const struct adapter_desc memctx_libvirt_adapter = {&memctx_libvirt_ops, memctx_opts, OPT_COUNT(memctx_opts)};
