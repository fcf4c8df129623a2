/* SPDX-License-Identifier: MIT */
/* Hostile trigger files (issue 9, items 10, 12 and 9):
 *  - a file name with terminal escapes and a newline must not reach the log
 *    raw (no forged lines, no escape sequences on an operator's terminal);
 *  - a bad adapter option refuses the whole file, naming FILE:LINE: KEY,
 *    and nothing of the VM is attached or listed;
 *  - a trigger directory writable by others gets one warning. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "daemon/vmsigd_harness.h"
#include "test_disco_util.h"

static struct vh H;

#define EVIL "evil\x1b[2J\x1b]0;pwned\x07\nvmsigd: VM 'forged' appeared (forged): endpoint 9, driver qemu"

static void test_escaped_names(void **state)
{
        char *log;

        (void)state;
        /* A valid VM from a file with a hostile name, and a broken one. */
        assert_int_equal(dz_put(H.trig, EVIL, "name=evil\ndriver=stub\n"), 0);
        assert_int_equal(dz_put(H.trig, EVIL "-broken", "garbage\n"), 0);
        assert_true(dz_wait_listed(&H, "evil", true, VH_TIMEOUT_MS));
        assert_true(dz_wait_log(&H, VH_TIMEOUT_MS, "ignoring trigger file", "-broken", NULL));
        assert_true(dz_wait_log(&H, VH_TIMEOUT_MS, "VM 'evil' appeared", NULL, NULL));

        log = vh_read_file(H.log);
        assert_non_null(log);
        for (const char *p = log; *p; p++)
                if ((unsigned char)*p < 0x20 && *p != '\n') {
                        unsigned c = (unsigned char)*p;
                        vh_dump_log(&H);
                        free(log);
                        fail_msg("a control character (0x%02x) reached the log", c);
                }
        /* The text may be there, escaped, but never as a line of its own. */
        if (strncmp(log, "vmsigd: VM 'forged'", 19) == 0 || strstr(log, "\nvmsigd: VM 'forged'") ||
            vh_count_lines(log, "evil\\x1b[2J\\x1b]0;pwned\\x07\\x0avmsigd: VM 'forged'") != 2) {
                vh_dump_log(&H);
                free(log);
                fail_msg("the hostile file name was not escaped in the log");
        }
        free(log);
}

static void test_bad_adapter_option(void **state)
{
        (void)state;
        /* memctx and input are fine; vmhost (attached last) is not. */
        assert_int_equal(dz_write(H.trig, ".half.tmp",
                                  "name=half\ndriver=stub\nmemctx_options=ram_mib=16\n"
                                  "vmhost_options=state=gone\n"),
                         0);
        {
                char a[192], b[192];
                snprintf(a, sizeof(a), "%s/.half.tmp", H.trig);
                snprintf(b, sizeof(b), "%s/half.vm", H.trig);
                assert_int_equal(rename(a, b), 0);
        }
        /* A good VM after it: once it is listed, half.vm was dealt with. */
        assert_int_equal(vh_vm_add(&H, "good", NULL), 0);
        assert_true(dz_wait_listed(&H, "good", true, VH_TIMEOUT_MS));
        if (!vh_file_has_line(H.log, "half.vm:4: vmhost_options: state", (char *)NULL)) {
                vh_dump_log(&H);
                fail_msg("the refusal does not name FILE:LINE: KEY");
        }
        if (dz_listed(&H, "half") || dz_log_count(&H, "VM 'half'") != 0) {
                vh_dump_log(&H);
                fail_msg("a file with a bad adapter option was half-attached");
        }
        assert_int_equal(dz_log_count(&H, "half.vm"), 1);

        /* Fixed in place: served whole. */
        assert_int_equal(
            vh_vm_add_as(&H, "half.vm", "half", "memctx_options=ram_mib=16\nvmhost_options=state=paused\n"),
            0);
        assert_true(dz_wait_listed(&H, "half", true, VH_TIMEOUT_MS));
        char out[4096];
        assert_int_equal(vh_vmsigctl(&H, -1, out, sizeof(out), "list", (char *)NULL), 0);
        assert_non_null(strstr(out, "memctx,input,vmhost"));
}

static void test_writable_dir_warning(void **state)
{
        (void)state;
        assert_int_equal(chmod(H.trig, 0777), 0);
        assert_int_equal(kill(H.pid, SIGHUP), 0);
        if (!dz_wait_log(&H, VH_TIMEOUT_MS, H.trig, "mode 0777", "writable by group or others")) {
                vh_dump_log(&H);
                fail_msg("no warning about a world-writable trigger directory");
        }
        /* Once, not at every SIGHUP. */
        assert_int_equal(kill(H.pid, SIGHUP), 0);
        assert_int_equal(vh_vm_add(&H, "marker", NULL), 0);
        assert_true(dz_wait_listed(&H, "marker", true, VH_TIMEOUT_MS));
        assert_true(dz_wait_log(&H, VH_TIMEOUT_MS, "rescanned", "(SIGHUP)", NULL));
        assert_int_equal(dz_log_count(&H, "writable by group or others"), 1);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            vh_unit_test(test_escaped_names, &H),
            vh_unit_test(test_bad_adapter_option, &H),
            vh_unit_test(test_writable_dir_warning, &H),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
