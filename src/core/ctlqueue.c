/* SPDX-License-Identifier: MIT */
/* Per-control bounded FIFO. Memory grows by doubling up to the byte bound
 * and is then reused; the bound counts whole slots, which is what it costs. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/bus_internal.h"

void ctlq_init(struct ctlq *q, size_t max_bytes, unsigned max_fds)
{
        memset(q, 0, sizeof(*q));
        q->max = (unsigned)(max_bytes / sizeof(struct cq_entry));
        if (q->max < 4)
                q->max = 4;
        q->max_fds = max_fds;
}

void ctlq_done(struct ctlq *q)
{
        while (q->count)
                ctlq_pop(q);
        free(q->ring);
        q->ring = NULL;
        q->cap = 0;
}

static int grow(struct ctlq *q)
{
        unsigned ncap = q->cap ? q->cap * 2 : 16;
        struct cq_entry *r;

        if (ncap > q->max)
                ncap = q->max;
        r = malloc((size_t)ncap * sizeof(*r));
        if (!r)
                return -ENOMEM;
        /* unwrap into the new ring */
        for (unsigned i = 0; i < q->count; i++) {
                struct cq_entry *src = &q->ring[(q->head + i) % q->cap];
                r[i].fd = src->fd;
                r[i].fd_counted = src->fd_counted;
                memcpy(&r[i].ev, &src->ev, vmsig_event_size(&src->ev));
        }
        free(q->ring);
        q->ring = r;
        q->cap = ncap;
        q->head = 0;
        return 0;
}

int ctlq_push(struct ctlq *q, const struct vmsig_event *ev, int fd)
{
        struct cq_entry *e;

        if (q->count == q->max || (fd >= 0 && q->fds >= q->max_fds))
                return -ENOBUFS;
        if (q->count == q->cap && grow(q) < 0)
                return -ENOBUFS;
        e = &q->ring[(q->head + q->count) % q->cap];
        e->fd = fd;
        e->fd_counted = fd >= 0;
        memcpy(&e->ev, ev, vmsig_event_size(ev));
        q->count++;
        if (fd >= 0)
                q->fds++;
        return 0;
}

struct cq_entry *ctlq_front(struct ctlq *q)
{
        return q->count ? &q->ring[q->head] : NULL;
}

void ctlq_pop(struct ctlq *q)
{
        struct cq_entry *e = &q->ring[q->head];

        if (e->fd >= 0)
                close(e->fd);
        if (e->fd_counted)
                q->fds--;
        e->fd = -1;
        e->fd_counted = false;
        q->head = (q->head + 1) % q->cap;
        q->count--;
}
