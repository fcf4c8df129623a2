/* SPDX-License-Identifier: MIT */
/* Issue 9 item 11: a non-admitted uid opening thousands of connections must
 * not flood the audit and the log. A child running as uid 65534 connects
 * and hangs up as fast as it can for a few seconds; meanwhile an admitted
 * client is served. The audit and the log hold a handful of full refusal
 * records for that uid plus summary lines ("uid 65534: N more refused
 * connections in the last 10 s suppressed"), and the full records plus the
 * summarised counts add up to every connection the child made. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "daemon/vmsigd_harness.h"

#define OTHER_UID      65534
#define FLOOD_MS       3000
#define MAX_FULL_LINES 20 /* a few per 10 s window, whatever the rate */

static struct vh H;

static int teardown(void **state)
{
        (void)state;
        vh_teardown(&H);
        return 0;
}

/* In the child: connect/close until the deadline; the count on fd out. */
static void flood(const char *sock, int out)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        uint64_t deadline = vh_now_ms() + FLOOD_MS;
        unsigned long n = 0;

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
        while (vh_left(deadline)) {
                int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
                if (fd < 0)
                        break;
                if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
                        n++;
                else if (errno == EAGAIN) /* backlog full: let the daemon catch up */
                        poll(NULL, 0, 1);
                close(fd);
        }
        (void)!write(out, &n, sizeof(n));
}

/* Sum of N in "N more refused connections" over the lines with needle. */
static unsigned long summarised(const char *text, const char *needle)
{
        unsigned long sum = 0;

        for (const char *line = text; line && *line;) {
                const char *eol = strchrnul(line, '\n');
                const char *hit = memmem(line, (size_t)(eol - line), needle, strlen(needle));
                if (hit) {
                        const char *num = hit + strlen(needle);
                        sum += strtoul(num, NULL, 10);
                }
                line = *eol ? eol + 1 : eol;
        }
        return sum;
}

static void test_refusal_flood_is_summarised(void **state)
{
        (void)state;
        if (geteuid() != 0)
                skip(); /* needs a second uid */
        vh_must_start(&H, NULL);

        int pfd[2];
        assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                close(pfd[0]);
                if (vh_become(OTHER_UID, OTHER_UID) < 0)
                        _exit(126);
                flood(H.sock, pfd[1]);
                _exit(0);
        }
        close(pfd[1]);

        /* Served meanwhile: an admitted control sees a VM come. */
        struct vmsig_client *c = vh_client(&H, "admitted");
        assert_non_null(c);
        assert_int_equal(vh_subscribe(c, 0, 1ull << VMSIG_EV_ROSTER, NULL, NULL), 0);
        assert_int_equal(vh_vm_add(&H, "alpha", NULL), 0);
        assert_true(vh_wait_vm(c, "alpha") != 0);

        unsigned long made = 0;
        struct pollfd p = {.fd = pfd[0], .events = POLLIN};
        assert_int_equal(poll(&p, 1, FLOOD_MS + VH_TIMEOUT_MS), 1);
        assert_int_equal(read(pfd[0], &made, sizeof(made)), (ssize_t)sizeof(made));
        close(pfd[0]);
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
        print_message("uid %d made %lu connections in %d ms\n", OTHER_UID, made, FLOOD_MS);
        assert_true(made >= 200);

        /* Still served after the flood. */
        assert_int_equal(vh_subscribe(c, 0, 1ull << VMSIG_EV_STATUS, NULL, NULL), 0);

        /* Every refusal is accounted for, in full or in a summary, once the
         * windows have ended (10 s each). */
        uint64_t deadline = vh_now_ms() + 30000;
        char *audit = NULL;
        unsigned long full = 0, sum = 0;
        for (;;) {
                free(audit);
                audit = vh_read_file(H.audit);
                assert_non_null(audit);
                full = vh_count_lines(audit, "not admitted");
                sum = summarised(audit, "uid 65534: ");
                if (full + sum >= made || !vh_left(deadline))
                        break;
                poll(NULL, 0, 100);
        }
        char *log = vh_read_file(H.log);
        assert_non_null(log);
        unsigned audit_lines = vh_count_lines(audit, "uid=65534");
        unsigned log_lines = vh_count_lines(log, "uid 65534");
        unsigned long log_sum = summarised(log, "uid 65534: ");
        print_message("audit: %u lines for uid 65534 (%lu in full, %lu summarised); log: %u lines (%lu "
                      "summarised), %zu bytes\n",
                      audit_lines, full, sum, log_lines, log_sum, strlen(log));
        if (audit_lines > MAX_FULL_LINES || log_lines > MAX_FULL_LINES) {
                fail_msg("%lu refused connections left %u audit and %u log lines for uid %d", made,
                         audit_lines, log_lines, OTHER_UID);
        }
        assert_true(vh_count_lines(audit, "more refused connections in the last 10 s suppressed") >= 1);
        assert_true(vh_count_lines(log, "more refused connections in the last 10 s suppressed") >= 1);
        if (full + sum != made)
                fail_msg("%lu connections, but the audit has %lu in full and %lu summarised", made, full,
                         sum);
        assert_true(log_sum == sum);
        free(audit);
        free(log);
        vh_client_close(c);
        assert_int_equal(vh_stop(&H, VH_TIMEOUT_MS), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_teardown(test_refusal_flood_is_summarised, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
