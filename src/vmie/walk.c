/* SPDX-License-Identifier: MIT */
/* The x86-64 page walk and CR3 normalisation. Follows the SDM's IA-32e
 * paging: one 8-byte entry per level, PS ends the walk at the PDPT (1 GiB) or
 * PD (2 MiB), bit 7 of a PTE is PAT, not PS. */
#include <errno.h>

#include "internal.h"

#define PTE_P  (1ull << 0)
#define PTE_RW (1ull << 1)
#define PTE_US (1ull << 2)
#define PTE_PS (1ull << 7)
#define PTE_XD (1ull << 63)

static uint64_t addr_mask(unsigned maxphyaddr)
{
        if (maxphyaddr == 0)
                maxphyaddr = VMIE_MAXPHYADDR_DEFAULT;
        if (maxphyaddr > 52)
                maxphyaddr = 52;
        return ((1ull << maxphyaddr) - 1) & ~0xfffull;
}

uint64_t vmie_cr3_root(uint64_t cr3, unsigned maxphyaddr)
{
        return cr3 & addr_mask(maxphyaddr);
}

uint64_t vmie_cr3_kernel_root(uint64_t cr3, unsigned maxphyaddr)
{
        return vmie_cr3_root(cr3, maxphyaddr) & ~(1ull << 12);
}

int vmie_va_canonical(uint64_t va, unsigned levels)
{
        unsigned bits;
        if (levels == 4)
                bits = 48;
        else if (levels == 5)
                bits = 57;
        else
                return 0;
        /* Bits bits-1..63 must all equal bit bits-1. */
        int64_t s = (int64_t)(va << (64 - bits)) >> (64 - bits);
        return (uint64_t)s == va;
}

int vmiei_mode(const struct vmie_as *as, struct vmiei_mode *m)
{
        if (!as || !as->ram)
                return -EINVAL;
        unsigned levels = as->levels ? as->levels : 4;
        unsigned mpa = as->maxphyaddr ? as->maxphyaddr : VMIE_MAXPHYADDR_DEFAULT;
        if ((levels != 4 && levels != 5) || mpa < 32 || mpa > 52)
                return -EINVAL;
        m->levels = levels;
        m->addrmask = addr_mask(mpa);
        return 0;
}

int vmiei_walk(const struct vmie_ram *ram, const struct vmiei_mode *m, uint64_t root, uint64_t va,
               struct vmie_xlate *ret)
{
        if (!vmie_va_canonical(va, m->levels))
                return -ERANGE;
        uint64_t table = root & m->addrmask;
        bool w = true, u = true, nx = false;
        /* Bounded by the level count: a malicious table can loop the
         * structure onto itself but never make us walk more than 5 reads. */
        for (unsigned lvl = m->levels; lvl >= 1; lvl--) {
                unsigned shift = 12 + 9 * (lvl - 1);
                uint64_t e;
                if (vmiei_ram_read_u64(ram, table + ((va >> shift) & 0x1ff) * 8, &e) < 0)
                        return -ENXIO;
                if (!(e & PTE_P))
                        return -EFAULT;
                w = w && (e & PTE_RW);
                u = u && (e & PTE_US);
                nx = nx || (e & PTE_XD);
                bool leaf = lvl == 1;
                if (lvl >= 2 && (e & PTE_PS)) {
                        if (lvl >= 4)
                                return -EFAULT; /* PS is reserved in PML5E/PML4E */
                        leaf = true;
                }
                if (leaf) {
                        uint64_t size = 1ull << shift;
                        /* & ~(size-1) also drops the PAT bit (12) of big leaves. */
                        uint64_t base = e & m->addrmask & ~(size - 1);
                        ret->gpa = base | (va & (size - 1));
                        ret->page_size = size;
                        ret->writable = w;
                        ret->user = u;
                        ret->nx = nx;
                        return 0;
                }
                table = e & m->addrmask;
        }
        return -EFAULT; /* unreachable: level 1 is always a leaf */
}

int vmie_walk(const struct vmie_as *as, uint64_t va, struct vmie_xlate *ret)
{
        struct vmiei_mode m;
        int r = vmiei_mode(as, &m);
        if (r < 0)
                return r;
        if (!ret)
                return -EINVAL;
        return vmiei_walk(as->ram, &m, as->root, va, ret);
}
