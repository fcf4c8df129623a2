/* SPDX-License-Identifier: MIT */
/* The shared per-VM QMP session (see vmconn.h). */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <vmsig/event.h>

#include "adapters/vmconn.h"
#include "util/clock.h"

#define RETRY_MIN_DEFAULT_MS 100u
#define RETRY_MAX_DEFAULT_MS 5000u
#define PATH_MAX_LEN         108u /* sun_path */
#define MS                   1000000ull
#define PROBE_COMMAND        "query-status"

/* A command: queued in the session, then (one at a time) written to QEMU. */
struct req {
        struct req *next, *prev;
        struct vmconn *conn;
        struct vmconn_listener *l; /* NULL: orphaned */
        vmconn_reply_fn cb;        /* NULL: fire-and-forget, written even when orphaned */
        void *userdata;
        int (*admit)(struct vmconn_listener *l, void *userdata, char *why, size_t why_len);
        bool hmp;
        bool sent;     /* written to QEMU: it is conn->inflight until QEMU answers */
        bool answered; /* cb ran (deadline, detach): QEMU's late reply is dropped */
        bool deferred; /* answer decided inside vmconn_submit: given on the next tick */
        int d_err;
        char d_reason[160];
        uint32_t timeout_ms;
        uint64_t deadline_ns; /* 0: none */
        char *what;
        struct json_object *args;
};

struct vmconn {
        struct vmconn *next; /* registry */
        pthread_t owner;     /* the loop thread: part of the key */
        char path[PATH_MAX_LEN];
        char vm[64];
        unsigned refs;
        struct vmconn_listener *listeners;

        struct qmp *q;
        uint64_t gen; /* bumps on every new client, so stale dups are known */
        enum vmconn_state state;
        char reason[200];    /* why it is down */
        unsigned processing; /* inside qmp_process */
        bool lost;           /* on_close seen during processing */
        int lost_err;

        int tfd; /* one timer for retry, handshake and command deadlines (absolute) */
        uint64_t armed_ns;
        uint32_t min_ms, max_ms, cur_ms, hs_ms;
        uint64_t retry_at_ns; /* 0: no retry armed */
        uint64_t hs_deadline; /* handshake deadline while CONNECTING */
        bool hs_diag;         /* the handshake DIAG of this outage went out */
        bool stall_diag;      /* the "not answering" DIAG of this stall went out */

        struct req reqs; /* list head, FIFO: the in-flight one and those queued */
        unsigned nreqs;
        struct req *inflight; /* written, QEMU's reply not seen yet */
        bool probing;         /* a liveness probe is in flight */
        uint64_t heard_ns;    /* when QEMU last said anything */
        bool pumping, pump_again, in_submit, freeing;
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct vmconn *registry;

static void pump(struct vmconn *c);

/* ---- DIAG (through any listener's sink; the core stamps endpoint and seam) ---- */

static void diag(struct vmconn *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void diag(struct vmconn *c, int code, const char *fmt, ...)
{
        struct vmconn_listener *l = c->listeners;
        struct vmsig_diag_body d;
        struct vmsig_event ev;
        va_list ap;

        if (!l || !l->sink || !l->sink->emit)
                return;
        memset(&d, 0, sizeof(d));
        d.code = code;
        va_start(ap, fmt);
        vsnprintf(d.msg, sizeof(d.msg), fmt, ap);
        va_end(ap);
        memset(&ev.hdr, 0, sizeof(ev.hdr));
        ev.hdr.kind = VMSIG_EV_DIAG;
        ev.hdr.priority = VMSIG_PRIO_NORMAL;
        ev.hdr.ts_ns = vmsig_now_ns();
        ev.hdr.body_len = sizeof(d);
        memcpy(ev.body, &d, sizeof(d));
        (void)l->sink->emit(l->sink, &ev);
}

static const char *vm_label(const struct vmconn *c)
{
        return c->vm[0] ? c->vm : "?";
}

/* ---- timer: one absolute deadline, the earliest of everything pending ---- */

static void arm(struct vmconn *c)
{
        uint64_t next = 0;

        if (c->freeing)
                return;
        if (!c->q && c->retry_at_ns)
                next = c->retry_at_ns;
        if (c->q && c->state == VMCONN_CONNECTING && c->hs_deadline && (!next || c->hs_deadline < next))
                next = c->hs_deadline;
        for (struct req *r = c->reqs.next; r != &c->reqs; r = r->next) {
                uint64_t t = r->deferred ? 1 : r->answered ? 0 : r->deadline_ns;
                if (t && (!next || t < next))
                        next = t;
        }
        if (next == c->armed_ns)
                return;
        struct itimerspec its = {0};
        if (next) {
                its.it_value.tv_sec = (time_t)(next / 1000000000ull);
                its.it_value.tv_nsec = (long)(next % 1000000000ull);
                if (!its.it_value.tv_sec && !its.it_value.tv_nsec)
                        its.it_value.tv_nsec = 1;
        }
        (void)timerfd_settime(c->tfd, TFD_TIMER_ABSTIME, &its, NULL);
        c->armed_ns = next;
}

static void retry_later(struct vmconn *c)
{
        c->retry_at_ns = vmsig_now_ns() + (uint64_t)c->cur_ms * MS;
        c->cur_ms = c->cur_ms > c->max_ms / 2 ? c->max_ms : c->cur_ms * 2;
        arm(c);
}

/* ---- per-listener fd dups ---- */

static void unwatch_qmp(struct vmconn_listener *l)
{
        if (l->qmp_dup_ < 0)
                return;
        (void)l->sink->unwatch_fd(l->sink, l->qmp_dup_);
        close(l->qmp_dup_);
        l->qmp_dup_ = -1;
        l->qmp_events_ = 0;
}

/* Bring l's QMP watch in line with the client: same generation, same mask.
 * A failing watch_fd (adapter being detached) leaves it unwatched. */
static void sync_listener(struct vmconn *c, struct vmconn_listener *l)
{
        int fd = c->q ? qmp_fd(c->q) : -1;
        uint32_t want = c->q ? qmp_poll_mask(c->q) : 0;

        if (fd < 0 || want == 0) {
                unwatch_qmp(l);
                return;
        }
        if (l->qmp_dup_ >= 0 && l->qmp_gen_ == c->gen && l->qmp_events_ == want)
                return;
        unwatch_qmp(l);
        int d = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (d < 0)
                return;
        struct vmsig_fd_reg reg = {d, want, VMSIG_RDY_FD, l->cookie_qmp};
        if (l->sink->watch_fd(l->sink, &reg) < 0) {
                close(d);
                return;
        }
        l->qmp_dup_ = d;
        l->qmp_gen_ = c->gen;
        l->qmp_events_ = want; /* POLLIN/POLLOUT == EPOLLIN/EPOLLOUT */
}

static void sync_all(struct vmconn *c)
{
        for (struct vmconn_listener *l = c->listeners; l; l = l->next_)
                sync_listener(c, l);
}

/* ---- requests ---- */

static void req_unlink_free(struct vmconn *c, struct req *r)
{
        r->prev->next = r->next;
        r->next->prev = r->prev;
        c->nreqs--;
        if (c->inflight == r)
                c->inflight = NULL;
        json_object_put(r->args);
        free(r->what);
        free(r);
}

/* Give r its answer now (once). Inside vmconn_submit the callback must not
 * run, so the answer is kept and given on the next tick. */
static void answer(struct vmconn *c, struct req *r, int err, const char *reason)
{
        if (r->answered || r->deferred)
                return;
        if (c->in_submit) {
                r->deferred = true;
                r->d_err = err;
                snprintf(r->d_reason, sizeof(r->d_reason), "%s", reason);
                return;
        }
        r->answered = true;
        if (r->l && r->cb) {
                struct qmp_reply rep = {.error = err, .reason = reason};
                r->cb(r->l, &rep, r->userdata);
        }
}

/* Reply from QEMU (or the client failing it on close). */
static void req_reply(struct qmp *q, const struct qmp_reply *reply, void *ud)
{
        struct req *r = ud;
        struct vmconn *c = r->conn;
        bool closed = qmp_get_state(q) == QMP_STATE_CLOSED;

        if (c->inflight == r)
                c->inflight = NULL;
        if (!closed) {
                c->heard_ns = vmsig_now_ns();
                c->stall_diag = false;
        }
        if (!r->answered && !r->deferred && r->l && r->cb && !c->freeing) {
                r->answered = true;
                r->cb(r->l, reply, r->userdata);
        }
        req_unlink_free(c, r);
        if (!closed && !c->freeing)
                pump(c);
}

static void probe_reply(struct qmp *q, const struct qmp_reply *reply, void *ud)
{
        struct vmconn *c = ud;

        c->probing = false;
        if (c->freeing || qmp_get_state(q) == QMP_STATE_CLOSED)
                return;
        c->heard_ns = vmsig_now_ns();
        c->stall_diag = false;
        pump(c);
}

static void expired_unsent(struct vmconn *c, struct req *r)
{
        char why[160];

        snprintf(why, sizeof(why),
                 "QEMU is not answering (waited %u ms): %.40s was not sent and never will be", r->timeout_ms,
                 r->what);
        if (!c->stall_diag) {
                c->stall_diag = true;
                diag(c, -ETIMEDOUT, "VM '%s': QEMU is not answering QMP on %s (%.40s waited %u ms, not sent)",
                     vm_label(c), c->path, r->what, r->timeout_ms);
        }
        answer(c, r, -ETIMEDOUT, why);
        if (!r->deferred)
                req_unlink_free(c, r);
}

/* One due answer, or false when nothing is due. Callbacks may queue or
 * answer other commands, so the caller rescans from the head each time. */
static bool expire_one(struct vmconn *c, uint64_t now)
{
        char why[160];

        for (struct req *r = c->reqs.next; r != &c->reqs; r = r->next) {
                if (r->deferred && !c->in_submit) {
                        r->deferred = false;
                        r->answered = true;
                        if (r->l && r->cb) {
                                struct qmp_reply rep = {.error = r->d_err, .reason = r->d_reason};
                                r->cb(r->l, &rep, r->userdata);
                        }
                        if (!r->sent)
                                req_unlink_free(c, r);
                        return true;
                }
                if (r->answered || r->deferred || !r->deadline_ns || now < r->deadline_ns)
                        continue;
                if (!r->sent) {
                        expired_unsent(c, r);
                        return true;
                }
                /* Sent: "outcome unknown" now, but it keeps its slot until
                 * QEMU replies, so nothing else reaches a stuck QEMU. */
                snprintf(why, sizeof(why),
                         "QEMU did not answer %.40s within %u ms; it was sent and may still take effect",
                         r->what, r->timeout_ms);
                if (!c->stall_diag) {
                        c->stall_diag = true;
                        diag(c, -ETIMEDOUT, "VM '%s': QEMU is not answering QMP on %s (%.40s sent %u ms ago)",
                             vm_label(c), c->path, r->what, r->timeout_ms);
                }
                answer(c, r, -EINPROGRESS, why);
                return true;
        }
        return false;
}

static void expire(struct vmconn *c, uint64_t now)
{
        /* Nested pumps wait: they must not free what we are looking at. */
        bool was = c->pumping;
        c->pumping = true;
        while (expire_one(c, now))
                ;
        c->pumping = was;
}

static bool can_write(const struct vmconn *c)
{
        return c->q && c->state == VMCONN_READY && qmp_get_state(c->q) == QMP_STATE_READY && !c->inflight &&
               !c->probing && !c->freeing;
}

/* Write the next command if QEMU is free and known alive. */
static void pump(struct vmconn *c)
{
        if (c->pumping) {
                c->pump_again = true;
                return;
        }
        c->pumping = true;
        do {
                c->pump_again = false;
                while (can_write(c)) {
                        struct req *r = c->reqs.next;
                        while (r != &c->reqs && (r->sent || r->deferred))
                                r = r->next;
                        if (r == &c->reqs)
                                break;
                        uint64_t now = vmsig_now_ns();
                        if (r->deadline_ns && now >= r->deadline_ns) {
                                expired_unsent(c, r);
                                continue;
                        }
                        if (now - c->heard_ns > (uint64_t)VMCONN_LIVE_MS * MS) {
                                if (qmp_execute(c->q, PROBE_COMMAND, NULL, probe_reply, c, NULL) == 0)
                                        c->probing = true;
                                break;
                        }
                        char why[160] = "";
                        int e = 0;
                        if (r->admit && r->l) {
                                e = r->admit(r->l, r->userdata, why, sizeof(why));
                                if (e < 0 && !why[0])
                                        snprintf(why, sizeof(why), "%.40s not sent: %s", r->what,
                                                 strerror(-e));
                        }
                        if (e == 0) {
                                e = r->hmp ? qmp_hmp(c->q, r->what, req_reply, r, NULL)
                                           : qmp_execute(c->q, r->what, r->args, req_reply, r, NULL);
                                if (e == 0) {
                                        r->sent = true;
                                        c->inflight = r;
                                        json_object_put(r->args);
                                        r->args = NULL;
                                        continue;
                                }
                                snprintf(why, sizeof(why), "QMP %.40s: %s", r->what, strerror(-e));
                        }
                        answer(c, r, e, why);
                        if (!r->deferred)
                                req_unlink_free(c, r);
                }
        } while (c->pump_again);
        c->pumping = false;
        if (!c->processing)
                sync_all(c);
        arm(c);
}

/* The connection went away: what never reached QEMU fails like the command
 * in flight did (the caller keeps today's "QEMU not connected" answer). */
static void fail_queued(struct vmconn *c, int err, const char *reason)
{
        for (struct req *r = c->reqs.next, *n; r != &c->reqs; r = n) {
                n = r->next;
                if (r->sent)
                        continue; /* the client fails it (or already did) */
                if (r->deferred) {
                        r->deferred = false;
                        answer(c, r, r->d_err, r->d_reason);
                } else {
                        answer(c, r, err, reason);
                }
                n = r->next;
                req_unlink_free(c, r);
        }
}

/* ---- connection life ---- */

static void on_ready(struct qmp *q, struct json_object *greeting, void *ud)
{
        struct vmconn *c = ud;

        c->state = VMCONN_READY;
        c->reason[0] = 0;
        c->cur_ms = c->min_ms;
        c->hs_deadline = 0;
        c->hs_diag = false;
        c->heard_ns = vmsig_now_ns();
        for (struct vmconn_listener *l = c->listeners, *n; l; l = n) {
                n = l->next_;
                if (l->ops->ready)
                        l->ops->ready(l);
        }
        pump(c);
}

static void on_event(struct qmp *q, const struct qmp_event *ev, void *ud)
{
        struct vmconn *c = ud;

        c->heard_ns = vmsig_now_ns();
        for (struct vmconn_listener *l = c->listeners, *n; l; l = n) {
                n = l->next_;
                if (l->ops->event)
                        l->ops->event(l, ev);
        }
}

static void on_close(struct qmp *q, int err, const char *reason, void *ud)
{
        struct vmconn *c = ud;

        /* Tear down after qmp_process() returns, never inside the client. */
        c->lost = true;
        c->lost_err = err;
        snprintf(c->reason, sizeof(c->reason), "%s", reason ? reason : "QMP connection closed");
}

static void conn_lost(struct vmconn *c)
{
        int err = c->lost_err;

        c->lost = false;
        c->q = qmp_free(c->q);
        c->inflight = NULL;
        c->probing = false;
        c->gen++;
        c->state = VMCONN_DOWN;
        c->hs_deadline = 0;
        fail_queued(c, err, c->reason);
        sync_all(c); /* drop the dups now: a dead socket stays readable */
        retry_later(c);
        for (struct vmconn_listener *l = c->listeners, *n; l; l = n) {
                n = l->next_;
                if (l->ops->gone)
                        l->ops->gone(l, err, c->reason);
        }
}

static void try_connect(struct vmconn *c)
{
        struct qmp_config cfg = {
            .on_ready = on_ready, .on_event = on_event, .on_close = on_close, .userdata = c};
        int r;

        if (c->q)
                return;
        c->retry_at_ns = 0;
        r = qmp_new(c->path, &cfg, &c->q);
        if (r < 0) {
                c->q = NULL;
                snprintf(c->reason, sizeof(c->reason), "QMP socket %s: %s", c->path, strerror(-r));
                retry_later(c);
                return;
        }
        c->gen++;
        c->state = VMCONN_CONNECTING;
        c->hs_deadline = vmsig_now_ns() + (uint64_t)c->hs_ms * MS;
        snprintf(c->reason, sizeof(c->reason), "QMP negotiation in progress");
        sync_all(c);
        arm(c);
}

/* A peer that accepts and then says nothing (or never accepts our
 * capabilities) must not hold the session forever. */
static void handshake_timeout(struct vmconn *c)
{
        enum qmp_state st = qmp_get_state(c->q);
        const char *what = st == QMP_STATE_CONNECTING ? "connect did not complete"
                           : st == QMP_STATE_GREETING ? "no QMP greeting"
                                                      : "qmp_capabilities not answered";

        c->lost_err = -ETIMEDOUT;
        snprintf(c->reason, sizeof(c->reason), "QMP socket %s: %s within %u ms", c->path, what, c->hs_ms);
        if (!c->hs_diag) {
                c->hs_diag = true;
                diag(c, -ETIMEDOUT, "VM '%s': QMP socket %s: %s within %u ms; retrying", vm_label(c), c->path,
                     what, c->hs_ms);
        }
        conn_lost(c);
}

static void tick(struct vmconn *c)
{
        uint64_t now = vmsig_now_ns();

        if (!c->q && c->retry_at_ns && now >= c->retry_at_ns)
                try_connect(c);
        if (c->q && c->state == VMCONN_CONNECTING && c->hs_deadline && now >= c->hs_deadline)
                handshake_timeout(c);
        expire(c, now);
        pump(c);
}

static void process(struct vmconn *c, uint32_t events)
{
        if (!c->q)
                return;
        c->processing++;
        (void)qmp_process(c->q, events);
        c->processing--;
        if (c->lost)
                conn_lost(c);
        else
                sync_all(c);
        arm(c);
}

/* ---- registry ---- */

static struct vmconn *conn_free(struct vmconn *c)
{
        if (!c)
                return NULL;
        /* Fire-and-forget commands still queued (key releases) go out now,
         * pipelined, as they did before commands were serialised. */
        if (c->q && c->state == VMCONN_READY && qmp_get_state(c->q) == QMP_STATE_READY)
                for (struct req *r = c->reqs.next; r != &c->reqs; r = r->next)
                        if (!r->sent && !r->cb)
                                (void)(r->hmp ? qmp_hmp(c->q, r->what, NULL, NULL, NULL)
                                              : qmp_execute(c->q, r->what, r->args, NULL, NULL, NULL));
        c->freeing = true;
        c->q = qmp_free(c->q); /* the in-flight reply: orphaned, dropped */
        while (c->reqs.next != &c->reqs)
                req_unlink_free(c, c->reqs.next);
        if (c->tfd >= 0)
                close(c->tfd);
        free(c);
        return NULL;
}

static int conn_new(const char *path, const struct vmconn_opts *o, struct vmconn **ret)
{
        struct vmconn *c = calloc(1, sizeof(*c));

        if (!c)
                return -ENOMEM;
        c->owner = pthread_self();
        snprintf(c->path, sizeof(c->path), "%s", path);
        if (o)
                snprintf(c->vm, sizeof(c->vm), "%s", o->vm_name);
        c->reqs.next = c->reqs.prev = &c->reqs;
        c->state = VMCONN_DOWN;
        snprintf(c->reason, sizeof(c->reason), "not connected yet");
        c->min_ms = o && o->retry_min_ms ? o->retry_min_ms : RETRY_MIN_DEFAULT_MS;
        c->max_ms = o && o->retry_max_ms ? o->retry_max_ms : RETRY_MAX_DEFAULT_MS;
        c->hs_ms = o && o->handshake_ms ? o->handshake_ms : VMCONN_HANDSHAKE_DEFAULT_MS;
        if (c->max_ms < c->min_ms)
                c->max_ms = c->min_ms;
        c->cur_ms = c->min_ms;
        c->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (c->tfd < 0) {
                int r = -errno;
                free(c);
                return r;
        }
        *ret = c;
        return 0;
}
int vmconn_attach(const char *qmp_path, const struct vmconn_opts *opts, struct vmconn_listener *l)
{
        struct vmconn *c;
        bool created = false;
        int r;

        if (!qmp_path || !*qmp_path || !l || !l->ops || !l->sink || !l->sink->watch_fd ||
            !l->sink->unwatch_fd || l->cookie_qmp == l->cookie_timer)
                return -EINVAL;
        if (strlen(qmp_path) >= PATH_MAX_LEN)
                return -ENAMETOOLONG;
        l->conn_ = NULL;
        l->next_ = NULL;
        l->qmp_dup_ = l->timer_dup_ = -1;
        l->qmp_events_ = 0;
        l->qmp_gen_ = 0;

        pthread_mutex_lock(&registry_lock);
        for (c = registry; c; c = c->next)
                if (pthread_equal(c->owner, pthread_self()) && strcmp(c->path, qmp_path) == 0)
                        break;
        if (!c) {
                r = conn_new(qmp_path, opts, &c);
                if (r < 0) {
                        pthread_mutex_unlock(&registry_lock);
                        return r;
                }
                c->next = registry;
                registry = c;
                created = true;
        }
        c->refs++;
        pthread_mutex_unlock(&registry_lock);

        /* The timer dup is read by the session itself (shape FD), so a
         * second listener's wakeup for the same expiry finds it drained. */
        l->timer_dup_ = fcntl(c->tfd, F_DUPFD_CLOEXEC, 3);
        if (l->timer_dup_ < 0) {
                r = -errno;
                goto fail;
        }
        struct vmsig_fd_reg reg = {l->timer_dup_, EPOLLIN, VMSIG_RDY_FD, l->cookie_timer};
        r = l->sink->watch_fd(l->sink, &reg);
        if (r < 0) {
                close(l->timer_dup_);
                l->timer_dup_ = -1;
                goto fail;
        }
        l->conn_ = c;
        l->next_ = c->listeners;
        c->listeners = l;
        if (created)
                try_connect(c);
        else
                sync_listener(c, l);
        return 0;
fail:
        l->conn_ = c;
        vmconn_detach(l);
        return r;
}

void vmconn_detach(struct vmconn_listener *l)
{
        struct vmconn *c = l ? l->conn_ : NULL;

        if (!c)
                return;
        unwatch_qmp(l);
        if (l->timer_dup_ >= 0) {
                (void)l->sink->unwatch_fd(l->sink, l->timer_dup_);
                close(l->timer_dup_);
                l->timer_dup_ = -1;
        }
        for (struct vmconn_listener **pp = &c->listeners; *pp; pp = &(*pp)->next_) {
                if (*pp == l) {
                        *pp = l->next_;
                        break;
                }
        }
        l->conn_ = NULL; /* callbacks below cannot queue more */
        l->next_ = NULL;
        /* Every command of this listener gets its answer now: the adapter
         * is closing and can still pass it on. */
        for (struct req *r = c->reqs.next, *n; r != &c->reqs; r = n) {
                n = r->next;
                if (r->l != l)
                        continue;
                if (r->deferred) {
                        r->deferred = false;
                        answer(c, r, r->d_err, r->d_reason);
                } else if (r->sent) {
                        char why[160];
                        snprintf(why, sizeof(why),
                                 "%.40s was sent to QEMU but the VM's adapter left before the answer; it may "
                                 "still take effect",
                                 r->what);
                        answer(c, r, -EINPROGRESS, why);
                } else if (r->cb) {
                        char why[160];
                        snprintf(why, sizeof(why), "%.40s not sent to QEMU: the VM's adapter was detached",
                                 r->what);
                        answer(c, r, -ECANCELED, why);
                }
                n = r->next;
                r->l = NULL;
                if (!r->sent && r->cb)
                        req_unlink_free(c, r);
        }

        pthread_mutex_lock(&registry_lock);
        bool last = --c->refs == 0;
        if (last) {
                for (struct vmconn **pp = &registry; *pp; pp = &(*pp)->next) {
                        if (*pp == c) {
                                *pp = c->next;
                                break;
                        }
                }
        }
        pthread_mutex_unlock(&registry_lock);
        if (last)
                conn_free(c);
        else
                arm(c);
}

bool vmconn_on_readiness(struct vmconn_listener *l, uint64_t cookie, uint32_t events)
{
        struct vmconn *c = l ? l->conn_ : NULL;

        if (!c || (cookie != l->cookie_qmp && cookie != l->cookie_timer))
                return false;
        if (cookie == l->cookie_timer) {
                uint64_t n;
                /* Absolute deadlines: a spare wakeup of another dup finds
                 * nothing due and just re-arms. */
                (void)!read(c->tfd, &n, sizeof(n));
                c->armed_ns = 0;
                tick(c);
                arm(c);
                return true;
        }
        /* A dup of an older client: its socket is gone, ignore. */
        if (l->qmp_dup_ < 0 || l->qmp_gen_ != c->gen)
                return true;
        process(c, events);
        return true;
}

enum vmconn_state vmconn_get_state(const struct vmconn_listener *l, const char **ret_reason)
{
        const struct vmconn *c = l ? l->conn_ : NULL;

        if (ret_reason)
                *ret_reason = c ? c->reason : "not attached";
        return c ? c->state : VMCONN_DOWN;
}

/* ---- commands ---- */

int vmconn_submit(struct vmconn_listener *l, const struct vmconn_cmd *cmd, vmconn_reply_fn cb, void *userdata)
{
        struct vmconn *c = l ? l->conn_ : NULL;
        struct req *r;

        if (!c || !cmd || !cmd->command || !*cmd->command)
                return -EINVAL;
        if (!c->q || c->state != VMCONN_READY)
                return -ENOTCONN;
        if (c->nreqs >= QMP_MAX_PENDING)
                return -ENOBUFS;
        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        r->what = strdup(cmd->command);
        if (!r->what) {
                free(r);
                return -ENOMEM;
        }
        r->conn = c;
        r->l = l;
        r->cb = cb;
        r->userdata = userdata;
        r->admit = cmd->admit;
        r->hmp = cmd->hmp;
        r->args = cmd->args && !cmd->hmp ? json_object_get(cmd->args) : NULL;
        r->timeout_ms = cmd->timeout_ms;
        r->deadline_ns = cmd->timeout_ms ? vmsig_now_ns() + (uint64_t)cmd->timeout_ms * MS : 0;
        r->next = &c->reqs;
        r->prev = c->reqs.prev;
        c->reqs.prev->next = r;
        c->reqs.prev = r;
        c->nreqs++;
        /* Written at once when QEMU is free; answers decided here wait for
         * the next tick, so cb never runs inside this call. */
        c->in_submit = true;
        pump(c);
        c->in_submit = false;
        return 0;
}

int vmconn_execute(struct vmconn_listener *l, const char *command, struct json_object *args,
                   vmconn_reply_fn cb, void *userdata)
{
        struct vmconn_cmd cmd = {.command = command,
                                 .args = args,
                                 .timeout_ms =
                                     l && l->timeout_ms ? l->timeout_ms : VMCONN_TIMEOUT_DEFAULT_MS};

        return vmconn_submit(l, &cmd, cb, userdata);
}

int vmconn_hmp(struct vmconn_listener *l, const char *command_line, vmconn_reply_fn cb, void *userdata)
{
        struct vmconn_cmd cmd = {.command = command_line,
                                 .hmp = true,
                                 .timeout_ms =
                                     l && l->timeout_ms ? l->timeout_ms : VMCONN_TIMEOUT_DEFAULT_MS};

        return vmconn_submit(l, &cmd, cb, userdata);
}

/* ---- peer credentials ---- */

#include <sys/socket.h>

/* SO_PEERCRED of the QMP socket: who runs QEMU. */
static int peer_cred(const struct vmconn_listener *l, struct ucred *ret)
{
        const struct vmconn *c = l ? l->conn_ : NULL;
        socklen_t len = sizeof(*ret);
        int fd = c && c->q ? qmp_fd(c->q) : -1;

        if (fd < 0)
                return -ENOTCONN;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, ret, &len) < 0)
                return -errno;
        return 0;
}

int vmconn_peer_uid(const struct vmconn_listener *l, uid_t *ret_uid)
{
        struct ucred cr;
        int r;

        if (!ret_uid)
                return -EINVAL;
        if ((r = peer_cred(l, &cr)) < 0)
                return r;
        *ret_uid = cr.uid;
        return 0;
}

int vmconn_peer_pid(const struct vmconn_listener *l, pid_t *ret_pid)
{
        struct ucred cr;
        int r;

        if (!ret_pid)
                return -EINVAL;
        if ((r = peer_cred(l, &cr)) < 0)
                return r;
        *ret_pid = cr.pid;
        return 0;
}
