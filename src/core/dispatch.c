/* SPDX-License-Identifier: MIT */
/* Dispatch of one event. UP: update retained state, then fan out to the
 * subscribed (or addressed) controls. DOWN: check capability, source,
 * extent and lease, then hand to the endpoint's adapter for that seam. Every
 * refusal is audited and answered with an ACT_ACK carrying the reason. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/bus_internal.h"
#include "core/kinds.h"
#include "util/clock.h"

void bus_ack(struct vmsig_bus *bus, const struct vmsig_event *cmd, int32_t result, const char *fmt, ...)
{
        struct vmsig_event ack;
        char msg[VMSIG_MSG_MAX];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        vmsig_ack_init(&ack, cmd, VMSIG_SRC_CORE, result, 0, "%s", msg);
        bus_enqueue(bus, &ack, -1, NULL, 0);
}

static bool destructive(uint16_t kind)
{
        return vmsig_kind_lease_class(kind) >= 0;
}

/* ---- UP ---- */

static void retain(struct vmsig_bus *bus, struct qnode *n)
{
        struct endpoint *ep = n->ev.hdr.endpoint && n->ev.hdr.endpoint <= bus->lim.max_endpoints
                                  ? bus->eps[n->ev.hdr.endpoint - 1]
                                  : NULL;
        const struct vmsig_event *ev = &n->ev;

        if (ep && ev->hdr.kind == VMSIG_EV_DIAG && ev->hdr.source == VMSIG_SRC_MEMCTX &&
            ev->hdr.body_len >= sizeof(int32_t)) {
                int32_t code;
                memcpy(&code, ev->body, sizeof(code));
                /* Only while the adapter is there: a late DIAG of a detached one is no state. */
                ep->has_memctx_diag = code < 0 && ep->att[VMSIG_SRC_MEMCTX - 1] && !ep->removing;
                if (ep->has_memctx_diag) {
                        memcpy(&ep->memctx_diag, ev, vmsig_event_size(ev));
                        ep->memctx_diag.hdr.peer = 0;
                        ep->memctx_diag.hdr.corr = 0;
                }
                return;
        }
        if (!ep || !(kind_info(ev->hdr.kind)->flags & KIND_RETAINED))
                return;
        /* Each retained kind has its own place in the endpoint. */
        switch (ev->hdr.kind) {
        case VMSIG_EV_ROSTER:
                endpoint_roster_stamp(ep, &n->ev); /* live and retained alike */
                memcpy(&ep->roster, ev, vmsig_event_size(ev));
                ep->has_roster = true;
                if (!(ev->body[1] & (1u << VMSIG_SRC_MEMCTX)))
                        ep->has_memctx_diag = false; /* no memctx adapter: no reason to keep */
                break;
        case VMSIG_EV_STATUS:
                if (ep->removing)
                        break;
                memcpy(&ep->status, ev, vmsig_event_size(ev));
                /* A reply to one asker still updates everyone's state. */
                ep->status.hdr.peer = 0;
                ep->status.hdr.corr = 0;
                ep->has_status = true;
                if (ev->hdr.body_len >= 1)
                        endpoint_set_run_state(bus, ep, ev->body[0]);
                break;
        case VMSIG_EV_MEMCTX:
                if (ep->memctx_fd >= 0)
                        close(ep->memctx_fd);
                /* The node's fd becomes the retained copy; deliveries dup it. */
                ep->memctx_fd = n->fd;
                n->fd = -1;
                memcpy(&ep->memctx, ev, vmsig_event_size(ev));
                ep->has_memctx = true;
                if (ev->body[offsetof(struct vmsig_memctx_body, valid)])
                        ep->has_memctx_diag = false;
                break;
        default:
                break;
        }
}

static void dispatch_up(struct vmsig_bus *bus, struct qnode *n)
{
        const struct vmsig_event *ev = &n->ev;
        int fd;

        retain(bus, n);
        fd = n->fd;
        if (ev->hdr.kind == VMSIG_EV_MEMCTX && ev->hdr.endpoint &&
            ev->hdr.endpoint <= bus->lim.max_endpoints && bus->eps[ev->hdr.endpoint - 1])
                fd = bus->eps[ev->hdr.endpoint - 1]->memctx_fd;
        if (!(ev->hdr.flags & VMSIG_F_HAS_FD))
                fd = -1;

        if (ev->hdr.kind == VMSIG_EV_ACT_ACK)
                pending_on_ack(bus, ev);
        if (ev->hdr.peer) {
                struct vmsig_control *c = control_get(bus, ev->hdr.peer);
                if (c)
                        control_deliver(c, ev, fd);
                if (ev->hdr.kind == VMSIG_EV_ACT_ACK && ev->hdr.body_len >= sizeof(struct vmsig_ack_body)) {
                        struct vmsig_ack_body a;
                        memcpy(&a, ev->body, sizeof(a));
                        if (destructive(a.cmd_kind)) {
                                struct vmsig_event cmdlike = *ev;
                                cmdlike.hdr.kind = a.cmd_kind;
                                a.msg[sizeof(a.msg) - 1] = '\0';
                                bus_audit(bus, VMSIG_AUDIT_RESULT, c, &cmdlike, a.result, a.msg);
                        }
                }
        } else {
                for (struct vmsig_control *c = bus->ctl_head; c; c = c->next)
                        if (control_wants(c, ev))
                                control_deliver(c, ev, fd);
        }
        if (ev->hdr.kind == VMSIG_EV_ROSTER && ev->hdr.body_len >= 1 && ev->body[0] == VMSIG_ROSTER_LEFT)
                endpoint_finalize(bus, ev->hdr.endpoint);
}

/* ---- DOWN ---- */

static void deny(struct vmsig_bus *bus, struct vmsig_control *ctl, const struct vmsig_event *cmd, int err,
                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void deny(struct vmsig_bus *bus, struct vmsig_control *ctl, const struct vmsig_event *cmd, int err,
                 const char *fmt, ...)
{
        char why[VMSIG_MSG_MAX];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(why, sizeof(why), fmt, ap);
        va_end(ap);
        bus_audit(bus, VMSIG_AUDIT_DENY, ctl, cmd, err, why);
        /* Denials are answered even for fire-and-forget: a refused stream
         * must not look like a delivered one. */
        bus_ack(bus, cmd, err, "%s", why);
}

/* Extent: the body must be exactly what the kind carries; a CMD_MEMWRITE
 * passes the one memwrite check, with the bus's bound. */
static int check_extent(struct vmsig_bus *bus, const struct qnode *n, const struct kind_info *k, char *why,
                        size_t len)
{
        const struct vmsig_event *ev = &n->ev;
        const size_t head = offsetof(struct vmsig_memwrite_body, data);
        uint32_t mw_len = 0, mw_flags = 0; /* for the messages */

        if (ev->hdr.kind != VMSIG_EV_CMD_MEMWRITE) {
                if (ev->hdr.body_len != k->body->size) {
                        snprintf(why, len, "%s body is %u bytes, expected %u", k->name, ev->hdr.body_len,
                                 (unsigned)k->body->size);
                        return -EINVAL;
                }
                return 0;
        }
        if (ev->hdr.body_len >= head) {
                memcpy(&mw_len, ev->body + offsetof(struct vmsig_memwrite_body, len), sizeof(mw_len));
                memcpy(&mw_flags, ev->body + offsetof(struct vmsig_memwrite_body, flags), sizeof(mw_flags));
        }
        switch (memwrite_check(ev, true, n->payload, n->payload_len, bus->lim.memwrite_max, NULL)) {
        case MW_OK:
                return 0;
        case MW_E_BODY:
                snprintf(why, len, "CMD_MEMWRITE body is %u bytes, needs at least %zu", ev->hdr.body_len,
                         head);
                return -EINVAL;
        case MW_E_FLAGS:
                snprintf(why, len, "CMD_MEMWRITE flags 0x%x: only PHYS (0x1) is defined", mw_flags);
                return -EINVAL;
        case MW_E_BOUND:
                snprintf(why, len, "CMD_MEMWRITE of %u bytes exceeds the %zu-byte bound", mw_len,
                         bus->lim.memwrite_max);
                return -EMSGSIZE;
        case MW_E_SIZE:
                if (ev->hdr.flags & VMSIG_F_SRC_PAYLOAD)
                        snprintf(why, len, "CMD_MEMWRITE says %u bytes but %zu arrived", mw_len,
                                 n->payload_len);
                else
                        snprintf(why, len, "CMD_MEMWRITE says %u bytes but carries %zu inline", mw_len,
                                 (size_t)ev->hdr.body_len - head);
                return -EINVAL;
        case MW_E_ZERO:
                snprintf(why, len, "CMD_MEMWRITE of 0 bytes");
                return -EINVAL;
        case MW_E_TAIL:
                snprintf(why, len,
                         (ev->hdr.flags & VMSIG_F_SRC_PAYLOAD) ? "CMD_MEMWRITE source tail missing"
                                                               : "CMD_MEMWRITE tail without SRC_PAYLOAD");
                return -EINVAL;
        }
        return -EINVAL;
}

static void dispatch_down(struct vmsig_bus *bus, struct qnode *n)
{
        struct vmsig_event *cmd = &n->ev;
        struct vmsig_control *ctl = control_get(bus, cmd->hdr.peer);
        const struct kind_info *k = kind_info(cmd->hdr.kind);
        const char *kname = k->name;
        int seam = k->seam;
        int cls = k->lease;
        uint32_t need = k->cap;
        struct endpoint *ep;
        struct attachment *att;
        char why[VMSIG_MSG_MAX];
        int r;

        if (!ctl)
                return; /* sender gone: its leases went with it */
        if (seam == VMSIG_SRC_CORE) {
                lease_command(bus, ctl, cmd);
                return;
        }
        /* Only the kinds that allow it (input streams) may skip their
         * acknowledgement. */
        if (!(k->flags & KIND_FF))
                cmd->hdr.flags &= (uint16_t)~VMSIG_F_FF;

        if (!(ctl->caps & need)) {
                deny(bus, ctl, cmd, -EPERM, "%s needs capability %s", kname, vmsig_cap_name(need));
                return;
        }
        if (cmd->hdr.source != seam) {
                deny(bus, ctl, cmd, -EINVAL, "%s is for the %s seam, event names %s", kname,
                     vmsig_source_name((uint8_t)seam), vmsig_source_name(cmd->hdr.source));
                return;
        }
        r = check_extent(bus, n, k, why, sizeof(why));
        if (r < 0) {
                deny(bus, ctl, cmd, r, "%s", why);
                return;
        }
        ep = endpoint_get(bus, cmd->hdr.endpoint);
        if (!ep) {
                bus_ack(bus, cmd, -ENOENT, "no endpoint %u", cmd->hdr.endpoint);
                return;
        }
        if (cls >= 0 && ep->lease[cls].holder != ctl->id) {
                char who[VMSIG_MSG_MAX];
                lease_describe_holder(&ep->lease[cls], who, sizeof(who));
                deny(bus, ctl, cmd, -EPERM, "%s on '%s' needs the %s lease (held by %s)", kname, ep->name,
                     vmsig_lease_class_name((uint8_t)cls), who);
                return;
        }
        att = ep->att[seam - 1];
        if (!att) {
                bus_ack(bus, cmd, -ENODEV, "'%s' has no %s adapter", ep->name,
                        vmsig_source_name((uint8_t)seam));
                return;
        }
        /* Ledger before submit: an accepted command must never lose its ACK. */
        bool track = !(cmd->hdr.flags & VMSIG_F_FF);
        if (track && (r = pending_add(att, cmd)) < 0) {
                if (r == -ENOBUFS)
                        bus_ack(bus, cmd, r, "'%s' has %u %s commands in flight: wait for their ACKs",
                                ep->name, pending_max(), vmsig_source_name((uint8_t)seam));
                else
                        bus_ack(bus, cmd, r, "%s on '%s': %s", kname, ep->name, strerror(-r));
                return;
        }
        r = att->ops->submit(att->inst, cmd, n->payload, n->payload_len);
        if (track && r != VMSIG_SUBMIT_ACCEPTED)
                pending_drop_last(att);
        if (destructive(cmd->hdr.kind))
                bus_audit(bus, VMSIG_AUDIT_COMMAND, ctl, cmd, r < 0 ? r : 0,
                          r == VMSIG_SUBMIT_ACCEPTED ? "accepted" : "refused by adapter");
        if (r == VMSIG_SUBMIT_NOT_MINE)
                bus_ack(bus, cmd, -EOPNOTSUPP, "%s adapter of '%s' does not handle %s", att->ops->name,
                        ep->name, kname);
        else if (r < 0)
                bus_ack(bus, cmd, r, "%s adapter of '%s' refused %s: %s", att->ops->name, ep->name, kname,
                        strerror(-r));
}

void dispatch_one(struct vmsig_bus *bus, struct qnode *n)
{
        if (vmsig_kind_is_up(n->ev.hdr.kind))
                dispatch_up(bus, n);
        else if (vmsig_kind_is_down(n->ev.hdr.kind))
                dispatch_down(bus, n);
        else if (n->ev.hdr.kind == PENDING_EV_SWEEP)
                pending_sweep(bus, &n->ev);
}
