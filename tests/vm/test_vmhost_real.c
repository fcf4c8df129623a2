/* SPDX-License-Identifier: MIT */
/* The real vmhost adapter against a real QEMU (TCG): run state from QMP,
 * power ops acknowledged with QEMU's real result, reconnect with backoff
 * before QEMU starts and after it dies or restarts on the same socket. */
#include <errno.h>
#include <json-c/json.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "vm/vm_bus.h"
#include "vm/vm_guest.h"

struct fx {
        struct vb b;
        struct vm_guest g;
        char dir[128];
        char qmp[200];  /* the adapter's socket: stable across QEMU restarts */
        char side[200]; /* the test's own monitor */
        char a_qmp[260], a_side[260];
        long t0;
};

static int setup(void **state)
{
        struct fx *f = calloc(1, sizeof(*f));
        snprintf(f->dir, sizeof(f->dir), "/tmp/vmsig-vmhost.XXXXXX");
        if (!mkdtemp(f->dir))
                return -1;
        snprintf(f->qmp, sizeof(f->qmp), "%s/qmp.sock", f->dir);
        snprintf(f->side, sizeof(f->side), "%s/side.sock", f->dir);
        snprintf(f->a_qmp, sizeof(f->a_qmp), "unix:%s,server=on,wait=off", f->qmp);
        snprintf(f->a_side, sizeof(f->a_side), "unix:%s,server=on,wait=off", f->side);
        f->t0 = vm_guest_now_ms();
        if (vb_init(&f->b, "vm1") < 0)
                return -1;
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fx *f = *state;
        char shm[256];
        snprintf(shm, sizeof(shm), "%s", f->g.shm);
        vb_free(&f->b);
        vm_guest_stop(&f->g);
        unlink(f->qmp);
        unlink(f->side);
        rmdir(f->dir);
        struct stat st;
        if (shm[0])
                assert_int_not_equal(stat(shm, &st), 0); /* no leftovers in /dev/shm */
        printf("# total %ld ms\n", vm_guest_now_ms() - f->t0);
        free(f);
        return 0;
}

static void start_qemu(struct fx *f)
{
        /* -no-shutdown keeps QEMU alive in "shutdown"; the reboot action
         * "reset" undoes the harness's -no-reboot so system_reset resets */
        const char *extra[] = {"-qmp",         f->a_qmp,  "-qmp",         f->a_side,
                               "-no-shutdown", "-action", "reboot=reset", NULL};
        struct vm_guest_opts o = {.extra = extra};
        vm_guest_stop(&f->g);
        assert_int_equal(vm_guest_start(&f->g, "vmhost", &o), 0);
}

static const char *reason_of(struct fx *f, int i)
{
        return vb_status(&f->b.ev[i])->reason;
}

static int expect_status(struct fx *f, unsigned from, uint8_t state, const char *reason_part, int timeout_ms)
{
        for (unsigned at = from;;) {
                int i = vb_wait_status(&f->b, at, state, timeout_ms);
                if (i < 0)
                        fail_msg("no STATUS %s (%s) within %d ms", vmsig_run_state_name(state),
                                 reason_part ? reason_part : "-", timeout_ms);
                if (!reason_part || strstr(reason_of(f, i), reason_part))
                        return i;
                at = (unsigned)i + 1;
        }
}

static const struct vmsig_ack_body *expect_ack(struct fx *f, uint32_t op, int result)
{
        long t = vm_guest_now_ms();
        int i = vb_power_wait(&f->b, op, 15000);
        if (i < 0)
                fail_msg("no ACK for %s", vmsig_power_op_name(op));
        const struct vmsig_ack_body *a = vb_ack(&f->b.ev[i]);
        printf("# %-9s -> %d \"%s\" (%ld ms)\n", vmsig_power_op_name(op), a->result, a->msg,
               vm_guest_now_ms() - t);
        if (a->result != result)
                fail_msg("%s: result %d (%s), expected %d", vmsig_power_op_name(op), a->result, a->msg,
                         result);
        assert_int_equal(a->cmd_kind, VMSIG_EV_CMD_POWER);
        return a;
}

static void side_set_reboot(struct fx *f, const char *action)
{
        struct json_object *args = json_object_new_object();
        json_object_object_add(args, "reboot", json_object_new_string(action));
        assert_int_equal(side_qmp(f->side, "set-action", args), 0);
        json_object_put(args);
}

static void test_vmhost_lifecycle(void **state)
{
        struct fx *f = *state;
        struct vb *b = &f->b;
        struct vmsig_adapter_cfg cfg = {
            .vm_name = "vm1", .qmp_path = f->qmp, .options = "retry_ms=50,retry_max_ms=400"};

        /* unknown options are refused */
        struct vmsig_adapter_cfg bad = cfg;
        bad.options = "retry_ms=50,colour=blue";
        assert_int_equal(vmsig_bus_attach(b->bus, b->ep, vmsig_vmhost_ops(), &bad), -EINVAL);

        /* Attached before QEMU exists: starting, then it connects by itself. */
        assert_non_null(vmsig_vmhost_ops());
        assert_int_equal(vmsig_bus_attach(b->bus, b->ep, vmsig_vmhost_ops(), &cfg), 0);
        int i = expect_status(f, 0, VMSIG_RUN_STARTING, "not up yet", 3000);
        printf("# before QEMU: %s\n", reason_of(f, i));
        vb_pump(b, 300); /* a few failed retries */
        unsigned from = b->n;
        long t = vm_guest_now_ms();
        start_qemu(f);
        i = expect_status(f, from, VMSIG_RUN_RUNNING, "connected", 10000);
        printf("# connected %ld ms after QEMU start (backoff max 400 ms)\n", vm_guest_now_ms() - t);

        /* Commands need the power lease (the core checks it). */
        assert_int_equal(vb_lease(b, VMSIG_LEASE_POWER), 0);

        from = b->n;
        expect_ack(f, VMSIG_POWER_PAUSE, 0);
        expect_status(f, from, VMSIG_RUN_PAUSED, "STOP", 5000);
        from = b->n;
        expect_ack(f, VMSIG_POWER_RESUME, 0);
        expect_status(f, from, VMSIG_RUN_RUNNING, "RESUME", 5000);
        from = b->n;
        expect_ack(f, VMSIG_POWER_RESET, 0);
        i = expect_status(f, from, VMSIG_RUN_RUNNING, "RESET", 5000);
        printf("# reset mirrored: %s\n", reason_of(f, i));
        from = b->n;
        expect_ack(f, VMSIG_POWER_POWERDOWN, 0);
        i = expect_status(f, from, VMSIG_RUN_RUNNING, "POWERDOWN", 5000);
        printf("# powerdown mirrored: %s\n", reason_of(f, i));
        /* "on" while running: refused with the reason */
        expect_ack(f, VMSIG_POWER_ON, -EALREADY);

        /* STATUS_QUERY: a STATUS addressed to the asker, and an ACK. */
        from = b->n;
        uint64_t corr = vb_send(b, VMSIG_EV_CMD_STATUS_QUERY, VMSIG_SRC_VMHOST, NULL, 0);
        i = vb_wait_ack(b, corr, 5000);
        assert_true(i >= 0);
        assert_int_equal(vb_ack(&b->ev[i])->result, 0);
        assert_int_equal(vb_ack(&b->ev[i])->value, VMSIG_RUN_RUNNING);
        i = expect_status(f, from, VMSIG_RUN_RUNNING, "query", 1000);
        assert_int_equal(b->ev[i].hdr.corr, corr);
        assert_int_equal(b->ev[i].hdr.peer, vmsig_control_id(b->ctl));

        /* A guest that shut down (reboot action "shutdown" turns the reset
         * into a shutdown; -no-shutdown keeps QEMU). */
        side_set_reboot(f, "shutdown");
        from = b->n;
        const struct vmsig_ack_body *ra = expect_ack(f, VMSIG_POWER_RESET, -ESHUTDOWN);
        assert_non_null(strstr(ra->msg, "shut down instead"));
        i = expect_status(f, from, VMSIG_RUN_SHUTDOWN, "SHUTDOWN", 5000);
        printf("# shut down: %s\n", reason_of(f, i));
        /* "on" cannot work while every reset becomes a shutdown: it says so */
        const struct vmsig_ack_body *a = expect_ack(f, VMSIG_POWER_ON, -ECANCELED);
        assert_non_null(strstr(a->msg, "SHUTDOWN"));
        side_set_reboot(f, "reset");
        from = b->n;
        expect_ack(f, VMSIG_POWER_ON, 0);
        expect_status(f, from, VMSIG_RUN_RUNNING, NULL, 5000);

        /* off = quit: QEMU exits, STATUS gone; commands then say so. */
        from = b->n;
        expect_ack(f, VMSIG_POWER_OFF, 0);
        i = expect_status(f, from, VMSIG_RUN_GONE, NULL, 5000);
        printf("# after off: %s\n", reason_of(f, i));
        a = expect_ack(f, VMSIG_POWER_PAUSE, -ENOTCONN);
        assert_non_null(strstr(a->msg, "QEMU not connected"));
        corr = vb_send(b, VMSIG_EV_CMD_STATUS_QUERY, VMSIG_SRC_VMHOST, NULL, 0);
        i = vb_wait_ack(b, corr, 5000);
        assert_true(i >= 0);
        assert_int_equal(vb_ack(&b->ev[i])->result, -ENOTCONN);

        /* QEMU restarted on the same socket: recovered. */
        from = b->n;
        t = vm_guest_now_ms();
        start_qemu(f);
        expect_status(f, from, VMSIG_RUN_RUNNING, "connected", 10000);
        printf("# recovered %ld ms after restart\n", vm_guest_now_ms() - t);

        /* A memctx adapter joins the shared session and leaves again (its
         * requests still in flight): vmhost is undisturbed. */
        struct vmsig_adapter_cfg mcfg = cfg;
        mcfg.ram_path = "/nonexistent/vmsig-ram";
        assert_int_equal(vmsig_bus_attach(b->bus, b->ep, vmsig_memctx_ops(), &mcfg), 0);
        vb_pump(b, 30);
        assert_int_equal(vmsig_bus_detach(b->bus, b->ep, VMSIG_SRC_MEMCTX), 0);
        from = b->n;
        expect_ack(f, VMSIG_POWER_PAUSE, 0);
        expect_status(f, from, VMSIG_RUN_PAUSED, "STOP", 5000);
        expect_ack(f, VMSIG_POWER_RESUME, 0);

        /* Killed: gone; and back once more. */
        from = b->n;
        t = vm_guest_now_ms();
        assert_int_equal(kill(f->g.pid, SIGKILL), 0);
        i = expect_status(f, from, VMSIG_RUN_GONE, NULL, 5000);
        printf("# SIGKILL noticed in %ld ms: %s\n", vm_guest_now_ms() - t, reason_of(f, i));
        from = b->n;
        start_qemu(f);
        expect_status(f, from, VMSIG_RUN_RUNNING, "connected", 10000);
        expect_ack(f, VMSIG_POWER_PAUSE, 0);

        /* Detach while connected: nothing left behind. */
        assert_int_equal(vmsig_bus_detach(b->bus, b->ep, VMSIG_SRC_VMHOST), 0);
        vb_pump(b, 100);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_vmhost_lifecycle, setup, teardown),
        };
        return cmocka_run_group_tests_name("vmhost_real", tests, NULL, NULL);
}
