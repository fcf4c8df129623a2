/* SPDX-License-Identifier: MIT */
/* vmconn: the one QMP session of a VM, shared by that VM's adapters.
 *
 * A QEMU `-qmp unix:...,server=on` socket serves one client at a time, so the
 * vmhost and memctx adapters of a VM cannot each connect: they attach as
 * listeners to a session keyed by (QMP socket path, loop thread), created on
 * the first attach and freed on the last detach. The session owns the QMP
 * client and a reconnect timer (a timerfd): while the socket is absent,
 * refuses, or QEMU restarts, it retries with a doubling delay, reset once a
 * connection is negotiated.
 *
 * fds: every listener watches its OWN dups (F_DUPFD_CLOEXEC) of the QMP
 * socket and of the timer through its own sink->watch_fd, with cookies it
 * chose, and forwards them with vmconn_on_readiness(). Both dups report the
 * same readiness, so processing is idempotent (a spare wakeup reads EAGAIN).
 * When the session reconnects the QMP dups are replaced (unwatch + close +
 * dup + watch) in every listener. Detaching one listener only drops its dups
 * and answers its pending commands (see vmconn_detach).
 *
 * Commands: the session writes ONE command at a time to QEMU and the next
 * only when QEMU has answered, so a QEMU that stops answering (SIGSTOPped,
 * stuck) holds at most one command it may still run later; everything behind
 * it waits in the session and is never written once its deadline passed.
 * Before writing a command after QEMU has been quiet for a while (over
 * VMCONN_LIVE_MS), the session first asks query-status as a liveness probe,
 * so even a lone command is not left in a frozen QEMU's socket. Reply
 * errors the session makes itself (reply->reason says which command and why):
 *   -ETIMEDOUT   the deadline passed before the command was written: it was
 *                dropped, QEMU never sees it (not applied);
 *   -EINPROGRESS the command was written but QEMU did not answer before the
 *                deadline (or before the listener detached): it may still
 *                take effect (outcome unknown); its late reply is discarded;
 *   -ECANCELED   never written: the listener detached, or its admit check
 *                refused (admit's own error is passed on instead if < 0).
 * A handshake (greeting + capabilities) that does not finish within
 * handshake_ms counts as a failed connect: the session closes it, reports a
 * DIAG once per outage through a listener's sink, and retries with backoff.
 * So does (once per stall) a written command outliving its deadline.
 *
 * Threads: loop thread only (the thread that owns the listeners' bus). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <vmsig/adapter.h>

#include "adapters/registry.h"
#include "host/qmp.h"

struct json_object;
struct vmconn;
struct vmconn_listener;

enum vmconn_state {
        VMCONN_DOWN,       /* no connection; a retry is armed */
        VMCONN_CONNECTING, /* socket open, greeting/negotiation running */
        VMCONN_READY,      /* commands flow */
};

struct vmconn_listener_ops {
        /* Negotiated (after every (re)connect). May issue commands. */
        void (*ready)(struct vmconn_listener *l);
        /* A QMP event (borrowed for the call). */
        void (*event)(struct vmconn_listener *l, const struct qmp_event *ev);
        /* A connection (negotiated or not) was lost; the session retries.
         * Pending commands already got their error replies. */
        void (*gone)(struct vmconn_listener *l, int err, const char *reason);
};

struct vmconn_listener {
        /* Filled by the owner before vmconn_attach(). */
        const struct vmconn_listener_ops *ops;
        const struct vmsig_emit_sink *sink;
        uint64_t cookie_qmp;
        uint64_t cookie_timer;
        void *userdata;
        uint32_t timeout_ms; /* deadline of vmconn_execute/hmp commands; 0: VMCONN_TIMEOUT_DEFAULT_MS */

        /* Private to vmconn. */
        struct vmconn *conn_;
        struct vmconn_listener *next_;
        int qmp_dup_;
        int timer_dup_;
        uint32_t qmp_events_;
        uint64_t qmp_gen_;
};

#define VMCONN_TIMEOUT_DEFAULT_MS   3000u /* well under vmsigctl's 5 s wait */
#define VMCONN_HANDSHAKE_DEFAULT_MS 5000u
#define VMCONN_LIVE_MS              20u /* QEMU answered this recently: no probe */

struct vmconn_opts {
        uint32_t retry_min_ms; /* 0: 100 */
        uint32_t retry_max_ms; /* 0: 5000 */
        uint32_t handshake_ms; /* 0: VMCONN_HANDSHAKE_DEFAULT_MS */
        char vm_name[64];      /* for DIAG messages; "" if unknown */
};

/* Join (or create) the session for qmp_path and watch its fds through
 * l->sink. The first attach tries to connect at once. Attach does not
 * replay `ready` for a session that is already READY: look at
 * vmconn_get_state() afterwards. The retry bounds of
 * the attach that created the session win. -EINVAL, -ENAMETOOLONG, -ENOMEM,
 * or a watch_fd error. */
int vmconn_attach(const char *qmp_path, const struct vmconn_opts *opts, struct vmconn_listener *l);
/* Leave: unwatch and close this listener's dups and answer its pending
 * commands now (their callbacks run inside this call): -ECANCELED if never
 * written, -EINPROGRESS if written and unanswered. Commands issued without
 * a callback (fire-and-forget, e.g. key releases) are still written later.
 * Frees the session with its last listener. NULL-safe, idempotent. */
void vmconn_detach(struct vmconn_listener *l);

/* Forward readiness of a cookie. Returns true if the cookie was one of the
 * session's (then handled), false otherwise. */
bool vmconn_on_readiness(struct vmconn_listener *l, uint64_t cookie, uint32_t events);

/* Current state; ret_reason (optional) gets why it is down ("" otherwise). */
enum vmconn_state vmconn_get_state(const struct vmconn_listener *l, const char **ret_reason);

/* Commands through the shared client. cb (may be NULL) runs exactly once,
 * on the loop thread, never inside the call that queued it. -ENOTCONN when
 * not READY, -ENOBUFS over QMP_MAX_PENDING queued, -ENOMEM. The deadline is
 * l->timeout_ms. */
typedef void (*vmconn_reply_fn)(struct vmconn_listener *l, const struct qmp_reply *reply, void *userdata);
int vmconn_execute(struct vmconn_listener *l, const char *command, struct json_object *args,
                   vmconn_reply_fn cb, void *userdata);
int vmconn_hmp(struct vmconn_listener *l, const char *command_line, vmconn_reply_fn cb, void *userdata);

/* The general form. admit (optional) runs right before the command is
 * written to QEMU: < 0 drops it unsent and cb gets that error with why as the
 * reason (e.g. the issuer lost its lease meanwhile). */
struct vmconn_cmd {
        const char *command;      /* QMP command, or the HMP command line with hmp */
        struct json_object *args; /* QMP arguments or NULL; a reference is kept */
        bool hmp;
        uint32_t timeout_ms; /* 0: no deadline */
        int (*admit)(struct vmconn_listener *l, void *userdata, char *why, size_t why_len);
};
int vmconn_submit(struct vmconn_listener *l, const struct vmconn_cmd *cmd, vmconn_reply_fn cb,
                  void *userdata);

/* The options every adapter on a session takes (adapter_options_parse):
 * the retry bounds of vmconn_opts and, for adapters that issue commands,
 * their deadline (vmconn_listener.timeout_ms). */
#define VMCONN_OPT_RETRY                                                                                     \
        {.key = "retry_ms", .type = OPT_U64, .min = 1, .max = 60000, .def = 100},                            \
        {                                                                                                    \
                .key = "retry_max_ms", .type = OPT_U64, .min = 1, .max = 600000, .def = 2000,                \
                .at_least = "retry_ms"                                                                       \
        }
#define VMCONN_OPT_CMD_TIMEOUT                                                                               \
        {                                                                                                    \
                .key = "cmd_timeout_ms", .type = OPT_U64, .min = 10, .max = 600000,                          \
                .def = VMCONN_TIMEOUT_DEFAULT_MS                                                             \
        }

/* The uid of the process on the other end of the QMP socket (SO_PEERCRED:
 * whoever listen()ed on it, i.e. QEMU as it was when it created the socket).
 * -ENOTCONN without a connection. */
#include <sys/types.h>
int vmconn_peer_uid(const struct vmconn_listener *l, uid_t *ret_uid);
/* Its pid (SO_PEERCRED): QEMU, whose fd table holds guest RAM that has no
 * path (adapters/ram_proc.h). -ENOTCONN without a connection. */
int vmconn_peer_pid(const struct vmconn_listener *l, pid_t *ret_pid);
