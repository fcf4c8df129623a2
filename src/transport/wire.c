/* SPDX-License-Identifier: MIT */
/* Wire codec of the unix-socket transport. Everything read from the socket is
 * untrusted on both ends, so decoding checks every length and field before a
 * byte is interpreted, and the receiver never buffers more than one frame
 * (plus one bounded tail). */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <vmsig/bus.h>

#include "core/kinds.h"
#include "transport/wire.h"

/* ---- little-endian access, explicit and alignment-free ---- */

static void put16(uint8_t *p, uint16_t v)
{
        v = htole16(v);
        memcpy(p, &v, 2);
}
static void put32(uint8_t *p, uint32_t v)
{
        v = htole32(v);
        memcpy(p, &v, 4);
}
static void put64(uint8_t *p, uint64_t v)
{
        v = htole64(v);
        memcpy(p, &v, 8);
}
static uint16_t get16(const uint8_t *p)
{
        uint16_t v;
        memcpy(&v, p, 2);
        return le16toh(v);
}
static uint32_t get32(const uint8_t *p)
{
        uint32_t v;
        memcpy(&v, p, 4);
        return le32toh(v);
}
static uint64_t get64(const uint8_t *p)
{
        uint64_t v;
        memcpy(&v, p, 8);
        return le64toh(v);
}

/* ---- violation names ---- */

static const char *const err_names[WIRE_E_MAX_] = {
    [WIRE_OK] = "no error",
    [WIRE_E_TYPE] = "unknown frame type",
    [WIRE_E_DIRECTION] = "frame type not allowed in this direction",
    [WIRE_E_ORDER] = "frame out of order (handshake first, once)",
    [WIRE_E_RESERVED] = "reserved or \"send 0\" field not zero",
    [WIRE_E_LENGTH] = "bad payload length for the frame type",
    [WIRE_E_MAGIC] = "bad magic",
    [WIRE_E_VERSION] = "unsupported protocol version",
    [WIRE_E_STRING] = "string not NUL-terminated",
    [WIRE_E_FIELD] = "field out of range",
    [WIRE_E_BODY_LEN] = "event body_len too big or inconsistent with the frame length",
    [WIRE_E_BODY_KIND] = "event body_len inconsistent with its kind",
    [WIRE_E_KIND] = "unknown event kind",
    [WIRE_E_KIND_UP] = "UP event kind sent by a client",
    [WIRE_E_KIND_DOWN] = "DOWN event kind sent by the server",
    [WIRE_E_FLAGS] = "event flag not allowed",
    [WIRE_E_SOURCE] = "unknown event source",
    [WIRE_E_TAIL_LEN] = "bad source tail length",
    [WIRE_E_FD] = "file descriptor on the wrong frame, missing, or more than one",
    [WIRE_E_CTRUNC] = "ancillary data truncated",
};

const char *wire_err_str(enum wire_err e)
{
        if ((unsigned)e < WIRE_E_MAX_ && err_names[e])
                return err_names[e];
        return "unknown violation";
}

int wire_err_errno(enum wire_err e)
{
        switch (e) {
        case WIRE_OK:
                return 0;
        case WIRE_E_VERSION:
                return -EPROTONOSUPPORT;
        case WIRE_E_TAIL_LEN:
                return -EMSGSIZE;
        default:
                return -EPROTO;
        }
}

/* ---- helpers ---- */

static bool str_terminated(const char *s, size_t n)
{
        return memchr(s, '\0', n) != NULL;
}

/* Copy a C string into a fixed field, NUL-padded; truncates. */
static void put_str(uint8_t *p, size_t n, const char *s)
{
        memset(p, 0, n);
        if (s) {
                size_t l = strnlen(s, n - 1);
                memcpy(p, s, l);
        }
}

static ssize_t put_prefix(void *buf, size_t cap, uint16_t type, uint32_t len)
{
        if (!buf || cap < WIRE_PREFIX_LEN + (size_t)len)
                return -ENOBUFS;
        put32(buf, len);
        put16((uint8_t *)buf + 4, type);
        put16((uint8_t *)buf + 6, 0);
        return WIRE_PREFIX_LEN + (ssize_t)len;
}

/* ---- bodies: their layouts are in the kind table (core/kinds.c) ---- */

_Static_assert(offsetof(struct vmsig_memwrite_body, data) == WIRE_MEMWRITE_HDR_LEN, "memwrite head");

/* A body check's finding as the violation the wire reports. */
static const enum wire_err body_errs[] = {
    [KIND_OK] = WIRE_OK,
    [KIND_E_SIZE] = WIRE_E_BODY_KIND,
    [KIND_E_RESERVED] = WIRE_E_RESERVED,
    [KIND_E_STRING] = WIRE_E_STRING,
    [KIND_E_FIELD] = WIRE_E_FIELD,
};

/* ---- event checks ---- */

/* sending: the sender encoding its own event. Reserved fields of UP bodies
 * are checked only then: a client ignores them, so that a later daemon can
 * give them a meaning without breaking older clients (docs/protocol.md). */
static enum wire_err check_event(const struct vmsig_event *ev, bool from_client, bool sending)
{
        const struct kind_info *k = kind_info(ev->hdr.kind);
        uint16_t fl = ev->hdr.flags;
        const uint16_t known =
            VMSIG_F_FF | VMSIG_F_SRC_PAYLOAD | VMSIG_F_DROPPABLE | VMSIG_F_RETAINED | VMSIG_F_HAS_FD;

        if (ev->hdr.reserved0 || ev->hdr.reserved1)
                return WIRE_E_RESERVED;
        if (ev->hdr.body_len > VMSIG_BODY_MAX)
                return WIRE_E_BODY_LEN;
        if (!k)
                return WIRE_E_KIND;
        if (ev->hdr.source >= VMSIG_SRC_MAX_)
                return WIRE_E_SOURCE;
        if (fl & ~known)
                return WIRE_E_FLAGS;
        /* cr3 belongs to the kinds that have it (CMD_MEMWRITE); elsewhere "0". */
        if (ev->hdr.cr3 && !(k->flags & KIND_CR3))
                return WIRE_E_RESERVED;
        if (from_client) {
                if (k->dir == KIND_UP)
                        return WIRE_E_KIND_UP;
                /* The daemon stamps peer and seq; a client sends 0. */
                if (ev->hdr.peer || ev->hdr.seq)
                        return WIRE_E_RESERVED;
                if (fl & VMSIG_F_RETAINED)
                        return WIRE_E_FLAGS;
                /* A source other than the inline bytes: a tail or an fd
                 * (version 2, checked by the receiver), never both. */
                if ((fl & (VMSIG_F_SRC_PAYLOAD | VMSIG_F_HAS_FD)) &&
                    (!(k->flags & KIND_TAIL) || ev->hdr.codec != 0 ||
                     (fl & (VMSIG_F_SRC_PAYLOAD | VMSIG_F_HAS_FD)) == (VMSIG_F_SRC_PAYLOAD | VMSIG_F_HAS_FD)))
                        return WIRE_E_FLAGS;
        } else {
                if (k->dir == KIND_DOWN)
                        return WIRE_E_KIND_DOWN;
                if (fl & (VMSIG_F_FF | VMSIG_F_SRC_PAYLOAD))
                        return WIRE_E_FLAGS;
                if ((fl & VMSIG_F_HAS_FD) && !(k->flags & KIND_FD))
                        return WIRE_E_FLAGS;
        }
        return body_errs[kind_check_body(ev, sending)];
}

enum wire_err wire_check_event(const struct vmsig_event *ev, bool from_client)
{
        return check_event(ev, from_client, false);
}

/* ---- encoders ---- */

ssize_t wire_encode_hello_raw(void *buf, size_t cap, const struct wire_hello *h)
{
        ssize_t n = put_prefix(buf, cap, WIRE_HELLO, WIRE_HELLO_LEN);
        uint8_t *p = (uint8_t *)buf + WIRE_PREFIX_LEN;

        if (n < 0)
                return n;
        put32(p, h->magic);
        put16(p + 4, h->version_min);
        put16(p + 6, h->version_max);
        put32(p + 8, 0);
        memcpy(p + 12, h->name, VMSIG_NAME_MAX);
        return n;
}

ssize_t wire_encode_hello(void *buf, size_t cap, const char *name)
{
        struct wire_hello h = {
            .magic = WIRE_MAGIC, .version_min = WIRE_VERSION, .version_max = WIRE_VERSION_MAX};

        if (name && strlen(name) >= VMSIG_NAME_MAX)
                return -EINVAL;
        put_str((uint8_t *)h.name, sizeof(h.name), name);
        return wire_encode_hello_raw(buf, cap, &h);
}

ssize_t wire_encode_welcome(void *buf, size_t cap, const struct wire_welcome *w)
{
        ssize_t n = put_prefix(buf, cap, WIRE_WELCOME, WIRE_WELCOME_LEN);
        uint8_t *p = (uint8_t *)buf + WIRE_PREFIX_LEN;

        if (n < 0)
                return n;
        put16(p, w->version);
        put16(p + 2, 0);
        put32(p + 4, w->control_id);
        put32(p + 8, w->caps);
        put32(p + 12, w->uid);
        put32(p + 16, w->body_max);
        put32(p + 20, w->tail_max);
        put32(p + 24, w->queue_bytes);
        return n;
}

ssize_t wire_encode_error(void *buf, size_t cap, int32_t code, const char *msg)
{
        ssize_t n;
        uint8_t *p = (uint8_t *)buf + WIRE_PREFIX_LEN;

        if (code >= 0 || code < -4095)
                return -EINVAL;
        n = put_prefix(buf, cap, WIRE_ERROR, WIRE_ERROR_LEN);
        if (n < 0)
                return n;
        put32(p, (uint32_t)code);
        put32(p + 4, 0);
        put_str(p + 8, VMSIG_MSG_MAX, msg);
        return n;
}

ssize_t wire_encode_event(void *buf, size_t cap, const struct vmsig_event *ev, bool from_client)
{
        const struct vmsig_event_hdr *h = &ev->hdr;
        uint8_t *p = (uint8_t *)buf + WIRE_PREFIX_LEN;
        ssize_t n;

        if (check_event(ev, from_client, true) != WIRE_OK)
                return -EINVAL;
        n = put_prefix(buf, cap, WIRE_EVENT, WIRE_EVENT_HDR_LEN + h->body_len);
        if (n < 0)
                return n;
        put16(p + 0, h->kind);
        p[2] = h->source;
        p[3] = h->codec;
        p[4] = h->priority;
        p[5] = 0;
        put16(p + 6, h->flags);
        put32(p + 8, h->endpoint);
        put32(p + 12, h->peer);
        put64(p + 16, h->corr);
        put64(p + 24, h->seq);
        put64(p + 32, h->ts_ns);
        put64(p + 40, h->cr3);
        put32(p + 48, h->body_len);
        put32(p + 52, 0);
        memcpy(p + WIRE_EVENT_HDR_LEN, ev->body, h->body_len);
        kind_body_byteorder(h->kind, h->codec, p + WIRE_EVENT_HDR_LEN, h->body_len);
        return n;
}

ssize_t wire_encode_subscribe(void *buf, size_t cap, uint64_t corr, uint32_t endpoint, uint64_t kinds)
{
        ssize_t n;
        uint8_t *p = (uint8_t *)buf + WIRE_PREFIX_LEN;

        if (kinds == 0 || (kinds & ~(uint64_t)VMSIG_KINDS_ALL_UP))
                return -EINVAL;
        n = put_prefix(buf, cap, WIRE_SUBSCRIBE, WIRE_SUBSCRIBE_LEN);
        if (n < 0)
                return n;
        put64(p, corr);
        put32(p + 8, endpoint);
        put32(p + 12, 0);
        put64(p + 16, kinds);
        return n;
}

ssize_t wire_encode_unsubscribe(void *buf, size_t cap, uint64_t corr, uint32_t endpoint)
{
        ssize_t n = put_prefix(buf, cap, WIRE_UNSUBSCRIBE, WIRE_UNSUBSCRIBE_LEN);
        uint8_t *p = (uint8_t *)buf + WIRE_PREFIX_LEN;

        if (n < 0)
                return n;
        put64(p, corr);
        put32(p + 8, endpoint);
        put32(p + 12, 0);
        return n;
}

ssize_t wire_encode_reply(void *buf, size_t cap, uint64_t corr, uint16_t request_type, int32_t result,
                          const char *msg)
{
        ssize_t n;
        uint8_t *p = (uint8_t *)buf + WIRE_PREFIX_LEN;

        if ((request_type != WIRE_SUBSCRIBE && request_type != WIRE_UNSUBSCRIBE) || result > 0 ||
            result < -4095)
                return -EINVAL;
        n = put_prefix(buf, cap, WIRE_REPLY, WIRE_REPLY_LEN);
        if (n < 0)
                return n;
        put64(p, corr);
        put16(p + 8, request_type);
        put16(p + 10, 0);
        put32(p + 12, (uint32_t)result);
        put_str(p + 16, VMSIG_MSG_MAX, msg);
        return n;
}

ssize_t wire_encode_tail_len(void *buf, size_t cap, uint32_t len)
{
        if (!buf || cap < WIRE_TAIL_LEN_LEN)
                return -ENOBUFS;
        put32(buf, len);
        return WIRE_TAIL_LEN_LEN;
}

/* ---- decoders ---- */

/* The exact payload length of a fixed-size type, 0 for EVENT, -1 unknown. */
static int fixed_len(uint16_t type)
{
        switch (type) {
        case WIRE_HELLO:
                return WIRE_HELLO_LEN;
        case WIRE_WELCOME:
                return WIRE_WELCOME_LEN;
        case WIRE_ERROR:
                return WIRE_ERROR_LEN;
        case WIRE_EVENT:
                return 0;
        case WIRE_SUBSCRIBE:
                return WIRE_SUBSCRIBE_LEN;
        case WIRE_UNSUBSCRIBE:
                return WIRE_UNSUBSCRIBE_LEN;
        case WIRE_REPLY:
                return WIRE_REPLY_LEN;
        default:
                return -1;
        }
}

static bool type_allowed(enum wire_side side, uint16_t type)
{
        if (type == WIRE_EVENT)
                return true;
        if (side == WIRE_SIDE_SERVER)
                return type == WIRE_HELLO || type == WIRE_SUBSCRIBE || type == WIRE_UNSUBSCRIBE;
        return type == WIRE_WELCOME || type == WIRE_ERROR || type == WIRE_REPLY;
}

/* Type and length alone: what can be judged from the 8-byte prefix. */
static enum wire_err check_prefix(enum wire_side side, uint16_t type, uint32_t len)
{
        int fl = fixed_len(type);

        if (fl < 0)
                return WIRE_E_TYPE;
        if (!type_allowed(side, type))
                return WIRE_E_DIRECTION;
        if (fl > 0)
                return len == (uint32_t)fl ? WIRE_OK : WIRE_E_LENGTH;
        return len >= WIRE_EVENT_MIN && len <= WIRE_EVENT_MAX ? WIRE_OK : WIRE_E_LENGTH;
}

static enum wire_err decode_event(enum wire_side side, const uint8_t *p, size_t len, struct vmsig_event *ev)
{
        struct vmsig_event_hdr *h = &ev->hdr;

        memset(h, 0, sizeof(*h));
        h->kind = get16(p);
        h->source = p[2];
        h->codec = p[3];
        h->priority = p[4];
        h->reserved0 = p[5];
        h->flags = get16(p + 6);
        h->endpoint = get32(p + 8);
        h->peer = get32(p + 12);
        h->corr = get64(p + 16);
        h->seq = get64(p + 24);
        h->ts_ns = get64(p + 32);
        h->cr3 = get64(p + 40);
        h->body_len = get32(p + 48);
        h->reserved1 = get32(p + 52);
        if (h->body_len > VMSIG_BODY_MAX || (size_t)h->body_len + WIRE_EVENT_HDR_LEN != len)
                return WIRE_E_BODY_LEN;
        memcpy(ev->body, p + WIRE_EVENT_HDR_LEN, h->body_len);
        memset(ev->body + h->body_len, 0, VMSIG_BODY_MAX - h->body_len);
        kind_body_byteorder(h->kind, h->codec, ev->body, h->body_len);
        return wire_check_event(ev, side == WIRE_SIDE_SERVER);
}

enum wire_err wire_decode(enum wire_side side, uint16_t type, const uint8_t *p, size_t len,
                          struct wire_frame *ret)
{
        enum wire_err e;

        if (len > UINT32_MAX)
                return WIRE_E_LENGTH;
        e = check_prefix(side, type, (uint32_t)len);
        if (e != WIRE_OK)
                return e;
        memset(ret, 0, offsetof(struct wire_frame, u));
        ret->type = type;
        ret->tail = NULL;
        ret->tail_len = 0;

        switch (type) {
        case WIRE_HELLO: {
                struct wire_hello *h = &ret->u.hello;
                h->magic = get32(p);
                h->version_min = get16(p + 4);
                h->version_max = get16(p + 6);
                memcpy(h->name, p + 12, VMSIG_NAME_MAX);
                if (h->magic != WIRE_MAGIC)
                        return WIRE_E_MAGIC;
                if (get32(p + 8) != 0)
                        return WIRE_E_RESERVED;
                if (h->version_min > h->version_max || h->version_min > WIRE_VERSION_MAX ||
                    h->version_max < WIRE_VERSION)
                        return WIRE_E_VERSION;
                if (!str_terminated(h->name, VMSIG_NAME_MAX))
                        return WIRE_E_STRING;
                return WIRE_OK;
        }
        case WIRE_WELCOME: {
                struct wire_welcome *w = &ret->u.welcome;
                w->version = get16(p);
                w->control_id = get32(p + 4);
                w->caps = get32(p + 8);
                w->uid = get32(p + 12);
                w->body_max = get32(p + 16);
                w->tail_max = get32(p + 20);
                w->queue_bytes = get32(p + 24);
                if (w->version < WIRE_VERSION || w->version > WIRE_VERSION_MAX)
                        return WIRE_E_VERSION;
                if (get16(p + 2) != 0)
                        return WIRE_E_RESERVED;
                if (w->control_id == 0 || (w->caps & ~(uint32_t)VMSIG_CAP_ALL) ||
                    w->body_max != VMSIG_BODY_MAX || w->tail_max == 0 || w->tail_max > WIRE_TAIL_MAX_LIMIT ||
                    w->queue_bytes == 0)
                        return WIRE_E_FIELD;
                return WIRE_OK;
        }
        case WIRE_ERROR: {
                struct wire_error *er = &ret->u.error;
                er->code = (int32_t)get32(p);
                memcpy(er->msg, p + 8, VMSIG_MSG_MAX);
                if (get32(p + 4) != 0)
                        return WIRE_E_RESERVED;
                if (er->code >= 0 || er->code < -4095)
                        return WIRE_E_FIELD;
                if (!str_terminated(er->msg, VMSIG_MSG_MAX))
                        return WIRE_E_STRING;
                return WIRE_OK;
        }
        case WIRE_EVENT:
                return decode_event(side, p, len, &ret->u.event);
        case WIRE_SUBSCRIBE:
        case WIRE_UNSUBSCRIBE: {
                struct wire_sub *s = &ret->u.sub;
                s->corr = get64(p);
                s->endpoint = get32(p + 8);
                s->kinds = type == WIRE_SUBSCRIBE ? get64(p + 16) : 0;
                if (get32(p + 12) != 0)
                        return WIRE_E_RESERVED;
                if (type == WIRE_SUBSCRIBE && (s->kinds == 0 || (s->kinds & ~(uint64_t)VMSIG_KINDS_ALL_UP)))
                        return WIRE_E_FIELD;
                return WIRE_OK;
        }
        case WIRE_REPLY: {
                struct wire_reply *r = &ret->u.reply;
                r->corr = get64(p);
                r->request_type = get16(p + 8);
                r->result = (int32_t)get32(p + 12);
                memcpy(r->msg, p + 16, VMSIG_MSG_MAX);
                if (get16(p + 10) != 0)
                        return WIRE_E_RESERVED;
                if ((r->request_type != WIRE_SUBSCRIBE && r->request_type != WIRE_UNSUBSCRIBE) ||
                    r->result > 0 || r->result < -4095)
                        return WIRE_E_FIELD;
                if (!str_terminated(r->msg, VMSIG_MSG_MAX))
                        return WIRE_E_STRING;
                return WIRE_OK;
        }
        default:
                return WIRE_E_TYPE;
        }
}

/* ---- receiver ---- */

int wire_rx_init(struct wire_rx *rx, enum wire_side side, uint32_t tail_max)
{
        if (!rx || (side != WIRE_SIDE_SERVER && side != WIRE_SIDE_CLIENT))
                return -EINVAL;
        if (side == WIRE_SIDE_SERVER ? (tail_max == 0 || tail_max > WIRE_TAIL_MAX_LIMIT) : tail_max != 0)
                return -EINVAL;
        memset(rx, 0, sizeof(*rx));
        rx->side = side;
        rx->state = WIRE_RX_PREFIX;
        rx->tail_max = tail_max;
        if (tail_max) {
                /* Allocated once: a tail never costs an allocation and never
                 * exceeds this. */
                rx->tail = malloc(tail_max);
                if (!rx->tail)
                        return -ENOMEM;
        }
        return 0;
}

void wire_rx_done(struct wire_rx *rx)
{
        if (!rx)
                return;
        free(rx->tail);
        rx->tail = NULL;
        rx->tail_max = 0;
}

void wire_rx_fail(struct wire_rx *rx, enum wire_err e)
{
        if (rx->state == WIRE_RX_FAILED)
                return;
        rx->state = WIRE_RX_FAILED;
        rx->err = e == WIRE_OK ? WIRE_E_FIELD : e;
}

static ssize_t rx_fail(struct wire_rx *rx, enum wire_err e)
{
        wire_rx_fail(rx, e);
        return -EBADMSG;
}

static void rx_reset(struct wire_rx *rx)
{
        rx->state = WIRE_RX_PREFIX;
        rx->have = 0;
        rx->need = 0;
        rx->tlen_have = 0;
        rx->tail_len = 0;
        rx->tail_have = 0;
}

static size_t take(uint8_t *dst, uint32_t *have, uint32_t want, const uint8_t *src, size_t len)
{
        size_t n = want - *have;
        if (n > len)
                n = len;
        memcpy(dst + *have, src, n);
        *have += (uint32_t)n;
        return n;
}

/* A decoded frame is complete: apply the handshake order rule. */
static enum wire_err rx_order(struct wire_rx *rx, uint16_t type)
{
        bool hs = rx->side == WIRE_SIDE_SERVER ? type == WIRE_HELLO : type == WIRE_WELCOME;

        if (!rx->handshaken) {
                /* A client may be refused with ERROR instead of WELCOME. */
                if (hs) {
                        rx->handshaken = true;
                        return WIRE_OK;
                }
                return rx->side == WIRE_SIDE_CLIENT && type == WIRE_ERROR ? WIRE_OK : WIRE_E_ORDER;
        }
        return hs ? WIRE_E_ORDER : WIRE_OK;
}

ssize_t wire_rx_feed(struct wire_rx *rx, const void *data, size_t len, const struct wire_frame **ret_frame)
{
        const uint8_t *src = data;
        size_t used = 0;
        enum wire_err e;

        *ret_frame = NULL;
        if (rx->state == WIRE_RX_FAILED)
                return -EBADMSG;
        if (len && !data)
                return -EINVAL;

        while (used < len) {
                switch (rx->state) {
                case WIRE_RX_PREFIX: {
                        uint32_t plen;
                        if (rx->have == 0)
                                rx->frame_off = rx->off + used;
                        used += take(rx->buf, &rx->have, WIRE_PREFIX_LEN, src + used, len - used);
                        if (rx->have < WIRE_PREFIX_LEN)
                                break;
                        plen = get32(rx->buf);
                        rx->type = get16(rx->buf + 4);
                        /* Judge the length before buffering a single payload
                         * byte: nothing oversized is ever read. */
                        e = check_prefix(rx->side, rx->type, plen);
                        if (e == WIRE_OK && get16(rx->buf + 6) != 0)
                                e = WIRE_E_RESERVED;
                        if (e == WIRE_OK && !rx->handshaken) {
                                bool ok = rx->side == WIRE_SIDE_SERVER
                                              ? rx->type == WIRE_HELLO
                                              : rx->type == WIRE_WELCOME || rx->type == WIRE_ERROR;
                                if (!ok)
                                        e = WIRE_E_ORDER;
                        }
                        if (e != WIRE_OK) {
                                rx->off += used;
                                return rx_fail(rx, e);
                        }
                        rx->need = plen;
                        rx->state = WIRE_RX_PAYLOAD;
                        break;
                }
                case WIRE_RX_PAYLOAD: {
                        const struct vmsig_event *ev;
                        used += take(rx->buf, &rx->have, WIRE_PREFIX_LEN + rx->need, src + used, len - used);
                        if (rx->have < WIRE_PREFIX_LEN + rx->need)
                                break;
                        e = wire_decode(rx->side, rx->type, rx->buf + WIRE_PREFIX_LEN, rx->need, &rx->frame);
                        if (e == WIRE_OK)
                                e = rx_order(rx, rx->type);
                        if (e != WIRE_OK) {
                                rx->off += used;
                                return rx_fail(rx, e);
                        }
                        rx->frame.stream_off = rx->frame_off;
                        ev = &rx->frame.u.event;
                        /* The fd source exists only on a version-2 connection. */
                        if (rx->type == WIRE_EVENT && rx->side == WIRE_SIDE_SERVER &&
                            (ev->hdr.flags & VMSIG_F_HAS_FD) && !rx->fd_src) {
                                rx->off += used;
                                return rx_fail(rx, WIRE_E_FLAGS);
                        }
                        if (rx->type == WIRE_EVENT && (ev->hdr.flags & VMSIG_F_SRC_PAYLOAD)) {
                                /* Phase two: the promised tail must be read
                                 * in full before anything else. */
                                rx->state = WIRE_RX_TAIL_LEN;
                                break;
                        }
                        rx->off += used;
                        rx_reset(rx);
                        *ret_frame = &rx->frame;
                        return (ssize_t)used;
                }
                case WIRE_RX_TAIL_LEN:
                        used += take(rx->tlen, &rx->tlen_have, WIRE_TAIL_LEN_LEN, src + used, len - used);
                        if (rx->tlen_have < WIRE_TAIL_LEN_LEN)
                                break;
                        rx->tail_len = get32(rx->tlen);
                        /* The frame passed; now its length against the tail
                         * announced and tail_max (the bytes land in rx->tail). */
                        if (memwrite_check(&rx->frame.u.event, true, rx->tail, rx->tail_len, rx->tail_max,
                                           NULL) != MW_OK) {
                                rx->off += used;
                                return rx_fail(rx, WIRE_E_TAIL_LEN);
                        }
                        rx->tail_have = 0;
                        rx->state = WIRE_RX_TAIL;
                        break;
                case WIRE_RX_TAIL:
                        used += take(rx->tail, &rx->tail_have, rx->tail_len, src + used, len - used);
                        if (rx->tail_have < rx->tail_len)
                                break;
                        rx->frame.tail = rx->tail;
                        rx->frame.tail_len = rx->tail_len;
                        rx->off += used;
                        rx_reset(rx);
                        *ret_frame = &rx->frame;
                        return (ssize_t)used;
                case WIRE_RX_FAILED:
                default:
                        return -EBADMSG;
                }
        }
        rx->off += used;
        return (ssize_t)used;
}
