/* SPDX-License-Identifier: MIT */
/* Issue 9 item 6: at its fd limit vmsigd must not spin. The daemon's soft
 * RLIMIT_NOFILE is lowered from outside (prlimit on its pid) to the first
 * fd number it does not use, so every accept fails with EMFILE while
 * clients keep connecting. Over a 2 s window of that its CPU time must stay
 * tiny (a level-triggered listener that is never drained burns the whole
 * window); waiting clients are told why (ERROR naming the fd shortage), the
 * episode is logged once, and once fds are back new clients are served. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "daemon/vmsigd_harness.h"
#include "test_srv_fds.h"

#define WINDOW_MS   2000
#define CPU_BOUND_S 0.3
#define MAX_WAITING 16

static struct vh H;
static struct rlimit old_lim;
static bool lowered;

static int teardown(void **state)
{
        (void)state;
        if (lowered && H.pid > 0 && !H.reaped)
                prlimit(H.pid, RLIMIT_NOFILE, &old_lim, NULL);
        lowered = false;
        vh_teardown(&H);
        return 0;
}

/* Connect and send HELLO without waiting for the answer. */
static int connect_hello(void)
{
        uint8_t buf[WIRE_FRAME_MAX];
        int fd = vh_raw_connect(H.sock);
        ssize_t n;

        if (fd < 0)
                return fd;
        n = wire_encode_hello(buf, sizeof(buf), "starved");
        /* EPIPE is fine: vmsigd may have answered and closed already. */
        int r = n < 0 ? -EIO : vh_raw_send(fd, buf, (size_t)n);
        if (r < 0 && r != -EPIPE && r != -ECONNRESET) {
                close(fd);
                return -EIO;
        }
        return fd;
}

static void test_no_spin_at_fd_limit(void **state)
{
        (void)state;
        if (geteuid() != 0)
                skip(); /* lowering another process's fd limit needs root */
        vh_must_start(&H, NULL);
        struct vmsig_client *c = vh_client(&H, "before");
        assert_non_null(c);
        assert_int_equal(vh_subscribe(c, 0, 1ull << VMSIG_EV_ROSTER, NULL, NULL), 0);

        int lim = srv_first_free_fd(H.pid);
        assert_true(lim > 0);
        assert_int_equal(srv_set_nofile(H.pid, (rlim_t)lim, &old_lim), 0);
        lowered = true;

        int waiting[MAX_WAITING];
        unsigned nw = 0;
        for (; nw < 4; nw++)
                assert_true((waiting[nw] = connect_hello()) >= 0);

        double cpu0 = srv_cpu_seconds(H.pid);
        assert_true(cpu0 >= 0);
        /* Keep knocking during the window: the listener stays busy. */
        for (int slice = 0; slice < 10; slice++) {
                srv_idle_ms(WINDOW_MS / 10);
                if (nw < MAX_WAITING) {
                        int fd = connect_hello();
                        if (fd >= 0)
                                waiting[nw++] = fd;
                }
        }
        double cpu = srv_cpu_seconds(H.pid) - cpu0;
        print_message("vmsigd CPU over %d ms at its fd limit: %.3f s (%u clients knocking)\n", WINDOW_MS, cpu,
                      nw);
        if (cpu >= CPU_BOUND_S)
                fail_msg("vmsigd burned %.3f s of CPU in %d ms at its fd limit (spinning)", cpu, WINDOW_MS);

        /* Each waiting client learns why it is not served. */
        for (unsigned i = 0; i < nw; i++) {
                struct wire_frame f;
                int r = vh_raw_frame(waiting[i], &f, VH_TIMEOUT_MS);
                if (r != 1 || f.type != WIRE_ERROR)
                        fail_msg("client %u at the fd limit: no ERROR (read %d, type %u)", i, r,
                                 r == 1 ? f.type : 0);
                assert_int_equal(f.u.error.code, -EMFILE);
                assert_non_null(strstr(f.u.error.msg, "out of file descriptors"));
                assert_true(vh_raw_ends(waiting[i], VH_TIMEOUT_MS));
                close(waiting[i]);
        }
        /* The client from before was not disturbed. */
        assert_int_equal(vh_subscribe(c, 0, 1ull << VMSIG_EV_STATUS, NULL, NULL), 0);

        /* fds back: served again, and the episode has one line each way. */
        assert_int_equal(prlimit(H.pid, RLIMIT_NOFILE, &old_lim, NULL), 0);
        lowered = false;
        struct vmsig_client *after = vh_client(&H, "after");
        assert_non_null(after);
        assert_int_equal(vh_subscribe(after, 0, 1ull << VMSIG_EV_ROSTER, NULL, NULL), 0);
        char *log = vh_read_file(H.log);
        assert_non_null(log);
        unsigned starts = vh_count_lines(log, "cannot accept connections");
        unsigned ends = vh_count_lines(log, "accepting connections again");
        if (starts != 1 || ends != 1 || !strstr(log, "connections refused meanwhile")) {
                vh_dump_log(&H);
                fail_msg("want one start and one end line for the fd episode, got %u and %u", starts, ends);
        }
        free(log);
        vh_client_close(after);
        vh_client_close(c);
        assert_int_equal(vh_stop(&H, VH_TIMEOUT_MS), 0);
}

/* Below every fd vmsigd holds (limit 3): even its spare fd cannot make room
 * for an accept, so nobody can be told; the listener must pause instead of
 * spinning, the clients wait, and they are served once fds are back. */
static void test_no_spin_without_spare(void **state)
{
        (void)state;
        if (geteuid() != 0)
                skip();
        vh_must_start(&H, NULL);
        assert_int_equal(srv_set_nofile(H.pid, 3, &old_lim), 0);
        lowered = true;

        int waiting[4];
        for (unsigned i = 0; i < 4; i++)
                assert_true((waiting[i] = connect_hello()) >= 0);
        double cpu0 = srv_cpu_seconds(H.pid);
        assert_true(cpu0 >= 0);
        srv_idle_ms(WINDOW_MS);
        double cpu = srv_cpu_seconds(H.pid) - cpu0;
        print_message("vmsigd CPU over %d ms with no fd to spare: %.3f s\n", WINDOW_MS, cpu);
        if (cpu >= CPU_BOUND_S)
                fail_msg("vmsigd burned %.3f s of CPU in %d ms at its fd limit (spinning)", cpu, WINDOW_MS);

        assert_int_equal(prlimit(H.pid, RLIMIT_NOFILE, &old_lim, NULL), 0);
        lowered = false;
        for (unsigned i = 0; i < 4; i++) {
                struct wire_frame f;
                int r = vh_raw_frame(waiting[i], &f, VH_TIMEOUT_MS);
                if (r != 1 || f.type != WIRE_WELCOME)
                        fail_msg("client %u waiting through the shortage: no WELCOME (read %d, type %u)", i,
                                 r, r == 1 ? f.type : 0);
                close(waiting[i]);
        }
        char *log = vh_read_file(H.log);
        assert_non_null(log);
        assert_int_equal(vh_count_lines(log, "cannot accept connections"), 1);
        free(log);
        assert_int_equal(vh_stop(&H, VH_TIMEOUT_MS), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_teardown(test_no_spin_at_fd_limit, teardown),
            cmocka_unit_test_teardown(test_no_spin_without_spare, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
