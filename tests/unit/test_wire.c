/* SPDX-License-Identifier: MIT */
/* Wire codec: round trips of every frame type and event kind, every class of
 * violation, and the incremental receiver under arbitrary splits. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <vmsig/bus.h>
#include <vmsig/event.h>
#include <vmsig/memctx.h>

#include "transport/wire.h"

#define TAIL_MAX 4096u

/* ---- helpers ---- */

struct stream {
        uint8_t *b;
        size_t len, cap;
};

static void s_put(struct stream *s, const void *p, size_t n)
{
        if (s->len + n > s->cap) {
                s->cap = (s->len + n) * 2 + 64;
                s->b = realloc(s->b, s->cap);
                assert_non_null(s->b);
        }
        memcpy(s->b + s->len, p, n);
        s->len += n;
}

static void s_frame(struct stream *s, ssize_t n, const uint8_t *buf)
{
        assert_true(n > 0);
        s_put(s, buf, (size_t)n);
}

struct got {
        struct wire_frame f[64];
        uint8_t *tail[64];
        size_t n;
};

static void got_free(struct got *g)
{
        for (size_t i = 0; i < g->n; i++)
                free(g->tail[i]);
        g->n = 0;
}

/* Feed data in chunks chosen by split(); returns 0 or the violation. */
static enum wire_err feed_split(struct wire_rx *rx, const uint8_t *data, size_t len, struct got *g,
                                size_t (*split)(size_t left))
{
        size_t off = 0;

        while (off < len) {
                size_t chunk = split(len - off);
                size_t coff = 0;
                while (coff < chunk) {
                        const struct wire_frame *f;
                        ssize_t n = wire_rx_feed(rx, data + off + coff, chunk - coff, &f);
                        if (n < 0) {
                                assert_int_equal(n, -EBADMSG);
                                return wire_rx_error(rx);
                        }
                        assert_true((size_t)n <= chunk - coff);
                        coff += (size_t)n;
                        if (f) {
                                assert_true(g->n < 64);
                                g->f[g->n] = *f;
                                g->tail[g->n] = NULL;
                                if (f->tail) {
                                        g->tail[g->n] = malloc(f->tail_len);
                                        memcpy(g->tail[g->n], f->tail, f->tail_len);
                                }
                                g->n++;
                        } else {
                                /* Without a frame, a feed only stops when out of bytes. */
                                assert_int_equal(coff, chunk);
                        }
                }
                off += chunk;
        }
        return WIRE_OK;
}

static size_t split_all(size_t left)
{
        return left;
}
static size_t split_one(size_t left)
{
        (void)left;
        return 1;
}
static size_t split_rand(size_t left)
{
        size_t n = 1 + (size_t)(rand() % 700);
        return n < left ? n : left;
}

static enum wire_err feed_once(enum wire_side side, const uint8_t *data, size_t len, struct got *g)
{
        struct wire_rx rx;
        enum wire_err e;

        assert_int_equal(wire_rx_init(&rx, side, side == WIRE_SIDE_SERVER ? TAIL_MAX : 0), 0);
        e = feed_split(&rx, data, len, g, split_all);
        wire_rx_done(&rx);
        return e;
}

/* A distinctive event of each kind, body filled per its typed struct. */
static void make_event(struct vmsig_event *ev, uint16_t kind)
{
        memset(ev, 0, sizeof(*ev));
        vmsig_event_init(ev, kind, 7, VMSIG_SRC_CORE);
        ev->hdr.codec = 0;
        ev->hdr.endpoint = 0x01020304;
        ev->hdr.peer = 0x0a0b0c0d;
        ev->hdr.corr = 0x1122334455667788ull;
        ev->hdr.seq = 0x8877665544332211ull;
        ev->hdr.ts_ns = 0x0102030405060708ull;
        ev->hdr.priority = 77;

        switch (kind) {
        case VMSIG_EV_MOVE_ABS:
        case VMSIG_EV_MOVE_REL:
        case VMSIG_EV_BUTTON:
        case VMSIG_EV_KEY:
        case VMSIG_EV_WHEEL: {
                struct vmsig_input_body b = {.x = -123456, .y = 32767, .code = 0xdeadbeef, .value = -1};
                ev->hdr.source = VMSIG_SRC_INPUT;
                ev->hdr.flags = VMSIG_F_FF;
                vmsig_event_set_body(ev, &b, sizeof(b));
                break;
        }
        case VMSIG_EV_CMD_POWER: {
                struct vmsig_power_body b = {.op = VMSIG_POWER_RESET};
                ev->hdr.source = VMSIG_SRC_VMHOST;
                vmsig_event_set_body(ev, &b, sizeof(b));
                break;
        }
        case VMSIG_EV_CMD_STATUS_QUERY:
                ev->hdr.source = VMSIG_SRC_VMHOST;
                break;
        case VMSIG_EV_CMD_MEMWRITE: {
                struct vmsig_memwrite_body b = {
                    .addr = 0xffff800000001000ull, .len = 5, .flags = VMSIG_MEMWRITE_PHYS};
                memcpy(b.data, "hello", 5);
                ev->hdr.source = VMSIG_SRC_MEMCTX;
                ev->hdr.cr3 = 0x1aa000;
                vmsig_event_set_body(ev, &b, 16 + 5);
                break;
        }
        case VMSIG_EV_LEASE_ACQUIRE:
        case VMSIG_EV_LEASE_RELEASE:
        case VMSIG_EV_LEASE_GRANT:
        case VMSIG_EV_LEASE_DENY:
        case VMSIG_EV_LEASE_REVOKE: {
                struct vmsig_lease_body b = {.class_ = VMSIG_LEASE_MEMWRITE,
                                             .reason = 2,
                                             .holder_id = 9,
                                             .holder_uid = 1000,
                                             .holder_pid = -5};
                strcpy(b.holder_name, "agent");
                if (vmsig_kind_is_down(kind)) /* a client sends the class alone */
                        b = (struct vmsig_lease_body){.class_ = VMSIG_LEASE_MEMWRITE};
                vmsig_event_set_body(ev, &b, sizeof(b));
                break;
        }
        case VMSIG_EV_ROSTER: {
                struct vmsig_roster_body b = {.change = 1, .seams = 0xe, .run_state = 1, .reserved2 = 0};
                strcpy(b.name, "win11");
                vmsig_event_set_body(ev, &b, sizeof(b));
                break;
        }
        case VMSIG_EV_MEMCTX: {
                struct vmsig_memctx_body b = {
                    .epoch = 3, .kernel_root = 0x1ad000, .valid = 1, .paging = 4, .os_kind = 2, .nranges = 2};
                b.ranges[0] = (struct vmsig_ram_range){0, 0x80000000ull, 0};
                b.ranges[1] = (struct vmsig_ram_range){0x100000000ull, 0x40000000ull, 0x80000000ull};
                ev->hdr.source = VMSIG_SRC_MEMCTX;
                ev->hdr.flags = VMSIG_F_HAS_FD | VMSIG_F_RETAINED;
                vmsig_event_set_body(ev, &b, sizeof(b));
                break;
        }
        case VMSIG_EV_STATUS: {
                struct vmsig_status_body b = {.run_state = VMSIG_RUN_PAUSED};
                strcpy(b.reason, "RESET (guest)");
                ev->hdr.source = VMSIG_SRC_VMHOST;
                vmsig_event_set_body(ev, &b, sizeof(b));
                break;
        }
        case VMSIG_EV_ACT_ACK: {
                struct vmsig_ack_body b = {.result = -EPERM, .cmd_kind = VMSIG_EV_CMD_MEMWRITE, .value = 42};
                strcpy(b.msg, "no memwrite lease");
                vmsig_event_set_body(ev, &b, sizeof(b));
                break;
        }
        case VMSIG_EV_DIAG: {
                struct vmsig_diag_body b = {.code = -EAGAIN};
                strcpy(b.msg, "guest still booting");
                ev->hdr.flags = VMSIG_F_DROPPABLE;
                vmsig_event_set_body(ev, &b, sizeof(b));
                break;
        }
        default:
                fail_msg("no sample for kind %u", kind);
        }
        if (vmsig_kind_is_down(kind)) {
                /* The daemon's to stamp: a client sends 0. */
                ev->hdr.peer = 0;
                ev->hdr.seq = 0;
        }
}

static const uint16_t all_kinds[] = {
    VMSIG_EV_ROSTER,        VMSIG_EV_MEMCTX,        VMSIG_EV_STATUS,           VMSIG_EV_ACT_ACK,
    VMSIG_EV_DIAG,          VMSIG_EV_LEASE_GRANT,   VMSIG_EV_LEASE_DENY,       VMSIG_EV_LEASE_REVOKE,
    VMSIG_EV_MOVE_ABS,      VMSIG_EV_MOVE_REL,      VMSIG_EV_BUTTON,           VMSIG_EV_KEY,
    VMSIG_EV_WHEEL,         VMSIG_EV_CMD_POWER,     VMSIG_EV_CMD_STATUS_QUERY, VMSIG_EV_CMD_MEMWRITE,
    VMSIG_EV_LEASE_ACQUIRE, VMSIG_EV_LEASE_RELEASE,
};
#define N_KINDS (sizeof(all_kinds) / sizeof(all_kinds[0]))

static uint32_t le32_at(const uint8_t *p)
{
        return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static void set_le32(uint8_t *p, uint32_t v)
{
        p[0] = (uint8_t)v;
        p[1] = (uint8_t)(v >> 8);
        p[2] = (uint8_t)(v >> 16);
        p[3] = (uint8_t)(v >> 24);
}
static void set_le16(uint8_t *p, uint16_t v)
{
        p[0] = (uint8_t)v;
        p[1] = (uint8_t)(v >> 8);
}

static ssize_t enc_hello(uint8_t *b)
{
        return wire_encode_hello(b, WIRE_FRAME_MAX, "vmsigctl");
}

static ssize_t enc_welcome(uint8_t *b)
{
        struct wire_welcome w = {.version = 1,
                                 .control_id = 3,
                                 .caps = VMSIG_CAP_ALL,
                                 .uid = 1000,
                                 .body_max = VMSIG_BODY_MAX,
                                 .tail_max = TAIL_MAX,
                                 .queue_bytes = 1u << 20};
        return wire_encode_welcome(b, WIRE_FRAME_MAX, &w);
}

/* ---- round trips ---- */

static void test_hello_bytes(void **state)
{
        uint8_t b[WIRE_FRAME_MAX];
        static const uint8_t head[] = {0x4c, 0, 0, 0, 1, 0,   0,   0,   'V', 'M', 'S', 'G', 1,   0, 2,
                                       0,    0, 0, 0, 0, 'v', 'm', 's', 'i', 'g', 'c', 't', 'l', 0};
        struct got g = {0};
        ssize_t n = enc_hello(b);

        (void)state;
        assert_int_equal(n, 8 + 76);
        assert_memory_equal(b, head, sizeof(head));
        for (size_t i = sizeof(head); i < (size_t)n; i++)
                assert_int_equal(b[i], 0);
        assert_int_equal(feed_once(WIRE_SIDE_SERVER, b, (size_t)n, &g), WIRE_OK);
        assert_int_equal(g.n, 1);
        assert_int_equal(g.f[0].type, WIRE_HELLO);
        assert_int_equal(g.f[0].u.hello.magic, WIRE_MAGIC);
        assert_int_equal(g.f[0].u.hello.version_min, 1);
        assert_int_equal(g.f[0].u.hello.version_max, 2); /* version 2: the fd source (protocol.md §7.2) */
        assert_string_equal(g.f[0].u.hello.name, "vmsigctl");
        /* too long a name is refused by the encoder */
        assert_int_equal(wire_encode_hello(b, sizeof(b),
                                           "0123456789012345678901234567890123456789"
                                           "012345678901234567890123"),
                         -EINVAL);
        assert_int_equal(wire_encode_hello(b, 10, "x"), -ENOBUFS);
}

static void test_server_frames_roundtrip(void **state)
{
        uint8_t b[WIRE_FRAME_MAX];
        struct stream s = {0};
        struct got g = {0};
        ssize_t n;

        (void)state;
        n = enc_welcome(b);
        assert_int_equal(n, 8 + 28);
        assert_int_equal(le32_at(b + 8 + 4), 3); /* control_id */
        s_frame(&s, n, b);
        s_frame(&s, wire_encode_reply(b, sizeof(b), 99, WIRE_SUBSCRIBE, -EPERM, "needs memctx"), b);
        s_frame(&s, wire_encode_reply(b, sizeof(b), 100, WIRE_UNSUBSCRIBE, 0, NULL), b);
        s_frame(&s, wire_encode_error(b, sizeof(b), -EMSGSIZE, "tail too long"), b);
        assert_int_equal(feed_once(WIRE_SIDE_CLIENT, s.b, s.len, &g), WIRE_OK);
        assert_int_equal(g.n, 4);
        assert_int_equal(g.f[0].type, WIRE_WELCOME);
        assert_int_equal(g.f[0].u.welcome.version, 1);
        assert_int_equal(g.f[0].u.welcome.control_id, 3);
        assert_int_equal(g.f[0].u.welcome.caps, VMSIG_CAP_ALL);
        assert_int_equal(g.f[0].u.welcome.uid, 1000);
        assert_int_equal(g.f[0].u.welcome.body_max, VMSIG_BODY_MAX);
        assert_int_equal(g.f[0].u.welcome.tail_max, TAIL_MAX);
        assert_int_equal(g.f[0].u.welcome.queue_bytes, 1u << 20);
        assert_int_equal(g.f[0].stream_off, 0);
        assert_int_equal(g.f[1].stream_off, 36);
        assert_int_equal(g.f[1].type, WIRE_REPLY);
        assert_int_equal(g.f[1].u.reply.corr, 99);
        assert_int_equal(g.f[1].u.reply.request_type, WIRE_SUBSCRIBE);
        assert_int_equal(g.f[1].u.reply.result, -EPERM);
        assert_string_equal(g.f[1].u.reply.msg, "needs memctx");
        assert_int_equal(g.f[2].u.reply.request_type, WIRE_UNSUBSCRIBE);
        assert_int_equal(g.f[2].u.reply.result, 0);
        assert_string_equal(g.f[2].u.reply.msg, "");
        assert_int_equal(g.f[3].type, WIRE_ERROR);
        assert_int_equal(g.f[3].u.error.code, -EMSGSIZE);
        assert_string_equal(g.f[3].u.error.msg, "tail too long");
        free(s.b);

        /* encoder argument checks */
        assert_int_equal(wire_encode_error(b, sizeof(b), 0, "x"), -EINVAL);
        assert_int_equal(wire_encode_reply(b, sizeof(b), 1, WIRE_EVENT, 0, NULL), -EINVAL);
        assert_int_equal(wire_encode_reply(b, sizeof(b), 1, WIRE_SUBSCRIBE, 1, NULL), -EINVAL);
        assert_int_equal(wire_encode_subscribe(b, sizeof(b), 1, 0, 0), -EINVAL);
        assert_int_equal(wire_encode_subscribe(b, sizeof(b), 1, 0, VMSIG_KIND_BIT(VMSIG_EV_MOVE_ABS)),
                         -EINVAL);
}

static void test_client_frames_roundtrip(void **state)
{
        uint8_t b[WIRE_FRAME_MAX];
        struct stream s = {0};
        struct got g = {0};

        (void)state;
        s_frame(&s, enc_hello(b), b);
        s_frame(&s, wire_encode_subscribe(b, sizeof(b), 5, 0, VMSIG_KINDS_ALL_UP), b);
        s_frame(&s, wire_encode_subscribe(b, sizeof(b), 6, 12, VMSIG_KIND_BIT(VMSIG_EV_MEMCTX)), b);
        s_frame(&s, wire_encode_unsubscribe(b, sizeof(b), 7, 12), b);
        assert_int_equal(feed_once(WIRE_SIDE_SERVER, s.b, s.len, &g), WIRE_OK);
        assert_int_equal(g.n, 4);
        assert_int_equal(g.f[1].type, WIRE_SUBSCRIBE);
        assert_int_equal(g.f[1].u.sub.corr, 5);
        assert_int_equal(g.f[1].u.sub.endpoint, 0);
        assert_true(g.f[1].u.sub.kinds == VMSIG_KINDS_ALL_UP);
        assert_int_equal(g.f[2].u.sub.endpoint, 12);
        assert_true(g.f[2].u.sub.kinds == VMSIG_KIND_BIT(VMSIG_EV_MEMCTX));
        assert_int_equal(g.f[3].type, WIRE_UNSUBSCRIBE);
        assert_int_equal(g.f[3].u.sub.corr, 7);
        assert_int_equal(g.f[3].u.sub.endpoint, 12);
        free(s.b);
}

static void test_every_kind_roundtrip(void **state)
{
        (void)state;
        for (size_t i = 0; i < N_KINDS; i++) {
                struct vmsig_event ev, back;
                struct wire_frame f;
                uint8_t b[WIRE_FRAME_MAX];
                bool down = vmsig_kind_is_down(all_kinds[i]);
                ssize_t n;

                make_event(&ev, all_kinds[i]);
                n = wire_encode_event(b, sizeof(b), &ev, down);
                assert_int_equal(n, 8 + 56 + ev.hdr.body_len);
                assert_int_equal(le32_at(b), 56 + ev.hdr.body_len);
                assert_int_equal(b[4], WIRE_EVENT);
                assert_int_equal(b[8], all_kinds[i]); /* kind, LE */
                assert_int_equal(le32_at(b + 8 + 48), ev.hdr.body_len);
                /* the wrong direction is refused by the encoder */
                assert_int_equal(wire_encode_event(b + 0, sizeof(b), &ev, !down), -EINVAL);
                n = wire_encode_event(b, sizeof(b), &ev, down);
                assert_int_equal(wire_decode(down ? WIRE_SIDE_SERVER : WIRE_SIDE_CLIENT, WIRE_EVENT, b + 8,
                                             (size_t)n - 8, &f),
                                 WIRE_OK);
                back = f.u.event;
                assert_memory_equal(&back, &ev, sizeof(ev));
        }
}

static void test_event_field_offsets(void **state)
{
        struct vmsig_event ev;
        uint8_t b[WIRE_FRAME_MAX];
        const uint8_t *p = b + 8, *body = b + 8 + 56;

        (void)state;
        make_event(&ev, VMSIG_EV_ACT_ACK);
        assert_true(wire_encode_event(b, sizeof(b), &ev, false) > 0);
        assert_int_equal(p[0] | p[1] << 8, VMSIG_EV_ACT_ACK);
        assert_int_equal(p[4], 77);
        assert_int_equal(le32_at(p + 8), 0x01020304);
        assert_int_equal(le32_at(p + 12), 0x0a0b0c0d);
        assert_int_equal(le32_at(p + 16), 0x55667788);
        assert_int_equal(le32_at(p + 20), 0x11223344);
        assert_int_equal(le32_at(p + 24), 0x44332211);
        assert_int_equal(le32_at(body), (uint32_t)-EPERM);
        assert_int_equal(body[4], VMSIG_EV_CMD_MEMWRITE);
        assert_int_equal(le32_at(body + 8), 42);
        assert_string_equal((const char *)body + 16, "no memwrite lease");

        make_event(&ev, VMSIG_EV_MEMCTX);
        assert_true(wire_encode_event(b, sizeof(b), &ev, false) > 0);
        assert_int_equal(le32_at(body), 3);               /* epoch */
        assert_int_equal(le32_at(body + 8), 0x1ad000);    /* kernel_root */
        assert_int_equal(body[19], 2);                    /* nranges */
        assert_int_equal(le32_at(body + 24 + 24 + 4), 1); /* ranges[1].gpa high word */
        assert_int_equal(le32_at(body + 24 + 24 + 16), 0x80000000u);
}

static void test_codec_nonzero_opaque(void **state)
{
        struct vmsig_event ev;
        struct wire_frame f;
        uint8_t b[WIRE_FRAME_MAX];

        (void)state;
        make_event(&ev, VMSIG_EV_KEY);
        ev.hdr.codec = 3;
        ev.hdr.body_len = 7; /* adapter-owned layout: only the bound applies */
        memset(ev.body, 0, sizeof(ev.body));
        memcpy(ev.body, "\x01\x02\x03\x04\x05\x06\x07", 7);
        ssize_t n = wire_encode_event(b, sizeof(b), &ev, true);
        assert_int_equal(n, 8 + 56 + 7);
        assert_int_equal(wire_decode(WIRE_SIDE_SERVER, WIRE_EVENT, b + 8, (size_t)n - 8, &f), WIRE_OK);
        assert_memory_equal(&f.u.event, &ev, sizeof(ev));
}

/* ---- violations ---- */

/* Feed HELLO (server side) or WELCOME (client side) and then frame. */
static enum wire_err after_handshake(enum wire_side side, const uint8_t *frame, size_t len)
{
        uint8_t b[WIRE_FRAME_MAX];
        struct stream s = {0};
        struct got g = {0};
        enum wire_err e;

        s_frame(&s, side == WIRE_SIDE_SERVER ? enc_hello(b) : enc_welcome(b), b);
        s_put(&s, frame, len);
        e = feed_once(side, s.b, s.len, &g);
        got_free(&g);
        free(s.b);
        return e;
}

static enum wire_err bad_event(enum wire_side side, const struct vmsig_event *ev)
{
        uint8_t b[WIRE_FRAME_MAX + 64];
        /* Encode by hand: the encoder would refuse. */
        const uint8_t *hb = (const uint8_t *)&ev->hdr;
        uint32_t bl = ev->hdr.body_len > VMSIG_BODY_MAX ? VMSIG_BODY_MAX : ev->hdr.body_len;
        set_le32(b, 56 + bl);
        set_le16(b + 4, WIRE_EVENT);
        set_le16(b + 6, 0);
        memcpy(b + 8, hb, 56); /* the test host is little-endian */
        memcpy(b + 64, ev->body, bl);
        return after_handshake(side, b, 8 + 56 + bl);
}

static void test_violations_prefix(void **state)
{
        uint8_t b[WIRE_FRAME_MAX];
        struct got g = {0};
        ssize_t n;

        (void)state;
        /* unknown type */
        n = enc_hello(b);
        set_le16(b + 4, 9);
        assert_int_equal(feed_once(WIRE_SIDE_SERVER, b, (size_t)n, &g), WIRE_E_TYPE);
        set_le16(b + 4, 0);
        assert_int_equal(feed_once(WIRE_SIDE_SERVER, b, (size_t)n, &g), WIRE_E_TYPE);
        /* direction: WELCOME sent to a server, HELLO sent to a client */
        n = enc_welcome(b);
        assert_int_equal(feed_once(WIRE_SIDE_SERVER, b, (size_t)n, &g), WIRE_E_DIRECTION);
        n = enc_hello(b);
        assert_int_equal(feed_once(WIRE_SIDE_CLIENT, b, (size_t)n, &g), WIRE_E_DIRECTION);
        n = wire_encode_subscribe(b, sizeof(b), 1, 0, VMSIG_KINDS_ALL_UP);
        assert_int_equal(after_handshake(WIRE_SIDE_CLIENT, b, (size_t)n), WIRE_E_DIRECTION);
        n = wire_encode_reply(b, sizeof(b), 1, WIRE_SUBSCRIBE, 0, NULL);
        assert_int_equal(after_handshake(WIRE_SIDE_SERVER, b, (size_t)n), WIRE_E_DIRECTION);
        /* reserved prefix half */
        n = enc_hello(b);
        b[6] = 1;
        assert_int_equal(feed_once(WIRE_SIDE_SERVER, b, (size_t)n, &g), WIRE_E_RESERVED);
        /* lengths: fixed types exact, events 56..512 */
        n = enc_hello(b);
        set_le32(b, 75);
        assert_int_equal(feed_once(WIRE_SIDE_SERVER, b, (size_t)n, &g), WIRE_E_LENGTH);
        set_le32(b, 0xffffffffu);
        assert_int_equal(feed_once(WIRE_SIDE_SERVER, b, 8, &g), WIRE_E_LENGTH);
        set_le32(b, 0);
        set_le16(b + 4, WIRE_EVENT);
        assert_int_equal(after_handshake(WIRE_SIDE_SERVER, b, 8), WIRE_E_LENGTH);
        set_le32(b, 55);
        assert_int_equal(after_handshake(WIRE_SIDE_SERVER, b, 8), WIRE_E_LENGTH);
        set_le32(b, 513);
        assert_int_equal(after_handshake(WIRE_SIDE_CLIENT, b, 8), WIRE_E_LENGTH);
        n = wire_encode_unsubscribe(b, sizeof(b), 1, 1);
        set_le32(b, 24);
        assert_int_equal(after_handshake(WIRE_SIDE_SERVER, b, (size_t)n), WIRE_E_LENGTH);
        assert_int_equal(g.n, 0);
}

static void test_violations_order(void **state)
{
        uint8_t b[WIRE_FRAME_MAX];
        struct vmsig_event ev;
        struct got g = {0};
        ssize_t n;

        (void)state;
        /* nothing before HELLO */
        n = wire_encode_subscribe(b, sizeof(b), 1, 0, VMSIG_KINDS_ALL_UP);
        assert_int_equal(feed_once(WIRE_SIDE_SERVER, b, (size_t)n, &g), WIRE_E_ORDER);
        make_event(&ev, VMSIG_EV_KEY);
        n = wire_encode_event(b, sizeof(b), &ev, true);
        assert_int_equal(feed_once(WIRE_SIDE_SERVER, b, (size_t)n, &g), WIRE_E_ORDER);
        /* a second HELLO */
        n = enc_hello(b);
        assert_int_equal(after_handshake(WIRE_SIDE_SERVER, b, (size_t)n), WIRE_E_ORDER);
        /* client: nothing before WELCOME but ERROR, no second WELCOME */
        make_event(&ev, VMSIG_EV_ROSTER);
        n = wire_encode_event(b, sizeof(b), &ev, false);
        assert_int_equal(feed_once(WIRE_SIDE_CLIENT, b, (size_t)n, &g), WIRE_E_ORDER);
        n = wire_encode_reply(b, sizeof(b), 1, WIRE_SUBSCRIBE, 0, NULL);
        assert_int_equal(feed_once(WIRE_SIDE_CLIENT, b, (size_t)n, &g), WIRE_E_ORDER);
        n = enc_welcome(b);
        assert_int_equal(after_handshake(WIRE_SIDE_CLIENT, b, (size_t)n), WIRE_E_ORDER);
        n = wire_encode_error(b, sizeof(b), -EACCES, "uid 1234 is not admitted");
        assert_int_equal(feed_once(WIRE_SIDE_CLIENT, b, (size_t)n, &g), WIRE_OK);
        assert_int_equal(g.n, 1);
        assert_string_equal(g.f[0].u.error.msg, "uid 1234 is not admitted");
}

static void test_violations_handshake_fields(void **state)
{
        uint8_t b[WIRE_FRAME_MAX];
        struct got g = {0};
        ssize_t n;

        (void)state;
        n = enc_hello(b);
        b[8] = 'X';
        assert_int_equal(feed_once(WIRE_SIDE_SERVER, b, (size_t)n, &g), WIRE_E_MAGIC);
        n = enc_hello(b);
        set_le16(b + 12, 3); /* versions 1 and 2 exist */
        set_le16(b + 14, 4);
        assert_int_equal(feed_once(WIRE_SIDE_SERVER, b, (size_t)n, &g), WIRE_E_VERSION);
        set_le16(b + 12, 1);
        set_le16(b + 14, 0);
        assert_int_equal(feed_once(WIRE_SIDE_SERVER, b, (size_t)n, &g), WIRE_E_VERSION);
        set_le16(b + 12, 0);
        set_le16(b + 14, 7); /* a range containing 1 is fine */
        assert_int_equal(feed_once(WIRE_SIDE_SERVER, b, (size_t)n, &g), WIRE_OK);
        n = enc_hello(b);
        b[16] = 1; /* reserved u32 */
        assert_int_equal(feed_once(WIRE_SIDE_SERVER, b, (size_t)n, &g), WIRE_E_RESERVED);
        n = enc_hello(b);
        memset(b + 20, 'a', 64);
        assert_int_equal(feed_once(WIRE_SIDE_SERVER, b, (size_t)n, &g), WIRE_E_STRING);

        n = enc_welcome(b);
        set_le16(b + 8, 3);
        assert_int_equal(feed_once(WIRE_SIDE_CLIENT, b, (size_t)n, &g), WIRE_E_VERSION);
        set_le16(b + 8, 0);
        assert_int_equal(feed_once(WIRE_SIDE_CLIENT, b, (size_t)n, &g), WIRE_E_VERSION);
        set_le16(b + 8, 2); /* version 2: the fd source */
        assert_int_equal(feed_once(WIRE_SIDE_CLIENT, b, (size_t)n, &g), WIRE_OK);
        n = enc_welcome(b);
        b[10] = 1;
        assert_int_equal(feed_once(WIRE_SIDE_CLIENT, b, (size_t)n, &g), WIRE_E_RESERVED);
        n = enc_welcome(b);
        set_le32(b + 16, 0x40); /* unknown capability */
        assert_int_equal(feed_once(WIRE_SIDE_CLIENT, b, (size_t)n, &g), WIRE_E_FIELD);
        n = enc_welcome(b);
        set_le32(b + 24, 455); /* body_max */
        assert_int_equal(feed_once(WIRE_SIDE_CLIENT, b, (size_t)n, &g), WIRE_E_FIELD);
        n = enc_welcome(b);
        set_le32(b + 28, 0); /* tail_max */
        assert_int_equal(feed_once(WIRE_SIDE_CLIENT, b, (size_t)n, &g), WIRE_E_FIELD);
        n = enc_welcome(b);
        set_le32(b + 12, 0); /* control_id */
        assert_int_equal(feed_once(WIRE_SIDE_CLIENT, b, (size_t)n, &g), WIRE_E_FIELD);

        n = wire_encode_error(b, sizeof(b), -EACCES, "x");
        set_le32(b + 8, 5);
        assert_int_equal(feed_once(WIRE_SIDE_CLIENT, b, (size_t)n, &g), WIRE_E_FIELD);
        n = wire_encode_error(b, sizeof(b), -EACCES, "x");
        b[12] = 1;
        assert_int_equal(feed_once(WIRE_SIDE_CLIENT, b, (size_t)n, &g), WIRE_E_RESERVED);
        n = wire_encode_error(b, sizeof(b), -EACCES, "x");
        memset(b + 16, 'm', 160);
        assert_int_equal(feed_once(WIRE_SIDE_CLIENT, b, (size_t)n, &g), WIRE_E_STRING);
        got_free(&g);
}

static void test_violations_requests(void **state)
{
        uint8_t b[WIRE_FRAME_MAX];
        ssize_t n;

        (void)state;
        n = wire_encode_subscribe(b, sizeof(b), 1, 0, VMSIG_KINDS_ALL_UP);
        set_le32(b + 8 + 16, 0);
        set_le32(b + 8 + 20, 0);
        assert_int_equal(after_handshake(WIRE_SIDE_SERVER, b, (size_t)n), WIRE_E_FIELD); /* no kinds */
        set_le32(b + 8 + 20, 1); /* bit 32: a DOWN kind */
        assert_int_equal(after_handshake(WIRE_SIDE_SERVER, b, (size_t)n), WIRE_E_FIELD);
        n = wire_encode_subscribe(b, sizeof(b), 1, 0, VMSIG_KINDS_ALL_UP);
        b[8 + 12] = 1;
        assert_int_equal(after_handshake(WIRE_SIDE_SERVER, b, (size_t)n), WIRE_E_RESERVED);
        n = wire_encode_unsubscribe(b, sizeof(b), 1, 0);
        b[8 + 15] = 1;
        assert_int_equal(after_handshake(WIRE_SIDE_SERVER, b, (size_t)n), WIRE_E_RESERVED);

        n = wire_encode_reply(b, sizeof(b), 1, WIRE_SUBSCRIBE, 0, "ok");
        set_le16(b + 8 + 8, WIRE_HELLO);
        assert_int_equal(after_handshake(WIRE_SIDE_CLIENT, b, (size_t)n), WIRE_E_FIELD);
        n = wire_encode_reply(b, sizeof(b), 1, WIRE_SUBSCRIBE, 0, "ok");
        set_le32(b + 8 + 12, 1);
        assert_int_equal(after_handshake(WIRE_SIDE_CLIENT, b, (size_t)n), WIRE_E_FIELD);
        n = wire_encode_reply(b, sizeof(b), 1, WIRE_SUBSCRIBE, 0, "ok");
        b[8 + 10] = 1;
        assert_int_equal(after_handshake(WIRE_SIDE_CLIENT, b, (size_t)n), WIRE_E_RESERVED);
        n = wire_encode_reply(b, sizeof(b), 1, WIRE_SUBSCRIBE, 0, "ok");
        memset(b + 8 + 16, 'z', 160);
        assert_int_equal(after_handshake(WIRE_SIDE_CLIENT, b, (size_t)n), WIRE_E_STRING);
}

static void test_violations_events(void **state)
{
        struct vmsig_event ev;

        (void)state;
        /* body_len over 456, or disagreeing with the frame length */
        make_event(&ev, VMSIG_EV_KEY);
        ev.hdr.body_len = 457;
        assert_int_equal(bad_event(WIRE_SIDE_SERVER, &ev), WIRE_E_BODY_LEN);
        {
                uint8_t b[WIRE_FRAME_MAX];
                make_event(&ev, VMSIG_EV_KEY);
                ssize_t n = wire_encode_event(b, sizeof(b), &ev, true);
                set_le32(b + 8 + 48, 19);
                assert_int_equal(after_handshake(WIRE_SIDE_SERVER, b, (size_t)n), WIRE_E_BODY_LEN);
        }
        /* body_len inconsistent with the kind */
        make_event(&ev, VMSIG_EV_MOVE_ABS);
        ev.hdr.body_len = 19;
        assert_int_equal(bad_event(WIRE_SIDE_SERVER, &ev), WIRE_E_BODY_KIND);
        make_event(&ev, VMSIG_EV_CMD_STATUS_QUERY);
        ev.hdr.body_len = 4;
        assert_int_equal(bad_event(WIRE_SIDE_SERVER, &ev), WIRE_E_BODY_KIND);
        make_event(&ev, VMSIG_EV_CMD_MEMWRITE);
        ev.hdr.body_len = 16 + 6; /* len says 5 */
        assert_int_equal(bad_event(WIRE_SIDE_SERVER, &ev), WIRE_E_BODY_KIND);
        ev.hdr.body_len = 12;
        assert_int_equal(bad_event(WIRE_SIDE_SERVER, &ev), WIRE_E_BODY_KIND);
        make_event(&ev, VMSIG_EV_CMD_MEMWRITE);
        ev.hdr.flags = VMSIG_F_SRC_PAYLOAD; /* then the body is exactly 16 */
        assert_int_equal(bad_event(WIRE_SIDE_SERVER, &ev), WIRE_E_BODY_KIND);
        make_event(&ev, VMSIG_EV_ROSTER);
        ev.hdr.body_len = 71;
        assert_int_equal(bad_event(WIRE_SIDE_CLIENT, &ev), WIRE_E_BODY_KIND);
        make_event(&ev, VMSIG_EV_MEMCTX);
        ev.hdr.body_len = 400;
        assert_int_equal(bad_event(WIRE_SIDE_CLIENT, &ev), WIRE_E_BODY_KIND);
        /* unknown kinds, and kinds in the wrong direction */
        make_event(&ev, VMSIG_EV_KEY);
        ev.hdr.kind = 9;
        assert_int_equal(bad_event(WIRE_SIDE_SERVER, &ev), WIRE_E_KIND);
        ev.hdr.kind = 0;
        assert_int_equal(bad_event(WIRE_SIDE_CLIENT, &ev), WIRE_E_KIND);
        ev.hdr.kind = 63;
        assert_int_equal(bad_event(WIRE_SIDE_SERVER, &ev), WIRE_E_KIND);
        ev.hdr.kind = 0xffff;
        assert_int_equal(bad_event(WIRE_SIDE_SERVER, &ev), WIRE_E_KIND);
        make_event(&ev, VMSIG_EV_ACT_ACK);
        assert_int_equal(bad_event(WIRE_SIDE_SERVER, &ev), WIRE_E_KIND_UP);
        make_event(&ev, VMSIG_EV_LEASE_GRANT);
        assert_int_equal(bad_event(WIRE_SIDE_SERVER, &ev), WIRE_E_KIND_UP);
        make_event(&ev, VMSIG_EV_MOVE_REL);
        assert_int_equal(bad_event(WIRE_SIDE_CLIENT, &ev), WIRE_E_KIND_DOWN);
        make_event(&ev, VMSIG_EV_LEASE_ACQUIRE);
        assert_int_equal(bad_event(WIRE_SIDE_CLIENT, &ev), WIRE_E_KIND_DOWN);
        /* flags */
        make_event(&ev, VMSIG_EV_KEY);
        ev.hdr.flags = 0x100;
        assert_int_equal(bad_event(WIRE_SIDE_SERVER, &ev), WIRE_E_FLAGS);
        ev.hdr.flags = VMSIG_F_HAS_FD;
        assert_int_equal(bad_event(WIRE_SIDE_SERVER, &ev), WIRE_E_FLAGS);
        ev.hdr.flags = VMSIG_F_RETAINED;
        assert_int_equal(bad_event(WIRE_SIDE_SERVER, &ev), WIRE_E_FLAGS);
        ev.hdr.flags = VMSIG_F_SRC_PAYLOAD;
        assert_int_equal(bad_event(WIRE_SIDE_SERVER, &ev), WIRE_E_FLAGS);
        make_event(&ev, VMSIG_EV_STATUS);
        ev.hdr.flags = VMSIG_F_HAS_FD;
        assert_int_equal(bad_event(WIRE_SIDE_CLIENT, &ev), WIRE_E_FLAGS);
        ev.hdr.flags = VMSIG_F_SRC_PAYLOAD;
        assert_int_equal(bad_event(WIRE_SIDE_CLIENT, &ev), WIRE_E_FLAGS);
        /* source, reserved */
        make_event(&ev, VMSIG_EV_KEY);
        ev.hdr.source = VMSIG_SRC_MAX_;
        assert_int_equal(bad_event(WIRE_SIDE_SERVER, &ev), WIRE_E_SOURCE);
        make_event(&ev, VMSIG_EV_KEY);
        ev.hdr.reserved0 = 1;
        assert_int_equal(bad_event(WIRE_SIDE_SERVER, &ev), WIRE_E_RESERVED);
        make_event(&ev, VMSIG_EV_STATUS);
        ev.hdr.reserved1 = 1;
        assert_int_equal(bad_event(WIRE_SIDE_CLIENT, &ev), WIRE_E_RESERVED);
        /* field ranges and strings inside bodies */
        make_event(&ev, VMSIG_EV_LEASE_ACQUIRE);
        ev.body[0] = VMSIG_LEASE_CLASS_COUNT;
        assert_int_equal(bad_event(WIRE_SIDE_SERVER, &ev), WIRE_E_FIELD);
        make_event(&ev, VMSIG_EV_CMD_MEMWRITE);
        ev.body[12] = 0x80; /* unknown memwrite flag */
        assert_int_equal(bad_event(WIRE_SIDE_SERVER, &ev), WIRE_E_FIELD);
        make_event(&ev, VMSIG_EV_MEMCTX);
        ev.body[19] = 17; /* nranges */
        assert_int_equal(bad_event(WIRE_SIDE_CLIENT, &ev), WIRE_E_FIELD);
        make_event(&ev, VMSIG_EV_ACT_ACK);
        ev.body[0] = 1; /* positive result */
        memset(ev.body + 1, 0, 3);
        assert_int_equal(bad_event(WIRE_SIDE_CLIENT, &ev), WIRE_E_FIELD);
        make_event(&ev, VMSIG_EV_ACT_ACK);
        memset(ev.body + 16, 'x', 160);
        assert_int_equal(bad_event(WIRE_SIDE_CLIENT, &ev), WIRE_E_STRING);
        make_event(&ev, VMSIG_EV_ROSTER);
        memset(ev.body + 8, 'n', 64);
        assert_int_equal(bad_event(WIRE_SIDE_CLIENT, &ev), WIRE_E_STRING);
        make_event(&ev, VMSIG_EV_STATUS);
        memset(ev.body + 8, 'r', 160);
        assert_int_equal(bad_event(WIRE_SIDE_CLIENT, &ev), WIRE_E_STRING);
        make_event(&ev, VMSIG_EV_DIAG);
        memset(ev.body + 8, 'd', 160);
        assert_int_equal(bad_event(WIRE_SIDE_CLIENT, &ev), WIRE_E_STRING);
        make_event(&ev, VMSIG_EV_LEASE_DENY);
        memset(ev.body + 16, 'h', 64);
        assert_int_equal(bad_event(WIRE_SIDE_CLIENT, &ev), WIRE_E_STRING);
        make_event(&ev, VMSIG_EV_LEASE_REVOKE);
        ev.body[0] = 3;
        assert_int_equal(bad_event(WIRE_SIDE_CLIENT, &ev), WIRE_E_FIELD);
}

/* "Send 0" and reserved fields: a violation wherever docs/protocol.md names
 * them in what a client sends, and in the frame layer and event header both
 * ways; the encoder refuses to produce any of them. */
static void expect_reserved(enum wire_side side, const struct vmsig_event *ev)
{
        uint8_t b[WIRE_FRAME_MAX];

        assert_int_equal(bad_event(side, ev), WIRE_E_RESERVED);
        assert_int_equal(wire_encode_event(b, sizeof(b), ev, side == WIRE_SIDE_SERVER), -EINVAL);
}

static void test_violations_reserved_fields(void **state)
{
        struct vmsig_event ev;
        uint8_t b[WIRE_FRAME_MAX];

        (void)state;
        /* c->s header: peer and seq are the daemon's; cr3 only on MEMWRITE */
        make_event(&ev, VMSIG_EV_KEY);
        ev.hdr.peer = 3;
        expect_reserved(WIRE_SIDE_SERVER, &ev);
        make_event(&ev, VMSIG_EV_KEY);
        ev.hdr.seq = 1;
        expect_reserved(WIRE_SIDE_SERVER, &ev);
        make_event(&ev, VMSIG_EV_CMD_POWER);
        ev.hdr.cr3 = 0x1000;
        expect_reserved(WIRE_SIDE_SERVER, &ev);
        make_event(&ev, VMSIG_EV_CMD_MEMWRITE); /* its cr3 is a field */
        assert_int_equal(bad_event(WIRE_SIDE_SERVER, &ev), WIRE_OK);
        /* c->s bodies: input flags, everything of a lease command but class */
        for (uint16_t k = VMSIG_EV_MOVE_ABS; k <= VMSIG_EV_WHEEL; k++) {
                make_event(&ev, k);
                ev.body[offsetof(struct vmsig_input_body, flags) + 3] = 0x80;
                expect_reserved(WIRE_SIDE_SERVER, &ev);
        }
        for (size_t off = 1; off < sizeof(struct vmsig_lease_body); off += 13) {
                make_event(&ev, VMSIG_EV_LEASE_ACQUIRE);
                ev.body[off] = 1;
                expect_reserved(WIRE_SIDE_SERVER, &ev);
                make_event(&ev, VMSIG_EV_LEASE_RELEASE);
                ev.body[off] = 1;
                expect_reserved(WIRE_SIDE_SERVER, &ev);
        }
        /* an adapter-owned codec is opaque: no body field is reserved */
        make_event(&ev, VMSIG_EV_KEY);
        ev.hdr.codec = 2;
        memset(ev.body, 0xff, sizeof(struct vmsig_input_body));
        assert_int_equal(bad_event(WIRE_SIDE_SERVER, &ev), WIRE_OK);

        /* s->c: cr3, and every reserved field of every UP body */
        make_event(&ev, VMSIG_EV_STATUS);
        ev.hdr.cr3 = 0x1000;
        expect_reserved(WIRE_SIDE_CLIENT, &ev);
        static const struct {
                uint16_t kind;
                size_t off;
        } up[] = {
            {VMSIG_EV_ROSTER, offsetof(struct vmsig_roster_body, reserved)},
            {VMSIG_EV_ROSTER, offsetof(struct vmsig_roster_body, reserved2) + 3},
            {VMSIG_EV_STATUS, offsetof(struct vmsig_status_body, reserved)},
            {VMSIG_EV_STATUS, offsetof(struct vmsig_status_body, reserved) + 6},
            {VMSIG_EV_ACT_ACK, offsetof(struct vmsig_ack_body, reserved) + 1},
            {VMSIG_EV_DIAG, offsetof(struct vmsig_diag_body, reserved) + 2},
            {VMSIG_EV_LEASE_GRANT, offsetof(struct vmsig_lease_body, reserved)},
            {VMSIG_EV_LEASE_DENY, offsetof(struct vmsig_lease_body, reserved) + 1},
            {VMSIG_EV_LEASE_REVOKE, offsetof(struct vmsig_lease_body, reserved)},
            /* nranges is 2: entry 2 onwards is unused */
            {VMSIG_EV_MEMCTX, offsetof(struct vmsig_memctx_body, ranges) + 2 * 24 + 8},
            {VMSIG_EV_MEMCTX, sizeof(struct vmsig_memctx_body) - 1},
        };
        /* The daemon never sends them; a client ignores them, so that a
         * later daemon can give them a meaning without breaking it. */
        for (size_t i = 0; i < sizeof(up) / sizeof(up[0]); i++) {
                make_event(&ev, up[i].kind);
                ev.body[up[i].off] = 0x40;
                assert_int_equal(wire_encode_event(b, sizeof(b), &ev, false), -EINVAL);
                assert_int_equal(bad_event(WIRE_SIDE_CLIENT, &ev), WIRE_OK);
        }
        /* Once reserved, now the kernel base: sent and accepted. */
        make_event(&ev, VMSIG_EV_MEMCTX);
        ev.body[offsetof(struct vmsig_memctx_body, kernel_base_pg) + 1] = 0x40;
        assert_true(wire_encode_event(b, sizeof(b), &ev, false) > 0);
        assert_int_equal(bad_event(WIRE_SIDE_CLIENT, &ev), WIRE_OK);
        /* Not reserved: the bytes after a string's NUL are ignored. */
        make_event(&ev, VMSIG_EV_ACT_ACK);
        ev.body[offsetof(struct vmsig_ack_body, msg) + 100] = 'x';
        assert_int_equal(bad_event(WIRE_SIDE_CLIENT, &ev), WIRE_OK);
        make_event(&ev, VMSIG_EV_LEASE_GRANT); /* a holder is the daemon's to fill */
        assert_true(wire_encode_event(b, sizeof(b), &ev, false) > 0);
}

static void test_violation_sticky_and_names(void **state)
{
        struct wire_rx rx;
        const struct wire_frame *f;
        uint8_t b[WIRE_FRAME_MAX];
        ssize_t n = enc_welcome(b);

        (void)state;
        assert_int_equal(wire_rx_init(&rx, WIRE_SIDE_SERVER, TAIL_MAX), 0);
        assert_int_equal(wire_rx_feed(&rx, b, (size_t)n, &f), -EBADMSG);
        assert_null(f);
        assert_int_equal(wire_rx_error(&rx), WIRE_E_DIRECTION);
        n = enc_hello(b);
        assert_int_equal(wire_rx_feed(&rx, b, (size_t)n, &f), -EBADMSG);
        assert_int_equal(wire_rx_error(&rx), WIRE_E_DIRECTION);
        wire_rx_done(&rx);
        wire_rx_done(&rx);

        for (int e = 0; e < WIRE_E_MAX_; e++) {
                assert_non_null(wire_err_str((enum wire_err)e));
                assert_string_not_equal(wire_err_str((enum wire_err)e), "unknown violation");
                assert_true(e == 0 ? wire_err_errno((enum wire_err)e) == 0
                                   : wire_err_errno((enum wire_err)e) < 0);
        }
        assert_string_equal(wire_err_str(WIRE_E_MAX_), "unknown violation");
        assert_int_equal(wire_rx_init(&rx, WIRE_SIDE_SERVER, 0), -EINVAL);
        assert_int_equal(wire_rx_init(&rx, WIRE_SIDE_SERVER, WIRE_TAIL_MAX_LIMIT + 1), -EINVAL);
        assert_int_equal(wire_rx_init(&rx, WIRE_SIDE_CLIENT, 5), -EINVAL);
}

/* ---- receiver splits and the tail ---- */

static void memwrite_payload_frame(struct stream *s, uint32_t body_len_field, uint32_t tail_len,
                                   const uint8_t *tail, size_t tail_bytes)
{
        struct vmsig_event ev;
        struct vmsig_memwrite_body mw = {.addr = 0x7ff000001000ull, .len = body_len_field};
        uint8_t b[WIRE_FRAME_MAX + 4];
        ssize_t n;

        vmsig_event_init(&ev, VMSIG_EV_CMD_MEMWRITE, 2, VMSIG_SRC_MEMCTX);
        ev.hdr.flags = VMSIG_F_SRC_PAYLOAD;
        ev.hdr.corr = 77;
        vmsig_event_set_body(&ev, &mw, 16);
        n = wire_encode_event(b, sizeof(b), &ev, true);
        assert_int_equal(n, 8 + 56 + 16);
        s_frame(s, n, b);
        s_frame(s, wire_encode_tail_len(b, 4, tail_len), b);
        s_put(s, tail, tail_bytes);
}

static void build_client_stream(struct stream *s, uint8_t *tail, size_t tail_len)
{
        uint8_t b[WIRE_FRAME_MAX];

        s_frame(s, enc_hello(b), b);
        s_frame(s, wire_encode_subscribe(b, sizeof(b), 1, 0, VMSIG_KINDS_ALL_UP), b);
        for (size_t i = 0; i < N_KINDS; i++) {
                struct vmsig_event ev;
                if (!vmsig_kind_is_down(all_kinds[i]))
                        continue;
                make_event(&ev, all_kinds[i]);
                s_frame(s, wire_encode_event(b, sizeof(b), &ev, true), b);
        }
        memwrite_payload_frame(s, (uint32_t)tail_len, (uint32_t)tail_len, tail, tail_len);
        s_frame(s, wire_encode_unsubscribe(b, sizeof(b), 2, 0), b);
}

static void check_client_stream(struct got *g, const uint8_t *tail, size_t tail_len)
{
        size_t k = 0, ndown = 0;
        assert_int_equal(g->f[k++].type, WIRE_HELLO);
        assert_int_equal(g->f[k++].type, WIRE_SUBSCRIBE);
        for (size_t i = 0; i < N_KINDS; i++) {
                struct vmsig_event ev;
                if (!vmsig_kind_is_down(all_kinds[i]))
                        continue;
                make_event(&ev, all_kinds[i]);
                assert_int_equal(g->f[k].type, WIRE_EVENT);
                assert_memory_equal(&g->f[k].u.event, &ev, sizeof(ev));
                assert_null(g->tail[k]);
                k++;
                ndown++;
        }
        assert_int_equal(ndown, 10);
        assert_int_equal(g->f[k].type, WIRE_EVENT);
        assert_int_equal(g->f[k].u.event.hdr.kind, VMSIG_EV_CMD_MEMWRITE);
        assert_int_equal(g->f[k].tail_len, tail_len);
        assert_memory_equal(g->tail[k], tail, tail_len);
        k++;
        assert_int_equal(g->f[k++].type, WIRE_UNSUBSCRIBE);
        assert_int_equal(g->n, k);
}

static void test_rx_splits(void **state)
{
        uint8_t tail[TAIL_MAX];
        struct stream s = {0};
        struct wire_rx rx;

        (void)state;
        for (size_t i = 0; i < sizeof(tail); i++)
                tail[i] = (uint8_t)(i * 7 + 3);
        build_client_stream(&s, tail, sizeof(tail)); /* tail exactly tail_max */

        size_t (*splits[])(size_t) = {split_all, split_one};
        for (size_t i = 0; i < 2; i++) {
                struct got g = {0};
                assert_int_equal(wire_rx_init(&rx, WIRE_SIDE_SERVER, TAIL_MAX), 0);
                assert_int_equal(feed_split(&rx, s.b, s.len, &g, splits[i]), WIRE_OK);
                assert_true(wire_rx_idle(&rx));
                check_client_stream(&g, tail, sizeof(tail));
                got_free(&g);
                wire_rx_done(&rx);
        }
        srand(12345);
        for (int iter = 0; iter < 200; iter++) {
                struct got g = {0};
                assert_int_equal(wire_rx_init(&rx, WIRE_SIDE_SERVER, TAIL_MAX), 0);
                assert_int_equal(feed_split(&rx, s.b, s.len, &g, split_rand), WIRE_OK);
                check_client_stream(&g, tail, sizeof(tail));
                got_free(&g);
                wire_rx_done(&rx);
        }
        free(s.b);
}

static void test_rx_server_stream_splits(void **state)
{
        uint8_t b[WIRE_FRAME_MAX];
        struct stream s = {0};
        struct wire_rx rx;

        (void)state;
        s_frame(&s, enc_welcome(b), b);
        for (size_t i = 0; i < N_KINDS; i++) {
                struct vmsig_event ev;
                if (vmsig_kind_is_down(all_kinds[i]))
                        continue;
                make_event(&ev, all_kinds[i]);
                s_frame(&s, wire_encode_event(b, sizeof(b), &ev, false), b);
        }
        s_frame(&s, wire_encode_reply(b, sizeof(b), 3, WIRE_SUBSCRIBE, 0, "ok"), b);
        srand(999);
        for (int iter = 0; iter < 100; iter++) {
                struct got g = {0};
                assert_int_equal(wire_rx_init(&rx, WIRE_SIDE_CLIENT, 0), 0);
                assert_int_equal(feed_split(&rx, s.b, s.len, &g, iter ? split_rand : split_one), WIRE_OK);
                assert_int_equal(g.n, 10);
                for (size_t k = 1; k < 9; k++) {
                        struct vmsig_event ev;
                        make_event(&ev, all_kinds[k - 1]);
                        assert_memory_equal(&g.f[k].u.event, &ev, sizeof(ev));
                }
                assert_int_equal(g.f[9].type, WIRE_REPLY);
                wire_rx_done(&rx);
        }
        free(s.b);
}

static void test_rx_never_overreads(void **state)
{
        uint8_t tail[100], b[WIRE_FRAME_MAX];
        struct stream s = {0};
        struct wire_rx rx;
        const struct wire_frame *f;
        ssize_t n, hello_len;

        (void)state;
        memset(tail, 0xab, sizeof(tail));
        hello_len = enc_hello(b);
        s_frame(&s, hello_len, b);
        memwrite_payload_frame(&s, 100, 100, tail, 100);
        s_frame(&s, wire_encode_unsubscribe(b, sizeof(b), 2, 0), b);
        assert_int_equal(wire_rx_init(&rx, WIRE_SIDE_SERVER, TAIL_MAX), 0);
        n = wire_rx_feed(&rx, s.b, s.len, &f);
        assert_int_equal(n, hello_len);
        assert_non_null(f);
        n = wire_rx_feed(&rx, s.b + hello_len, s.len - (size_t)hello_len, &f);
        assert_int_equal(n, 8 + 56 + 16 + 4 + 100); /* frame + tail, not a byte more */
        assert_non_null(f);
        assert_int_equal(f->stream_off, hello_len);
        assert_int_equal(f->tail_len, 100);
        assert_memory_equal(f->tail, tail, 100);
        n = wire_rx_feed(&rx, s.b + hello_len + n, 8 + 16 - 1, &f);
        assert_int_equal(n, 23);
        assert_null(f);
        assert_false(wire_rx_idle(&rx));
        wire_rx_done(&rx);
        free(s.b);
}

static enum wire_err tail_case(uint32_t body_len_field, uint32_t tail_len, size_t give)
{
        uint8_t *tail = calloc(1, give + 1);
        uint8_t b[WIRE_FRAME_MAX];
        struct stream s = {0};
        struct got g = {0};
        enum wire_err e;

        s_frame(&s, enc_hello(b), b);
        memwrite_payload_frame(&s, body_len_field, tail_len, tail, give);
        e = feed_once(WIRE_SIDE_SERVER, s.b, s.len, &g);
        got_free(&g);
        free(s.b);
        free(tail);
        return e;
}

static void test_tail_bounds(void **state)
{
        (void)state;
        assert_int_equal(tail_case(1, 1, 1), WIRE_OK);
        assert_int_equal(tail_case(TAIL_MAX, TAIL_MAX, TAIL_MAX), WIRE_OK);
        assert_int_equal(tail_case(0, 0, 0), WIRE_E_TAIL_LEN);                       /* zero */
        assert_int_equal(tail_case(TAIL_MAX + 1, TAIL_MAX + 1, 0), WIRE_E_TAIL_LEN); /* over bound */
        assert_int_equal(tail_case(10, 0xffffffffu, 0), WIRE_E_TAIL_LEN);
        assert_int_equal(tail_case(10, 11, 11), WIRE_E_TAIL_LEN); /* != body len */
        assert_int_equal(tail_case(11, 10, 10), WIRE_E_TAIL_LEN);
}

static void test_tail_many_reads(void **state)
{
        uint8_t tail[3000], b[WIRE_FRAME_MAX];
        struct stream s = {0};
        struct wire_rx rx;
        struct got g = {0};
        size_t off = 0;

        (void)state;
        for (size_t i = 0; i < sizeof(tail); i++)
                tail[i] = (uint8_t)(i ^ 0x5a);
        s_frame(&s, enc_hello(b), b);
        memwrite_payload_frame(&s, sizeof(tail), sizeof(tail), tail, sizeof(tail));
        assert_int_equal(wire_rx_init(&rx, WIRE_SIDE_SERVER, TAIL_MAX), 0);
        /* reads of 1..13 bytes: the tail length prefix and tail split everywhere */
        for (size_t step = 1; off < s.len; step = step % 13 + 1) {
                size_t chunk = step < s.len - off ? step : s.len - off;
                const struct wire_frame *f;
                ssize_t n = wire_rx_feed(&rx, s.b + off, chunk, &f);
                assert_true(n >= 0);
                off += (size_t)n;
                if (f) {
                        g.f[g.n] = *f;
                        g.tail[g.n] = f->tail ? malloc(f->tail_len) : NULL;
                        if (f->tail)
                                memcpy(g.tail[g.n], f->tail, f->tail_len);
                        g.n++;
                }
        }
        assert_int_equal(g.n, 2);
        assert_int_equal(g.f[1].tail_len, sizeof(tail));
        assert_memory_equal(g.tail[1], tail, sizeof(tail));
        got_free(&g);
        wire_rx_done(&rx);
        free(s.b);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_hello_bytes),
            cmocka_unit_test(test_server_frames_roundtrip),
            cmocka_unit_test(test_client_frames_roundtrip),
            cmocka_unit_test(test_every_kind_roundtrip),
            cmocka_unit_test(test_event_field_offsets),
            cmocka_unit_test(test_codec_nonzero_opaque),
            cmocka_unit_test(test_violations_prefix),
            cmocka_unit_test(test_violations_order),
            cmocka_unit_test(test_violations_handshake_fields),
            cmocka_unit_test(test_violations_requests),
            cmocka_unit_test(test_violations_events),
            cmocka_unit_test(test_violations_reserved_fields),
            cmocka_unit_test(test_violation_sticky_and_names),
            cmocka_unit_test(test_rx_splits),
            cmocka_unit_test(test_rx_server_stream_splits),
            cmocka_unit_test(test_rx_never_overreads),
            cmocka_unit_test(test_tail_bounds),
            cmocka_unit_test(test_tail_many_reads),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
