/* SPDX-License-Identifier: MIT */
#ifndef VMIE_TEST_WIN_H
#define VMIE_TEST_WIN_H

/* Synthetic Windows kernels for the vmie tests: PML4 pages with a
 * self-reference, KUSER_SHARED_DATA, and a minimal ntoskrnl PE image (MZ,
 * PE32+ AMD64 native header, section table, export directory) mapped in the
 * kernel half. Layout of the default image (4 MiB, VGA hole a0000-fffff):
 *   0x200000..  targets of filler kernel entries (empty tables; no more than
 *               128 in one image, or they run into the tables below)
 *   0x340000..  page tables built by img_map_k (bump allocator)
 *   0x3c0000..  the kernel's pages (KUSER, PE header, export page) */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "vmie_img.h"

#define SELF_IDX   0x1ed
#define NT_BASE    0xfffff80212200000ull /* 2 MiB aligned, as Windows 10+ loads it */
#define LMTARGET   (NT_BASE + 0x145000ull)
#define KUSER_VA   0xfffff78000000000ull
#define NT_SIZE    0x400000u
#define WIN_KPAGES 0x3c0000ull

enum { SELF_OK = 0, SELF_USER = 1, SELF_ELSEWHERE = 2, SELF_NONE = 3 };
enum nt_kind { NT_EXPORT, NT_SECTIONS, NT_DRIVER };

struct win_img {
        struct img im;
        uint64_t tgt;   /* bump allocator for targets of filler entries */
        uint64_t kpage; /* bump allocator for kernel pages */
};

static inline void win_init_layout(struct win_img *w, size_t size)
{
        img_init(&w->im, size, 4);
        /* Realistic low RAM: the VGA / ROM hole at a0000-fffff. */
        img_range(&w->im, 0, 0xa0000, 0);
        img_range(&w->im, 0x100000, 3 * MIB, 0x100000);
        w->tgt = 0x200000;
        w->im.next = 0x340000;
        w->kpage = WIN_KPAGES;
}

static inline void win_init(struct win_img *w)
{
        win_init_layout(w, 4 * MIB);
}

/* A PML4 at pa with a self-reference at SELF_IDX and n filler kernel entries
 * whose bits are kbits and whose targets are in RAM unless far. */
static inline void win_pml4(struct win_img *w, uint64_t pa, int self, unsigned n, uint64_t kbits, int far)
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

static inline uint64_t win_kpage(struct win_img *w)
{
        uint64_t g = w->kpage;
        w->kpage += 0x1000;
        memset(img_ptr(&w->im, g), 0, 4096);
        return g;
}

static inline void put16(uint8_t *p, uint16_t v)
{
        memcpy(p, &v, 2);
}
static inline void put32(uint8_t *p, uint32_t v)
{
        memcpy(p, &v, 4);
}

/* A PE image header at base (+ its export page) mapped under root. */
static inline void win_pe(struct win_img *w, uint64_t root, uint64_t base, enum nt_kind kind)
{
        uint64_t hdr = win_kpage(w), exp = win_kpage(w);
        uint8_t *h = img_ptr(&w->im, hdr), *e = img_ptr(&w->im, exp);
        h[0] = 'M';
        h[1] = 'Z';
        put32(h + 0x3c, 0x80);
        memcpy(h + 0x80, "PE\0\0", 4);
        uint8_t *coff = h + 0x84, *opt = coff + 20;
        put16(coff, 0x8664);
        put16(coff + 2, 3);     /* sections */
        put16(coff + 16, 0xf0); /* SizeOfOptionalHeader */
        put16(coff + 18, 0x22); /* executable, large-address aware */
        put16(opt, 0x20b);
        put32(opt + 56, NT_SIZE);
        put16(opt + 68, 1); /* native */
        put32(opt + 108, 16);
        put32(opt + 112, 0x1000); /* export directory RVA */
        put32(opt + 116, 0x100);
        uint8_t *sect = opt + 0xf0;
        memcpy(sect, ".text\0\0\0", 8);
        memcpy(sect + 40, kind == NT_SECTIONS ? "POOLCODE" : "PAGE\0\0\0\0", 8);
        memcpy(sect + 80, kind == NT_SECTIONS ? "INITKDBG" : "INIT\0\0\0\0", 8);
        put32(e + 12, 0x1100); /* Name RVA */
        strcpy((char *)e + 0x100, kind == NT_EXPORT   ? "ntkrnlmp.exe"
                                  : kind == NT_DRIVER ? "HAL.dll"
                                                      : "x.sys");
        img_map_k(&w->im, root, base, hdr, 4096, P_RW | P_NX);
        img_map_k(&w->im, root, base + 0x1000, exp, 4096, P_NX);
}

/* KUSER_SHARED_DATA (supervisor, NX unless told) and ntoskrnl under root. */
static inline void win_kernel(struct win_img *w, uint64_t root, bool kuser_nx, enum nt_kind kind)
{
        img_map_k(&w->im, root, KUSER_VA, win_kpage(w), 4096, P_RW | (kuser_nx ? P_NX : 0));
        win_pe(w, root, NT_BASE, kind);
}

static inline void win_lowstub(struct win_img *w, uint64_t at, uint64_t cr3)
{
        uint8_t *p = img_ptr(&w->im, at);
        uint64_t jmp = 0x00000001000600e9ull | (0x2aull << 8); /* byte 1 is free */
        memcpy(p + 0x00, &jmp, 8);
        uint64_t lm = LMTARGET;
        memcpy(p + 0x70, &lm, 8);
        memcpy(p + 0xa0, &cr3, 8);
}

/* PML4s that fail the cheap checks. */
static inline void win_decoys(struct win_img *w)
{
        win_pml4(w, 0x100000, SELF_OK, 3, 0x63, 0);        /* too few kernel entries */
        win_pml4(w, 0x101000, SELF_USER, 8, 0x63, 0);      /* user-accessible self-ref */
        win_pml4(w, 0x102000, SELF_ELSEWHERE, 8, 0x63, 0); /* "self-ref" to another page */
        win_pml4(w, 0x104000, SELF_OK, 8, 0x63, 1);        /* kernel entries outside RAM */
        win_pml4(w, 0x105000, SELF_OK, 8, 0x63 | P_PS, 0); /* PS in PML4Es */
        win_pml4(w, 0x106000, SELF_OK, 8, 0x67, 0);        /* user kernel-half entries */
        win_pml4(w, 0x107000, SELF_NONE, 20, 0x63, 0);     /* no self-ref at all */
}

static inline struct vmie_ram *win_open(struct win_img *w)
{
        struct vmie_ram *ram = NULL;
        assert_int_equal(img_open(&w->im, 0, NULL, &ram), 0);
        return ram;
}

#endif
