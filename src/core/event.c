/* SPDX-License-Identifier: MIT */
/* Event helpers. The per-kind facts are in the kind table (kinds.c). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <vmsig/event.h>

#include "core/kinds.h"
#include "util/clock.h"

void vmsig_event_init(struct vmsig_event *ev, uint16_t kind, uint32_t endpoint, uint8_t source)
{
        const struct kind_info *k = kind_info(kind);

        memset(&ev->hdr, 0, sizeof(ev->hdr));
        ev->hdr.kind = kind;
        ev->hdr.endpoint = endpoint;
        ev->hdr.source = source;
        ev->hdr.priority = k ? k->priority : VMSIG_PRIO_NORMAL;
        if (k && (k->flags & KIND_DROPPABLE))
                ev->hdr.flags |= VMSIG_F_DROPPABLE;
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

void vmsig_ack_init(struct vmsig_event *ack, const struct vmsig_event *cmd, uint8_t source, int32_t result,
                    uint64_t value, const char *fmt, ...)
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
        if (!ev || !ret || ev->hdr.kind != VMSIG_EV_CMD_MEMWRITE)
                return -EINVAL;
        /* No bound here: the bus applied its own before submit. */
        return memwrite_check(ev, true, payload, payload_len, UINT64_MAX, ret) == MW_OK ? 0 : -EINVAL;
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
        static const char *const names[] = {"unknown", "running",  "paused",  "shutdown",
                                            "gone",    "panicked", "booting", "starting"};
        return s < sizeof(names) / sizeof(names[0]) ? names[s] : "?";
}

const char *vmsig_power_op_name(uint32_t op)
{
        static const char *const names[] = {NULL, "on", "off", "reset", "pause", "resume", "powerdown"};
        return op >= 1 && op < sizeof(names) / sizeof(names[0]) ? names[op] : "?";
}
