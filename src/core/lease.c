/* SPDX-License-Identifier: MIT */
/* Exclusive leases per (endpoint, class). Owner changes are broadcast
 * (GRANT / REVOKE); a denied requester gets LEASE_DENY naming the holder,
 * and every lease command gets its ACT_ACK. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/bus_internal.h"
#include "util/clock.h"

static const uint32_t class_cap[VMSIG_LEASE_CLASS_COUNT] = {
    [VMSIG_LEASE_INPUT] = VMSIG_CAP_INPUT,
    [VMSIG_LEASE_POWER] = VMSIG_CAP_POWER,
    [VMSIG_LEASE_MEMWRITE] = VMSIG_CAP_MEMWRITE,
};

void lease_describe_holder(const struct lease *l, char *buf, size_t len)
{
        if (!l->holder)
                snprintf(buf, len, "nobody");
        else
                snprintf(buf, len, "control %u '%s' (uid %u, pid %d)", l->holder, l->name, l->uid, l->pid);
}

void lease_fill_body(const struct endpoint *ep, uint8_t cls, uint8_t reason, struct vmsig_lease_body *b)
{
        const struct lease *l = &ep->lease[cls];

        memset(b, 0, sizeof(*b));
        b->class_ = cls;
        b->reason = reason;
        b->holder_id = l->holder;
        b->holder_uid = l->uid;
        b->holder_pid = l->pid;
        snprintf(b->holder_name, sizeof(b->holder_name), "%s", l->name);
}

static void publish(struct vmsig_bus *bus, struct endpoint *ep, uint16_t kind, uint8_t cls, uint8_t reason,
                    uint32_t to, uint64_t corr)
{
        struct vmsig_event ev;
        struct vmsig_lease_body b;

        lease_fill_body(ep, cls, reason, &b);
        vmsig_event_init(&ev, kind, ep->id, VMSIG_SRC_CORE);
        ev.hdr.peer = to;
        ev.hdr.corr = corr;
        vmsig_event_set_body(&ev, &b, sizeof(b));
        bus_enqueue(bus, &ev, -1, NULL, 0);
}

static void end_lease(struct vmsig_bus *bus, struct endpoint *ep, uint8_t cls, uint8_t reason)
{
        char who[VMSIG_MSG_MAX], why[VMSIG_MSG_MAX];
        struct vmsig_event ev;
        static const char *const reasons[] = {"", "released", "holder disconnected", "endpoint gone",
                                              "daemon shutdown"};

        lease_describe_holder(&ep->lease[cls], who, sizeof(who));
        snprintf(why, sizeof(why), "%s lease on '%s' ended (%s), was held by %s", vmsig_lease_class_name(cls),
                 ep->name, reason < 5 ? reasons[reason] : "?", who);
        vmsig_event_init(&ev, VMSIG_EV_LEASE_RELEASE, ep->id, VMSIG_SRC_CORE);
        bus_audit_holder(bus, VMSIG_AUDIT_LEASE, &ep->lease[cls], &ev, 0, why);
        /* REVOKE names the holder it ended for, so publish before clearing. */
        publish(bus, ep, VMSIG_EV_LEASE_REVOKE, cls, reason, 0, 0);
        memset(&ep->lease[cls], 0, sizeof(ep->lease[cls]));
        /* Work an adapter queued under this lease must not run now. */
        for (unsigned i = 0; i < VMSIG_SEAM_COUNT; i++)
                if (ep->att[i])
                        atomic_fetch_add(&ep->att[i]->lease_gen[cls], 1);
        /* Then adapters undo what the holder left behind (held keys). */
        for (unsigned i = 0; i < VMSIG_SEAM_COUNT; i++) {
                struct attachment *att = ep->att[i];
                if (att && att->ops->lease_ended && !atomic_load(&att->dead))
                        att->ops->lease_ended(att->inst, cls);
        }
}

void lease_revoke_all_of(struct vmsig_bus *bus, uint32_t control_id, uint8_t reason)
{
        for (unsigned i = 0; i < bus->lim.max_endpoints; i++) {
                struct endpoint *ep = bus->eps[i];
                if (!ep)
                        continue;
                for (uint8_t c = 0; c < VMSIG_LEASE_CLASS_COUNT; c++)
                        if (ep->lease[c].holder == control_id)
                                end_lease(bus, ep, c, reason);
        }
}

void lease_revoke_endpoint(struct vmsig_bus *bus, struct endpoint *ep, uint8_t reason)
{
        for (uint8_t c = 0; c < VMSIG_LEASE_CLASS_COUNT; c++)
                if (ep->lease[c].holder)
                        end_lease(bus, ep, c, reason);
}

void vmsig_bus_shutdown_leases(struct vmsig_bus *bus)
{
        if (!bus)
                return;
        for (unsigned i = 0; i < bus->lim.max_endpoints; i++)
                if (bus->eps[i])
                        lease_revoke_endpoint(bus, bus->eps[i], VMSIG_LEASE_R_SHUTDOWN);
        /* One pass without waiting: the REVOKEs reach the controls (and the
         * embedder's post hooks write them out) before anyone is closed. */
        vmsig_bus_run_once(bus, 0);
}

void lease_command(struct vmsig_bus *bus, struct vmsig_control *ctl, const struct vmsig_event *cmd)
{
        struct vmsig_lease_body b;
        struct endpoint *ep;
        struct lease *l;
        char who[VMSIG_MSG_MAX], why[VMSIG_MSG_MAX];
        const char *cname;

        if (cmd->hdr.body_len != sizeof(b)) {
                snprintf(why, sizeof(why), "%s body is %u bytes, expected %zu",
                         vmsig_kind_name(cmd->hdr.kind), cmd->hdr.body_len, sizeof(b));
                bus_audit(bus, VMSIG_AUDIT_DENY, ctl, cmd, -EINVAL, why);
                bus_ack(bus, cmd, -EINVAL, "%s", why);
                return;
        }
        memcpy(&b, cmd->body, sizeof(b));
        if (b.class_ >= VMSIG_LEASE_CLASS_COUNT) {
                snprintf(why, sizeof(why), "unknown lease class %u", b.class_);
                bus_audit(bus, VMSIG_AUDIT_DENY, ctl, cmd, -EINVAL, why);
                bus_ack(bus, cmd, -EINVAL, "%s", why);
                return;
        }
        cname = vmsig_lease_class_name(b.class_);
        if (!(ctl->caps & class_cap[b.class_])) {
                snprintf(why, sizeof(why), "%s lease needs capability %s", cname, cname);
                bus_audit(bus, VMSIG_AUDIT_DENY, ctl, cmd, -EPERM, why);
                bus_ack(bus, cmd, -EPERM, "%s", why);
                return;
        }
        ep = endpoint_get(bus, cmd->hdr.endpoint);
        if (!ep) {
                bus_ack(bus, cmd, -ENOENT, "no endpoint %u", cmd->hdr.endpoint);
                return;
        }
        l = &ep->lease[b.class_];
        if (cmd->hdr.kind == VMSIG_EV_LEASE_RELEASE) {
                if (l->holder != ctl->id) {
                        lease_describe_holder(l, who, sizeof(who));
                        bus_ack(bus, cmd, -EPERM, "%s lease on '%s' is not yours (held by %s)", cname,
                                ep->name, who);
                        return;
                }
                end_lease(bus, ep, b.class_, VMSIG_LEASE_R_RELEASED);
                bus_ack(bus, cmd, 0, "%s lease on '%s' released", cname, ep->name);
                return;
        }
        if (l->holder == ctl->id) {
                bus_ack(bus, cmd, 0, "%s lease on '%s' already held", cname, ep->name);
                return;
        }
        if (l->holder) {
                lease_describe_holder(l, who, sizeof(who));
                snprintf(why, sizeof(why), "%s lease on '%s' is held by %s", cname, ep->name, who);
                bus_audit(bus, VMSIG_AUDIT_DENY, ctl, cmd, -EBUSY, why);
                publish(bus, ep, VMSIG_EV_LEASE_DENY, b.class_, VMSIG_LEASE_R_NONE, ctl->id, cmd->hdr.corr);
                bus_ack(bus, cmd, -EBUSY, "%s", why);
                return;
        }
        l->holder = ctl->id;
        l->uid = ctl->uid;
        l->pid = ctl->pid;
        snprintf(l->name, sizeof(l->name), "%s", ctl->name);
        snprintf(why, sizeof(why), "%s lease on '%s' granted", cname, ep->name);
        bus_audit(bus, VMSIG_AUDIT_LEASE, ctl, cmd, 0, why);
        publish(bus, ep, VMSIG_EV_LEASE_GRANT, b.class_, VMSIG_LEASE_R_NONE, 0, cmd->hdr.corr);
        bus_ack(bus, cmd, 0, "%s", why);
}
