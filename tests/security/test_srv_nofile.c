/* SPDX-License-Identifier: MIT */
/* Issue 9 item 6: nothing raised RLIMIT_NOFILE, so vmsigd ran with the
 * usual soft limit of 1024 fds although one VM costs about 5 and
 * max_endpoints is 1024. Started with soft 1024 under a higher hard limit,
 * vmsigd must take the hard limit; when even that cannot hold the
 * configured limits it must say so at start, naming the numbers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "daemon/vmsigd_harness.h"
#include "test_srv_fds.h"

static struct vh H;

static int teardown(void **state)
{
        (void)state;
        vh_teardown(&H);
        return 0;
}

/* Start vmsigd with a soft fd limit of soft (inherited from us; only our
 * soft limit moves, so it can be put back without privileges). Returns
 * the daemon's limits. */
static struct rlimit start_with(rlim_t soft, const char *extra)
{
        struct rlimit mine, lim, got;

        assert_int_equal(getrlimit(RLIMIT_NOFILE, &mine), 0);
        lim = mine;
        lim.rlim_cur = soft;
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &lim), 0);
        int r = vh_start(&H, extra);
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &mine), 0);
        if (r < 0)
                fail_msg("vmsigd did not start: %s", strerror(-r));
        assert_int_equal(prlimit(H.pid, RLIMIT_NOFILE, NULL, &got), 0);
        return got;
}

static void test_raised_to_hard_limit(void **state)
{
        struct rlimit mine;

        (void)state;
        assert_int_equal(getrlimit(RLIMIT_NOFILE, &mine), 0);
        if (mine.rlim_max <= 256)
                skip(); /* no room above a low soft limit */
        struct rlimit got = start_with(256, NULL);
        print_message("started with 256 fds (hard %llu): vmsigd runs with %llu\n",
                      (unsigned long long)mine.rlim_max, (unsigned long long)got.rlim_cur);
        assert_true(got.rlim_cur == mine.rlim_max);
        assert_int_equal(vh_stop(&H, VH_TIMEOUT_MS), 0);
}

static void test_warns_when_limits_cannot_fit(void **state)
{
        struct rlimit mine;

        (void)state;
        assert_int_equal(getrlimit(RLIMIT_NOFILE, &mine), 0);
        /* 65535 VMs x 5 fds; lowering our hard limit below that could not
         * be undone without privileges, so skip where it is higher. */
        if (mine.rlim_max == RLIM_INFINITY || mine.rlim_max > 65535ull * 5)
                skip();
        start_with(mine.rlim_max, "[limits]\nmax_endpoints = 65535\n");
        char want[64];
        snprintf(want, sizeof(want), "open file limit %llu is below", (unsigned long long)mine.rlim_max);
        if (!vh_file_has_line(H.log, want, "65535 VMs (limits.max_endpoints)", "limits.conns_per_uid",
                              (char *)NULL)) {
                vh_dump_log(&H);
                fail_msg("no start-up warning naming the fd limit and max_endpoints");
        }
        /* A config that fits gets no warning. */
        start_with(mine.rlim_max, "[limits]\nmax_endpoints = 16\n");
        assert_false(vh_file_has_line(H.log, "open file limit", (char *)NULL));
        struct vmsig_client *c = vh_client(&H, "ok");
        assert_non_null(c);
        vh_client_close(c);
        assert_int_equal(vh_stop(&H, VH_TIMEOUT_MS), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_teardown(test_raised_to_hard_limit, teardown),
            cmocka_unit_test_teardown(test_warns_when_limits_cannot_fit, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
