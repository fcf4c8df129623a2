/* SPDX-License-Identifier: MIT */
/* Non-blocking, loop-agnostic QMP client (internal to vmsig; json-c based).
 *
 * The owner polls qmp_fd() for qmp_poll_mask() (POLLIN/POLLOUT, numerically
 * equal to EPOLLIN/EPOLLOUT), registered level-triggered, and calls
 * qmp_process() with the revents it saw. After every call into the client
 * (process, execute, hmp) it re-reads qmp_poll_mask(), since queued output
 * may make the client want POLLOUT.
 *
 * States: CONNECTING -> GREETING -> NEGOTIATING (the client sends
 * qmp_capabilities itself) -> READY -> CLOSED. Commands may be queued in any
 * state but CLOSED; they go out once READY. Replies are matched by "id" in any
 * order; replies with an unknown or no id are dropped. Every line with an
 * "event" key is an event, in every state (QEMU can send one before the
 * capabilities reply).
 *
 * Failure closes the connection: on_close(err, reason) fires once, after every
 * pending command callback got the same error. Errors: -ENOENT / -ECONNREFUSED
 * (socket not there / nobody listening; returned by qmp_new() directly),
 * -EPIPE (peer closed: EOF), -ECONNRESET, -EMSGSIZE (line over the cap),
 * -EPROTO (garbage, non-object JSON, bad greeting or negotiation).
 *
 * Callbacks run only inside qmp_process()/qmp_pump()/qmp_free(). JSON passed
 * to a callback is borrowed for the duration of the call (json_object_get()
 * to keep it). A callback may call qmp_execute()/qmp_hmp() and may call
 * qmp_free() (the memory is then reclaimed when qmp_process() returns).
 */
#ifndef VMSIG_HOST_QMP_H
#define VMSIG_HOST_QMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct json_object;
struct qmp;

#define QMP_MAX_LINE_DEFAULT (16u * 1024 * 1024)
#define QMP_MAX_PENDING      4096u

enum qmp_state {
        QMP_STATE_CONNECTING,
        QMP_STATE_GREETING,
        QMP_STATE_NEGOTIATING,
        QMP_STATE_READY,
        QMP_STATE_CLOSED,
};

struct qmp_event {
        const char *name;         /* "STOP", "RESUME", ... */
        struct json_object *data; /* the "data" member, NULL when absent */
        int64_t ts_sec, ts_usec;  /* "timestamp"; -1/-1 when absent */
        struct json_object *raw;  /* the whole message */
};

struct qmp_reply {
        int error;                 /* 0; -EREMOTEIO for a QMP error reply; -EPROTO for a
                                      malformed reply; else the close/cancel errno */
        struct json_object *value; /* "return" on success, "error" object on -EREMOTEIO */
        const char *error_class;   /* QMP error class on -EREMOTEIO, else NULL */
        const char *reason;        /* why it failed (QMP "desc" or close reason), NULL on success */
        const char *text;          /* qmp_hmp() only: reply text, JSON-unescaped, CRLF -> LF */
        size_t text_len;
};

typedef void (*qmp_reply_fn)(struct qmp *q, const struct qmp_reply *reply, void *userdata);

struct qmp_config {
        /* greeting received and capabilities accepted; queued commands are now sent */
        void (*on_ready)(struct qmp *q, struct json_object *greeting, void *userdata);
        void (*on_event)(struct qmp *q, const struct qmp_event *ev, void *userdata);
        /* the connection is gone (fd already unusable for I/O, still open during the call) */
        void (*on_close)(struct qmp *q, int error, const char *reason, void *userdata);
        void *userdata;
        size_t max_line; /* 0: QMP_MAX_LINE_DEFAULT */
};

/* Connects non-blockingly to the unix socket at path. Returns -ENOENT,
 * -ECONNREFUSED, -EAGAIN (listener backlog full), -ENAMETOOLONG synchronously. */
int qmp_new(const char *path, const struct qmp_config *cfg, struct qmp **ret);
/* Adopts an already connected stream socket (made non-blocking and CLOEXEC
 * here); state GREETING. The fd is owned by the client from now on, even on error. */
int qmp_new_fd(int fd, const struct qmp_config *cfg, struct qmp **ret);
/* Pending callbacks get -ECANCELED; on_close is not called. NULL-safe. */
struct qmp *qmp_free(struct qmp *q);

int qmp_fd(const struct qmp *q);             /* -1 once closed */
uint32_t qmp_poll_mask(const struct qmp *q); /* POLLIN [| POLLOUT]; 0 once closed */
bool qmp_want_write(const struct qmp *q);
enum qmp_state qmp_get_state(const struct qmp *q);
const char *qmp_state_to_string(enum qmp_state s);
struct json_object *qmp_greeting(const struct qmp *q); /* NULL before the greeting */

/* Does the I/O that revents allows. Returns 0, or the close error if the
 * connection closed during this call (-ECANCELED if a callback freed q: then
 * q is gone). */
int qmp_process(struct qmp *q, uint32_t revents);

/* Queues {"execute":command,"arguments":args,"id":N}. args may be NULL and is
 * only read. ret_id (optional) gets N. -EPIPE when closed, -ENOBUFS when the
 * bounds are hit. */
int qmp_execute(struct qmp *q, const char *command, struct json_object *args, qmp_reply_fn cb, void *userdata,
                uint64_t *ret_id);
/* human-monitor-command: the callback gets reply->text as plain text with LF
 * line ends; a non-string return is -EPROTO for this command only. */
int qmp_hmp(struct qmp *q, const char *command_line, qmp_reply_fn cb, void *userdata, uint64_t *ret_id);

/* For tests and the fuzzer: hands bytes to the receive path as if read from
 * the socket. Same return as qmp_process(). */
int qmp_feed(struct qmp *q, const void *data, size_t len);

/* Blocking helpers for tools and tests, built on the same state machine. */
/* poll()s the fd once for up to timeout_ms (<0: forever) and processes. */
int qmp_pump(struct qmp *q, int timeout_ms);
/* Connect, negotiate, run one command; *ret_value gets a reference to the
 * "return" value (json_object_put() it). reason (optional) gets why it failed. */
int qmp_sync_execute(const char *path, const char *command, struct json_object *args, int timeout_ms,
                     struct json_object **ret_value, char *reason, size_t reason_len);
/* Same for human-monitor-command; *ret_text is malloc()ed plain text (LF). */
int qmp_sync_hmp(const char *path, const char *command_line, int timeout_ms, char **ret_text, char *reason,
                 size_t reason_len);

#endif
