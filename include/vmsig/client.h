/* SPDX-License-Identifier: MIT */
#ifndef VMSIG_CLIENT_H
#define VMSIG_CLIENT_H

/* The control side of the vmsigd unix socket (docs/protocol.md). One
 * connection per struct vmsig_client; not thread-safe (use it from one thread
 * or lock around it). After the handshake the socket is non-blocking: poll
 * vmsig_client_fd() for vmsig_client_poll_events() and call
 * vmsig_client_recv() / vmsig_client_flush() when it is ready, or use the
 * blocking *_wait helpers. Errors are negative errno values. Everything the
 * daemon sends is validated; a daemon that breaks the protocol ends the
 * connection with -EPROTO, never a crash. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <vmsig/event.h>

#ifdef __cplusplus
extern "C" {
#endif

struct vmsig_client;

/* What the daemon said in WELCOME. */
struct vmsig_client_info {
        uint16_t version;
        uint32_t control_id;
        uint32_t caps; /* enum vmsig_cap granted to this uid */
        uint32_t uid;  /* as the daemon saw it (SO_PEERCRED) */
        uint32_t body_max;
        uint32_t tail_max;    /* bound of a send_payload source */
        uint32_t queue_bytes; /* bound of the daemon's queue for this connection ([limits] queue_bytes) */
};

/* The answer to a SUBSCRIBE or UNSUBSCRIBE. */
struct vmsig_client_reply {
        uint64_t corr;
        uint16_t request_type; /* VMSIG_CLIENT_REQ_* */
        int32_t result;        /* 0 or negative errno */
        char msg[VMSIG_MSG_MAX];
};
enum {
        VMSIG_CLIENT_REQ_SUBSCRIBE = 5,
        VMSIG_CLIENT_REQ_UNSUBSCRIBE = 6,
};

/* Why the connection ended (or could not start). */
struct vmsig_client_error {
        int code;         /* negative errno; 0 = no error so far */
        bool from_daemon; /* msg is the text of the daemon's ERROR frame */
        char msg[VMSIG_MSG_MAX];
};

/* What vmsig_client_recv() produced. */
enum {
        VMSIG_CLIENT_EVENT = 1,
        VMSIG_CLIENT_REPLY = 2,
};

int vmsig_client_new(struct vmsig_client **ret);
/* Connect (once per client) to the daemon socket at path and do HELLO/WELCOME, blocking for at
 * most timeout_ms (< 0: no limit). name (< 64 bytes, may be NULL) shows up in
 * audit records and lease holder info. On a refusal returns the daemon's
 * code (e.g. -EACCES) and vmsig_client_last_error() has its text. */
int vmsig_client_connect(struct vmsig_client *c, const char *path, const char *name, int timeout_ms);
/* Closes the socket, any unclaimed fd, frees. Accepts NULL, returns NULL. */
struct vmsig_client *vmsig_client_free(struct vmsig_client *c);

int vmsig_client_fd(const struct vmsig_client *c);
/* POLLIN, plus POLLOUT while output is pending. */
short vmsig_client_poll_events(const struct vmsig_client *c);
/* NULL before a successful connect. */
const struct vmsig_client_info *vmsig_client_get_info(const struct vmsig_client *c);
/* Never NULL; code 0 while nothing went wrong. */
const struct vmsig_client_error *vmsig_client_last_error(const struct vmsig_client *c);

/* Requests. Each queues one frame and tries to write it at once; a corr is
 * assigned and returned through ret_corr (may be NULL). -EAGAIN when the
 * output buffer cannot take the frame now (flush and retry); -ENOTCONN,
 * or the sticky error once the connection ended. */
/* The retained replay arrives before the REPLY; wait for that REPLY before
 * the next subscribe (the daemon holds one at a time). */
int vmsig_client_subscribe(struct vmsig_client *c, uint32_t endpoint, uint64_t kinds, uint64_t *ret_corr);
int vmsig_client_unsubscribe(struct vmsig_client *c, uint32_t endpoint, uint64_t *ret_corr);
/* Send a DOWN command. If ev->hdr.corr is 0 a fresh corr is used (returned);
 * -EINVAL for anything the daemon would reject as a protocol violation. */
int vmsig_client_send(struct vmsig_client *c, const struct vmsig_event *ev, uint64_t *ret_corr);
/* CMD_MEMWRITE whose source travels as a tail: ev carries addr and flags
 * (its body may be short); len is set from the source, which must satisfy
 * 0 < len <= info.tail_max (else -EMSGSIZE). */
int vmsig_client_send_payload(struct vmsig_client *c, const struct vmsig_event *ev, const void *src,
                              size_t len, uint64_t *ret_corr);
/* ---- CMD_MEMWRITE from shared memory (docs/protocol.md §7.2) ----
 * A daemon speaking protocol version 2 (info.version >= 2) also takes a
 * CMD_MEMWRITE whose source is a memfd (or tmpfs file) passed with the
 * command and copied into guest RAM in the daemon's kernel. The daemon reads
 * it when the write runs, i.e. until the write's ACT_ACK: do not change the
 * source bytes before that. On a version-1 daemon the calls below that need
 * it return -EOPNOTSUPP (vmsig_client_memwrite falls back to the tail). */

/* True when the daemon accepts the fd source. */
bool vmsig_client_can_memwrite_fd(const struct vmsig_client *c);
/* Write len bytes from src (0 < len <= info.tail_max, else -EMSGSIZE):
 * inline up to 440 bytes; from VMSIG_CLIENT_MEMWRITE_FD_MIN bytes on,
 * copied into the connection's staging memfd and sent as the fd source when
 * the daemon speaks version 2 and the staging memfd is free; otherwise as a
 * tail. ev carries addr, flags and cr3. */
#define VMSIG_CLIENT_MEMWRITE_FD_MIN 65536u
int vmsig_client_memwrite(struct vmsig_client *c, const struct vmsig_event *ev, const void *src, size_t len,
                          uint64_t *ret_corr);
/* Zero-copy: the connection's staging buffer (info.tail_max bytes, a
 * mapping of a sealed memfd shared with the daemon), to fill and then send
 * with vmsig_client_memwrite_submit. -EOPNOTSUPP (version-1 daemon),
 * -EBUSY while a write from it waits for its ACT_ACK (receive it first).
 * vmsig_client_memwrite stages its copies in the same buffer: do not call
 * it between filling the buffer and submitting it. */
int vmsig_client_memwrite_buffer(struct vmsig_client *c, void **ret_buf, size_t *ret_size);
/* CMD_MEMWRITE of the staging buffer's first len bytes (ev: addr, flags,
 * cr3). The buffer is busy until this write's ACT_ACK has been received
 * with vmsig_client_recv(). -EAGAIN while earlier output is still queued
 * (flush, then retry); -EBUSY; -EMSGSIZE. */
int vmsig_client_memwrite_submit(struct vmsig_client *c, const struct vmsig_event *ev, size_t len,
                                 uint64_t *ret_corr);
/* The fd source with a caller's fd: bytes [src_off, src_off + len) of fd
 * (the daemon takes only a readable regular file on tmpfs, e.g. a memfd,
 * and ends the connection otherwise; len above its bound is refused with
 * ACT_ACK -EMSGSIZE). fd stays the caller's. -EAGAIN as for submit. */
int vmsig_client_send_fd(struct vmsig_client *c, const struct vmsig_event *ev, int fd, uint64_t src_off,
                         size_t len, uint64_t *ret_corr);

int vmsig_client_lease_acquire(struct vmsig_client *c, uint32_t endpoint, uint8_t lease_class,
                               uint64_t *ret_corr);
int vmsig_client_lease_release(struct vmsig_client *c, uint32_t endpoint, uint8_t lease_class,
                               uint64_t *ret_corr);

/* Write pending output, waiting at most timeout_ms (0: don't wait, < 0: no
 * limit). 0 when everything is written, -EAGAIN / -ETIMEDOUT if some is left. */
int vmsig_client_flush(struct vmsig_client *c, int timeout_ms);
size_t vmsig_client_pending_output(const struct vmsig_client *c);

/* Non-blocking: the next complete message. VMSIG_CLIENT_EVENT: *ret_event
 * is filled and *ret_fd is the read-only RAM fd of a MEMCTX event (the caller
 * owns it: close it) or -1. VMSIG_CLIENT_REPLY: *ret_reply is filled; with
 * ret_reply NULL replies are consumed silently. -EAGAIN when nothing complete
 * is there; the daemon's ERROR code (see last_error), -ECONNRESET on EOF or
 * -EPROTO on a violation once the connection has ended (sticky). */
int vmsig_client_recv(struct vmsig_client *c, struct vmsig_event *ret_event, int *ret_fd,
                      struct vmsig_client_reply *ret_reply);
/* The same, blocking up to timeout_ms (< 0: no limit; -ETIMEDOUT), flushing
 * pending output meanwhile. A signal interrupting the wait returns -EINTR. */
int vmsig_client_recv_wait(struct vmsig_client *c, struct vmsig_event *ret_event, int *ret_fd,
                           struct vmsig_client_reply *ret_reply, int timeout_ms);

#ifdef __cplusplus
}
#endif
#endif
