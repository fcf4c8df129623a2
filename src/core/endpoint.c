/* SPDX-License-Identifier: MIT */
/* Endpoints (one per VM) and their adapter trio. Attach and detach work at
 * runtime while events flow; a detached adapter is disconnected at once (its
 * fds leave epoll, its sink refuses emits) and closed after the batch. */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "core/bus_internal.h"
#include "util/clock.h"

static int seam_index(uint8_t seam)
{
        return seam > VMSIG_SRC_CORE && seam < VMSIG_SRC_MAX_ ? seam - 1 : -1;
}

struct endpoint *endpoint_get(struct vmsig_bus *bus, uint32_t id)
{
        struct endpoint *ep;

        if (id == 0 || id > bus->lim.max_endpoints)
                return NULL;
        ep = bus->eps[id - 1];
        return ep && !ep->removing ? ep : NULL;
}

static uint8_t seams_mask(const struct endpoint *ep)
{
        uint8_t m = 0;

        for (int i = 0; i < VMSIG_SEAM_COUNT; i++)
                if (ep->att[i])
                        m |= (uint8_t)(1u << (i + 1));
        return m;
}

void endpoint_publish_roster(struct vmsig_bus *bus, struct endpoint *ep, uint8_t change)
{
        struct vmsig_event ev;
        struct vmsig_roster_body b;

        memset(&b, 0, sizeof(b));
        b.change = change;
        b.seams = change == VMSIG_ROSTER_LEFT ? 0 : seams_mask(ep);
        b.run_state = ep->run_state;
        snprintf(b.name, sizeof(b.name), "%s", ep->name);
        vmsig_event_init(&ev, VMSIG_EV_ROSTER, ep->id, VMSIG_SRC_CORE);
        vmsig_event_set_body(&ev, &b, sizeof(b));
        bus_enqueue(bus, &ev, -1, NULL, 0);
}

void endpoint_roster_stamp(const struct endpoint *ep, struct vmsig_event *roster)
{
        /* Queued before a STATUS that was dispatched first, the body would
         * carry a stale state; a departure keeps its own. */
        if (roster->hdr.body_len == sizeof(struct vmsig_roster_body) && roster->body[0] != VMSIG_ROSTER_LEFT)
                roster->body[offsetof(struct vmsig_roster_body, run_state)] = ep->run_state;
}

void endpoint_set_run_state(struct vmsig_bus *bus, struct endpoint *ep, uint8_t state)
{
        bool changed = state != ep->run_state;

        ep->run_state = state;
        if (!ep->has_roster)
                return;
        endpoint_roster_stamp(ep, &ep->roster);
        /* ROSTER subscribers follow the run state without the status
         * capability; a STATUS repeating the state adds nothing. */
        if (changed && !ep->removing)
                endpoint_publish_roster(bus, ep, VMSIG_ROSTER_CHANGED);
}

int vmsig_bus_endpoint_find(struct vmsig_bus *bus, const char *name, uint32_t *ret_id)
{
        if (!bus || !name)
                return -EINVAL;
        for (unsigned i = 0; i < bus->lim.max_endpoints; i++) {
                struct endpoint *ep = bus->eps[i];
                if (ep && !ep->removing && strcmp(ep->name, name) == 0) {
                        if (ret_id)
                                *ret_id = ep->id;
                        return 0;
                }
        }
        return -ENOENT;
}

const char *vmsig_bus_endpoint_name(struct vmsig_bus *bus, uint32_t endpoint)
{
        struct endpoint *ep = endpoint_get(bus, endpoint);

        return ep ? ep->name : NULL;
}

int vmsig_bus_endpoint_add(struct vmsig_bus *bus, const char *name, uint32_t *ret_id)
{
        struct endpoint *ep;
        unsigned slot;

        if (!bus || !name || !*name || strlen(name) >= VMSIG_NAME_MAX)
                return -EINVAL;
        if (vmsig_bus_endpoint_find(bus, name, NULL) == 0)
                return -EEXIST;
        for (slot = 0; slot < bus->lim.max_endpoints; slot++)
                if (!bus->eps[slot])
                        break;
        if (slot == bus->lim.max_endpoints)
                return -ENOSPC;
        ep = calloc(1, sizeof(*ep));
        if (!ep)
                return -ENOMEM;
        ep->id = slot + 1;
        snprintf(ep->name, sizeof(ep->name), "%s", name);
        ep->memctx_fd = -1;
        bus->eps[slot] = ep;
        endpoint_publish_roster(bus, ep, VMSIG_ROSTER_APPEARED);
        if (ret_id)
                *ret_id = ep->id;
        return 0;
}

int vmsig_bus_endpoint_remove(struct vmsig_bus *bus, uint32_t endpoint)
{
        struct endpoint *ep = bus ? endpoint_get(bus, endpoint) : NULL;

        if (!ep)
                return -ENOENT;
        ep->removing = true;
        for (int i = 0; i < VMSIG_SEAM_COUNT; i++)
                if (ep->att[i])
                        attachment_detach(ep->att[i]);
        lease_revoke_endpoint(bus, ep, VMSIG_LEASE_R_ENDPOINT_GONE);
        endpoint_publish_roster(bus, ep, VMSIG_ROSTER_LEFT);
        bus_reap_if_idle(bus);
        return 0;
}

/* The departure has been dispatched: now the slot may be reused without a
 * late event of the old VM landing on the new one. */
void endpoint_finalize(struct vmsig_bus *bus, uint32_t id)
{
        struct endpoint *ep;

        if (id == 0 || id > bus->lim.max_endpoints)
                return;
        ep = bus->eps[id - 1];
        if (!ep || !ep->removing)
                return;
        if (ep->memctx_fd >= 0)
                close(ep->memctx_fd);
        bus->eps[id - 1] = NULL;
        free(ep);
}

void endpoints_free_all(struct vmsig_bus *bus)
{
        pending_free_all(bus);
        for (unsigned i = 0; i < bus->lim.max_endpoints; i++) {
                struct endpoint *ep = bus->eps[i];
                if (!ep)
                        continue;
                for (int s = 0; s < VMSIG_SEAM_COUNT; s++)
                        if (ep->att[s])
                                attachment_detach(ep->att[s]);
                if (ep->memctx_fd >= 0)
                        close(ep->memctx_fd);
                free(ep);
                bus->eps[i] = NULL;
        }
}

/* ---- the sink an adapter gets ---- */

static int sink_emit(const struct vmsig_emit_sink *sink, const struct vmsig_event *ev)
{
        struct attachment *att = sink->core_;
        struct vmsig_bus *bus = att->bus;

        /* In close() an adapter may still answer its commands (loop thread). */
        if (atomic_load(&att->dead) &&
            !(bus_on_loop_thread(bus) && att->closing && ev && ev->hdr.kind == VMSIG_EV_ACT_ACK))
                return -ESHUTDOWN;
        if (!ev || !vmsig_kind_is_up(ev->hdr.kind) || ev->hdr.kind == VMSIG_EV_MEMCTX)
                return -EINVAL; /* MEMCTX goes through register_memctx */
        if (ev->hdr.body_len > VMSIG_BODY_MAX)
                return -EMSGSIZE;
        struct vmsig_event copy;
        if (ev->hdr.peer && ev->hdr.priority > VMSIG_PRIO_URGENT) {
                /* A reply to one control (a STATUS answering its query, say)
                 * travels at ACK priority, so it stays in order with the
                 * ACT_ACK the adapter emits after it. */
                memcpy(&copy, ev, vmsig_event_size(ev));
                copy.hdr.priority = VMSIG_PRIO_URGENT;
                ev = &copy;
        }
        if (!bus_on_loop_thread(bus))
                return handoff_push(&bus->ho, ev, att->endpoint_id, att->seam, &att->dead);

        if (ev != &copy)
                memcpy(&copy, ev, vmsig_event_size(ev));
        /* After whatever workers emitted before this call: an adapter that
         * runs some commands inline keeps its ACKs in order (§8.4). */
        bus_collect_handoff(bus);
        copy.hdr.endpoint = att->endpoint_id;
        copy.hdr.source = att->seam;
        copy.hdr.flags &= (uint16_t)~VMSIG_F_HAS_FD;
        return bus_enqueue(bus, &copy, -1, NULL, 0);
}

static int publish_memctx(struct attachment *att, const struct vmsig_memctx *ctx, bool valid, int fd)
{
        struct vmsig_event ev;
        struct vmsig_memctx_body body;
        int r = vmsig_memctx_to_body(ctx, valid, &body);

        if (r < 0) {
                if (fd >= 0)
                        close(fd);
                return r;
        }
        vmsig_event_init(&ev, VMSIG_EV_MEMCTX, att->endpoint_id, VMSIG_SRC_MEMCTX);
        if (valid)
                ev.hdr.flags |= VMSIG_F_HAS_FD;
        vmsig_event_set_body(&ev, &body, sizeof(body));
        bus_collect_handoff(att->bus); /* after what the adapter's workers emitted first */
        return bus_enqueue(att->bus, &ev, fd, NULL, 0);
}

static int sink_register_memctx(const struct vmsig_emit_sink *sink, const struct vmsig_memctx *ctx,
                                uint64_t *ret_epoch)
{
        struct attachment *att = sink->core_;
        struct vmsig_memctx copy;
        int flags, fd, r;

        if (!bus_on_loop_thread(att->bus))
                return -EPERM;
        if (atomic_load(&att->dead))
                return -ESHUTDOWN;
        if (!ctx || ctx->nranges == 0 || ctx->nranges > VMSIG_MEMCTX_MAX_RANGES)
                return -EINVAL;
        /* Perception is read-only by construction: refuse anything else. */
        flags = fcntl(ctx->fd, F_GETFL);
        if (flags < 0)
                return -EBADF;
        if ((flags & O_ACCMODE) != O_RDONLY)
                return -EPERM;
        fd = fcntl(ctx->fd, F_DUPFD_CLOEXEC, 3);
        if (fd < 0)
                return -errno;
        copy = *ctx;
        copy.endpoint = att->endpoint_id;
        copy.epoch = ++att->ep->memctx_epoch;
        r = publish_memctx(att, &copy, true, fd);
        if (r < 0)
                return r;
        att->ep->memctx_registered = true;
        if (ret_epoch)
                *ret_epoch = copy.epoch;
        return 0;
}

static void invalidate_memctx(struct attachment *att)
{
        struct vmsig_memctx none;

        if (!att->ep->memctx_registered)
                return;
        memset(&none, 0, sizeof(none));
        none.endpoint = att->endpoint_id;
        none.epoch = att->ep->memctx_epoch;
        none.fd = -1;
        publish_memctx(att, &none, false, -1);
        att->ep->memctx_registered = false;
}

static int sink_unregister_memctx(const struct vmsig_emit_sink *sink)
{
        struct attachment *att = sink->core_;

        if (!bus_on_loop_thread(att->bus))
                return -EPERM;
        if (atomic_load(&att->dead))
                return -ESHUTDOWN;
        invalidate_memctx(att);
        return 0;
}

static int watch_reg(struct attachment *att, const struct vmsig_fd_reg *reg)
{
        struct watch *w;
        int r;

        if (reg->fd < 0 || reg->shape > VMSIG_RDY_EVENTFD)
                return -EINVAL;
        if (att->nwatches == VMSIG_FD_REG_MAX)
                return -ENOSPC;
        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->type = WATCH_ADAPTER;
        w->fd = reg->fd;
        w->att = att;
        w->cookie = reg->cookie;
        w->shape = reg->shape;
        r = bus_watch_add(att->bus, w, reg->epoll_events);
        if (r < 0) {
                free(w);
                return r;
        }
        att->watches[att->nwatches++] = w;
        return 0;
}

static int sink_watch_fd(const struct vmsig_emit_sink *sink, const struct vmsig_fd_reg *reg)
{
        struct attachment *att = sink->core_;

        if (!bus_on_loop_thread(att->bus))
                return -EPERM;
        if (atomic_load(&att->dead))
                return -ESHUTDOWN;
        return reg ? watch_reg(att, reg) : -EINVAL;
}

static int sink_unwatch_fd(const struct vmsig_emit_sink *sink, int fd)
{
        struct attachment *att = sink->core_;

        if (!bus_on_loop_thread(att->bus))
                return -EPERM;
        for (unsigned i = 0; i < att->nwatches; i++) {
                if (att->watches[i]->fd != fd)
                        continue;
                bus_watch_kill(att->bus, att->watches[i]);
                att->watches[i] = att->watches[--att->nwatches];
                return 0;
        }
        return -ENOENT;
}

static int sink_check_issuer(const struct vmsig_emit_sink *sink, uint32_t peer, int lease_class)
{
        struct attachment *att = sink->core_;

        if (!bus_on_loop_thread(att->bus))
                return -EPERM;
        if (!control_get(att->bus, peer))
                return -ESRCH;
        if (lease_class < 0)
                return 0;
        if (lease_class >= VMSIG_LEASE_CLASS_COUNT || !att->ep || att->ep->lease[lease_class].holder != peer)
                return -EPERM;
        return 0;
}

static uint32_t sink_lease_generation(const struct vmsig_emit_sink *sink, int lease_class)
{
        struct attachment *att = sink->core_;

        if (lease_class < 0 || lease_class >= VMSIG_LEASE_CLASS_COUNT)
                return 0;
        return atomic_load(&att->lease_gen[lease_class]);
}

/* ---- attach / detach ---- */

int vmsig_bus_attach(struct vmsig_bus *bus, uint32_t endpoint, const struct vmsig_adapter_ops *ops,
                     const struct vmsig_adapter_cfg *cfg)
{
        struct vmsig_fd_reg regs[VMSIG_FD_REG_MAX];
        struct attachment *att;
        struct endpoint *ep;
        size_t nregs = 0;
        int idx, r;

        if (!bus || !ops || !ops->open || !ops->attach || !ops->on_readiness || !ops->submit || !ops->close)
                return -EINVAL;
        ep = endpoint_get(bus, endpoint);
        if (!ep)
                return -ENOENT;
        idx = seam_index(ops->seam);
        if (idx < 0)
                return -EINVAL;
        if (ep->att[idx])
                return -EBUSY;
        att = calloc(1, sizeof(*att));
        if (!att)
                return -ENOMEM;
        att->bus = bus;
        att->ep = ep;
        att->endpoint_id = ep->id;
        att->seam = ops->seam;
        att->ops = ops;
        atomic_init(&att->dead, false);
        att->sink.emit = sink_emit;
        if (ops->seam == VMSIG_SRC_MEMCTX) {
                att->sink.register_memctx = sink_register_memctx;
                att->sink.unregister_memctx = sink_unregister_memctx;
        }
        att->sink.watch_fd = sink_watch_fd;
        att->sink.unwatch_fd = sink_unwatch_fd;
        att->sink.check_issuer = sink_check_issuer;
        att->sink.lease_generation = sink_lease_generation;
        att->sink.core_ = att;

        struct vmsig_adapter_cfg empty = {0};
        r = ops->open(cfg ? cfg : &empty, ep->id, &att->inst);
        if (r < 0) {
                free(att);
                return r;
        }
        ep->att[idx] = att; /* before attach(): it may register a memctx */
        r = ops->attach(att->inst, &att->sink, regs, VMSIG_FD_REG_MAX, &nregs);
        for (size_t i = 0; r >= 0 && i < nregs; i++)
                r = watch_reg(att, &regs[i]);
        if (r < 0) {
                ep->att[idx] = NULL;
                atomic_store(&att->dead, true);
                handoff_wake(&bus->ho);
                for (unsigned i = 0; i < att->nwatches; i++)
                        bus_watch_kill(bus, att->watches[i]);
                invalidate_memctx(att);
                ops->close(att->inst);
                free(att);
                bus_reap_if_idle(bus);
                return r;
        }
        endpoint_publish_roster(bus, ep, VMSIG_ROSTER_CHANGED);
        return 0;
}

void attachment_detach(struct attachment *att)
{
        struct vmsig_bus *bus = att->bus;
        struct endpoint *ep = att->ep;

        if (atomic_load(&att->dead))
                return;
        atomic_store(&att->dead, true);
        handoff_wake(&bus->ho); /* a producer blocked on a full ring re-checks */
        for (unsigned i = 0; i < att->nwatches; i++)
                bus_watch_kill(bus, att->watches[i]);
        att->nwatches = 0;
        ep->att[att->seam - 1] = NULL;
        pending_detached(att);
        if (att->seam == VMSIG_SRC_MEMCTX)
                invalidate_memctx(att);
        if (!ep->removing)
                endpoint_publish_roster(bus, ep, VMSIG_ROSTER_CHANGED);
        att->ep = NULL;
        att->next_dead = bus->dead_atts;
        bus->dead_atts = att;
}

void attachment_reap(struct attachment *att)
{
        att->closing = true;
        att->ops->close(att->inst); /* joins workers, closes the adapter's fds */
        att->closing = false;
        pending_closed(att); /* the core answers what the adapter left unanswered */
        free(att);
}

int vmsig_bus_detach(struct vmsig_bus *bus, uint32_t endpoint, uint8_t seam)
{
        struct endpoint *ep = bus ? endpoint_get(bus, endpoint) : NULL;
        int idx = seam_index(seam);

        if (!ep)
                return -ENOENT;
        if (idx < 0)
                return -EINVAL;
        if (!ep->att[idx])
                return -ENODEV;
        attachment_detach(ep->att[idx]);
        bus_reap_if_idle(bus);
        return 0;
}
