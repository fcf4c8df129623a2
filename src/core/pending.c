/* SPDX-License-Identifier: MIT */
/* The ledger of accepted commands: docs/protocol.md 8.2 promises exactly one
 * ACT_ACK per accepted command, whatever happens to the VM.
 *
 * Every non-FF command an adapter accepts gets an entry (peer, corr, kind) in
 * its attachment's set; dispatching that adapter's ACT_ACK removes it. From
 * the detach on, the set waits in bus->pend_draining, since ACKs emitted
 * before the detach are still being dispatched. After close(), it drains: close() may still answer
 * (-ECANCELED: not applied) and ACKs its workers emitted earlier may still
 * be queued. So after close() the hand-off is moved into the queue and a
 * sweep marker is queued behind every ACK of that adapter (same priority,
 * later seq). When the marker is dispatched, whatever is left has no answer
 * coming and the core answers it: -ECONNABORTED, "outcome unknown".
 *
 * Entries live in a per-set ring in submission order; ACKs mostly arrive in
 * that order, so a removal finds its entry near the head. Removed entries
 * are tombstones until the head passes them, and a full ring is compacted
 * before it grows. The ring grows by doubling to PEND_MAX and is then
 * reused: the steady state allocates nothing. Loop thread only. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/bus_internal.h"

#define PEND_MIN 16u
#define PEND_MAX 8192u /* per attachment; beyond that the core refuses */

struct pend_entry {
        uint64_t corr;
        uint32_t peer;
        uint16_t kind;
        bool live;
};

struct pend_set {
        struct pend_set *next; /* bus->pend_draining, oldest first */
        uint32_t endpoint;
        uint8_t seam;
        uint64_t id; /* the sweep marker's, once draining */
        char vm[VMSIG_NAME_MAX];
        char adapter[32];
        struct pend_entry *ring;
        unsigned cap, head, count, live; /* count includes tombstones */
};

static struct pend_entry *at(struct pend_set *s, unsigned i)
{
        return &s->ring[(s->head + i) % s->cap];
}

static void set_free(struct pend_set *s)
{
        if (s) {
                free(s->ring);
                free(s);
        }
}

/* Squeeze out tombstones, keeping order; the ring restarts at 0. */
static int set_reshape(struct pend_set *s, unsigned new_cap)
{
        struct pend_entry *n = malloc((size_t)new_cap * sizeof(*n));
        unsigned k = 0;

        if (!n)
                return -ENOMEM;
        for (unsigned i = 0; i < s->count; i++)
                if (at(s, i)->live)
                        n[k++] = *at(s, i);
        free(s->ring);
        s->ring = n;
        s->cap = new_cap;
        s->head = 0;
        s->count = k;
        return 0;
}

int pending_add(struct attachment *att, const struct vmsig_event *cmd)
{
        struct pend_set *s = att->pend;

        if (!s) {
                s = calloc(1, sizeof(*s));
                if (!s)
                        return -ENOMEM;
                s->endpoint = att->endpoint_id;
                s->seam = att->seam;
                snprintf(s->vm, sizeof(s->vm), "%s", att->ep ? att->ep->name : "?");
                snprintf(s->adapter, sizeof(s->adapter), "%s", att->ops->name ? att->ops->name : "?");
                att->pend = s;
        }
        if (s->count == s->cap) {
                int r;
                /* Reclaim tombstones when they are many (or growth is over),
                 * else grow: either way a compaction is paid for by many adds. */
                if (s->cap &&
                    (s->count - s->live >= s->cap / 4 || (s->cap == PEND_MAX && s->live < s->count)))
                        r = set_reshape(s, s->cap);
                else if (s->cap < PEND_MAX)
                        r = set_reshape(s, s->cap ? s->cap * 2 : PEND_MIN);
                else
                        r = -ENOBUFS;
                if (r < 0)
                        return r;
        }
        s->count++;
        *at(s, s->count - 1) = (struct pend_entry){
            .corr = cmd->hdr.corr, .peer = cmd->hdr.peer, .kind = cmd->hdr.kind, .live = true};
        s->live++;
        return 0;
}

unsigned pending_max(void)
{
        return PEND_MAX;
}

void pending_drop_last(struct attachment *att)
{
        struct pend_set *s = att->pend;

        if (!s || !s->count)
                return;
        if (at(s, s->count - 1)->live)
                s->live--;
        s->count--;
}

static bool set_remove(struct pend_set *s, uint32_t peer, uint64_t corr, uint16_t kind)
{
        for (unsigned i = 0; i < s->count; i++) {
                struct pend_entry *e = at(s, i);
                if (!e->live || e->peer != peer || e->corr != corr || e->kind != kind)
                        continue;
                e->live = false;
                s->live--;
                while (s->count && !at(s, 0)->live) {
                        s->head = (s->head + 1) % s->cap;
                        s->count--;
                }
                return true;
        }
        return false;
}

void pending_on_ack(struct vmsig_bus *bus, const struct vmsig_event *ack)
{
        struct vmsig_ack_body a;
        uint32_t id = ack->hdr.endpoint;
        uint8_t seam = ack->hdr.source;

        /* The core's own ACKs answer commands no adapter ever took. */
        if (seam <= VMSIG_SRC_CORE || seam >= VMSIG_SRC_MAX_ || ack->hdr.body_len < sizeof(a))
                return;
        memcpy(&a, ack->body, sizeof(a));
        /* Oldest first: a detached adapter's late ACK belongs to its own set. */
        for (struct pend_set *s = bus->pend_draining; s; s = s->next)
                if (s->endpoint == id && s->seam == seam &&
                    set_remove(s, ack->hdr.peer, ack->hdr.corr, a.cmd_kind))
                        return;
        if (id == 0 || id > bus->lim.max_endpoints || !bus->eps[id - 1])
                return;
        struct attachment *att = bus->eps[id - 1]->att[seam - 1];
        if (att && att->pend)
                (void)set_remove(att->pend, ack->hdr.peer, ack->hdr.corr, a.cmd_kind);
}

static void unlink_set(struct vmsig_bus *bus, struct pend_set *s)
{
        for (struct pend_set **pp = &bus->pend_draining; *pp; pp = &(*pp)->next)
                if (*pp == s) {
                        *pp = s->next;
                        return;
                }
}

void pending_detached(struct attachment *att)
{
        struct vmsig_bus *bus = att->bus;
        struct pend_set *s = att->pend, **pp;

        /* From now on its ACKs are matched here: ep->att[] no longer has it. */
        if (!s || bus->pend_final)
                return;
        for (pp = &bus->pend_draining; *pp; pp = &(*pp)->next)
                ;
        s->next = NULL;
        *pp = s;
}

void pending_closed(struct attachment *att)
{
        struct vmsig_bus *bus = att->bus;
        struct pend_set *s = att->pend;
        struct vmsig_event marker;

        att->pend = NULL;
        if (!s)
                return;
        if (!s->live || bus->pend_final) {
                unlink_set(bus, s);
                set_free(s); /* nothing owed, or nobody left to tell */
                return;
        }
        /* ACKs its workers emitted before the detach may still sit in the
         * hand-off: queue them now, so they all precede the marker. */
        bus_handoff_drain(bus);

        s->id = ++bus->pend_next_id;
        vmsig_event_init(&marker, PENDING_EV_SWEEP, s->endpoint, VMSIG_SRC_CORE);
        marker.hdr.priority = VMSIG_PRIO_URGENT; /* an adapter's ACKs never travel later than this */
        marker.hdr.corr = s->id;
        /* Out of queue nodes: answer now rather than never. */
        if (bus_enqueue(bus, &marker, -1, NULL, 0) < 0)
                pending_sweep(bus, &marker);
}

void pending_sweep(struct vmsig_bus *bus, const struct vmsig_event *marker)
{
        struct pend_set *s, **pp;

        for (pp = &bus->pend_draining; (s = *pp); pp = &s->next)
                if (s->id && s->id == marker->hdr.corr)
                        break;
        if (!s)
                return;
        *pp = s->next;
        for (unsigned i = 0; i < s->count; i++) {
                struct pend_entry *e = at(s, i);
                struct vmsig_event cmd, ack;

                if (!e->live)
                        continue;
                memset(&cmd.hdr, 0, sizeof(cmd.hdr));
                cmd.hdr.kind = e->kind;
                cmd.hdr.endpoint = s->endpoint;
                cmd.hdr.peer = e->peer;
                cmd.hdr.corr = e->corr;
                vmsig_ack_init(&ack, &cmd, VMSIG_SRC_CORE, -ECONNABORTED, 0,
                               "%s on '%s': outcome unknown: the %s adapter (%s) left without answering",
                               vmsig_kind_name(e->kind), s->vm, vmsig_source_name(s->seam), s->adapter);
                bus_enqueue(bus, &ack, -1, NULL, 0);
        }
        set_free(s);
}

void pending_free_all(struct vmsig_bus *bus)
{
        bus->pend_final = true;
        /* Sets whose adapter is closed already (id set) go now; the others
         * go with pending_closed() when their adapter is reaped. */
        for (struct pend_set **pp = &bus->pend_draining, *s; (s = *pp);) {
                if (s->id) {
                        *pp = s->next;
                        set_free(s);
                } else {
                        pp = &s->next;
                }
        }
}
