/* SPDX-License-Identifier: MIT */
/* The seam registry (src/adapters/registry.h): its rows are consistent with
 * the adapters they name and the public factories, the one strict option
 * checker does what every adapter relies on, and vmsig_seams_format. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <vmsig/adapter.h>
#include <vmsig/event.h>

#include "adapters/registry.h"

static void test_rows(void **state)
{
        size_t n;
        const struct seam_def *s = seam_registry(&n);

        (void)state;
        assert_int_equal(n, VMSIG_SRC_MAX_ - 1); /* every source but core */
        for (size_t i = 0; i < n; i++) {
                assert_ptr_equal(seam_find(s[i].seam), &s[i]);
                assert_string_equal(s[i].name, vmsig_source_name(s[i].seam));
                assert_non_null(strstr(s[i].options_key, s[i].name));
                assert_true(s[i].caps != 0);
                assert_non_null(s[i].adapter[VM_DRIVER_STUB]); /* always built */
                for (unsigned d = 0; d < VM_DRIVER_COUNT; d++) {
                        const struct adapter_desc *a = s[i].adapter[d];
                        if (!a)
                                continue;
                        assert_ptr_equal(adapter_find(d, s[i].seam), a);
                        assert_int_equal(a->ops->seam, s[i].seam);
                        assert_true(a->n_opts <= OPT_SPEC_MAX);
                }
        }
        assert_null(seam_find(VMSIG_SRC_CORE));
        assert_null(seam_find(VMSIG_SRC_MAX_));
        assert_null(seam_find(200));
        assert_null(adapter_find(VM_DRIVER_COUNT, VMSIG_SRC_MEMCTX));
        assert_null(adapter_find(VM_DRIVER_STUB, 200)); /* no fallback to some other seam */
}

/* Each spec is well formed: unique keys, defaults that pass their own check,
 * at_least naming a key of the same spec. */
static void test_specs(void **state)
{
        size_t n;
        const struct seam_def *s = seam_registry(&n);

        (void)state;
        for (size_t i = 0; i < n; i++)
                for (unsigned d = 0; d < VM_DRIVER_COUNT; d++) {
                        const struct adapter_desc *a = s[i].adapter[d];
                        uint64_t v[OPT_SPEC_MAX];
                        if (!a)
                                continue;
                        assert_int_equal(adapter_options_parse(NULL, a->opts, a->n_opts, NULL, v, NULL, 0),
                                         0);
                        for (size_t k = 0; k < a->n_opts; k++) {
                                const struct opt_spec *o = &a->opts[k];
                                for (size_t j = k + 1; j < a->n_opts; j++)
                                        assert_string_not_equal(o->key, a->opts[j].key);
                                if (o->type == OPT_U64) {
                                        assert_int_equal(v[k], o->def);
                                        assert_true(o->def >= o->min && o->def <= o->max);
                                        assert_true(!o->multiple || o->def % o->multiple == 0);
                                }
                                if (o->type == OPT_WORD)
                                        assert_true(o->words && *o->words);
                                if (o->at_least) {
                                        size_t j;
                                        for (j = 0; j < a->n_opts; j++)
                                                if (!strcmp(a->opts[j].key, o->at_least))
                                                        break;
                                        assert_true(j < a->n_opts);
                                }
                        }
                }
}

static void test_factories(void **state)
{
        (void)state;
        assert_ptr_equal(vmsig_memctx_stub_ops(), adapter_find(VM_DRIVER_STUB, VMSIG_SRC_MEMCTX)->ops);
        assert_ptr_equal(vmsig_input_stub_ops(), adapter_find(VM_DRIVER_STUB, VMSIG_SRC_INPUT)->ops);
        assert_ptr_equal(vmsig_vmhost_stub_ops(), adapter_find(VM_DRIVER_STUB, VMSIG_SRC_VMHOST)->ops);
        const struct adapter_desc *q = adapter_find(VM_DRIVER_QEMU, VMSIG_SRC_MEMCTX);
        assert_ptr_equal(vmsig_memctx_ops(), q ? q->ops : NULL);
        q = adapter_find(VM_DRIVER_QEMU, VMSIG_SRC_INPUT);
        assert_ptr_equal(vmsig_input_ops(), q ? q->ops : NULL);
        q = adapter_find(VM_DRIVER_QEMU, VMSIG_SRC_VMHOST);
        assert_ptr_equal(vmsig_vmhost_ops(), q ? q->ops : NULL);
}

static void test_drivers(void **state)
{
        (void)state;
        assert_int_equal(driver_find("qemu", 4), VM_DRIVER_QEMU);
        assert_int_equal(driver_find("stub", 4), VM_DRIVER_STUB);
        assert_int_equal(driver_find("stubx", 4), VM_DRIVER_STUB); /* a length, not a C string */
        assert_int_equal(driver_find("xen", 3), -ENOENT);
        assert_int_equal(driver_find("", 0), -ENOENT);
        assert_true(driver_get(VM_DRIVER_QEMU)->needs_qmp);
        assert_false(driver_get(VM_DRIVER_STUB)->needs_ram);
        assert_null(driver_get(VM_DRIVER_COUNT));
}

static const struct opt_spec spec[] = {
    {.key = "lo", .type = OPT_U64, .min = 1, .max = 100, .def = 10},
    {.key = "hi", .type = OPT_U64, .min = 1, .max = 1000, .def = 20, .at_least = "lo"},
    {.key = "mode", .type = OPT_WORD, .def = 1, .words = "a|bb|c"},
    {.key = "path", .type = OPT_ABS_PATH, .min = 1, .max = 8},
    {.key = "n4", .type = OPT_U64, .min = 0, .max = 64, .def = 8, .multiple = 4},
    {.key = "s", .type = OPT_STRING, .min = 1, .max = 3},
};
#define NSPEC (sizeof(spec) / sizeof(spec[0]))

static void expect_refused(const char *opts, const char *what, const char *why_part)
{
        char why[256] = "";

        if (adapter_options_parse(opts, spec, NSPEC, what, NULL, why, sizeof(why)) != -EINVAL)
                fail_msg("\"%s\" accepted", opts);
        if (!strstr(why, why_part))
                fail_msg("\"%s\": \"%s\" lacks \"%s\"", opts, why, why_part);
}

static void test_checker(void **state)
{
        uint64_t v[NSPEC];

        (void)state;
        assert_int_equal(adapter_options_parse("", spec, NSPEC, NULL, v, NULL, 0), 0);
        assert_int_equal(v[0], 10);
        assert_int_equal(v[1], 20);
        assert_int_equal(v[2], 1); /* the default word's index */
        assert_int_equal(v[3], 0); /* a string not given */
        assert_int_equal(
            adapter_options_parse("mode=c,hi=0x40,lo=64,path=/x,s=abc,n4=0", spec, NSPEC, NULL, v, NULL, 0),
            0);
        assert_int_equal(v[0], 64);
        assert_int_equal(v[1], 64);
        assert_int_equal(v[2], 2);
        assert_int_equal(v[3], 1);
        assert_int_equal(v[4], 0);
        assert_int_equal(v[5], 1);

        expect_refused("lo=1,", NULL, "expected key=value");
        expect_refused("=1", NULL, "expected key=value");
        expect_refused("lo", NULL, "expected key=value");
        expect_refused("low=1", "test thing",
                       "low: unknown option for the test thing adapter (known: lo, hi, mode");
        expect_refused("low=1", NULL, "low: unknown option (known: lo,");
        expect_refused("lo=1,lo=1", NULL, "lo: given twice");
        expect_refused("lo=0", NULL, "lo: 0 is out of range (1..100)");
        expect_refused("lo=-1", NULL, "lo: '-1' is not a number");
        expect_refused("lo=00000000000000000000000000000000001", NULL, "not a number");
        expect_refused("lo=50", NULL, "hi (20) is below lo (50)");
        expect_refused("mode=B", NULL, "mode: 'B' is not one of a|bb|c");
        expect_refused("mode=b", NULL, "is not one of");
        expect_refused("mode=", NULL, "is not one of");
        expect_refused("path=x", NULL, "path: 'x' is not an absolute path");
        expect_refused("path=/123456789", NULL, "path: length must be 1..8 bytes");
        expect_refused("n4=6", NULL, "n4: 6 is not a multiple of 4");
        expect_refused("s=", NULL, "s: length must be 1..3 bytes");
        expect_refused("mode=\x1b[2J", NULL, "'\\x1b[2J'"); /* escaped in the message */
        /* too many declared options is a programming error, not a crash */
        assert_int_equal(adapter_options_parse("", spec, OPT_SPEC_MAX + 1, NULL, NULL, NULL, 0), -EINVAL);
}

static void test_seams_format(void **state)
{
        char buf[64], small[9];

        (void)state;
        assert_string_equal(vmsig_seams_format(0, " ", "none", buf, sizeof(buf)), "none");
        assert_string_equal(vmsig_seams_format(0xe, " ", "none", buf, sizeof(buf)), "memctx input vmhost");
        assert_string_equal(vmsig_seams_format(0xe, ",", "-", buf, sizeof(buf)), "memctx,input,vmhost");
        assert_string_equal(vmsig_seams_format(1u << VMSIG_SRC_INPUT, ",", "-", buf, sizeof(buf)), "input");
        assert_string_equal(vmsig_seams_format(0x6, " ", "none", buf, sizeof(buf)), "memctx input");
        assert_string_equal(vmsig_seams_format(0xf1, " ", "none", buf, sizeof(buf)), ""); /* no seam bit */
        assert_string_equal(vmsig_seams_format(0xe, ",", "-", small, sizeof(small)), "memctx,i");
        assert_ptr_equal(vmsig_seams_format(0xe, ",", "-", NULL, 0), NULL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_rows),      cmocka_unit_test(test_specs),
            cmocka_unit_test(test_factories), cmocka_unit_test(test_drivers),
            cmocka_unit_test(test_checker),   cmocka_unit_test(test_seams_format),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
