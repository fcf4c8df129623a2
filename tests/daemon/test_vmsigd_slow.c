/* SPDX-License-Identifier: MIT */
/* vmsigd integration: a control that stops reading. A raw client
 * subscribes to everything and never reads (tiny SO_RCVBUF); a normal
 * client reads; a third one, holding the power lease, pauses and resumes
 * the VM in a loop (must-deliver STATUS events). The slow one must be
 * disconnected -- when it finally reads it finds an ERROR "too slow"
 * (-ENOBUFS) and then the end of the stream -- while the normal one got
 * every STATUS, in order. [limits] queue_bytes = 64K. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "vmsigd_harness.h"

#define MAX_COMMANDS 40000
#define BATCH        64

static struct vh H;

static int setup(void **state)
{
        (void)state;
        if (vh_start(&H, "[limits]\nqueue_bytes = 64K\n") < 0) {
                vh_teardown(&H);
                return -1;
        }
        return 0;
}

static int teardown(void **state)
{
        (void)state;
        vh_teardown(&H);
        return 0;
}

struct status_log {
        uint32_t ep;
        unsigned n;          /* live STATUS of ep */
        uint8_t expect_next; /* run state the next one must carry */
        bool out_of_order;
        uint64_t last_seq[256]; /* per priority: higher priority may overtake */
        bool seq_backwards;
};

static void log_status(const struct vmsig_event *ev, int fd, void *ud)
{
        struct status_log *l = ud;

        if (fd >= 0)
                close(fd);
        if (!(ev->hdr.flags & VMSIG_F_RETAINED)) {
                /* FIFO within one priority; across priorities the order is
                 * (priority, seq) at dispatch time, so no global check. */
                if (ev->hdr.seq <= l->last_seq[ev->hdr.priority])
                        l->seq_backwards = true;
                l->last_seq[ev->hdr.priority] = ev->hdr.seq;
        }
        if (ev->hdr.kind != VMSIG_EV_STATUS || ev->hdr.endpoint != l->ep ||
            (ev->hdr.flags & VMSIG_F_RETAINED))
                return;
        if (ev->body[0] != l->expect_next)
                l->out_of_order = true;
        l->expect_next = l->expect_next == VMSIG_RUN_PAUSED ? VMSIG_RUN_RUNNING : VMSIG_RUN_PAUSED;
        l->n++;
}

/* Has vmsigd decided to drop the slow control? Its log says so at once;
 * the socket itself stays open until the client reads its ERROR (or a grace
 * period ends), so a hang-up is not the signal to wait for. */
static bool daemon_log_has(const char *needle)
{
        char *log = vh_read_file(H.log);
        bool yes = log && strstr(log, needle);

        free(log);
        return yes;
}

/* The slow control is dropped once vmsigd logs log_needle: either the hard
 * limit (its bus queue overflows) or the soft one (too much held for too
 * long). Load stops after max_cmds commands; then we wait for the tick. */
static void run_slow(const char *log_needle, unsigned max_cmds, const char *error_needle)
{
        struct vmsig_client *n = vh_client(&H, "normal");
        struct vmsig_client *p = vh_client(&H, "driver");
        assert_non_null(n);
        assert_non_null(p);
        assert_int_equal(vh_subscribe(n, 0, 1ull << VMSIG_EV_ROSTER, NULL, NULL), 0);
        assert_int_equal(vh_vm_add(&H, "alpha", NULL), 0);
        uint32_t ep = vh_wait_vm(n, "alpha");
        assert_true(ep != 0);
        struct status_log log = {.ep = ep, .expect_next = VMSIG_RUN_PAUSED};
        assert_int_equal(vh_subscribe(n, 0, VH_ALL_UP_KINDS, log_status, &log), 0);

        /* The slow one: small receive buffer, subscribes, reads the REPLY,
         * then never reads again. */
        int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(s >= 0);
        int rcv = 4096;
        assert_int_equal(setsockopt(s, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv)), 0);
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", H.sock);
        assert_int_equal(connect(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
        uint8_t buf[WIRE_FRAME_MAX];
        ssize_t len = wire_encode_hello(buf, sizeof(buf), "slowpoke");
        assert_int_equal(vh_raw_send(s, buf, (size_t)len), 0);
        struct wire_frame f;
        assert_int_equal(vh_raw_frame(s, &f, VH_TIMEOUT_MS), 1);
        assert_int_equal(f.type, WIRE_WELCOME);
        len = wire_encode_subscribe(buf, sizeof(buf), 1, 0, VH_ALL_UP_KINDS);
        assert_int_equal(vh_raw_send(s, buf, (size_t)len), 0);
        for (;;) {
                assert_int_equal(vh_raw_frame(s, &f, VH_TIMEOUT_MS), 1);
                if (f.type == WIRE_REPLY)
                        break;
        }
        assert_int_equal(f.u.reply.result, 0);

        /* Pause/resume until the daemon gives up on the slow one. */
        assert_int_equal(vh_lease(p, ep, VMSIG_LEASE_POWER, true), 0);
        unsigned sent = 0;
        while (!daemon_log_has(log_needle) && sent < max_cmds) {
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
                        assert_int_equal(ack.result, 0);
                }
                /* The reader keeps up: everything acknowledged so far. */
                while (log.n < sent) {
                        struct vh_match m = {.kind = VMSIG_EV_STATUS, .endpoint = ep};
                        int r = vh_wait_event(n, &m, NULL, log_status, &log, VH_TIMEOUT_MS);
                        if (r < 0)
                                fail_msg("normal client: %u of %u STATUS: %s", log.n, sent, strerror(-r));
                }
        }
        for (int waited = 0; !daemon_log_has(log_needle); waited += 50) {
                if (waited > 5000)
                        fail_msg("the slow control was not disconnected (%s) after %u must-deliver events",
                                 log_needle, sent);
                usleep(50000);
        }
        assert_int_equal(log.n, sent);
        assert_false(log.out_of_order);
        assert_false(log.seq_backwards);
        assert_true(vmsig_client_last_error(n)->code == 0);

        /* Now the slow one reads: events, then ERROR -ENOBUFS "too slow",
         * then the end. */
        unsigned frames = 0;
        for (;;) {
                int r = vh_raw_frame(s, &f, VH_TIMEOUT_MS);
                if (r != 1) {
                        vh_dump_log(&H);
                        fail_msg("slow client: after %u frames %s instead of an ERROR frame "
                                 "(BUG if EOF: the disconnect reason was never delivered)",
                                 frames, r == 0 ? "EOF" : strerror(-r));
                }
                frames++;
                if (f.type == WIRE_ERROR)
                        break;
                assert_int_equal(f.type, WIRE_EVENT);
        }
        if (f.u.error.code != -ENOBUFS || !strstr(f.u.error.msg, error_needle))
                fail_msg("slow client ERROR %d '%s'", f.u.error.code, f.u.error.msg);
        assert_true(vh_raw_ends(s, VH_TIMEOUT_MS));
        close(s);

        /* The others are unaffected. */
        assert_int_equal(vh_lease(p, ep, VMSIG_LEASE_POWER, false), 0);
        vh_client_close(p);
        vh_client_close(n);
}

static void test_slow_control_disconnected(void **state)
{
        run_slow("'slowpoke' too slow", MAX_COMMANDS, "too slow");
}

/* Soft limit: 64 KiB held for 1 s. ~750 KB of STATUS frames, and the
 * ROSTER "changed" each run-state change brings, fill the socket (~200 KB)
 * and leave far more than 64 KiB held, yet stay well under the 1 MiB hard
 * limit, so only the soft limit can fire. */
static int setup_soft(void **state)
{
        if (vh_start(&H, "[limits]\nqueue_soft_bytes = 64K\nqueue_soft_seconds = 1\n") < 0) {
                vh_teardown(&H);
                return -1;
        }
        return 0;
}

static void test_soft_limit_disconnects(void **state)
{
        run_slow("(soft limit", 2000, "soft limit");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_slow_control_disconnected, setup, teardown),
            cmocka_unit_test_setup_teardown(test_soft_limit_disconnects, setup_soft, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
