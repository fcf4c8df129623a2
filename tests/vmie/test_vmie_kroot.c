/* SPDX-License-Identifier: MIT */
/* libvmie kernel-root bootstrap on synthetic images: Linux CR3 validation
 * (PCID, KPTI, non-KPTI, 5-level) and the Windows System DTB scans. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include <cmocka.h>

#include "vmie_img.h"

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
#define SELF_IDX   0x1ed
#define LMTARGET   0xfffff80212345000ull

struct win_img {
        struct img im;
        uint64_t tgt; /* bump allocator for targets of kernel entries */
};

static void win_init(struct win_img *w)
{
        img_init(&w->im, 4 * MIB, 4);
        /* Realistic low RAM: the VGA / ROM hole at a0000-fffff. */
        img_range(&w->im, 0, 0xa0000, 0);
        img_range(&w->im, 0x100000, 3 * MIB, 0x100000);
        w->tgt = 0x300000;
}

enum { SELF_OK = 0, SELF_USER = 1, SELF_ELSEWHERE = 2, SELF_NONE = 3 };

/* A PML4 at pa with a self-reference at idx and n kernel entries whose bits
 * are kbits and whose targets are in RAM unless far. */
static void win_pml4(struct win_img *w, uint64_t pa, int self, unsigned n, uint64_t kbits, int far)
{
        struct img *im = &w->im;
        memset(img_ptr(im, pa), 0, 4096);
        img_put64(im, pa, 0x500000 | 0x67); /* a user-half entry, like System's PML4[0] */
        uint64_t se = (self == SELF_ELSEWHERE ? pa + 0x1000 : pa) | 0x63 | P_NX;
        if (self == SELF_USER)
                se |= P_US;
        if (self != SELF_NONE)
                img_put64(im, pa + SELF_IDX * 8, se);
        for (unsigned i = 0, idx = 256; i < n; idx++) {
                if (idx == SELF_IDX)
                        continue;
                uint64_t t = far ? 0x40000000ull + i * 0x1000 : (w->tgt += 0x1000);
                img_put64(im, pa + idx * 8, t | kbits);
                i++;
        }
}

static void win_lowstub(struct win_img *w, uint64_t at, uint64_t cr3)
{
        uint8_t *p = img_ptr(&w->im, at);
        uint64_t jmp = 0x00000001000600e9ull | (0x2aull << 8); /* byte 1 is free */
        memcpy(p + 0x00, &jmp, 8);
        uint64_t lm = LMTARGET;
        memcpy(p + 0x70, &lm, 8);
        memcpy(p + 0xa0, &cr3, 8);
}

static void win_decoys(struct win_img *w)
{
        win_pml4(w, 0x100000, SELF_OK, 3, 0x63, 0);        /* too few kernel entries */
        win_pml4(w, 0x101000, SELF_USER, 8, 0x63, 0);      /* user-accessible self-ref */
        win_pml4(w, 0x102000, SELF_ELSEWHERE, 8, 0x63, 0); /* "self-ref" to another page */
        win_pml4(w, 0x104000, SELF_OK, 8, 0x63, 1);        /* kernel entries outside RAM */
        win_pml4(w, 0x105000, SELF_OK, 8, 0x63 | P_PS, 0); /* PS in PML4Es */
        win_pml4(w, 0x106000, SELF_OK, 8, 0x67, 0);        /* user kernel-half entries */
        win_pml4(w, 0x107000, SELF_NONE, 20, 0x63, 0);     /* no self-ref at all */
}

static struct vmie_ram *win_open(struct win_img *w)
{
        struct vmie_ram *ram = NULL;
        assert_int_equal(img_open(&w->im, 0, NULL, &ram), 0);
        return ram;
}

static void test_windows_lowstub(void **state)
{
        (void)state;
        struct win_img w;
        win_init(&w);
        win_decoys(&w);
        win_pml4(&w, SYSTEM_DTB, SELF_OK, 12, 0x63, 0);
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

static void test_windows_selfref_fallback(void **state)
{
        (void)state;
        struct win_img w;
        win_init(&w);
        win_decoys(&w);
        win_pml4(&w, SYSTEM_DTB, SELF_OK, 6, 0x63, 0);
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
        assert_int_equal(k.kernel_hint, 0);
        assert_int_equal(k.os, VMIE_OS_WINDOWS);
        vmie_ram_free(ram);

        /* With only 5 kernel entries the real root is not enough either. */
        win_pml4(&w, SYSTEM_DTB, SELF_OK, 5, 0x63, 0);
        ram = win_open(&w);
        assert_int_equal(vmie_windows_kernel_root(ram, 0, &k), -ENOENT);
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
        win_pml4(&w, SYSTEM_DTB, SELF_OK, 7, 0x63, 0);
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
            cmocka_unit_test(test_linux_kpti_pcid), cmocka_unit_test(test_linux_non_kpti_bit12),
            cmocka_unit_test(test_linux_failures),  cmocka_unit_test(test_linux_5level_auto),
            cmocka_unit_test(test_windows_lowstub), cmocka_unit_test(test_windows_selfref_fallback),
            cmocka_unit_test(test_os_kind),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
