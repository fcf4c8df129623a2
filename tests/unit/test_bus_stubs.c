/* SPDX-License-Identifier: MIT */
/* The stub trio attached to a real bus: self-healing memctx bootstrap,
 * MEMWRITE under lease, power commands and STATUS, input FF vs ACK. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include <time.h>

#include "adapters/stub_internal.h"
#include "bus_fixture.h"

static int wait_for(struct vmsig_bus *bus, struct rec *r, uint16_t kind, unsigned from, int ms)
{
        for (int i = 0; i < ms / 10; i++) {
                int k = rec_find(r, kind, from);
                if (k >= 0)
                        return k;
                vmsig_bus_run_once(bus, 10);
        }
        return rec_find(r, kind, from);
}

static int wait_ack(struct vmsig_bus *bus, struct rec *r, uint64_t corr, struct vmsig_ack_body *ret)
{
        for (int i = 0; i < 500; i++) {
                for (unsigned k = 0; k < r->n; k++)
                        if (r->ev[k].hdr.kind == VMSIG_EV_ACT_ACK && r->ev[k].hdr.corr == corr) {
                                memcpy(ret, r->ev[k].body, sizeof(*ret));
                                return 0;
                        }
                vmsig_bus_run_once(bus, 10);
        }
        return -ETIMEDOUT;
}

static void test_fail_boots_retries_with_one_diag(void **state)
{
        struct vmsig_bus *bus;
        struct rec r;
        uint32_t ep;
        struct vmsig_adapter_cfg cfg = {.vm_name = "stub", .options = "fail_boots=3,retry_ms=20"};
        struct timespec t0, t1;

        assert_int_equal(vmsig_bus_new(NULL, &bus), 0);
        struct vmsig_control *c = rec_control(bus, &r, "watcher", VMSIG_CAP_ALL);
        r.keep_fds = true;
        assert_int_equal(vmsig_control_subscribe(c, 0, VMSIG_KINDS_ALL_UP), 0);
        assert_int_equal(vmsig_bus_endpoint_add(bus, "stub", &ep), 0);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        assert_int_equal(vmsig_bus_attach(bus, ep, vmsig_memctx_stub_ops(), &cfg), 0);
        int m = wait_for(bus, &r, VMSIG_EV_MEMCTX, 0, 5000);
        assert_true(m >= 0);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        /* Three failures mean three backoff waits of 20, 40 and 80 ms before
         * the 4th attempt succeeds: a lower bound the timers guarantee. */
        long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
        assert_true(ms >= 140);
        pump(bus, 3);
        unsigned diags = 0;
        for (unsigned i = 0; i < r.n; i++)
                diags += r.ev[i].hdr.kind == VMSIG_EV_DIAG;
        assert_int_equal(diags, 1); /* first failure only; no repeated errors */
        assert_true(rec_find(&r, VMSIG_EV_DIAG, 0) < m);

        struct vmsig_memctx ctx;
        assert_int_equal(vmsig_memctx_from_event(&r.ev[m], r.fd[m], &ctx), 0);
        assert_int_equal(ctx.epoch, 1);
        assert_int_equal(ctx.kernel_root, VMSIG_STUB_KERNEL_ROOT);
        assert_true(ctx.fd >= 0);
        /* The banner, read through the layout: GPA -> file offset. */
        uint64_t off, avail;
        char banner[sizeof(VMSIG_STUB_BANNER)] = {0};
        assert_int_equal(vmsig_memctx_gpa_to_offset(&ctx, VMSIG_STUB_BANNER_GPA, &off, &avail), 0);
        assert_int_equal(pread(ctx.fd, banner, sizeof(banner) - 1, (off_t)off), (ssize_t)sizeof(banner) - 1);
        assert_string_equal(banner, VMSIG_STUB_BANNER);
        rec_reset(&r);
        vmsig_bus_free(bus);
}

static void test_stub_trio_commands(void **state)
{
        struct vmsig_bus *bus;
        struct rec r;
        uint32_t ep;
        struct vmsig_ack_body a;

        assert_int_equal(vmsig_bus_new(NULL, &bus), 0);
        struct vmsig_control *c = rec_control(bus, &r, "driver", VMSIG_CAP_ALL);
        assert_int_equal(vmsig_bus_endpoint_add(bus, "stub", &ep), 0);
        assert_int_equal(vmsig_control_subscribe(c, ep, VMSIG_KINDS_ALL_UP), 0);
        assert_int_equal(vmsig_bus_attach(bus, ep, vmsig_memctx_stub_ops(), NULL), 0);
        assert_int_equal(vmsig_bus_attach(bus, ep, vmsig_input_stub_ops(), NULL), 0);
        assert_int_equal(vmsig_bus_attach(bus, ep, vmsig_vmhost_stub_ops(), NULL), 0);
        assert_true(wait_for(bus, &r, VMSIG_EV_MEMCTX, 0, 5000) >= 0);
        for (uint8_t cls = 0; cls < VMSIG_LEASE_CLASS_COUNT; cls++)
                assert_int_equal(vmsig_control_lease_acquire(c, ep, cls, 10 + cls), 0);
        assert_int_equal(wait_ack(bus, &r, 12, &a), 0);
        assert_int_equal(a.result, 0);

        /* Power: pause, then STATUS paused arrives. */
        struct vmsig_event pw;
        struct vmsig_power_body pb = {.op = VMSIG_POWER_PAUSE};
        vmsig_event_init(&pw, VMSIG_EV_CMD_POWER, ep, VMSIG_SRC_VMHOST);
        pw.hdr.corr = 20;
        vmsig_event_set_body(&pw, &pb, sizeof(pb));
        unsigned before = r.n;
        assert_int_equal(vmsig_control_send(c, &pw), 0);
        assert_int_equal(wait_ack(bus, &r, 20, &a), 0);
        assert_int_equal(a.result, 0);
        int s = wait_for(bus, &r, VMSIG_EV_STATUS, before, 1000);
        assert_true(s >= 0);
        assert_int_equal(r.ev[s].body[0], VMSIG_RUN_PAUSED);
        /* Pausing twice is refused with the adapter's reason. */
        pw.hdr.corr = 21;
        assert_int_equal(vmsig_control_send(c, &pw), 0);
        assert_int_equal(wait_ack(bus, &r, 21, &a), 0);
        assert_true(a.result < 0);

        /* MEMWRITE into the banner, inline, then read back through the fd. */
        struct vmsig_event mw;
        struct vmsig_memwrite_body mb = {.addr = VMSIG_STUB_BANNER_VA, .len = 5};
        memcpy(mb.data, "VMSIG", 5);
        vmsig_event_init(&mw, VMSIG_EV_CMD_MEMWRITE, ep, VMSIG_SRC_MEMCTX);
        mw.hdr.corr = 30;
        vmsig_event_set_body(&mw, &mb, offsetof(struct vmsig_memwrite_body, data) + 5);
        assert_int_equal(vmsig_control_send(c, &mw), 0);
        assert_int_equal(wait_ack(bus, &r, 30, &a), 0);
        assert_int_equal(a.result, 0);
        assert_int_equal(a.value, 5);
        /* A write into the read-only page is refused whole. */
        mb.addr = VMSIG_STUB_RO_VA;
        mw.hdr.corr = 31;
        vmsig_event_set_body(&mw, &mb, offsetof(struct vmsig_memwrite_body, data) + 5);
        assert_int_equal(vmsig_control_send(c, &mw), 0);
        assert_int_equal(wait_ack(bus, &r, 31, &a), 0);
        assert_int_equal(a.result, -EACCES);
        /* The same through a payload (the socket's SRC tail path). */
        mb.addr = VMSIG_STUB_BANNER_VA;
        mw.hdr.corr = 32;
        vmsig_event_set_body(&mw, &mb, offsetof(struct vmsig_memwrite_body, data));
        assert_int_equal(vmsig_control_send_payload(c, &mw, "vmsig", 5), 0);
        assert_int_equal(wait_ack(bus, &r, 32, &a), 0);
        assert_int_equal(a.result, 0);

        /* Input: FF gets no ACK, the plain one does. */
        struct vmsig_event mv;
        struct vmsig_input_body ib = {.x = 100, .y = 200};
        vmsig_event_init(&mv, VMSIG_EV_MOVE_ABS, ep, VMSIG_SRC_INPUT);
        vmsig_event_set_body(&mv, &ib, sizeof(ib));
        mv.hdr.flags = VMSIG_F_FF;
        mv.hdr.corr = 40;
        assert_int_equal(vmsig_control_send(c, &mv), 0);
        mv.hdr.flags = 0;
        mv.hdr.corr = 41;
        assert_int_equal(vmsig_control_send(c, &mv), 0);
        assert_int_equal(wait_ack(bus, &r, 41, &a), 0);
        assert_int_equal(a.result, 0);
        assert_int_equal(a.value, 2); /* both were actuated */
        for (unsigned k = 0; k < r.n; k++)
                assert_false(r.ev[k].hdr.kind == VMSIG_EV_ACT_ACK && r.ev[k].hdr.corr == 40);
        vmsig_bus_free(bus);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_fail_boots_retries_with_one_diag),
            cmocka_unit_test(test_stub_trio_commands),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
