/* SPDX-License-Identifier: MIT */
/* Issue 9 item 12: a slow consumer that resumes reading only after vmsigd
 * has given up on it (and after the 5 s grace it used to allow) must still
 * find the ERROR that explains the disconnect, then the end of the stream
 * -- not a bare EOF. A raw client subscribes to everything and stops
 * reading; a driver pauses and resumes a stub VM until vmsigd drops the
 * slow one (hard limit, then soft limit); the test waits until vmsigd has
 * hung up on it, and only then reads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "daemon/vmsigd_harness.h"

#define BATCH 64

static struct vh H;

static int teardown(void **state)
{
        (void)state;
        vh_teardown(&H);
        return 0;
}

static bool log_has(const char *needle)
{
        char *log = vh_read_file(H.log);
        bool yes = log && strstr(log, needle);

        free(log);
        return yes;
}

static void run(const char *extra, const char *log_needle, unsigned max_cmds, const char *error_needle)
{
        vh_must_start(&H, extra);
        struct vmsig_client *p = vh_client(&H, "driver");
        assert_non_null(p);
        assert_int_equal(vh_subscribe(p, 0, 1ull << VMSIG_EV_ROSTER, NULL, NULL), 0);
        assert_int_equal(vh_vm_add(&H, "alpha", NULL), 0);
        uint32_t ep = vh_wait_vm(p, "alpha");
        assert_true(ep != 0);

        int s = vh_raw_connect(H.sock);
        assert_true(s >= 0);
        uint8_t buf[WIRE_FRAME_MAX];
        struct wire_frame f;
        ssize_t len = wire_encode_hello(buf, sizeof(buf), "slowpoke");
        assert_int_equal(vh_raw_send(s, buf, (size_t)len), 0);
        assert_int_equal(vh_raw_frame(s, &f, VH_TIMEOUT_MS), 1);
        assert_int_equal(f.type, WIRE_WELCOME);
        len = wire_encode_subscribe(buf, sizeof(buf), 1, 0, VH_ALL_UP_KINDS);
        assert_int_equal(vh_raw_send(s, buf, (size_t)len), 0);
        do
                assert_int_equal(vh_raw_frame(s, &f, VH_TIMEOUT_MS), 1);
        while (f.type != WIRE_REPLY);
        assert_int_equal(f.u.reply.result, 0);

        /* From here the slow one reads nothing until vmsigd hangs up. */
        assert_int_equal(vh_lease(p, ep, VMSIG_LEASE_POWER, true), 0);
        unsigned sent = 0;
        while (!log_has(log_needle) && sent < max_cmds) {
                uint64_t corrs[BATCH];
                for (unsigned i = 0; i < BATCH; i++, sent++) {
                        struct vmsig_event ev;
                        struct vmsig_power_body b = {.op = sent % 2 ? VMSIG_POWER_RESUME : VMSIG_POWER_PAUSE};
                        vmsig_event_init(&ev, VMSIG_EV_CMD_POWER, ep, VMSIG_SRC_VMHOST);
                        vmsig_event_set_body(&ev, &b, sizeof(b));
                        int r;
                        while ((r = vmsig_client_send(p, &ev, &corrs[i])) == -EAGAIN)
                                assert_int_equal(vmsig_client_flush(p, VH_TIMEOUT_MS), 0);
                        assert_int_equal(r, 0);
                }
                for (unsigned i = 0; i < BATCH; i++) {
                        struct vmsig_ack_body ack;
                        assert_int_equal(vh_wait_ack(p, corrs[i], &ack, NULL, NULL), 0);
                }
        }

        /* Wait for the hang-up itself: vmsigd closed its end (RDHUP shows
         * while our unread data is still queued). The old code held the
         * ERROR in its own buffer for a 5 s grace and then closed. */
        uint64_t deadline = vh_now_ms() + 3 * VH_TIMEOUT_MS;
        for (;;) {
                struct pollfd pfd = {.fd = s, .events = POLLRDHUP};
                int r = poll(&pfd, 1, vh_left(deadline));
                if (r == 1 && (pfd.revents & (POLLRDHUP | POLLHUP)))
                        break;
                if (r == 0) {
                        vh_dump_log(&H);
                        fail_msg("vmsigd did not drop the slow control (%u commands sent)", sent);
                }
        }
        assert_true(log_has(log_needle));

        /* Resumed: queued events, then the ERROR saying why, then the end. */
        unsigned frames = 0;
        for (;;) {
                int r = vh_raw_frame(s, &f, VH_TIMEOUT_MS);
                if (r != 1) {
                        vh_dump_log(&H);
                        fail_msg("slow client resumed after the hang-up: %s after %u frames, no ERROR",
                                 r == 0 ? "EOF" : strerror(-r), frames);
                }
                frames++;
                if (f.type == WIRE_ERROR)
                        break;
                assert_int_equal(f.type, WIRE_EVENT);
        }
        print_message("slow client read %u frames, then ERROR %d '%s'\n", frames, f.u.error.code,
                      f.u.error.msg);
        if (f.u.error.code != -ENOBUFS || !strstr(f.u.error.msg, error_needle))
                fail_msg("slow client ERROR %d '%s'", f.u.error.code, f.u.error.msg);
        assert_true(vh_raw_ends(s, VH_TIMEOUT_MS));
        close(s);
        vh_client_close(p);
        assert_int_equal(vh_stop(&H, VH_TIMEOUT_MS), 0);
}

static void test_hard_limit_error_survives(void **state)
{
        (void)state;
        run("[limits]\nqueue_bytes = 64K\n", "'slowpoke' too slow", 40000, "too slow");
}

static void test_soft_limit_error_survives(void **state)
{
        (void)state;
        /* A hard limit far above: each pause/resume queues a STATUS and a
         * ROSTER change, and only the soft limit may end this one. */
        run("[limits]\nqueue_bytes = 8M\nqueue_soft_bytes = 64K\nqueue_soft_seconds = 1\n", "(soft limit",
            3000, "soft limit");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_teardown(test_hard_limit_error_survives, teardown),
            cmocka_unit_test_teardown(test_soft_limit_error_survives, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
