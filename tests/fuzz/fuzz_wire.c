/* SPDX-License-Identifier: MIT */
/* Arbitrary bytes into the wire receiver, as the daemon (client frames) and
 * as a control (daemon frames). The first byte picks how the input is split
 * into reads, and (bit 6) whether the daemon's side speaks version 2, where
 * a CMD_MEMWRITE may announce an fd source (HAS_FD). Every frame accepted must re-encode to exactly the bytes
 * it came from (strings aside, which senders need not pad), so the decoder can neither invent nor lose
 * information. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "transport/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_TAIL_MAX 65536u

static void check_reencode(enum wire_side side, const struct wire_frame *f, const uint8_t *orig,
                           size_t orig_len)
{
        uint8_t b[WIRE_FRAME_MAX + WIRE_TAIL_LEN_LEN];
        ssize_t n;

        switch (f->type) {
        case WIRE_HELLO:
                n = wire_encode_hello_raw(b, sizeof(b), &f->u.hello);
                break;
        case WIRE_WELCOME:
                n = wire_encode_welcome(b, sizeof(b), &f->u.welcome);
                break;
        case WIRE_EVENT:
                n = wire_encode_event(b, sizeof(b), &f->u.event, side == WIRE_SIDE_SERVER);
                if (n > 0 && f->tail) {
                        /* the tail prefix follows the frame in the stream */
                        n += wire_encode_tail_len(b + n, WIRE_TAIL_LEN_LEN, f->tail_len);
                }
                break;
        case WIRE_SUBSCRIBE:
                n = wire_encode_subscribe(b, sizeof(b), f->u.sub.corr, f->u.sub.endpoint, f->u.sub.kinds);
                break;
        case WIRE_UNSUBSCRIBE:
                n = wire_encode_unsubscribe(b, sizeof(b), f->u.sub.corr, f->u.sub.endpoint);
                break;
        default:
                return; /* ERROR, REPLY: string padding may differ */
        }
        /* A client ignores reserved bytes of UP bodies that the daemon's
         * encoder refuses to send: accepted, but not re-encodable. */
        if (n == -EINVAL && f->type == WIRE_EVENT && side == WIRE_SIDE_CLIENT)
                return;
        if (n <= 0 || (size_t)n > orig_len || memcmp(b, orig, (size_t)n) != 0)
                __builtin_trap();
        if (f->tail && (size_t)n + f->tail_len != orig_len)
                __builtin_trap();
        if (f->tail && memcmp(f->tail, orig + n, f->tail_len) != 0)
                __builtin_trap();
}

/* An fd-source frame is accepted only on a version-2 connection, never
 * with a tail, and always with the 24-byte body naming src_off. */
static void check_fd_source(enum wire_side side, const struct wire_frame *f, bool fd_src)
{
        if (f->type != WIRE_EVENT || !(f->u.event.hdr.flags & VMSIG_F_HAS_FD) || side != WIRE_SIDE_SERVER)
                return;
        if (!fd_src || f->tail || f->u.event.hdr.kind != VMSIG_EV_CMD_MEMWRITE ||
            f->u.event.hdr.body_len != WIRE_MEMWRITE_FD_LEN || (f->u.event.hdr.flags & VMSIG_F_SRC_PAYLOAD))
                __builtin_trap();
}

static void run(enum wire_side side, const uint8_t *data, size_t size, unsigned split, bool fd_src)
{
        struct wire_rx rx;
        size_t off = 0;
        unsigned step = 0;

        if (wire_rx_init(&rx, side, side == WIRE_SIDE_SERVER ? FUZZ_TAIL_MAX : 0) < 0)
                return;
        rx.fd_src = fd_src && side == WIRE_SIDE_SERVER;
        while (off < size) {
                /* split 0: everything at once; else reads of 1..split bytes */
                size_t chunk = split ? 1 + (step++ * 7u) % split : size - off;
                if (chunk > size - off)
                        chunk = size - off;
                size_t coff = 0;
                while (coff < chunk) {
                        const struct wire_frame *f;
                        ssize_t n = wire_rx_feed(&rx, data + off + coff, chunk - coff, &f);
                        if (n < 0)
                                goto out;
                        if ((size_t)n > chunk - coff)
                                __builtin_trap();
                        coff += (size_t)n;
                        if (f) {
                                size_t start = (size_t)f->stream_off;
                                size_t end = off + coff;
                                if (start >= end || end - start > WIRE_FRAME_MAX + 4 + FUZZ_TAIL_MAX)
                                        __builtin_trap();
                                check_reencode(side, f, data + start, end - start);
                                check_fd_source(side, f, rx.fd_src);
                        } else if (coff != chunk) {
                                __builtin_trap();
                        }
                }
                off += chunk;
        }
out:
        wire_rx_done(&rx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        unsigned split;

        if (size < 1)
                return 0;
        split = data[0] & 0x3f;
        run(WIRE_SIDE_SERVER, data + 1, size - 1, split, data[0] & 0x40);
        run(WIRE_SIDE_CLIENT, data + 1, size - 1, split, false);
        return 0;
}
