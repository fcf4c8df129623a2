/* SPDX-License-Identifier: MIT */
/* libvmie paging: the walk, CR3 normalisation, the translation cache,
 * virtual reads and write planning, over page tables built in memfds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include <cmocka.h>

#include "vmie/internal.h"
#include "vmie_img.h"

#define KVA   0xffff888000001000ull /* a 4-level kernel VA */
#define UVA   0x00007f0000002000ull
#define LA57V 0xff11000000003000ull /* canonical only with 5 levels */

struct fx {
        struct img im;
        struct vmie_ram *ram;
        int fd; /* RW memfd behind ram, for pokes and writes */
        uint64_t root;
};

static void fx_open(struct fx *f, unsigned flags)
{
        assert_int_equal(img_open(&f->im, flags, &f->fd, &f->ram), 0);
}

static void fx_close(struct fx *f)
{
        f->ram = vmie_ram_free(f->ram);
        close(f->fd);
        img_fini(&f->im);
}

/* Rewrite one entry in the live file (the ram maps it MAP_SHARED). */
static void fx_poke(struct fx *f, uint64_t gpa, uint64_t v)
{
        uint64_t off;
        assert_int_equal(vmie_ram_gpa_to_offset(f->ram, gpa, &off, NULL), 0);
        assert_int_equal(pwrite(f->fd, &v, 8, (off_t)off), 8);
        img_put64(&f->im, gpa, v);
}

static struct vmie_as fx_as(struct fx *f, unsigned levels)
{
        return (struct vmie_as){.ram = f->ram, .root = f->root, .levels = (uint8_t)levels};
}

static void fill(struct img *im, uint64_t gpa, size_t n, uint8_t seed)
{
        for (size_t i = 0; i < n; i++)
                img_ptr(im, gpa)[i] = (uint8_t)(seed + i);
}

/* ---- walks ---------------------------------------------------------------- */

static void build_basic(struct fx *f, unsigned levels)
{
        img_init(&f->im, 8 * MIB, levels);
        img_range(&f->im, 0, 8 * MIB, 0);
        f->im.next = 0x10000;
        f->root = img_page(&f->im);
        uint64_t kva = levels == 5 ? LA57V : KVA;
        img_map(&f->im, f->root, kva, 0x300000, 4 * KIB, P_RW | P_NX);
        img_map(&f->im, f->root, UVA, 0x301000, 4 * KIB, P_US);
        img_map(&f->im, f->root, 0xffffffff80000000ull, 0x400000, 2 * MIB, P_RW | P_PATBIG); /* 2M, PAT */
        img_map(&f->im, f->root, 0xffffffc000000000ull, 0, GIB, P_RW | P_PATBIG);            /* 1G, PAT */
        img_map(&f->im, f->root, 0xffff888000005000ull, 0x302000, 4 * KIB, P_PAT4K);         /* PTE PAT */
        fill(&f->im, 0x300000, 4096, 1);
        fill(&f->im, 0x301000, 4096, 2);
}

static void walk_basic(unsigned levels, unsigned flags)
{
        struct fx f;
        build_basic(&f, levels);
        fx_open(&f, flags);
        struct vmie_as as = fx_as(&f, levels);
        struct vmie_xlate x;
        uint64_t kva = levels == 5 ? LA57V : KVA;

        assert_int_equal(vmie_walk(&as, kva + 0x123, &x), 0);
        assert_int_equal(x.gpa, 0x300123);
        assert_int_equal(x.page_size, 4096);
        assert_true(x.writable);
        assert_false(x.user); /* intermediates are U, the leaf is not */
        assert_true(x.nx);
        assert_int_equal(vmie_walk(&as, UVA + 0xfff, &x), 0);
        assert_int_equal(x.gpa, 0x301fff);
        assert_false(x.writable);
        assert_true(x.user);
        assert_false(x.nx);

        /* 2 MiB leaf with PAT (bit 12) set: not an address bit. */
        assert_int_equal(vmie_walk(&as, 0xffffffff80000000ull + 0x1abcde, &x), 0);
        assert_int_equal(x.gpa, 0x400000 + 0x1abcde);
        assert_int_equal(x.page_size, 2 * MIB);
        /* 1 GiB leaf with PAT set. */
        assert_int_equal(vmie_walk(&as, 0xffffffc000000000ull + 0x2345678, &x), 0);
        assert_int_equal(x.gpa, 0x2345678);
        assert_int_equal(x.page_size, GIB);
        /* Bit 7 of a PTE is PAT, not PS. */
        assert_int_equal(vmie_walk(&as, 0xffff888000005010ull, &x), 0);
        assert_int_equal(x.gpa, 0x302010);
        assert_int_equal(x.page_size, 4096);

        /* Unmapped, non-canonical, bad mode. */
        assert_int_equal(vmie_walk(&as, kva + 0x10000, &x), -EFAULT);
        assert_int_equal(vmie_walk(&as, 0x0000800000000000ull, &x), levels == 4 ? -ERANGE : -EFAULT);
        assert_int_equal(vmie_walk(&as, 0x0100000000000000ull, &x), -ERANGE);
        struct vmie_as bad = as;
        bad.levels = 3;
        assert_int_equal(vmie_walk(&bad, kva, &x), -EINVAL);
        bad = as;
        bad.maxphyaddr = 53;
        assert_int_equal(vmie_walk(&bad, kva, &x), -EINVAL);
        /* A root outside RAM. */
        bad = as;
        bad.root = 64 * MIB;
        assert_int_equal(vmie_walk(&bad, kva, &x), -ENXIO);

        /* Reads through the translation. */
        uint8_t b[16];
        assert_int_equal(vmie_read_virt(&as, kva + 8, b, sizeof(b), NULL), 0);
        for (int i = 0; i < 16; i++)
                assert_int_equal(b[i], (uint8_t)(1 + 8 + i));
        fx_close(&f);
}

static void test_walk_4level(void **state)
{
        (void)state;
        walk_basic(4, 0);
        walk_basic(4, VMIE_RAM_NO_MMAP);
}

static void test_walk_5level(void **state)
{
        (void)state;
        walk_basic(5, 0);
        walk_basic(5, VMIE_RAM_NO_MMAP);
        /* The LA57 VA is not canonical under 4-level paging. */
        assert_false(vmie_va_canonical(LA57V, 4));
        assert_true(vmie_va_canonical(LA57V, 5));
        assert_true(vmie_va_canonical(KVA, 4));
        assert_true(vmie_va_canonical(0x00007fffffffffffull, 4));
        assert_false(vmie_va_canonical(0x0000800000000000ull, 4));
        assert_true(vmie_va_canonical(0x00ffffffffffffffull, 5));
        assert_false(vmie_va_canonical(0x0100000000000000ull, 5));
        assert_false(vmie_va_canonical(KVA, 3));
}

static void test_not_present_each_level(void **state)
{
        (void)state;
        for (unsigned levels = 4; levels <= 5; levels++) {
                uint64_t kva = levels == 5 ? LA57V : KVA;
                for (unsigned lvl = 1; lvl <= levels; lvl++) {
                        struct fx f;
                        build_basic(&f, levels);
                        uint64_t ea = img_entry(&f.im, f.root, kva, lvl);
                        img_put64(&f.im, ea, img_get64(&f.im, ea) & ~P_P);
                        fx_open(&f, 0);
                        struct vmie_as as = fx_as(&f, levels);
                        struct vmie_xlate x;
                        assert_int_equal(vmie_walk(&as, kva, &x), -EFAULT);
                        fx_close(&f);
                }
                /* PS in a PML4E / PML5E is reserved. */
                for (unsigned lvl = 4; lvl <= levels; lvl++) {
                        struct fx f;
                        build_basic(&f, levels);
                        uint64_t ea = img_entry(&f.im, f.root, kva, lvl);
                        img_put64(&f.im, ea, img_get64(&f.im, ea) | P_PS);
                        fx_open(&f, 0);
                        struct vmie_as as = fx_as(&f, levels);
                        struct vmie_xlate x;
                        assert_int_equal(vmie_walk(&as, kva, &x), -EFAULT);
                        fx_close(&f);
                }
        }
}

static void test_flags_accumulate(void **state)
{
        (void)state;
        struct fx f;
        build_basic(&f, 4);
        /* Clear RW at the PDPTE, US at the PML4E, set NX only at the PDE of
         * the user page. */
        uint64_t ea = img_entry(&f.im, f.root, UVA, 3);
        img_put64(&f.im, ea, img_get64(&f.im, ea) & ~P_RW);
        ea = img_entry(&f.im, f.root, UVA, 2);
        img_put64(&f.im, ea, img_get64(&f.im, ea) | P_NX);
        img_map(&f.im, f.root, UVA, 0x301000, 4096, P_US | P_RW);
        ea = img_entry(&f.im, f.root, KVA, 4);
        img_put64(&f.im, ea, img_get64(&f.im, ea) & ~P_US);
        fx_open(&f, 0);
        struct vmie_as as = fx_as(&f, 4);
        struct vmie_xlate x;
        assert_int_equal(vmie_walk(&as, UVA, &x), 0);
        assert_false(x.writable);
        assert_true(x.user);
        assert_true(x.nx);
        assert_int_equal(vmie_walk(&as, KVA, &x), 0);
        assert_false(x.user);
        assert_true(x.writable);
        fx_close(&f);
}

static void test_maxphyaddr_masking(void **state)
{
        (void)state;
        struct fx f;
        build_basic(&f, 4);
        /* Leaf with software bits 52..62, NX, and bit 45 (above a 40-bit
         * MAXPHYADDR: an encryption/key-id bit). */
        const uint64_t junk = 0x7ff0000000000000ull | P_NX;
        img_map(&f.im, f.root, KVA, 0x300000 | (1ull << 45) | junk, 4096, P_RW);
        /* An intermediate table address with bit 47 set (C-bit style). */
        uint64_t pt = img_entry(&f.im, f.root, UVA, 2);
        img_put64(&f.im, pt, img_get64(&f.im, pt) | (1ull << 47) | 0x0ff0000000000000ull);
        /* 2 MiB leaf with bits 13..20 set (reserved) plus high junk. */
        img_map(&f.im, f.root, 0xffffffff80000000ull, 0x400000 | 0x1fe000 | junk, 2 * MIB, P_PATBIG);
        fx_open(&f, 0);
        struct vmie_as as = fx_as(&f, 4);
        struct vmie_xlate x;

        as.maxphyaddr = 40;
        assert_int_equal(vmie_walk(&as, KVA + 5, &x), 0);
        assert_int_equal(x.gpa, 0x300005);
        assert_true(x.nx);
        assert_int_equal(vmie_walk(&as, UVA, &x), 0);
        assert_int_equal(x.gpa, 0x301000);
        assert_int_equal(vmie_walk(&as, 0xffffffff80000000ull + 0x12345, &x), 0);
        assert_int_equal(x.gpa, 0x412345);

        as.maxphyaddr = 0; /* 52: bits 45 / 47 are address bits now */
        assert_int_equal(vmie_walk(&as, KVA + 5, &x), 0);
        assert_int_equal(x.gpa, (1ull << 45) | 0x300005);
        uint8_t b;
        assert_int_equal(vmie_read_virt(&as, KVA, &b, 1, NULL), -EFAULT); /* not RAM */
        assert_int_equal(vmie_walk(&as, UVA, &x), -ENXIO);                /* table outside RAM */
        fx_close(&f);
}

static void test_cr3_normalisation(void **state)
{
        (void)state;
        /* PCID in bits 0..11 is dropped. */
        assert_int_equal(vmie_cr3_root(0x10000ull | 0x5, 0), 0x10000);
        assert_int_equal(vmie_cr3_root(0x10fffull, 0), 0x10000);
        /* KPTI: user PGD = kernel PGD + 4 KiB (bit 12); PCID bit 11 too. */
        assert_int_equal(vmie_cr3_kernel_root(0x11000ull | 0x800 | 0x3, 0), 0x10000);
        assert_int_equal(vmie_cr3_kernel_root(0x10000ull | 0x3, 0), 0x10000);
        assert_int_equal(vmie_cr3_root(0x11000ull, 0), 0x11000);
        /* Bit 63 (no-flush on MOV) and bits above MAXPHYADDR are not address. */
        assert_int_equal(vmie_cr3_root((1ull << 63) | (1ull << 45) | 0x7000, 40), 0x7000);
        assert_int_equal(vmie_cr3_root((1ull << 63) | (1ull << 45) | 0x7000, 0), (1ull << 45) | 0x7000);
}

static void test_split_layout_walk(void **state)
{
        (void)state;
        /* Page tables in low RAM, data above 4 GiB, high file offset = low size. */
        struct fx f;
        const uint64_t low = 1 * MIB;
        img_init(&f.im, 2 * MIB, 4);
        img_range(&f.im, 0, low, 0);
        img_range(&f.im, 4 * GIB, 1 * MIB, low);
        f.im.next = 0x10000;
        f.root = img_page(&f.im);
        img_map(&f.im, f.root, KVA, 4 * GIB + 0x3000, 4096, P_RW);
        img_map(&f.im, f.root, KVA + 0x1000, 4 * GIB + 0x1000, 4096, P_RW);
        img_map(&f.im, f.root, KVA + 0x2000, low - 0x1000, 4096, P_RW); /* last low page */
        img_map(&f.im, f.root, KVA + 0x3000, low, 4096, P_RW);          /* the hole after it */
        fill(&f.im, 4 * GIB + 0x3000, 4096, 10);
        fill(&f.im, 4 * GIB + 0x1000, 4096, 20);
        fill(&f.im, low - 0x1000, 4096, 30);
        fx_open(&f, 0);
        /* the high page really is at file offset low + 0x3000 */
        assert_int_equal(f.im.buf[low + 0x3000], 10);
        struct vmie_as as = fx_as(&f, 4);
        uint8_t b[0x3000];
        size_t done = 99;
        /* Across a page boundary onto a non-contiguous frame. */
        assert_int_equal(vmie_read_virt(&as, KVA + 0xff0, b, 0x20, &done), 0);
        assert_int_equal(done, 0x20);
        for (int i = 0; i < 16; i++) {
                assert_int_equal(b[i], (uint8_t)(10 + 0xff0 + i));
                assert_int_equal(b[16 + i], (uint8_t)(20 + i));
        }
        /* Into a page that maps a RAM hole: error, with the exact prefix. */
        assert_int_equal(vmie_read_virt(&as, KVA + 0x2800, b, 0x1000, &done), -EFAULT);
        assert_int_equal(done, 0x800);
        for (int i = 0; i < 0x800; i++)
                assert_int_equal(b[i], (uint8_t)(30 + 0x800 + i));
        /* Starting in the page that maps the hole. */
        assert_int_equal(vmie_read_virt(&as, KVA + 0x3ff0, b, 0x20, &done), -EFAULT);
        assert_int_equal(done, 0);
        assert_int_equal(vmie_read_virt(&as, KVA + 0x2ff8, b, 0x2000, &done), -EFAULT);
        assert_int_equal(done, 8);
        /* Wrapping length. */
        assert_int_equal(vmie_read_virt(&as, ~0ull - 4, b, 16, &done), -EINVAL);
        fx_close(&f);
}

static void test_mid_page_hole(void **state)
{
        (void)state;
        struct fx f;
        img_init(&f.im, 1 * MIB, 4);
        img_range(&f.im, 0, 0x80800, 0); /* ends mid-page */
        img_range(&f.im, 0x81000, 0x1000, 0x81000);
        f.im.next = 0x10000;
        f.root = img_page(&f.im);
        img_map(&f.im, f.root, KVA, 0x80000, 4096, 0);
        img_map(&f.im, f.root, KVA + 0x1000, 0x81000, 4096, 0);
        fx_open(&f, 0);
        struct vmie_as as = fx_as(&f, 4);
        uint8_t b[0x2000];
        size_t done;
        assert_int_equal(vmie_read_virt(&as, KVA + 0x700, b, 0x1000, &done), -EFAULT);
        assert_int_equal(done, 0x100);
        fx_close(&f);
}

static void test_read_str(void **state)
{
        (void)state;
        struct fx f;
        build_basic(&f, 4);
        img_map(&f.im, f.root, KVA + 0x1000, 0x305000, 4096, 0); /* non-contiguous next frame */
        /* "hello, world" straddling the boundary of KVA's page. */
        memcpy(img_ptr(&f.im, 0x300ffa), "hello,", 6);
        memcpy(img_ptr(&f.im, 0x305000), " world", 7);
        /* A string whose NUL is the very last byte before an unmapped page. */
        img_map(&f.im, f.root, KVA + 0x7000, 0x306000, 4096, 0);
        memset(img_ptr(&f.im, 0x306000), 'a', 4095);
        img_ptr(&f.im, 0x306000)[4095] = 0;
        /* A page with no NUL, followed by an unmapped page. */
        img_map(&f.im, f.root, KVA + 0x9000, 0x307000, 4096, 0);
        memset(img_ptr(&f.im, 0x307000), 'b', 4096);
        fx_open(&f, 0);
        struct vmie_as as = fx_as(&f, 4);
        char s[64];
        size_t n = 0;
        assert_int_equal(vmie_read_str(&as, KVA + 0xffa, s, sizeof(s), &n), 0);
        assert_string_equal(s, "hello, world");
        assert_int_equal(n, 12);
        /* Truncated. */
        assert_int_equal(vmie_read_str(&as, KVA + 0xffa, s, 8, &n), -E2BIG);
        assert_string_equal(s, "hello, ");
        assert_int_equal(n, 7);
        char big[5000];
        assert_int_equal(vmie_read_str(&as, KVA + 0x7000, big, sizeof(big), &n), 0);
        assert_int_equal(n, 4095);
        assert_int_equal(vmie_read_str(&as, KVA + 0x9f00, big, sizeof(big), &n), -EFAULT);
        assert_int_equal(strlen(big), 0x100);
        assert_int_equal(vmie_read_str(&as, KVA + 0x9f00, s, 1, &n), -E2BIG);
        assert_string_equal(s, "");
        assert_int_equal(vmie_read_str(&as, KVA, s, 0, &n), -EINVAL);
        assert_int_equal(vmie_read_str(&as, 0x0000900000000000ull, s, sizeof(s), &n), -ERANGE);
        fx_close(&f);
}

/* ---- translation cache ---------------------------------------------------- */

static uint64_t fake_now;
static uint64_t fake_clock(void *arg)
{
        return *(uint64_t *)arg;
}

static void test_tlb_hit_and_epoch(void **state)
{
        (void)state;
        struct fx f;
        build_basic(&f, 4);
        fx_open(&f, 0);
        struct vmie_tlb *tlb = NULL;
        assert_int_equal(vmie_tlb_new(0, 0, &tlb), 0);
        struct vmie_as as = fx_as(&f, 4);
        as.tlb = tlb;
        as.epoch = 7;
        struct vmie_xlate x, y;
        struct vmie_tlb_stats st;
        assert_int_equal(vmie_translate(&as, KVA + 1, &x), 0);
        assert_int_equal(vmie_translate(&as, KVA + 2, &y), 0);
        vmie_tlb_stats(tlb, &st);
        assert_int_equal(st.misses, 1);
        assert_int_equal(st.hits, 1);
        assert_int_equal(y.gpa, 0x300002);
        assert_int_equal(y.page_size, 4096);
        assert_true(y.writable == x.writable && y.user == x.user && y.nx == x.nx && y.nx);

        /* Remap in the live file: the cache still answers the old frame. */
        uint64_t pte = img_entry(&f.im, f.root, KVA, 1);
        fx_poke(&f, pte, 0x301000 | P_P);
        assert_int_equal(vmie_translate(&as, KVA, &x), 0);
        assert_int_equal(x.gpa, 0x300000);
        assert_int_equal(vmie_walk(&as, KVA, &x), 0); /* uncached sees it */
        assert_int_equal(x.gpa, 0x301000);
        /* Same epoch: still cached; a new epoch flushes. */
        assert_int_equal(vmie_translate(&as, KVA, &x), 0);
        assert_int_equal(x.gpa, 0x300000);
        as.epoch = 8;
        assert_int_equal(vmie_translate(&as, KVA, &x), 0);
        assert_int_equal(x.gpa, 0x301000);
        assert_false(x.writable);
        /* Explicit flush. */
        fx_poke(&f, pte, 0x302000 | P_P | P_RW);
        vmie_tlb_flush(tlb);
        assert_int_equal(vmie_translate(&as, KVA, &x), 0);
        assert_int_equal(x.gpa, 0x302000);
        vmie_tlb_stats(tlb, &st);
        assert_int_equal(st.flushes, 3); /* first use of epoch 7, epoch 8, explicit */

        /* Failures are not cached. */
        assert_int_equal(vmie_translate(&as, KVA + 0x20000, &x), -EFAULT);
        fx_poke(&f, img_entry(&f.im, f.root, KVA + 0x20000, 1), 0x303000 | P_P);
        assert_int_equal(vmie_translate(&as, KVA + 0x20000, &x), 0);
        assert_int_equal(x.gpa, 0x303000);

        /* Big pages are cached per 4 KiB page but keep their size. */
        assert_int_equal(vmie_translate(&as, 0xffffffff80000000ull + 0x5123, &x), 0);
        assert_int_equal(vmie_translate(&as, 0xffffffff80000000ull + 0x5456, &x), 0);
        assert_int_equal(x.gpa, 0x405456);
        assert_int_equal(x.page_size, 2 * MIB);
        assert_int_equal(vmie_translate(&as, 0xffffffc000000000ull + 0x3000010, &x), 0);
        assert_int_equal(vmie_translate(&as, 0xffffffc000000000ull + 0x3000020, &x), 0);
        assert_int_equal(x.gpa, 0x3000020);
        assert_int_equal(x.page_size, GIB);

        /* Different root / mode never hit each other's entries. */
        struct vmie_as other = as;
        other.root = 0x500000; /* zero page: nothing mapped */
        assert_int_equal(vmie_translate(&other, KVA, &x), -EFAULT);
        other = as;
        other.levels = 5; /* same root walked as 5-level: PML5[511] -> ... */
        int r5 = vmie_translate(&other, KVA, &x);
        struct vmie_xlate w5;
        assert_int_equal(vmie_walk(&other, KVA, &w5), r5);
        if (r5 == 0)
                assert_int_equal(x.gpa, w5.gpa);
        vmie_tlb_free(tlb);
        fx_close(&f);
}

static void test_tlb_lifetime(void **state)
{
        (void)state;
        struct fx f;
        build_basic(&f, 4);
        fx_open(&f, 0);
        struct vmie_tlb *tlb = NULL;
        assert_int_equal(vmie_tlb_new(64, 10 * 1000000ull, &tlb), 0); /* 10 ms */
        fake_now = 1000ull * 1000000000ull;
        vmiei_tlb_set_clock(tlb, fake_clock, &fake_now);
        struct vmie_as as = fx_as(&f, 4);
        as.tlb = tlb;
        struct vmie_xlate x;
        assert_int_equal(vmie_translate(&as, KVA, &x), 0);
        fx_poke(&f, img_entry(&f.im, f.root, KVA, 1), 0x301000 | P_P);
        fake_now += 5 * 1000000ull;
        assert_int_equal(vmie_translate(&as, KVA, &x), 0);
        assert_int_equal(x.gpa, 0x300000); /* still fresh */
        fake_now += 6 * 1000000ull;
        /* Expired: vmie_translate notices within VMIEI_TLB_CLOCK_EVERY calls
         * (it reads the clock only that often) and walks again. */
        unsigned stale = 0;
        for (unsigned i = 0; i < VMIEI_TLB_CLOCK_EVERY; i++) {
                assert_int_equal(vmie_translate(&as, KVA, &x), 0);
                if (x.gpa == 0x300000) {
                        assert_int_equal(stale, i); /* never stale again once refreshed */
                        stale++;
                } else {
                        assert_int_equal(x.gpa, 0x301000);
                }
        }
        assert_true(stale < VMIEI_TLB_CLOCK_EVERY);
        struct vmie_tlb_stats st;
        vmie_tlb_stats(tlb, &st);
        assert_int_equal(st.misses, 2);
        /* The real clock works too (1 ms TTL, sleep well past it). */
        vmiei_tlb_set_clock(tlb, NULL, NULL);
        vmie_tlb_free(tlb);
        assert_int_equal(vmie_tlb_new(64, 1000000ull, &tlb), 0);
        as.tlb = tlb;
        assert_int_equal(vmie_translate(&as, KVA, &x), 0);
        fx_poke(&f, img_entry(&f.im, f.root, KVA, 1), 0x302000 | P_P);
        usleep(30 * 1000);
        for (unsigned i = 0; i < VMIEI_TLB_CLOCK_EVERY; i++)
                assert_int_equal(vmie_translate(&as, KVA, &x), 0);
        assert_int_equal(x.gpa, 0x302000);
        vmie_tlb_free(tlb);
        fx_close(&f);
}

static void test_tlb_bounded(void **state)
{
        (void)state;
        struct vmie_tlb *tlb = NULL;
        assert_int_equal(vmie_tlb_new(VMIE_TLB_MAX_ENTRIES + 1, 0, &tlb), -EINVAL);
        assert_int_equal(vmie_tlb_new(0, 0, NULL), -EINVAL);
        assert_null(vmie_tlb_free(NULL));
        vmie_tlb_flush(NULL);
        /* 16 entries, 512 pages: lots of collisions, answers stay right. */
        struct fx f;
        img_init(&f.im, 8 * MIB, 4);
        img_range(&f.im, 0, 8 * MIB, 0);
        f.im.next = 0x10000;
        f.root = img_page(&f.im);
        for (uint64_t i = 0; i < 512; i++)
                img_map(&f.im, f.root, KVA + i * 4096, 0x400000 + ((i * 37) % 512) * 4096, 4096, 0);
        fx_open(&f, 0);
        assert_int_equal(vmie_tlb_new(10, 0, &tlb), 0);
        assert_int_equal(vmiei_tlb_entries(tlb), 16);
        struct vmie_as as = fx_as(&f, 4);
        as.tlb = tlb;
        for (int round = 0; round < 3; round++)
                for (uint64_t i = 0; i < 512; i++) {
                        struct vmie_xlate x;
                        assert_int_equal(vmie_translate(&as, KVA + i * 4096 + 8, &x), 0);
                        assert_int_equal(x.gpa, 0x400000 + ((i * 37) % 512) * 4096 + 8);
                }
        struct vmie_tlb_stats st;
        vmie_tlb_stats(tlb, &st);
        assert_int_equal(st.hits + st.misses, 3 * 512);
        assert_true(st.misses >= 512 * 3 - 16 * 3); /* cannot hold more than 16 */
        /* A big read through a small cache. */
        uint8_t *b = malloc(512 * 4096);
        assert_int_equal(vmie_read_virt(&as, KVA, b, 512 * 4096, NULL), 0);
        free(b);
        vmie_tlb_free(tlb);
        fx_close(&f);
}

/* The staleness bound of paging.h, exactly: reads check the clock on every
 * call, vmie_translate at least every VMIEI_TLB_CLOCK_EVERY calls, a miss
 * stamps its fill with a fresh reading. */
static void test_tlb_staleness_bound(void **state)
{
        (void)state;
        struct fx f;
        build_basic(&f, 4);
        fx_open(&f, 0);
        struct vmie_tlb *tlb = NULL;
        assert_int_equal(vmie_tlb_new(64, 10 * 1000000ull, &tlb), 0); /* 10 ms */
        fake_now = 5000ull * 1000000000ull;
        vmiei_tlb_set_clock(tlb, fake_clock, &fake_now);
        struct vmie_as as = fx_as(&f, 4);
        as.tlb = tlb;
        uint64_t pte = img_entry(&f.im, f.root, KVA, 1);
        struct vmie_xlate x;
        uint8_t b[8];

        /* vmie_read_virt reads the clock itself: an expired entry is never
         * used, whatever vmie_translate's budget. */
        assert_int_equal(vmie_translate(&as, KVA, &x), 0);
        fx_poke(&f, pte, 0x301000 | P_P);
        fake_now += 11 * 1000000ull;
        assert_int_equal(vmie_read_virt(&as, KVA, b, sizeof(b), NULL), 0);
        struct vmie_tlb_stats st;
        vmie_tlb_stats(tlb, &st);
        assert_int_equal(st.misses, 2); /* re-walked */
        assert_int_equal(vmie_translate(&as, KVA, &x), 0);
        assert_int_equal(x.gpa, 0x301000);

        /* Worst case for vmie_translate: the clock read was just spent on a
         * miss of another page, then the entry expires. At most
         * VMIEI_TLB_CLOCK_EVERY - 1 further calls may still get it. */
        fx_poke(&f, pte, 0x302000 | P_P);
        assert_int_equal(vmie_translate(&as, KVA + 0x4000, &x), 0); /* miss: fresh reading */
        fake_now += 11 * 1000000ull;
        unsigned stale = 0, i;
        for (i = 0; i < 4 * VMIEI_TLB_CLOCK_EVERY; i++) {
                assert_int_equal(vmie_translate(&as, KVA, &x), 0);
                if (x.gpa != 0x301000)
                        break;
                stale++;
        }
        assert_int_equal(x.gpa, 0x302000);
        assert_true(stale <= VMIEI_TLB_CLOCK_EVERY - 1);
        /* The re-walked entry is stamped fresh: hit from now on. */
        vmie_tlb_stats(tlb, &st);
        uint64_t misses = st.misses;
        for (i = 0; i < 2 * VMIEI_TLB_CLOCK_EVERY; i++)
                assert_int_equal(vmie_translate(&as, KVA, &x), 0);
        vmie_tlb_stats(tlb, &st);
        assert_int_equal(st.misses, misses);

        /* Flush and epoch changes act on the very next call, with no clock. */
        fx_poke(&f, pte, 0x303000 | P_P);
        vmie_tlb_flush(tlb);
        assert_int_equal(vmie_translate(&as, KVA, &x), 0);
        assert_int_equal(x.gpa, 0x303000);
        fx_poke(&f, pte, 0x304000 | P_P);
        as.epoch++;
        assert_int_equal(vmie_translate(&as, KVA, &x), 0);
        assert_int_equal(x.gpa, 0x304000);
        /* So does a change of root, mode or RAM in the same epoch. */
        struct vmie_as other = as;
        other.ram = NULL;
        assert_int_equal(vmie_translate(&other, KVA, &x), -EINVAL);
        other = as;
        other.levels = 7;
        assert_int_equal(vmie_translate(&other, KVA, &x), -EINVAL);
        other = as;
        other.root = 0x500000; /* zero page: nothing mapped */
        assert_int_equal(vmie_translate(&other, KVA, &x), -EFAULT);
        assert_int_equal(vmie_translate(&as, KVA, &x), 0);
        assert_int_equal(x.gpa, 0x304000);
        assert_int_equal(vmie_translate(NULL, KVA, &x), -EINVAL);
        assert_int_equal(vmie_translate(&as, KVA, NULL), -EINVAL);
        vmie_tlb_free(tlb);
        fx_close(&f);
}

/* Placement: a contiguous range of as many pages as the cache has entries is
 * held entirely, and a cyclic scan over more pages than fit still hits. */
static void test_tlb_placement(void **state)
{
        (void)state;
        struct fx f;
        img_init(&f.im, 8 * MIB, 4);
        img_range(&f.im, 0, 8 * MIB, 0);
        f.im.next = 0x10000;
        f.root = img_page(&f.im);
        for (uint64_t i = 0; i < 512; i++)
                img_map(&f.im, f.root, KVA + i * 4096, 0x400000 + ((i * 37) % 512) * 4096, 4096, 0);
        fx_open(&f, 0);
        struct vmie_tlb *tlb = NULL;
        assert_int_equal(vmie_tlb_new(256, 0, &tlb), 0);
        struct vmie_as as = fx_as(&f, 4);
        as.tlb = tlb;
        struct vmie_xlate x;
        struct vmie_tlb_stats st;
        /* 256 contiguous pages, visited in a scrambled order, twice. */
        for (int round = 0; round < 2; round++)
                for (uint64_t k = 0; k < 256; k++) {
                        uint64_t i = (k * 101) % 256;
                        assert_int_equal(vmie_translate(&as, KVA + i * 4096, &x), 0);
                        assert_int_equal(x.gpa, 0x400000 + ((i * 37) % 512) * 4096);
                }
        vmie_tlb_stats(tlb, &st);
        assert_int_equal(st.misses, 256);
        assert_int_equal(st.hits, 256);
        /* 512 pages through 256 entries in a cycle: every set is over-full,
         * yet the kept way still answers (LRU would miss every time). */
        vmie_tlb_flush(tlb);
        for (int round = 0; round < 3; round++)
                for (uint64_t i = 0; i < 512; i++) {
                        assert_int_equal(vmie_translate(&as, KVA + i * 4096, &x), 0);
                        assert_int_equal(x.gpa, 0x400000 + ((i * 37) % 512) * 4096);
                }
        vmie_tlb_stats(tlb, &st);
        assert_true(st.hits >= 256 + 2 * 128);
        vmie_tlb_free(tlb);
        fx_close(&f);
}

/* Big leaves are cached per 2 MiB region: one walk answers every 4 KiB page
 * of the region, a 1 GiB leaf takes one walk per 2 MiB region it is used
 * in, and flushes drop them like 4 KiB entries. */
static void test_tlb_big_regions(void **state)
{
        (void)state;
        struct fx f;
        build_basic(&f, 4);
        fx_open(&f, 0);
        struct vmie_tlb *tlb = NULL;
        assert_int_equal(vmie_tlb_new(16, 0, &tlb), 0);
        struct vmie_as as = fx_as(&f, 4);
        as.tlb = tlb;
        struct vmie_xlate x;
        struct vmie_tlb_stats st;
        const uint64_t v2m = 0xffffffff80000000ull, v1g = 0xffffffc000000000ull;
        /* 64 distinct 4 KiB pages of the 2 MiB leaf: more than the 4 KiB
         * table holds, still one walk. */
        for (int round = 0; round < 2; round++)
                for (uint64_t i = 0; i < 64; i++) {
                        assert_int_equal(vmie_translate(&as, v2m + i * 0x7000 + 5, &x), 0);
                        assert_int_equal(x.gpa, 0x400000 + i * 0x7000 + 5);
                        assert_int_equal(x.page_size, 2 * MIB);
                        assert_true(x.writable);
                        assert_false(x.nx);
                }
        vmie_tlb_stats(tlb, &st);
        assert_int_equal(st.misses, 1);
        assert_int_equal(st.hits, 127);
        /* 1 GiB leaf: two 2 MiB regions, two walks; the rest hit. */
        for (int round = 0; round < 3; round++) {
                assert_int_equal(vmie_translate(&as, v1g + 0x1234, &x), 0);
                assert_int_equal(x.gpa, 0x1234);
                assert_int_equal(x.page_size, GIB);
                assert_int_equal(vmie_translate(&as, v1g + 0x201234 + round * 0x1000, &x), 0);
                assert_int_equal(x.gpa, 0x201234 + round * 0x1000);
                assert_int_equal(x.page_size, GIB);
        }
        vmie_tlb_stats(tlb, &st);
        assert_int_equal(st.misses, 3);
        /* A 4 KiB page next to them keeps its own size and frame. */
        assert_int_equal(vmie_translate(&as, KVA + 7, &x), 0);
        assert_int_equal(x.gpa, 0x300007);
        assert_int_equal(x.page_size, 4096);
        /* Remapped 2 MiB leaf: served from the cache until a flush. */
        fx_poke(&f, img_entry(&f.im, f.root, v2m, 2), 0x600000 | P_P | P_PS);
        assert_int_equal(vmie_translate(&as, v2m + 0x10, &x), 0);
        assert_int_equal(x.gpa, 0x400010);
        vmie_tlb_flush(tlb);
        assert_int_equal(vmie_translate(&as, v2m + 0x10, &x), 0);
        assert_int_equal(x.gpa, 0x600010);
        assert_false(x.writable);
        vmie_tlb_free(tlb);
        fx_close(&f);
}

/* Each address space keeps its own entries: alternating between two roots
 * hits in both, never mixes their answers, and a flush or a new epoch drops
 * both. */
static void test_tlb_roots(void **state)
{
        (void)state;
        struct fx f;
        build_basic(&f, 4);
        uint64_t root2 = img_page(&f.im);
        img_map(&f.im, root2, KVA, 0x303000, 4 * KIB, P_RW);
        fx_open(&f, 0);
        struct vmie_tlb *tlb = NULL;
        assert_int_equal(vmie_tlb_new(64, 0, &tlb), 0);
        struct vmie_as a = fx_as(&f, 4), b = a;
        a.tlb = b.tlb = tlb;
        b.root = root2;
        struct vmie_xlate x;
        struct vmie_tlb_stats st;
        for (int i = 0; i < 10; i++) {
                assert_int_equal(vmie_translate(&a, KVA + 1, &x), 0);
                assert_int_equal(x.gpa, 0x300001);
                assert_int_equal(vmie_translate(&b, KVA + 1, &x), 0);
                assert_int_equal(x.gpa, 0x303001);
        }
        vmie_tlb_stats(tlb, &st);
        assert_int_equal(st.misses, 2);
        assert_int_equal(st.hits, 18);
        /* More address spaces than the cache remembers: still right. */
        for (int i = 0; i < 3; i++)
                for (uint8_t mpa = 40; mpa < 52; mpa++) {
                        struct vmie_as m = a;
                        m.maxphyaddr = mpa;
                        assert_int_equal(vmie_translate(&m, KVA + 2, &x), 0);
                        assert_int_equal(x.gpa, 0x300002);
                        assert_int_equal(vmie_translate(&b, KVA + 2, &x), 0);
                        assert_int_equal(x.gpa, 0x303002);
                }
        /* A flush drops every root's entries. */
        fx_poke(&f, img_entry(&f.im, f.root, KVA, 1), 0x304000 | P_P);
        fx_poke(&f, img_entry(&f.im, root2, KVA, 1), 0x305000 | P_P);
        assert_int_equal(vmie_translate(&b, KVA, &x), 0);
        assert_int_equal(x.gpa, 0x303000);
        vmie_tlb_flush(tlb);
        assert_int_equal(vmie_translate(&a, KVA, &x), 0);
        assert_int_equal(x.gpa, 0x304000);
        assert_int_equal(vmie_translate(&b, KVA, &x), 0);
        assert_int_equal(x.gpa, 0x305000);
        /* So does a new epoch, seen through either root. */
        fx_poke(&f, img_entry(&f.im, f.root, KVA, 1), 0x306000 | P_P);
        fx_poke(&f, img_entry(&f.im, root2, KVA, 1), 0x307000 | P_P);
        b.epoch = a.epoch = 1;
        assert_int_equal(vmie_translate(&b, KVA, &x), 0);
        assert_int_equal(x.gpa, 0x307000);
        assert_int_equal(vmie_translate(&a, KVA, &x), 0);
        assert_int_equal(x.gpa, 0x306000);
        vmie_tlb_free(tlb);
        fx_close(&f);
}

/* The ttl window: entries expire together at the first clock reading ttl
 * after the window opened, so one walked late in a window lives shorter,
 * none longer than ttl. Many flushes (more than the cache has ids) never
 * bring back an entry from before one of them. */
static void test_tlb_window_and_ids(void **state)
{
        (void)state;
        struct fx f;
        build_basic(&f, 4);
        fx_open(&f, 0);
        struct vmie_tlb *tlb = NULL;
        assert_int_equal(vmie_tlb_new(64, 10 * 1000000ull, &tlb), 0); /* 10 ms */
        fake_now = 9000ull * 1000000000ull;
        vmiei_tlb_set_clock(tlb, fake_clock, &fake_now); /* opens a window */
        struct vmie_as as = fx_as(&f, 4);
        as.tlb = tlb;
        struct vmie_xlate x;
        struct vmie_tlb_stats st;
        uint8_t b[4];
        assert_int_equal(vmie_translate(&as, KVA, &x), 0); /* walked at 0 ms */
        fake_now += 8 * 1000000ull;
        assert_int_equal(vmie_translate(&as, UVA, &x), 0); /* walked at 8 ms */
        fake_now += 1 * 1000000ull;
        assert_int_equal(vmie_read_virt(&as, UVA, b, sizeof(b), NULL), 0);
        assert_int_equal(vmie_read_virt(&as, KVA, b, sizeof(b), NULL), 0);
        vmie_tlb_stats(tlb, &st);
        assert_int_equal(st.misses, 2); /* both still live at 9 ms */
        fake_now += 2 * 1000000ull;     /* 11 ms: the window closed */
        assert_int_equal(vmie_read_virt(&as, UVA, b, sizeof(b), NULL), 0);
        assert_int_equal(vmie_read_virt(&as, KVA, b, sizeof(b), NULL), 0);
        vmie_tlb_stats(tlb, &st);
        assert_int_equal(st.misses, 4); /* the 3 ms old entry expired too */
        /* The new window runs from 11 ms: both live at 20 ms, gone at 21. */
        fake_now += 9 * 1000000ull;
        assert_int_equal(vmie_read_virt(&as, KVA, b, sizeof(b), NULL), 0);
        vmie_tlb_stats(tlb, &st);
        assert_int_equal(st.misses, 4);
        fake_now += 1 * 1000000ull;
        assert_int_equal(vmie_read_virt(&as, KVA, b, sizeof(b), NULL), 0);
        vmie_tlb_stats(tlb, &st);
        assert_int_equal(st.misses, 5);

        /* 10000 flushes, the frame changing each time: the cache recycles
         * its ids, never an old answer. */
        uint64_t pte = img_entry(&f.im, f.root, KVA, 1);
        for (unsigned i = 0; i < 10000; i++) {
                uint64_t frame = 0x300000 + (i % 4) * 0x1000;
                fx_poke(&f, pte, frame | P_P);
                vmie_tlb_flush(tlb);
                assert_int_equal(vmie_translate(&as, KVA + 3, &x), 0);
                assert_int_equal(x.gpa, frame + 3);
                assert_int_equal(vmie_translate(&as, KVA + 3, &x), 0);
                assert_int_equal(x.gpa, frame + 3);
        }
        vmie_tlb_stats(tlb, &st);
        assert_int_equal(st.flushes, 10000);
        vmie_tlb_free(tlb);
        fx_close(&f);
}

/* Copies of big leaves in the page table: they take free slots only, so
 * live 4 KiB leaves are never pushed out by a big region's pages (which
 * the region table answers anyway), while a walked 4 KiB leaf does take a
 * copy's slot. Every answer keeps its frame, size and flags. */
static void test_tlb_big_copies(void **state)
{
        (void)state;
        const uint64_t v2m = 0xffffffff80000000ull;
        struct fx f;
        img_init(&f.im, 8 * MIB, 4);
        img_range(&f.im, 0, 8 * MIB, 0);
        f.im.next = 0x10000;
        f.root = img_page(&f.im);
        for (uint64_t i = 0; i < 32; i++)
                img_map(&f.im, f.root, KVA + i * 4096, 0x600000 + i * 4096, 4096, P_RW | P_NX);
        img_map(&f.im, f.root, v2m, 0x400000, 2 * MIB, P_US);
        fx_open(&f, 0);
        struct vmie_tlb *tlb = NULL;
        assert_int_equal(vmie_tlb_new(16, 0, &tlb), 0); /* 8 sets of 2 */
        struct vmie_as as = fx_as(&f, 4);
        as.tlb = tlb;
        struct vmie_xlate x;
        struct vmie_tlb_stats st;
#define CHECK_4K(i)                                                                                          \
        do {                                                                                                 \
                assert_int_equal(vmie_translate(&as, KVA + (i)*4096 + 9, &x), 0);                            \
                assert_int_equal(x.gpa, 0x600000 + (i)*4096 + 9);                                            \
                assert_int_equal(x.page_size, 4096);                                                         \
                assert_true(x.writable && !x.user && x.nx);                                                  \
        } while (0)
#define CHECK_2M(i)                                                                                          \
        do {                                                                                                 \
                assert_int_equal(vmie_translate(&as, v2m + (i)*4096 + 7, &x), 0);                            \
                assert_int_equal(x.gpa, 0x400000 + (i)*4096 + 7);                                            \
                assert_int_equal(x.page_size, 2 * MIB);                                                      \
                assert_true(!x.writable && x.user && !x.nx);                                                 \
        } while (0)

        /* Pages 0 and 8 fill both ways of one set with walked leaves. */
        CHECK_4K(0);
        CHECK_4K(8);
        /* 64 pages of the big leaf, twice: one walk; their copies go only
         * where a slot is free. */
        for (int round = 0; round < 2; round++)
                for (uint64_t i = 0; i < 64; i++)
                        CHECK_2M(i);
        vmie_tlb_stats(tlb, &st);
        assert_int_equal(st.misses, 3);
        assert_int_equal(st.hits, 127);
        /* The two walked leaves are still there. */
        CHECK_4K(0);
        CHECK_4K(8);
        vmie_tlb_stats(tlb, &st);
        assert_int_equal(st.misses, 3);

        /* Copies fill every slot; then 4 KiB pages 1..7 and 9..15 (every set
         * but the one of pages 0 and 8) take them over, and stay. */
        vmie_tlb_flush(tlb);
        for (uint64_t i = 0; i < 16; i++)
                CHECK_2M(i);
        vmie_tlb_stats(tlb, &st);
        assert_int_equal(st.misses, 4);
        for (int round = 0; round < 3; round++)
                for (uint64_t i = 1; i < 16; i++)
                        if (i != 8)
                                CHECK_4K(i);
        vmie_tlb_stats(tlb, &st);
        assert_int_equal(st.misses, 4 + 14);
        /* The big leaf still answers every page from the region table. */
        for (uint64_t i = 0; i < 64; i++)
                CHECK_2M(i);
        vmie_tlb_stats(tlb, &st);
        assert_int_equal(st.misses, 4 + 14);
#undef CHECK_4K
#undef CHECK_2M
        vmie_tlb_free(tlb);
        fx_close(&f);
}

/* The address-space key is compared field by field as the caller gave it,
 * including the bytes only one part of the compare covers (root bits 12..15,
 * the top byte of the epoch), and never the struct's padding. */
static void test_tlb_key_fields(void **state)
{
        (void)state;
        struct fx f;
        img_init(&f.im, 8 * MIB, 4);
        img_range(&f.im, 0, 8 * MIB, 0);
        f.im.next = 0x20000;
        uint64_t root_a = img_page(&f.im), root_b = img_page(&f.im); /* differ in bit 12 only */
        f.im.next = 0x40000;
        f.root = root_a;
        img_map(&f.im, root_a, KVA, 0x300000, 4096, P_RW);
        img_map(&f.im, root_b, KVA, 0x301000, 4096, P_RW);
        assert_int_equal(root_a ^ root_b, 0x1000);
        fx_open(&f, 0);
        struct vmie_tlb *tlb = NULL;
        assert_int_equal(vmie_tlb_new(64, 0, &tlb), 0);
        struct vmie_as as;
        memset(&as, 0xa5, sizeof(as)); /* garbage in the padding */
        as.ram = f.ram;
        as.tlb = tlb;
        as.root = root_a;
        as.epoch = 5;
        as.levels = 4;
        as.maxphyaddr = 0;
        struct vmie_as b = as;
        b.root = root_b;
        struct vmie_xlate x;
        struct vmie_tlb_stats st;
        for (int i = 0; i < 3; i++) {
                assert_int_equal(vmie_translate(&as, KVA + 1, &x), 0);
                assert_int_equal(x.gpa, 0x300001);
                assert_int_equal(vmie_translate(&b, KVA + 1, &x), 0);
                assert_int_equal(x.gpa, 0x301001);
        }
        vmie_tlb_stats(tlb, &st);
        assert_int_equal(st.misses, 2);
        assert_int_equal(st.hits, 4);
        /* Other padding, same fields: the same address space. */
        struct vmie_as c;
        memset(&c, 0x5a, sizeof(c));
        c.ram = as.ram;
        c.tlb = as.tlb;
        c.root = as.root;
        c.epoch = as.epoch;
        c.levels = as.levels;
        c.maxphyaddr = as.maxphyaddr;
        assert_int_equal(vmie_translate(&c, KVA + 2, &x), 0);
        assert_int_equal(x.gpa, 0x300002);
        vmie_tlb_stats(tlb, &st);
        assert_int_equal(st.misses, 2);
        /* An epoch differing in its top byte only flushes. */
        fx_poke(&f, img_entry(&f.im, root_a, KVA, 1), 0x302000 | P_P);
        as.epoch |= 1ull << 60;
        assert_int_equal(vmie_translate(&as, KVA + 3, &x), 0);
        assert_int_equal(x.gpa, 0x302003);
        vmie_tlb_stats(tlb, &st);
        assert_int_equal(st.misses, 3);
        assert_int_equal(st.flushes, 2);
        /* maxphyaddr alone (the key's last byte) is another address space. */
        fx_poke(&f, img_entry(&f.im, root_a, KVA, 1), 0x303000 | P_P);
        struct vmie_as m = as;
        m.maxphyaddr = 46;
        assert_int_equal(vmie_translate(&m, KVA + 4, &x), 0);
        assert_int_equal(x.gpa, 0x303004);
        assert_int_equal(vmie_translate(&as, KVA + 4, &x), 0); /* its own entry */
        assert_int_equal(x.gpa, 0x302004);
        vmie_tlb_free(tlb);
        fx_close(&f);
}

/* ---- write planning -------------------------------------------------------- */

static void test_extent_plan(void **state)
{
        (void)state;
        struct fx f;
        img_init(&f.im, 4 * MIB, 4);
        img_range(&f.im, 0, 2 * MIB, 0);
        img_range(&f.im, 4 * GIB, 2 * MIB, 2 * MIB);
        f.im.next = 0x10000;
        f.root = img_page(&f.im);
        const uint64_t va = 0xffff800000010000ull;
        img_map(&f.im, f.root, va, 0x100000, 4096, P_RW);          /* A */
        img_map(&f.im, f.root, va + 0x1000, 0x101000, 4096, P_RW); /* contiguous with A */
        img_map(&f.im, f.root, va + 0x2000, 4 * GIB + 0x5000, 4096, P_RW);
        img_map(&f.im, f.root, va + 0x3000, 0x180000, 4096, 0); /* read-only */
        /* va + 0x4000 unmapped */
        img_map(&f.im, f.root, va + 0x5000, 0x1ff000, 4096, P_RW); /* maps ... */
        img_map(&f.im, f.root, va + 0x6000, 0x200000, 4096, P_RW); /* ... into the hole */
        fx_open(&f, 0);
        struct vmie_as as = fx_as(&f, 4);
        struct vmie_chunk c[8];
        size_t n = 99;
        uint64_t bad = 0;

        assert_int_equal(vmie_extent_plan(&as, va + 0x800, 0x2000, VMIE_EXTENT_WRITABLE, c, 8, &n, &bad), 0);
        assert_int_equal(n, 2);
        assert_int_equal(c[0].file_offset, 0x100800);
        assert_int_equal(c[0].gpa, 0x100800);
        assert_int_equal(c[0].len, 0x1800); /* two pages merged */
        assert_int_equal(c[1].file_offset, 2 * MIB + 0x5000);
        assert_int_equal(c[1].gpa, 4 * GIB + 0x5000);
        assert_int_equal(c[1].len, 0x800);
        /* Do the write the daemon would do, then read it back. */
        uint8_t src[0x2000], back[0x2000];
        for (size_t i = 0; i < sizeof(src); i++)
                src[i] = (uint8_t)(i * 13 + 5);
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
                assert_int_equal(pwrite(f.fd, src + k, c[i].len, (off_t)c[i].file_offset), (ssize_t)c[i].len);
                k += c[i].len;
        }
        assert_int_equal(vmie_read_virt(&as, va + 0x800, back, sizeof(back), NULL), 0);
        assert_memory_equal(src, back, sizeof(src));

        /* Read-only page: refused only when writability is asked for. */
        n = 99;
        assert_int_equal(vmie_extent_plan(&as, va + 0x2ff0, 0x20, VMIE_EXTENT_WRITABLE, c, 8, &n, &bad),
                         -EACCES);
        assert_int_equal(n, 0);
        assert_int_equal(bad, va + 0x3000);
        assert_int_equal(vmie_extent_plan(&as, va + 0x2ff0, 0x20, 0, c, 8, &n, &bad), 0);
        assert_int_equal(n, 2);
        assert_int_equal(vmie_extent_plan(&as, va, 0x10, VMIE_EXTENT_USER, c, 8, &n, &bad), -EACCES);
        assert_int_equal(bad, va);

        /* Partially unmapped extent: nothing, and the first bad address. */
        n = 99;
        assert_int_equal(vmie_extent_plan(&as, va + 0x100, 0x4000, 0, c, 8, &n, &bad), -EFAULT);
        assert_int_equal(n, 0);
        assert_int_equal(bad, va + 0x4000);
        /* A page that maps a RAM hole. */
        assert_int_equal(vmie_extent_plan(&as, va + 0x5800, 0x1000, 0, c, 8, &n, &bad), -EFAULT);
        assert_int_equal(bad, va + 0x6000);
        /* Not enough room. */
        assert_int_equal(vmie_extent_plan(&as, va, 0x3000, 0, c, 1, &n, &bad), -ENOBUFS);
        assert_int_equal(n, 0);
        /* Bad arguments. */
        assert_int_equal(vmie_extent_plan(&as, va, 0, 0, c, 8, &n, &bad), -EINVAL);
        assert_int_equal(vmie_extent_plan(&as, va, 8, 1u << 9, c, 8, &n, &bad), -EINVAL);
        assert_int_equal(vmie_extent_plan(&as, ~0ull - 8, 0x20, 0, c, 8, &n, &bad), -EINVAL);
        assert_int_equal(vmie_extent_plan(&as, 0x0000800000000000ull, 8, 0, c, 8, &n, &bad), -ERANGE);
        assert_int_equal(bad, 0x0000800000000000ull);

        /* A stale cache entry does not leak into a plan. */
        struct vmie_tlb *tlb = NULL;
        assert_int_equal(vmie_tlb_new(0, 0, &tlb), 0);
        as.tlb = tlb;
        struct vmie_xlate x;
        assert_int_equal(vmie_translate(&as, va, &x), 0);
        fx_poke(&f, img_entry(&f.im, f.root, va, 1), 0);
        assert_int_equal(vmie_translate(&as, va, &x), 0); /* cached */
        assert_int_equal(vmie_extent_plan(&as, va, 8, 0, c, 8, &n, &bad), -EFAULT);
        vmie_tlb_free(tlb);
        fx_close(&f);
}

/* Safe mode (VMIE_RAM_NO_MMAP) against a file its owner shrinks: walks,
 * virtual reads and write plans fail with an error, never a signal, and work
 * again once the bytes are back. */
static void test_safe_mode_file_shrinks(void **state)
{
        (void)state;
        struct fx f;
        build_basic(&f, 4);
        fx_open(&f, VMIE_RAM_NO_MMAP);
        assert_int_equal(vmie_ram_is_mapped(f.ram), 0);
        struct vmie_as as = fx_as(&f, 4);
        struct vmie_xlate x;
        struct vmie_chunk ch[4];
        size_t n = 0;
        uint8_t b[16];

        assert_int_equal(vmie_walk(&as, KVA, &x), 0);
        assert_int_equal(ftruncate(f.fd, 0), 0);
        assert_int_equal(vmie_walk(&as, KVA, &x), -ENXIO);
        assert_int_equal(vmie_read_virt(&as, KVA, b, sizeof(b), NULL), -ENXIO);
        assert_int_equal(vmie_extent_plan(&as, KVA, 8, VMIE_EXTENT_WRITABLE, ch, 4, &n, NULL), -ENXIO);
        assert_int_equal(n, 0);
        assert_int_equal(vmie_ram_read(f.ram, 0x300000, b, sizeof(b)), -EIO);

        /* Half the file back: tables below, data above the new end. */
        assert_int_equal(ftruncate(f.fd, 0x300000 + 8), 0);
        assert_int_equal(pwrite(f.fd, f.im.buf, 0x300000, 0), 0x300000);
        assert_int_equal(vmie_walk(&as, KVA, &x), 0);
        assert_int_equal(vmie_read_virt(&as, KVA, b, sizeof(b), NULL), -EIO);
        assert_int_equal(pwrite(f.fd, f.im.buf, 8 * MIB, 0), (ssize_t)(8 * MIB));
        assert_int_equal(vmie_read_virt(&as, KVA, b, sizeof(b), NULL), 0);
        assert_int_equal(b[0], 1);
        fx_close(&f);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_walk_4level),
            cmocka_unit_test(test_walk_5level),
            cmocka_unit_test(test_not_present_each_level),
            cmocka_unit_test(test_flags_accumulate),
            cmocka_unit_test(test_maxphyaddr_masking),
            cmocka_unit_test(test_cr3_normalisation),
            cmocka_unit_test(test_split_layout_walk),
            cmocka_unit_test(test_mid_page_hole),
            cmocka_unit_test(test_read_str),
            cmocka_unit_test(test_tlb_hit_and_epoch),
            cmocka_unit_test(test_tlb_lifetime),
            cmocka_unit_test(test_tlb_bounded),
            cmocka_unit_test(test_tlb_staleness_bound),
            cmocka_unit_test(test_tlb_placement),
            cmocka_unit_test(test_tlb_big_regions),
            cmocka_unit_test(test_tlb_roots),
            cmocka_unit_test(test_tlb_window_and_ids),
            cmocka_unit_test(test_tlb_big_copies),
            cmocka_unit_test(test_tlb_key_fields),
            cmocka_unit_test(test_extent_plan),
            cmocka_unit_test(test_safe_mode_file_shrinks),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
