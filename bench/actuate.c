/* SPDX-License-Identifier: MIT */
/* actuate: input actuation cost, each figure as a ratio to a baseline
 * measured in the same run.
 *
 *   1. fire-and-forget MOVE_ABS events/s: control -> bus -> real input
 *      adapter -> vmctl -> device, vs. the same commands written by vmctl
 *      directly (baseline).
 *   2. ACKed MOVE_ABS round trip p50/p99 (send -> ACT_ACK delivered to the
 *      control), vs. a direct vmctl_submit() to completion (baseline).
 *
 * The device is a real uinput pair where /dev/uinput is usable, else pipes
 * that a thread drains (the same write(2) per command, minus the kernel's
 * input core): the output says which. The adapter gets the devices the way
 * vmsigd does, from a holder socket. Never asserts.
 *
 *   3. MEMWRITE: TODO(lead) - figures for CMD_MEMWRITE through the memctx
 *      adapter go here (see the marked section at the end of main). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <vmsig/adapter.h>
#include <vmsig/bus.h>
#include <vmsig/event.h>

#ifdef VMCTL_ABSENT
int main(void)
{
        printf("actuate: vmctl is not built (needs libevdev-dev, libjson-c-dev); nothing to measure\n");
        return 0;
}
#else
#include "vmctl/vmctl.h"

#define N_STREAM 200000
#define N_RTT    5000
#define BATCH    512

static uint64_t now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
        return x < y ? -1 : x > y;
}

/* ---- the device: uinput pair or drained pipes ---- */

struct dev {
        struct vmctl_uinput_pair p;
        bool real;
        int rd[2]; /* pipe read ends */
        pthread_t drainer[2];
};

static void *drain(void *arg)
{
        int fd = *(int *)arg;
        char buf[1 << 16];
        while (read(fd, buf, sizeof(buf)) > 0)
                ;
        return NULL;
}

static int dev_open(struct dev *d, char *what, size_t len)
{
        char msg[VMCTL_MSG_MAX];
        memset(d, 0, sizeof(*d));
        if (vmctl_uinput_probe(msg) == 0 && vmctl_uinput_create("bench", &d->p, msg) == 0) {
                d->real = true;
                snprintf(what, len, "uinput pair %s + %s", d->p.kbd_node, d->p.ptr_node);
                return 0;
        }
        snprintf(what, len, "pipes drained by a thread (%s)", msg);
        int a[2], b[2];
        if (pipe2(a, O_CLOEXEC) < 0 || pipe2(b, O_CLOEXEC) < 0)
                return -errno;
        d->p.kbd_fd = a[1];
        d->p.ptr_fd = b[1];
        d->rd[0] = a[0];
        d->rd[1] = b[0];
        pthread_create(&d->drainer[0], NULL, drain, &d->rd[0]);
        pthread_create(&d->drainer[1], NULL, drain, &d->rd[1]);
        return 0;
}

static void dev_close(struct dev *d)
{
        vmctl_uinput_pair_close(&d->p);
        if (!d->real) {
                pthread_join(d->drainer[0], NULL);
                pthread_join(d->drainer[1], NULL);
                close(d->rd[0]);
                close(d->rd[1]);
        }
}

/* ---- holder (what vmsig-uinput does for vmsigd) ---- */

struct holder {
        int lfd;
        struct dev *d;
        char path[108];
        pthread_t th;
};

static void *holder_main(void *arg)
{
        struct holder *h = arg;
        for (;;) {
                int c = accept4(h->lfd, NULL, NULL, SOCK_CLOEXEC);
                if (c < 0)
                        return NULL;
                (void)vmctl_holder_send(c, &h->d->p);
                close(c);
        }
}

static int holder_start(struct holder *h, struct dev *d)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        h->d = d;
        snprintf(h->path, sizeof(h->path), "/tmp/vmsig-bench-actuate-%d.sock", (int)getpid());
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", h->path);
        unlink(h->path);
        h->lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (h->lfd < 0 || bind(h->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(h->lfd, 4) < 0)
                return -errno;
        return pthread_create(&h->th, NULL, holder_main, h) ? -EAGAIN : 0;
}

static void holder_stop(struct holder *h)
{
        shutdown(h->lfd, SHUT_RDWR);
        pthread_join(h->th, NULL);
        close(h->lfd);
        unlink(h->path);
}

/* ---- baseline: vmctl directly ---- */

static int direct_done;
static void count_done(void *ud, void *token, int result, const char *msg)
{
        direct_done++;
}

static struct vmctl_cmd move(long i)
{
        /* alternate positions: the kernel drops repeated ABS values */
        return (struct vmctl_cmd){
            .op = VMCTL_MOVE_ABS, .x = (int32_t)(i % 30000) + 1, .y = (int32_t)(i % 20000) + 1};
}

static void bench_direct(struct dev *d, double *ret_rate, uint64_t *lat, int nlat)
{
        struct vmctl_config cfg = VMCTL_CONFIG_INIT;
        struct vmctl *vm = NULL;
        char msg[VMCTL_MSG_MAX];
        cfg.vm_name = "bench";
        cfg.uinput_kbd_fd = d->p.kbd_fd;
        cfg.uinput_ptr_fd = d->p.ptr_fd;
        cfg.done = count_done;
        if (vmctl_open(&cfg, &vm, msg) < 0) {
                fprintf(stderr, "actuate: vmctl_open: %s\n", msg);
                exit(1);
        }
        uint64_t t0 = now_ns();
        for (long i = 0; i < N_STREAM; i++) {
                struct vmctl_cmd c = move(i);
                (void)vmctl_submit(vm, &c, NULL, msg);
        }
        *ret_rate = N_STREAM / ((double)(now_ns() - t0) / 1e9);
        for (int i = 0; i < nlat; i++) {
                struct vmctl_cmd c = move(i);
                int before = direct_done;
                uint64_t t = now_ns();
                (void)vmctl_submit(vm, &c, NULL, msg);
                lat[i] = direct_done > before ? now_ns() - t : 0;
        }
        vmctl_free(vm);
}

/* ---- through the bus ---- */

struct ctl {
        uint64_t acks, ack_err, last_corr;
        bool granted;
        char diag[VMSIG_MSG_MAX];
};

static int deliver(struct vmsig_control *c, const struct vmsig_event *ev, int *fd, void *ud)
{
        struct ctl *s = ud;
        if (ev->hdr.kind == VMSIG_EV_ACT_ACK) {
                const struct vmsig_ack_body *a = (const void *)ev->body;
                s->acks++;
                s->last_corr = ev->hdr.corr;
                if (a->result < 0 && s->ack_err++ == 0)
                        fprintf(stderr, "actuate: ACK error %d %s\n", a->result, a->msg);
        } else if (ev->hdr.kind == VMSIG_EV_LEASE_GRANT) {
                s->granted = true;
        } else if (ev->hdr.kind == VMSIG_EV_DIAG) {
                snprintf(s->diag, sizeof(s->diag), "%s", ((const struct vmsig_diag_body *)ev->body)->msg);
        }
        return 0;
}

static void closed(struct vmsig_control *c, int reason, const char *msg, void *ud)
{
}

static void send_move(struct vmsig_control *c, uint32_t ep, long i, bool ff)
{
        struct vmctl_cmd m = move(i);
        struct vmsig_input_body in = {.x = m.x, .y = m.y};
        struct vmsig_event ev;
        vmsig_event_init(&ev, VMSIG_EV_MOVE_ABS, ep, VMSIG_SRC_INPUT);
        ev.hdr.corr = (uint64_t)i + 1;
        if (ff)
                ev.hdr.flags |= VMSIG_F_FF;
        vmsig_event_set_body(&ev, &in, sizeof(in));
        (void)vmsig_control_send(c, &ev);
}

static int bench_bus(const char *holder_path, double *ret_rate, uint64_t *lat, int nlat, char *backend,
                     size_t blen)
{
        const struct vmsig_adapter_ops *ops = vmsig_input_ops();
        struct vmsig_bus *bus = NULL;
        struct vmsig_control *c = NULL;
        struct ctl s = {0};
        uint32_t ep;
        char opt[160];

        if (!ops)
                return -ENOTSUP;
        if (vmsig_bus_new(NULL, &bus) < 0 || vmsig_bus_endpoint_add(bus, "bench", &ep) < 0)
                return -ENOMEM;
        snprintf(opt, sizeof(opt), "uinput=%s", holder_path);
        struct vmsig_adapter_cfg cfg = {.vm_name = "bench", .options = opt};
        int r = vmsig_bus_attach(bus, ep, ops, &cfg);
        if (r < 0) {
                vmsig_bus_free(bus);
                return r;
        }
        struct vmsig_control_info info = {
            .name = "bench", .uid = getuid(), .pid = getpid(), .caps = VMSIG_CAP_ALL};
        vmsig_control_new(bus, &info, deliver, closed, &s, &c);
        vmsig_control_subscribe(c, ep, VMSIG_KINDS_ALL_UP);
        vmsig_control_lease_acquire(c, ep, VMSIG_LEASE_INPUT, 1);
        for (int i = 0; i < 100 && !s.granted; i++)
                vmsig_bus_run_once(bus, 10);
        snprintf(backend, blen, "%s", s.granted ? s.diag : "input lease not granted");

        /* 1. FF stream: queue a batch, run the loop until it is dispatched */
        uint64_t t0 = now_ns();
        for (long i = 0; i < N_STREAM; i += BATCH) {
                for (long j = i; j < i + BATCH && j < N_STREAM; j++)
                        send_move(c, ep, j, true);
                while (vmsig_bus_run_once(bus, 0) > 0)
                        ;
        }
        *ret_rate = N_STREAM / ((double)(now_ns() - t0) / 1e9);
        if (s.ack_err)
                fprintf(stderr, "actuate: %llu error ACKs in the FF stream\n", (unsigned long long)s.ack_err);

        /* 2. ACKed round trips, one at a time */
        for (int i = 0; i < nlat; i++) {
                uint64_t want = s.acks + 1, t = now_ns();
                send_move(c, ep, i, false);
                while (s.acks < want)
                        vmsig_bus_run_once(bus, 1);
                lat[i] = now_ns() - t;
        }
        vmsig_control_close(c);
        vmsig_bus_free(bus);
        return 0;
}

static void pct(uint64_t *v, int n, double *p50, double *p99)
{
        qsort(v, (size_t)n, sizeof(*v), cmp_u64);
        *p50 = (double)v[n / 2] / 1000.0;
        *p99 = (double)v[(n * 99) / 100] / 1000.0;
}

int main(void)
{
        static uint64_t lat_direct[N_RTT], lat_bus[N_RTT];
        struct dev d;
        struct holder h;
        char what[256], backend[VMSIG_MSG_MAX] = "";
        double r_direct = 0, r_bus = 0, d50, d99, b50, b99;

        if (dev_open(&d, what, sizeof(what)) < 0) {
                printf("actuate: no device sink\n");
                return 0;
        }
        printf("actuate: device = %s\n", what);
        bench_direct(&d, &r_direct, lat_direct, N_RTT);
        if (holder_start(&h, &d) < 0) {
                printf("actuate: cannot start the holder socket\n");
                dev_close(&d);
                return 0;
        }
        int r = bench_bus(h.path, &r_bus, lat_bus, N_RTT, backend, sizeof(backend));
        holder_stop(&h);
        dev_close(&d);
        if (r < 0) {
                printf("actuate: no real input adapter in this build (%s); baseline only: %.0f cmds/s\n",
                       strerror(-r), r_direct);
                return 0;
        }
        pct(lat_direct, N_RTT, &d50, &d99);
        pct(lat_bus, N_RTT, &b50, &b99);
        printf("actuate: adapter backend = %s\n", backend);
        printf("%-44s %14s %14s %8s\n", "figure", "bus", "direct vmctl", "ratio");
        printf("%-44s %14.0f %14.0f %8.2f\n", "FF MOVE_ABS commands/s (higher is better)", r_bus, r_direct,
               r_bus / r_direct);
        printf("%-44s %14.2f %14.2f %8.2f\n", "ACKed MOVE_ABS round trip p50 (us)", b50, d50, b50 / d50);
        printf("%-44s %14.2f %14.2f %8.2f\n", "ACKed MOVE_ABS round trip p99 (us)", b99, d99, b99 / d99);

        /* ---- TODO(lead): CMD_MEMWRITE figures ----
         * MEMWRITE through the memctx adapter (ACKed, sizes 8 B / 4 KiB /
         * 64 KiB) vs. a pwrite() of the same bytes to the RAM file as the
         * baseline, p50/p99 and MB/s. Not measured here yet. */
        printf("%-44s %14s\n", "CMD_MEMWRITE", "TODO (lead)");
        return 0;
}
#endif
