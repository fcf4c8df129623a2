/* SPDX-License-Identifier: MIT */
/* Worker emits reach controls in (priority, seq) order however the loop
 * batches them: a batch of mixed priorities, loop-thread events queued
 * during a batch, batches larger than the hand-off; and an embedder that
 * only polls the bus fd never misses a wakeup, also after a detach between
 * iterations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include <poll.h>
#include <pthread.h>

#include "bus_fixture.h"

TAD_OPS(vmhost_ops, VMSIG_SRC_VMHOST);

struct emitter {
        const struct vmsig_emit_sink *sink;
        const uint8_t *prio; /* NULL: the kind's default */
        int n;
        int gap_us; /* pause between emits */
        int failed;
};

static void diag(struct vmsig_event *ev, int i, const uint8_t *prio)
{
        struct vmsig_diag_body b = {.code = i};
        vmsig_event_init(ev, VMSIG_EV_DIAG, 0, 0);
        vmsig_event_set_body(ev, &b, sizeof(b));
        if (prio)
                ev->hdr.priority = prio[i];
}

static void *emit_thread(void *arg)
{
        struct emitter *e = arg;
        for (int i = 0; i < e->n; i++) {
                struct vmsig_event ev;
                diag(&ev, i, e->prio);
                if (e->sink->emit(e->sink, &ev) < 0)
                        e->failed++;
                if (e->gap_us)
                        usleep((useconds_t)e->gap_us);
        }
        return NULL;
}

static int32_t code_of(const struct vmsig_event *ev)
{
        int32_t c;
        memcpy(&c, ev->body, sizeof(c));
        return c;
}

struct setup {
        struct vmsig_bus *bus;
        struct vmsig_control *ctl;
        struct rec *rec;
        uint32_t ep;
};

static void setup_bus(struct setup *s, const struct vmsig_bus_limits *lim, uint64_t kinds)
{
        s->rec = calloc(1, sizeof(*s->rec));
        assert_non_null(s->rec);
        assert_int_equal(vmsig_bus_new(lim, &s->bus), 0);
        assert_int_equal(vmsig_bus_endpoint_add(s->bus, "vm", &s->ep), 0);
        assert_int_equal(vmsig_bus_attach(s->bus, s->ep, &vmhost_ops, NULL), 0);
        s->ctl = rec_control(s->bus, s->rec, "order", VMSIG_CAP_ALL);
        assert_non_null(s->ctl);
        assert_int_equal(vmsig_control_subscribe(s->ctl, 0, kinds), 0);
        pump(s->bus, 3);
        rec_reset(s->rec);
}

static void teardown_bus(struct setup *s)
{
        vmsig_bus_free(s->bus);
        rec_reset(s->rec);
        free(s->rec);
}

/* Emitted by a worker while the loop is away: one hand-off batch. */
static void emit_batch(struct setup *s, const uint8_t *prio, int n)
{
        struct emitter e = {.sink = tad_last->sink, .prio = prio, .n = n};
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, emit_thread, &e), 0);
        pthread_join(th, NULL);
        assert_int_equal(e.failed, 0);
}

static void test_mixed_priorities_in_one_batch(void **state)
{
        static const uint8_t prio[] = {200, 128, 200, 50, 128, 32, 200, 50, 128};
        const int n = (int)sizeof(prio);
        struct setup s;
        int last_prio = -1, last_code = -1;

        setup_bus(&s, NULL, VMSIG_KIND_BIT(VMSIG_EV_DIAG));
        emit_batch(&s, prio, n);
        pump(s.bus, 3);
        assert_int_equal(s.rec->n, n);
        /* lower value first; emit order within one priority */
        for (unsigned i = 0; i < s.rec->n; i++) {
                const struct vmsig_event *ev = &s.rec->ev[i];
                int p = ev->hdr.priority, c = code_of(ev);
                assert_int_equal(p, prio[c]);
                assert_true(p > last_prio || (p == last_prio && c > last_code));
                last_prio = p;
                last_code = c;
        }
        teardown_bus(&s);
}

/* A loop-thread event queued while a batch is delivered (the LEASE_GRANT a
 * control's callback causes) overtakes the rest of the batch when its
 * priority is lower, as if every event had been queued one by one. */
static void acquire_on_first(struct vmsig_control *ctl, const struct vmsig_event *ev, void *data)
{
        uint32_t *ep = data;
        if (ev->hdr.kind == VMSIG_EV_DIAG && code_of(ev) == 0)
                assert_int_equal(vmsig_control_lease_acquire(ctl, *ep, VMSIG_LEASE_INPUT, 9), 0);
}

static void test_loop_events_merge_into_batch(void **state)
{
        struct setup s;
        int grant, diag1;

        setup_bus(&s, NULL, VMSIG_KIND_BIT(VMSIG_EV_DIAG) | VMSIG_KIND_BIT(VMSIG_EV_LEASE_GRANT));
        s.rec->hook = acquire_on_first;
        s.rec->hook_data = &s.ep;
        emit_batch(&s, NULL, 6);
        pump(s.bus, 3);
        grant = rec_find(s.rec, VMSIG_EV_LEASE_GRANT, 0);
        assert_true(grant > 0);
        assert_int_equal(s.rec->ev[0].hdr.kind, VMSIG_EV_DIAG);
        assert_int_equal(code_of(&s.rec->ev[0]), 0);
        diag1 = rec_find(s.rec, VMSIG_EV_DIAG, 1);
        assert_true(diag1 > grant);
        /* and the DIAGs are all there, in order */
        int k = 0;
        for (unsigned i = 0; i < s.rec->n; i++)
                if (s.rec->ev[i].hdr.kind == VMSIG_EV_DIAG)
                        assert_int_equal(code_of(&s.rec->ev[i]), k++);
        assert_int_equal(k, 6);
        teardown_bus(&s);
}

/* Many more events than the hand-off holds, in several priorities, from
 * one worker that blocks while it is full: nothing lost, order kept within
 * each priority. */
static void test_more_than_the_handoff_holds(void **state)
{
        enum { N = 3000 };
        static uint8_t prio[N];
        struct vmsig_bus_limits lim = {.handoff_slots = 16};
        struct setup s;
        struct emitter e;
        pthread_t th;
        int last[256];

        for (int i = 0; i < N; i++)
                prio[i] = i % 7 == 0 ? VMSIG_PRIO_HIGH : VMSIG_PRIO_NORMAL;
        setup_bus(&s, &lim, VMSIG_KIND_BIT(VMSIG_EV_DIAG));
        e = (struct emitter){.sink = tad_last->sink, .prio = prio, .n = N};
        assert_int_equal(pthread_create(&th, NULL, emit_thread, &e), 0);
        for (int i = 0; i < 10000 && s.rec->total < N; i++)
                vmsig_bus_run_once(s.bus, 100);
        pthread_join(th, NULL);
        assert_int_equal(e.failed, 0);
        assert_int_equal(s.rec->total, N);
        for (int i = 0; i < 256; i++)
                last[i] = -1;
        for (unsigned i = 0; i < s.rec->n; i++) {
                const struct vmsig_event *ev = &s.rec->ev[i];
                assert_true(code_of(ev) > last[ev->hdr.priority]);
                last[ev->hdr.priority] = code_of(ev);
        }
        teardown_bus(&s);
}

/* An embedder that sleeps in poll() on the bus fd and runs one iteration
 * per readiness: every worker emit wakes it, paced or in bursts. */
static void test_polling_embedder_never_misses_a_wakeup(void **state)
{
        enum { N = 400 };
        struct setup s;
        struct emitter e;
        pthread_t th;
        int timeouts = 0;

        setup_bus(&s, NULL, VMSIG_KIND_BIT(VMSIG_EV_DIAG));
        e = (struct emitter){.sink = tad_last->sink, .n = N, .gap_us = 50};
        assert_int_equal(pthread_create(&th, NULL, emit_thread, &e), 0);
        while (s.rec->total < N) {
                struct pollfd p = {.fd = vmsig_bus_get_fd(s.bus), .events = POLLIN};
                int r = poll(&p, 1, 5000);
                if (r == 0) {
                        timeouts++; /* a lost wakeup: events wait, the fd says nothing */
                        break;
                }
                vmsig_bus_run_once(s.bus, 0);
        }
        pthread_join(th, NULL);
        assert_int_equal(timeouts, 0);
        assert_int_equal(e.failed, 0);
        assert_int_equal(s.rec->total, N);
        for (unsigned i = 0; i < s.rec->n; i++)
                assert_int_equal(code_of(&s.rec->ev[i]), (int32_t)i);
        teardown_bus(&s);
}

/* An input adapter that accepts commands and never answers: its detach
 * leaves the core owing ACKs, which makes the core drain the hand-off. */
static int silent_open(const struct vmsig_adapter_cfg *c, uint32_t e, void **r)
{
        static int inst;
        *r = &inst;
        return 0;
}
static int silent_attach(void *inst, const struct vmsig_emit_sink *sink, struct vmsig_fd_reg *reg, size_t cap,
                         size_t *n)
{
        *n = 0;
        return 0;
}
static void silent_ready(void *inst, uint64_t cookie, uint32_t events)
{
}
static int silent_submit(void *inst, const struct vmsig_event *ev, const void *p, size_t l)
{
        return VMSIG_SUBMIT_ACCEPTED;
}
static void silent_close(void *inst)
{
}
static const struct vmsig_adapter_ops silent_input_ops = {.name = "silent-input",
                                                          .seam = VMSIG_SRC_INPUT,
                                                          .open = silent_open,
                                                          .attach = silent_attach,
                                                          .on_readiness = silent_ready,
                                                          .submit = silent_submit,
                                                          .close = silent_close};

/* A detach between iterations drains the hand-off (to answer what the
 * adapter owed); an embedder that then sleeps in poll() on the bus fd is
 * still woken by the next worker emit. */
static void test_wakeup_after_a_detach_between_iterations(void **state)
{
        struct setup s;
        struct vmsig_event ev;
        struct vmsig_input_body b = {.x = 1, .y = 2};
        struct pollfd p;
        int r;

        setup_bus(&s, NULL, VMSIG_KIND_BIT(VMSIG_EV_DIAG));
        const struct vmsig_emit_sink *sink = tad_last->sink;
        assert_int_equal(vmsig_bus_attach(s.bus, s.ep, &silent_input_ops, NULL), 0);
        assert_int_equal(vmsig_control_lease_acquire(s.ctl, s.ep, VMSIG_LEASE_INPUT, 1), 0);
        pump(s.bus, 3);
        vmsig_event_init(&ev, VMSIG_EV_MOVE_ABS, s.ep, VMSIG_SRC_INPUT);
        vmsig_event_set_body(&ev, &b, sizeof(b));
        assert_int_equal(vmsig_control_send(s.ctl, &ev), 0);
        pump(s.bus, 3);
        rec_reset(s.rec);

        assert_int_equal(vmsig_bus_detach(s.bus, s.ep, VMSIG_SRC_INPUT), 0);
        struct emitter e = {.sink = sink, .n = 1};
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, emit_thread, &e), 0);
        pthread_join(th, NULL);
        assert_int_equal(e.failed, 0);
        p = (struct pollfd){.fd = vmsig_bus_get_fd(s.bus), .events = POLLIN};
        r = poll(&p, 1, 5000);
        assert_int_equal(r, 1); /* 0: the emit did not wake the bus fd */
        for (int i = 0; i < 100 && rec_find(s.rec, VMSIG_EV_DIAG, 0) < 0; i++)
                vmsig_bus_run_once(s.bus, 10);
        assert_true(rec_find(s.rec, VMSIG_EV_DIAG, 0) >= 0);
        teardown_bus(&s);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_mixed_priorities_in_one_batch),
            cmocka_unit_test(test_loop_events_merge_into_batch),
            cmocka_unit_test(test_more_than_the_handoff_holds),
            cmocka_unit_test(test_polling_embedder_never_misses_a_wakeup),
            cmocka_unit_test(test_wakeup_after_a_detach_between_iterations),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
