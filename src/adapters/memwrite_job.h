/* SPDX-License-Identifier: MIT */
#ifndef VMSIG_ADAPTERS_MEMWRITE_JOB_H
#define VMSIG_ADAPTERS_MEMWRITE_JOB_H

/* A CMD_MEMWRITE queued for a memctx adapter's worker (the real adapter and
 * its stub twin): the command header for the ACK, and its own copy of the
 * source bytes, since the payload only lives during submit(). */

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <stdbool.h>

#include <vmsig/adapter.h>
#include <vmsig/event.h>

/* Writes up to this size run inline in submit() when the worker is idle and
 * nothing is queued (the adapter's lock held, so the worker stays out and
 * order is kept): a page walk and one pwrite into a memory-backed file cost
 * microseconds, a trip through the worker two cross-thread wakeups. */
#define MEMWRITE_INLINE_BYTES 4096u

struct mw_job {
        struct mw_job *next;
        struct vmsig_event_hdr hdr; /* the command, for its ACK */
        uint64_t addr;
        uint32_t len;
        uint32_t flags;
        uint8_t data[]; /* copied at submit */
};

/* Decode and copy. NULL with *ret_err = -EINVAL (malformed) or -ENOMEM. */
static inline struct mw_job *mw_job_new(const struct vmsig_event *ev, const void *payload, size_t payload_len,
                                        int *ret_err)
{
        struct vmsig_memwrite_req req;
        struct mw_job *j;

        if (vmsig_memwrite_decode(ev, payload, payload_len, &req) < 0) {
                *ret_err = -EINVAL;
                return NULL;
        }
        j = malloc(sizeof(*j) + req.len);
        if (!j) {
                *ret_err = -ENOMEM;
                return NULL;
        }
        j->next = NULL;
        j->hdr = ev->hdr;
        j->addr = req.addr;
        j->len = req.len;
        j->flags = req.flags;
        memcpy(j->data, req.src, req.len);
        return j;
}

/* An ACK the worker could not emit because the adapter was detached
 * meanwhile (-ESHUTDOWN). The worker keeps it and starts nothing more;
 * close() emits it after joining the worker (the core lets a closing
 * adapter's ACT_ACKs through on the loop thread), so a write that did
 * happen is reported as done, not as lost. Worker-owned until the join. */
struct mw_late {
        bool gone;
        bool has;
        struct vmsig_event ev;
};

static inline void late_or_emit(const struct vmsig_emit_sink *sink, const struct vmsig_event *ev,
                                struct mw_late *late)
{
        if (sink->emit(sink, ev) != -ESHUTDOWN)
                return;
        late->gone = true;
        if (!late->has) {
                late->ev = *ev;
                late->has = true;
        }
}

static inline void mw_late_flush(const struct vmsig_emit_sink *sink, struct mw_late *late)
{
        if (sink && late->has)
                (void)sink->emit(sink, &late->ev);
        late->has = false;
}

#endif
