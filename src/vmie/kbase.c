/* SPDX-License-Identifier: MIT */
/* Kernel image base, without symbols.
 *
 * Linux: after setup_arch's cleanup_highmap the kernel-image range
 * [-2 GiB, -1 GiB) maps nothing below _text, and _text is 2 MiB aligned
 * (x86-64 CONFIG_PHYSICAL_ALIGN is a multiple of 2 MiB; KASLR keeps it). So
 * _text is the first 2 MiB-aligned VA there that is mapped present,
 * supervisor and executable; linux_banner ("Linux version ") in the image
 * after it confirms that the mapping is a kernel's.
 *
 * Windows: ntoskrnl's PE header. From a hint (the low stub's LmTarget, an
 * address inside ntoskrnl) search down page by page; without one, look at
 * every page the kernel half maps. A page is ntoskrnl's header when it is a
 * PE32+ AMD64 native image whose export name is one of the kernel's, or
 * whose section table has the kernel's POOLCODE and INITKDBG sections (the
 * header page is always resident, the export directory not necessarily). */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <strings.h>

#include <vmie/kroot.h>

#include "internal.h"

#define PTE_P  (1ull << 0)
#define PTE_US (1ull << 2)
#define PTE_PS (1ull << 7)

#define SIZE_2M (2ull << 20)

#define LINUX_IMAGE_START   0xffffffff80000000ull
#define LINUX_IMAGE_END     0xffffffffc0000000ull
#define LINUX_BANNER_SPAN   (256ull << 20) /* search linux_banner this far from _text */
#define LINUX_BANNER_TEXT   "Linux version "
#define SEARCH_CHUNK        (1u << 20)
#define WIN_HINT_SPAN       (32ull << 20) /* search ntoskrnl this far below the hint */
#define WIN_IMAGE_MAX       (256u << 20)
#define WIN_TABLE_BUDGET    65536u     /* page-table pages read per kernel-half enumeration */
#define WIN_PAGE_BUDGET     (1u << 22) /* header candidates looked at per enumeration */
#define WIN_KERNEL_PML4_1ST 0x1f0u     /* 0xfffff80000000000: where ntoskrnl lives in practice */

static uint16_t le16(const uint8_t *p)
{
        return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const uint8_t *p)
{
        return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ---- Linux ---- */

/* First VA in [va, va+len) where needle starts, through the page tables,
 * supervisor pages only, reading each leaf in big chunks. */
static int virt_find(const struct vmie_as *as, uint64_t va, uint64_t len, const char *needle, size_t nlen,
                     uint64_t *ret_va)
{
        uint8_t *buf = malloc(SEARCH_CHUNK + nlen);
        size_t keep = 0; /* tail of the previous, VA-contiguous chunk */
        if (!buf)
                return -ENOMEM;
        while (len > 0) {
                struct vmie_xlate x;
                int r = vmie_walk(as, va, &x);
                uint64_t step = VMIE_PAGE_SIZE - (va & (VMIE_PAGE_SIZE - 1));
                if (r == 0 && !x.user) {
                        uint64_t in_leaf = x.page_size - (va & (x.page_size - 1));
                        step = in_leaf < SEARCH_CHUNK ? in_leaf : SEARCH_CHUNK;
                }
                if (step > len)
                        step = len;
                if (r < 0 || x.user || vmie_ram_read(as->ram, x.gpa, buf + keep, step) < 0) {
                        keep = 0;
                } else {
                        size_t have = keep + step;
                        const uint8_t *hit = memmem(buf, have, needle, nlen);
                        if (hit) {
                                *ret_va = va - keep + (uint64_t)(hit - buf);
                                free(buf);
                                return 0;
                        }
                        keep = have < nlen - 1 ? have : nlen - 1;
                        memmove(buf, buf + have - keep, keep);
                }
                va += step;
                len -= step;
        }
        free(buf);
        return -ENOENT;
}

int vmie_linux_kernel_base(const struct vmie_as *as, uint64_t *ret_base)
{
        struct vmiei_mode m;
        int r = vmiei_mode(as, &m);
        if (r < 0)
                return r;
        if (!ret_base)
                return -EINVAL;
        for (uint64_t va = LINUX_IMAGE_START; va < LINUX_IMAGE_END; va += SIZE_2M) {
                struct vmie_xlate x;
                if (vmiei_walk(as->ram, &m, as->root, va, &x) < 0)
                        continue;
                /* The first executable supervisor mapping decides. */
                if (x.user || x.nx)
                        continue;
                uint64_t at, span = LINUX_IMAGE_END - va;
                if (span > LINUX_BANNER_SPAN)
                        span = LINUX_BANNER_SPAN;
                r = virt_find(as, va, span, LINUX_BANNER_TEXT, sizeof(LINUX_BANNER_TEXT) - 1, &at);
                if (r < 0)
                        return r;
                *ret_base = va;
                return 0;
        }
        return -ENOENT;
}

/* ---- Windows ---- */

static const char *const nt_export_names[] = {"ntoskrnl.exe", "ntkrnlmp.exe", "ntkrnlpa.exe", "ntkrpamp.exe"};

/* Is the page at va a PE32+ AMD64 native image header? Then its
 * SizeOfImage, and whether it is the NT kernel. */
static bool pe_header(const struct vmie_as *as, uint64_t va, uint32_t *ret_size, bool *ret_nt)
{
        uint8_t h[VMIE_PAGE_SIZE];
        if (vmie_read_virt(as, va, h, sizeof(h), NULL) < 0 || h[0] != 'M' || h[1] != 'Z')
                return false;
        uint32_t lfanew = le32(h + 0x3c);
        /* PE signature, COFF header (20) and the PE32+ optional header's
         * fixed part up to the export directory (120) inside the page. */
        if (lfanew < 0x40 || lfanew > sizeof(h) - 4 - 20 - 120 || memcmp(h + lfanew, "PE\0\0", 4) != 0)
                return false;
        const uint8_t *coff = h + lfanew + 4, *opt = coff + 20;
        uint16_t nsect = le16(coff + 2), optsize = le16(coff + 16), chars = le16(coff + 18);
        if (le16(coff) != 0x8664 || !(chars & 0x0002) || optsize < 120 || le16(opt) != 0x20b)
                return false;
        uint32_t size = le32(opt + 56);
        if (size < 2 * VMIE_PAGE_SIZE || size > WIN_IMAGE_MAX || le16(opt + 68) != 1 /* native */)
                return false;
        bool nt = false;
        /* Section table, as far as it lies in the page. */
        bool poolcode = false, initkdbg = false;
        size_t sect = lfanew + 4 + 20 + (size_t)optsize;
        for (unsigned i = 0; i < nsect && sect + 40 <= sizeof(h); i++, sect += 40) {
                poolcode = poolcode || memcmp(h + sect, "POOLCODE", 8) == 0;
                initkdbg = initkdbg || memcmp(h + sect, "INITKDBG", 8) == 0;
        }
        nt = poolcode && initkdbg;
        /* Export directory name. */
        uint32_t nrva = le32(opt + 108), erva = le32(opt + 112);
        uint8_t ed[40];
        char name[16];
        if (!nt && nrva >= 1 && erva && erva < size - sizeof(ed) &&
            vmie_read_virt(as, va + erva, ed, sizeof(ed), NULL) == 0) {
                uint32_t name_rva = le32(ed + 12);
                if (name_rva && name_rva < size - sizeof(name) &&
                    vmie_read_virt(as, va + name_rva, name, sizeof(name), NULL) == 0) {
                        name[sizeof(name) - 1] = '\0';
                        for (size_t k = 0; k < sizeof(nt_export_names) / sizeof(nt_export_names[0]); k++)
                                nt = nt || strcasecmp(name, nt_export_names[k]) == 0;
                }
        }
        *ret_size = size;
        *ret_nt = nt;
        return true;
}

/* Leaves of the kernel half (PML4 256..511 but skip), top-level entries in
 * the order 0x1f0..0x1ff, 0x100..0x1ef. */
struct leaf_walk {
        const struct vmie_as *as;
        uint64_t amask;
        int skip;
        struct vmiei_budget *b; /* shared: tables and pages left */
        uint64_t align;         /* pages looked at: VA multiple of this */
        uint64_t found;
};

static int try_page(struct leaf_walk *w, uint64_t va, uint64_t gpa)
{
        uint8_t mz[2];
        uint32_t size;
        bool nt;
        if (!w->b->pages)
                return -E2BIG;
        w->b->pages--;
        if (vmie_ram_read(w->as->ram, gpa, mz, 2) < 0 || mz[0] != 'M' || mz[1] != 'Z')
                return 0;
        if (pe_header(w->as, va, &size, &nt) && nt) {
                w->found = va;
                return 1;
        }
        return 0;
}

static int enum_table(struct leaf_walk *w, uint64_t table, unsigned lvl, uint64_t va_base, bool user)
{
        uint64_t t[512];
        if (!w->b->tables)
                return -E2BIG;
        w->b->tables--;
        if (vmie_ram_read(w->as->ram, table, t, sizeof(t)) < 0)
                return 0;
        unsigned shift = 12 + 9 * (lvl - 1);
        for (unsigned k = 0; k < (lvl == 4 ? 256u : 512u); k++) {
                unsigned i = lvl == 4 ? 256 + ((k + WIN_KERNEL_PML4_1ST - 256) & 0xff) : k;
                uint64_t e = t[i];
                if (!(e & PTE_P) || (lvl == 4 && (int)i == w->skip))
                        continue;
                uint64_t va = va_base | ((uint64_t)i << shift);
                if (lvl == 4)
                        va |= 0xffff000000000000ull;
                bool u = user && (e & PTE_US);
                bool leaf = lvl == 1 || (lvl <= 3 && (e & PTE_PS));
                int r;
                if (lvl == 4 && (e & PTE_PS))
                        continue;
                if (!leaf) {
                        r = enum_table(w, e & w->amask, lvl - 1, va, u);
                } else {
                        if (u)
                                continue; /* a user page in the kernel half is no kernel image */
                        uint64_t size = 1ull << shift, gpa = e & w->amask & ~(size - 1);
                        r = 0;
                        for (uint64_t o = (w->align - (va & (w->align - 1))) & (w->align - 1); o < size && !r;
                             o += w->align)
                                r = try_page(w, va + o, gpa + o);
                }
                if (r)
                        return r;
        }
        return 0;
}

int vmie_windows_kernel_base(const struct vmie_as *as, uint64_t hint, uint64_t *ret_base)
{
        struct vmiei_budget b = {VMIEI_BUDGET_TABLES, VMIEI_BUDGET_PAGES};
        return vmiei_windows_kernel_base(as, hint, ret_base, &b);
}

int vmiei_windows_kernel_base(const struct vmie_as *as, uint64_t hint, uint64_t *ret_base,
                              struct vmiei_budget *budget)
{
        struct vmiei_mode m;
        int r = vmiei_mode(as, &m);
        if (r < 0)
                return r;
        if (!ret_base || !budget || m.levels != 4)
                return -EINVAL;
        if (hint >> 63) {
                /* ntoskrnl holds the hint: the nearest header below it whose
                 * image covers it. */
                uint64_t top = hint & ~(uint64_t)(VMIE_PAGE_SIZE - 1);
                for (uint64_t back = 0; back < WIN_HINT_SPAN && top - back >= 0xffff800000000000ull;
                     back += VMIE_PAGE_SIZE) {
                        uint64_t va = top - back;
                        uint32_t size;
                        bool nt;
                        struct vmie_xlate x;
                        uint8_t mz[2];
                        if (vmiei_walk(as->ram, &m, as->root, va, &x) < 0 || x.user ||
                            vmie_ram_read(as->ram, x.gpa, mz, 2) < 0 || mz[0] != 'M' || mz[1] != 'Z')
                                continue;
                        if (pe_header(as, va, &size, &nt) && hint - va < size) {
                                if (!nt)
                                        break; /* the hint is in another image */
                                *ret_base = va;
                                return 0;
                        }
                }
        }
        /* The kernel half: 2 MiB-aligned headers first (where Windows 10 and
         * later load ntoskrnl), then every page. */
        uint16_t self = 0;
        int skip = -1;
        uint64_t pml4[512];
        if (vmie_ram_read(as->ram, as->root & m.addrmask, pml4, sizeof(pml4)) < 0)
                return -ENXIO;
        for (unsigned i = 256; i < 512; i++)
                if ((pml4[i] & PTE_P) && (pml4[i] & m.addrmask) == (as->root & m.addrmask)) {
                        self = (uint16_t)i;
                        skip = (int)self; /* the self-map maps only page tables */
                        break;
                }
        const uint64_t aligns[2] = {SIZE_2M, VMIE_PAGE_SIZE};
        for (unsigned p = 0; p < 2; p++) {
                struct leaf_walk w = {
                    .as = as, .amask = m.addrmask, .skip = skip, .b = budget, .align = aligns[p]};
                r = enum_table(&w, as->root & m.addrmask, 4, 0, true);
                if (r == 1) {
                        *ret_base = w.found;
                        return 0;
                }
                if (r < 0)
                        return r;
        }
        return -ENOENT;
}

int vmie_kernel_base(const struct vmie_ram *ram, const struct vmie_kroot *kr, uint64_t *ret_base)
{
        if (!ram || !kr || !ret_base)
                return -EINVAL;
        struct vmie_as as = {
            .ram = ram, .root = kr->root, .levels = kr->levels, .maxphyaddr = kr->maxphyaddr};
        switch (kr->os) {
        case VMIE_OS_LINUX:
                return vmie_linux_kernel_base(&as, ret_base);
        case VMIE_OS_WINDOWS:
                return vmie_windows_kernel_base(&as, kr->kernel_hint, ret_base);
        default:
                return -EINVAL;
        }
}
