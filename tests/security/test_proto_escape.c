/* SPDX-License-Identifier: MIT */
/* Terminal escapes through vmsigctl (issue 9, item 10). A control's HELLO
 * name is its own choice and the daemon quotes it to others: in a lease
 * holder's description inside ACK messages. A holder named
 * "\x1b[2J\ngranted" must not clear an operator's screen nor forge a
 * "granted" line when the operator runs `vmsigctl lease` or `vmsigctl input`:
 * vmsigctl prints whatever came from vmsigd escaped. */
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

#define EVIL_NAME "\x1b[2J\ngranted"

/* Nothing a terminal would act on: no ESC (nor any other control byte but
 * the newlines vmsigctl itself prints), and no line forged by the name. */
static void assert_clean(const char *what, const char *out)
{
        for (const char *p = out; *p; p++)
                if ((unsigned char)*p < 0x20 && *p != '\n')
                        fail_msg("%s: raw control byte 0x%02x in the output:\n%s", what, (unsigned char)*p,
                                 out);
        for (const char *line = out; *line;) {
                if (strncmp(line, "granted", 7) == 0)
                        fail_msg("%s: a forged line starts with 'granted':\n%s", what, out);
                const char *eol = strchrnul(line, '\n');
                line = *eol ? eol + 1 : eol;
        }
}

static void test_lease_holder_name_is_escaped(void **state)
{
        (void)state;
        char out[8192];

        vh_must_start(&H, NULL);
        struct vmsig_client *watch = vh_client(&H, "watch");
        assert_non_null(watch);
        assert_int_equal(vh_subscribe(watch, 0, 1u << VMSIG_EV_ROSTER, NULL, NULL), 0);
        assert_int_equal(vh_vm_add(&H, "alpha", NULL), 0);
        uint32_t ep = vh_wait_vm(watch, "alpha");
        assert_true(ep != 0);

        struct vmsig_client *evil = vh_client(&H, EVIL_NAME);
        assert_non_null(evil);
        assert_int_equal(vh_lease(evil, ep, VMSIG_LEASE_INPUT, true), 0);

        /* The operator tries to take the lease: denied, naming the holder. */
        int code = vh_vmsigctl(&H, -1, out, sizeof(out), "lease", "alpha", "input", (char *)NULL);
        assert_int_equal(code, 4);
        assert_non_null(strstr(out, "held by"));
        assert_clean("vmsigctl lease", out);
        assert_non_null(strstr(out, "\\x1b[2J\\x0agranted")); /* shown, but inert */

        /* The same through a command that takes the lease on the way. */
        code = vh_vmsigctl(&H, -1, out, sizeof(out), "input", "alpha", "move", "100", "100", (char *)NULL);
        assert_int_equal(code, 4);
        assert_non_null(strstr(out, "held by"));
        assert_clean("vmsigctl input", out);

        /* watch already escaped; it still does (one helper for both). */
        vh_client_close(evil);
        vh_client_close(watch);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_teardown(test_lease_holder_name_is_escaped, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
