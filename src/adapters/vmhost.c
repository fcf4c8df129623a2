/* SPDX-License-Identifier: MIT */
/* vmhost: VM lifecycle over QMP (the VM's shared session, adapters/vmconn.h).
 *
 * Truth comes from QEMU, not from command replies: on every (re)connect and
 * after every lifecycle event (SHUTDOWN RESET STOP RESUME POWERDOWN
 * GUEST_PANICKED SUSPEND WAKEUP) the adapter asks query-status and emits a
 * STATUS with that state and the event as the reason; QEMU going away is
 * STATUS gone, and its return is noticed by the session's reconnect.
 *
 * Power ops and the QMP they use:
 *   on        shut down / panicked: system_reset, wait for RESET, then cont
 *             (a VM run with -no-shutdown; if the reboot action is
 *             "shutdown", e.g. -no-reboot, the reset becomes a SHUTDOWN and
 *             "on" fails saying so); paused / prelaunch: cont; suspended:
 *             system_wakeup. It cannot start a QEMU that is not running.
 *   off       quit (QEMU exits: STATUS gone follows)
 *   reset     system_reset, then wait for its RESET event: "done" only once
 *             the reset happened. If the reboot action is "shutdown"
 *             (-no-reboot, libvirt's on_reboot=destroy) QEMU answers with a
 *             SHUTDOWN (reason host-qmp-system-reset) and usually exits:
 *             the ACK says so (-ESHUTDOWN), never "done".
 *   pause     stop
 *   resume    cont
 *   powerdown system_powerdown: an ACPI request the guest may ignore.
 * Every service command gets exactly one ACT_ACK carrying QEMU's result
 * (error class and description) or "QEMU not connected". Commands have a
 * deadline (option cmd_timeout_ms, default 3000): -ETIMEDOUT if QEMU was not
 * answering and the command was never sent, -EINPROGRESS if it was sent and
 * QEMU did not answer in time (it may still take effect). Right before a
 * command is written to QEMU its issuer must still hold the power lease
 * (CMD_STATUS_QUERY: still be connected), else -ECANCELED, never sent. On
 * detach, commands still queued are answered -ECANCELED (not applied) and a
 * command QEMU has not answered -EINPROGRESS. Everything runs on the loop
 * thread: QMP is non-blocking, so no worker is needed. */
#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <vmsig/adapter.h>
#include <vmsig/event.h>

#include "adapters/vmconn.h"
#include "util/clock.h"

#define COOKIE_QMP         1u
#define COOKIE_RETRY       2u
#define COOKIE_ON          3u
#define ON_WAIT_MS         10000u
#define ON_BECAME_SHUTDOWN "system_reset became a SHUTDOWN (the reboot action is shutdown, e.g. -no-reboot)"
#define RESET_WAIT_MS      10000u
#define RESET_BECAME_SHUTDOWN                                                                                \
        "reset: the VM shut down instead of resetting (SHUTDOWN %s: the reboot action is shutdown, e.g. "    \
        "-no-reboot or libvirt on_reboot=destroy)"

enum {
        Q_STATUS,    /* query-status for a STATUS (connect / event) */
        Q_QUERY,     /* CMD_STATUS_QUERY */
        Q_POWER,     /* a one-step power op */
        Q_ON_PROBE,  /* "on": query-status first */
        Q_ON_RESET,  /* "on": system_reset in flight */
        Q_ON_PARKED, /* "on": reset accepted, waiting for its RESET event */
        Q_ON_CONT,   /* "on": the final cont / system_wakeup */
        Q_RESET,     /* "reset": system_reset in flight */
        Q_RESET_WAIT /* "reset": accepted, waiting for its RESET (or SHUTDOWN) */
};

/* One QMP request in flight; owned by the adapter so close() can free
 * those whose replies will never come. */
struct op {
        struct op *next, *prev;
        struct vmhost *h;
        int what;
        struct vmsig_event cmd; /* the command (Q_QUERY, Q_POWER, Q_ON_*) */
        char reason[96];        /* Q_STATUS: why we asked */
        uint8_t fallback;       /* Q_STATUS: state to report if the query fails */
        /* Q_RESET: events seen while system_reset was in flight */
        bool reset_seen, shutdown_seen;
        char shutdown_reason[48];
        uint64_t deadline_ms; /* Q_RESET_WAIT */
};

struct vmhost {
        uint32_t endpoint;
        char *qmp_path;
        struct vmconn_opts copts;
        const struct vmsig_emit_sink *sink;
        struct vmconn_listener l;
        bool attached;
        uint32_t timeout_ms; /* per command */
        uint8_t state;       /* last emitted enum vmsig_run_state */
        bool announced;      /* a STATUS went out */
        bool ever_ready;     /* QEMU answered since attach: down is "gone", not "starting" */
        struct op ops;       /* list head */

        /* the one "on" in progress (its op is in h->ops) */
        int on_tfd; /* times out a parked "on" and parked resets */
        struct op *on;
        uint64_t on_deadline_ms;              /* of a parked "on" */
        uint64_t park_due_ms;                 /* the deadline on_tfd is armed for, 0 if none */
        bool on_reset_seen, on_shutdown_seen; /* events while system_reset was in flight */
};

static uint8_t map_run_state(const char *s)
{
        if (!s)
                return VMSIG_RUN_UNKNOWN;
        if (!strcmp(s, "running"))
                return VMSIG_RUN_RUNNING;
        if (!strcmp(s, "shutdown"))
                return VMSIG_RUN_SHUTDOWN;
        if (!strcmp(s, "guest-panicked") || !strcmp(s, "internal-error"))
                return VMSIG_RUN_PANICKED;
        /* paused, prelaunch, suspended, debug, io-error, watchdog, *migrate,
         * save-vm, restore-vm, colo: the guest is not executing */
        return VMSIG_RUN_PAUSED;
}

/* ---- emitting ---- */

static void emit_status(struct vmhost *h, uint8_t state, const struct vmsig_event *asker, const char *fmt,
                        ...) __attribute__((format(printf, 4, 5)));
static void emit_status(struct vmhost *h, uint8_t state, const struct vmsig_event *asker, const char *fmt,
                        ...)
{
        char reason[VMSIG_MSG_MAX];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(reason, sizeof(reason), fmt, ap);
        va_end(ap);
        h->state = state;
        h->announced = true;
        (void)vmsig_sink_status(h->sink, h->endpoint, state, asker ? &asker->hdr : NULL, "%s", reason);
}

static void ack(struct vmhost *h, const struct vmsig_event *cmd, int result, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void ack(struct vmhost *h, const struct vmsig_event *cmd, int result, const char *fmt, ...)
{
        char msg[VMSIG_MSG_MAX];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        /* service commands always acknowledge, FF or not */
        (void)vmsig_sink_ack(h->sink, VMSIG_SRC_VMHOST, &cmd->hdr, result, h->state, "%s", msg);
}

static const char *not_connected(struct vmhost *h)
{
        const char *why = "";

        (void)vmconn_get_state(&h->l, &why);
        return why;
}

/* A reply's failure as an errno + text: QMP errors keep their class. */
static int reply_error(const struct qmp_reply *r, char *buf, size_t len)
{
        if (r->error == -EREMOTEIO) {
                snprintf(buf, len, "QEMU: %s: %s", r->error_class ? r->error_class : "Error",
                         r->reason ? r->reason : "");
                if (r->error_class && !strcmp(r->error_class, "CommandNotFound"))
                        return -EOPNOTSUPP;
                return -EREMOTEIO;
        }
        /* The session's own verdicts (vmconn.h) say what happened to it. */
        if (r->error == -ETIMEDOUT || r->error == -EINPROGRESS || r->error == -ECANCELED) {
                snprintf(buf, len, "%s", r->reason ? r->reason : strerror(-r->error));
                return r->error;
        }
        if (r->error == -EPIPE || r->error == -ECONNRESET) {
                snprintf(buf, len, "QEMU not connected: %s", r->reason ? r->reason : "connection lost");
                return -ENOTCONN;
        }
        snprintf(buf, len, "QMP: %s", r->reason ? r->reason : strerror(-r->error));
        return r->error;
}

/* ---- requests ---- */

static struct op *op_new(struct vmhost *h, int what, const struct vmsig_event *cmd)
{
        struct op *o = calloc(1, sizeof(*o));

        if (!o)
                return NULL;
        o->h = h;
        o->what = what;
        if (cmd)
                memcpy(&o->cmd, cmd, vmsig_event_size(cmd));
        o->next = &h->ops;
        o->prev = h->ops.prev;
        h->ops.prev->next = o;
        h->ops.prev = o;
        return o;
}

static void op_free(struct op *o)
{
        o->prev->next = o->next;
        o->next->prev = o->prev;
        free(o);
}

static void on_reply(struct vmconn_listener *l, const struct qmp_reply *r, void *ud);

/* Right before QEMU gets a control's command: is its issuer still entitled? */
static int op_admit(struct vmconn_listener *l, void *ud, char *why, size_t len)
{
        struct op *o = ud;
        struct vmhost *h = o->h;
        bool power = o->cmd.hdr.kind == VMSIG_EV_CMD_POWER;
        int e;

        if (!h->sink->check_issuer)
                return 0;
        e = h->sink->check_issuer(h->sink, o->cmd.hdr.peer, power ? VMSIG_LEASE_POWER : -1);
        if (e == 0)
                return 0;
        snprintf(why, len, "not sent to QEMU: control %u %s", o->cmd.hdr.peer,
                 e == -ESRCH ? "has disconnected" : "no longer holds the power lease");
        return -ECANCELED;
}

/* Every QMP request of an op; a control's command is re-checked before it
 * is written (internal status queries are not). */
static int op_exec(struct vmhost *h, struct op *o, const char *command)
{
        struct vmconn_cmd c = {.command = command,
                               .timeout_ms = h->l.timeout_ms,
                               .admit = o->what == Q_STATUS ? NULL : op_admit};

        return vmconn_submit(&h->l, &c, on_reply, o);
}

static int send_op(struct vmhost *h, struct op *o, const char *command)
{
        int r = op_exec(h, o, command);

        if (r < 0)
                op_free(o);
        return r;
}

static void ask_status(struct vmhost *h, uint8_t fallback, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void ask_status(struct vmhost *h, uint8_t fallback, const char *fmt, ...)
{
        struct op *o = op_new(h, Q_STATUS, NULL);
        va_list ap;

        if (!o)
                return;
        va_start(ap, fmt);
        vsnprintf(o->reason, sizeof(o->reason), fmt, ap);
        va_end(ap);
        o->fallback = fallback;
        char reason[sizeof(o->reason)];
        memcpy(reason, o->reason, sizeof(reason));
        /* not connected any more: the event itself is all we know */
        if (send_op(h, o, "query-status") < 0 && fallback != VMSIG_RUN_UNKNOWN)
                emit_status(h, fallback, NULL, "%s", reason);
}

static const char *status_string(const struct qmp_reply *r)
{
        struct json_object *v;

        /* json_object_get_string would turn a number into text. */
        if (r->error || !json_object_object_get_ex(r->value, "status", &v) ||
            !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}

/* One timer for everything parked: a parked "on" and resets waiting for
 * their RESET. Armed for the earliest deadline, disarmed when none. */
static void park_timer_update(struct vmhost *h)
{
        struct itimerspec its = {0};
        uint64_t due = UINT64_MAX, now = vmsig_now_ms();

        if (h->on && h->on->what == Q_ON_PARKED && h->on_deadline_ms)
                due = h->on_deadline_ms;
        for (struct op *o = h->ops.next; o != &h->ops; o = o->next)
                if (o->what == Q_RESET_WAIT && o->deadline_ms < due)
                        due = o->deadline_ms;
        h->park_due_ms = due != UINT64_MAX ? due : 0;
        if (due != UINT64_MAX) {
                uint64_t ms = due > now ? due - now : 1;
                its.it_value.tv_sec = (time_t)(ms / 1000);
                its.it_value.tv_nsec = (long)(ms % 1000) * 1000000L;
        }
        (void)timerfd_settime(h->on_tfd, 0, &its, NULL);
}

static void on_arm(struct vmhost *h, uint32_t ms)
{
        h->on_deadline_ms = ms ? vmsig_now_ms() + ms : 0;
        park_timer_update(h);
}

/* Finish the pending "on" (whatever phase) with one ACK. */
static void on_finish(struct vmhost *h, struct op *o, int result, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void on_finish(struct vmhost *h, struct op *o, int result, const char *fmt, ...)
{
        char msg[VMSIG_MSG_MAX];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        if (h->on == o) {
                h->on = NULL;
                on_arm(h, 0);
        }
        ack(h, &o->cmd, result, "on: %s", msg);
        op_free(o);
}

static void on_continue(struct vmhost *h, struct op *o, const char *command)
{
        o->what = Q_ON_CONT;
        int r = op_exec(h, o, command);
        if (r < 0)
                on_finish(h, o, r == -ENOTCONN ? -ENOTCONN : r, "%s: %s", command,
                          r == -ENOTCONN ? not_connected(h) : strerror(-r));
}

/* A reset is "done" only once its RESET event showed; a SHUTDOWN instead
 * means the reboot action is shutdown and the VM is off (or QEMU gone). */
static void reset_finish(struct vmhost *h, struct op *o, int result, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void reset_finish(struct vmhost *h, struct op *o, int result, const char *fmt, ...)
{
        char msg[VMSIG_MSG_MAX];
        va_list ap;
        bool parked = o->what == Q_RESET_WAIT;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        ack(h, &o->cmd, result, "%s", msg);
        op_free(o);
        if (parked)
                park_timer_update(h);
}

static void reset_became_shutdown(struct vmhost *h, struct op *o)
{
        reset_finish(h, o, -ESHUTDOWN, RESET_BECAME_SHUTDOWN,
                     o->shutdown_reason[0] ? o->shutdown_reason : "host-qmp-system-reset");
}

static void reset_reply(struct vmhost *h, struct op *o, int e, const char *err)
{
        if (o->shutdown_seen) /* QEMU may exit before its reply gets out */
                reset_became_shutdown(h, o);
        else if (e)
                reset_finish(h, o, e, "reset: %s", err);
        else if (o->reset_seen)
                reset_finish(h, o, 0, "reset: done");
        else {
                o->what = Q_RESET_WAIT;
                o->deadline_ms = vmsig_now_ms() + RESET_WAIT_MS;
                park_timer_update(h);
        }
}

/* A RESET or SHUTDOWN event: every reset in flight or waiting learns it. */
static void reset_event(struct vmhost *h, bool reset, const char *detail)
{
        for (struct op *o = h->ops.next, *next; o != &h->ops; o = next) {
                next = o->next;
                if (o->what == Q_RESET) {
                        o->reset_seen |= reset;
                        if (!reset && !o->shutdown_seen) {
                                o->shutdown_seen = true;
                                snprintf(o->shutdown_reason, sizeof(o->shutdown_reason), "%s",
                                         detail ? detail : "");
                        }
                } else if (o->what == Q_RESET_WAIT) {
                        if (reset) {
                                reset_finish(h, o, 0, "reset: done");
                        } else {
                                snprintf(o->shutdown_reason, sizeof(o->shutdown_reason), "%s",
                                         detail ? detail : "");
                                reset_became_shutdown(h, o);
                        }
                }
        }
}

static void on_reply(struct vmconn_listener *l, const struct qmp_reply *r, void *ud)
{
        struct op *o = ud;
        struct vmhost *h = o->h;
        char err[VMSIG_MSG_MAX];
        int e = 0;

        if (r->error)
                e = reply_error(r, err, sizeof(err));

        switch (o->what) {
        case Q_STATUS: {
                const char *s = status_string(r);
                if (s)
                        emit_status(h, map_run_state(s), NULL, "%s", o->reason);
                else if (o->fallback != VMSIG_RUN_UNKNOWN)
                        emit_status(h, o->fallback, NULL, "%s", o->reason);
                op_free(o);
                return;
        }
        case Q_QUERY: {
                const char *s = status_string(r);
                if (s) {
                        emit_status(h, map_run_state(s), &o->cmd, "query: %s", s);
                        ack(h, &o->cmd, 0, "state: %s (QEMU: %s)", vmsig_run_state_name(h->state), s);
                } else {
                        if (!e)
                                snprintf(err, sizeof(err), "query-status: malformed reply"), e = -EPROTO;
                        ack(h, &o->cmd, e, "%s", err);
                }
                op_free(o);
                return;
        }
        case Q_RESET:
                reset_reply(h, o, e, err);
                return;
        case Q_POWER: {
                struct vmsig_power_body b;
                memcpy(&b, o->cmd.body, sizeof(b));
                /* quit: QEMU may close before its reply arrives; that is the goal */
                if (b.op == VMSIG_POWER_OFF && e == -ENOTCONN)
                        e = 0;
                if (e)
                        ack(h, &o->cmd, e, "%s: %s", vmsig_power_op_name(b.op), err);
                else if (b.op == VMSIG_POWER_POWERDOWN)
                        ack(h, &o->cmd, 0, "powerdown requested (ACPI; the guest decides)");
                else
                        ack(h, &o->cmd, 0, "%s: done", vmsig_power_op_name(b.op));
                op_free(o);
                return;
        }
        case Q_ON_PROBE: {
                const char *s = status_string(r);
                if (!s) {
                        if (!e)
                                snprintf(err, sizeof(err), "query-status: malformed reply"), e = -EPROTO;
                        on_finish(h, o, e, "%s", err);
                        return;
                }
                if (!strcmp(s, "running")) {
                        on_finish(h, o, -EALREADY, "VM is already running");
                } else if (!strcmp(s, "shutdown") || !strcmp(s, "guest-panicked") ||
                           !strcmp(s, "internal-error")) {
                        /* needs a reset before it may continue */
                        o->what = Q_ON_RESET;
                        h->on_reset_seen = h->on_shutdown_seen = false;
                        int rr = op_exec(h, o, "system_reset");
                        if (rr < 0)
                                on_finish(h, o, rr, "system_reset: %s",
                                          rr == -ENOTCONN ? not_connected(h) : strerror(-rr));
                } else if (!strcmp(s, "suspended")) {
                        on_continue(h, o, "system_wakeup");
                } else {
                        on_continue(h, o, "cont");
                }
                return;
        }
        case Q_ON_RESET:
                if (e) {
                        on_finish(h, o, e, "system_reset: %s", err);
                        return;
                }
                /* accepted; the reset itself shows up as a RESET event
                 * (or, with reboot action "shutdown", as SHUTDOWN) */
                if (h->on_reset_seen) {
                        on_continue(h, o, "cont");
                } else if (h->on_shutdown_seen) {
                        on_finish(h, o, -ECANCELED, ON_BECAME_SHUTDOWN);
                } else {
                        o->what = Q_ON_PARKED;
                        on_arm(h, ON_WAIT_MS);
                }
                return;
        case Q_ON_CONT:
                if (e)
                        on_finish(h, o, e, "%s", err);
                else
                        on_finish(h, o, 0, "powered on");
                return;
        default:
                op_free(o);
                return;
        }
}

/* ---- session callbacks ---- */

static void l_ready(struct vmconn_listener *l)
{
        struct vmhost *h = l->userdata;

        h->ever_ready = true;
        ask_status(h, VMSIG_RUN_UNKNOWN, "connected");
}

static void l_event(struct vmconn_listener *l, const struct qmp_event *ev)
{
        struct vmhost *h = l->userdata;
        struct json_object *v;
        const char *detail = NULL;
        uint8_t fallback;

        if (!strcmp(ev->name, "SHUTDOWN") || !strcmp(ev->name, "RESET")) {
                if (ev->data && json_object_object_get_ex(ev->data, "reason", &v))
                        detail = json_object_get_string(v);
                fallback = ev->name[0] == 'S' ? VMSIG_RUN_SHUTDOWN : VMSIG_RUN_RUNNING;
        } else if (!strcmp(ev->name, "GUEST_PANICKED")) {
                if (ev->data && json_object_object_get_ex(ev->data, "action", &v))
                        detail = json_object_get_string(v);
                fallback = VMSIG_RUN_PANICKED;
        } else if (!strcmp(ev->name, "STOP") || !strcmp(ev->name, "SUSPEND")) {
                fallback = VMSIG_RUN_PAUSED;
        } else if (!strcmp(ev->name, "RESUME") || !strcmp(ev->name, "WAKEUP") ||
                   !strcmp(ev->name, "POWERDOWN")) {
                fallback = h->state == VMSIG_RUN_UNKNOWN ? VMSIG_RUN_RUNNING : h->state;
                if (!strcmp(ev->name, "POWERDOWN"))
                        detail = "ACPI request";
                else
                        fallback = VMSIG_RUN_RUNNING;
        } else {
                return;
        }

        if (!strcmp(ev->name, "RESET") || !strcmp(ev->name, "SHUTDOWN"))
                reset_event(h, !strcmp(ev->name, "RESET"), detail);

        /* a pending "on" waits for its reset */
        if (h->on && (h->on->what == Q_ON_RESET || h->on->what == Q_ON_PARKED)) {
                struct op *o = h->on;
                bool reset = !strcmp(ev->name, "RESET"), shutdown = !strcmp(ev->name, "SHUTDOWN");
                if (o->what == Q_ON_RESET) {
                        h->on_reset_seen |= reset;
                        h->on_shutdown_seen |= shutdown;
                } else if (reset) {
                        on_arm(h, 0);
                        on_continue(h, o, "cont");
                } else if (shutdown) {
                        on_finish(h, o, -ECANCELED, ON_BECAME_SHUTDOWN);
                }
        }

        if (detail)
                ask_status(h, fallback, "%s (%s)", ev->name, detail);
        else
                ask_status(h, fallback, "%s", ev->name);
}

static void l_gone(struct vmconn_listener *l, int err, const char *reason)
{
        struct vmhost *h = l->userdata;

        /* in-flight ops already got their error replies (and ACKs): only a
         * parked "on" is left */
        if (h->on) {
                struct op *o = h->on;
                on_finish(h, o, -ENOTCONN, "QEMU not connected: %s", reason);
        }
        /* a reset that QEMU accepted and then exited on: it did not come back */
        for (struct op *o = h->ops.next, *next; o != &h->ops; o = next) {
                next = o->next;
                if (o->what == Q_RESET_WAIT)
                        reset_finish(h, o, -ESHUTDOWN,
                                     "reset: QEMU exited after system_reset, no RESET seen (%.60s)", reason);
        }
        uint8_t down = h->ever_ready ? VMSIG_RUN_GONE : VMSIG_RUN_STARTING;
        if (!h->announced || h->state != down) {
                if (h->ever_ready)
                        emit_status(h, down, NULL, "QEMU gone: %s", reason);
                else
                        emit_status(h, down, NULL, "QEMU not up yet: %s", reason);
        }
}

static const struct vmconn_listener_ops listener_ops = {
    .ready = l_ready,
    .event = l_event,
    .gone = l_gone,
};

/* ---- ops ---- */

static void vmhost_close(void *instance)
{
        struct vmhost *h = instance;

        if (!h)
                return;
        /* Answers what the session still holds (the ACKs pass: we are
         * closing); no reply callback runs after this. */
        vmconn_detach(&h->l);
        if (h->on && h->on->what == Q_ON_PARKED)
                on_finish(
                    h, h->on, -EINPROGRESS,
                    "system_reset done, but the VM's adapter left before cont: the VM may stay stopped");
        while (h->ops.next != &h->ops) {
                struct op *o = h->ops.next;
                if (o->what == Q_RESET_WAIT)
                        ack(h, &o->cmd, -EINPROGRESS,
                            "reset: system_reset accepted, but the VM's adapter left before its RESET "
                            "showed");
                else if (o->what != Q_STATUS)
                        ack(h, &o->cmd, -ECANCELED, "not sent to QEMU: the VM's vmhost adapter was detached");
                op_free(o);
        }
        if (h->on_tfd >= 0)
                close(h->on_tfd);
        free(h->qmp_path);
        free(h);
}

static const struct opt_spec vmhost_opts[] = {VMCONN_OPT_RETRY, VMCONN_OPT_CMD_TIMEOUT};

static int vmhost_open(const struct vmsig_adapter_cfg *cfg, uint32_t endpoint, void **ret_instance)
{
        uint64_t v[OPT_COUNT(vmhost_opts)];
        struct vmhost *h;

        if (!cfg || !cfg->qmp_path || !*cfg->qmp_path)
                return -EINVAL;
        if (adapter_options_parse(cfg->options, vmhost_opts, OPT_COUNT(vmhost_opts), NULL, v, NULL, 0) < 0)
                return -EINVAL;
        uint64_t retry_ms = v[0], retry_max_ms = v[1], timeout_ms = v[2];
        h = calloc(1, sizeof(*h));
        if (!h)
                return -ENOMEM;
        h->endpoint = endpoint;
        h->ops.next = h->ops.prev = &h->ops;
        h->copts.retry_min_ms = (uint32_t)retry_ms;
        h->copts.retry_max_ms = (uint32_t)retry_max_ms;
        snprintf(h->copts.vm_name, sizeof(h->copts.vm_name), "%s", cfg->vm_name ? cfg->vm_name : "");
        h->timeout_ms = (uint32_t)timeout_ms;
        h->qmp_path = strdup(cfg->qmp_path);
        h->on_tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (!h->qmp_path || h->on_tfd < 0) {
                int r = h->on_tfd < 0 ? -errno : -ENOMEM;
                vmhost_close(h);
                return r;
        }
        *ret_instance = h;
        return 0;
}

static int vmhost_attach(void *instance, const struct vmsig_emit_sink *sink, struct vmsig_fd_reg *reg,
                         size_t cap, size_t *ret_n)
{
        struct vmhost *h = instance;
        const char *why;
        int r;

        if (cap < 1 || !sink)
                return -EINVAL;
        if (h->attached)
                return -EALREADY;
        h->sink = sink;
        h->l = (struct vmconn_listener){.ops = &listener_ops,
                                        .sink = sink,
                                        .cookie_qmp = COOKIE_QMP,
                                        .cookie_timer = COOKIE_RETRY,
                                        .userdata = h,
                                        .timeout_ms = h->timeout_ms};
        r = vmconn_attach(h->qmp_path, &h->copts, &h->l);
        if (r < 0)
                return r;
        h->attached = true;
        reg[0] = (struct vmsig_fd_reg){h->on_tfd, EPOLLIN, VMSIG_RDY_TIMERFD, COOKIE_ON};
        *ret_n = 1;
        switch (vmconn_get_state(&h->l, &why)) {
        case VMCONN_READY: /* the other adapter of this VM connected it */
                h->ever_ready = true;
                ask_status(h, VMSIG_RUN_UNKNOWN, "attached");
                break;
        case VMCONN_DOWN:
                emit_status(h, VMSIG_RUN_STARTING, NULL, "QEMU not up yet: %s", why);
                break;
        case VMCONN_CONNECTING:
                break; /* ready or gone follows */
        }
        return 0;
}

static void vmhost_on_readiness(void *instance, uint64_t cookie, uint32_t events)
{
        struct vmhost *h = instance;

        if (vmconn_on_readiness(&h->l, cookie, events))
                return;
        if (cookie != COOKIE_ON)
                return;
        /* An expiry may be stale (the timer was re-armed meanwhile): only a
         * timer that is now disarmed says its deadline passed. */
        struct itimerspec cur;
        uint64_t now = vmsig_now_ms();
        if (timerfd_gettime(h->on_tfd, &cur) == 0 && !cur.it_value.tv_sec && !cur.it_value.tv_nsec &&
            h->park_due_ms > now)
                now = h->park_due_ms;
        if (h->on && h->on->what == Q_ON_PARKED && h->on_deadline_ms && h->on_deadline_ms <= now)
                on_finish(h, h->on, -ETIMEDOUT, "no RESET within %u ms after system_reset", ON_WAIT_MS);
        for (struct op *o = h->ops.next, *next; o != &h->ops; o = next) {
                next = o->next;
                if (o->what == Q_RESET_WAIT && o->deadline_ms <= now)
                        reset_finish(h, o, -EINPROGRESS,
                                     "reset: system_reset accepted, but no RESET within %u ms",
                                     RESET_WAIT_MS);
        }
        park_timer_update(h);
}

static int submit_power(struct vmhost *h, const struct vmsig_event *ev, uint32_t op)
{
        static const char *const qmp_cmd[] = {[VMSIG_POWER_OFF] = "quit",
                                              [VMSIG_POWER_RESET] = "system_reset",
                                              [VMSIG_POWER_PAUSE] = "stop",
                                              [VMSIG_POWER_RESUME] = "cont",
                                              [VMSIG_POWER_POWERDOWN] = "system_powerdown"};
        const char *why;
        struct op *o;
        int r;

        if (vmconn_get_state(&h->l, &why) != VMCONN_READY) {
                ack(h, ev, -ENOTCONN, "%s: QEMU not connected: %s", vmsig_power_op_name(op), why);
                return VMSIG_SUBMIT_ACCEPTED;
        }
        if (op == VMSIG_POWER_ON) {
                if (h->on) {
                        ack(h, ev, -EBUSY, "on: already in progress");
                        return VMSIG_SUBMIT_ACCEPTED;
                }
                o = op_new(h, Q_ON_PROBE, ev);
                if (!o)
                        return -ENOMEM;
                r = op_exec(h, o, "query-status");
                if (r < 0) {
                        op_free(o);
                        ack(h, ev, r, "on: query-status: %s", strerror(-r));
                        return VMSIG_SUBMIT_ACCEPTED;
                }
                h->on = o;
                return VMSIG_SUBMIT_ACCEPTED;
        }
        o = op_new(h, op == VMSIG_POWER_RESET ? Q_RESET : Q_POWER, ev);
        if (!o)
                return -ENOMEM;
        r = send_op(h, o, qmp_cmd[op]);
        if (r < 0)
                ack(h, ev, r, "%s: %s: %s", vmsig_power_op_name(op), qmp_cmd[op], strerror(-r));
        return VMSIG_SUBMIT_ACCEPTED;
}

static int vmhost_submit(void *instance, const struct vmsig_event *ev, const void *payload,
                         size_t payload_len)
{
        struct vmhost *h = instance;
        struct vmsig_power_body b;
        const char *why;
        struct op *o;
        int r;

        switch (ev->hdr.kind) {
        case VMSIG_EV_CMD_POWER:
                if (ev->hdr.body_len != sizeof(b) || payload)
                        return -EINVAL;
                memcpy(&b, ev->body, sizeof(b));
                if (b.op < VMSIG_POWER_ON || b.op > VMSIG_POWER_POWERDOWN)
                        return -EINVAL;
                return submit_power(h, ev, b.op);
        case VMSIG_EV_CMD_STATUS_QUERY:
                if (ev->hdr.body_len != 0 || payload)
                        return -EINVAL;
                if (vmconn_get_state(&h->l, &why) != VMCONN_READY) {
                        emit_status(h, h->ever_ready ? VMSIG_RUN_GONE : VMSIG_RUN_STARTING, ev,
                                    h->ever_ready ? "query: QEMU not connected" : "query: QEMU not up yet");
                        ack(h, ev, -ENOTCONN, "QEMU not connected: %s", why);
                        return VMSIG_SUBMIT_ACCEPTED;
                }
                o = op_new(h, Q_QUERY, ev);
                if (!o)
                        return -ENOMEM;
                r = send_op(h, o, "query-status");
                if (r < 0)
                        ack(h, ev, r, "query-status: %s", strerror(-r));
                return VMSIG_SUBMIT_ACCEPTED;
        default:
                return VMSIG_SUBMIT_NOT_MINE;
        }
}

static const struct vmsig_adapter_ops vmhost_ops = {
    .name = "vmhost-qmp",
    .seam = VMSIG_SRC_VMHOST,
    .open = vmhost_open,
    .attach = vmhost_attach,
    .on_readiness = vmhost_on_readiness,
    .submit = vmhost_submit,
    .close = vmhost_close,
};

const struct adapter_desc vmhost_qemu_adapter = {&vmhost_ops, vmhost_opts, OPT_COUNT(vmhost_opts)};
