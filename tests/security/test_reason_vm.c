/* SPDX-License-Identifier: MIT */
/* Failures show up where the user looks (issue 12), against the real vmsigd,
 * vmsigctl and a real TCG guest:
 *  - a memctx that cannot be built (the RAM file named by ram= does not
 *    exist) shows its reason in `vmsigctl list` and in `vmsigctl read`'s
 *    error, and once (not per retry) in vmsigd's log;
 *  - a trigger file without ram= gets a working memctx: vmsigd asks QEMU
 *    for the RAM backend's file (qom-get mem-path);
 *  - `vmsigctl power reset` of a guest run with -no-reboot (QEMU's
 *    on_reboot=destroy) says the VM shut down instead, not "done", and the
 *    VM is then "gone".
 * One guest serves all three, in this order (the reset ends it). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include <inttypes.h>

#include "daemon/vmsigd_harness.h"
#include "test_disco_util.h"
#include "vm/vm_bus.h"
#include "vm/vm_guest.h"

#define BOOT_MS 120000 /* first memctx on a loaded box */

static struct vh H;
static struct vm_guest G = {.pid = -1};
static char Missing[256];

static int group_setup(void **state)
{
        (void)state;
        struct vm_guest_opts o = {.mem = "256M"}; /* vm_guest always passes -no-reboot */

        if (vm_guest_start(&G, "reason", &o) < 0 ||
            vm_guest_wait_serial(&G, "VMSIG-GUEST-READY", BOOT_MS) < 0) {
                fprintf(stderr, "the test guest did not boot\n");
                vm_guest_stop(&G);
                return -1;
        }
        snprintf(Missing, sizeof(Missing), "/dev/shm/" VM_GUEST_SHM_PREFIX "missing-%d-0", (int)getpid());
        unlink(Missing);
        if (vh_start(&H, NULL) < 0) {
                vm_guest_stop(&G);
                return -1;
        }
        return 0;
}

static int group_teardown(void **state)
{
        (void)state;
        vh_teardown(&H);
        vm_guest_stop(&G);
        return 0;
}

/* The `vmsigctl list` line of VM name into line ("" if not listed). */
static bool list_line(const char *name, char *line, size_t len)
{
        char out[16384];

        line[0] = '\0';
        if (vh_vmsigctl(&H, -1, out, sizeof(out), "list", (char *)NULL) != 0)
                return false;
        for (char *l = out; *l;) {
                char *eol = strchrnul(l, '\n');
                char id[16], vm[128];
                if (sscanf(l, "%15s %127s", id, vm) == 2 && strcmp(vm, name) == 0) {
                        snprintf(line, len, "%.*s", (int)(eol - l), l);
                        return true;
                }
                l = *eol ? eol + 1 : eol;
        }
        return false;
}

/* Poll `vmsigctl list` until name's line contains want (or lacks it). */
static bool wait_list(const char *name, const char *want, bool present, int timeout_ms, char *line,
                      size_t len)
{
        uint64_t deadline = vh_now_ms() + (uint64_t)timeout_ms;

        for (;;) {
                if (list_line(name, line, len) && (strstr(line, want) != NULL) == present)
                        return true;
                if (!vh_left(deadline))
                        return false;
                struct timespec ts = {0, 100000000};
                nanosleep(&ts, NULL);
        }
}

static void put_trigger(const char *ram)
{
        char text[1024];

        snprintf(text, sizeof(text), "name=rv\ndriver=qemu\nqmp=%s\n%s%s%s", G.qmp, ram ? "ram=" : "",
                 ram ? ram : "", ram ? "\n" : "");
        assert_int_equal(dz_put(H.trig, "rv.vm", text), 0);
}

static void test_missing_ram_reason(void **state)
{
        char line[1024], out[8192];

        (void)state;
        put_trigger(Missing);
        if (!wait_list("rv", "No such file or directory", true, BOOT_MS, line, sizeof(line))) {
                vh_dump_log(&H);
                fail_msg("vmsigctl list does not say why rv has no memctx: '%s'", line);
        }
        printf("# list: %s\n", line);
        assert_non_null(strstr(line, Missing));

        assert_int_not_equal(
            vh_vmsigctl(&H, -1, out, sizeof(out), "read", "rv", "0xffffffff81000000", "16", (char *)NULL), 0);
        printf("# read: %s", out);
        assert_non_null(strstr(out, "No such file or directory"));
        assert_null(strstr(out, "still booting"));

        /* JSON too */
        assert_int_equal(vh_vmsigctl(&H, -1, out, sizeof(out), "--json", "list", (char *)NULL), 0);
        assert_non_null(strstr(out, "\"memctx_error\": \""));

        /* The adapter keeps retrying (100 ms doubling): the log has it once. */
        assert_true(dz_wait_log(&H, VH_TIMEOUT_MS, "VM 'rv'", "No such file or directory", NULL));
        struct timespec ts = {3, 0}; /* several retries' worth: nothing more may come */
        nanosleep(&ts, NULL);
        if (dz_log_count(&H, "No such file or directory") != 1) {
                vh_dump_log(&H);
                fail_msg("the memctx failure is not logged exactly once");
        }
}

static void test_ram_path_from_qemu(void **state)
{
        char line[1024], out[8192], addr[32];
        uint64_t banner = vm_symbol("linux_banner");

        (void)state;
        assert_true(banner != 0);
        snprintf(addr, sizeof(addr), "0x%" PRIx64, banner);
        put_trigger(NULL); /* no ram=: vmsigd asks QEMU */
        uint64_t deadline = vh_now_ms() + BOOT_MS;
        int rc;
        while ((rc = vh_vmsigctl(&H, -1, out, sizeof(out), "read", "rv", addr, "64", (char *)NULL)) != 0 &&
               vh_left(deadline)) {
                struct timespec ts = {0, 200000000};
                nanosleep(&ts, NULL);
        }
        if (rc != 0) {
                vh_dump_log(&H);
                fail_msg("no memctx without ram=: %s", out);
        }
        printf("# %s", out);
        assert_non_null(strstr(out, "|Linux version 6"));
        /* the old reason is gone with the problem */
        assert_true(list_line("rv", line, sizeof(line)));
        assert_null(strstr(line, "No such file"));
}

static void test_reset_becomes_shutdown(void **state)
{
        char line[1024], out[8192];

        (void)state;
        /* ram= named again: this case needs no qom-get (on its own, too) */
        put_trigger(G.shm);
        if (!wait_list("rv", " running", true, BOOT_MS, line, sizeof(line))) {
                vh_dump_log(&H);
                fail_msg("rv is not running: '%s'", line);
        }
        int rc = vh_vmsigctl(&H, -1, out, sizeof(out), "power", "rv", "reset", (char *)NULL);
        printf("# power reset: rc %d: %s", rc, out);
        assert_int_not_equal(rc, 0);
        assert_null(strstr(out, "done"));
        assert_non_null(strstr(out, "shut down instead"));
        assert_non_null(strstr(out, "host-qmp-system-reset"));
        /* QEMU exits (-no-reboot without -no-shutdown): gone, not starting */
        if (!wait_list("rv", " gone", true, VH_TIMEOUT_MS, line, sizeof(line))) {
                vh_dump_log(&H);
                fail_msg("rv is not listed as gone after QEMU exited: '%s'", line);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_missing_ram_reason),
            cmocka_unit_test(test_ram_path_from_qemu),
            cmocka_unit_test(test_reset_becomes_shutdown),
        };
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
