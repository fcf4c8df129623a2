/* SPDX-License-Identifier: MIT */
#ifndef VMIE_INTERNAL_H
#define VMIE_INTERNAL_H

/* Shared between libvmie's sources (and its unit tests). Nothing here is
 * exported from the shared object: only vmie_* is (libvmie.map), so internal
 * functions use the vmiei_ prefix. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <vmie/paging.h>
#include <vmie/ram.h>

struct vmie_ram {
        int fd;             /* -1 when wrapping caller memory */
        const uint8_t *map; /* whole file, PROT_READ; NULL in pread mode */
        size_t map_len;     /* 0 unless we own the mapping */
        uint64_t file_size;
        size_t n;
        struct vmie_range r[]; /* sorted by gpa, validated */
};

/* Index of the range holding gpa, or -1 for a hole. */
static inline long vmiei_ram_find(const struct vmie_ram *ram, uint64_t gpa)
{
        size_t lo = 0, hi = ram->n;
        while (lo < hi) { /* first range with r.gpa > gpa */
                size_t mid = lo + (hi - lo) / 2;
                if (ram->r[mid].gpa <= gpa)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        if (lo == 0)
                return -1;
        const struct vmie_range *r = &ram->r[lo - 1];
        return gpa - r->gpa < r->len ? (long)(lo - 1) : -1;
}

/* Read len (small) bytes that must lie inside one range; the walker's path. */
int vmiei_ram_read_slow(const struct vmie_ram *ram, uint64_t gpa, void *buf, size_t len);

static inline int vmiei_ram_read_u64(const struct vmie_ram *ram, uint64_t gpa, uint64_t *ret)
{
        long i = vmiei_ram_find(ram, gpa);
        if (i >= 0 && ram->map) {
                const struct vmie_range *r = &ram->r[i];
                uint64_t off = gpa - r->gpa;
                if (r->len - off >= 8) {
                        /* One 8-byte load; the guest may be writing, a torn
                         * value is impossible for an aligned entry. */
                        memcpy(ret, ram->map + r->file_offset + off, 8);
                        return 0;
                }
        }
        return vmiei_ram_read_slow(ram, gpa, ret, 8);
}

/* Paging parameters after defaults and checks. */
struct vmiei_mode {
        unsigned levels;   /* 4 or 5 */
        uint64_t addrmask; /* bits 12..MAXPHYADDR-1 */
};

/* Fill m from as (levels 0 -> 4, maxphyaddr 0 -> 52); -EINVAL if bad. */
int vmiei_mode(const struct vmie_as *as, struct vmiei_mode *m);

/* The walk proper, on checked parameters. */
int vmiei_walk(const struct vmie_ram *ram, const struct vmiei_mode *m, uint64_t root, uint64_t va,
               struct vmie_xlate *ret);

/* Work allowed for finding ntoskrnl in a kernel half (page-table pages
 * read, header candidates looked at). One budget may be shared by several
 * searches, so a guest full of lookalike roots cannot multiply the work. */
struct vmiei_budget {
        uint32_t tables;
        uint32_t pages;
};
#define VMIEI_BUDGET_TABLES 65536u     /* 256 MiB of page tables */
#define VMIEI_BUDGET_PAGES  (1u << 22) /* 16 GiB of kernel mappings, one 2-byte read each */

/* vmie_windows_kernel_base on a caller's budget; -E2BIG once it is spent. */
int vmiei_windows_kernel_base(const struct vmie_as *as, uint64_t hint, uint64_t *ret_base,
                              struct vmiei_budget *budget);

/* vmie_translate reads the cache's clock on every this-many-th hit (and on
 * every miss); paging.h states the resulting staleness bound. */
#define VMIEI_TLB_CLOCK_EVERY 16u

/* Clock hook for tests of the cache lifetime: fn returns nanoseconds. NULL
 * restores CLOCK_MONOTONIC_COARSE. */
void vmiei_tlb_set_clock(struct vmie_tlb *tlb, uint64_t (*fn)(void *), void *arg);
/* Number of slots (tests check the size bound). */
size_t vmiei_tlb_entries(const struct vmie_tlb *tlb);

#endif
