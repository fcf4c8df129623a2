/* SPDX-License-Identifier: MIT */
/* Four worker threads emit at once through one adapter's sink: every event
 * arrives, and each thread's events arrive in the order it emitted them.
 * ctest also runs this binary under helgrind (VMSIG_TEST_EVENTS keeps that
 * run short). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include <pthread.h>

#include "bus_fixture.h"

TAD_OPS(vmhost_ops, VMSIG_SRC_VMHOST);

#define THREADS 4

struct worker {
        struct tad *t;
        int id;
        int n;
        int failed;
};

static void *emitter(void *arg)
{
        struct worker *w = arg;
        for (int i = 0; i < w->n; i++) {
                struct vmsig_event ev;
                struct vmsig_diag_body b = {.code = w->id, .reserved = (uint32_t)i};
                vmsig_event_init(&ev, VMSIG_EV_DIAG, 0, 0);
                vmsig_event_set_body(&ev, &b, sizeof(b));
                if (w->t->sink->emit(w->t->sink, &ev) < 0)
                        w->failed++;
        }
        return NULL;
}

static unsigned next_expected[THREADS];
static unsigned out_of_order, received;

static int check_deliver(struct vmsig_control *ctl, const struct vmsig_event *ev, int *fd, void *ud)
{
        struct vmsig_diag_body b;
        memcpy(&b, ev->body, sizeof(b));
        if (b.code < 0 || b.code >= THREADS || b.reserved != next_expected[b.code])
                out_of_order++;
        else
                next_expected[b.code]++;
        received++;
        return 0;
}

static void test_emit_from_four_threads(void **state)
{
        struct vmsig_bus *bus;
        struct vmsig_control *c;
        struct vmsig_control_info info = {.name = "mt", .caps = VMSIG_CAP_ALL};
        struct worker w[THREADS];
        pthread_t th[THREADS];
        uint32_t ep;
        const char *env = getenv("VMSIG_TEST_EVENTS");
        int per_thread = (env ? atoi(env) : 100000) / THREADS;

        assert_int_equal(vmsig_bus_new(NULL, &bus), 0);
        assert_int_equal(vmsig_bus_endpoint_add(bus, "vm", &ep), 0);
        assert_int_equal(vmsig_bus_attach(bus, ep, &vmhost_ops, NULL), 0);
        assert_int_equal(vmsig_control_new(bus, &info, check_deliver, NULL, NULL, &c), 0);
        assert_int_equal(vmsig_control_subscribe(c, 0, VMSIG_KIND_BIT(VMSIG_EV_DIAG)), 0);
        for (int i = 0; i < THREADS; i++) {
                w[i] = (struct worker){.t = tad_last, .id = i, .n = per_thread};
                assert_int_equal(pthread_create(&th[i], NULL, emitter, &w[i]), 0);
        }
        while (received < (unsigned)(per_thread * THREADS))
                vmsig_bus_run_once(bus, 100);
        for (int i = 0; i < THREADS; i++) {
                pthread_join(th[i], NULL);
                assert_int_equal(w[i].failed, 0);
                assert_int_equal(next_expected[i], per_thread);
        }
        assert_int_equal(out_of_order, 0);
        vmsig_bus_free(bus);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_emit_from_four_threads),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
