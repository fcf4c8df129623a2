/* SPDX-License-Identifier: MIT */
/* The core's ledger of accepted commands (src/core/pending.c) and the sink's
 * check_issuer: every accepted non-FF command gets exactly one ACT_ACK,
 * whatever the adapter does when it is detached.
 *  - an adapter that never answers: the core answers -ECONNABORTED;
 *  - one that answers from close(): its own answer, nothing more;
 *  - one whose worker answered just before the detach: that answer only;
 *  - the ledger is bounded: beyond it the core refuses with -ENOBUFS;
 *  - check_issuer follows the lease and the control's life. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>

#include "bus_fixture.h"

enum mode { M_SILENT, M_CLOSE_ANSWERS, M_WORKER };

struct pad {
        const struct vmsig_emit_sink *sink;
        struct vmsig_event held[64];
        unsigned nheld;
        int check; /* check_issuer result at the last submit */
};

static enum mode g_mode;
static struct pad *g_pad;

static int pad_open(const struct vmsig_adapter_cfg *cfg, uint32_t ep, void **ret)
{
        (void)cfg;
        (void)ep;
        g_pad = calloc(1, sizeof(*g_pad));
        *ret = g_pad;
        return g_pad ? 0 : -ENOMEM;
}

static int pad_attach(void *inst, const struct vmsig_emit_sink *sink, struct vmsig_fd_reg *reg, size_t cap,
                      size_t *ret_n)
{
        (void)reg;
        (void)cap;
        ((struct pad *)inst)->sink = sink;
        *ret_n = 0;
        return 0;
}

static void pad_ready(void *inst, uint64_t cookie, uint32_t events)
{
        (void)inst;
        (void)cookie;
        (void)events;
}

static void *answer_all(void *arg)
{
        struct pad *p = arg;

        for (unsigned i = 0; i < p->nheld; i++) {
                struct vmsig_event ack;
                vmsig_ack_init(&ack, &p->held[i], VMSIG_SRC_INPUT, 0, 0, "done by the worker");
                assert_int_equal(p->sink->emit(p->sink, &ack), 0);
        }
        p->nheld = 0;
        return NULL;
}

static int pad_submit(void *inst, const struct vmsig_event *ev, const void *payload, size_t len)
{
        struct pad *p = inst;
        (void)payload;
        (void)len;
        p->check = p->sink->check_issuer(p->sink, ev->hdr.peer, VMSIG_LEASE_INPUT);
        if (p->nheld < 64)
                p->held[p->nheld++] = *ev;
        return VMSIG_SUBMIT_ACCEPTED;
}

static void pad_close(void *inst)
{
        struct pad *p = inst;

        if (g_mode == M_CLOSE_ANSWERS)
                for (unsigned i = 0; i < p->nheld; i++) {
                        struct vmsig_event ack;
                        vmsig_ack_init(&ack, &p->held[i], VMSIG_SRC_INPUT, -ECANCELED, 0, "not applied");
                        assert_int_equal(p->sink->emit(p->sink, &ack), 0);
                }
        free(p);
        g_pad = NULL;
}

static const struct vmsig_adapter_ops pad_ops = {.name = "pad",
                                                 .seam = VMSIG_SRC_INPUT,
                                                 .open = pad_open,
                                                 .attach = pad_attach,
                                                 .on_readiness = pad_ready,
                                                 .submit = pad_submit,
                                                 .close = pad_close};

struct fix {
        struct vmsig_bus *bus;
        struct vmsig_control *ctl;
        struct rec rec;
        uint32_t ep;
};

static struct fix F;

static int setup(void **state)
{
        (void)state;
        memset(&F, 0, sizeof(F));
        if (vmsig_bus_new(NULL, &F.bus) < 0 || vmsig_bus_endpoint_add(F.bus, "vm", &F.ep) < 0 ||
            vmsig_bus_attach(F.bus, F.ep, &pad_ops, NULL) < 0)
                return -1;
        F.ctl = rec_control(F.bus, &F.rec, "ctl", VMSIG_CAP_ALL);
        if (!F.ctl || vmsig_control_lease_acquire(F.ctl, F.ep, VMSIG_LEASE_INPUT, 1) < 0)
                return -1;
        pump(F.bus, 3);
        return 0;
}

static int teardown(void **state)
{
        (void)state;
        F.bus = vmsig_bus_free(F.bus);
        return 0;
}

static void send_moves(unsigned n, uint64_t first_corr)
{
        for (unsigned i = 0; i < n; i++) {
                struct vmsig_event ev;
                struct vmsig_input_body b = {.x = 1, .y = 2};
                vmsig_event_init(&ev, VMSIG_EV_MOVE_ABS, F.ep, VMSIG_SRC_INPUT);
                vmsig_event_set_body(&ev, &b, sizeof(b));
                ev.hdr.corr = first_corr + i;
                assert_int_equal(vmsig_control_send(F.ctl, &ev), 0);
        }
        pump(F.bus, 3);
}

/* ACKs seen per corr in [first, first + n), and their results. */
static void expect_once(uint64_t first, unsigned n, int32_t result, uint8_t source)
{
        for (unsigned i = 0; i < n; i++) {
                unsigned seen = 0;
                for (unsigned k = 0; k < F.rec.n; k++) {
                        const struct vmsig_event *ev = &F.rec.ev[k];
                        struct vmsig_ack_body a;
                        if (ev->hdr.kind != VMSIG_EV_ACT_ACK || ev->hdr.corr != first + i)
                                continue;
                        memcpy(&a, ev->body, sizeof(a));
                        assert_int_equal(a.result, result);
                        assert_int_equal(a.cmd_kind, VMSIG_EV_MOVE_ABS);
                        assert_int_equal(ev->hdr.source, source);
                        if (result == -ECONNABORTED)
                                assert_non_null(strstr(a.msg, "outcome unknown"));
                        seen++;
                }
                assert_int_equal(seen, 1);
        }
}

static void test_silent_adapter_is_answered_by_the_core(void **state)
{
        (void)state;
        g_mode = M_SILENT;
        send_moves(5, 100);
        assert_int_equal(g_pad->nheld, 5);
        assert_int_equal(vmsig_bus_detach(F.bus, F.ep, VMSIG_SRC_INPUT), 0);
        pump(F.bus, 5);
        expect_once(100, 5, -ECONNABORTED, VMSIG_SRC_CORE);
}

static void test_adapter_answering_in_close_is_not_answered_twice(void **state)
{
        (void)state;
        g_mode = M_CLOSE_ANSWERS;
        send_moves(5, 200);
        assert_int_equal(vmsig_bus_endpoint_remove(F.bus, F.ep), 0);
        pump(F.bus, 5);
        expect_once(200, 5, -ECANCELED, VMSIG_SRC_INPUT);
}

static void test_worker_answer_before_detach_is_the_only_one(void **state)
{
        (void)state;
        pthread_t t;
        g_mode = M_WORKER;
        send_moves(5, 300);
        /* answered from another thread (through the hand-off), not yet
         * dispatched when the adapter goes */
        assert_int_equal(pthread_create(&t, NULL, answer_all, g_pad), 0);
        pthread_join(t, NULL);
        assert_int_equal(vmsig_bus_detach(F.bus, F.ep, VMSIG_SRC_INPUT), 0);
        pump(F.bus, 5);
        expect_once(300, 5, 0, VMSIG_SRC_INPUT);
}

static void test_ledger_is_bounded(void **state)
{
        (void)state;
        g_mode = M_SILENT;
        /* 8192 accepted and never answered fill the ledger ... */
        rec_reset(&F.rec); /* the lease's ACK */
        for (unsigned done = 0; done < 8192; done += 512) {
                send_moves(512, 1000 + done);
                assert_int_equal(rec_find(&F.rec, VMSIG_EV_ACT_ACK, 0), -1);
        }
        /* ... so the next one is refused by the core, not lost */
        struct vmsig_event ev;
        struct vmsig_input_body b = {.x = 1};
        vmsig_event_init(&ev, VMSIG_EV_MOVE_ABS, F.ep, VMSIG_SRC_INPUT);
        vmsig_event_set_body(&ev, &b, sizeof(b));
        ev.hdr.corr = 99999;
        rec_reset(&F.rec);
        assert_int_equal(vmsig_control_send(F.ctl, &ev), 0);
        pump(F.bus, 3);
        int i = rec_find(&F.rec, VMSIG_EV_ACT_ACK, 0);
        assert_true(i >= 0);
        struct vmsig_ack_body a;
        memcpy(&a, F.rec.ev[i].body, sizeof(a));
        assert_int_equal(F.rec.ev[i].hdr.corr, 99999);
        assert_int_equal(a.result, -ENOBUFS);
}

static void test_check_issuer_follows_lease_and_control(void **state)
{
        (void)state;
        g_mode = M_SILENT;
        send_moves(1, 400);
        assert_int_equal(g_pad->check, 0);
        const struct vmsig_emit_sink *sink = g_pad->sink;
        uint32_t id = g_pad->held[0].hdr.peer;
        assert_int_equal(sink->check_issuer(sink, id, -1), 0);
        assert_int_equal(vmsig_control_lease_release(F.ctl, F.ep, VMSIG_LEASE_INPUT, 2), 0);
        pump(F.bus, 3);
        assert_int_equal(sink->check_issuer(sink, id, VMSIG_LEASE_INPUT), -EPERM);
        assert_int_equal(sink->check_issuer(sink, id, -1), 0);
        F.ctl = vmsig_control_close(F.ctl);
        pump(F.bus, 3);
        assert_int_equal(sink->check_issuer(sink, id, -1), -ESRCH);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_silent_adapter_is_answered_by_the_core, setup, teardown),
            cmocka_unit_test_setup_teardown(test_adapter_answering_in_close_is_not_answered_twice, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_worker_answer_before_detach_is_the_only_one, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_ledger_is_bounded, setup, teardown),
            cmocka_unit_test_setup_teardown(test_check_issuer_follows_lease_and_control, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
