/* SPDX-License-Identifier: MIT */
/* The shared per-VM QMP session (see vmconn.h). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "host/vmconn.h"

#define RETRY_MIN_DEFAULT_MS 100u
#define RETRY_MAX_DEFAULT_MS 5000u
#define PATH_MAX_LEN         108u /* sun_path */

/* A command in flight, so a detached listener's reply can be dropped. */
struct req {
        struct req *next, *prev;
        struct vmconn *conn;
        struct vmconn_listener *l; /* NULL: orphaned */
        vmconn_reply_fn cb;
        void *userdata;
};

struct vmconn {
        struct vmconn *next; /* registry */
        pthread_t owner;     /* the loop thread: part of the key */
        char path[PATH_MAX_LEN];
        unsigned refs;
        struct vmconn_listener *listeners;

        struct qmp *q;
        uint64_t gen; /* bumps on every new client, so stale dups are known */
        enum vmconn_state state;
        char reason[200];    /* why it is down */
        unsigned processing; /* inside qmp_process */
        bool lost;           /* on_close seen during processing */
        int lost_err;

        int tfd; /* one-shot reconnect timer */
        uint32_t min_ms, max_ms, cur_ms;

        struct req reqs; /* list head */
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct vmconn *registry;

/* ---- timer ---- */

static void timer_arm(struct vmconn *c, uint32_t ms)
{
        struct itimerspec its = {0};

        its.it_value.tv_sec = ms / 1000;
        its.it_value.tv_nsec = (long)(ms % 1000) * 1000000L;
        if (ms == 0)
                its.it_value.tv_nsec = 1; /* 0 would disarm */
        (void)timerfd_settime(c->tfd, 0, &its, NULL);
}

static void retry_later(struct vmconn *c)
{
        timer_arm(c, c->cur_ms);
        c->cur_ms = c->cur_ms > c->max_ms / 2 ? c->max_ms : c->cur_ms * 2;
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

/* ---- connection life ---- */

static void on_ready(struct qmp *q, struct json_object *greeting, void *ud)
{
        struct vmconn *c = ud;

        c->state = VMCONN_READY;
        c->reason[0] = 0;
        c->cur_ms = c->min_ms;
        for (struct vmconn_listener *l = c->listeners, *n; l; l = n) {
                n = l->next_;
                if (l->ops->ready)
                        l->ops->ready(l);
        }
}

static void on_event(struct qmp *q, const struct qmp_event *ev, void *ud)
{
        struct vmconn *c = ud;

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
        c->gen++;
        c->state = VMCONN_DOWN;
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
        r = qmp_new(c->path, &cfg, &c->q);
        if (r < 0) {
                c->q = NULL;
                snprintf(c->reason, sizeof(c->reason), "QMP socket %s: %s", c->path, strerror(-r));
                retry_later(c);
                return;
        }
        c->gen++;
        c->state = VMCONN_CONNECTING;
        snprintf(c->reason, sizeof(c->reason), "QMP negotiation in progress");
        sync_all(c);
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
}

/* ---- registry ---- */

static struct vmconn *conn_free(struct vmconn *c)
{
        if (!c)
                return NULL;
        c->q = qmp_free(c->q); /* pending replies: orphaned, dropped */
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
        c->reqs.next = c->reqs.prev = &c->reqs;
        c->state = VMCONN_DOWN;
        snprintf(c->reason, sizeof(c->reason), "not connected yet");
        c->min_ms = o && o->retry_min_ms ? o->retry_min_ms : RETRY_MIN_DEFAULT_MS;
        c->max_ms = o && o->retry_max_ms ? o->retry_max_ms : RETRY_MAX_DEFAULT_MS;
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
        for (struct req *q = c->reqs.next; q != &c->reqs; q = q->next)
                if (q->l == l)
                        q->l = NULL;
        l->conn_ = NULL;
        l->next_ = NULL;

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
}

bool vmconn_on_readiness(struct vmconn_listener *l, uint64_t cookie, uint32_t events)
{
        struct vmconn *c = l ? l->conn_ : NULL;

        if (!c || (cookie != l->cookie_qmp && cookie != l->cookie_timer))
                return false;
        if (cookie == l->cookie_timer) {
                uint64_t n;
                /* Only the wakeup that drains the expiry acts on it. */
                if (read(c->tfd, &n, sizeof(n)) == (ssize_t)sizeof(n) && !c->q)
                        try_connect(c);
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

static void req_reply(struct qmp *q, const struct qmp_reply *reply, void *ud)
{
        struct req *r = ud;

        r->prev->next = r->next;
        r->next->prev = r->prev;
        if (r->l && r->cb)
                r->cb(r->l, reply, r->userdata);
        free(r);
}

static int issue(struct vmconn_listener *l, bool hmp, const char *what, struct json_object *args,
                 vmconn_reply_fn cb, void *userdata)
{
        struct vmconn *c = l ? l->conn_ : NULL;
        struct req *r;
        int e;

        if (!c)
                return -EINVAL;
        if (!c->q || c->state != VMCONN_READY)
                return -ENOTCONN;
        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        r->conn = c;
        r->l = l;
        r->cb = cb;
        r->userdata = userdata;
        e = hmp ? qmp_hmp(c->q, what, req_reply, r, NULL) : qmp_execute(c->q, what, args, req_reply, r, NULL);
        if (e < 0) {
                free(r);
                return e;
        }
        r->next = &c->reqs;
        r->prev = c->reqs.prev;
        c->reqs.prev->next = r;
        c->reqs.prev = r;
        /* Output that did not go out eagerly needs POLLOUT; inside
         * processing the caller syncs afterwards. */
        if (!c->processing)
                sync_all(c);
        return 0;
}

int vmconn_execute(struct vmconn_listener *l, const char *command, struct json_object *args,
                   vmconn_reply_fn cb, void *userdata)
{
        return issue(l, false, command, args, cb, userdata);
}

int vmconn_hmp(struct vmconn_listener *l, const char *command_line, vmconn_reply_fn cb, void *userdata)
{
        return issue(l, true, command_line, NULL, cb, userdata);
}

int vmconn_options_check(const char *opts, const char *const *known, unsigned nknown)
{
        uint64_t seen = 0;

        if (!opts || !*opts)
                return 0;
        if (nknown > 64)
                return -EINVAL;
        for (const char *p = opts;;) {
                const char *end = strchrnul(p, ',');
                const char *eq = memchr(p, '=', (size_t)(end - p));
                unsigned i;

                if (!eq || eq == p)
                        return -EINVAL;
                for (i = 0; i < nknown; i++)
                        if (strlen(known[i]) == (size_t)(eq - p) &&
                            memcmp(known[i], p, (size_t)(eq - p)) == 0)
                                break;
                if (i == nknown || (seen & (UINT64_C(1) << i)))
                        return -EINVAL;
                seen |= UINT64_C(1) << i;
                if (!*end)
                        return 0;
                p = end + 1;
        }
}

/* ---- peer credentials ---- */

#include <sys/socket.h>

int vmconn_peer_uid(const struct vmconn_listener *l, uid_t *ret_uid)
{
        const struct vmconn *c = l ? l->conn_ : NULL;
        struct ucred cr;
        socklen_t len = sizeof(cr);
        int fd = c && c->q ? qmp_fd(c->q) : -1;

        if (!ret_uid)
                return -EINVAL;
        if (fd < 0)
                return -ENOTCONN;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
                return -errno;
        *ret_uid = cr.uid;
        return 0;
}
