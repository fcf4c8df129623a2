/* SPDX-License-Identifier: MIT */
/* Shared by the bus tests: a scriptable test adapter and a recording
 * control. Header-only on purpose: each test binary gets its own copy. */
#ifndef VMSIG_TEST_BUS_FIXTURE_H
#define VMSIG_TEST_BUS_FIXTURE_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <vmsig/adapter.h>
#include <vmsig/bus.h>

/* ---- test adapter ---- */

struct tad {
        uint8_t seam;
        uint32_t endpoint;
        const struct vmsig_emit_sink *sink;
        int efd;
        unsigned submits;
        struct vmsig_event last_cmd;
        void (*on_ready)(struct tad *t); /* test hook, loop thread */
        void *test_data;
};

static atomic_int tad_opened, tad_closed;
static struct tad *tad_last; /* the most recently opened instance */
static void (*tad_default_hook)(struct tad *t);
static void *tad_default_data;

static inline int tad_open(const struct vmsig_adapter_cfg *cfg, uint32_t endpoint, void **ret)
{
        struct tad *t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->endpoint = endpoint;
        t->efd = -1;
        t->on_ready = tad_default_hook;
        t->test_data = tad_default_data;
        atomic_fetch_add(&tad_opened, 1);
        tad_last = t;
        *ret = t;
        return 0;
}

static inline int tad_attach(void *inst, const struct vmsig_emit_sink *sink, struct vmsig_fd_reg *reg,
                             size_t cap, size_t *ret_n)
{
        struct tad *t = inst;
        t->sink = sink;
        t->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (t->efd < 0)
                return -errno;
        reg[0] = (struct vmsig_fd_reg){
            .fd = t->efd, .epoll_events = 0x001 /* EPOLLIN */, .shape = VMSIG_RDY_EVENTFD, .cookie = 7};
        *ret_n = 1;
        return 0;
}

static inline void tad_ready(void *inst, uint64_t cookie, uint32_t events)
{
        struct tad *t = inst;
        if (t->on_ready)
                t->on_ready(t);
}

static inline int tad_submit(void *inst, const struct vmsig_event *ev, const void *payload, size_t len)
{
        struct tad *t = inst;
        t->submits++;
        memcpy(&t->last_cmd, ev, vmsig_event_size(ev));
        if (!(ev->hdr.flags & VMSIG_F_FF)) {
                struct vmsig_event ack;
                vmsig_ack_init(&ack, ev, t->seam, 0, len, "done");
                t->sink->emit(t->sink, &ack);
        }
        return VMSIG_SUBMIT_ACCEPTED;
}

static inline void tad_close(void *inst)
{
        struct tad *t = inst;
        if (t->efd >= 0)
                close(t->efd);
        free(t);
        atomic_fetch_add(&tad_closed, 1);
}

static inline void tad_kick(struct tad *t)
{
        uint64_t one = 1;
        (void)!write(t->efd, &one, sizeof(one));
}

#define TAD_OPS(var, seam_)                                                                                  \
        static int var##_open(const struct vmsig_adapter_cfg *c, uint32_t e, void **r)                       \
        {                                                                                                    \
                int x = tad_open(c, e, r);                                                                   \
                if (x == 0)                                                                                  \
                        ((struct tad *)*r)->seam = seam_;                                                    \
                return x;                                                                                    \
        }                                                                                                    \
        static const struct vmsig_adapter_ops var = {.name = #var,                                           \
                                                     .seam = seam_,                                          \
                                                     .open = var##_open,                                     \
                                                     .attach = tad_attach,                                   \
                                                     .on_readiness = tad_ready,                              \
                                                     .submit = tad_submit,                                   \
                                                     .close = tad_close}

/* ---- recording control ---- */

#define REC_MAX 4096
struct rec {
        struct vmsig_event ev[REC_MAX];
        int fd[REC_MAX];
        unsigned n;
        unsigned total;
        bool stall;    /* return -EAGAIN */
        bool keep_fds; /* take ownership of delivered fds */
        int closed_reason;
        char closed_msg[VMSIG_MSG_MAX];
        bool closed;
        /* optional hook after recording */
        void (*hook)(struct vmsig_control *ctl, const struct vmsig_event *ev, void *data);
        void *hook_data;
};

static inline int rec_deliver(struct vmsig_control *ctl, const struct vmsig_event *ev, int *fd, void *ud)
{
        struct rec *r = ud;
        if (r->stall)
                return -EAGAIN;
        if (r->n < REC_MAX) {
                memcpy(&r->ev[r->n], ev, vmsig_event_size(ev));
                r->fd[r->n] = -1;
                if (r->keep_fds && *fd >= 0) {
                        r->fd[r->n] = *fd;
                        *fd = -1;
                }
                r->n++;
        }
        r->total++;
        if (r->hook)
                r->hook(ctl, ev, r->hook_data);
        return 0;
}

static inline void rec_closed(struct vmsig_control *ctl, int reason, const char *msg, void *ud)
{
        struct rec *r = ud;
        r->closed = true;
        r->closed_reason = reason;
        snprintf(r->closed_msg, sizeof(r->closed_msg), "%s", msg);
}

static inline void rec_reset(struct rec *r)
{
        for (unsigned i = 0; i < r->n; i++)
                if (r->fd[i] >= 0)
                        close(r->fd[i]);
        r->n = 0;
        r->total = 0;
}

/* index of the first recorded event of kind k at or after `from`, or -1 */
static inline int rec_find(const struct rec *r, uint16_t kind, unsigned from)
{
        for (unsigned i = from; i < r->n; i++)
                if (r->ev[i].hdr.kind == kind)
                        return (int)i;
        return -1;
}

static inline struct vmsig_control *rec_control(struct vmsig_bus *bus, struct rec *r, const char *name,
                                                uint32_t caps)
{
        struct vmsig_control *c = NULL;
        struct vmsig_control_info info = {.name = name, .uid = 1000, .pid = 4242, .caps = caps};
        memset(r, 0, sizeof(*r));
        if (vmsig_control_new(bus, &info, rec_deliver, rec_closed, r, &c) < 0)
                return NULL;
        return c;
}

static inline void pump(struct vmsig_bus *bus, int rounds)
{
        for (int i = 0; i < rounds; i++)
                vmsig_bus_run_once(bus, 0);
}

static inline int count_fds(void)
{
        int n = 0;
        DIR *d = opendir("/proc/self/fd");
        struct dirent *de;
        if (!d)
                return -1;
        while ((de = readdir(d)))
                if (de->d_name[0] != '.')
                        n++;
        closedir(d);
        return n - 1; /* the DIR's own fd */
}

#endif
