/* SPDX-License-Identifier: MIT */
/* Write planning: the whole extent is translated and checked before the
 * caller writes a byte, so a MEMWRITE is all-or-nothing with respect to
 * translation (the guest can still change its tables afterwards; that race
 * is inherent to writing a live guest from outside). */
#include <errno.h>

#include "internal.h"

int vmie_extent_plan(const struct vmie_as *as, uint64_t va, uint64_t len, unsigned flags,
                     struct vmie_chunk *chunks, size_t cap, size_t *ret_n, uint64_t *ret_bad_va)
{
        struct vmiei_mode m;
        size_t n = 0;
        uint64_t done = 0;
        int r = vmiei_mode(as, &m);
        if (r < 0)
                return r;
        if (!ret_n || (!chunks && cap) || len == 0 || (flags & ~(VMIE_EXTENT_WRITABLE | VMIE_EXTENT_USER)) ||
            (va + len < va && va + len != 0))
                return -EINVAL;
        *ret_n = 0;
        while (done < len) {
                uint64_t cur = va + done;
                struct vmie_xlate xl;
                r = vmiei_walk(as->ram, &m, as->root, cur, &xl);
                if (r == 0 && (flags & VMIE_EXTENT_WRITABLE) && !xl.writable)
                        r = -EACCES;
                if (r == 0 && (flags & VMIE_EXTENT_USER) && !xl.user)
                        r = -EACCES;
                if (r < 0)
                        goto bad;
                /* Only up to the next 4 KiB boundary even inside a big page:
                 * keeps the per-page check uniform and cheap enough. */
                uint64_t room = VMIE_PAGE_SIZE - (cur & (VMIE_PAGE_SIZE - 1));
                uint64_t seg = room < len - done ? room : len - done;
                uint64_t gpa = xl.gpa;
                while (seg > 0) {
                        uint64_t off, avail;
                        if (vmie_ram_gpa_to_offset(as->ram, gpa, &off, &avail) < 0) {
                                r = -EFAULT; /* maps to MMIO or a RAM hole */
                                goto bad;
                        }
                        uint64_t k = avail < seg ? avail : seg;
                        if (n > 0 && chunks[n - 1].file_offset + chunks[n - 1].len == off &&
                            chunks[n - 1].gpa + chunks[n - 1].len == gpa) {
                                chunks[n - 1].len += k;
                        } else {
                                if (n == cap)
                                        return -ENOBUFS;
                                chunks[n].file_offset = off;
                                chunks[n].gpa = gpa;
                                chunks[n].len = k;
                                n++;
                        }
                        gpa += k;
                        cur += k;
                        done += k;
                        seg -= k;
                }
        }
        *ret_n = n;
        return 0;
bad:
        if (ret_bad_va)
                *ret_bad_va = va + done;
        return r;
}
