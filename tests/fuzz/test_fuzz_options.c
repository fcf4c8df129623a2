/* SPDX-License-Identifier: MIT */
/* Adapter options that every adapter's open() must refuse with -EINVAL
 * (typos, duplicates, empty items, values out of range), and ones it must
 * take: the fail-closed cases behind fuzz_options. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <vmsig/adapter.h>

static int open_with(const struct vmsig_adapter_ops *ops, const char *opts)
{
        struct vmsig_adapter_cfg cfg = {.vm_name = "fuzz-no-such-vm",
                                        .qmp_path = "/nonexistent/vmsig-fuzz/qmp.sock",
                                        .ram_path = "/nonexistent/vmsig-fuzz/ram",
                                        .options = opts};
        void *inst = NULL;
        int r = ops->open(&cfg, 1, &inst);

        if (r == 0)
                ops->close(inst);
        else
                assert_null(inst);
        return r;
}

/* The rules shared by every adapter: checked against each of them. */
static const char *const bad_shape[] = {
    "retry_msx=1", /* typo */
    "nosuchkey=1", /* unknown */
    "=5",          /* empty key */
    "retry_ms",    /* no '=' */
    ",",           /* empty items */
    "retry_ms=1,", /* trailing comma */
    ",retry_ms=1", /* leading comma */
    "retry_ms=1,,retry_ms=2",
    "retry_ms=1,retry_ms=1", /* a key twice, even with the same value */
    "RETRY_MS=1",            /* keys are case-sensitive */
    "retry_ms =1",
};

static void test_shape_refused_everywhere(void **state)
{
        const struct vmsig_adapter_ops *all[] = {vmsig_vmhost_ops(),      vmsig_memctx_ops(),
                                                 vmsig_input_ops(),       vmsig_vmhost_stub_ops(),
                                                 vmsig_memctx_stub_ops(), vmsig_input_stub_ops()};

        (void)state;
        for (size_t a = 0; a < sizeof(all) / sizeof(all[0]); a++) {
                if (!all[a])
                        continue; /* a stub-only build */
                for (size_t i = 0; i < sizeof(bad_shape) / sizeof(bad_shape[0]); i++)
                        if (open_with(all[a], bad_shape[i]) != -EINVAL)
                                fail_msg("%s accepted options \"%s\"", all[a]->name, bad_shape[i]);
                assert_int_equal(open_with(all[a], NULL), 0);
                assert_int_equal(open_with(all[a], ""), 0);
        }
}

static void test_values(void **state)
{
        static const struct {
                const char *opts;
                int want;
        } vmhost[] = {
            {"retry_ms=100,retry_max_ms=2000", 0},
            {"retry_max_ms=2000,retry_ms=100", 0}, /* any order */
            {"retry_ms=0x64", 0},                  /* numbers in C notation */
            {"retry_ms=", -EINVAL},
            {"retry_ms=abc", -EINVAL},
            {"retry_ms=10ms", -EINVAL},
            {"retry_ms=-1", -EINVAL},
            {"retry_ms=0", -EINVAL},
            {"retry_ms=60001", -EINVAL},
            {"retry_ms=100,retry_max_ms=50", -EINVAL}, /* max below min */
            {"retry_max_ms=600001", -EINVAL},
            {"retry_ms=18446744073709551616", -EINVAL},                  /* 2^64 */
            {"retry_ms=0000000000000000000000000000000000001", -EINVAL}, /* over 31 chars */
        };
        static const struct {
                const char *opts;
                int want;
        } memctx[] = {
            {"os=linux", 0},       {"os=windows", 0}, {"os=auto", 0},
            {"os=Linux", -EINVAL}, {"os=", -EINVAL},  {"os=linux,os=windows", -EINVAL},
        };
        static const struct {
                const char *opts;
                int want;
        } memctx_stub[] = {
            {"ram_mib=16", 0},         {"ram_mib=6", -EINVAL},
            {"ram_mib=10", -EINVAL}, /* not a multiple of 4 */
            {"ram_mib=2048", -EINVAL}, {"fail_boots=1000001", -EINVAL},
            {"retry_ms=0", -EINVAL},
        };
        static const struct {
                const char *opts;
                int want;
        } vmhost_stub[] = {
            {"state=paused", 0},         {"state=shutdown,powerdown_ms=5", 0}, {"state=gone", -EINVAL},
            {"powerdown_ms=0", -EINVAL}, {"state=runningx", -EINVAL},
        };

        (void)state;
        if (vmsig_vmhost_ops()) {
                for (size_t i = 0; i < sizeof(vmhost) / sizeof(vmhost[0]); i++)
                        if (open_with(vmsig_vmhost_ops(), vmhost[i].opts) != vmhost[i].want)
                                fail_msg("vmhost \"%s\": not %d", vmhost[i].opts, vmhost[i].want);
                for (size_t i = 0; i < sizeof(memctx) / sizeof(memctx[0]); i++)
                        if (open_with(vmsig_memctx_ops(), memctx[i].opts) != memctx[i].want)
                                fail_msg("memctx \"%s\": not %d", memctx[i].opts, memctx[i].want);
                /* uinput= names a socket: it must be absolute */
                assert_int_equal(open_with(vmsig_input_ops(), "uinput=relative.sock"), -EINVAL);
        }
        for (size_t i = 0; i < sizeof(memctx_stub) / sizeof(memctx_stub[0]); i++)
                if (open_with(vmsig_memctx_stub_ops(), memctx_stub[i].opts) != memctx_stub[i].want)
                        fail_msg("memctx stub \"%s\": not %d", memctx_stub[i].opts, memctx_stub[i].want);
        for (size_t i = 0; i < sizeof(vmhost_stub) / sizeof(vmhost_stub[0]); i++)
                if (open_with(vmsig_vmhost_stub_ops(), vmhost_stub[i].opts) != vmhost_stub[i].want)
                        fail_msg("vmhost stub \"%s\": not %d", vmhost_stub[i].opts, vmhost_stub[i].want);
        assert_int_equal(open_with(vmsig_input_stub_ops(), "record="), -EINVAL);
}

static void test_option_get(void **state)
{
        char buf[8];
        uint64_t v;

        (void)state;
        assert_int_equal(vmsig_option_get("a=1,ab=2", "ab", buf, sizeof(buf)), 0);
        assert_string_equal(buf, "2");
        assert_int_equal(vmsig_option_get("ab=2", "a", buf, sizeof(buf)), -ENOENT); /* no prefix match */
        assert_int_equal(vmsig_option_get("a=1234567", "a", buf, sizeof(buf)), 0);
        assert_int_equal(vmsig_option_get("a=12345678", "a", buf, sizeof(buf)), -ENAMETOOLONG);
        assert_int_equal(vmsig_option_get("a=1", "", buf, sizeof(buf)), -ENOENT);
        assert_int_equal(vmsig_option_get(NULL, "a", buf, sizeof(buf)), -ENOENT);
        assert_int_equal(vmsig_option_u64("a=1", "b", 42, &v), 0);
        assert_int_equal(v, 42);
        assert_int_equal(vmsig_option_u64("b=", "b", 42, &v), -EINVAL);
        assert_int_equal(vmsig_option_u64("b=-0", "b", 42, &v), -EINVAL);
        /* Numbers: decimal or 0x hex only; what strtoull would also take is
         * refused (found by fuzz_options). */
        static const char *const bad[] = {
            " 100", "+100", "100 ", "0x", "0x-1", "1e3", "", "18446744073709551616", "0x10000000000000000"};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                if (vmsig_option_parse_u64(bad[i], &v) != -EINVAL)
                        fail_msg("\"%s\" was taken as a number", bad[i]);
        assert_int_equal(vmsig_option_parse_u64("010", &v), 0);
        assert_int_equal(v, 10); /* never octal */
        assert_int_equal(vmsig_option_parse_u64("0x1F", &v), 0);
        assert_int_equal(v, 31);
        assert_int_equal(vmsig_option_parse_u64("18446744073709551615", &v), 0);
        assert_true(v == UINT64_MAX);
        assert_int_equal(vmsig_option_u64("retry_ms=+100", "retry_ms", 5, &v), -EINVAL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_shape_refused_everywhere),
            cmocka_unit_test(test_values),
            cmocka_unit_test(test_option_get),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
