/* SPDX-License-Identifier: MIT */
/* Issue 9, item 4: commands to a frozen QEMU. The QEMU process is
 * SIGSTOPped (always SIGCONTed and killed in teardown).
 *  - `vmsigctl power VM pause` must come back inside vmsigctl's 5 s window
 *    with the command's own timeout, naming QEMU, not the daemon.
 *  - A control holding the power lease queues a pause and leaves; a second
 *    control takes the lease; QEMU thaws. Neither stale pause may reach
 *    QEMU: query-status afterwards still says running, and the audit log
 *    shows the first control's pause answered "not sent". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include <inttypes.h>

#include "daemon/vmsigd_harness.h"
#include "vm/vm_guest.h"

static struct vh H;
static struct vm_guest G;
static bool stopped;

static int setup(void **state)
{
        (void)state;
        if (vm_guest_load_env(&G) < 0) {
                fprintf(stderr, "VMSIG_GUEST_DIR/VMSIG_QEMU not set: run through ctest\n");
                return -1;
        }
        return 0;
}

static int teardown(void **state)
{
        (void)state;
        if (stopped && G.pid > 0)
                kill(G.pid, SIGCONT);
        stopped = false;
        vh_teardown(&H);
        vm_guest_stop(&G);
        return 0;
}

static void write_trigger(const char *name)
{
        char tmp[512], path[512], text[1024];

        snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", H.trig, name);
        snprintf(path, sizeof(path), "%s/%s", H.trig, name);
        snprintf(text, sizeof(text), "name=%s\ndriver=qemu\nqmp=%s\nram=%s\n", name, G.qmp, G.shm);
        assert_int_equal(vh_write_file(tmp, text, 0644), 0);
        assert_int_equal(rename(tmp, path), 0);
}

static uint64_t send_kind(struct vmsig_client *c, uint32_t ep, uint16_t kind, uint32_t op)
{
        struct vmsig_event ev;
        uint64_t corr = 0;

        if (kind == VMSIG_EV_CMD_POWER) {
                struct vmsig_power_body b = {.op = op};
                vmsig_event_init(&ev, kind, ep, VMSIG_SRC_VMHOST);
                vmsig_event_set_body(&ev, &b, sizeof(b));
        } else {
                vmsig_event_init(&ev, kind, ep, VMSIG_SRC_VMHOST);
        }
        assert_int_equal(vmsig_client_send(c, &ev, &corr), 0);
        assert_int_equal(vmsig_client_flush(c, VH_TIMEOUT_MS), 0);
        return corr;
}

/* An audit line about corr containing every string given. */
static bool audit_has(uint64_t corr, const char *a, const char *b)
{
        char c[48];

        snprintf(c, sizeof(c), " corr=%" PRIu64 " ", corr);
        return vh_file_has_line(H.audit, c, a, b, (char *)NULL);
}

static void test_frozen_qemu_commands_time_out_and_never_run_late(void **state)
{
        (void)state;
        char out[4096];

        assert_int_equal(vm_guest_start(&G, "cmdfrz", NULL), 0);
        assert_int_equal(vm_guest_wait_serial(&G, "VMSIG-GUEST-READY", 120000), 0);
        assert_int_equal(vh_start(&H, NULL), 0);

        struct vmsig_client *w = vh_client(&H, "frozen-watch");
        assert_non_null(w);
        assert_int_equal(
            vh_subscribe(w, 0, (1ull << VMSIG_EV_ROSTER) | (1ull << VMSIG_EV_STATUS), NULL, NULL), 0);
        write_trigger("frozen");
        uint32_t ep = vh_wait_vm(w, "frozen");
        assert_true(ep != 0);
        struct vh_match running = {.kind = VMSIG_EV_STATUS, .endpoint = ep, .run_state = VMSIG_RUN_RUNNING};
        assert_int_equal(vh_wait_event(w, &running, NULL, NULL, NULL, 60000), 0);

        /* 1: vmsigctl against a frozen QEMU */
        assert_int_equal(kill(G.pid, SIGSTOP), 0);
        stopped = true;
        uint64_t t0 = vh_now_ms();
        int rc = vh_vmsigctl(&H, -1, out, sizeof(out), "power", "frozen", "pause", (char *)NULL);
        printf("# vmsigctl exit %d after %" PRIu64 " ms: %s", rc, vh_now_ms() - t0, out);
        assert_int_equal(rc, 1);
        assert_non_null(strstr(out, "QEMU"));
        assert_null(strstr(out, "no answer from vmsigd"));

        /* 2: a queued pause whose issuer leaves before QEMU thaws */
        struct vmsig_client *a = vh_client(&H, "frozen-a");
        assert_non_null(a);
        assert_int_equal(vh_lease(a, ep, VMSIG_LEASE_POWER, true), 0);
        uint64_t corr_a = send_kind(a, ep, VMSIG_EV_CMD_POWER, VMSIG_POWER_PAUSE);
        /* the daemon took it (audited as submitted) ... */
        uint64_t deadline = vh_now_ms() + VH_TIMEOUT_MS;
        while (!audit_has(corr_a, "what=command", "kind=CMD_POWER") && vh_left(deadline))
                (void)vmsig_client_recv_wait(a, &(struct vmsig_event){0}, NULL, NULL, 20);
        assert_true(audit_has(corr_a, "what=command", "kind=CMD_POWER"));
        /* ... and then its issuer is gone */
        vh_client_close(a);
        struct vmsig_client *b = vh_client(&H, "frozen-b");
        assert_non_null(b);
        deadline = vh_now_ms() + VH_TIMEOUT_MS;
        int lr;
        while ((lr = vh_lease(b, ep, VMSIG_LEASE_POWER, true)) == -EBUSY && vh_left(deadline))
                usleep(20000); /* the revoke of a's lease is on its way */
        assert_int_equal(lr, 0);
        assert_int_equal(kill(G.pid, SIGCONT), 0);
        stopped = false;

        /* QEMU runs the commands it gets in order: a stale pause would come
         * before this query. */
        uint64_t corr_q = send_kind(b, ep, VMSIG_EV_CMD_STATUS_QUERY, 0);
        struct vmsig_ack_body ack;
        assert_int_equal(vh_wait_ack(b, corr_q, &ack, NULL, NULL), 0);
        printf("# status after thaw: %d %s (value %" PRIu64 ")\n", ack.result, ack.msg, ack.value);
        assert_int_equal(ack.result, 0);
        assert_int_equal(ack.value, VMSIG_RUN_RUNNING);
        assert_non_null(strstr(ack.msg, "running"));

        /* a's pause was answered, and not as done */
        deadline = vh_now_ms() + VH_TIMEOUT_MS;
        while (!audit_has(corr_a, "what=result", "kind=CMD_POWER") && vh_left(deadline))
                usleep(20000);
        char *audit = vh_read_file(H.audit);
        printf("# audit:\n%s", audit ? audit : "");
        free(audit);
        assert_true(audit_has(corr_a, "what=result", "not sent"));

        vh_client_close(b);
        assert_int_equal(vh_stop(&H, VH_TIMEOUT_MS), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_frozen_qemu_commands_time_out_and_never_run_late, setup,
                                            teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
