/* SPDX-License-Identifier: MIT */
#ifndef VMSIG_ADAPTERS_MEMCTX_ENGINE_H
#define VMSIG_ADAPTERS_MEMCTX_ENGINE_H

/* The memctx engine: what the real memctx adapter and its stub share. A job
 * queue of CMD_MEMWRITEs, one worker thread, the inline path for small
 * writes, write planning through libvmie, and the ACK rules: every MEMWRITE
 * is answered exactly once, and close() answers what the worker never
 * started (-ECANCELED) and re-sends the ACK a detach refused.
 *
 * An adapter supplies its RAM source (a vmie_ram to translate through, and
 * a way to write bytes at a file offset), its root source, and its
 * bootstrap, which runs on the engine's worker between writes.
 *
 * Threads: the loop thread calls mce_submit, mce_set_boot_locked (under
 * mce_lock) and the lifecycle calls. The worker calls the ops; target,
 * shrunk and write also run inline in mce_submit (loop thread) with the
 * engine lock held while the worker idles and nothing is queued, so they
 * see the worker's state quiescent. The engine lock is the adapter's lock
 * for whatever it shares between loop and worker. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <vmie/vmie.h>
#include <vmsig/adapter.h>
#include <vmsig/event.h>

/* Writes up to this size run inline in submit() when the worker is idle and
 * nothing is queued (the engine's lock held, so the worker stays out and
 * order is kept): a page walk and one write into a memory-backed file cost
 * microseconds, a trip through the worker two cross-thread wakeups. */
#define MCE_INLINE_BYTES 4096u
#define MCE_JOBS_MAX     32u /* queued MEMWRITEs; beyond that submit says -EBUSY */

struct mce;

/* What a write translates through. */
struct mce_target {
        const struct vmie_ram *ram;
        uint64_t root;   /* the kernel root for cr3 0; 0 = none yet */
        unsigned levels; /* paging levels, 4 or 5 */
};

struct mce_ops {
        /* Worker, before every task, lock not held: catch up with what the
         * loop invalidated. Optional. */
        void (*sync)(void *ud);
        /* Worker, lock held: a bootstrap was requested; take (copy) its
         * parameters, in the same critical section that clears the request.
         * Optional. */
        void (*boot_take)(void *ud);
        /* Worker, lock not held: one bootstrap attempt. The adapter hands
         * its result to the loop itself (under mce_lock, then mce_notify). */
        void (*boot)(void *ud);
        /* The RAM and root a write uses now. 0, or a negative errno and msg:
         * the write's ACK. */
        int (*target)(void *ud, struct mce_target *t, char *msg, size_t len);
        /* The RAM file is shorter than the layout (its owner shrank it):
         * -EIO and msg, else 0. Checked after a failed plan and right before
         * writing, so nothing is written past a shrunk end. Optional. */
        int (*shrunk)(void *ud, char *msg, size_t len);
        /* Write len bytes at file offset off of the guest RAM. 0 or -errno. */
        int (*write)(void *ud, const void *buf, size_t len, uint64_t off);
        /* The same from bytes [src_off, src_off + len) of src_fd (a regular
         * tmpfs file a control passed, not sealed against shrinking: read
         * it, never map it; the engine maps a sealed one itself and calls
         * write). 0, -ENODATA if the source ended first, or -errno; *done:
         * bytes written. */
        int (*write_fd)(void *ud, int src_fd, uint64_t src_off, size_t len, uint64_t off, size_t *done);
        /* Lock held, worker idle: is the worker's view current, so a small
         * write may run inline? Optional (always). */
        bool (*current)(void *ud);
};

/* ud is passed to every op. Creates the worker -> loop eventfd. */
int mce_new(const struct mce_ops *ops, void *ud, struct mce **ret);
/* Starts the worker; ACKs go to sink. -EALREADY if started. */
int mce_start(struct mce *e, const struct vmsig_emit_sink *sink);
/* The eventfd mce_notify writes (register it as VMSIG_RDY_EVENTFD). */
int mce_evfd(const struct mce *e);
/* Worker: wake the loop (the adapter published a bootstrap result). */
void mce_notify(struct mce *e);

void mce_lock(struct mce *e);
void mce_unlock(struct mce *e);
/* Lock held: request (on) or withdraw (off) a bootstrap attempt. */
void mce_set_boot_locked(struct mce *e, bool on);

/* The adapter's submit() for CMD_MEMWRITE: VMSIG_SUBMIT_NOT_MINE for other
 * kinds; -EINVAL malformed, -ENOMEM, -EBUSY queue full, -ENOTCONN not
 * started; VMSIG_SUBMIT_ACCEPTED (the ACK follows, unless FF and success). */
int mce_submit(struct mce *e, const struct vmsig_event *ev, const void *payload, size_t payload_len);

/* Copy helpers for write_fd, on the worker (or inline, lock held). Both
 * read the source with read-style calls only, so a source that shrinks
 * meanwhile gives -ENODATA (a short copy), never SIGBUS. *done: bytes
 * copied. mce_copy_fd splices through a pipe the engine keeps (one copy in
 * the kernel), falling back to pread/pwrite where the target cannot splice. */
int mce_copy_fd(struct mce *e, int src_fd, uint64_t src_off, int dst_fd, uint64_t dst_off, size_t len,
                size_t *done);
int mce_copy_fd_to_mem(int src_fd, uint64_t src_off, void *dst, size_t len, size_t *done);

/* Stops and joins the worker, then sends the ACK a detach refused and
 * answers every write never started with -ECANCELED. Idempotent. */
void mce_stop(struct mce *e);
/* After mce_stop. NULL-safe. */
void mce_free(struct mce *e);

#endif
