/* SPDX-License-Identifier: MIT */
/* vmsigd integration: SIGTERM with 16 connected controls, one holding a
 * lease. Every client gets ERROR -ESHUTDOWN and then the end of the stream;
 * vmsigd exits 0 within a few seconds and removes its socket file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "vmsigd_harness.h"

#define N_API 8
#define N_RAW 8 /* 16 in all: the default conns_per_uid */

static struct vh H;

static int teardown(void **state)
{
        (void)state;
        vh_teardown(&H);
        return 0;
}

static void test_sigterm_with_16_controls(void **state)
{
        (void)state;
        struct vmsig_client *api[N_API];
        int raw[N_RAW];

        vh_must_start(&H, NULL);
        for (int i = 0; i < N_API; i++) {
                char name[16];
                snprintf(name, sizeof(name), "api%d", i);
                api[i] = vh_client(&H, name);
                assert_non_null(api[i]);
        }
        assert_int_equal(vh_subscribe(api[0], 0, VH_ALL_UP_KINDS, NULL, NULL), 0);
        assert_int_equal(vh_vm_add(&H, "alpha", NULL), 0);
        uint32_t ep = vh_wait_vm(api[0], "alpha");
        assert_true(ep != 0);
        /* One of them holds a lease (and the watcher saw the grant). */
        assert_int_equal(vh_lease(api[1], ep, VMSIG_LEASE_INPUT, true), 0);
        struct vh_match mg = {.kind = VMSIG_EV_LEASE_GRANT, .endpoint = ep};
        assert_int_equal(vh_wait_event(api[0], &mg, NULL, NULL, NULL, VH_TIMEOUT_MS), 0);
        for (int i = 0; i < N_RAW; i++) {
                char name[16];
                struct wire_welcome w;
                snprintf(name, sizeof(name), "raw%d", i);
                raw[i] = vh_raw_hello(H.sock, name, &w, NULL);
                assert_true(raw[i] >= 0);
        }

        uint64_t t0 = vh_now_ms();
        int code = vh_stop(&H, 5000);
        uint64_t took = vh_now_ms() - t0;
        if (code != 0) {
                vh_dump_log(&H);
                fail_msg("vmsigd exit %d after SIGTERM (status 0x%x, %llu ms)", code, H.status,
                         (unsigned long long)took);
        }
        assert_true(took < 5000);
        assert_int_equal(access(H.sock, F_OK), -1);
        assert_int_equal(errno, ENOENT);

        /* API clients: whatever was queued, then the daemon's ERROR. */
        for (int i = 0; i < N_API; i++) {
                int r;
                do {
                        struct vmsig_event ev;
                        int fd = -1;
                        r = vmsig_client_recv_wait(api[i], &ev, &fd, NULL, VH_TIMEOUT_MS);
                        if (fd >= 0)
                                close(fd);
                } while (r >= 0);
                const struct vmsig_client_error *e = vmsig_client_last_error(api[i]);
                if (r != -ESHUTDOWN || !e->from_daemon || e->code != -ESHUTDOWN)
                        fail_msg("client api%d: %d (%s, from daemon %d): expected the ERROR -ESHUTDOWN", i, r,
                                 e->msg, e->from_daemon);
                /* Sticky: the connection is over. */
                struct vmsig_event ev;
                int fd = -1;
                assert_int_equal(vmsig_client_recv(api[i], &ev, &fd, NULL), -ESHUTDOWN);
                vh_client_close(api[i]);
        }
        /* Raw clients: exactly ERROR -ESHUTDOWN, then EOF. */
        for (int i = 0; i < N_RAW; i++) {
                struct wire_frame f;
                int r = vh_raw_frame(raw[i], &f, VH_TIMEOUT_MS);
                if (r != 1 || f.type != WIRE_ERROR)
                        fail_msg("raw%d: %d type %u instead of ERROR", i, r, r == 1 ? f.type : 0);
                assert_int_equal(f.u.error.code, -ESHUTDOWN);
                assert_true(strlen(f.u.error.msg) > 0);
                assert_true(vh_raw_ends(raw[i], VH_TIMEOUT_MS));
                close(raw[i]);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_teardown(test_sigterm_with_16_controls, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
