/* SPDX-License-Identifier: MIT */
/* The memctx engine (memctx_engine.h): MEMWRITE jobs, the worker, the inline
 * path and write planning through libvmie, for the real adapter and its
 * stub alike. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "adapters/memctx_engine.h"

#define PAGE_4K UINT64_C(4096)

/* A sealed source is mapped from this write size up (below, a read costs
 * less than the mapping), kept mapped while writes keep coming, and
 * unmapped after this idle time, so a control's memory is not held for
 * long after it stopped writing. */
#define SRC_MAP_MIN_BYTES (64u * 1024u)
#define SRC_MAP_MAX_BYTES (256ull << 20)
#define SRC_MAP_IDLE_NS   (2ull * 1000000000ull)

/* A queued CMD_MEMWRITE: the command header for the ACK, and its own copy of
 * the source bytes, since the payload only lives during submit(); or, for
 * an fd source, its own dup of the fd (the bytes are read when it runs). */
struct mw_job {
        struct mw_job *next;
        struct vmsig_event_hdr hdr;
        uint64_t addr;
        uint32_t len;
        uint32_t flags;
        uint32_t lease_gen; /* sink->lease_generation when accepted */
        int src_fd;         /* -1: the bytes are in data */
        uint64_t src_off;
        uint8_t data[];
};

struct mce {
        const struct mce_ops *ops;
        void *ud;
        const struct vmsig_emit_sink *sink;
        int evfd;

        pthread_t worker;
        bool worker_started;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        /* under lock */
        bool stop;
        bool busy; /* the worker is working outside the lock */
        bool boot_pending;
        struct mw_job *head, *tail;
        unsigned njobs;

        /* An ACK the worker could not emit because the adapter was detached
         * meanwhile (-ESHUTDOWN). The worker keeps it and starts nothing
         * more; mce_stop emits it after the join (the core lets a closing
         * adapter's ACT_ACKs through on the loop thread), so a write that did
         * happen is reported as done, not as lost. Worker-owned until the
         * join. */
        bool gone;
        bool has_late;
        struct vmsig_event late;

        /* mce_copy_fd's pipe, made on first use; worker (or inline, lock
         * held) only. */
        int pipe_rd, pipe_wr;
        size_t pipe_cap;

        /* The last sealed source fd, mapped read-only; worker only. The
         * mapping holds its file, so (dev, ino) cannot name another file
         * while it exists. */
        struct {
                const uint8_t *base; /* NULL: none */
                size_t len;
                dev_t dev;
                ino_t ino;
                uint32_t lease_gen;
        } src;
};

static void job_free(struct mw_job *j)
{
        if (j && j->src_fd >= 0)
                close(j->src_fd);
        free(j);
}

/* Decode and copy. NULL with *ret_err = -EINVAL (malformed) or -ENOMEM. */
static struct mw_job *job_new(const struct vmsig_event *ev, const void *payload, size_t payload_len,
                              int *ret_err)
{
        struct vmsig_memwrite_req req;
        struct mw_job *j;

        if (vmsig_memwrite_decode(ev, payload, payload_len, &req) < 0) {
                *ret_err = -EINVAL;
                return NULL;
        }
        if (!req.src && req.src_fd < 0) {
                *ret_err = -EINVAL;
                return NULL;
        }
        j = malloc(sizeof(*j) + (req.src ? req.len : 0));
        if (!j) {
                *ret_err = -ENOMEM;
                return NULL;
        }
        j->next = NULL;
        j->hdr = ev->hdr;
        j->addr = req.addr;
        j->len = req.len;
        j->flags = req.flags;
        j->src_fd = -1;
        j->src_off = req.src_off;
        if (req.src) {
                memcpy(j->data, req.src, req.len);
                return j;
        }
        /* The bus closes its fd after submit; the job keeps its own. */
        j->src_fd = fcntl(req.src_fd, F_DUPFD_CLOEXEC, 3);
        if (j->src_fd < 0) {
                *ret_err = -errno;
                free(j);
                return NULL;
        }
        return j;
}

static void ack(struct mce *e, const struct vmsig_event_hdr *hdr, int result, uint64_t value, const char *fmt,
                ...) __attribute__((format(printf, 5, 6)));
static void ack(struct mce *e, const struct vmsig_event_hdr *hdr, int result, uint64_t value, const char *fmt,
                ...)
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
        if (e->sink->emit(e->sink, &ev) != -ESHUTDOWN)
                return;
        e->gone = true;
        if (!e->has_late) {
                e->late = ev;
                e->has_late = true;
        }
}

/* ---- one write: plan the whole extent, then write ---- */

/* Guest-physical: every byte must be RAM before anything is written. */
static int plan_phys(struct mce *e, const struct mw_job *j, const struct vmie_ram *ram, struct vmie_chunk *ch,
                     size_t cap, size_t *ret_n)
{
        size_t n = 0;

        for (uint64_t pos = 0; pos < j->len;) {
                uint64_t off, avail;
                if (vmie_ram_gpa_to_offset(ram, j->addr + pos, &off, &avail) < 0) {
                        ack(e, &j->hdr, -EFAULT, 0, "not RAM at gpa 0x%" PRIx64, j->addr + pos);
                        return -EFAULT;
                }
                uint64_t c = j->len - pos < avail ? j->len - pos : avail;
                if (n == cap) {
                        ack(e, &j->hdr, -EFAULT, 0, "extent too fragmented");
                        return -EFAULT;
                }
                ch[n++] = (struct vmie_chunk){off, j->addr + pos, c};
                pos += c;
        }
        *ret_n = n;
        return 0;
}

static int shrunk(struct mce *e, const struct mw_job *j)
{
        char msg[VMSIG_MSG_MAX];
        int r = e->ops->shrunk ? e->ops->shrunk(e->ud, msg, sizeof(msg)) : 0;

        if (r < 0)
                ack(e, &j->hdr, r, 0, "%s", msg);
        return r;
}

/* Virtual, through the header's cr3 or the kernel root. */
static int plan_virt(struct mce *e, const struct mw_job *j, const struct mce_target *t, struct vmie_chunk *ch,
                     size_t cap, size_t *ret_n)
{
        /* a raw CR3 value: PCID/PWT/PCD (bits 0..11) and bits 52..63 are
         * not part of the root */
        struct vmie_as as = {.ram = t->ram,
                             .root = j->hdr.cr3 ? vmie_cr3_root(j->hdr.cr3, 0) : t->root,
                             .levels = (uint8_t)t->levels};
        uint64_t bad = 0;
        struct vmie_xlate x;
        int r;

        if (j->hdr.cr3 && vmie_ram_gpa_to_offset(t->ram, as.root, NULL, NULL) < 0) {
                ack(e, &j->hdr, -EINVAL, 0, "bad cr3 0x%" PRIx64 ": root 0x%" PRIx64 " outside guest RAM",
                    j->hdr.cr3, as.root);
                return -EINVAL;
        }
        r = vmie_extent_plan(&as, j->addr, j->len, VMIE_EXTENT_WRITABLE, ch, cap, ret_n, &bad);
        if (r == 0)
                return 0;
        if (shrunk(e, j) < 0)
                return -EIO;
        uint64_t page = bad & ~(PAGE_4K - 1);
        if (r == -EACCES)
                ack(e, &j->hdr, r, 0, "read-only page at 0x%" PRIx64, page);
        else if (r == -EFAULT && vmie_walk(&as, bad, &x) == 0)
                ack(e, &j->hdr, r, 0, "not RAM at gpa 0x%" PRIx64 " (va 0x%" PRIx64 ")", x.gpa, bad);
        else if (r == -EFAULT)
                ack(e, &j->hdr, r, 0, "unmapped page at 0x%" PRIx64, page);
        else if (r == -ERANGE)
                ack(e, &j->hdr, -EFAULT, 0, "non-canonical address 0x%" PRIx64, bad);
        else if (r == -ENXIO)
                ack(e, &j->hdr, -EINVAL, 0, "bad page tables (root 0x%" PRIx64 ") at 0x%" PRIx64, as.root,
                    bad);
        else
                ack(e, &j->hdr, r, 0, "planning the write failed: %s", strerror(-r));
        return r;
}

static void src_unmap(struct mce *e)
{
        if (e->src.base)
                munmap((void *)e->src.base, e->src.len);
        e->src.base = NULL;
}

/* The source's bytes mapped, when it is a memfd sealed against shrinking
 * (F_SEAL_SHRINK cannot be removed): bytes [0, size) then stay valid for as
 * long as the mapping exists, so copying from it can never fault. A
 * control's staging memfd is reused write after write, so it is mapped
 * once. NULL: read it with read-style calls instead. */
static const uint8_t *src_mapping(struct mce *e, const struct mw_job *j, const struct stat *st)
{
        const uint64_t need = j->src_off + j->len; /* checked against st_size */
        int seals;
        void *p;

        if (e->src.base && e->src.lease_gen != j->lease_gen)
                src_unmap(e); /* another holder: let go of the last one's memory */
        if (j->len < SRC_MAP_MIN_BYTES)
                return NULL;
        if (e->src.base && e->src.dev == st->st_dev && e->src.ino == st->st_ino && e->src.len >= need)
                return e->src.base;
        /* Another file, or this one grown: map it if it is sealed. An
         * unsealed one leaves the mapping be, for a control that alternates
         * between its staging memfd and files of its own. */
        seals = fcntl(j->src_fd, F_GET_SEALS);
        if (seals < 0 || !(seals & F_SEAL_SHRINK) || (uint64_t)st->st_size > SRC_MAP_MAX_BYTES)
                return NULL;
        src_unmap(e);
        /* populated now: faulting it in page by page, write by write, costs
         * several times more */
        p = mmap(NULL, (size_t)st->st_size, PROT_READ, MAP_SHARED | MAP_POPULATE, j->src_fd, 0);
        if (p == MAP_FAILED)
                return NULL;
        e->src.base = p;
        e->src.len = (size_t)st->st_size;
        e->src.dev = st->st_dev;
        e->src.ino = st->st_ino;
        e->src.lease_gen = j->lease_gen;
        return e->src.base;
}

/* The fd source, after the whole extent was planned and checked. The
 * source must hold every byte before anything is written (else -ENODATA,
 * nothing written). If it shrinks during the copy the ACK is -EIO and says
 * how many bytes were written: a prefix of the extent, never a success. */
static int write_from_fd(struct mce *e, const struct mw_job *j, const struct vmie_chunk *ch, size_t n)
{
        uint64_t pos = j->src_off;
        size_t total = 0;
        struct stat st;
        int r;

        if (!e->ops->write_fd) {
                ack(e, &j->hdr, -EOPNOTSUPP, 0, "this adapter cannot write from an fd");
                return -EOPNOTSUPP;
        }
        if (fstat(j->src_fd, &st) < 0) {
                r = -errno;
                ack(e, &j->hdr, r, 0, "source fd: %s", strerror(-r));
                return r;
        }
        if (j->src_off > UINT64_MAX - j->len || st.st_size < 0 ||
            (uint64_t)st.st_size < j->src_off + j->len) {
                ack(e, &j->hdr, -ENODATA, 0,
                    "source fd holds %lld bytes, the write needs bytes 0x%" PRIx64 "..0x%" PRIx64
                    "; nothing written",
                    (long long)st.st_size, j->src_off, j->src_off + j->len);
                return -ENODATA;
        }
        const uint8_t *map = src_mapping(e, j, &st);
        if (map) {
                for (size_t i = 0; i < n; pos += ch[i].len, total += ch[i].len, i++) {
                        r = e->ops->write(e->ud, map + pos, ch[i].len, ch[i].file_offset);
                        if (r < 0) {
                                ack(e, &j->hdr, r, 0, "writing guest RAM failed after %zu of %u bytes: %s",
                                    total, j->len, strerror(-r));
                                return r;
                        }
                }
                return 0;
        }
        for (size_t i = 0; i < n; i++) {
                size_t done = 0;
                r = e->ops->write_fd(e->ud, j->src_fd, pos, ch[i].len, ch[i].file_offset, &done);
                total += done;
                if (r == -ENODATA) {
                        ack(e, &j->hdr, -EIO, 0,
                            "the source fd shrank during the copy: %zu of %u bytes written", total, j->len);
                        return -EIO;
                }
                if (r < 0) {
                        ack(e, &j->hdr, r, 0, "writing guest RAM failed after %zu of %u bytes: %s", total,
                            j->len, strerror(-r));
                        return r;
                }
                pos += ch[i].len;
        }
        return 0;
}

static void run_job(struct mce *e, const struct mw_job *j)
{
        const bool phys = j->flags & VMSIG_MEMWRITE_PHYS;
        struct mce_target t = {0};
        char msg[VMSIG_MSG_MAX] = "";
        struct vmie_chunk *ch;
        size_t cap, n = 0;
        int r;

        r = e->ops->target(e->ud, &t, msg, sizeof(msg));
        if (r < 0) {
                ack(e, &j->hdr, r, 0, "%s", msg);
                return;
        }
        if (!phys && !j->hdr.cr3 && !t.root) {
                ack(e, &j->hdr, -EAGAIN, 0, "no kernel root yet");
                return;
        }
        if (j->addr + j->len < j->addr) {
                ack(e, &j->hdr, -EFAULT, 0, "extent 0x%" PRIx64 "+%u wraps", j->addr, j->len);
                return;
        }
        /* one chunk per 4 KiB page touched, plus splits at range ends */
        cap = j->len / PAGE_4K + 2 + vmie_ram_nranges(t.ram);
        ch = calloc(cap, sizeof(*ch));
        if (!ch) {
                ack(e, &j->hdr, -ENOMEM, 0, "out of memory");
                return;
        }
        r = phys ? plan_phys(e, j, t.ram, ch, cap, &n) : plan_virt(e, j, &t, ch, cap, &n);
        /* writing past a shrunk end would grow the file's owner's file */
        if (r < 0 || shrunk(e, j) < 0)
                goto out;
        if (j->src_fd >= 0) {
                if (write_from_fd(e, j, ch, n) == 0)
                        ack(e, &j->hdr, 0, j->len, "wrote %u bytes at %s0x%" PRIx64 " from the source fd",
                            j->len, phys ? "gpa " : "", j->addr);
                goto out;
        }
        const uint8_t *p = j->data;
        for (size_t i = 0; i < n; p += ch[i].len, i++) {
                r = e->ops->write(e->ud, p, ch[i].len, ch[i].file_offset);
                if (r < 0) {
                        ack(e, &j->hdr, r, 0, "writing guest RAM failed: %s", strerror(-r));
                        goto out;
                }
        }
        ack(e, &j->hdr, 0, j->len, "wrote %u bytes at %s0x%" PRIx64, j->len, phys ? "gpa " : "", j->addr);
out:
        free(ch);
}

/* ---- copying from a source fd ---- */

int mce_copy_fd_to_mem(int src_fd, uint64_t src_off, void *dst, size_t len, size_t *done)
{
        uint8_t *p = dst;

        *done = 0;
        while (*done < len) {
                ssize_t k = pread(src_fd, p + *done, len - *done, (off_t)(src_off + *done));
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                if (k == 0)
                        return -ENODATA;
                *done += (size_t)k;
        }
        return 0;
}

static void pipe_drop(struct mce *e)
{
        if (e->pipe_rd < 0)
                return;
        close(e->pipe_rd);
        close(e->pipe_wr);
        e->pipe_rd = e->pipe_wr = -1;
}

/* Where the target cannot splice: through a small buffer. */
static int copy_bounce(int src_fd, uint64_t src_off, int dst_fd, uint64_t dst_off, size_t len, size_t *done)
{
        uint8_t buf[16384];

        while (*done < len) {
                size_t want = len - *done < sizeof(buf) ? len - *done : sizeof(buf), got = 0;
                int r = mce_copy_fd_to_mem(src_fd, src_off + *done, buf, want, &got);
                if (r < 0 && r != -ENODATA)
                        return r;
                for (size_t w = 0; w < got;) {
                        ssize_t k = pwrite(dst_fd, buf + w, got - w, (off_t)(dst_off + *done));
                        if (k < 0 && errno == EINTR)
                                continue;
                        if (k <= 0)
                                return k < 0 ? -errno : -EIO;
                        w += (size_t)k;
                        *done += (size_t)k;
                }
                if (r == -ENODATA)
                        return r;
        }
        return 0;
}

int mce_copy_fd(struct mce *e, int src_fd, uint64_t src_off, int dst_fd, uint64_t dst_off, size_t len,
                size_t *done)
{
        loff_t in = (loff_t)src_off, out = (loff_t)dst_off;
        int r;

        *done = 0;
        if (e->pipe_rd < 0) {
                int p[2];
                if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
                        return copy_bounce(src_fd, src_off, dst_fd, dst_off, len, done);
                e->pipe_rd = p[0];
                e->pipe_wr = p[1];
                (void)fcntl(p[1], F_SETPIPE_SZ, 1 << 20); /* fewer rounds; the default will do */
                int cap = fcntl(p[1], F_GETPIPE_SZ);
                e->pipe_cap = cap > 0 ? (size_t)cap : 65536;
        }
        while (*done < len) {
                size_t want = len - *done < e->pipe_cap ? len - *done : e->pipe_cap;
                /* The pipe is empty here: nothing can block. */
                ssize_t k = splice(src_fd, &in, e->pipe_wr, NULL, want, SPLICE_F_NONBLOCK);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0) {
                        r = -errno;
                        if (r == -EINVAL && *done == 0)
                                return copy_bounce(src_fd, src_off, dst_fd, dst_off, len, done);
                        goto fail;
                }
                if (k == 0)
                        return -ENODATA;
                for (size_t left = (size_t)k; left;) {
                        ssize_t w = splice(e->pipe_rd, NULL, dst_fd, &out, left, SPLICE_F_NONBLOCK);
                        if (w < 0 && errno == EINTR)
                                continue;
                        if (w <= 0) {
                                r = w < 0 ? -errno : -EIO;
                                if (r == -EINVAL && *done == 0) {
                                        pipe_drop(e); /* drop what it holds */
                                        return copy_bounce(src_fd, src_off, dst_fd, dst_off, len, done);
                                }
                                goto fail;
                        }
                        left -= (size_t)w;
                        *done += (size_t)w;
                }
        }
        return 0;
fail:
        pipe_drop(e); /* whatever it still holds must not reach the next write */
        return r;
}

/* ---- the worker ---- */

/* A queued write runs only under the lease it was accepted under. */
static bool lease_ended(const struct mce *e, const struct mw_job *j)
{
        return e->sink && e->sink->lease_generation &&
               e->sink->lease_generation(e->sink, VMSIG_LEASE_MEMWRITE) != j->lease_gen;
}

/* Lock held, nothing to do: wait up to the idle time, then drop the
 * mapped source unless work came meanwhile. */
static void idle_unmap(struct mce *e)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += (time_t)(SRC_MAP_IDLE_NS / 1000000000ull);
        while (!e->stop && !e->boot_pending && !e->head)
                if (pthread_cond_timedwait(&e->cond, &e->lock, &ts) == ETIMEDOUT) {
                        if (!e->stop && !e->boot_pending && !e->head)
                                src_unmap(e); /* munmap of a few MiB: short, under the lock */
                        return;
                }
}

static void *worker_main(void *arg)
{
        struct mce *e = arg;

        pthread_mutex_lock(&e->lock);
        for (;;) {
                e->busy = false;
                if (e->src.base && !e->stop && !e->boot_pending && !e->head)
                        idle_unmap(e);
                while (!e->stop && !e->boot_pending && !e->head)
                        pthread_cond_wait(&e->cond, &e->lock);
                if (e->stop || e->gone)
                        break; /* detached: start nothing more, mce_stop answers the rest */
                e->busy = true;
                if (e->ops->sync) {
                        pthread_mutex_unlock(&e->lock);
                        e->ops->sync(e->ud);
                        pthread_mutex_lock(&e->lock);
                }
                if (e->boot_pending) {
                        e->boot_pending = false;
                        if (e->ops->boot_take)
                                e->ops->boot_take(e->ud);
                        pthread_mutex_unlock(&e->lock);
                        e->ops->boot(e->ud);
                        pthread_mutex_lock(&e->lock);
                        continue;
                }
                if (!e->head)
                        continue; /* the loop withdrew the bootstrap meanwhile */
                struct mw_job *j = e->head;
                e->head = j->next;
                if (!e->head)
                        e->tail = NULL;
                e->njobs--;
                pthread_mutex_unlock(&e->lock);
                if (lease_ended(e, j))
                        ack(e, &j->hdr, -ECANCELED, 0,
                            "not applied: the sender's memwrite lease ended before the write ran");
                else
                        run_job(e, j);
                job_free(j);
                pthread_mutex_lock(&e->lock);
        }
        pthread_mutex_unlock(&e->lock);
        return NULL;
}

/* ---- API ---- */

int mce_new(const struct mce_ops *ops, void *ud, struct mce **ret)
{
        struct mce *e = calloc(1, sizeof(*e));

        if (!e)
                return -ENOMEM;
        e->ops = ops;
        e->ud = ud;
        e->pipe_rd = e->pipe_wr = -1;
        pthread_condattr_t ca;

        pthread_mutex_init(&e->lock, NULL);
        /* idle_unmap's deadline must not move with the wall clock */
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&e->cond, &ca);
        pthread_condattr_destroy(&ca);
        e->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (e->evfd < 0) {
                int r = -errno;
                mce_free(e);
                return r;
        }
        *ret = e;
        return 0;
}

int mce_start(struct mce *e, const struct vmsig_emit_sink *sink)
{
        int r;

        if (e->worker_started)
                return -EALREADY;
        e->sink = sink;
        r = -pthread_create(&e->worker, NULL, worker_main, e);
        if (r < 0)
                return r;
        e->worker_started = true;
        return 0;
}

int mce_evfd(const struct mce *e)
{
        return e->evfd;
}

void mce_notify(struct mce *e)
{
        (void)eventfd_write(e->evfd, 1); /* cannot overflow in practice */
}

void mce_lock(struct mce *e)
{
        pthread_mutex_lock(&e->lock);
}

void mce_unlock(struct mce *e)
{
        pthread_mutex_unlock(&e->lock);
}

void mce_set_boot_locked(struct mce *e, bool on)
{
        e->boot_pending = on;
        if (on)
                pthread_cond_signal(&e->cond);
}

int mce_submit(struct mce *e, const struct vmsig_event *ev, const void *payload, size_t payload_len)
{
        struct mw_job *j;
        int err;

        if (ev->hdr.kind != VMSIG_EV_CMD_MEMWRITE)
                return VMSIG_SUBMIT_NOT_MINE;
        j = job_new(ev, payload, payload_len, &err);
        if (!j)
                return err;

        pthread_mutex_lock(&e->lock);
        if (!e->worker_started || e->njobs >= MCE_JOBS_MAX) {
                bool started = e->worker_started;
                pthread_mutex_unlock(&e->lock);
                job_free(j);
                return started ? -EBUSY : -ENOTCONN;
        }
        /* Small writes run here while the worker idles, its view current. */
        if (!e->busy && !e->head && !e->boot_pending && (!e->ops->current || e->ops->current(e->ud)) &&
            j->len <= MCE_INLINE_BYTES) {
                run_job(e, j);
                pthread_mutex_unlock(&e->lock);
                job_free(j);
                return VMSIG_SUBMIT_ACCEPTED;
        }
        if (e->sink && e->sink->lease_generation)
                j->lease_gen = e->sink->lease_generation(e->sink, VMSIG_LEASE_MEMWRITE);
        if (e->tail)
                e->tail->next = j;
        else
                e->head = j;
        e->tail = j;
        e->njobs++;
        pthread_cond_signal(&e->cond);
        pthread_mutex_unlock(&e->lock);
        return VMSIG_SUBMIT_ACCEPTED;
}

void mce_stop(struct mce *e)
{
        if (!e)
                return;
        if (e->worker_started) {
                pthread_mutex_lock(&e->lock);
                e->stop = true;
                pthread_cond_broadcast(&e->cond);
                pthread_mutex_unlock(&e->lock);
                pthread_join(e->worker, NULL);
                e->worker_started = false;
        }
        /* The ACK the worker could not deliver, then "not applied" for
         * every write it never started (we are closing: the ACKs pass). */
        if (e->sink && e->has_late)
                (void)e->sink->emit(e->sink, &e->late);
        e->has_late = false;
        while (e->head) {
                struct mw_job *j = e->head;
                e->head = j->next;
                if (e->sink)
                        ack(e, &j->hdr, -ECANCELED, 0,
                            "not applied: the VM's memctx adapter was detached first");
                job_free(j);
        }
        e->tail = NULL;
        e->njobs = 0;
}

void mce_free(struct mce *e)
{
        if (!e)
                return;
        mce_stop(e);
        if (e->evfd >= 0)
                close(e->evfd);
        if (e->pipe_rd >= 0) {
                close(e->pipe_rd);
                close(e->pipe_wr);
        }
        src_unmap(e);
        pthread_cond_destroy(&e->cond);
        pthread_mutex_destroy(&e->lock);
        free(e);
}
