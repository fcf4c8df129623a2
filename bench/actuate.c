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
 * vmsigd does, from a holder socket. It judges validity (below), never speed.
 *
 *   3. CMD_MEMWRITE over the real socket (vmsigd's server and client API,
 *      in-process, to a memctx stub whose RAM is a memfd): the 8-byte
 *      round trip vs. a raw unix-socket ping-pong of the same frame sizes,
 *      and 1 MiB writes vs. pwrite() of the same bytes into a memfd, each
 *      write ACKed before the next: the SRC tail (protocol v1), the
 *      caller's bytes through vmsig_client_memwrite (copied into the staging
 *      memfd, passed as the fd source), and the zero-copy form (the caller
 *      fills the staging buffer, vmsig_client_memwrite_submit). The goal
 *      (>= 0.5x pwrite) is stated for the zero-copy form. The staging memfd
 *      is sealed, so the engine maps it and the stub copies with memcpy
 *      into its RAM mapping; the real memctx adapter makes that copy with
 *      pwrite on the RAM fd, the baseline's own call, so its ratio is lower
 *      by the difference between the two copies.
 *
 * Checked before any figure is printed: every direct vmctl_submit was
 * accepted and completed before it returned; the input lease was granted;
 * every ACKed command got its own ACT_ACK with result 0 and no FF command
 * was refused; with the pipe device, the bus path wrote exactly the bytes
 * the direct path wrote for the same commands (nothing lost or doubled);
 * every MEMWRITE was ACKed with success, and after each form's 1 MiB writes
 * its bytes were read back from guest RAM (the MEMCTX fd); every raw
 * ping-pong completed; no wait exceeded 10 s. Otherwise "INVALID: <reason>" and exit 1.
 *
 *   actuate                 full run
 *   actuate --smoke         the checks on a few thousand commands, no figures
 *   actuate --input-only    parts 1 and 2 only (e.g. inside the stock-kernel
 *                           test guest, for the uinput figures); combines
 *                           with --smoke */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <vmsig/adapter.h>
#include <vmsig/bus.h>
#include <vmsig/client.h>
#include <vmsig/event.h>
#include <vmsig/memctx.h>
#include <vmsig/server.h>

#include "adapters/stub_internal.h"
#include "bench_check.h"

#ifdef VMCTL_ABSENT
int main(void)
{
        printf("actuate: vmctl is not built (needs libevdev-dev, libjson-c-dev); nothing to measure\n");
        return 0;
}
#else
#include "vmctl/vmctl.h"

#define N_STREAM_FULL 200000
#define N_RTT         5000 /* array size; g_n_rtt may be smaller */
#define BATCH         512
#define WAIT_NS       10000000000ull /* any single wait: longer means broken */

static bool g_smoke;
static long N_STREAM = N_STREAM_FULL;
static int g_n_rtt = N_RTT;

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

struct drainer {
        int fd;
        atomic_ullong bytes; /* read so far: what the writers wrote */
};

struct dev {
        struct vmctl_uinput_pair p;
        bool real;
        int rd[2]; /* pipe read ends */
        struct drainer dr[2];
        pthread_t drainer[2];
};

static void *drain(void *arg)
{
        struct drainer *d = arg;
        char buf[1 << 16];
        ssize_t k;
        while ((k = read(d->fd, buf, sizeof(buf))) > 0)
                atomic_fetch_add(&d->bytes, (unsigned long long)k);
        return NULL;
}

/* Bytes written to the pipe device so far, once the drainers caught up
 * (pipes empty and the count steady); 0 with a real uinput device. */
static unsigned long long dev_written(struct dev *d)
{
        if (d->real)
                return 0;
        unsigned long long last = ~0ull;
        for (uint64_t t0 = now_ns(); now_ns() - t0 < WAIT_NS;) {
                int q0 = 0, q1 = 0;
                ioctl(d->rd[0], FIONREAD, &q0);
                ioctl(d->rd[1], FIONREAD, &q1);
                unsigned long long v = atomic_load(&d->dr[0].bytes) + atomic_load(&d->dr[1].bytes);
                if (!q0 && !q1 && v == last)
                        return v;
                last = v;
                usleep(5000);
        }
        invalid("the pipe device never drained");
        return last;
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
        d->dr[0].fd = a[0];
        d->dr[1].fd = b[0];
        pthread_create(&d->drainer[0], NULL, drain, &d->dr[0]);
        pthread_create(&d->drainer[1], NULL, drain, &d->dr[1]);
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

static int direct_done, direct_failed;
static void count_done(void *ud, void *token, int result, const char *msg)
{
        direct_done++;
        if (result < 0 && direct_failed++ == 0)
                fprintf(stderr, "actuate: direct command failed: %s\n", msg);
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
                printf("INVALID: vmctl_open: %s\n", msg);
                exit(1);
        }
        long refused = 0, late = 0;
        uint64_t t0 = now_ns();
        for (long i = 0; i < N_STREAM; i++) {
                struct vmctl_cmd c = move(i);
                refused += vmctl_submit(vm, &c, NULL, msg) < 0;
        }
        *ret_rate = N_STREAM / ((double)(now_ns() - t0) / 1e9);
        for (int i = 0; i < nlat; i++) {
                struct vmctl_cmd c = move(i);
                int before = direct_done;
                uint64_t t = now_ns();
                refused += vmctl_submit(vm, &c, NULL, msg) < 0;
                lat[i] = now_ns() - t;
                late += direct_done == before; /* the baseline must be a completion */
        }
        vmctl_free(vm);
        if (refused || late || direct_failed || direct_done != N_STREAM + nlat)
                invalid("direct vmctl: %ld refused, %ld not completed on return, %d failed, %d of %ld done",
                        refused, late, direct_failed, direct_done, N_STREAM + nlat);
}

/* ---- through the bus ---- */

struct ctl {
        uint64_t acks, ack_err, last_corr, wrong_corr, want_corr;
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
                if (s->want_corr && ev->hdr.corr != s->want_corr)
                        s->wrong_corr++;
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

static long g_send_failed;

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
        if (vmsig_control_send(c, &ev) < 0)
                g_send_failed++;
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
        for (uint64_t t = now_ns(); !s.granted && now_ns() - t < WAIT_NS;)
                vmsig_bus_run_once(bus, 10);
        snprintf(backend, blen, "%s", s.granted ? s.diag : "input lease not granted");
        if (!s.granted) {
                invalid("input lease not granted within 10 s");
                vmsig_control_close(c);
                vmsig_bus_free(bus);
                return 0;
        }

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
                invalid("%llu FF commands refused", (unsigned long long)s.ack_err);

        /* 2. ACKed round trips, one at a time */
        uint64_t acks0 = s.acks;
        for (int i = 0; i < nlat; i++) {
                uint64_t want = s.acks + 1, t = now_ns();
                s.want_corr = (uint64_t)i + 1;
                send_move(c, ep, i, false);
                while (s.acks < want && now_ns() - t < WAIT_NS)
                        vmsig_bus_run_once(bus, 1);
                lat[i] = now_ns() - t;
                if (s.acks < want) {
                        invalid("no ACT_ACK for MOVE_ABS %d within 10 s", i + 1);
                        break;
                }
        }
        if (s.ack_err || s.wrong_corr || s.acks - acks0 != (uint64_t)nlat)
                invalid(
                    "ACKed MOVE_ABS: %llu ACKs for %d commands, %llu with errors, %llu for another command",
                    (unsigned long long)(s.acks - acks0), nlat, (unsigned long long)s.ack_err,
                    (unsigned long long)s.wrong_corr);
        if (g_send_failed)
                invalid("%ld vmsig_control_send calls failed", g_send_failed);
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

/* ---- 3. CMD_MEMWRITE over the socket ---- */

struct mwbus {
        char path[108];
        int stop;
        pthread_t th;
        int ready; /* 1 ok, <0 error */
        pthread_mutex_t mu;
        pthread_cond_t cv;
};

static int admit_all(void *ud, const struct vmsig_peer *p, uint32_t *caps, char *why, size_t len)
{
        *caps = VMSIG_CAP_ALL;
        return 0;
}

static void on_stop(struct vmsig_io *io, int fd, uint32_t events, void *ud)
{
        vmsig_bus_exit(ud, 0);
}

static void mw_ready(struct mwbus *b, int r)
{
        pthread_mutex_lock(&b->mu);
        b->ready = r;
        pthread_cond_signal(&b->cv);
        pthread_mutex_unlock(&b->mu);
}

/* The bus must be created on the thread that runs it. */
static void *mw_bus_main(void *arg)
{
        struct mwbus *b = arg;
        struct vmsig_bus *bus;
        struct vmsig_server *srv = NULL;
        struct vmsig_server_config sc = {.path = b->path, .group = (gid_t)-1, .admit = admit_all};
        struct vmsig_adapter_cfg cfg = {.vm_name = "mw", .options = "ram_mib=8"};
        uint32_t ep;
        int r = vmsig_bus_new(NULL, &bus);

        if (r < 0) {
                mw_ready(b, r);
                return NULL;
        }
        if ((r = vmsig_bus_endpoint_add(bus, "mw", &ep)) < 0 ||
            (r = vmsig_bus_attach(bus, ep, vmsig_memctx_stub_ops(), &cfg)) < 0 ||
            (r = vmsig_server_new(bus, &sc, &srv)) < 0 ||
            (r = vmsig_bus_add_io(bus, b->stop, 0x001, on_stop, bus, NULL)) < 0) {
                mw_ready(b, r);
                vmsig_server_shutdown(srv, NULL);
                vmsig_bus_free(bus);
                return NULL;
        }
        mw_ready(b, 1);
        vmsig_bus_run(bus);
        vmsig_server_shutdown(srv, NULL);
        vmsig_bus_free(bus);
        return NULL;
}

static int mw_wait_ack(struct vmsig_client *c, uint64_t corr, int32_t *ret_result)
{
        for (;;) {
                struct vmsig_event ev;
                int fd = -1;
                int r = vmsig_client_recv_wait(c, &ev, &fd, NULL, 5000);
                if (r < 0)
                        return r;
                if (fd >= 0)
                        close(fd);
                if (r == VMSIG_CLIENT_EVENT && ev.hdr.kind == VMSIG_EV_ACT_ACK && ev.hdr.corr == corr) {
                        struct vmsig_ack_body a;
                        memcpy(&a, ev.body, sizeof(a));
                        *ret_result = a.result;
                        return 0;
                }
        }
}

/* Raw baseline: the same request and reply sizes over a socketpair. */
struct pp {
        int fd;
        size_t req, resp;
        int n;
};

static void *pp_echo(void *arg)
{
        struct pp *p = arg;
        uint8_t buf[4096];
        for (int i = 0; i < p->n; i++) {
                size_t got = 0;
                while (got < p->req) {
                        ssize_t k = read(p->fd, buf, p->req - got);
                        if (k <= 0)
                                return NULL;
                        got += (size_t)k;
                }
                if (write(p->fd, buf, p->resp) != (ssize_t)p->resp)
                        return NULL;
        }
        return NULL;
}

/* Returns how many round trips completed. */
static int raw_pingpong(size_t req, size_t resp, uint64_t *lat, int n)
{
        int sv[2];
        uint8_t buf[4096] = {0};
        pthread_t th;
        struct pp p = {.req = req, .resp = resp, .n = n};

        int done = 0;
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                return 0;
        p.fd = sv[1];
        pthread_create(&th, NULL, pp_echo, &p);
        for (int i = 0; i < n; i++, done++) {
                uint64_t t0 = now_ns();
                size_t got = 0;
                if (write(sv[0], buf, req) != (ssize_t)req)
                        break;
                while (got < resp) {
                        ssize_t k = read(sv[0], buf, resp - got);
                        if (k <= 0)
                                break;
                        got += (size_t)k;
                }
                if (got < resp)
                        break;
                lat[i] = now_ns() - t0;
        }
        shutdown(sv[0], SHUT_RDWR); /* an echo thread still reading gives up */
        pthread_join(th, NULL);
        close(sv[0]);
        close(sv[1]);
        return done;
}

/* Figures of part 3, printed only once every check passed. */
static struct {
        double b50, b99, r50, r99, bus_mbs, pw_mbs, copy_mbs, zc_mbs;
} g_mw;

/* MB/s of n writes of BIG bytes that took ns. */
static double mbs(int n, size_t big, uint64_t ns)
{
        return n && ns ? (double)n * (double)big / ((double)ns / 1e9) / 1e6 : 0;
}

/* The stub's RAM through its read-only MEMCTX fd (a second client): how
 * the bench checks that the written bytes landed. -1 if it never came. */
static int mw_ram_fd(const char *path, struct vmsig_memctx *ctx)
{
        struct vmsig_client *w = NULL;
        uint64_t corr;
        int ramfd = -1;

        if (vmsig_client_new(&w) < 0 || vmsig_client_connect(w, path, "actuate-check", 5000) < 0 ||
            vmsig_client_subscribe(w, 1, 1ull << VMSIG_EV_MEMCTX, &corr) < 0)
                goto out;
        for (uint64_t end = now_ns() + 5000000000ull; ramfd < 0 && now_ns() < end;) {
                struct vmsig_event ev;
                int fd = -1;
                if (vmsig_client_recv_wait(w, &ev, &fd, NULL, 1000) < 0)
                        continue;
                if (fd >= 0 && ev.hdr.kind == VMSIG_EV_MEMCTX && vmsig_memctx_from_event(&ev, fd, ctx) == 0)
                        ramfd = fd;
                else if (fd >= 0)
                        close(fd);
        }
out:
        vmsig_client_free(w);
        return ramfd;
}

/* Did len bytes of value v land at gpa? */
static bool mw_landed(int ramfd, const struct vmsig_memctx *ctx, uint64_t gpa, uint8_t v, size_t len)
{
        uint64_t off = 0, avail = 0;
        uint8_t *got = malloc(len);
        bool ok = got && vmsig_memctx_gpa_to_offset(ctx, gpa, &off, &avail) == 0 && avail >= len &&
                  pread(ramfd, got, len, (off_t)off) == (ssize_t)len;

        for (size_t i = 0; ok && i < len; i++)
                ok = got[i] == v;
        free(got);
        return ok;
}

#define BIG_MW (1 << 20)

/* The 1 MiB forms: the SRC tail, the caller's bytes copied into the
 * staging memfd by the library, and the staging buffer filled in place. */
enum mw_form { MW_TAIL, MW_COPYING, MW_ZEROCOPY, MW_FORMS };
static const char *const mw_form_name[MW_FORMS] = {"tail", "copying form", "zero-copy form"};

/* One ACKed 1 MiB write of form f: 0, or the first failure (-errno, or the
 * ACK's result). */
static int mw_write_1m(struct vmsig_client *c, struct vmsig_event *ev, enum mw_form f, const uint8_t *big,
                       const void *stage)
{
        uint64_t corr;
        int32_t res;
        void *p;
        int r;

        ev->hdr.corr = 0;
        switch (f) {
        case MW_TAIL:
                r = vmsig_client_send_payload(c, ev, big, BIG_MW, &corr);
                break;
        case MW_COPYING:
                r = vmsig_client_memwrite(c, ev, big, BIG_MW, &corr);
                break;
        default: /* the bytes are in the staging buffer already */
                if ((r = vmsig_client_memwrite_buffer(c, &p, NULL)) == 0)
                        r = p == stage ? vmsig_client_memwrite_submit(c, ev, BIG_MW, &corr) : -EFAULT;
                break;
        }
        if (r == 0)
                r = mw_wait_ack(c, corr, &res);
        return r < 0 ? r : res;
}

static void bench_memwrite(void)
{
        enum { N_MAX = 5000, BIG = BIG_MW, NBIG_MAX = 200 }; /* NBIG: per form, in 10 rounds */
        const int N = g_smoke ? 200 : N_MAX, NBIG = g_smoke ? 4 : NBIG_MAX;
        static uint64_t lat_bus[N_MAX], lat_raw[N_MAX];
        struct mwbus b = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
        struct vmsig_client *c = NULL;
        uint64_t corr;
        int32_t res;
        int r;

        snprintf(b.path, sizeof(b.path), "/tmp/vmsig-actuate-%d.sock", (int)getpid());
        b.stop = eventfd(0, EFD_CLOEXEC);
        pthread_create(&b.th, NULL, mw_bus_main, &b);
        pthread_mutex_lock(&b.mu);
        while (!b.ready)
                pthread_cond_wait(&b.cv, &b.mu);
        pthread_mutex_unlock(&b.mu);
        if (b.ready < 0) {
                invalid("CMD_MEMWRITE bus: %s", strerror(-b.ready));
                goto out;
        }
        if (vmsig_client_new(&c) < 0 || vmsig_client_connect(c, b.path, "actuate", 5000) < 0 ||
            vmsig_client_lease_acquire(c, 1, VMSIG_LEASE_MEMWRITE, &corr) < 0 ||
            mw_wait_ack(c, corr, &res) < 0 || res < 0) {
                invalid("CMD_MEMWRITE: cannot connect or take the memwrite lease");
                goto out;
        }
        /* The stub publishes its memctx shortly after attach: wait until a
         * write succeeds. */
        struct vmsig_event ev;
        struct vmsig_memwrite_body mb = {.addr = VMSIG_STUB_BANNER_VA, .len = 8};
        memcpy(mb.data, "vmsig!!!", 8);
        vmsig_event_init(&ev, VMSIG_EV_CMD_MEMWRITE, 1, VMSIG_SRC_MEMCTX);
        vmsig_event_set_body(&ev, &mb, offsetof(struct vmsig_memwrite_body, data) + 8);
        res = -EAGAIN;
        for (int tries = 0; tries < 200; tries++) {
                ev.hdr.corr = 0;
                if (vmsig_client_send(c, &ev, &corr) < 0 || mw_wait_ack(c, corr, &res) < 0)
                        break;
                if (res == 0)
                        break;
                usleep(10000);
        }
        if (res != 0) {
                invalid("CMD_MEMWRITE never succeeded within 2 s: %s", strerror(res < 0 ? -res : EIO));
                goto out;
        }
        int small_ok = 0;
        r = 0;
        for (int i = 0; i < N; i++) {
                uint64_t t0 = now_ns();
                ev.hdr.corr = 0;
                if ((r = vmsig_client_send(c, &ev, &corr)) < 0 || (r = mw_wait_ack(c, corr, &res)) < 0)
                        break;
                lat_bus[i] = now_ns() - t0;
                if (res != 0)
                        break;
                small_ok++;
        }
        if (small_ok != N)
                invalid("8-byte CMD_MEMWRITE: %d of %d ACKed with success (%s)", small_ok, N,
                        strerror(r < 0     ? -r
                                 : res < 0 ? -res
                                           : EIO));
        /* wire sizes: EVENT frame 8+56+24 out, ACT_ACK frame 8+56+176 back */
        int raw_ok = raw_pingpong(8 + 56 + 24, 8 + 56 + sizeof(struct vmsig_ack_body), lat_raw, N);
        if (raw_ok != N)
                invalid("raw ping-pong: %d of %d round trips completed", raw_ok, N);
        pct(lat_bus, N, &g_mw.b50, &g_mw.b99);
        pct(lat_raw, N, &g_mw.r50, &g_mw.r99);

        /* 1 MiB: the SRC tail, the fd source (copying and zero-copy) and
         * pwrite of the same bytes into a memfd. The box is shared and
         * noisy, so the four are interleaved in rounds and each total is
         * summed over the rounds: a burst of load hits all of them alike. */
        const int ROUNDS = g_smoke ? 1 : 10, PER = NBIG / ROUNDS;
        uint8_t *big = malloc(BIG);
        memset(big, 0x5a, BIG);
        mb.addr = VMSIG_STUB_KERNEL_BASE + (1u << 20);
        mb.len = BIG;
        vmsig_event_set_body(&ev, &mb, offsetof(struct vmsig_memwrite_body, data));
        int mfd = memfd_create("actuate-baseline", MFD_CLOEXEC);
        (void)!ftruncate(mfd, 4 * BIG);
        void *stage = NULL;
        size_t stage_len = 0;
        if (!vmsig_client_can_memwrite_fd(c)) {
                invalid("the daemon does not offer the fd source (WELCOME version %u)",
                        vmsig_client_get_info(c)->version);
                goto big_out;
        }
        if (vmsig_client_memwrite_buffer(c, &stage, &stage_len) < 0 || stage_len < BIG) {
                invalid("no staging buffer of %d bytes", BIG);
                goto big_out;
        }
        struct vmsig_memctx ctx;
        int ramfd = mw_ram_fd(b.path, &ctx);
        if (ramfd < 0) {
                invalid("no MEMCTX with the stub's RAM fd within 5 s (the written bytes cannot be checked)");
                goto big_out;
        }
        const uint64_t gpa = 1u << 20; /* the stub maps its kernel image from gpa 0 */
        uint64_t ns[MW_FORMS] = {0}, ns_pw = 0;
        int ok[MW_FORMS] = {0};
        char why[160] = "";
        for (int round = 0; round < ROUNDS && !why[0]; round++) {
                for (int f = 0; f < MW_FORMS && !why[0]; f++) {
                        /* Each form writes its own byte value (filled outside
                         * the timing), read back from guest RAM after it. */
                        const uint8_t v = (uint8_t)(0x10 + 0x30 * f + round);
                        memset(f == MW_ZEROCOPY ? stage : big, v, BIG);
                        uint64_t t0 = now_ns();
                        for (int i = 0; i < PER && !why[0]; i++)
                                if ((r = mw_write_1m(c, &ev, (enum mw_form)f, big, stage)) < 0)
                                        snprintf(why, sizeof(why), "%s: %s", mw_form_name[f], strerror(-r));
                                else
                                        ok[f]++;
                        ns[f] += now_ns() - t0;
                        if (!why[0] && !mw_landed(ramfd, &ctx, gpa, v, BIG))
                                snprintf(why, sizeof(why), "%s: the bytes read back from guest RAM differ",
                                         mw_form_name[f]);
                }
                uint64_t t0 = now_ns();
                for (int i = 0; i < PER; i++)
                        (void)!pwrite(mfd, big, BIG, BIG);
                ns_pw += now_ns() - t0;
        }
        close(ramfd);
        if (ok[MW_TAIL] + ok[MW_COPYING] + ok[MW_ZEROCOPY] < MW_FORMS * ROUNDS * PER || why[0])
                invalid("1 MiB CMD_MEMWRITE: %d tail, %d copying, %d zero-copy of %d each ACKed with success "
                        "(%s)",
                        ok[MW_TAIL], ok[MW_COPYING], ok[MW_ZEROCOPY], ROUNDS * PER, why);
        g_mw.bus_mbs = mbs(ok[MW_TAIL], BIG, ns[MW_TAIL]);
        g_mw.copy_mbs = mbs(ok[MW_COPYING], BIG, ns[MW_COPYING]);
        g_mw.zc_mbs = mbs(ok[MW_ZEROCOPY], BIG, ns[MW_ZEROCOPY]);
        g_mw.pw_mbs = mbs(ROUNDS * PER, BIG, ns_pw);
big_out:
        close(mfd);
        free(big);
out:
        vmsig_client_free(c);
        uint64_t one = 1;
        (void)!write(b.stop, &one, sizeof(one));
        pthread_join(b.th, NULL);
        close(b.stop);
        unlink(b.path);
}

static void bench_memwrite_print(void)
{
        printf("%-44s %14s %14s %8s\n", "", "bus socket", "raw socket", "ratio");
        printf("%-44s %14.2f %14.2f %8.2f\n", "8-byte MEMWRITE round trip p50 (us)", g_mw.b50, g_mw.r50,
               g_mw.b50 / g_mw.r50);
        printf("%-44s %14.2f %14.2f %8.2f\n", "8-byte MEMWRITE round trip p99 (us)", g_mw.b99, g_mw.r99,
               g_mw.b99 / g_mw.r99);
        printf("%-44s %14s %14s %8s\n", "1 MiB MEMWRITE, MB/s (higher is better)", "bus", "pwrite", "ratio");
        printf("%-44s %14.0f %14.0f %8.2f\n", "  SRC tail (v1)", g_mw.bus_mbs, g_mw.pw_mbs,
               g_mw.pw_mbs > 0 ? g_mw.bus_mbs / g_mw.pw_mbs : 0);
        printf("%-44s %14.0f %14.0f %8.2f\n", "  fd source, caller's bytes copied (v2)", g_mw.copy_mbs,
               g_mw.pw_mbs, g_mw.pw_mbs > 0 ? g_mw.copy_mbs / g_mw.pw_mbs : 0);
        printf("%-44s %14.0f %14.0f %8.2f\n", "  fd source, zero-copy staging buffer (v2)", g_mw.zc_mbs,
               g_mw.pw_mbs, g_mw.pw_mbs > 0 ? g_mw.zc_mbs / g_mw.pw_mbs : 0);
        printf("1 MiB MEMWRITE goal (zero-copy form >= 0.5x pwrite): %s\n",
               g_mw.pw_mbs > 0 && g_mw.zc_mbs / g_mw.pw_mbs >= 0.5 ? "met" : "missed");
}

int main(int argc, char **argv)
{
        static uint64_t lat_direct[N_RTT], lat_bus[N_RTT];
        struct dev d;
        struct holder h;
        char what[256], backend[VMSIG_MSG_MAX] = "";
        double r_direct = 0, r_bus = 0, d50, d99, b50, b99;

        bool input_only = false;
        for (int i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "--smoke")) {
                        g_smoke = true;
                        N_STREAM = 5000;
                        g_n_rtt = 200;
                } else if (!strcmp(argv[i], "--input-only")) {
                        input_only = true;
                } else {
                        fprintf(stderr, "usage: actuate [--smoke] [--input-only]\n");
                        return 2;
                }
        }
        setvbuf(stdout, NULL, _IOLBF, 0);
        if (dev_open(&d, what, sizeof(what)) < 0) {
                printf("INVALID: no device sink\n");
                return 1;
        }
        printf("actuate%s: device = %s\n", g_smoke ? " --smoke (checks only, no figures)" : "", what);
        bench_direct(&d, &r_direct, lat_direct, g_n_rtt);
        unsigned long long w_direct = dev_written(&d);
        if (holder_start(&h, &d) < 0) {
                printf("INVALID: cannot start the holder socket\n");
                dev_close(&d);
                return 1;
        }
        int r = bench_bus(h.path, &r_bus, lat_bus, g_n_rtt, backend, sizeof(backend));
        holder_stop(&h);
        unsigned long long w_bus = r == 0 ? dev_written(&d) - w_direct : 0;
        bool real = d.real;
        dev_close(&d);
        if (r < 0) {
                printf("actuate: no real input adapter in this build (%s); nothing to compare\n",
                       strerror(-r));
                return 0;
        }
        /* the same commands in the same order: the same device bytes */
        if (!real && w_direct == 0)
                invalid("the direct path wrote nothing to the device");
        if (!real && w_bus != w_direct)
                invalid(
                    "the bus path wrote %llu bytes to the device, the direct path %llu for the same commands",
                    w_bus, w_direct);
        if (!input_only)
                bench_memwrite();
        if (bench_report_invalid())
                return 1;
        if (g_smoke) {
                printf(
                    "  smoke: valid -- %ld FF + %d ACKed MOVE_ABS, direct and through the bus, all accepted "
                    "and ACKed with success%s%s\n",
                    N_STREAM, g_n_rtt, real ? "" : ", the same device bytes both ways",
                    input_only ? ""
                               : "; 8-byte and 1 MiB MEMWRITEs all ACKed with success, the 1 MiB bytes read "
                                 "back from guest RAM");
                return 0;
        }
        pct(lat_direct, g_n_rtt, &d50, &d99);
        pct(lat_bus, g_n_rtt, &b50, &b99);
        printf("actuate: adapter backend = %s\n", backend);
        printf("%-44s %14s %14s %8s\n", "figure", "bus", "direct vmctl", "ratio");
        printf("%-44s %14.0f %14.0f %8.2f\n", "FF MOVE_ABS commands/s (higher is better)", r_bus, r_direct,
               r_bus / r_direct);
        printf("%-44s %14.2f %14.2f %8.2f\n", "ACKed MOVE_ABS round trip p50 (us)", b50, d50, b50 / d50);
        printf("%-44s %14.2f %14.2f %8.2f\n", "ACKed MOVE_ABS round trip p99 (us)", b99, d99, b99 / d99);
        if (!input_only)
                bench_memwrite_print();
        printf("checks: every command accepted and ACKed with success%s%s\n",
               real ? "" : "; the bus wrote the device bytes the direct path wrote",
               input_only ? ""
                          : "; every MEMWRITE ACKed with success and its bytes read back from guest RAM");
        return 0;
}
#endif
