/* SPDX-License-Identifier: MIT */
#ifndef VMSIG_TRANSPORT_WIRE_H
#define VMSIG_TRANSPORT_WIRE_H

/* The unix-socket wire format (docs/protocol.md): encoders into caller
 * buffers, strict decoders that fail closed with a reason, and an incremental
 * receiver that yields complete frames (plus a CMD_MEMWRITE source tail).
 * Internal to libvmsig: nothing here is exported. All integers on the wire
 * are little-endian; conversion is explicit, field by field. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <vmsig/event.h>

#define WIRE_MAGIC   0x47534d56u /* "VMSG" as LE bytes 56 4d 53 47 */
#define WIRE_VERSION 1u
/* The highest version spoken. Version 2 is version 1 plus the fd source of
 * CMD_MEMWRITE (docs/protocol.md §7.2); a WELCOME's version says which the
 * connection speaks. */
#define WIRE_VERSION_MAX 2u
#define WIRE_VERSION_FD  2u /* the first version with the fd source */

#define WIRE_PREFIX_LEN    8u  /* u32 payload length, u16 type, u16 reserved */
#define WIRE_EVENT_HDR_LEN 56u /* struct vmsig_event_hdr on the wire */
#define WIRE_TAIL_LEN_LEN  4u  /* u32 tail length before a SRC tail */

#define WIRE_HELLO_LEN       76u
#define WIRE_WELCOME_LEN     28u
#define WIRE_ERROR_LEN       168u
#define WIRE_SUBSCRIBE_LEN   24u
#define WIRE_UNSUBSCRIBE_LEN 16u
#define WIRE_REPLY_LEN       176u
#define WIRE_EVENT_MIN       WIRE_EVENT_HDR_LEN
#define WIRE_EVENT_MAX       (WIRE_EVENT_HDR_LEN + VMSIG_BODY_MAX)
#define WIRE_PAYLOAD_MAX     WIRE_EVENT_MAX /* the largest payload of any type */
#define WIRE_FRAME_MAX       (WIRE_PREFIX_LEN + WIRE_PAYLOAD_MAX)

#define WIRE_TAIL_MAX_DEFAULT (1u << 20)
#define WIRE_TAIL_MAX_LIMIT   (64u << 20) /* a WELCOME announcing more is rejected */
#define WIRE_MEMWRITE_HDR_LEN 16u         /* addr, len, flags: the body of a SRC_PAYLOAD write */
#define WIRE_MEMWRITE_FD_LEN  24u         /* addr, len, flags, src_off: the body of an fd-source write */

enum wire_type {
        WIRE_HELLO = 1,
        WIRE_WELCOME = 2,
        WIRE_ERROR = 3,
        WIRE_EVENT = 4,
        WIRE_SUBSCRIBE = 5,
        WIRE_UNSUBSCRIBE = 6,
        WIRE_REPLY = 7,
};

/* Which end decodes: a server receives client frames, a client server frames. */
enum wire_side {
        WIRE_SIDE_SERVER = 0,
        WIRE_SIDE_CLIENT = 1,
};

/* Every way a byte stream can violate the protocol. */
enum wire_err {
        WIRE_OK = 0,
        WIRE_E_TYPE,      /* unknown frame type */
        WIRE_E_DIRECTION, /* type not allowed in this direction */
        WIRE_E_ORDER,     /* nothing before HELLO/WELCOME; no second handshake */
        WIRE_E_RESERVED,  /* a reserved field is not zero */
        WIRE_E_LENGTH,    /* payload length wrong for the type */
        WIRE_E_MAGIC,     /* HELLO magic is not "VMSG" */
        WIRE_E_VERSION,   /* no common version */
        WIRE_E_STRING,    /* a fixed-size string lacks its NUL */
        WIRE_E_FIELD,     /* a field out of its range */
        WIRE_E_BODY_LEN,  /* body_len > 456 or != payload length - 56 */
        WIRE_E_BODY_KIND, /* body_len inconsistent with the kind */
        WIRE_E_KIND,      /* unknown event kind */
        WIRE_E_KIND_UP,   /* UP kind sent by a client */
        WIRE_E_KIND_DOWN, /* DOWN kind sent by the server */
        WIRE_E_FLAGS,     /* event flag not allowed here */
        WIRE_E_SOURCE,    /* unknown source */
        WIRE_E_TAIL_LEN,  /* SRC tail length 0, over tail_max or != body len */
        WIRE_E_FD,        /* fd on a frame that carries none, missing, or > 1 */
        WIRE_E_CTRUNC,    /* ancillary data truncated (fds lost) */
        WIRE_E_MAX_,
};

const char *wire_err_str(enum wire_err e);
/* The negative errno an ERROR frame carries for this violation. */
int wire_err_errno(enum wire_err e);

/* ---- decoded frames (host byte order) ---- */

struct wire_hello {
        uint32_t magic;
        uint16_t version_min;
        uint16_t version_max;
        char name[VMSIG_NAME_MAX];
};

struct wire_welcome {
        uint16_t version;
        uint32_t control_id;
        uint32_t caps;
        uint32_t uid;
        uint32_t body_max;
        uint32_t tail_max;
        uint32_t queue_bytes;
};

struct wire_error {
        int32_t code;
        char msg[VMSIG_MSG_MAX];
};

/* SUBSCRIBE and UNSUBSCRIBE (kinds unused there). */
struct wire_sub {
        uint64_t corr;
        uint32_t endpoint;
        uint64_t kinds;
};

struct wire_reply {
        uint64_t corr;
        uint16_t request_type; /* WIRE_SUBSCRIBE or WIRE_UNSUBSCRIBE */
        int32_t result;
        char msg[VMSIG_MSG_MAX];
};

struct wire_frame {
        uint16_t type;       /* enum wire_type */
        uint64_t stream_off; /* offset of the frame's first byte in the stream */
        union {
                struct wire_hello hello;
                struct wire_welcome welcome;
                struct wire_error error;
                struct wire_sub sub;
                struct wire_reply reply;
                struct vmsig_event event;
        } u;
        /* CMD_MEMWRITE with VMSIG_F_SRC_PAYLOAD: the source bytes, in the
         * receiver's buffer (valid until the next feed). NULL otherwise. */
        const uint8_t *tail;
        uint32_t tail_len;
};

/* ---- encoders: return the frame size written, or -ENOBUFS / -EINVAL ---- */

ssize_t wire_encode_hello(void *buf, size_t cap, const char *name);
ssize_t wire_encode_hello_raw(void *buf, size_t cap, const struct wire_hello *h);
ssize_t wire_encode_welcome(void *buf, size_t cap, const struct wire_welcome *w);
/* msg may be NULL; it is truncated to fit. */
ssize_t wire_encode_error(void *buf, size_t cap, int32_t code, const char *msg);
/* Checks the event for the direction it travels (from_client) first:
 * -EINVAL for anything the receiver would reject. */
ssize_t wire_encode_event(void *buf, size_t cap, const struct vmsig_event *ev, bool from_client);
ssize_t wire_encode_subscribe(void *buf, size_t cap, uint64_t corr, uint32_t endpoint, uint64_t kinds);
ssize_t wire_encode_unsubscribe(void *buf, size_t cap, uint64_t corr, uint32_t endpoint);
ssize_t wire_encode_reply(void *buf, size_t cap, uint64_t corr, uint16_t request_type, int32_t result,
                          const char *msg);
/* The u32 that precedes a SRC tail. Always 4 bytes; cap must be >= 4. */
ssize_t wire_encode_tail_len(void *buf, size_t cap, uint32_t len);

/* ---- decoders ---- */

/* Decode one payload of the given type as received by side. Checks the
 * direction and every field, not the handshake order (the receiver does). */
enum wire_err wire_decode(enum wire_side side, uint16_t type, const uint8_t *payload, size_t len,
                          struct wire_frame *ret);
/* The event checks a receiver applies (what wire_decode applies to EVENT
 * payloads); encoding also checks the reserved bytes of UP bodies. */
enum wire_err wire_check_event(const struct vmsig_event *ev, bool from_client);

/* ---- incremental receiver ---- */

enum wire_rx_state {
        WIRE_RX_PREFIX = 0,
        WIRE_RX_PAYLOAD,
        WIRE_RX_TAIL_LEN,
        WIRE_RX_TAIL,
        WIRE_RX_FAILED,
};

struct wire_rx {
        enum wire_side side;
        enum wire_rx_state state;
        enum wire_err err;
        bool handshaken;
        uint16_t type;
        uint32_t need; /* payload bytes expected */
        uint32_t have; /* bytes in buf (prefix, then payload) */
        uint8_t buf[WIRE_FRAME_MAX];
        uint8_t tlen[WIRE_TAIL_LEN_LEN];
        uint32_t tlen_have;
        uint8_t *tail; /* tail_max bytes, allocated once */
        uint32_t tail_max;
        uint32_t tail_len;
        uint32_t tail_have;
        bool fd_src;        /* server: the connection speaks version 2, HAS_FD CMD_MEMWRITE allowed */
        uint64_t off;       /* bytes consumed so far */
        uint64_t frame_off; /* where the current frame began */
        struct wire_frame frame;
};

/* side: which end this is. tail_max: the SRC tail bound; a server side needs
 * it > 0 (<= WIRE_TAIL_MAX_LIMIT) and gets its buffer now, a client side
 * passes 0. -EINVAL, -ENOMEM. */
int wire_rx_init(struct wire_rx *rx, enum wire_side side, uint32_t tail_max);
/* Frees the tail buffer. Safe on a zeroed or already-done rx. */
void wire_rx_done(struct wire_rx *rx);

/* Consume bytes from data, never past the end of one frame (and its tail).
 * Returns the number of bytes consumed (0..len); when that completes a frame,
 * *ret_frame points at it (valid until the next call), else NULL. A
 * violation returns -EBADMSG and stays sticky; wire_rx_error() names it. */
ssize_t wire_rx_feed(struct wire_rx *rx, const void *data, size_t len, const struct wire_frame **ret_frame);
static inline enum wire_err wire_rx_error(const struct wire_rx *rx)
{
        return rx->err;
}
/* Mark the stream failed from outside (fd and ancillary checks). */
void wire_rx_fail(struct wire_rx *rx, enum wire_err e);
/* True between frames (nothing partial buffered). */
static inline bool wire_rx_idle(const struct wire_rx *rx)
{
        return rx->state == WIRE_RX_PREFIX && rx->have == 0;
}

#endif
