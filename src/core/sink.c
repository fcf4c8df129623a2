/* SPDX-License-Identifier: MIT */
/* The adapters' emit helpers (adapter.h): one way to build an ACT_ACK, a
 * DIAG and a STATUS, beside the sink they go through. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <vmsig/adapter.h>
#include <vmsig/event.h>

#include "util/clock.h"

int vmsig_sink_ack(const struct vmsig_emit_sink *sink, uint8_t source, const struct vmsig_event_hdr *cmd,
                   int32_t result, uint64_t value, const char *fmt, ...)
{
        struct vmsig_event c, ev;
        char msg[VMSIG_MSG_MAX];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        c.hdr = *cmd;
        vmsig_ack_init(&ev, &c, source, result, value, "%s", msg);
        return sink->emit(sink, &ev);
}

int vmsig_sink_diag(const struct vmsig_emit_sink *sink, uint32_t endpoint, uint8_t source, int32_t code,
                    const char *fmt, ...)
{
        struct vmsig_diag_body d;
        struct vmsig_event ev;
        va_list ap;

        memset(&d, 0, sizeof(d));
        d.code = code;
        va_start(ap, fmt);
        vsnprintf(d.msg, sizeof(d.msg), fmt, ap);
        va_end(ap);
        vmsig_event_init(&ev, VMSIG_EV_DIAG, endpoint, source);
        ev.hdr.ts_ns = vmsig_now_ns();
        vmsig_event_set_body(&ev, &d, sizeof(d));
        return sink->emit(sink, &ev);
}

int vmsig_sink_status(const struct vmsig_emit_sink *sink, uint32_t endpoint, uint8_t run_state,
                      const struct vmsig_event_hdr *asker, const char *fmt, ...)
{
        struct vmsig_status_body b;
        struct vmsig_event ev;
        va_list ap;

        memset(&b, 0, sizeof(b));
        b.run_state = run_state;
        va_start(ap, fmt);
        vsnprintf(b.reason, sizeof(b.reason), fmt, ap);
        va_end(ap);
        vmsig_event_init(&ev, VMSIG_EV_STATUS, endpoint, VMSIG_SRC_VMHOST);
        ev.hdr.ts_ns = vmsig_now_ns();
        if (asker) {
                ev.hdr.peer = asker->peer; /* the answer goes to the asker */
                ev.hdr.corr = asker->corr;
        }
        vmsig_event_set_body(&ev, &b, sizeof(b));
        return sink->emit(sink, &ev);
}
