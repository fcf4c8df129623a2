/* SPDX-License-Identifier: MIT */
/* Event helpers and the per-kind tables the core checks commands against. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <vmsig/event.h>
#include <vmsig/memctx.h>

#include "core/clock.h"

void vmsig_event_init(struct vmsig_event *ev, uint16_t kind, uint32_t endpoint, uint8_t source)
{
        memset(&ev->hdr, 0, sizeof(ev->hdr));
        ev->hdr.kind = kind;
        ev->hdr.endpoint = endpoint;
        ev->hdr.source = source;
        switch (kind) {
        case VMSIG_EV_ACT_ACK:
        case VMSIG_EV_LEASE_GRANT:
        case VMSIG_EV_LEASE_DENY:
        case VMSIG_EV_LEASE_REVOKE:
        case VMSIG_EV_LEASE_ACQUIRE:
        case VMSIG_EV_LEASE_RELEASE:
                ev->hdr.priority = VMSIG_PRIO_URGENT;
                break;
        case VMSIG_EV_ROSTER:
        case VMSIG_EV_MEMCTX:
        case VMSIG_EV_STATUS:
        case VMSIG_EV_CMD_POWER:
                ev->hdr.priority = VMSIG_PRIO_HIGH;
                break;
        default:
                ev->hdr.priority = VMSIG_PRIO_NORMAL;
                break;
        }
}

int vmsig_event_set_body(struct vmsig_event *ev, const void *body, size_t len)
{
        if (len > VMSIG_BODY_MAX)
                return -EMSGSIZE;
        if (len)
                memcpy(ev->body, body, len);
        ev->hdr.body_len = (uint32_t)len;
        return 0;
}

void vmsig_ack_init(struct vmsig_event *ack, const struct vmsig_event *cmd, uint8_t source,
                    int32_t result, uint64_t value, const char *fmt, ...)
{
        struct vmsig_ack_body b;

        vmsig_event_init(ack, VMSIG_EV_ACT_ACK, cmd->hdr.endpoint, source);
        ack->hdr.corr = cmd->hdr.corr;
        ack->hdr.peer = cmd->hdr.peer;
        ack->hdr.ts_ns = vmsig_now_ns();
        memset(&b, 0, sizeof(b));
        b.result = result;
        b.cmd_kind = cmd->hdr.kind;
        b.value = value;
        if (fmt) {
                va_list ap;
                va_start(ap, fmt);
                vsnprintf(b.msg, sizeof(b.msg), fmt, ap);
                va_end(ap);
        }
        vmsig_event_set_body(ack, &b, sizeof(b));
}

int vmsig_memwrite_decode(const struct vmsig_event *ev, const void *payload, size_t payload_len,
                          struct vmsig_memwrite_req *ret)
{
        const size_t head = offsetof(struct vmsig_memwrite_body, data);
        struct vmsig_memwrite_body b;

        if (!ev || !ret || ev->hdr.kind != VMSIG_EV_CMD_MEMWRITE || ev->hdr.body_len < head ||
            ev->hdr.body_len > sizeof(b))
                return -EINVAL;
        memcpy(&b, ev->body, head);
        if (b.len == 0 || (b.flags & ~(uint32_t)VMSIG_MEMWRITE_PHYS))
                return -EINVAL;
        if (ev->hdr.flags & VMSIG_F_SRC_PAYLOAD) {
                if (!payload || payload_len != b.len || ev->hdr.body_len != head)
                        return -EINVAL;
                ret->src = payload;
        } else {
                if (payload || b.len > VMSIG_MEMWRITE_INLINE_MAX || ev->hdr.body_len != head + b.len)
                        return -EINVAL;
                ret->src = ev->body + head;
        }
        ret->addr = b.addr;
        ret->len = b.len;
        ret->flags = b.flags;
        return 0;
}

int vmsig_kind_seam(uint16_t kind)
{
        switch (kind) {
        case VMSIG_EV_MOVE_ABS:
        case VMSIG_EV_MOVE_REL:
        case VMSIG_EV_BUTTON:
        case VMSIG_EV_KEY:
        case VMSIG_EV_WHEEL:
                return VMSIG_SRC_INPUT;
        case VMSIG_EV_CMD_POWER:
        case VMSIG_EV_CMD_STATUS_QUERY:
                return VMSIG_SRC_VMHOST;
        case VMSIG_EV_CMD_MEMWRITE:
                return VMSIG_SRC_MEMCTX;
        case VMSIG_EV_LEASE_ACQUIRE:
        case VMSIG_EV_LEASE_RELEASE:
                return VMSIG_SRC_CORE;
        default:
                return -1;
        }
}

int vmsig_kind_lease_class(uint16_t kind)
{
        switch (vmsig_kind_seam(kind)) {
        case VMSIG_SRC_INPUT:
                return VMSIG_LEASE_INPUT;
        case VMSIG_SRC_VMHOST:
                return kind == VMSIG_EV_CMD_POWER ? VMSIG_LEASE_POWER : -1;
        case VMSIG_SRC_MEMCTX:
                return VMSIG_LEASE_MEMWRITE;
        default:
                return -1;
        }
}

int vmsig_kind_body_max(uint16_t kind)
{
        switch (kind) {
        case VMSIG_EV_MOVE_ABS:
        case VMSIG_EV_MOVE_REL:
        case VMSIG_EV_BUTTON:
        case VMSIG_EV_KEY:
        case VMSIG_EV_WHEEL:
                return sizeof(struct vmsig_input_body);
        case VMSIG_EV_CMD_POWER:
                return sizeof(struct vmsig_power_body);
        case VMSIG_EV_CMD_STATUS_QUERY:
                return 0;
        case VMSIG_EV_CMD_MEMWRITE:
                return sizeof(struct vmsig_memwrite_body);
        case VMSIG_EV_LEASE_ACQUIRE:
        case VMSIG_EV_LEASE_RELEASE:
                return sizeof(struct vmsig_lease_body);
        case VMSIG_EV_ROSTER:
                return sizeof(struct vmsig_roster_body);
        case VMSIG_EV_MEMCTX:
                return sizeof(struct vmsig_memctx_body);
        case VMSIG_EV_STATUS:
                return sizeof(struct vmsig_status_body);
        case VMSIG_EV_ACT_ACK:
                return sizeof(struct vmsig_ack_body);
        case VMSIG_EV_DIAG:
                return sizeof(struct vmsig_diag_body);
        case VMSIG_EV_LEASE_GRANT:
        case VMSIG_EV_LEASE_DENY:
        case VMSIG_EV_LEASE_REVOKE:
                return sizeof(struct vmsig_lease_body);
        default:
                return -1;
        }
}

const char *vmsig_kind_name(uint16_t kind)
{
        static const char *const names[] = {
                [VMSIG_EV_ROSTER] = "ROSTER",
                [VMSIG_EV_MEMCTX] = "MEMCTX",
                [VMSIG_EV_STATUS] = "STATUS",
                [VMSIG_EV_ACT_ACK] = "ACT_ACK",
                [VMSIG_EV_DIAG] = "DIAG",
                [VMSIG_EV_LEASE_GRANT] = "LEASE_GRANT",
                [VMSIG_EV_LEASE_DENY] = "LEASE_DENY",
                [VMSIG_EV_LEASE_REVOKE] = "LEASE_REVOKE",
                [VMSIG_EV_MOVE_ABS] = "MOVE_ABS",
                [VMSIG_EV_MOVE_REL] = "MOVE_REL",
                [VMSIG_EV_BUTTON] = "BUTTON",
                [VMSIG_EV_KEY] = "KEY",
                [VMSIG_EV_WHEEL] = "WHEEL",
                [VMSIG_EV_CMD_POWER] = "CMD_POWER",
                [VMSIG_EV_CMD_STATUS_QUERY] = "CMD_STATUS_QUERY",
                [VMSIG_EV_CMD_MEMWRITE] = "CMD_MEMWRITE",
                [VMSIG_EV_LEASE_ACQUIRE] = "LEASE_ACQUIRE",
                [VMSIG_EV_LEASE_RELEASE] = "LEASE_RELEASE",
        };
        if (kind < sizeof(names) / sizeof(names[0]) && names[kind])
                return names[kind];
        return "?";
}

const char *vmsig_source_name(uint8_t source)
{
        static const char *const names[] = {"core", "memctx", "input", "vmhost"};
        return source < VMSIG_SRC_MAX_ ? names[source] : "?";
}

static const char *const lease_names[VMSIG_LEASE_CLASS_COUNT] = {"input", "power", "memwrite"};

const char *vmsig_lease_class_name(uint8_t c)
{
        return c < VMSIG_LEASE_CLASS_COUNT ? lease_names[c] : "?";
}

int vmsig_lease_class_from_name(const char *s)
{
        for (int i = 0; i < VMSIG_LEASE_CLASS_COUNT; i++)
                if (s && strcasecmp(s, lease_names[i]) == 0)
                        return i;
        return -EINVAL;
}

const char *vmsig_run_state_name(uint8_t s)
{
        static const char *const names[] = {"unknown", "running",  "paused", "shutdown",
                                            "gone",    "panicked", "booting"};
        return s < sizeof(names) / sizeof(names[0]) ? names[s] : "?";
}

const char *vmsig_power_op_name(uint32_t op)
{
        static const char *const names[] = {NULL,    "on",     "off",      "reset",
                                            "pause", "resume", "powerdown"};
        return op >= 1 && op < sizeof(names) / sizeof(names[0]) ? names[op] : "?";
}
