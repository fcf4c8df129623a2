/* SPDX-License-Identifier: MIT */
/* The loop: epoll over adapter fds, the worker hand-off eventfd and foreign
 * fds; then dispatch everything queued in (priority, seq) order; then
 * deliver what controls had to queue; then reap what died during the batch.
 * Frees are deferred while dispatching (depth > 0) so no callback ever runs
 * on freed memory. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "core/bus_internal.h"
#include "util/clock.h"

#define EPOLL_BATCH    64
#define HANDOFF_ROUNDS 16 /* hand-off batches per iteration */

void vmsig_bus_limits_default(struct vmsig_bus_limits *ret)
{
        ret->queue_bytes = 1u << 20;
        ret->queue_fds = 16;
        ret->handoff_slots = 4096;
        ret->memwrite_max = 1u << 20;
        ret->max_endpoints = 1024;
}

bool bus_on_loop_thread(const struct vmsig_bus *bus)
{
        return pthread_equal(pthread_self(), bus->owner);
}

int vmsig_bus_new(const struct vmsig_bus_limits *limits, struct vmsig_bus **ret)
{
        struct vmsig_bus *bus;
        int r;

        if (!ret)
                return -EINVAL;
        bus = calloc(1, sizeof(*bus));
        if (!bus)
                return -ENOMEM;
        vmsig_bus_limits_default(&bus->lim);
        if (limits) {
                if (limits->queue_bytes)
                        bus->lim.queue_bytes = limits->queue_bytes;
                if (limits->queue_fds)
                        bus->lim.queue_fds = limits->queue_fds;
                if (limits->handoff_slots)
                        bus->lim.handoff_slots = limits->handoff_slots;
                if (limits->memwrite_max)
                        bus->lim.memwrite_max = limits->memwrite_max;
                if (limits->max_endpoints)
                        bus->lim.max_endpoints = limits->max_endpoints;
        }
        bus->owner = pthread_self();
        bus->epfd = -1;
        bus->next_seq = 1;
        prioq_init(&bus->pq);
        r = handoff_init(&bus->ho, bus->lim.handoff_slots);
        if (r < 0)
                goto fail;
        bus->eps = calloc(bus->lim.max_endpoints, sizeof(*bus->eps));
        if (!bus->eps) {
                r = -ENOMEM;
                goto fail;
        }
        bus->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (bus->epfd < 0) {
                r = -errno;
                goto fail;
        }
        bus->ho_watch.type = WATCH_HANDOFF;
        bus->ho_watch.fd = bus->ho.efd;
        bus->ho_watch.bus = bus;
        r = bus_watch_add(bus, &bus->ho_watch, EPOLLIN);
        if (r < 0)
                goto fail;
        *ret = bus;
        return 0;
fail:
        if (bus->epfd >= 0)
                close(bus->epfd);
        free(bus->eps);
        handoff_done(&bus->ho);
        prioq_done(&bus->pq);
        free(bus);
        return r;
}

static void reap(struct vmsig_bus *bus)
{
        /* Adapters first: close() joins workers, which may still emit. */
        while (bus->dead_atts) {
                struct attachment *a = bus->dead_atts;
                bus->dead_atts = a->next_dead;
                attachment_reap(a);
        }
        while (bus->dead_ctls) {
                struct vmsig_control *c = bus->dead_ctls;
                bus->dead_ctls = c->next_dead;
                control_free(c);
        }
        for (struct vmsig_post **pp = &bus->posts; *pp;) {
                struct vmsig_post *p = *pp;
                if (p->dead) {
                        *pp = p->next;
                        free(p);
                } else {
                        pp = &p->next;
                }
        }
        while (bus->dead_watches) {
                struct watch *w = bus->dead_watches;
                bus->dead_watches = w->next_dead;
                free(w);
        }
}

void bus_reap_if_idle(struct vmsig_bus *bus)
{
        if (bus->depth == 0)
                reap(bus);
}

struct vmsig_bus *vmsig_bus_free(struct vmsig_bus *bus)
{
        if (!bus)
                return NULL;
        bus->depth++;
        for (struct vmsig_control *c = bus->ctl_head; c; c = c->next)
                if (!c->dead)
                        control_disconnect(c, -ESHUTDOWN, "bus shutting down");
        endpoints_free_all(bus);
        while (bus->ios) /* watches the embedder never freed */
                vmsig_io_free(bus->ios);
        bus->depth--;
        reap(bus);
        /* Events still queued are dropped with their fds; nobody is left. */
        prioq_done(&bus->pq);
        while (bus->posts) {
                struct vmsig_post *p = bus->posts;
                bus->posts = p->next;
                free(p);
        }
        close(bus->epfd);
        handoff_done(&bus->ho);
        free(bus->eps);
        free(bus);
        return NULL;
}

int vmsig_bus_get_fd(struct vmsig_bus *bus)
{
        if (!bus)
                return -EINVAL;
        bus->nested = true; /* whoever asks will poll it: see bus_enqueue */
        return bus->epfd;
}

void vmsig_bus_exit(struct vmsig_bus *bus, int code)
{
        bus->exiting = true;
        bus->exit_code = code;
}

void vmsig_bus_set_audit(struct vmsig_bus *bus, vmsig_audit_fn fn, void *userdata)
{
        bus->audit = fn;
        bus->audit_ud = userdata;
}

void vmsig_bus_get_stats(const struct vmsig_bus *bus, struct vmsig_bus_stats *ret)
{
        memset(ret, 0, sizeof(*ret));
        ret->dispatched = bus->dispatched;
        ret->delivered = bus->delivered;
        ret->dropped = bus->dropped;
        ret->disconnects = bus->disconnects;
        ret->controls = bus->nctl;
        for (unsigned i = 0; i < bus->lim.max_endpoints; i++)
                if (bus->eps[i] && !bus->eps[i]->removing)
                        ret->endpoints++;
}

int bus_watch_add(struct vmsig_bus *bus, struct watch *w, uint32_t events)
{
        struct epoll_event ee = {.events = events, .data.ptr = w};

        w->bus = bus;
        if (epoll_ctl(bus->epfd, EPOLL_CTL_ADD, w->fd, &ee) < 0)
                return -errno;
        return 0;
}

void bus_watch_kill(struct vmsig_bus *bus, struct watch *w)
{
        if (w->dead)
                return;
        w->dead = true;
        /* The fd may already be closed by its owner; that removed it too. */
        epoll_ctl(bus->epfd, EPOLL_CTL_DEL, w->fd, NULL);
        w->next_dead = bus->dead_watches;
        bus->dead_watches = w;
}

int bus_enqueue(struct vmsig_bus *bus, const struct vmsig_event *ev, int fd, void *payload,
                size_t payload_len)
{
        struct qnode *n = prioq_node_new(&bus->pq);

        if (!n) {
                if (fd >= 0)
                        close(fd);
                free(payload);
                return -ENOMEM;
        }
        memcpy(&n->ev, ev, vmsig_event_size(ev));
        n->ev.hdr.seq = bus->next_seq++;
        if (!n->ev.hdr.ts_ns)
                n->ev.hdr.ts_ns = vmsig_now_ns();
        n->fd = fd;
        n->payload = payload;
        n->payload_len = payload_len;
        prioq_push(&bus->pq, n);
        /* Queued between iterations (an embedder's own code): an embedder
         * polling the bus fd must see it, not sleep on it. Once per gap, and
         * only for one that asked for the fd: one that calls run_once
         * itself needs no wake-up (two syscalls per round trip). */
        if (bus->depth == 0 && bus->nested && !bus->kicked) {
                handoff_kick(&bus->ho);
                bus->kicked = true;
        }
        return 0;
}

void bus_audit(struct vmsig_bus *bus, enum vmsig_audit_what what, const struct vmsig_control *ctl,
               const struct vmsig_event *ev, int32_t result, const char *reason)
{
        struct vmsig_audit_record rec;

        if (!bus->audit)
                return;
        memset(&rec, 0, sizeof(rec));
        rec.what = what;
        if (ctl) {
                rec.control_id = ctl->id;
                rec.control_name = ctl->name;
                rec.uid = ctl->uid;
                rec.pid = ctl->pid;
        } else {
                rec.control_name = "";
        }
        if (ev) {
                rec.endpoint = ev->hdr.endpoint;
                rec.kind = ev->hdr.kind;
                rec.corr = ev->hdr.corr;
        }
        rec.result = result;
        rec.reason = reason ? reason : "";
        bus->audit(&rec, bus->audit_ud);
}

void bus_audit_holder(struct vmsig_bus *bus, enum vmsig_audit_what what, const struct lease *holder,
                      const struct vmsig_event *ev, int32_t result, const char *reason)
{
        struct vmsig_control who;

        if (!bus->audit)
                return;
        memset(&who, 0, sizeof(who));
        who.id = holder->holder;
        who.uid = holder->uid;
        who.pid = holder->pid;
        memcpy(who.name, holder->name, sizeof(who.name));
        bus_audit(bus, what, &who, ev, result, reason);
}

/* ---- foreign fds ---- */

int vmsig_bus_add_io(struct vmsig_bus *bus, int fd, uint32_t events, vmsig_io_fn fn, void *userdata,
                     struct vmsig_io **ret)
{
        struct vmsig_io *io;
        int r;

        if (!bus || fd < 0 || !fn)
                return -EINVAL;
        io = calloc(1, sizeof(*io));
        if (!io)
                return -ENOMEM;
        io->w.type = WATCH_IO;
        io->w.fd = fd;
        io->w.fn = fn;
        io->w.userdata = userdata;
        r = bus_watch_add(bus, &io->w, events);
        if (r < 0) {
                free(io);
                return r;
        }
        io->next = bus->ios;
        if (bus->ios)
                bus->ios->prev = io;
        bus->ios = io;
        if (ret)
                *ret = io;
        return 0;
}

int vmsig_io_set_events(struct vmsig_io *io, uint32_t events)
{
        struct epoll_event ee = {.events = events, .data.ptr = &io->w};

        if (io->w.dead)
                return -ESTALE;
        return epoll_ctl(io->w.bus->epfd, EPOLL_CTL_MOD, io->w.fd, &ee) < 0 ? -errno : 0;
}

struct vmsig_io *vmsig_io_free(struct vmsig_io *io)
{
        if (!io || io->w.dead)
                return NULL;
        struct vmsig_bus *bus = io->w.bus;
        if (io->prev)
                io->prev->next = io->next;
        else
                bus->ios = io->next;
        if (io->next)
                io->next->prev = io->prev;
        /* struct vmsig_io starts with its watch, so the watch reaper frees it. */
        bus_watch_kill(io->w.bus, &io->w);
        bus_reap_if_idle(io->w.bus);
        return NULL;
}

/* ---- post hooks ---- */

int vmsig_bus_add_post(struct vmsig_bus *bus, vmsig_post_fn fn, void *userdata, struct vmsig_post **ret)
{
        struct vmsig_post *p;

        if (!bus || !fn)
                return -EINVAL;
        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->bus = bus;
        p->fn = fn;
        p->userdata = userdata;
        p->next = bus->posts;
        bus->posts = p;
        if (ret)
                *ret = p;
        return 0;
}

struct vmsig_post *vmsig_post_free(struct vmsig_post *post)
{
        if (!post)
                return NULL;
        post->dead = true; /* unlinked by the reaper, never under its own call */
        bus_reap_if_idle(post->bus);
        return NULL;
}

/* ---- one iteration ---- */

/* Copy one hand-off node into pq, keeping its seq, at the tail of its level. */
static int batch_node_to_pq(struct vmsig_bus *bus, struct qnode *b)
{
        struct qnode *n = prioq_node_new(&bus->pq);

        if (!n)
                return -ENOMEM;
        memcpy(&n->ev, &b->ev, vmsig_event_size(&b->ev));
        prioq_push(&bus->pq, n);
        b->moved = true;
        return 0;
}

/* Take the workers' events as the batch to dispatch in place. Each gets its
 * seq now, in hand-off order. Events at another priority than the first go
 * to pq, so the batch left is one FIFO run that merges with pq by (priority,
 * seq): the order is the same as if every event had gone through pq. */
static unsigned handle_handoff(struct vmsig_bus *bus)
{
        struct qnode *batch;
        unsigned n;
        uint8_t prio;

        /* A nested run_once (from a callback) must not hand the buffer being
         * dispatched back to the producers. */
        if (bus->depth != 1 || bus->batch_pos < bus->batch_len)
                return 0;
        n = handoff_take(&bus->ho, &batch);
        if (!n)
                return 0;
        prio = batch[0].ev.hdr.priority;
        for (unsigned i = 0; i < n; i++) {
                batch[i].ev.hdr.seq = bus->next_seq++;
                /* pq holds only earlier events now. Out of nodes, the event
                 * is dispatched in batch order rather than lost. */
                if (batch[i].ev.hdr.priority != prio)
                        (void)batch_node_to_pq(bus, &batch[i]);
        }
        bus->batch = batch;
        bus->batch_len = n;
        bus->batch_pos = 0;
        return n;
}

void bus_handoff_drain(struct vmsig_bus *bus)
{
        /* Copied out, not taken: a batch being dispatched stays where it is
         * and, with its older seqs, still precedes them. Reaping may run
         * outside an iteration (vmsig_bus_detach), with nobody to arm after
         * it. */
        bus_collect_handoff(bus);
        handoff_arm(&bus->ho);
}

/* The next event in (priority, seq) order, from the batch or from pq. */
static struct qnode *next_event(struct vmsig_bus *bus, bool *from_batch)
{
        while (bus->batch_pos < bus->batch_len) {
                struct qnode *b = &bus->batch[bus->batch_pos];
                const struct qnode *h;
                if (b->moved) {
                        b->moved = false; /* the slot will be reused */
                        bus->batch_pos++;
                        continue;
                }
                h = prioq_peek(&bus->pq);
                if (h && (h->ev.hdr.priority < b->ev.hdr.priority ||
                          (h->ev.hdr.priority == b->ev.hdr.priority && h->ev.hdr.seq < b->ev.hdr.seq)))
                        break;
                bus->batch_pos++;
                *from_batch = true;
                return b;
        }
        *from_batch = false;
        return prioq_pop(&bus->pq);
}

static void enqueue_copied(void *ud, const struct vmsig_event *ev)
{
        (void)bus_enqueue(ud, ev, -1, NULL, 0);
}

void bus_collect_handoff(struct vmsig_bus *bus)
{
        /* Copied, not taken: this may run inside a callback while a taken
         * batch is dispatched in place, and taking would hand that batch's
         * buffer back to the producers. The events get their seq now, so
         * the loop's next emit follows them. */
        (void)handoff_copy_out(&bus->ho, enqueue_copied, bus);
}

static void handle_adapter(struct watch *w, uint32_t events)
{
        struct attachment *att = w->att;

        if (atomic_load(&att->dead))
                return;
        if (w->shape == VMSIG_RDY_TIMERFD || w->shape == VMSIG_RDY_EVENTFD) {
                uint64_t v;
                /* Level-triggered: drain so it doesn't fire again; EAGAIN
                 * means a spurious wakeup, still worth telling the adapter. */
                (void)!read(w->fd, &v, sizeof(v));
        }
        att->ops->on_readiness(att->inst, w->cookie, events);
}

static void flush_controls(struct vmsig_bus *bus)
{
        bus->need_flush = false;
        for (struct vmsig_control *c = bus->ctl_head; c; c = c->next)
                if (!c->dead && !c->stalled && c->q.count)
                        control_flush(c);
}

/* Dispatch everything queued, deliver what controls queued, run the post
 * hooks (which write out what socket controls were given). */
static int dispatch_all(struct vmsig_bus *bus)
{
        struct qnode *qn;
        bool from_batch;
        int dispatched = 0;

        /* One at a time: a dispatch may queue more (ACKs, leases), and the
         * next pick re-evaluates the order with them included. */
        while ((qn = next_event(bus, &from_batch))) {
                dispatch_one(bus, qn);
                if (!from_batch) {
                        prioq_node_release(&bus->pq, qn);
                } else if (qn->fd >= 0) { /* not from a worker, but never leak one */
                        close(qn->fd);
                        qn->fd = -1;
                }
                dispatched++;
        }
        if (bus->need_flush)
                flush_controls(bus);
        for (struct vmsig_post *p = bus->posts; p; p = p->next)
                if (!p->dead)
                        p->fn(p, p->userdata);
        return dispatched;
}

int vmsig_bus_run_once(struct vmsig_bus *bus, int timeout_ms)
{
        struct epoll_event evs[EPOLL_BATCH];
        int n, dispatched;
        unsigned took = 0;      /* hand-off events taken in the latest round */
        bool signalled = false; /* the hand-off eventfd needs a reset */

        if (!bus)
                return -EINVAL;
        if (bus->pq.count || bus->need_flush || bus->batch_pos < bus->batch_len)
                timeout_ms = 0;
        n = epoll_wait(bus->epfd, evs, EPOLL_BATCH, timeout_ms);
        if (n < 0) {
                if (errno == EINTR)
                        return 0;
                return -errno;
        }
        bus->depth++;
        bus->kicked = false; /* the kick, if any, is among evs: cleared below */
        for (int i = 0; i < n; i++) {
                struct watch *w = evs[i].data.ptr;
                if (w->dead)
                        continue;
                switch (w->type) {
                case WATCH_HANDOFF:
                        signalled = bus->depth == 1;
                        took = handle_handoff(bus);
                        break;
                case WATCH_ADAPTER:
                        handle_adapter(w, evs[i].events);
                        break;
                case WATCH_IO:
                        w->fn((struct vmsig_io *)w, w->fd, evs[i].events, w->userdata);
                        break;
                }
        }
        dispatched = dispatch_all(bus);
        /* What workers handed off meanwhile goes out now, without a wakeup
         * (they did not signal: the loop is awake). Bounded, so other fds
         * wait at most a few batches. */
        for (int round = 1; round < HANDOFF_ROUNDS && took; round++) {
                took = handle_handoff(bus);
                if (took)
                        dispatched += dispatch_all(bus);
        }
        /* Reset after the dispatch, not before: the read is a syscall on the
         * way to the callbacks otherwise. Pushes since the take did not write
         * (the loop is awake until it arms), so nothing is swallowed. */
        if (signalled)
                handoff_clear_signal(&bus->ho);
        bus->depth--;
        reap(bus);
        if (bus->depth == 0)
                handoff_arm(&bus->ho); /* the caller may block now */
        bus->dispatched += (uint64_t)dispatched;
        return dispatched;
}

int vmsig_bus_run(struct vmsig_bus *bus)
{
        bus->exiting = false;
        while (!bus->exiting) {
                int r = vmsig_bus_run_once(bus, -1);
                if (r < 0)
                        return r;
        }
        return bus->exit_code;
}
