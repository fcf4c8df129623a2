/* SPDX-License-Identifier: MIT */
/* input stub: validates input commands like a real driver would, then records
 * them (a count, and with record=PATH one line per command appended with
 * write(2), readable by other processes). The write stands in for the device
 * write a real driver does.
 *
 * Where a command runs: like the real adapter's uinput write, on the loop
 * thread inside submit(), when that cannot block: nothing is queued for the
 * worker, the worker is idle, and the line goes out with a non-blocking
 * write (the record fd is O_NONBLOCK; a regular file or no record= never
 * says EAGAIN). Otherwise (a full FIFO, say) the command queues for the
 * worker, which waits for room, and so does every command after it until
 * the queue is empty again: lines and ACKs keep the order of submission
 * (the core orders a loop-thread ACK after the ACKs workers emitted first).
 *
 * The worker ACKs via sink->emit. Once the adapter is detached (an emit says
 * -ESHUTDOWN) the worker keeps that ACK and starts nothing more; close()
 * sends it and answers every command never recorded with -ECANCELED (not
 * applied). close() also wakes a worker waiting for room in a FIFO nobody
 * reads (its wake eventfd): that command is not recorded either. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <vmsig/adapter.h>
#include <vmsig/event.h>

#include "adapters/input_cmd.h"
#include "adapters/stub_internal.h"

#define RING_SLOTS  4096u /* commands in flight; beyond that submit says -EBUSY */
#define RECORD_PATH 4096

struct input_cmd {
        struct vmsig_event_hdr hdr;
        struct vmsig_input_body in;
};

struct input_stub {
        uint32_t endpoint;
        int record_fd; /* -1 without record= */
        int wake_fd;   /* eventfd: close() ends a worker's wait for a full FIFO */
        const struct vmsig_emit_sink *sink;

        pthread_t worker;
        bool worker_started;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        /* under lock: a fixed ring, so the steady state never allocates */
        bool stop;
        bool busy; /* the worker is recording outside the lock */
        unsigned head, n;
        struct input_cmd ring[RING_SLOTS];

        uint64_t recorded; /* whoever records: the worker, or submit() while it is idle */
        /* worker only until the join: the ACK the detach refused */
        bool gone, has_late;
        struct vmsig_event_hdr late_hdr;
        int late_result;
        uint64_t late_value;
        char late_msg[VMSIG_MSG_MAX];
        /* the command whose wait for FIFO room close() ended */
        bool has_cancelled;
        struct input_cmd cancelled;
};

static int format_cmd(const struct input_cmd *c, char *buf, size_t len)
{
        const struct vmsig_input_body *in = &c->in;
        int ff = (c->hdr.flags & VMSIG_F_FF) ? 1 : 0;

        switch (c->hdr.kind) {
        case VMSIG_EV_MOVE_ABS:
        case VMSIG_EV_MOVE_REL:
        case VMSIG_EV_WHEEL:
                return snprintf(buf, len, "%s x=%" PRId32 " y=%" PRId32 " ff=%d\n",
                                vmsig_kind_name(c->hdr.kind), in->x, in->y, ff);
        default:
                return snprintf(buf, len, "%s code=%" PRIu32 " value=%" PRId32 " ff=%d\n",
                                vmsig_kind_name(c->hdr.kind), in->code, in->value, ff);
        }
}

/* may_wait false (loop thread): -EAGAIN if the line cannot go out now;
 * then nothing was written or counted. may_wait true (worker): waits for
 * room, or -ECANCELED (nothing written or counted) once close() wakes it:
 * a FIFO nobody reads must not hold the detach up forever. */
static int record(struct input_stub *s, const struct input_cmd *c, bool may_wait)
{
        char line[128];
        int n = format_cmd(c, line, sizeof(line));
        ssize_t w = 0;

        /* One write(2) per line: O_APPEND keeps lines whole for readers, and
         * a line (< PIPE_BUF) goes into a FIFO whole or not at all. */
        while (s->record_fd >= 0 && (w = write(s->record_fd, line, (size_t)n)) < 0) {
                if (errno == EINTR)
                        continue;
                if (errno != EAGAIN)
                        break;
                if (!may_wait)
                        return -EAGAIN;
                struct pollfd pfd[2] = {{.fd = s->record_fd, .events = POLLOUT},
                                        {.fd = s->wake_fd, .events = POLLIN}};
                if (poll(pfd, 2, -1) < 0 && errno != EINTR)
                        break;
                if (pfd[1].revents)
                        return -ECANCELED;
        }
        s->recorded++;
        if (w < 0)
                return -errno;
        return s->record_fd < 0 || w == n ? 0 : -EIO;
}

/* The ACT_ACK: always for a failure, else unless fire-and-forget. */
static int answer(struct input_stub *s, const struct vmsig_event_hdr *hdr, int r, uint64_t recorded,
                  char *msg, size_t len)
{
        if (r == 0 && (hdr->flags & VMSIG_F_FF))
                return 0;
        if (r < 0)
                snprintf(msg, len, "recording %s failed: %s", vmsig_kind_name(hdr->kind), strerror(-r));
        else
                snprintf(msg, len, "%s recorded", vmsig_kind_name(hdr->kind));
        return vmsig_sink_ack(s->sink, VMSIG_SRC_INPUT, hdr, r, recorded, "%s", msg);
}

static void *worker_main(void *arg)
{
        struct input_stub *s = arg;

        pthread_mutex_lock(&s->lock);
        for (;;) {
                while (!s->stop && !s->n)
                        pthread_cond_wait(&s->cond, &s->lock);
                if (!s->n)
                        break; /* stop, and everything accepted has been recorded */
                struct input_cmd c = s->ring[s->head];
                s->head = (s->head + 1) % RING_SLOTS;
                s->n--;
                s->busy = true;
                pthread_mutex_unlock(&s->lock);

                int r = record(s, &c, true);
                char msg[VMSIG_MSG_MAX];
                if (r == -ECANCELED) {
                        /* closing: close() answers it, then the rest */
                        s->cancelled = c;
                        s->has_cancelled = true;
                        pthread_mutex_lock(&s->lock);
                        s->busy = false;
                        break;
                }
                if (answer(s, &c.hdr, r, s->recorded, msg, sizeof(msg)) == -ESHUTDOWN) {
                        s->late_hdr = c.hdr;
                        s->late_result = r;
                        s->late_value = s->recorded;
                        memcpy(s->late_msg, msg, sizeof(msg));
                        s->has_late = s->gone = true;
                }
                /* idle only once its ACK is in the core's hand-off */
                pthread_mutex_lock(&s->lock);
                s->busy = false;
                if (s->gone)
                        break; /* detached: close() answers the rest */
        }
        pthread_mutex_unlock(&s->lock);
        return NULL;
}

static void ack_not_applied(struct input_stub *s, const struct input_cmd *c)
{
        (void)vmsig_sink_ack(s->sink, VMSIG_SRC_INPUT, &c->hdr, -ECANCELED, s->recorded,
                             "%s not applied: the VM's input adapter was detached first",
                             vmsig_kind_name(c->hdr.kind));
}

static void input_close(void *instance)
{
        struct input_stub *s = instance;

        if (!s)
                return;
        if (s->worker_started) {
                pthread_mutex_lock(&s->lock);
                s->stop = true;
                pthread_cond_broadcast(&s->cond);
                pthread_mutex_unlock(&s->lock);
                (void)eventfd_write(s->wake_fd, 1);
                pthread_join(s->worker, NULL);
        }
        /* We are closing: these ACKs still pass (loop thread). */
        if (s->has_late)
                (void)vmsig_sink_ack(s->sink, VMSIG_SRC_INPUT, &s->late_hdr, s->late_result, s->late_value,
                                     "%s", s->late_msg);
        if (s->has_cancelled)
                ack_not_applied(s, &s->cancelled);
        for (; s->n; s->head = (s->head + 1) % RING_SLOTS, s->n--)
                ack_not_applied(s, &s->ring[s->head]);
        if (s->record_fd >= 0)
                close(s->record_fd);
        if (s->wake_fd >= 0)
                close(s->wake_fd);
        pthread_cond_destroy(&s->cond);
        pthread_mutex_destroy(&s->lock);
        free(s);
}

static const struct opt_spec input_stub_opts[] = {
    {.key = "record", .type = OPT_STRING, .min = 1, .max = RECORD_PATH - 1},
};

static int input_open(const struct vmsig_adapter_cfg *cfg, uint32_t endpoint, void **ret_instance)
{
        const char *opts = cfg ? cfg->options : NULL;
        char path[RECORD_PATH];
        struct input_stub *s;
        int r;

        if (adapter_options_parse(opts, input_stub_opts, OPT_COUNT(input_stub_opts), NULL, NULL, NULL, 0) < 0)
                return -EINVAL;
        r = vmsig_option_get(opts, "record", path, sizeof(path));

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->endpoint = endpoint;
        s->record_fd = -1;
        pthread_mutex_init(&s->lock, NULL);
        pthread_cond_init(&s->cond, NULL);
        s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (s->wake_fd < 0) {
                r = -errno;
                input_close(s);
                return r;
        }
        if (r == 0) {
                /* 0600: recorded keys can be secrets */
                s->record_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0600);
                /* non-blocking afterwards: a FIFO's open still waits for its reader */
                int fl = s->record_fd >= 0 ? fcntl(s->record_fd, F_GETFL) : -1;
                if (fl < 0 || fcntl(s->record_fd, F_SETFL, fl | O_NONBLOCK) < 0) {
                        r = -errno;
                        input_close(s);
                        return r;
                }
        }
        *ret_instance = s;
        return 0;
}

static int input_attach(void *instance, const struct vmsig_emit_sink *sink, struct vmsig_fd_reg *reg,
                        size_t cap, size_t *ret_n)
{
        struct input_stub *s = instance;
        int r;

        if (!sink)
                return -EINVAL;
        if (s->worker_started)
                return -EALREADY;
        s->sink = sink;
        r = -pthread_create(&s->worker, NULL, worker_main, s);
        if (r < 0)
                return r;
        s->worker_started = true;
        *ret_n = 0; /* nothing to watch: results leave through emit */
        return 0;
}

static void input_on_readiness(void *instance, uint64_t cookie, uint32_t events)
{
}

static int input_submit(void *instance, const struct vmsig_event *ev, const void *payload, size_t payload_len)
{
        struct input_stub *s = instance;
        struct vmsig_input_body in;
        struct vmctl_cmd c;
        /* the real input path's rules: the stub takes what a real VM takes */
        int r = input_cmd_decode(ev, payload, &c, NULL);

        if (r != 0)
                return r;
        memcpy(&in, ev->body, sizeof(in));

        pthread_mutex_lock(&s->lock);
        if (!s->worker_started || s->n == RING_SLOTS) {
                pthread_mutex_unlock(&s->lock);
                return s->worker_started ? -EBUSY : -ENOTCONN;
        }
        struct input_cmd cmd = {.hdr = ev->hdr, .in = in};
        /* Nothing ahead of it: record it here, unless the write would block.
         * Saves the two thread wake-ups of a worker round. */
        if (!s->n && !s->busy) {
                r = record(s, &cmd, false);
                if (r != -EAGAIN) {
                        uint64_t recorded = s->recorded;
                        char msg[VMSIG_MSG_MAX];
                        pthread_mutex_unlock(&s->lock);
                        (void)answer(s, &cmd.hdr, r, recorded, msg, sizeof(msg));
                        return VMSIG_SUBMIT_ACCEPTED;
                }
        }
        s->ring[(s->head + s->n) % RING_SLOTS] = cmd;
        s->n++;
        pthread_cond_signal(&s->cond);
        pthread_mutex_unlock(&s->lock);
        return VMSIG_SUBMIT_ACCEPTED;
}

static const struct vmsig_adapter_ops input_stub_ops = {
    .name = "input-stub",
    .seam = VMSIG_SRC_INPUT,
    .open = input_open,
    .attach = input_attach,
    .on_readiness = input_on_readiness,
    .submit = input_submit,
    .close = input_close,
};

const struct adapter_desc input_stub_adapter = {&input_stub_ops, input_stub_opts, OPT_COUNT(input_stub_opts)};
