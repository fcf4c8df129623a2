/* SPDX-License-Identifier: MIT */
/* Kernel-root bootstrap: Linux (confirm a vCPU's CR3) and Windows (find the
 * System DTB from the low stub, or by the self-referencing PML4). Signatures
 * and offsets: docs in research/vmi.md (MemProcFS, memflow). */
#include <errno.h>
#include <stdlib.h>

#include <vmie/kroot.h>

#include "internal.h"

#define PTE_P  (1ull << 0)
#define PTE_US (1ull << 2)
#define PTE_PS (1ull << 7)

#define LINUX_EXPECT_MAX 4096u

/* Windows constants. */
#define LOWSTUB_END        0x100000ull  /* scan below 1 MiB */
#define SELFREF_SCAN_END   0x1000000ull /* fallback: below 16 MiB */
#define MIN_KERNEL_ENTRIES 6

/* PROCESSOR_START_BLOCK fields (x64): the JMP and its fixed fields, LmTarget,
 * and ProcessorState.SpecialRegisters.Cr3. */
#define PSB_JMP_OFF     0x00
#define PSB_JMP_MASK    0xffffffffffff00ffull
#define PSB_JMP_VALUE   0x00000001000600e9ull
#define PSB_LMTGT_OFF   0x70
#define PSB_LMTGT_MASK  0xfffff80000000003ull
#define PSB_LMTGT_VALUE 0xfffff80000000000ull
#define PSB_CR3_OFF     0xa0
#define PSB_CR3_MASK    0xffffff0000000fffull /* page aligned, below 2^40 */

static int mpa_ok(unsigned mpa)
{
        return mpa == 0 || (mpa >= 32 && mpa <= 52);
}

static int linux_try(const struct vmie_ram *ram, const struct vmie_linux_hint *h, uint64_t root,
                     unsigned levels, void *scratch)
{
        struct vmie_as as = {
            .ram = ram, .root = root, .levels = (uint8_t)levels, .maxphyaddr = h->maxphyaddr};
        struct vmie_xlate xl;
        if (vmie_walk(&as, h->check_va, &xl) < 0 || xl.user)
                return -ENOENT;
        if (h->expect_len) {
                if (vmie_read_virt(&as, h->check_va, scratch, h->expect_len, NULL) < 0 ||
                    memcmp(scratch, h->expect, h->expect_len) != 0)
                        return -ENOENT;
        }
        return 0;
}

int vmie_linux_kernel_root(const struct vmie_ram *ram, const struct vmie_linux_hint *hint,
                           struct vmie_kroot *ret)
{
        if (!ram || !hint || !ret || !mpa_ok(hint->maxphyaddr))
                return -EINVAL;
        if (hint->levels != 0 && hint->levels != 4 && hint->levels != 5)
                return -EINVAL;
        if (hint->expect_len > LINUX_EXPECT_MAX || (hint->expect_len && !hint->expect))
                return -EINVAL;
        /* The kernel lives in the upper half; a user VA proves nothing. */
        if (!(hint->check_va >> 63))
                return -EINVAL;
        uint8_t scratch[LINUX_EXPECT_MAX];
        /* KPTI kernel root first: it is right whenever KPTI is on, and a
         * non-KPTI root with bit 12 clear is the same value. */
        uint64_t cand[2] = {vmie_cr3_kernel_root(hint->cr3, hint->maxphyaddr),
                            vmie_cr3_root(hint->cr3, hint->maxphyaddr)};
        unsigned lv[2] = {hint->levels ? hint->levels : 4, 5};
        unsigned nlv = hint->levels ? 1 : 2;
        for (unsigned l = 0; l < nlv; l++) {
                for (unsigned c = 0; c < 2; c++) {
                        if (c == 1 && cand[1] == cand[0])
                                continue;
                        if (linux_try(ram, hint, cand[c], lv[l], scratch) < 0)
                                continue;
                        memset(ret, 0, sizeof(*ret));
                        ret->root = cand[c];
                        ret->kernel_hint = hint->check_va;
                        ret->os = VMIE_OS_LINUX;
                        ret->method = VMIE_KROOT_CR3;
                        ret->levels = (uint8_t)lv[l];
                        ret->maxphyaddr = hint->maxphyaddr ? hint->maxphyaddr : VMIE_MAXPHYADDR_DEFAULT;
                        return 0;
                }
        }
        return -ENOENT;
}

static uint64_t get64(const uint8_t *p)
{
        uint64_t v;
        memcpy(&v, p, 8);
        return v;
}

/* Check a PML4 page already read into pml4[]. */
static int win_check_pml4(const struct vmie_ram *ram, const uint8_t *page, uint64_t root, unsigned mpa,
                          uint16_t *ret_idx)
{
        uint64_t amask = vmie_cr3_root(~0ull, mpa);
        int kernel = 0;
        int self = -1;
        for (unsigned i = 256; i < 512; i++) {
                uint64_t e = get64(page + i * 8);
                if (!(e & PTE_P) || (e & PTE_US) || (e & PTE_PS))
                        continue;
                if ((e & amask) == root) {
                        if (self < 0)
                                self = (int)i;
                        continue;
                }
                if (vmie_ram_gpa_to_offset(ram, e & amask, NULL, NULL) == 0)
                        kernel++;
        }
        if (self < 0 || kernel < MIN_KERNEL_ENTRIES)
                return -ENOENT;
        /* The self-map VA (index repeated at every level) must walk back to
         * the root page itself. */
        uint64_t i = (uint64_t)self;
        uint64_t va = (i << 39) | (i << 30) | (i << 21) | (i << 12);
        va = (uint64_t)((int64_t)(va << 16) >> 16); /* sign-extend bit 47 */
        struct vmie_as as = {.ram = ram, .root = root, .levels = 4, .maxphyaddr = (uint8_t)mpa};
        struct vmie_xlate xl;
        if (vmie_walk(&as, va, &xl) < 0 || xl.gpa != root || xl.user)
                return -ENOENT;
        if (ret_idx)
                *ret_idx = (uint16_t)self;
        return 0;
}

int vmie_windows_validate_root(const struct vmie_ram *ram, uint64_t root, unsigned maxphyaddr,
                               uint16_t *ret_selfref_index)
{
        uint8_t page[VMIE_PAGE_SIZE];
        if (!ram || !mpa_ok(maxphyaddr))
                return -EINVAL;
        root = vmie_cr3_root(root, maxphyaddr);
        if (vmie_ram_read(ram, root, page, sizeof(page)) < 0)
                return -ENXIO;
        return win_check_pml4(ram, page, root, maxphyaddr, ret_selfref_index);
}

static void win_fill(struct vmie_kroot *ret, uint64_t root, unsigned mpa, unsigned method, uint64_t hint,
                     uint16_t idx)
{
        memset(ret, 0, sizeof(*ret));
        ret->root = root;
        ret->kernel_hint = hint;
        ret->os = VMIE_OS_WINDOWS;
        ret->method = (uint8_t)method;
        ret->levels = 4;
        ret->maxphyaddr = (uint8_t)(mpa ? mpa : VMIE_MAXPHYADDR_DEFAULT);
        ret->selfref_index = idx;
}

int vmie_windows_kernel_root(const struct vmie_ram *ram, unsigned maxphyaddr, struct vmie_kroot *ret)
{
        if (!ram || !ret || !mpa_ok(maxphyaddr))
                return -EINVAL;
        uint16_t idx;
        /* 1. Low stub. Page 0 holds the real-mode IVT, never the stub. */
        for (uint64_t pa = 0x1000; pa < LOWSTUB_END; pa += VMIE_PAGE_SIZE) {
                uint8_t hdr[PSB_CR3_OFF + 8];
                if (vmie_ram_read(ram, pa, hdr, sizeof(hdr)) < 0)
                        continue;
                uint64_t lmtarget = get64(hdr + PSB_LMTGT_OFF), cr3 = get64(hdr + PSB_CR3_OFF);
                if ((get64(hdr + PSB_JMP_OFF) & PSB_JMP_MASK) != PSB_JMP_VALUE ||
                    (lmtarget & PSB_LMTGT_MASK) != PSB_LMTGT_VALUE || (cr3 & PSB_CR3_MASK) != 0 || cr3 == 0)
                        continue;
                if (vmie_windows_validate_root(ram, cr3, maxphyaddr, &idx) == 0) {
                        win_fill(ret, cr3, maxphyaddr, VMIE_KROOT_LOWSTUB, lmtarget, idx);
                        return 0;
                }
        }
        /* 2. Self-referencing PML4 scan, lowest first (System's DTB is among
         * the first page tables the loader allocates). */
        uint8_t *page = malloc(VMIE_PAGE_SIZE);
        if (!page)
                return -ENOMEM;
        int r = -ENOENT;
        uint64_t amask = vmie_cr3_root(~0ull, maxphyaddr);
        for (uint64_t pa = 0; pa < SELFREF_SCAN_END; pa += VMIE_PAGE_SIZE) {
                if ((pa & amask) != pa)
                        break;
                if (vmie_ram_read(ram, pa, page, VMIE_PAGE_SIZE) < 0)
                        continue;
                if (win_check_pml4(ram, page, pa, maxphyaddr, &idx) == 0) {
                        win_fill(ret, pa, maxphyaddr, VMIE_KROOT_SELFREF, 0, idx);
                        r = 0;
                        break;
                }
        }
        free(page);
        return r;
}

int vmie_kernel_root(const struct vmie_ram *ram, const struct vmie_linux_hint *linux_hint,
                     unsigned maxphyaddr, struct vmie_kroot *ret)
{
        if (!ram || !ret || !mpa_ok(maxphyaddr))
                return -EINVAL;
        if (linux_hint) {
                int r = vmie_linux_kernel_root(ram, linux_hint, ret);
                if (r != -ENOENT)
                        return r;
        }
        return vmie_windows_kernel_root(ram, maxphyaddr, ret);
}
