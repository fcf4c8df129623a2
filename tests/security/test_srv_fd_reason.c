/* SPDX-License-Identifier: MIT */
/* Issue 9 item 12: when vmsigd runs out of fds while building a MEMCTX
 * frame (the dup of the RAM fd fails), the control must be told that, not
 * "too slow". The daemon's soft RLIMIT_NOFILE is lowered from outside to
 * the first fd number it does not use; a connected control then subscribes
 * to MEMCTX, whose retained replay needs a dup. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "daemon/vmsigd_harness.h"
#include "test_srv_fds.h"

static struct vh H;
static struct rlimit old_lim;
static bool lowered;

static void see_memctx(const struct vmsig_event *ev, int fd, void *ud)
{
        if (ev->hdr.kind == VMSIG_EV_MEMCTX && fd >= 0 && ev->body[offsetof(struct vmsig_memctx_body, valid)])
                *(bool *)ud = true;
        if (fd >= 0)
                close(fd);
}

static int teardown(void **state)
{
        (void)state;
        if (lowered && H.pid > 0 && !H.reaped)
                prlimit(H.pid, RLIMIT_NOFILE, &old_lim, NULL);
        lowered = false;
        vh_teardown(&H);
        return 0;
}

static void test_memctx_dup_failure_names_fds(void **state)
{
        (void)state;
        if (geteuid() != 0)
                skip(); /* lowering another process's fd limit needs root */
        vh_must_start(&H, NULL);
        struct vmsig_client *c = vh_client(&H, "watcher");
        assert_non_null(c);
        assert_int_equal(vh_subscribe(c, 0, 1ull << VMSIG_EV_ROSTER, NULL, NULL), 0);
        assert_int_equal(vh_vm_add(&H, "alpha", NULL), 0);
        uint32_t ep = vh_wait_vm(c, "alpha");
        assert_true(ep != 0);
        /* The VM has a valid memory context (with its fd) to replay. */
        struct vh_match m = {.kind = VMSIG_EV_MEMCTX, .endpoint = ep, .memctx_valid = true};
        bool got = false;
        assert_int_equal(vh_subscribe(c, ep, 1ull << VMSIG_EV_MEMCTX, see_memctx, &got), 0);
        if (!got)
                assert_int_equal(vh_wait_event(c, &m, NULL, NULL, NULL, VH_TIMEOUT_MS), 0);

        struct wire_welcome w;
        int s = vh_raw_hello(H.sock, "starved", &w, NULL);
        assert_true(s >= 0);
        int lim = srv_first_free_fd(H.pid);
        assert_true(lim > 0);
        assert_int_equal(srv_set_nofile(H.pid, (rlim_t)lim, &old_lim), 0);
        lowered = true;

        uint8_t buf[WIRE_FRAME_MAX];
        ssize_t len = wire_encode_subscribe(buf, sizeof(buf), 7, ep, 1ull << VMSIG_EV_MEMCTX);
        assert_int_equal(vh_raw_send(s, buf, (size_t)len), 0);
        struct wire_frame f;
        for (;;) {
                int r = vh_raw_frame(s, &f, VH_TIMEOUT_MS);
                if (r != 1)
                        fail_msg("no ERROR after a MEMCTX that could not be built: %s",
                                 r == 0 ? "EOF" : strerror(-r));
                if (f.type == WIRE_ERROR)
                        break;
                if (f.type == WIRE_EVENT && f.u.event.hdr.kind == VMSIG_EV_MEMCTX)
                        fail_msg("a MEMCTX arrived although vmsigd had no fd to send");
        }
        print_message("ERROR %d '%s'\n", f.u.error.code, f.u.error.msg);
        if (f.u.error.code != -EMFILE || !strstr(f.u.error.msg, "out of file descriptors") ||
            strstr(f.u.error.msg, "too slow"))
                fail_msg("want ERROR -EMFILE naming the fd shortage, got %d '%s'", f.u.error.code,
                         f.u.error.msg);
        assert_true(vh_raw_ends(s, VH_TIMEOUT_MS));
        close(s);

        /* With fds back the same subscription works. */
        assert_int_equal(prlimit(H.pid, RLIMIT_NOFILE, &old_lim, NULL), 0);
        lowered = false;
        struct vmsig_client *again = vh_client(&H, "again");
        assert_non_null(again);
        got = false;
        assert_int_equal(vh_subscribe(again, ep, 1ull << VMSIG_EV_MEMCTX, see_memctx, &got), 0);
        assert_true(got); /* the retained MEMCTX, with its fd, ahead of the REPLY */
        vh_client_close(again);
        vh_client_close(c);
        assert_int_equal(vh_stop(&H, VH_TIMEOUT_MS), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_teardown(test_memctx_dup_failure_names_fds, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
