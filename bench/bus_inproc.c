/* SPDX-License-Identifier: MIT */
/* bus_inproc: events/s emitted by a worker thread -> delivered to 1 and to 8
 * in-process controls, and emit-to-callback latency, each as a ratio to a
 * baseline measured in the same run: the bare hand-off (a mutex-guarded ring
 * + eventfd wakeup + memcpy of the same event size, no bus). Absolute
 * numbers vary with the machine; the ratios are the result.
 *
 * Throughput runs in ROUNDS rounds, each running the baseline and the bus
 * back to back, so a load change on a shared machine hits both alike; the
 * figure is the median of the per-round ratios, with their range. A second
 * reference, the baseline plus one CLOCK_MONOTONIC read per event, shows
 * what the bus's one mandatory extra does cost (every event carries ts_ns,
 * its emit time; the producer reads the clock).
 *
 * Checked before any figure is printed: every control (and the baseline's
 * consumer) received every event exactly once and in order, every emit
 * succeeded, the bus dropped nothing and disconnected no control, no run
 * stalled (10 s without progress). Otherwise "INVALID: <reason>", exit 1.
 *
 *   bus_inproc [EVENTS]   per round; default 1000000
 *   bus_inproc --smoke    the checks on a few thousand events, no figures */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <vmsig/adapter.h>
#include <vmsig/bus.h>
#include "bench_check.h"

#define EVENT_BODY 20             /* an input-sized event: header + 20 bytes */
#define STALL_NS   10000000000ull /* no progress this long: the run is broken */

static uint64_t now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* CPU time of the whole process: both threads of a run, whatever else the
 * machine runs. Steadier than wall time on a shared machine. */
static uint64_t cpu_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
        return x < y ? -1 : x > y;
}

/* ---------------- baseline: bare hand-off ---------------- */

#define RING 4096
struct bare {
        pthread_mutex_t mu;
        pthread_cond_t not_full;
        struct vmsig_event ring[RING];
        unsigned head, count;
        int efd;
        long n;
        bool stamp; /* one clock read per event, as the bus's emit does */
        long misordered;
        volatile uint64_t sink;
};

static void *bare_producer(void *arg)
{
        struct bare *b = arg;
        struct vmsig_event ev;

        memset(&ev, 0, sizeof(ev));
        ev.hdr.body_len = EVENT_BODY;
        for (long i = 0; i < b->n; i++) {
                ev.hdr.corr = (uint64_t)i;
                if (b->stamp)
                        ev.hdr.ts_ns = now_ns();
                pthread_mutex_lock(&b->mu);
                while (b->count == RING)
                        pthread_cond_wait(&b->not_full, &b->mu);
                memcpy(&b->ring[(b->head + b->count) % RING], &ev, vmsig_event_size(&ev));
                int was_empty = b->count++ == 0;
                pthread_mutex_unlock(&b->mu);
                if (was_empty) {
                        uint64_t one = 1;
                        (void)!write(b->efd, &one, sizeof(one));
                }
        }
        return NULL;
}

static double bare_throughput(long n, bool stamp, double *ret_cpu)
{
        struct bare *b = calloc(1, sizeof(*b));
        pthread_t th;
        struct vmsig_event out;
        long got = 0;
        uint64_t t0;

        pthread_mutex_init(&b->mu, NULL);
        pthread_cond_init(&b->not_full, NULL);
        b->efd = eventfd(0, EFD_CLOEXEC);
        b->n = n;
        b->stamp = stamp;
        uint64_t c0 = cpu_ns();
        t0 = now_ns();
        pthread_create(&th, NULL, bare_producer, b);
        while (got < n) {
                uint64_t v;
                (void)!read(b->efd, &v, sizeof(v));
                pthread_mutex_lock(&b->mu);
                while (b->count) {
                        memcpy(&out, &b->ring[b->head], vmsig_event_size(&b->ring[b->head]));
                        b->head = (b->head + 1) % RING;
                        b->count--;
                        b->sink += out.hdr.corr; /* the "callback" */
                        if (out.hdr.corr != (uint64_t)got)
                                b->misordered++;
                        got++;
                }
                pthread_cond_broadcast(&b->not_full);
                pthread_mutex_unlock(&b->mu);
        }
        double secs = (double)(now_ns() - t0) / 1e9;
        pthread_join(th, NULL);
        *ret_cpu = (double)(cpu_ns() - c0) / (double)n;
        if (b->misordered)
                invalid("baseline consumer saw %ld events out of order", b->misordered);
        close(b->efd);
        free(b);
        return (double)n / secs;
}

struct bare_lat {
        int efd;
        int n;
        atomic_int consumed;
        uint64_t *lat;
        struct vmsig_event slot;
        pthread_mutex_t mu;
};

static void *bare_lat_consumer(void *arg)
{
        struct bare_lat *b = arg;
        struct vmsig_event out;
        for (int i = 0; i < b->n; i++) {
                uint64_t v;
                (void)!read(b->efd, &v, sizeof(v));
                pthread_mutex_lock(&b->mu);
                memcpy(&out, &b->slot, vmsig_event_size(&b->slot));
                pthread_mutex_unlock(&b->mu);
                b->lat[i] = now_ns() - out.hdr.ts_ns;
                atomic_store(&b->consumed, i + 1);
        }
        return NULL;
}

static void bare_latency(int n, uint64_t *ret_p50, uint64_t *ret_p99)
{
        struct bare_lat b = {.n = n};
        pthread_t th;

        b.efd = eventfd(0, EFD_CLOEXEC);
        b.lat = calloc((size_t)n, sizeof(uint64_t));
        pthread_mutex_init(&b.mu, NULL);
        b.slot.hdr.body_len = EVENT_BODY;
        pthread_create(&th, NULL, bare_lat_consumer, &b);
        for (int i = 0; i < n; i++) {
                uint64_t one = 1;
                usleep(50); /* let the consumer go idle: measure a wakeup */
                pthread_mutex_lock(&b.mu);
                b.slot.hdr.ts_ns = now_ns();
                pthread_mutex_unlock(&b.mu);
                (void)!write(b.efd, &one, sizeof(one));
                while (atomic_load(&b.consumed) <= i)
                        ;
        }
        pthread_join(th, NULL);
        if (atomic_load(&b.consumed) != n)
                invalid("baseline latency: %d of %d wakeups consumed", atomic_load(&b.consumed), n);
        qsort(b.lat, (size_t)n, sizeof(uint64_t), cmp_u64);
        *ret_p50 = b.lat[n / 2];
        *ret_p99 = b.lat[(n * 99) / 100];
        free(b.lat);
        close(b.efd);
}

/* ---------------- the bus ---------------- */

struct src {
        const struct vmsig_emit_sink *sink;
        int efd;
};
static struct src *the_src;

static int src_open(const struct vmsig_adapter_cfg *cfg, uint32_t ep, void **ret)
{
        the_src = calloc(1, sizeof(*the_src));
        *ret = the_src;
        return the_src ? 0 : -ENOMEM;
}
static int src_attach(void *inst, const struct vmsig_emit_sink *sink, struct vmsig_fd_reg *reg, size_t cap,
                      size_t *n)
{
        ((struct src *)inst)->sink = sink;
        *n = 0;
        return 0;
}
static void src_ready(void *inst, uint64_t cookie, uint32_t events)
{
}
static int src_submit(void *inst, const struct vmsig_event *ev, const void *p, size_t l)
{
        return VMSIG_SUBMIT_NOT_MINE;
}
static void src_close(void *inst)
{
        free(inst);
}
static const struct vmsig_adapter_ops src_ops = {.name = "bench-source",
                                                 .seam = VMSIG_SRC_VMHOST,
                                                 .open = src_open,
                                                 .attach = src_attach,
                                                 .on_readiness = src_ready,
                                                 .submit = src_submit,
                                                 .close = src_close};

struct counter {
        long got;
        long misordered; /* corr != number of events delivered before it */
        volatile uint64_t sink;
        uint64_t *lat;
        long nlat;
};

static int count_deliver(struct vmsig_control *ctl, const struct vmsig_event *ev, int *fd, void *ud)
{
        struct counter *c = ud;
        if (c->lat && c->got < c->nlat)
                c->lat[c->got] = now_ns() - ev->hdr.ts_ns;
        c->sink += ev->hdr.corr;
        if (ev->hdr.corr != (uint64_t)c->got)
                c->misordered++;
        c->got++;
        return 0;
}

struct producer {
        long n;
        int paced; /* latency mode: one at a time */
        atomic_long *progress;
        long emit_errors;
        atomic_bool abort; /* the consumer gave up: stop waiting */
};

static void *bus_producer(void *arg)
{
        struct producer *p = arg;
        struct vmsig_event ev;
        struct vmsig_diag_body body;

        memset(&body, 0, sizeof(body));
        vmsig_event_init(&ev, VMSIG_EV_DIAG, 0, 0);
        vmsig_event_set_body(&ev, &body, EVENT_BODY);
        for (long i = 0; i < p->n; i++) {
                ev.hdr.corr = (uint64_t)i;
                if (p->paced) {
                        usleep(50);
                        ev.hdr.ts_ns = now_ns();
                }
                if (the_src->sink->emit(the_src->sink, &ev) < 0)
                        p->emit_errors++;
                if (p->paced)
                        while (atomic_load(p->progress) <= i && !atomic_load(&p->abort))
                                ;
        }
        return NULL;
}

static struct vmsig_bus *bus_setup(int ncontrols, struct counter *cs)
{
        struct vmsig_bus *bus;
        uint32_t ep;

        vmsig_bus_new(NULL, &bus);
        vmsig_bus_endpoint_add(bus, "bench", &ep);
        vmsig_bus_attach(bus, ep, &src_ops, NULL);
        for (int i = 0; i < ncontrols; i++) {
                struct vmsig_control *c;
                struct vmsig_control_info info = {.name = "bench", .caps = VMSIG_CAP_ALL};
                vmsig_control_new(bus, &info, count_deliver, NULL, &cs[i], &c);
                vmsig_control_subscribe(c, 0, VMSIG_KIND_BIT(VMSIG_EV_DIAG));
        }
        vmsig_bus_run_once(bus, 0);
        for (int i = 0; i < ncontrols; i++)
                cs[i].got = cs[i].misordered = 0;
        return bus;
}

static long min_got(const struct counter *cs, int n)
{
        long m = cs[0].got;
        for (int i = 1; i < n; i++)
                if (cs[i].got < m)
                        m = cs[i].got;
        return m;
}

/* Runs the loop until every control has `want` events; false if it stalled. */
static bool run_until(struct vmsig_bus *bus, const struct counter *cs, int n, long want)
{
        long last = -1;
        uint64_t t_progress = now_ns();
        while (min_got(cs, n) < want) {
                vmsig_bus_run_once(bus, 100);
                long m = min_got(cs, n);
                if (m != last) {
                        last = m;
                        t_progress = now_ns();
                } else if (now_ns() - t_progress > STALL_NS) {
                        return false;
                }
        }
        return true;
}

/* What every run must satisfy; where names the run. */
static void check_run(struct vmsig_bus *bus, const struct counter *cs, int n, long want, bool finished,
                      const struct producer *p, const char *where)
{
        struct vmsig_bus_stats st;
        vmsig_bus_get_stats(bus, &st);
        if (!finished)
                invalid("%s: stalled with %ld of %ld events delivered", where, min_got(cs, n), want);
        for (int i = 0; i < n; i++) {
                if (cs[i].got != want)
                        invalid("%s: control %d got %ld of %ld events", where, i, cs[i].got, want);
                if (cs[i].misordered)
                        invalid("%s: control %d got %ld events out of order", where, i, cs[i].misordered);
        }
        if (p->emit_errors)
                invalid("%s: %ld emits failed", where, p->emit_errors);
        if (st.dropped || st.disconnects)
                invalid("%s: the bus dropped %llu events and disconnected %llu controls", where,
                        (unsigned long long)st.dropped, (unsigned long long)st.disconnects);
}

static double bus_throughput(int ncontrols, long n, long *ret_heap_growth, double *ret_cpu)
{
        struct counter cs[8];
        struct producer p = {.n = n};
        pthread_t th;
        uint64_t t0;

        memset(cs, 0, sizeof(cs));
        struct vmsig_bus *bus = bus_setup(ncontrols, cs);
        /* warm the pools, then check steady state allocates nothing */
        char where[64];
        snprintf(where, sizeof(where), "%d control(s), warm-up", ncontrols);
        p.n = n < 50000 ? n : 50000;
        pthread_create(&th, NULL, bus_producer, &p);
        bool ok = run_until(bus, cs, ncontrols, p.n);
        atomic_store(&p.abort, true);
        pthread_join(th, NULL);
        check_run(bus, cs, ncontrols, p.n, ok, &p, where);
        for (int i = 0; i < ncontrols; i++)
                cs[i].got = 0;
        struct mallinfo2 m0 = mallinfo2();

        p.n = n;
        atomic_store(&p.abort, false);
        uint64_t c0 = cpu_ns();
        t0 = now_ns();
        pthread_create(&th, NULL, bus_producer, &p);
        ok = run_until(bus, cs, ncontrols, n);
        double secs = (double)(now_ns() - t0) / 1e9;
        pthread_join(th, NULL);
        *ret_cpu = (double)(cpu_ns() - c0) / (double)n;
        struct mallinfo2 m1 = mallinfo2();
        snprintf(where, sizeof(where), "%d control(s)", ncontrols);
        check_run(bus, cs, ncontrols, n, ok, &p, where);
        *ret_heap_growth = (long)m1.uordblks - (long)m0.uordblks;
        vmsig_bus_free(bus);
        return (double)n / secs;
}

static atomic_long lat_progress;

static int lat_deliver(struct vmsig_control *ctl, const struct vmsig_event *ev, int *fd, void *ud)
{
        int r = count_deliver(ctl, ev, fd, ud);
        atomic_store(&lat_progress, ((struct counter *)ud)->got);
        return r;
}

static void bus_latency(int n, uint64_t *ret_p50, uint64_t *ret_p99)
{
        struct vmsig_bus *bus;
        struct vmsig_control *c;
        struct vmsig_control_info info = {.name = "lat", .caps = VMSIG_CAP_ALL};
        struct counter cnt = {0};
        struct producer p = {.n = n, .paced = 1, .progress = &lat_progress};
        pthread_t th;
        uint32_t ep;

        cnt.lat = calloc((size_t)n, sizeof(uint64_t));
        cnt.nlat = n;
        vmsig_bus_new(NULL, &bus);
        vmsig_bus_endpoint_add(bus, "bench", &ep);
        vmsig_bus_attach(bus, ep, &src_ops, NULL);
        vmsig_control_new(bus, &info, lat_deliver, NULL, &cnt, &c);
        vmsig_control_subscribe(c, 0, VMSIG_KIND_BIT(VMSIG_EV_DIAG));
        vmsig_bus_run_once(bus, 0);
        cnt.got = 0;
        cnt.misordered = 0;
        atomic_store(&lat_progress, 0);
        pthread_create(&th, NULL, bus_producer, &p);
        bool ok = run_until(bus, &cnt, 1, n);
        atomic_store(&p.abort, true);
        pthread_join(th, NULL);
        check_run(bus, &cnt, 1, n, ok, &p, "latency");
        qsort(cnt.lat, (size_t)n, sizeof(uint64_t), cmp_u64);
        *ret_p50 = cnt.lat[n / 2];
        *ret_p99 = cnt.lat[(n * 99) / 100];
        free(cnt.lat);
        vmsig_bus_free(bus);
}

#define ROUNDS 5

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;
        return x < y ? -1 : x > y;
}

/* Median and range of v[0..ROUNDS), sorted in place. */
struct spread {
        double med, lo, hi;
};
static struct spread spread_of(double *v)
{
        qsort(v, ROUNDS, sizeof(double), cmp_double);
        return (struct spread){v[ROUNDS / 2], v[0], v[ROUNDS - 1]};
}

int main(int argc, char **argv)
{
        bool smoke = argc > 1 && !strcmp(argv[1], "--smoke");
        long n = smoke ? 20000 : argc > 1 ? atol(argv[1]) : 1000000;
        int nlat = smoke ? 200 : 5000;
        long growth1 = 0, growth8 = 0;
        double base[ROUNDS], stamped[ROUNDS], one[ROUNDS], eight[ROUNDS];
        double r_one[ROUNDS], r_eight[ROUNDS], r_one_st[ROUNDS];
        double cbase[ROUNDS], cstamped[ROUNDS], cone[ROUNDS], ceight[ROUNDS]; /* CPU ns per event */
        double rc_one[ROUNDS], rc_eight[ROUNDS];

        if (n < 1) {
                fprintf(stderr, "bus_inproc: '%s' is not an event count (or --smoke)\n", argv[1]);
                return 2;
        }
        printf("bus_inproc%s: %d rounds of %ld events of %d bytes (header + %d-byte body), worker thread -> "
               "loop thread\n",
               smoke ? " --smoke (checks only, no figures)" : "", ROUNDS, n,
               (int)sizeof(struct vmsig_event_hdr) + EVENT_BODY, EVENT_BODY);
        for (int r = 0; r < ROUNDS; r++) {
                long g1, g8;
                base[r] = bare_throughput(n, false, &cbase[r]);
                stamped[r] = bare_throughput(n, true, &cstamped[r]);
                one[r] = bus_throughput(1, n, &g1, &cone[r]);
                eight[r] = bus_throughput(8, n, &g8, &ceight[r]);
                if (g1 > growth1)
                        growth1 = g1;
                if (g8 > growth8)
                        growth8 = g8;
                r_one[r] = one[r] / base[r];
                r_eight[r] = eight[r] / base[r];
                r_one_st[r] = one[r] / stamped[r];
                rc_one[r] = cone[r] / cbase[r];
                rc_eight[r] = ceight[r] / cbase[r];
        }
        uint64_t bp50, bp99, p50, p99;
        bare_latency(nlat, &bp50, &bp99);
        bus_latency(nlat, &p50, &p99);
        if (bench_report_invalid())
                return 1;
        if (smoke) {
                printf("  smoke: valid -- 1 and 8 controls and the baseline got all %ld events once and in "
                       "order in each of %d rounds, "
                       "%d paced events delivered, no emit failed, nothing dropped or disconnected\n",
                       n, ROUNDS, nlat);
                return 0;
        }
        struct spread sb = spread_of(base), ss = spread_of(stamped), s1 = spread_of(one),
                      s8 = spread_of(eight);
        struct spread q1 = spread_of(r_one), q8 = spread_of(r_eight), q1s = spread_of(r_one_st);
        printf("  throughput, median of %d rounds (range):\n", ROUNDS);
        printf("  baseline bare hand-off (mutex ring + eventfd + memcpy): %10.0f events/s (%.0f-%.0f)\n",
               sb.med, sb.lo, sb.hi);
        printf("  baseline + clock read per event (the bus stamps ts_ns): %10.0f events/s (%.0f-%.0f)\n",
               ss.med, ss.lo, ss.hi);
        printf("  bus -> 1 control:   %10.0f events/s  = %.2fx baseline (rounds %.2f-%.2f; goal >= 0.80), "
               "%.2fx the stamped one (%.2f-%.2f)\n",
               s1.med, q1.med, q1.lo, q1.hi, q1s.med, q1s.lo, q1s.hi);
        printf(
            "  bus -> 8 controls:  %10.0f events/s  = %.2fx baseline (rounds %.2f-%.2f; %.0f deliveries/s)\n",
            s8.med, q8.med, q8.lo, q8.hi, s8.med * 8);
        struct spread cb = spread_of(cbase), cs = spread_of(cstamped), c1 = spread_of(cone),
                      c8 = spread_of(ceight), qc1 = spread_of(rc_one), qc8 = spread_of(rc_eight);
        printf(
            "  CPU per event (both threads; steadier than wall time on a shared machine), median (range):\n");
        printf("    baseline %.0f ns (%.0f-%.0f), with clock read %.0f ns (%.0f-%.0f)\n", cb.med, cb.lo,
               cb.hi, cs.med, cs.lo, cs.hi);
        printf("    bus -> 1 control %.0f ns (%.0f-%.0f) = %.2fx baseline (rounds %.2f-%.2f)\n", c1.med,
               c1.lo, c1.hi, qc1.med, qc1.lo, qc1.hi);
        printf("    bus -> 8 controls %.0f ns (%.0f-%.0f) = %.2fx baseline (rounds %.2f-%.2f)\n", c8.med,
               c8.lo, c8.hi, qc8.med, qc8.lo, qc8.hi);
        printf("  heap growth in steady state, largest of %d rounds: %ld bytes (1 control), %ld bytes (8 "
               "controls)\n",
               ROUNDS, growth1, growth8);
        printf("  emit->callback latency over %d idle wakeups:\n", nlat);
        printf("    baseline eventfd wakeup: p50 %6.1f us  p99 %6.1f us\n", bp50 / 1e3, bp99 / 1e3);
        printf("    bus:                     p50 %6.1f us  p99 %6.1f us  = p50 %.2fx, p99 %.2fx baseline\n",
               p50 / 1e3, p99 / 1e3, (double)p50 / (double)bp50, (double)p99 / (double)bp99);
        printf(
            "  checks: every control got every event once and in order; no emit failed; nothing dropped\n");
        return 0;
}
