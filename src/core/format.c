/* SPDX-License-Identifier: MIT */
/* Event -> text, for logs, the demo and `vmsigctl watch`. Bodies are decoded
 * only when their length matches the kind, so a malformed event from a
 * socket prints as such instead of as garbage. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <vmsig/adapter.h> /* vmsig_seams_format */
#include <vmsig/event.h>
#include <vmsig/memctx.h>

#include "core/kinds.h"

struct out {
        char *buf;
        size_t len, off;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct out *o, const char *fmt, ...)
{
        va_list ap;
        int n;

        if (o->off >= o->len)
                return;
        va_start(ap, fmt);
        n = vsnprintf(o->buf + o->off, o->len - o->off, fmt, ap);
        va_end(ap);
        if (n > 0)
                o->off += (size_t)n < o->len - o->off ? (size_t)n : o->len - o->off - 1;
}

/* Strings inside bodies are untrusted: bounded, and made printable. */
static void put_str(struct out *o, const char *s, size_t max, bool json)
{
        if (!s)
                return;
        for (size_t i = 0; i < max && s[i]; i++) {
                unsigned char ch = (unsigned char)s[i];
                if (json && (ch == '"' || ch == '\\'))
                        put(o, "\\%c", ch);
                else if (ch < 0x20 || ch >= 0x7f)
                        put(o, json ? "\\u%04x" : "\\x%02x", ch);
                else
                        put(o, "%c", ch);
        }
}

/* What every formatter gets: the output and the punctuation of the style
 * (text: key=value, json: "key": "value"). */
struct kind_fmt {
        struct out *o;
        bool json;
        const char *q, *sep, *eq, *k0;
};

#define FMT_LOCALS(f)                                                                                        \
        struct out *o = (f)->o;                                                                              \
        const bool json = (f)->json;                                                                         \
        const char *q = (f)->q, *sep = (f)->sep, *eq = (f)->eq, *k0 = (f)->k0;                               \
        (void)json, (void)q, (void)sep, (void)eq, (void)k0

/* The layout's formatter, when the body has a size the layout accepts. */
static void describe(struct out *o, const struct vmsig_event *ev, bool json)
{
        const struct kind_info *k = kind_info(ev->hdr.kind);
        struct kind_fmt f = {
            o, json, json ? "\"" : "", json ? ", " : " ", json ? "\": " : "=", json ? "\"" : ""};

        if (k && ev->hdr.body_len >= k->body->min && ev->hdr.body_len <= k->body->size) {
                k->body->format(&f, ev);
                return;
        }
        put(o, "%sbody_len%s%u%s%smalformed%strue", f.k0, f.eq, ev->hdr.body_len, f.sep, f.k0, f.eq);
}

void kind_format_none(struct kind_fmt *f, const struct vmsig_event *ev)
{
}

void kind_format_roster(struct kind_fmt *f, const struct vmsig_event *ev)
{
        FMT_LOCALS(f);
        struct vmsig_roster_body b;
        static const char *const ch[] = {"?", "appeared", "left", "changed"};
        memcpy(&b, ev->body, sizeof(b));
        put(o, "%sname%s%s", k0, eq, q);
        put_str(o, b.name, sizeof(b.name), json);
        put(o, "%s%s%schange%s%s%s%s", q, sep, k0, eq, q, b.change < 4 ? ch[b.change] : "?", q);
        char sn[64];
        put(o, "%s%sseams%s%s%s%s", sep, k0, eq, q, vmsig_seams_format(b.seams, " ", "none", sn, sizeof(sn)),
            q);
        put(o, "%s%srun_state%s%s%s%s", sep, k0, eq, q, vmsig_run_state_name(b.run_state), q);
}

void kind_format_status(struct kind_fmt *f, const struct vmsig_event *ev)
{
        FMT_LOCALS(f);
        struct vmsig_status_body b;
        memcpy(&b, ev->body, sizeof(b));
        put(o, "%srun_state%s%s%s%s%s%sreason%s%s", k0, eq, q, vmsig_run_state_name(b.run_state), q, sep, k0,
            eq, q);
        put_str(o, b.reason, sizeof(b.reason), json);
        put(o, "%s", q);
}

void kind_format_ack(struct kind_fmt *f, const struct vmsig_event *ev)
{
        FMT_LOCALS(f);
        struct vmsig_ack_body b;
        memcpy(&b, ev->body, sizeof(b));
        put(o, "%sfor%s%s%s%s%s%sresult%s%d%s%svalue%s%" PRIu64 "%s%smsg%s%s", k0, eq, q,
            vmsig_kind_name(b.cmd_kind), q, sep, k0, eq, b.result, sep, k0, eq, b.value, sep, k0, eq, q);
        put_str(o, b.msg, sizeof(b.msg), json);
        put(o, "%s", q);
}

void kind_format_diag(struct kind_fmt *f, const struct vmsig_event *ev)
{
        FMT_LOCALS(f);
        struct vmsig_diag_body b;
        memcpy(&b, ev->body, sizeof(b));
        put(o, "%scode%s%d%s%smsg%s%s", k0, eq, b.code, sep, k0, eq, q);
        put_str(o, b.msg, sizeof(b.msg), json);
        put(o, "%s", q);
}

void kind_format_lease(struct kind_fmt *f, const struct vmsig_event *ev)
{
        FMT_LOCALS(f);
        struct vmsig_lease_body b;
        static const char *const rs[] = {"", "released", "holder disconnected", "endpoint gone", "shutdown"};
        memcpy(&b, ev->body, sizeof(b));
        put(o, "%sclass%s%s%s%s", k0, eq, q, vmsig_lease_class_name(b.class_), q);
        if (b.holder_id) {
                put(o, "%s%sholder%s%s%u '", sep, k0, eq, q, b.holder_id);
                put_str(o, b.holder_name, sizeof(b.holder_name), json);
                put(o, "' uid %u pid %d%s", b.holder_uid, b.holder_pid, q);
        }
        if (b.reason && b.reason < 5)
                put(o, "%s%sreason%s%s%s%s", sep, k0, eq, q, rs[b.reason], q);
}

void kind_format_memctx(struct kind_fmt *f, const struct vmsig_event *ev)
{
        FMT_LOCALS(f);
        struct vmsig_memctx_body b;
        memcpy(&b, ev->body, sizeof(b));
        put(o,
            "%svalid%s%s%s%sepoch%s%" PRIu64 "%s%skernel_root%s%s0x%" PRIx64 "%s%s%spaging%s%u%s%sranges%s%u",
            k0, eq, b.valid ? "true" : "false", sep, k0, eq, b.epoch, sep, k0, eq, q, b.kernel_root, q, sep,
            k0, eq, b.paging, sep, k0, eq, b.nranges);
        if (b.kernel_base_pg)
                put(o, "%s%skernel_base%s%s0x%" PRIx64 "%s", sep, k0, eq, q,
                    vmsig_memctx_kbase_decode(b.kernel_base_pg), q);
}

void kind_format_input(struct kind_fmt *f, const struct vmsig_event *ev)
{
        FMT_LOCALS(f);
        struct vmsig_input_body b;
        memcpy(&b, ev->body, sizeof(b));
        put(o, "%sx%s%d%s%sy%s%d%s%scode%s%u%s%svalue%s%d", k0, eq, b.x, sep, k0, eq, b.y, sep, k0, eq,
            b.code, sep, k0, eq, b.value);
}

void kind_format_power(struct kind_fmt *f, const struct vmsig_event *ev)
{
        FMT_LOCALS(f);
        struct vmsig_power_body b;
        memcpy(&b, ev->body, sizeof(b));
        put(o, "%sop%s%s%s%s", k0, eq, q, vmsig_power_op_name(b.op), q);
}

/* The head only: the source bytes are not printed. */
void kind_format_memwrite(struct kind_fmt *f, const struct vmsig_event *ev)
{
        FMT_LOCALS(f);
        struct vmsig_memwrite_body b;
        memcpy(&b, ev->body, offsetof(struct vmsig_memwrite_body, data));
        put(o, "%saddr%s%s0x%" PRIx64 "%s%s%slen%s%u", k0, eq, q, b.addr, q, sep, k0, eq, b.len);
}

char *vmsig_event_format(const struct vmsig_event *ev, char *buf, size_t len)
{
        struct out o = {buf, len, 0};

        if (!len)
                return buf;
        buf[0] = '\0';
        put(&o, "%-12s ep %u", vmsig_kind_name(ev->hdr.kind), ev->hdr.endpoint);
        if (ev->hdr.corr)
                put(&o, " corr %" PRIu64, ev->hdr.corr);
        if (ev->hdr.flags & VMSIG_F_RETAINED)
                put(&o, " (retained)");
        put(&o, ": ");
        describe(&o, ev, false);
        return buf;
}

char *vmsig_event_format_json(const struct vmsig_event *ev, char *buf, size_t len)
{
        struct out o = {buf, len, 0};

        if (!len)
                return buf;
        buf[0] = '\0';
        put(&o,
            "{\"kind\": \"%s\", \"endpoint\": %u, \"source\": \"%s\", \"priority\": %u, \"flags\": %u, "
            "\"peer\": %u, \"corr\": %" PRIu64 ", \"seq\": %" PRIu64 ", \"ts_ns\": %" PRIu64
            ", \"cr3\": %" PRIu64 ", \"retained\": %s, ",
            vmsig_kind_name(ev->hdr.kind), ev->hdr.endpoint, vmsig_source_name(ev->hdr.source),
            ev->hdr.priority, ev->hdr.flags, ev->hdr.peer, ev->hdr.corr, ev->hdr.seq, ev->hdr.ts_ns,
            ev->hdr.cr3, (ev->hdr.flags & VMSIG_F_RETAINED) ? "true" : "false");
        put(&o, "\"body\": {");
        describe(&o, ev, true);
        put(&o, "}}");
        return buf;
}

char *vmsig_str_escape(const char *s, size_t max, bool json, char *buf, size_t len)
{
        struct out o = {buf, len, 0};

        if (!len)
                return buf;
        buf[0] = '\0';
        put_str(&o, s, max, json);
        return buf;
}
