/* SPDX-License-Identifier: MIT */
/* libvmie: the Linux kernel's randomised _text from its page tables alone,
 * on synthetic images laid out like a KASLR kernel after boot. (Windows'
 * ntoskrnl base is covered with the Windows roots in test_vmie_kroot.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include <cmocka.h>

#include "vmie_img.h"

#define TEXT   0xffffffff9a600000ull /* a KASLR _text: 2 MiB aligned */
#define TEXT5  TEXT                  /* the image range is the same with 5 levels */
#define BANNER "Linux version 6.1.0-kaslr (vmie@test) #1 SMP"
#define PGD    0x10000ull

struct lx {
        struct img im;
        struct vmie_ram *ram;
};

/* _text: 2 MiB text page (executable), rodata after it with 4 KiB pages
 * whose GPAs are not contiguous: the banner straddles two of them. Below
 * _text: NX pages (4 KiB and 2 MiB), to be skipped. */
static void lx_build(struct lx *l, unsigned levels, bool banner, bool text_nx)
{
        struct img *im = &l->im;
        img_init(im, 8 * MIB, levels);
        img_range(im, 0, 8 * MIB, 0);
        im->next = PGD;
        uint64_t pgd = img_page(im);
        assert_int_equal(pgd, PGD);
        img_map_k(im, pgd, 0xffffffff80000000ull + 6 * MIB, 0x600000, 4096, P_NX);
        img_map_k(im, pgd, 0xffffffff80000000ull + 8 * MIB, 0x400000, 2 * MIB, P_NX);
        img_map_k(im, pgd, TEXT, 0x200000, 2 * MIB, text_nx ? P_NX : 0);
        uint64_t ro = TEXT + 6 * MIB;
        img_map_k(im, pgd, ro, 0x500000, 4096, P_NX);
        img_map_k(im, pgd, ro + 0x1000, 0x4ff000, 4096, P_NX);
        if (banner) {
                /* The banner starts 6 bytes before the page end. */
                memcpy(img_ptr(im, 0x500ffa), BANNER, 6);
                memcpy(img_ptr(im, 0x4ff000), &BANNER[6], sizeof(BANNER) - 6);
        } else {
                memcpy(img_ptr(im, 0x500ffa), "Linux ", 6);
                memcpy(img_ptr(im, 0x4ff000), "Version", 7);
        }
        assert_int_equal(img_open(im, VMIE_RAM_NO_MMAP, NULL, &l->ram), 0);
}

static void lx_free(struct lx *l)
{
        l->ram = vmie_ram_free(l->ram);
        img_fini(&l->im);
}

static void test_linux_base_found(void **state)
{
        (void)state;
        for (unsigned levels = 4; levels <= 5; levels++) {
                struct lx l;
                lx_build(&l, levels, true, false);
                struct vmie_as as = {.ram = l.ram, .root = PGD, .levels = (uint8_t)levels};
                uint64_t base = 0;
                assert_int_equal(vmie_linux_kernel_base(&as, &base), 0);
                assert_int_equal(base, levels == 4 ? TEXT : TEXT5);
                /* Through a kroot, as a control would have it. */
                struct vmie_kroot k = {.root = PGD, .os = VMIE_OS_LINUX, .levels = (uint8_t)levels};
                base = 0;
                assert_int_equal(vmie_kernel_base(l.ram, &k, &base), 0);
                assert_int_equal(base, TEXT);
                lx_free(&l);
        }
}

static void test_linux_base_refused(void **state)
{
        (void)state;
        struct lx l;
        uint64_t base = 0x1234;
        /* No banner in the image: not a kernel. */
        lx_build(&l, 4, false, false);
        struct vmie_as as = {.ram = l.ram, .root = PGD, .levels = 4};
        assert_int_equal(vmie_linux_kernel_base(&as, &base), -ENOENT);
        assert_int_equal(base, 0x1234);
        lx_free(&l);
        /* Text not executable: nothing qualifies. */
        lx_build(&l, 4, true, true);
        as.ram = l.ram;
        assert_int_equal(vmie_linux_kernel_base(&as, &base), -ENOENT);
        /* The first executable mapping decides: a stray one far below
         * _text (more than 256 MiB before the banner) hides the kernel. */
        img_map_k(&l.im, PGD, 0xffffffff80a00000ull, 0x600000, 4096, 0);
        vmie_ram_free(l.ram);
        assert_int_equal(img_open(&l.im, 0, NULL, &l.ram), 0);
        as.ram = l.ram;
        assert_int_equal(vmie_linux_kernel_base(&as, &base), -ENOENT);
        /* An empty root; a root outside RAM; bad arguments. */
        as.root = 0x20000;
        assert_int_equal(vmie_linux_kernel_base(&as, &base), -ENOENT);
        as.root = 64 * MIB;
        assert_int_equal(vmie_linux_kernel_base(&as, &base), -ENOENT);
        as.root = PGD;
        assert_int_equal(vmie_linux_kernel_base(&as, NULL), -EINVAL);
        as.levels = 3;
        assert_int_equal(vmie_linux_kernel_base(&as, &base), -EINVAL);
        struct vmie_kroot k = {.root = PGD, .os = VMIE_OS_UNKNOWN, .levels = 4};
        assert_int_equal(vmie_kernel_base(l.ram, &k, &base), -EINVAL);
        lx_free(&l);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_linux_base_found),
            cmocka_unit_test(test_linux_base_refused),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
