/* SPDX-License-Identifier: MIT */
/* The real memctx adapter's `info registers` parser and swapper_pg_dir
 * search on QEMU 7.2's real output (the fuzz_memctx_regs seeds, captured
 * from the test guest) and on what it must refuse. Includes the harness,
 * which includes src/adapters/memctx.c for the static functions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "fuzz/fuzz_memctx_regs.c"

static char *seed(const char *name, size_t *ret_len)
{
        char path[512];
        snprintf(path, sizeof(path), "%s/fuzz_memctx_regs/%s", VMSIG_FUZZ_CORPUS, name);
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        char *buf = calloc(1, 1u << 20);
        assert_non_null(buf);
        *ret_len = fread(buf, 1, (1u << 20) - 1, f);
        fclose(f);
        return buf;
}

/* The seed's RAM writes applied to the harness's RAM; returns the text. */
static struct vmie_ram *seed_ram(const char *name, struct regs *g)
{
        size_t len;
        char *buf = seed(name, &len);
        size_t tlen = strlen(buf);

        assert_int_equal(parse_regs(buf, g), 0);
        memset(fuzz_ram, 0, sizeof(fuzz_ram));
        for (const uint8_t *p = (const uint8_t *)buf + tlen + 1, *end = (const uint8_t *)buf + len;
             end - p >= 10; p += 10)
                fuzz_ram[le(p, 2) % FUZZ_QWORD] = le(p + 2, 8);
        free(buf);
        struct vmie_range rr = {.gpa = 0, .len = FUZZ_RAM, .file_offset = 0};
        struct vmie_ram *ram = NULL;
        assert_int_equal(vmie_ram_wrap(fuzz_ram, FUZZ_RAM, &rr, 1, 0, &ram), 0);
        return ram;
}

static void test_real_output(void **state)
{
        struct regs g;
        size_t len;
        char *t;

        (void)state;
        /* a running 6.1 kernel */
        t = seed("real-running-7.2", &len);
        assert_int_equal(parse_regs(t, &g), 0);
        assert_int_equal(g.cr0, 0x80050033);
        assert_int_equal(g.cr3, 0x55bc000);
        assert_int_equal(g.cr4, 0x6b0);
        assert_int_equal(g.idt, 0xfffffe0000000000ull);
        assert_false(g.smm);
        free(t);
        /* -S: the reset state, 32-bit register dump, paging off */
        t = seed("real-prelaunch-7.2", &len);
        assert_int_equal(parse_regs(t, &g), 0);
        assert_int_equal(g.cr0, 0x60000010);
        assert_int_equal(g.cr3, 0);
        assert_int_equal(g.idt, 0);
        free(t);
        /* the decompressor's identity map: IDT in low memory */
        t = seed("real-firmware-7.2", &len);
        assert_int_equal(parse_regs(t, &g), 0);
        assert_int_equal(g.cr3, 0x4357000);
        assert_int_equal(g.idt, 0x4332050);
        free(t);
}

static void test_bad_output(void **state)
{
        static const char *const bad[] = {"bad-no-cr3", "bad-cr3-not-hex", "bad-idt-missing", "bad-empty",
                                          "bad-truncated"};
        struct regs g;
        size_t len;

        (void)state;
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                char *t = seed(bad[i], &len);
                assert_int_equal(parse_regs(t, &g), -EBADMSG);
                free(t);
        }
        assert_int_equal(parse_regs("CR0=80050033 CR3=1000 CR4=6b0 IDT=", &g), -EBADMSG);
        assert_int_equal(parse_regs("CR0=80050033 CR3=ffffffffffffffffff CR4=6b0 IDT=0", &g), -EBADMSG);
        /* SMM=1: the vCPU runs firmware; w_boot refuses that CR3 */
        char *t = seed("smm", &len);
        assert_int_equal(parse_regs(t, &g), 0);
        assert_true(g.smm);
        free(t);
}

static void test_swapper(void **state)
{
        static const struct {
                const char *name;
                uint64_t want;
        } cases[] = {
            {"linux-4level-swapper", 0x8000},
            {"linux-4level-4k-pages", 0x8000},
            {"linux-5level-swapper", 0x8000},
            {"linux-no-swapper", 0}, /* the process PGD itself has a user half: not it */
        };
        struct regs g;

        (void)state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct vmie_ram *ram = seed_ram(cases[i].name, &g);
                unsigned levels = (g.cr4 & (UINT64_C(1) << 12)) ? 5 : 4;
                assert_int_equal(linux_swapper(ram, vmie_cr3_root(g.cr3, 0), levels), cases[i].want);
                vmie_ram_free(ram);
        }
        /* KPTI: CR3 is the user PGD (bit 12, PCID); the kernel root next to it finds swapper */
        struct vmie_ram *ram = seed_ram("linux-kpti-pcid", &g);
        struct vmie_linux_hint h = {.cr3 = g.cr3, .check_va = g.idt, .levels = 4};
        struct vmie_kroot kr;
        assert_int_equal(linux_swapper(ram, vmie_cr3_root(g.cr3, 0), 4), 0);
        assert_int_equal(vmie_linux_kernel_root(ram, &h, &kr), 0);
        assert_int_equal(kr.root, 0x10000);
        assert_int_equal(linux_swapper(ram, kr.root, kr.levels), 0x8000);
        vmie_ram_free(ram);
        /* a root outside RAM, and RAM of zeros: nothing, no fault */
        memset(fuzz_ram, 0, sizeof(fuzz_ram));
        struct vmie_range rr = {.gpa = 0, .len = FUZZ_RAM, .file_offset = 0};
        assert_int_equal(vmie_ram_wrap(fuzz_ram, FUZZ_RAM, &rr, 1, 0, &ram), 0);
        assert_int_equal(linux_swapper(ram, 0x55bc000, 4), 0);
        assert_int_equal(linux_swapper(ram, 0x1000, 4), 0);
        vmie_ram_free(ram);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_real_output),
            cmocka_unit_test(test_bad_output),
            cmocka_unit_test(test_swapper),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
