/* SPDX-License-Identifier: MIT */
/* vmsigctl read SYMBOL --symbols MAP against the real vmsigd and a stub VM:
 * the MEMCTX carries the kernel base (the stub's image starts at
 * 0xffffffff80000000), the map's _text says where the symbol file thinks it
 * starts, and the read lands at the symbol moved by the difference (here a
 * slide of -16 MiB). Bad symbol files fail closed, naming file and line,
 * before anything is read. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h> /* after the three above, which it needs */

#include <vmsig/stub_guest.h>

#include "vmsigd_harness.h"

static struct vh H;
static char map_path[256], bad_path[256];

static void keep_fd(const struct vmsig_event *ev, int fd, void *ud)
{
        int *keep = ud;
        if (fd >= 0 && *keep < 0)
                *keep = fd;
        else if (fd >= 0)
                close(fd);
}

static int setup(void **state)
{
        struct vmsig_client *c;
        uint32_t ep = 0;
        bool up;
        int fd = -1;

        (void)state;
        if (vh_start(&H, NULL) < 0 || !(c = vh_client(&H, "setup"))) {
                vh_teardown(&H);
                return -1;
        }
        up = vh_subscribe(c, 0, VMSIG_KIND_BIT(VMSIG_EV_ROSTER) | VMSIG_KIND_BIT(VMSIG_EV_MEMCTX), NULL,
                          NULL) == 0 &&
             vh_vm_add(&H, "alpha", NULL) == 0 && (ep = vh_wait_vm(c, "alpha")) != 0;
        /* the stub's memctx boots on a worker: wait for it */
        struct vh_match mm = {.kind = VMSIG_EV_MEMCTX, .endpoint = ep, .memctx_valid = true};
        up = up && vh_wait_event(c, &mm, NULL, keep_fd, &fd, 10000) == 0;
        if (fd >= 0)
                close(fd);
        vh_client_close(c);
        if (!up) {
                vh_dump_log(&H);
                vh_teardown(&H);
                return -1;
        }
        /* A System.map of a kernel linked at 0xffffffff81000000: the stub's
         * banner 0xffffffff80200100 is 0xffffffff81200100 there. Two names
         * are defined twice: once at one address (aliases), once not. */
        snprintf(map_path, sizeof(map_path), "%s/System.map", H.dir);
        snprintf(bad_path, sizeof(bad_path), "%s/bad.map", H.dir);
        return vh_write_file(map_path,
                             "0000000000000000 A VDSO32_PRELINK\n"
                             "ffffffff81000000 T _stext\n"
                             "ffffffff81000000 T _text\n"
                             "ffffffff81000000 T startup_64\n"
                             "ffffffff81200100 D stub_banner\n"
                             "ffffffff81200100 D stub_banner\n"
                             "ffffffff81200200 t twice\n"
                             "ffffffff81200300 t twice\n"
                             "ffffffffc0001000 t mod_fn\t[some_module]\n",
                             0644);
}

static int teardown(void **state)
{
        (void)state;
        vh_teardown(&H);
        return 0;
}

#define CTL(out, ...) vh_vmsigctl(&H, -1, (out), sizeof(out), __VA_ARGS__, (char *)NULL)

static void test_symbol_string_and_slide(void **state)
{
        char out[8192];

        (void)state;
        /* No LEN: the string there. The --symbols option after the operands. */
        assert_int_equal(CTL(out, "read", "alpha", "stub_banner", "--symbols", map_path), 0);
        printf("# %s", out);
        assert_non_null(strstr(out, "kernel base 0xffffffff80000000"));
        assert_non_null(strstr(out, "KASLR slide -0x1000000"));
        assert_non_null(strstr(out, "= 0xffffffff80200100"));
        assert_non_null(strstr(out, "\n" VMSIG_STUB_BANNER "\n"));
        /* SYMBOL+OFF with LEN: a hexdump, option before the command. */
        assert_int_equal(CTL(out, "--symbols", map_path, "read", "alpha", "stub_banner+6", "9"), 0);
        assert_non_null(strstr(out, "ffffffff80200106  "));
        assert_non_null(strstr(out, "|synthetic|"));
        assert_int_equal(CTL(out, "read", "--symbols=", "alpha", "stub_banner"), 2);
        /* A number stays a number, symbols or not. */
        assert_int_equal(CTL(out, "read", "alpha", "0xffffffff80200100", "--symbols", map_path), 0);
        assert_non_null(strstr(out, VMSIG_STUB_BANNER));
}

static void test_symbol_errors(void **state)
{
        char out[8192], arg[64];

        (void)state;
        assert_int_equal(CTL(out, "read", "alpha", "stub_banner"), 2);
        assert_non_null(strstr(out, "give --symbols"));
        assert_int_equal(CTL(out, "read", "alpha", "nosuch", "--symbols", map_path), 2);
        assert_non_null(strstr(out, "no symbol 'nosuch'"));
        assert_int_equal(CTL(out, "read", "alpha", "twice", "--symbols", map_path), 2);
        assert_non_null(
            strstr(out, "'twice' is ambiguous: 2 definitions at different addresses (lines 7 and 8)"));
        assert_int_equal(CTL(out, "read", "alpha", "mod_fn", "--symbols", map_path),
                         2); /* modules: not the image */
        assert_int_equal(CTL(out, "read", "alpha", "stub_banner+", "--symbols", map_path), 2);
        assert_int_equal(CTL(out, "read", "alpha", "stub_banner+0xz", "--symbols", map_path), 2);
        assert_int_equal(CTL(out, "--phys", "read", "alpha", "stub_banner", "--symbols", map_path), 2);
        assert_int_equal(CTL(out, "read", "alpha", "stub_banner", "--symbols", "/nonexistent/map"), 2);
        assert_non_null(strstr(out, "/nonexistent/map: No such file or directory"));
        /* A malformed line: file and line named, nothing read. */
        assert_int_equal(vh_write_file(bad_path, "ffffffff81000000 T _text\nffffffff81200100 D\n", 0644), 0);
        assert_int_equal(CTL(out, "read", "alpha", "_text", "--symbols", bad_path), 2);
        snprintf(arg, sizeof(arg), "%s:2: ", bad_path);
        assert_non_null(strstr(out, arg));
        assert_null(strstr(out, "kernel base"));
        /* Debian's placeholder System.map says where the real one is. */
        assert_int_equal(
            vh_write_file(bad_path,
                          "ffffffffffffffff B The real System.map is in the linux-image-<version>-dbg "
                          "package\n",
                          0644),
            0);
        assert_int_equal(CTL(out, "read", "alpha", "_text", "--symbols", bad_path), 2);
        assert_non_null(strstr(out, "placeholder"));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_symbol_string_and_slide),
            cmocka_unit_test(test_symbol_errors),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
