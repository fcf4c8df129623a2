/* SPDX-License-Identifier: MIT */
/* A trigger file that shows up while vmsigd is out of fds (issue 9, item 7).
 * From outside: lower the daemon's RLIMIT_NOFILE (prlimit, as root) and
 * hold connections open until no fd is left, drop a trigger file, then give
 * the fds back. The VM must appear by itself, without touching the file:
 * EMFILE is transient, unlike a parse error. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/resource.h>
#include <cmocka.h>

#include "daemon/vmsigd_harness.h"
#include "test_disco_util.h"

#define SLACK 6
#define HOLD  1024

static struct vh H;
static int held[HOLD];
static int nheld;

static int setup(void **state)
{
        (void)state;
        nheld = 0;
        /* The connections that use up fds must not hit the per-uid cap. */
        if (vh_start(&H, "[limits]\nconns_per_uid = 4096\n") < 0) {
                vh_teardown(&H);
                return -1;
        }
        return 0;
}

static int teardown(void **state)
{
        (void)state;
        while (nheld > 0)
                close(held[--nheld]);
        vh_teardown(&H);
        return 0;
}

/* Highest fd number the daemon has open, and how many. */
static int daemon_fds(int *ret_count)
{
        char path[64];
        struct dirent *de;
        int max = -1, n = 0;
        DIR *d;

        snprintf(path, sizeof(path), "/proc/%d/fd", (int)H.pid);
        d = opendir(path);
        if (!d)
                return -1;
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                int fd = atoi(de->d_name);
                if (fd > max)
                        max = fd;
                n++;
        }
        closedir(d);
        if (ret_count)
                *ret_count = n;
        return max;
}

static void test_out_of_fds(void **state)
{
        struct rlimit old, low;
        int count = 0, max;

        (void)state;
        assert_int_equal(vh_vm_add(&H, "before", NULL), 0);
        assert_true(dz_wait_listed(&H, "before", true, VH_TIMEOUT_MS));

        /* Leave SLACK fds, then take them with connections. */
        max = daemon_fds(NULL);
        assert_true(max > 0);
        assert_int_equal(prlimit(H.pid, RLIMIT_NOFILE, NULL, &old), 0);
        low = old;
        low.rlim_cur = (rlim_t)max + 1 + SLACK;
        assert_int_equal(prlimit(H.pid, RLIMIT_NOFILE, &low, NULL), 0);
        uint64_t deadline = vh_now_ms() + VH_TIMEOUT_MS;
        for (;;) {
                daemon_fds(&count);
                if ((rlim_t)count >= low.rlim_cur)
                        break; /* every fd number below the limit is taken */
                if (!vh_left(deadline))
                        fail_msg("could not use up the daemon's fds (%d of %llu)", count,
                                 (unsigned long long)low.rlim_cur);
                if (nheld < HOLD) {
                        int fd = vh_raw_connect(H.sock);
                        if (fd >= 0)
                                held[nheld++] = fd;
                }
                struct timespec ts = {0, 5000000};
                nanosleep(&ts, NULL);
        }

        assert_int_equal(vh_vm_add(&H, "starved", NULL), 0);
        /* The daemon saw it and could not open it. */
        if (!dz_wait_log(&H, VH_TIMEOUT_MS, "starved", "Too many open files", NULL)) {
                vh_dump_log(&H);
                fail_msg("the daemon did not try the new trigger file");
        }

        /* Give the fds back; the file stays untouched. */
        while (nheld > 0)
                close(held[--nheld]);
        assert_int_equal(prlimit(H.pid, RLIMIT_NOFILE, &old, NULL), 0);
        if (!dz_wait_listed(&H, "starved", true, VH_TIMEOUT_MS)) {
                vh_dump_log(&H);
                fail_msg("a trigger file seen while out of fds was never retried");
        }
        assert_true(dz_listed(&H, "before"));
        /* The log said it was transient. */
        assert_true(
            vh_file_has_line(H.log, "retrying trigger file (transient error)", "starved", (char *)NULL));
        assert_int_equal(dz_log_count(&H, "ignoring trigger file"), 0);

        /* A parse error, by contrast, is refused for good and says so. */
        assert_int_equal(dz_put(H.trig, "bad", "name=bad\nbogus=1\n"), 0);
        assert_true(
            dz_wait_log(&H, VH_TIMEOUT_MS, "ignoring trigger file (until it changes)", "bad:2: bogus", NULL));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_out_of_fds, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
