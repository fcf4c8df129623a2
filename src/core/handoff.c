/* SPDX-License-Identifier: MIT */
/* Worker -> loop hand-off. Producers append to one buffer under a mutex; the
 * loop swaps buffers and processes the full one without holding the lock.
 * The eventfd is written only on the empty -> non-empty transition, so a
 * burst costs one wakeup. A full buffer blocks producers (backpressure,
 * never loss) until the loop takes it. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/bus_internal.h"
#include "util/clock.h"

int handoff_init(struct handoff *h, unsigned cap)
{
        memset(h, 0, sizeof(*h));
        h->efd = -1;
        h->cap = cap ? cap : 4096;
        h->buf[0] = malloc((size_t)h->cap * sizeof(struct vmsig_event));
        h->buf[1] = malloc((size_t)h->cap * sizeof(struct vmsig_event));
        if (!h->buf[0] || !h->buf[1])
                goto nomem;
        h->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (h->efd < 0) {
                int r = -errno;
                free(h->buf[0]);
                free(h->buf[1]);
                return r;
        }
        pthread_mutex_init(&h->mu, NULL);
        pthread_cond_init(&h->not_full, NULL);
        return 0;
nomem:
        free(h->buf[0]);
        free(h->buf[1]);
        return -ENOMEM;
}

void handoff_done(struct handoff *h)
{
        if (h->efd >= 0) {
                close(h->efd);
                pthread_mutex_destroy(&h->mu);
                pthread_cond_destroy(&h->not_full);
        }
        free(h->buf[0]);
        free(h->buf[1]);
        memset(h, 0, sizeof(*h));
        h->efd = -1;
}

int handoff_push(struct handoff *h, const struct vmsig_event *ev, uint32_t endpoint, uint8_t source,
                 const atomic_bool *cancel)
{
        bool was_empty;
        struct vmsig_event *slot;

        pthread_mutex_lock(&h->mu);
        while (h->count == h->cap) {
                if (cancel && atomic_load(cancel)) {
                        pthread_mutex_unlock(&h->mu);
                        return -ESHUTDOWN;
                }
                pthread_cond_wait(&h->not_full, &h->mu);
        }
        if (cancel && atomic_load(cancel)) {
                pthread_mutex_unlock(&h->mu);
                return -ESHUTDOWN;
        }
        slot = &h->buf[h->cur][h->count];
        memcpy(slot, ev, vmsig_event_size(ev));
        slot->hdr.endpoint = endpoint;
        slot->hdr.source = source;
        if (!slot->hdr.ts_ns)
                slot->hdr.ts_ns = vmsig_now_ns();
        was_empty = h->count++ == 0;
        pthread_mutex_unlock(&h->mu);

        if (was_empty) {
                uint64_t one = 1;
                /* EAGAIN only when the counter is saturated: already signalled. */
                (void)!write(h->efd, &one, sizeof(one));
        }
        return 0;
}

unsigned handoff_take(struct handoff *h, const struct vmsig_event **ret_batch)
{
        unsigned n;
        uint64_t v;

        (void)!read(h->efd, &v, sizeof(v));
        pthread_mutex_lock(&h->mu);
        n = h->count;
        *ret_batch = h->buf[h->cur];
        h->cur ^= 1;
        h->count = 0;
        if (n == h->cap)
                pthread_cond_broadcast(&h->not_full);
        pthread_mutex_unlock(&h->mu);
        return n;
}

void handoff_wake(struct handoff *h)
{
        pthread_mutex_lock(&h->mu);
        pthread_cond_broadcast(&h->not_full);
        pthread_mutex_unlock(&h->mu);
}
