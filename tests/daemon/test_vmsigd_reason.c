/* SPDX-License-Identifier: MIT */
/* Why a VM has no memory context, as a client sees it (issue 12): the memctx
 * adapter's latest failing DIAG is retained by the real vmsigd and replayed
 * (flagged RETAINED) to a new DIAG subscriber, `vmsigctl list` and `read`
 * show it, vmsigd logs it once, and a valid MEMCTX clears it. The stub
 * memctx adapter fails its bootstraps on demand (fail_boots). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include "vmsigd_harness.h"

static struct vh H;

struct diags {
        unsigned n, retained;
        int32_t code;
        char msg[VMSIG_MSG_MAX];
};

static void note_diag(const struct vmsig_event *ev, int fd, void *ud)
{
        struct diags *d = ud;

        if (fd >= 0)
                close(fd);
        if (ev->hdr.kind != VMSIG_EV_DIAG || ev->hdr.source != VMSIG_SRC_MEMCTX)
                return;
        struct vmsig_diag_body b;
        memcpy(&b, ev->body, sizeof(b));
        d->n++;
        d->retained += (ev->hdr.flags & VMSIG_F_RETAINED) != 0;
        d->code = b.code;
        snprintf(d->msg, sizeof(d->msg), "%s", b.msg);
}

static unsigned log_count(const char *needle)
{
        char *log = vh_read_file(H.log);
        unsigned n = log ? vh_count_lines(log, needle) : 0;

        free(log);
        return n;
}

static void test_failing_memctx_reason(void **state)
{
        char out[8192];

        (void)state;
        struct vmsig_client *c = vh_client(&H, "reason");
        assert_non_null(c);
        uint32_t ep = 0;
        assert_int_equal(
            vh_subscribe(c, 0, VMSIG_KIND_BIT(VMSIG_EV_ROSTER) | VMSIG_KIND_BIT(VMSIG_EV_DIAG), NULL, NULL),
            0);
        assert_int_equal(vh_vm_add(&H, "slow", "memctx_options=fail_boots=1000000,retry_ms=20\n"), 0);
        ep = vh_wait_vm(c, "slow");
        assert_true(ep != 0);
        struct vh_match dm = {.kind = VMSIG_EV_DIAG, .endpoint = ep};
        assert_int_equal(vh_wait_event(c, &dm, NULL, NULL, NULL, VH_TIMEOUT_MS), 0);
        vh_client_close(c);

        /* A new subscriber gets it replayed, before its REPLY. */
        c = vh_client(&H, "late");
        assert_non_null(c);
        struct diags d = {0};
        assert_int_equal(vh_subscribe(c, ep, VMSIG_KIND_BIT(VMSIG_EV_DIAG), note_diag, &d), 0);
        assert_int_equal(d.n, 1);
        assert_int_equal(d.retained, 1);
        assert_true(d.code < 0);
        assert_non_null(strstr(d.msg, "memctx bootstrap"));
        vh_client_close(c);

        /* Where the user looks. */
        assert_int_equal(vh_vmsigctl(&H, -1, out, sizeof(out), "list", (char *)NULL), 0);
        printf("# %s", out);
        assert_non_null(strstr(out, "memctx bootstrap"));
        assert_int_equal(vh_vmsigctl(&H, -1, out, sizeof(out), "--json", "list", (char *)NULL), 0);
        assert_non_null(strstr(out, "\"memctx_error\": \"memctx bootstrap"));
        assert_int_not_equal(
            vh_vmsigctl(&H, -1, out, sizeof(out), "read", "slow", "0x1000", "16", (char *)NULL), 0);
        printf("# %s", out);
        assert_non_null(strstr(out, "memctx bootstrap"));
        assert_null(strstr(out, "still booting?"));

        /* Retried every 20..320 ms; logged once. */
        struct timespec ts = {1, 0};
        nanosleep(&ts, NULL);
        if (log_count("VM 'slow': memctx bootstrap") != 1) {
                vh_dump_log(&H);
                fail_msg("the memctx failure is not logged exactly once");
        }
}

static void test_success_clears_reason(void **state)
{
        char out[8192];

        (void)state;
        struct vmsig_client *c = vh_client(&H, "w");
        assert_non_null(c);
        assert_int_equal(
            vh_subscribe(c, 0, VMSIG_KIND_BIT(VMSIG_EV_ROSTER) | VMSIG_KIND_BIT(VMSIG_EV_MEMCTX), NULL, NULL),
            0);
        assert_int_equal(vh_vm_add(&H, "quick", "memctx_options=fail_boots=3,retry_ms=20\n"), 0);
        uint32_t ep = vh_wait_vm(c, "quick");
        struct vh_match mm = {.kind = VMSIG_EV_MEMCTX, .endpoint = ep, .memctx_valid = true};
        assert_int_equal(vh_wait_event(c, &mm, NULL, NULL, NULL, VH_TIMEOUT_MS), 0);
        vh_client_close(c);

        c = vh_client(&H, "late");
        assert_non_null(c);
        struct diags d = {0};
        assert_int_equal(vh_subscribe(c, ep, VMSIG_KIND_BIT(VMSIG_EV_DIAG), note_diag, &d), 0);
        assert_int_equal(d.n, 0); /* the problem is over: nothing retained */
        vh_client_close(c);
        assert_int_equal(vh_vmsigctl(&H, -1, out, sizeof(out), "list", (char *)NULL), 0);
        assert_null(strstr(out, "memctx bootstrap"));
        /* it was logged while it lasted */
        assert_int_equal(log_count("VM 'quick': memctx bootstrap"), 1);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            vh_unit_test(test_failing_memctx_reason, &H),
            vh_unit_test(test_success_clears_reason, &H),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
