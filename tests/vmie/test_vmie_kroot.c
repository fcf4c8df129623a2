/* SPDX-License-Identifier: MIT */
/* libvmie kernel-root bootstrap on synthetic images: Linux CR3 validation
 * (PCID, KPTI, non-KPTI, 5-level) and the Windows System DTB scans. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include <cmocka.h>

#include "vmie_img.h"
#include "vmie_win.h"

#define BANNER_VA  0xffffffff81e000a0ull
#define BANNER_5VA 0xff110000000000a0ull
static const char banner[] = "Linux version 6.1.0-test (vmie@test)";

/* ---- Linux ------------------------------------------------------------------ */

struct linux_img {
        struct img im;
        struct vmie_ram *ram;
        uint64_t kpgd, upgd, oddpgd;
};

static void linux_build(struct linux_img *l, unsigned levels)
{
        struct img *im = &l->im;
        img_init(im, 4 * MIB, levels);
        img_range(im, 0, 4 * MIB, 0);
        im->next = 0x20000;
        /* KPTI pair: kernel PGD at an even page, user PGD right after. */
        l->kpgd = img_page(im);
        l->upgd = img_page(im);
        uint64_t va = levels == 5 ? BANNER_5VA : BANNER_VA;
        img_map(im, l->kpgd, va & ~(2 * MIB - 1), 0x200000, 2 * MIB, P_RW | P_NX);
        memcpy(img_ptr(im, 0x200000 + (va & (2 * MIB - 1))), banner, sizeof(banner));
        /* The user PGD maps user space only (plus nothing of the banner). */
        img_map(im, l->upgd, 0x400000, 0x300000, 4096, P_US | P_RW);
        img_map(im, l->kpgd, 0x400000, 0x300000, 4096, P_US | P_RW);
        /* A non-KPTI PGD that sits at an odd page (bit 12 set). */
        im->next = 0x30000;
        (void)img_page(im);
        l->oddpgd = img_page(im);
        assert_true(l->oddpgd & 0x1000);
        img_map(im, l->oddpgd, va & ~(2 * MIB - 1), 0x200000, 2 * MIB, P_RW | P_NX);
        /* A kernel VA mapped user-accessible: must never validate. */
        img_map(im, l->kpgd, 0xffffffff90000000ull, 0x200000, 2 * MIB, P_US);
        assert_int_equal(img_open(im, 0, NULL, &l->ram), 0);
}

static void linux_free(struct linux_img *l)
{
        l->ram = vmie_ram_free(l->ram);
        img_fini(&l->im);
}

static void test_linux_kpti_pcid(void **state)
{
        (void)state;
        struct linux_img l;
        linux_build(&l, 4);
        struct vmie_linux_hint h = {
            .cr3 = l.upgd | 0x800 | 0x5, /* user PGD, user PCID bit, PCID 5 */
            .check_va = BANNER_VA,
            .expect = banner,
            .expect_len = sizeof(banner) - 1,
            .levels = 4,
        };
        struct vmie_kroot k;
        assert_int_equal(vmie_linux_kernel_root(l.ram, &h, &k), 0);
        assert_int_equal(k.root, l.kpgd);
        assert_int_equal(k.os, VMIE_OS_LINUX);
        assert_int_equal(k.method, VMIE_KROOT_CR3);
        assert_int_equal(k.levels, 4);
        assert_int_equal(k.maxphyaddr, 52);
        assert_int_equal(k.kernel_hint, BANNER_VA);
        /* The kernel CR3 itself (as a vCPU in kernel mode reports it). */
        h.cr3 = l.kpgd | 0x5;
        assert_int_equal(vmie_linux_kernel_root(l.ram, &h, &k), 0);
        assert_int_equal(k.root, l.kpgd);
        /* Without expected bytes, translation alone decides. */
        h.expect = NULL;
        h.expect_len = 0;
        h.cr3 = l.upgd;
        assert_int_equal(vmie_linux_kernel_root(l.ram, &h, &k), 0);
        assert_int_equal(k.root, l.kpgd);
        /* Reading through the found root gives the banner. */
        struct vmie_as as = {.ram = l.ram, .root = k.root, .levels = k.levels};
        char s[64];
        assert_int_equal(vmie_read_str(&as, BANNER_VA, s, sizeof(s), NULL), 0);
        assert_string_equal(s, banner);
        linux_free(&l);
}

static void test_linux_non_kpti_bit12(void **state)
{
        (void)state;
        struct linux_img l;
        linux_build(&l, 4);
        struct vmie_linux_hint h = {
            .cr3 = l.oddpgd | 0x3,
            .check_va = BANNER_VA,
            .expect = banner,
            .expect_len = 13,
        };
        struct vmie_kroot k;
        /* Clearing bit 12 gives an empty page; the plain root is next. */
        assert_int_equal(vmie_linux_kernel_root(l.ram, &h, &k), 0);
        assert_int_equal(k.root, l.oddpgd);
        assert_int_equal(k.levels, 4); /* levels 0: 4 tried first */
        linux_free(&l);
}

static void test_linux_failures(void **state)
{
        (void)state;
        struct linux_img l;
        linux_build(&l, 4);
        struct vmie_linux_hint h = {
            .cr3 = l.upgd, .check_va = BANNER_VA, .expect = "Linux versioN", .expect_len = 13};
        struct vmie_kroot k;
        memset(&k, 0xa5, sizeof(k));
        assert_int_equal(vmie_linux_kernel_root(l.ram, &h, &k), -ENOENT); /* wrong bytes */
        assert_int_equal(k.root, 0xa5a5a5a5a5a5a5a5ull);                  /* untouched */
        h.expect_len = 0;
        h.check_va = BANNER_VA + 4 * MIB; /* unmapped */
        assert_int_equal(vmie_linux_kernel_root(l.ram, &h, &k), -ENOENT);
        h.check_va = 0xffffffff90000000ull; /* mapped, but user-accessible */
        assert_int_equal(vmie_linux_kernel_root(l.ram, &h, &k), -ENOENT);
        h.check_va = 0x400000; /* a user VA proves nothing */
        assert_int_equal(vmie_linux_kernel_root(l.ram, &h, &k), -EINVAL);
        h.check_va = BANNER_VA;
        h.cr3 = 64 * MIB; /* root outside RAM */
        assert_int_equal(vmie_linux_kernel_root(l.ram, &h, &k), -ENOENT);
        h.cr3 = l.upgd;
        h.levels = 3;
        assert_int_equal(vmie_linux_kernel_root(l.ram, &h, &k), -EINVAL);
        h.levels = 4;
        h.expect_len = 5000;
        h.expect = banner;
        assert_int_equal(vmie_linux_kernel_root(l.ram, &h, &k), -EINVAL);
        h.expect_len = 0;
        h.maxphyaddr = 20;
        assert_int_equal(vmie_linux_kernel_root(l.ram, &h, &k), -EINVAL);
        linux_free(&l);
}

static void test_linux_5level_auto(void **state)
{
        (void)state;
        struct linux_img l;
        linux_build(&l, 5);
        struct vmie_linux_hint h = {
            .cr3 = l.upgd | 0x801,
            .check_va = BANNER_5VA,
            .expect = banner,
            .expect_len = sizeof(banner),
            .levels = 0,
        };
        struct vmie_kroot k;
        assert_int_equal(vmie_linux_kernel_root(l.ram, &h, &k), 0);
        assert_int_equal(k.root, l.kpgd);
        assert_int_equal(k.levels, 5);
        h.levels = 4; /* wrong mode given explicitly: not found */
        assert_int_equal(vmie_linux_kernel_root(l.ram, &h, &k), -ENOENT);
        linux_free(&l);
}

/* ---- Windows ------------------------------------------------------------------ */

#define SYSTEM_DTB 0x1aa000ull

/* A real kernel root at pa: n filler entries plus KUSER_SHARED_DATA and
 * ntoskrnl. */
static void win_real(struct win_img *w, uint64_t pa, unsigned n)
{
        win_pml4(w, pa, SELF_OK, n, 0x63, 0);
        win_kernel(w, pa, true, NT_EXPORT);
}

/* Another process's root: the same kernel half, its own self-reference and
 * nuser user-half entries. */
static void win_clone(struct win_img *w, uint64_t from, uint64_t to, unsigned nuser)
{
        memcpy(img_ptr(&w->im, to), img_ptr(&w->im, from), 4096);
        img_put64(&w->im, to + SELF_IDX * 8, to | 0x63 | P_NX);
        for (unsigned i = 0; i < nuser; i++)
                img_put64(&w->im, to + i * 8, (0x600000 + i * 0x1000) | 0x67);
}

static void test_windows_lowstub(void **state)
{
        (void)state;
        struct win_img w;
        win_init(&w);
        win_decoys(&w);
        win_real(&w, SYSTEM_DTB, 12);
        win_lowstub(&w, 0x13000, SYSTEM_DTB);
        struct vmie_ram *ram = win_open(&w);
        struct vmie_kroot k;
        assert_int_equal(vmie_windows_kernel_root(ram, 0, &k), 0);
        assert_int_equal(k.os, VMIE_OS_WINDOWS);
        assert_int_equal(k.method, VMIE_KROOT_LOWSTUB);
        assert_int_equal(k.root, SYSTEM_DTB);
        assert_int_equal(k.kernel_hint, LMTARGET);
        assert_int_equal(k.selfref_index, SELF_IDX);
        assert_int_equal(k.levels, 4);
        /* The kernel base, from LmTarget. */
        uint64_t base = 0;
        assert_int_equal(vmie_kernel_base(ram, &k, &base), 0);
        assert_int_equal(base, NT_BASE);
        /* The self-map works through the ordinary walk. */
        uint64_t i = SELF_IDX;
        uint64_t va = 0xffff000000000000ull | (i << 39) | (i << 30) | (i << 21) | (i << 12);
        struct vmie_as as = {.ram = ram, .root = k.root, .levels = 4};
        uint64_t e;
        assert_int_equal(vmie_read_virt(&as, va + SELF_IDX * 8, &e, 8, NULL), 0);
        assert_int_equal(e & 0x000ffffffffff000ull, SYSTEM_DTB);
        /* Auto probe without a Linux hint. */
        assert_int_equal(vmie_kernel_root(ram, NULL, 0, &k), 0);
        assert_int_equal(k.os, VMIE_OS_WINDOWS);
        vmie_ram_free(ram);
        img_fini(&w.im);
}

static void test_windows_no_stub(void **state)
{
        (void)state;
        struct win_img w;
        win_init(&w);
        win_decoys(&w);
        win_real(&w, SYSTEM_DTB, 6);
        /* Low stubs that must be ignored: CR3 of a decoy, CR3 above 2^40,
         * CR3 with PCID bits, a broken LmTarget, and one in the VGA hole
         * (not in the layout at all, so not even readable). */
        win_lowstub(&w, 0x13000, 0x100000);
        win_lowstub(&w, 0x14000, (1ull << 40) | SYSTEM_DTB);
        win_lowstub(&w, 0x15000, SYSTEM_DTB | 1);
        win_lowstub(&w, 0x16000, SYSTEM_DTB);
        memset(img_ptr(&w.im, 0x16070), 0, 8);
        struct vmie_ram *ram = win_open(&w);
        uint16_t idx = 0;
        for (uint64_t d = 0x100000; d <= 0x107000; d += 0x1000)
                assert_int_equal(vmie_windows_validate_root(ram, d, 0, &idx), -ENOENT);
        assert_int_equal(vmie_windows_validate_root(ram, SYSTEM_DTB, 0, &idx), 0);
        assert_int_equal(idx, SELF_IDX);
        assert_int_equal(vmie_windows_validate_root(ram, 0xb0000, 0, &idx), -ENXIO); /* hole */
        assert_int_equal(vmie_windows_validate_root(ram, 64 * MIB, 0, &idx), -ENXIO);
        struct vmie_kroot k;
        assert_int_equal(vmie_windows_kernel_root(ram, 0, &k), 0);
        assert_int_equal(k.method, VMIE_KROOT_SELFREF);
        assert_int_equal(k.root, SYSTEM_DTB);
        assert_int_equal(k.kernel_hint, NT_BASE);
        assert_int_equal(k.os, VMIE_OS_WINDOWS);
        uint64_t base = 0;
        assert_int_equal(vmie_kernel_base(ram, &k, &base), 0);
        assert_int_equal(base, NT_BASE);
        vmie_ram_free(ram);

        /* Through pread (safe mode) the same. */
        assert_int_equal(img_open(&w.im, VMIE_RAM_NO_MMAP, NULL, &ram), 0);
        assert_int_equal(vmie_windows_kernel_root(ram, 0, &k), 0);
        assert_int_equal(k.root, SYSTEM_DTB);
        vmie_ram_free(ram);

        /* With 5 kernel entries (3 + KUSER's + ntoskrnl's) the real root is
         * not enough either. */
        win_pml4(&w, SYSTEM_DTB, SELF_OK, 3, 0x63, 0);
        w.kpage = WIN_KPAGES;
        win_kernel(&w, SYSTEM_DTB, true, NT_EXPORT);
        ram = win_open(&w);
        assert_int_equal(vmie_windows_kernel_root(ram, 0, &k), -ENOENT);
        vmie_ram_free(ram);
        img_fini(&w.im);
}

/* Windows 11: a dummy self-referencing PML4 low in RAM with a couple of
 * entries, a lookalike with many entries but no Windows kernel, and the real
 * root far above 16 MiB (here at 4 GiB + 512 KiB), with a user process
 * sharing its kernel half lower down. */
#define HIGH_GPA  0x100000000ull
#define REAL_HIGH (HIGH_GPA + 0x80000ull)

static void test_windows_dummy_low_real_high(void **state)
{
        (void)state;
        struct win_img w;
        win_init_layout(&w, 5 * MIB);
        img_range(&w.im, HIGH_GPA, 1 * MIB, 4 * MIB);
        win_pml4(&w, 0x110000, SELF_OK, 2, 0x63, 0); /* the dummy */
        /* The lookalike: more kernel entries than the real one (ranked
         * first), KUSER mapped but executable, no ntoskrnl. */
        win_pml4(&w, 0x111000, SELF_OK, 40, 0x63, 0);
        img_map_k(&w.im, 0x111000, KUSER_VA, win_kpage(&w), 4096, P_RW);
        /* Another: KUSER right, but the only image is a driver. */
        win_pml4(&w, 0x112000, SELF_OK, 40, 0x63, 0);
        img_map_k(&w.im, 0x112000, KUSER_VA, win_kpage(&w), 4096, P_RW | P_NX);
        win_pe(&w, 0x112000, NT_BASE, NT_DRIVER);
        win_real(&w, REAL_HIGH, 12);
        win_clone(&w, REAL_HIGH, 0x120000, 9); /* a process, below 16 MiB */
        struct vmie_ram *ram = win_open(&w);
        uint16_t idx;
        assert_int_equal(vmie_windows_validate_root(ram, 0x110000, 0, &idx), -ENOENT);
        assert_int_equal(vmie_windows_validate_root(ram, 0x111000, 0, &idx), -ENOENT);
        assert_int_equal(vmie_windows_validate_root(ram, 0x112000, 0, &idx), -ENOENT);
        assert_int_equal(vmie_windows_validate_root(ram, REAL_HIGH, 0, &idx), 0);
        assert_int_equal(vmie_windows_validate_root(ram, 0x120000, 0, &idx), 0); /* valid, not System's */
        struct vmie_kroot k;
        assert_int_equal(vmie_windows_kernel_root(ram, 0, &k), 0);
        assert_int_equal(k.method, VMIE_KROOT_SELFREF);
        assert_int_equal(k.root, REAL_HIGH); /* fewest user entries wins */
        assert_int_equal(k.kernel_hint, NT_BASE);
        vmie_ram_free(ram);
        img_fini(&w.im);
}

/* VBS: the vCPU's CR3 is the hypervisor's. It has a self-reference and a
 * full kernel half, but no Windows kernel: it must not validate, and the
 * discovery finds Windows' own root. */
static void test_windows_vbs_cr3(void **state)
{
        (void)state;
        struct win_img w;
        win_init(&w);
        const uint64_t hv = 0x150000;
        win_pml4(&w, hv, SELF_OK, 64, 0x63, 0);
        img_map_k(&w.im, hv, 0xfffff80000000000ull, win_kpage(&w), 4096, P_RW); /* hypervisor code */
        win_real(&w, 0x2c0000, 10);
        struct vmie_ram *ram = win_open(&w);
        uint16_t idx;
        assert_int_equal(vmie_windows_validate_root(ram, hv | 0x3, 0, &idx), -ENOENT);
        struct vmie_as as = {.ram = ram, .root = hv, .levels = 4};
        uint64_t base;
        assert_int_equal(vmie_windows_kernel_base(&as, 0, &base), -ENOENT);
        struct vmie_kroot k;
        assert_int_equal(vmie_windows_kernel_root(ram, 0, &k), 0);
        assert_int_equal(k.root, 0x2c0000);
        assert_int_equal(k.method, VMIE_KROOT_SELFREF);
        vmie_ram_free(ram);
        img_fini(&w.im);
}

/* ntoskrnl's base: by hint, by the kernel-half scan, recognised by export
 * name or by its sections, at 2 MiB or only 4 KiB alignment. */
static void test_windows_kernel_base(void **state)
{
        (void)state;
        struct win_img w;
        win_init(&w);
        win_pml4(&w, SYSTEM_DTB, SELF_OK, 8, 0x63, 0);
        const uint64_t hal = NT_BASE - 0x3000000ull, odd = NT_BASE + 0x40000000ull + 0x7000;
        win_pe(&w, SYSTEM_DTB, hal, NT_DRIVER);
        win_pe(&w, SYSTEM_DTB, odd, NT_SECTIONS);
        struct vmie_ram *ram = win_open(&w);
        struct vmie_as as = {.ram = ram, .root = SYSTEM_DTB, .levels = 4};
        uint64_t base = 0;
        /* Only a 4 KiB-aligned kernel (known by its sections): the second pass. */
        assert_int_equal(vmie_windows_kernel_base(&as, 0, &base), 0);
        assert_int_equal(base, odd);
        assert_int_equal(vmie_windows_kernel_base(&as, odd + 0x123456, &base), 0);
        assert_int_equal(base, odd);
        /* A hint inside the driver: not the kernel, the scan decides. */
        assert_int_equal(vmie_windows_kernel_base(&as, hal + 0x2000, &base), 0);
        assert_int_equal(base, odd);
        vmie_ram_free(ram);
        /* Add the 2 MiB-aligned one: found first. */
        win_pe(&w, SYSTEM_DTB, NT_BASE, NT_EXPORT);
        ram = win_open(&w);
        as.ram = ram;
        assert_int_equal(vmie_windows_kernel_base(&as, 0, &base), 0);
        assert_int_equal(base, NT_BASE);
        assert_int_equal(vmie_windows_kernel_base(&as, LMTARGET, &base), 0);
        assert_int_equal(base, NT_BASE);
        /* Bad arguments. */
        as.levels = 5;
        assert_int_equal(vmie_windows_kernel_base(&as, 0, &base), -EINVAL);
        as.levels = 4;
        assert_int_equal(vmie_windows_kernel_base(&as, 0, NULL), -EINVAL);
        as.root = 64 * MIB;
        assert_int_equal(vmie_windows_kernel_base(&as, 0, &base), -ENXIO);
        vmie_ram_free(ram);
        img_fini(&w.im);
}

static void test_os_kind(void **state)
{
        (void)state;
        struct linux_img l;
        linux_build(&l, 4);
        struct vmie_linux_hint h = {.cr3 = l.upgd, .check_va = BANNER_VA, .expect = banner, .expect_len = 10};
        struct vmie_kroot k;
        /* A Linux guest has no self-referencing PML4. */
        assert_int_equal(vmie_windows_kernel_root(l.ram, 0, &k), -ENOENT);
        assert_int_equal(vmie_kernel_root(l.ram, NULL, 0, &k), -ENOENT);
        assert_int_equal(vmie_kernel_root(l.ram, &h, 0, &k), 0);
        assert_int_equal(k.os, VMIE_OS_LINUX);
        linux_free(&l);

        struct win_img w;
        win_init(&w);
        win_real(&w, SYSTEM_DTB, 7);
        struct vmie_ram *ram = win_open(&w);
        h.cr3 = SYSTEM_DTB; /* a Linux hint on a Windows guest: falls through */
        assert_int_equal(vmie_kernel_root(ram, &h, 0, &k), 0);
        assert_int_equal(k.os, VMIE_OS_WINDOWS);
        assert_int_equal(k.method, VMIE_KROOT_SELFREF);
        h.check_va = 0x1000; /* a bad hint is an error, not a fall-through */
        assert_int_equal(vmie_kernel_root(ram, &h, 0, &k), -EINVAL);
        assert_int_equal(vmie_kernel_root(ram, NULL, 7, &k), -EINVAL);
        vmie_ram_free(ram);
        img_fini(&w.im);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_linux_kpti_pcid),
            cmocka_unit_test(test_linux_non_kpti_bit12),
            cmocka_unit_test(test_linux_failures),
            cmocka_unit_test(test_linux_5level_auto),
            cmocka_unit_test(test_windows_lowstub),
            cmocka_unit_test(test_windows_no_stub),
            cmocka_unit_test(test_windows_dummy_low_real_high),
            cmocka_unit_test(test_windows_vbs_cr3),
            cmocka_unit_test(test_windows_kernel_base),
            cmocka_unit_test(test_os_kind),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
