/* SPDX-License-Identifier: MIT */
/* Controls: subscriptions, retained replay, delivery with a bounded queue.
 * An event goes straight to the callback when nothing is queued ahead of it;
 * otherwise it queues, so FIFO holds. A full queue drops droppable events
 * (counted) and disconnects the control for anything else: never silent
 * loss of a must-deliver event, never an unbounded buffer. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/bus_internal.h"
#include "core/kinds.h"
#include "util/clock.h"

struct vmsig_control *control_get(struct vmsig_bus *bus, uint32_t id)
{
        for (struct vmsig_control *c = bus->ctl_head; c; c = c->next)
                if (c->id == id)
                        return c->dead ? NULL : c;
        return NULL;
}

int vmsig_control_new(struct vmsig_bus *bus, const struct vmsig_control_info *info, vmsig_deliver_fn deliver,
                      vmsig_closed_fn closed, void *userdata, struct vmsig_control **ret)
{
        struct vmsig_control *c;

        if (!bus || !info || !deliver || !ret)
                return -EINVAL;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->bus = bus;
        c->id = ++bus->next_ctl_id;
        if (c->id == 0) /* 0 means "nobody" on the wire */
                c->id = ++bus->next_ctl_id;
        snprintf(c->name, sizeof(c->name), "%s", info->name ? info->name : "");
        c->uid = info->uid;
        c->pid = info->pid;
        c->caps = info->caps & VMSIG_CAP_ALL;
        c->deliver = deliver;
        c->closed = closed;
        c->userdata = userdata;
        ctlq_init(&c->q, bus->lim.queue_bytes, bus->lim.queue_fds);
        c->prev = bus->ctl_tail;
        if (bus->ctl_tail)
                bus->ctl_tail->next = c;
        else
                bus->ctl_head = c;
        bus->ctl_tail = c;
        bus->nctl++;
        *ret = c;
        return 0;
}

uint32_t vmsig_control_id(const struct vmsig_control *ctl)
{
        return ctl ? ctl->id : 0;
}

uint32_t vmsig_control_caps(const struct vmsig_control *ctl)
{
        return ctl ? ctl->caps : 0;
}

/* Take the control out of service now; memory goes after the batch. */
static void control_kill(struct vmsig_control *ctl, uint8_t lease_reason)
{
        struct vmsig_bus *bus = ctl->bus;

        ctl->dead = true;
        lease_revoke_all_of(bus, ctl->id, lease_reason);
        ctlq_done(&ctl->q);
        ctl->nsubs = 0;
        bus->nctl--;
        ctl->next_dead = bus->dead_ctls;
        bus->dead_ctls = ctl;
}

void control_free(struct vmsig_control *ctl)
{
        struct vmsig_bus *bus = ctl->bus;

        if (ctl->prev)
                ctl->prev->next = ctl->next;
        else
                bus->ctl_head = ctl->next;
        if (ctl->next)
                ctl->next->prev = ctl->prev;
        else
                bus->ctl_tail = ctl->prev;
        free(ctl);
}

struct vmsig_control *vmsig_control_close(struct vmsig_control *ctl)
{
        if (!ctl || ctl->dead)
                return NULL;
        control_kill(ctl, VMSIG_LEASE_R_DISCONNECTED);
        bus_reap_if_idle(ctl->bus);
        return NULL;
}

void control_disconnect(struct vmsig_control *ctl, int reason, const char *msg)
{
        if (ctl->dead)
                return;
        control_kill(ctl, reason == -ESHUTDOWN ? VMSIG_LEASE_R_SHUTDOWN : VMSIG_LEASE_R_DISCONNECTED);
        if (ctl->closed)
                ctl->closed(ctl, reason, msg, ctl->userdata);
}

/* Capability an UP kind needs (0: addressed-only kinds, and no UP kind). */
static uint32_t cap_for_up_kind(uint16_t kind)
{
        const struct kind_info *k = kind_info(kind);

        return k && k->dir == KIND_UP ? k->cap : 0;
}

bool control_wants(const struct vmsig_control *ctl, const struct vmsig_event *ev)
{
        uint32_t need = cap_for_up_kind(ev->hdr.kind);

        if (ctl->dead || !need || !(ctl->caps & need))
                return false;
        for (unsigned i = 0; i < ctl->nsubs; i++) {
                const struct sub *s = &ctl->subs[i];
                if ((s->endpoint == 0 || s->endpoint == ev->hdr.endpoint) &&
                    (s->kinds & VMSIG_KIND_BIT(ev->hdr.kind)))
                        return true;
        }
        return false;
}

static int dup_fd(int fd)
{
        return fd >= 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 3) : -1;
}

static void overflow(struct vmsig_control *ctl, const struct vmsig_event *ev)
{
        char msg[VMSIG_MSG_MAX];

        if (ev->hdr.flags & VMSIG_F_DROPPABLE) {
                ctl->dropped++;
                ctl->bus->dropped++;
                return;
        }
        snprintf(msg, sizeof(msg), "control %u '%s' too slow: %u events queued (%zu-byte limit), %s lost",
                 ctl->id, ctl->name, ctl->q.count, ctl->bus->lim.queue_bytes, vmsig_kind_name(ev->hdr.kind));
        ctl->bus->disconnects++;
        control_disconnect(ctl, -ENOBUFS, msg);
}

/* A datum whose fd cannot be duplicated cannot go out whole. That is the
 * daemon's shortage, not the control's slowness: say so. */
static void fd_lost(struct vmsig_control *ctl, const struct vmsig_event *ev, int err)
{
        char msg[VMSIG_MSG_MAX];

        if (ev->hdr.flags & VMSIG_F_DROPPABLE) {
                ctl->dropped++;
                ctl->bus->dropped++;
                return;
        }
        snprintf(msg, sizeof(msg), "vmsigd is out of file descriptors (%s): %s for control %u '%s' lost",
                 strerror(err), vmsig_kind_name(ev->hdr.kind), ctl->id, ctl->name);
        control_disconnect(ctl, -err, msg);
}

static void enqueue(struct vmsig_control *ctl, const struct vmsig_event *ev, int fd)
{
        if (ctlq_push(&ctl->q, ev, fd) < 0) {
                if (fd >= 0)
                        close(fd);
                overflow(ctl, ev);
        }
}

void control_deliver(struct vmsig_control *ctl, const struct vmsig_event *ev, int src_fd)
{
        int fd, r;

        if (ctl->dead)
                return;
        fd = dup_fd(src_fd);
        if (src_fd >= 0 && fd < 0) {
                fd_lost(ctl, ev, errno);
                return;
        }
        if (ctl->q.count || ctl->stalled) {
                enqueue(ctl, ev, fd);
                return;
        }
        r = ctl->deliver(ctl, ev, &fd, ctl->userdata);
        if (r == -EAGAIN && !ctl->dead) {
                ctl->stalled = true;
                enqueue(ctl, ev, fd);
                return;
        }
        if (fd >= 0)
                close(fd);
        ctl->delivered++;
        ctl->bus->delivered++;
}

void control_flush(struct vmsig_control *ctl)
{
        struct cq_entry *e;

        while (!ctl->dead && !ctl->stalled && (e = ctlq_front(&ctl->q))) {
                int r = ctl->deliver(ctl, &e->ev, &e->fd, ctl->userdata);
                if (ctl->dead)
                        return; /* the queue is gone with it */
                if (r == -EAGAIN) {
                        ctl->stalled = true;
                        return;
                }
                ctlq_pop(&ctl->q);
                ctl->delivered++;
                ctl->bus->delivered++;
        }
}

int vmsig_control_flush(struct vmsig_control *ctl)
{
        if (!ctl || ctl->dead)
                return -ENOTCONN;
        if (!ctl->stalled)
                control_flush(ctl);
        return ctl->dead ? -ENOTCONN : (int)ctl->q.count;
}

void vmsig_control_resume(struct vmsig_control *ctl)
{
        if (!ctl || ctl->dead)
                return;
        ctl->stalled = false;
        ctl->bus->need_flush = true;
}

int vmsig_control_get_stats(const struct vmsig_control *ctl, struct vmsig_control_stats *ret)
{
        if (!ctl || !ret)
                return -EINVAL;
        memset(ret, 0, sizeof(*ret));
        ret->delivered = ctl->delivered;
        ret->dropped = ctl->dropped;
        ret->queued = ctl->q.count;
        ret->queued_bytes = (uint64_t)ctl->q.count * sizeof(struct cq_entry);
        return 0;
}

/* ---- subscriptions and retained replay ---- */

static void replay_one(struct vmsig_control *ctl, const struct vmsig_event *ev, int fd)
{
        struct vmsig_event copy;

        memcpy(&copy, ev, vmsig_event_size(ev));
        copy.hdr.flags |= VMSIG_F_RETAINED;
        /* Queued, not called back: subscribe() never re-enters its caller.
         * The queue is flushed at the end of this loop iteration, ahead of
         * anything dispatched later. */
        int dfd = dup_fd(fd);
        if (fd >= 0 && dfd < 0) {
                fd_lost(ctl, &copy, errno);
                return;
        }
        enqueue(ctl, &copy, dfd);
        ctl->bus->need_flush = true;
}

/* A subscription just added kind: does the control get its retained copy? */
static bool replay_wanted(const struct vmsig_control *ctl, uint64_t added, uint16_t kind)
{
        return (added & VMSIG_KIND_BIT(kind)) && (ctl->caps & cap_for_up_kind(kind));
}

/* The retained kinds (KIND_RETAINED), each from where the endpoint keeps it. */
static void replay_endpoint(struct vmsig_control *ctl, struct endpoint *ep, uint64_t kinds)
{
        if (replay_wanted(ctl, kinds, VMSIG_EV_ROSTER) && ep->has_roster)
                replay_one(ctl, &ep->roster, -1);
        if (replay_wanted(ctl, kinds, VMSIG_EV_STATUS) && ep->has_status)
                replay_one(ctl, &ep->status, -1);
        if (replay_wanted(ctl, kinds, VMSIG_EV_MEMCTX) && ep->has_memctx)
                replay_one(ctl, &ep->memctx, ep->memctx_fd);
        if (replay_wanted(ctl, kinds, VMSIG_EV_DIAG) && ep->has_memctx_diag)
                replay_one(ctl, &ep->memctx_diag, -1);
        if (replay_wanted(ctl, kinds, VMSIG_EV_LEASE_GRANT)) {
                for (uint8_t cls = 0; cls < VMSIG_LEASE_CLASS_COUNT; cls++) {
                        struct vmsig_event ev;
                        struct vmsig_lease_body b;
                        if (!ep->lease[cls].holder)
                                continue;
                        lease_fill_body(ep, cls, VMSIG_LEASE_R_NONE, &b);
                        vmsig_event_init(&ev, VMSIG_EV_LEASE_GRANT, ep->id, VMSIG_SRC_CORE);
                        ev.hdr.ts_ns = vmsig_now_ns();
                        vmsig_event_set_body(&ev, &b, sizeof(b));
                        replay_one(ctl, &ev, -1);
                }
        }
}

int vmsig_control_subscribe(struct vmsig_control *ctl, uint32_t endpoint, uint64_t kinds)
{
        struct vmsig_bus *bus;
        struct sub *s = NULL;

        if (!ctl || ctl->dead)
                return -ENOTCONN;
        bus = ctl->bus;
        if (kinds & ~VMSIG_KINDS_ALL_UP)
                return -EINVAL;
        for (uint16_t k = 0; k < 64; k++) {
                uint32_t need;
                if (!(kinds & VMSIG_KIND_BIT(k)))
                        continue;
                need = cap_for_up_kind(k);
                if (need && !(ctl->caps & need)) {
                        char why[VMSIG_MSG_MAX];
                        struct vmsig_event ev;
                        /* More than one bit: the lease announcements. */
                        snprintf(why, sizeof(why), "subscribe to %s needs capability %s", vmsig_kind_name(k),
                                 need & (need - 1) ? "roster (or a lease class)" : vmsig_cap_name(need));
                        vmsig_event_init(&ev, k, endpoint, VMSIG_SRC_CORE);
                        bus_audit(bus, VMSIG_AUDIT_DENY, ctl, &ev, -EPERM, why);
                        return -EPERM;
                }
        }
        if (endpoint && !endpoint_get(bus, endpoint))
                return -ENOENT;
        for (unsigned i = 0; i < ctl->nsubs; i++)
                if (ctl->subs[i].endpoint == endpoint)
                        s = &ctl->subs[i];
        if (!s) {
                if (ctl->nsubs == CONTROL_MAX_SUBS)
                        return -ENOSPC;
                s = &ctl->subs[ctl->nsubs++];
                s->endpoint = endpoint;
                s->kinds = 0;
        }
        uint64_t added = kinds & ~s->kinds;
        s->kinds |= kinds;
        if (endpoint) {
                replay_endpoint(ctl, endpoint_get(bus, endpoint), added);
        } else {
                for (unsigned i = 0; i < bus->lim.max_endpoints; i++)
                        if (bus->eps[i] && !bus->eps[i]->removing)
                                replay_endpoint(ctl, bus->eps[i], added);
        }
        return ctl->dead ? -ENOBUFS : 0;
}

int vmsig_control_unsubscribe(struct vmsig_control *ctl, uint32_t endpoint)
{
        if (!ctl || ctl->dead)
                return -ENOTCONN;
        for (unsigned i = 0; i < ctl->nsubs; i++) {
                if (ctl->subs[i].endpoint == endpoint) {
                        ctl->subs[i] = ctl->subs[--ctl->nsubs];
                        return 0;
                }
        }
        return -ENOENT;
}

/* ---- DOWN commands ---- */

static int send_common(struct vmsig_control *ctl, const struct vmsig_event *ev, int fd, void *payload,
                       size_t payload_len)
{
        struct vmsig_event copy;

        memcpy(&copy, ev, vmsig_event_size(ev));
        copy.hdr.peer = ctl->id; /* never trusted from the sender */
        copy.hdr.ts_ns = vmsig_now_ns();
        /* Below URGENT is the daemon's: a control's command never overtakes
         * the ACKs and lease events of others. */
        if (copy.hdr.priority < VMSIG_PRIO_URGENT)
                copy.hdr.priority = VMSIG_PRIO_URGENT;
        copy.hdr.flags &= (uint16_t) ~(VMSIG_F_RETAINED | VMSIG_F_HAS_FD | VMSIG_F_SRC_PAYLOAD);
        if (fd >= 0)
                copy.hdr.flags |= VMSIG_F_HAS_FD;
        else if (payload)
                copy.hdr.flags |= VMSIG_F_SRC_PAYLOAD;
        return bus_enqueue(ctl->bus, &copy, fd, payload, payload_len);
}

int vmsig_control_send(struct vmsig_control *ctl, const struct vmsig_event *ev)
{
        if (!ctl || !ev)
                return -EINVAL;
        if (ctl->dead)
                return -ENOTCONN;
        if (!vmsig_kind_is_down(ev->hdr.kind))
                return -EINVAL;
        if (ev->hdr.body_len > VMSIG_BODY_MAX)
                return -EMSGSIZE;
        return send_common(ctl, ev, -1, NULL, 0);
}

int vmsig_control_send_payload(struct vmsig_control *ctl, const struct vmsig_event *ev, const void *src,
                               size_t len)
{
        const struct kind_info *k;
        void *copy;

        if (!ctl || !ev || !src)
                return -EINVAL;
        if (ctl->dead)
                return -ENOTCONN;
        k = kind_info(ev->hdr.kind);
        if (!k || !(k->flags & KIND_TAIL) || ev->hdr.body_len > VMSIG_BODY_MAX)
                return -EINVAL;
        if (len == 0 || len > ctl->bus->lim.memwrite_max)
                return -EMSGSIZE;
        copy = malloc(len);
        if (!copy)
                return -ENOMEM;
        memcpy(copy, src, len);
        return send_common(ctl, ev, -1, copy, len);
}

int vmsig_control_send_fd(struct vmsig_control *ctl, const struct vmsig_event *ev, int fd)
{
        const struct kind_info *k;
        struct vmsig_memwrite_fd *src;
        int r = -EINVAL;

        if (!ctl || !ev || fd < 0)
                goto fail;
        r = -ENOTCONN;
        if (ctl->dead)
                goto fail;
        r = -EINVAL;
        k = kind_info(ev->hdr.kind);
        if (!k || !(k->flags & KIND_TAIL) || ev->hdr.body_len != sizeof(struct vmsig_memwrite_fd_body))
                goto fail;
        r = -ENOMEM;
        src = malloc(sizeof(*src));
        if (!src)
                goto fail;
        /* The node owns the fd (closed when it is released, on every path);
         * the payload only names it for submit(). */
        src->fd = fd;
        return send_common(ctl, ev, fd, src, sizeof(*src));
fail:
        if (fd >= 0)
                close(fd);
        return r;
}

static int lease_send(struct vmsig_control *ctl, uint16_t kind, uint32_t endpoint, uint8_t cls, uint64_t corr)
{
        struct vmsig_event ev;
        struct vmsig_lease_body b;

        if (cls >= VMSIG_LEASE_CLASS_COUNT)
                return -EINVAL;
        memset(&b, 0, sizeof(b));
        b.class_ = cls;
        vmsig_event_init(&ev, kind, endpoint, VMSIG_SRC_CORE);
        ev.hdr.corr = corr;
        vmsig_event_set_body(&ev, &b, sizeof(b));
        return vmsig_control_send(ctl, &ev);
}

int vmsig_control_lease_acquire(struct vmsig_control *ctl, uint32_t endpoint, uint8_t lease_class,
                                uint64_t corr)
{
        return lease_send(ctl, VMSIG_EV_LEASE_ACQUIRE, endpoint, lease_class, corr);
}

int vmsig_control_lease_release(struct vmsig_control *ctl, uint32_t endpoint, uint8_t lease_class,
                                uint64_t corr)
{
        return lease_send(ctl, VMSIG_EV_LEASE_RELEASE, endpoint, lease_class, corr);
}
