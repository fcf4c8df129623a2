/* SPDX-License-Identifier: MIT */
/* The adapters' emit helpers (vmsig_sink_ack/diag/status): the events they
 * build, byte for byte what the adapters used to build by hand, and emit's
 * result passed back (-ESHUTDOWN after a detach). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include <vmsig/adapter.h>
#include <vmsig/event.h>

struct rec {
        struct vmsig_emit_sink sink; /* first: emit casts back */
        struct vmsig_event last;
        unsigned n;
        int ret;
};

static int r_emit(const struct vmsig_emit_sink *sink, const struct vmsig_event *ev)
{
        struct rec *r = (struct rec *)sink;

        r->last = *ev;
        r->n++;
        return r->ret;
}

static void test_ack(void **state)
{
        struct rec r = {.sink.emit = r_emit};
        struct vmsig_event cmd, want;
        struct vmsig_ack_body b;

        vmsig_event_init(&cmd, VMSIG_EV_CMD_MEMWRITE, 7, VMSIG_SRC_CORE);
        cmd.hdr.corr = 42;
        cmd.hdr.peer = 3;
        assert_int_equal(
            vmsig_sink_ack(&r.sink, VMSIG_SRC_MEMCTX, &cmd.hdr, -EFAULT, 9, "page at 0x%x", 0x1000), 0);
        assert_int_equal(r.n, 1);
        vmsig_ack_init(&want, &cmd, VMSIG_SRC_MEMCTX, -EFAULT, 9, "page at 0x1000");
        want.hdr.ts_ns = r.last.hdr.ts_ns;
        assert_memory_equal(&r.last, &want, vmsig_event_size(&want));
        memcpy(&b, r.last.body, sizeof(b));
        assert_int_equal(b.result, -EFAULT);
        assert_int_equal(b.cmd_kind, VMSIG_EV_CMD_MEMWRITE);
        assert_int_equal(r.last.hdr.corr, 42);
        assert_int_equal(r.last.hdr.peer, 3);
        assert_string_equal(b.msg, "page at 0x1000");

        r.ret = -ESHUTDOWN; /* emit's verdict comes back */
        assert_int_equal(vmsig_sink_ack(&r.sink, VMSIG_SRC_MEMCTX, &cmd.hdr, 0, 0, "ok"), -ESHUTDOWN);
}

static void test_diag(void **state)
{
        struct rec r = {.sink.emit = r_emit};
        struct vmsig_diag_body d;
        char longmsg[400];

        assert_int_equal(vmsig_sink_diag(&r.sink, 5, VMSIG_SRC_INPUT, -ENODEV, "driver: %s", "none"), 0);
        assert_int_equal(r.last.hdr.kind, VMSIG_EV_DIAG);
        assert_int_equal(r.last.hdr.endpoint, 5);
        assert_int_equal(r.last.hdr.source, VMSIG_SRC_INPUT);
        assert_int_equal(r.last.hdr.body_len, sizeof(d));
        assert_true(r.last.hdr.ts_ns != 0);
        memcpy(&d, r.last.body, sizeof(d));
        assert_int_equal(d.code, -ENODEV);
        assert_int_equal(d.reserved, 0);
        assert_string_equal(d.msg, "driver: none");

        /* too long: truncated, still terminated */
        memset(longmsg, 'x', sizeof(longmsg) - 1);
        longmsg[sizeof(longmsg) - 1] = '\0';
        assert_int_equal(vmsig_sink_diag(&r.sink, 5, VMSIG_SRC_INPUT, 0, "%s", longmsg), 0);
        memcpy(&d, r.last.body, sizeof(d));
        assert_int_equal(strlen(d.msg), VMSIG_MSG_MAX - 1);
}

static void test_status(void **state)
{
        struct rec r = {.sink.emit = r_emit};
        struct vmsig_status_body b;
        struct vmsig_event q;

        assert_int_equal(vmsig_sink_status(&r.sink, 2, VMSIG_RUN_PAUSED, NULL, "STOP (%s)", "guest"), 0);
        assert_int_equal(r.last.hdr.kind, VMSIG_EV_STATUS);
        assert_int_equal(r.last.hdr.source, VMSIG_SRC_VMHOST);
        assert_int_equal(r.last.hdr.endpoint, 2);
        assert_int_equal(r.last.hdr.peer, 0);
        assert_int_equal(r.last.hdr.corr, 0);
        memcpy(&b, r.last.body, sizeof(b));
        assert_int_equal(b.run_state, VMSIG_RUN_PAUSED);
        assert_string_equal(b.reason, "STOP (guest)");

        /* an answer to a query goes to the asker */
        vmsig_event_init(&q, VMSIG_EV_CMD_STATUS_QUERY, 2, VMSIG_SRC_CORE);
        q.hdr.peer = 11;
        q.hdr.corr = 99;
        assert_int_equal(vmsig_sink_status(&r.sink, 2, VMSIG_RUN_RUNNING, &q.hdr, "query"), 0);
        assert_int_equal(r.last.hdr.peer, 11);
        assert_int_equal(r.last.hdr.corr, 99);
        assert_int_equal(r.n, 2);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_ack),
            cmocka_unit_test(test_diag),
            cmocka_unit_test(test_status),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
