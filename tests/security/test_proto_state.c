/* SPDX-License-Identifier: MIT */
/* The protocol tells the truth about state (issue 9):
 *  - ROSTER run_state is the run state STATUS reports, retained and live: a
 *    STATUS that changes it brings a ROSTER "changed" to roster subscribers.
 *  - At SIGTERM leases end with LEASE_REVOKE reason 4 (shutdown), which
 *    controls still connected receive before their ERROR -ESHUTDOWN, and the
 *    audit says so. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "daemon/vmsigd_harness.h"

static struct vh H;

static int teardown(void **state)
{
        (void)state;
        vh_teardown(&H);
        return 0;
}

struct retained {
        int roster_state; /* -1 = not seen */
        int status_state;
};

static void note_retained(const struct vmsig_event *ev, int fd, void *ud)
{
        struct retained *r = ud;

        if (fd >= 0)
                close(fd);
        if (ev->hdr.kind == VMSIG_EV_ROSTER)
                r->roster_state = ev->body[offsetof(struct vmsig_roster_body, run_state)];
        else if (ev->hdr.kind == VMSIG_EV_STATUS)
                r->status_state = ev->body[0];
}

/* A fresh control's view of ep: the retained ROSTER and STATUS. */
static struct retained fresh_view(uint32_t ep)
{
        struct retained r = {-1, -1};
        struct vmsig_client *c = vh_client(&H, "fresh");

        assert_non_null(c);
        assert_int_equal(
            vh_subscribe(c, ep, (1u << VMSIG_EV_ROSTER) | (1u << VMSIG_EV_STATUS), note_retained, &r), 0);
        vh_client_close(c);
        return r;
}

static void test_roster_run_state_follows_status(void **state)
{
        (void)state;

        vh_must_start(&H, NULL);
        struct vmsig_client *w = vh_client(&H, "watcher");
        assert_non_null(w);
        assert_int_equal(vh_subscribe(w, 0, (1u << VMSIG_EV_ROSTER) | (1u << VMSIG_EV_STATUS), NULL, NULL),
                         0);
        assert_int_equal(vh_vm_add(&H, "alpha", NULL), 0);
        uint32_t ep = vh_wait_vm(w, "alpha");
        assert_true(ep != 0);
        /* The stub vmhost reports "running" once attached... */
        struct vh_match running = {.kind = VMSIG_EV_STATUS, .endpoint = ep, .run_state = VMSIG_RUN_RUNNING};
        assert_int_equal(vh_wait_event(w, &running, NULL, NULL, NULL, VH_TIMEOUT_MS), 0);
        /* ...and a ROSTER of the VM says so too, live and retained. */
        struct vmsig_event ev;
        for (;;) {
                struct vh_match m = {.kind = VMSIG_EV_ROSTER, .endpoint = ep};
                if (vh_wait_event(w, &m, &ev, NULL, NULL, 2000) < 0)
                        fail_msg("no live ROSTER of 'alpha' with run_state running after its STATUS");
                if (ev.body[offsetof(struct vmsig_roster_body, run_state)] == VMSIG_RUN_RUNNING)
                        break;
        }
        struct retained r = fresh_view(ep);
        assert_int_equal(r.status_state, VMSIG_RUN_RUNNING);
        assert_int_equal(r.roster_state, r.status_state);

        /* Pause it: STATUS paused, then a live ROSTER "changed" paused. */
        struct vmsig_client *op = vh_client(&H, "operator");
        assert_non_null(op);
        assert_int_equal(vh_lease(op, ep, VMSIG_LEASE_POWER, true), 0);
        struct vmsig_event cmd;
        struct vmsig_power_body pb = {.op = VMSIG_POWER_PAUSE};
        struct vmsig_ack_body ack;
        uint64_t corr = 0;
        vmsig_event_init(&cmd, VMSIG_EV_CMD_POWER, ep, VMSIG_SRC_VMHOST);
        vmsig_event_set_body(&cmd, &pb, sizeof(pb));
        assert_int_equal(vmsig_client_send(op, &cmd, &corr), 0);
        assert_int_equal(vh_wait_ack(op, corr, &ack, NULL, NULL), 0);
        assert_int_equal(ack.result, 0);

        struct vh_match paused = {.kind = VMSIG_EV_STATUS, .endpoint = ep, .run_state = VMSIG_RUN_PAUSED};
        assert_int_equal(vh_wait_event(w, &paused, NULL, NULL, NULL, VH_TIMEOUT_MS), 0);
        struct vh_match changed = {
            .kind = VMSIG_EV_ROSTER, .endpoint = ep, .roster_change = VMSIG_ROSTER_CHANGED};
        if (vh_wait_event(w, &changed, &ev, NULL, NULL, 3000) < 0)
                fail_msg("no live ROSTER \"changed\" after the STATUS paused");
        assert_false(ev.hdr.flags & VMSIG_F_RETAINED);
        assert_int_equal(ev.body[offsetof(struct vmsig_roster_body, run_state)], VMSIG_RUN_PAUSED);
        r = fresh_view(ep);
        assert_int_equal(r.status_state, VMSIG_RUN_PAUSED);
        assert_int_equal(r.roster_state, VMSIG_RUN_PAUSED);

        /* vmsigctl list agrees (it reads ROSTER and STATUS). */
        char out[4096];
        assert_int_equal(vh_vmsigctl(&H, -1, out, sizeof(out), "list", (char *)NULL), 0);
        assert_non_null(strstr(out, "paused"));
        vh_client_close(op);
        vh_client_close(w);
}

struct revokes {
        unsigned shutdown, other;
};

static void count_revokes(const struct vmsig_event *ev, int fd, void *ud)
{
        struct revokes *rv = ud;

        if (fd >= 0)
                close(fd);
        if (ev->hdr.kind != VMSIG_EV_LEASE_REVOKE)
                return;
        if (ev->body[offsetof(struct vmsig_lease_body, reason)] == VMSIG_LEASE_R_SHUTDOWN)
                rv->shutdown++;
        else
                rv->other++;
}

static void test_sigterm_revokes_with_reason_shutdown(void **state)
{
        (void)state;

        vh_must_start(&H, NULL);
        struct vmsig_client *w = vh_client(&H, "watcher");
        assert_non_null(w);
        assert_int_equal(vh_subscribe(w, 0, VH_ALL_UP_KINDS, NULL, NULL), 0);
        assert_int_equal(vh_vm_add(&H, "alpha", NULL), 0);
        uint32_t ep = vh_wait_vm(w, "alpha");
        assert_true(ep != 0);
        /* Two holders, one of them the watcher itself. */
        struct vmsig_client *holder = vh_client(&H, "holder");
        assert_non_null(holder);
        assert_int_equal(vh_lease(holder, ep, VMSIG_LEASE_INPUT, true), 0);
        assert_int_equal(vh_lease(w, ep, VMSIG_LEASE_POWER, true), 0);

        if (vh_stop(&H, 5000) != 0) {
                vh_dump_log(&H);
                fail_msg("vmsigd did not exit 0 after SIGTERM");
        }
        /* What the watcher got before its ERROR. */
        struct revokes rv = {0};
        struct vh_match never = {.kind = 0xffff};
        int r = vh_wait_event(w, &never, NULL, count_revokes, &rv, VH_TIMEOUT_MS);
        const struct vmsig_client_error *e = vmsig_client_last_error(w);
        assert_int_equal(r, -ESHUTDOWN);
        assert_true(e->from_daemon);
        if (rv.shutdown != 2 || rv.other != 0)
                fail_msg("LEASE_REVOKE at shutdown: %u with reason 4, %u with another reason (want 2, 0)",
                         rv.shutdown, rv.other);

        /* The audit names the cause. */
        if (!vh_file_has_line(H.audit, "what=lease", "input lease on 'alpha' ended (daemon shutdown)",
                              (char *)NULL) ||
            !vh_file_has_line(H.audit, "what=lease", "power lease on 'alpha' ended (daemon shutdown)",
                              (char *)NULL)) {
                char *a = vh_read_file(H.audit);
                fail_msg("audit does not say the leases ended at shutdown:\n%s", a ? a : "(none)");
        }
        assert_false(vh_file_has_line(H.audit, "what=lease", "holder disconnected", (char *)NULL));
        vh_client_close(holder);
        vh_client_close(w);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_teardown(test_roster_run_state_follows_status, teardown),
            cmocka_unit_test_teardown(test_sigterm_revokes_with_reason_shutdown, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
