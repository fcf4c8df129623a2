/* SPDX-License-Identifier: MIT */
/* Issue 9, "the protocol must tell the truth": WELCOME `queue_bytes` is the
 * per-connection queue bound vmsigd applies, which `[limits] queue_bytes`
 * configures (it used to be a fixed 256 KiB whatever the config said). */
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

static uint32_t welcome_queue_bytes(const char *extra)
{
        struct wire_welcome w;

        vh_must_start(&H, extra);
        int fd = vh_raw_hello(H.sock, "raw", &w, NULL);
        assert_true(fd >= 0);
        close(fd);
        /* The client library reports the same number. */
        struct vmsig_client *c = vh_client(&H, "api");
        assert_non_null(c);
        const struct vmsig_client_info *info = vmsig_client_get_info(c);
        assert_non_null(info);
        assert_int_equal(info->queue_bytes, w.queue_bytes);
        vh_client_close(c);
        assert_int_equal(vh_stop(&H, VH_TIMEOUT_MS), 0);
        return w.queue_bytes;
}

static void test_default(void **state)
{
        (void)state;
        assert_int_equal(welcome_queue_bytes(NULL), 1u << 20);
}

static void test_configured(void **state)
{
        (void)state;
        assert_int_equal(welcome_queue_bytes("[limits]\nqueue_bytes = 3M\n"), 3u << 20);
        assert_int_equal(welcome_queue_bytes("[limits]\nqueue_bytes = 64K\n"), 64u << 10);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_teardown(test_default, teardown),
            cmocka_unit_test_teardown(test_configured, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
