/* SPDX-License-Identifier: MIT */
/* input stub: validates input commands like a real driver would, then records
 * them on a worker thread (a count, and with record=PATH one line per command
 * appended with write(2), readable by other processes). The worker stands in
 * for the device write a real driver does; it ACKs via sink->emit. Once the
 * adapter is detached (an emit says -ESHUTDOWN) the worker keeps that ACK and
 * starts nothing more; close() sends it and answers every command never
 * recorded with -ECANCELED (not applied). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
        const struct vmsig_emit_sink *sink;

        pthread_t worker;
        bool worker_started;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        /* under lock: a fixed ring, so the steady state never allocates */
        bool stop;
        unsigned head, n;
        struct input_cmd ring[RING_SLOTS];

        uint64_t recorded; /* worker only */
        /* worker only until the join: the ACK the detach refused */
        bool gone, has_late;
        struct vmsig_event_hdr late_hdr;
        int late_result;
        uint64_t late_value;
        char late_msg[VMSIG_MSG_MAX];
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

static int record(struct input_stub *s, const struct input_cmd *c)
{
        char line[128];
        int n = format_cmd(c, line, sizeof(line));

        s->recorded++;
        if (s->record_fd < 0)
                return 0;
        /* One write(2) per line: O_APPEND keeps lines whole for readers. */
        ssize_t w = write(s->record_fd, line, (size_t)n);
        if (w < 0)
                return -errno;
        return w == n ? 0 : -EIO;
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
                pthread_mutex_unlock(&s->lock);

                int r = record(s, &c);
                if (r < 0 || !(c.hdr.flags & VMSIG_F_FF)) {
                        char msg[VMSIG_MSG_MAX];
                        if (r < 0)
                                snprintf(msg, sizeof(msg), "recording %s failed: %s",
                                         vmsig_kind_name(c.hdr.kind), strerror(-r));
                        else
                                snprintf(msg, sizeof(msg), "%s recorded", vmsig_kind_name(c.hdr.kind));
                        if (vmsig_sink_ack(s->sink, VMSIG_SRC_INPUT, &c.hdr, r, s->recorded, "%s", msg) ==
                            -ESHUTDOWN) {
                                s->late_hdr = c.hdr;
                                s->late_result = r;
                                s->late_value = s->recorded;
                                memcpy(s->late_msg, msg, sizeof(msg));
                                s->has_late = s->gone = true;
                        }
                }
                pthread_mutex_lock(&s->lock);
                if (s->gone)
                        break; /* detached: close() answers the rest */
        }
        pthread_mutex_unlock(&s->lock);
        return NULL;
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
                pthread_join(s->worker, NULL);
        }
        /* We are closing: these ACKs still pass (loop thread). */
        if (s->has_late)
                (void)vmsig_sink_ack(s->sink, VMSIG_SRC_INPUT, &s->late_hdr, s->late_result, s->late_value,
                                     "%s", s->late_msg);
        for (; s->n; s->head = (s->head + 1) % RING_SLOTS, s->n--) {
                const struct input_cmd *c = &s->ring[s->head];
                (void)vmsig_sink_ack(s->sink, VMSIG_SRC_INPUT, &c->hdr, -ECANCELED, s->recorded,
                                     "%s not applied: the VM's input adapter was detached first",
                                     vmsig_kind_name(c->hdr.kind));
        }
        if (s->record_fd >= 0)
                close(s->record_fd);
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
        if (r == 0) {
                /* 0600: recorded keys can be secrets */
                s->record_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0600);
                if (s->record_fd < 0) {
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
        struct input_cmd *slot = &s->ring[(s->head + s->n) % RING_SLOTS];
        slot->hdr = ev->hdr;
        slot->in = in;
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
