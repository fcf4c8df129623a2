/* SPDX-License-Identifier: MIT */
#ifndef VMIE_PAGING_H
#define VMIE_PAGING_H

/* x86-64 address translation over a vmie_ram: the page walk (4- and 5-level,
 * 4 KiB / 2 MiB / 1 GiB pages), CR3 normalisation, a translation cache, and
 * virtual reads built on them.
 *
 * Errors of a translation (also returned by the reads built on it):
 *   -ERANGE  the virtual address is not canonical for the paging mode
 *   -EFAULT  an entry is not present (or has a reserved PS bit in a
 *            PML5E/PML4E), or the final bytes lie in a RAM hole
 *   -ENXIO   a paging structure lies outside guest RAM (bad root or entry)
 *   -EINVAL  bad arguments (paging mode, NULL, overflowing length)
 *
 * Address bits: table and leaf addresses are masked to bits
 * 12..MAXPHYADDR-1. Bits at or above MAXPHYADDR are stripped rather than
 * treated as reserved, so memory-encryption / key-id bits (AMD C-bit, MKTME)
 * placed there by the guest do not leak into the address; set maxphyaddr to
 * the guest's effective value for that. Bits 52..62 (software, PKEY) and 63
 * (NX) are never address bits, nor is the PAT bit (12) of a 2 MiB / 1 GiB
 * leaf. NX is reported as the OR over all levels, i.e. as if EFER.NXE=1 (all
 * 64-bit Linux and Windows kernels set it). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <vmie/ram.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VMIE_MAXPHYADDR_DEFAULT 52u
#define VMIE_PAGE_SIZE          4096u

/* Result of one translation. */
struct vmie_xlate {
        uint64_t gpa;       /* guest-physical address of the translated va */
        uint64_t page_size; /* 4 KiB, 2 MiB or 1 GiB: the leaf that mapped it */
        bool writable;      /* R/W set at every level */
        bool user;          /* U/S set at every level */
        bool nx;            /* XD set at any level */
};

/* ---- CR3 normalisation ---------------------------------------------------
 * vmie_cr3_root: the page-table root of a CR3 value: bits 12..MAXPHYADDR-1
 * (drops PCID / PWT / PCD in bits 0..11 and anything above MAXPHYADDR).
 *
 * vmie_cr3_kernel_root: Linux KPTI convention. With page-table isolation the
 * kernel allocates each PGD as an 8 KiB pair: the kernel half at an even 4 KiB
 * page and the user half right after it (bit 12 set); entry code switches by
 * flipping bit 12 (arch/x86/entry/calling.h). So the kernel root of any CR3
 * the vCPU holds is the root with bit 12 cleared. On a kernel without KPTI a
 * PGD is only 4 KiB aligned and bit 12 may be a real address bit: validate the
 * result (vmie_linux_kernel_root does, falling back to vmie_cr3_root). Not
 * applicable to Windows KVA shadowing, whose user DTB is unrelated.
 * maxphyaddr 0 means VMIE_MAXPHYADDR_DEFAULT. */
uint64_t vmie_cr3_root(uint64_t cr3, unsigned maxphyaddr);
uint64_t vmie_cr3_kernel_root(uint64_t cr3, unsigned maxphyaddr);

/* 1 if va is canonical for 4- (sign-extended from bit 47) or 5-level paging
 * (from bit 56), else 0 (also 0 for a bad levels value). */
int vmie_va_canonical(uint64_t va, unsigned levels);

/* ---- Translation cache ----------------------------------------------------
 * Two 2-way set-associative tables of 32-byte entries (a set is one cache
 * line): the page table, `entries` slots keyed by 4 KiB virtual page, and
 * the region table (1/8 as many slots, at least 16) for 2 MiB / 1 GiB
 * leaves, keyed by 2 MiB virtual region, so one walk answers all 512 pages
 * of a big-page region. A page of a big leaf that is used also gets a copy
 * of the region's entry in the page table, but only in a free slot (expired
 * or never used): a copy never displaces a live entry, and where there is
 * no free slot the region table answers (still a hit, without a walk). Both
 * tables are keyed also by the address space: (vmie_ram, root, levels,
 * maxphyaddr) gets a small id from the cache, which remembers the ids of
 * the last 8 address spaces, so alternating between a few roots keeps each
 * one's entries. Sets are picked by the low bits of the page (region)
 * number, offset per root, so a contiguous range of up to `entries` 4 KiB
 * leaves is held entirely. In a full set the first way is kept until it
 * expires (a copy there gives way to a walked 4 KiB leaf) and the second is
 * replaced. A hit is a compare of the caller's vmie_as against the last
 * one's, then one probe of the page table, without a clock read. Only
 * successful translations are cached. NOT thread-safe: one per thread.
 *
 * Invalidation, effective on the very next call: vmie_tlb_flush; a change of
 * vmie_as.epoch (every lookup carries the caller's memctx epoch, and a
 * different one flushes everything).
 *
 * Lifetime (the guest is live and its page tables change under us): the
 * cache runs in windows of ttl: a window opens at a clock reading and, at
 * the first reading at least ttl later, every entry expires at once and the
 * next window opens. An entry is walked inside the window it is used in, so
 * it is never used when (the cache's latest clock reading - the time of its
 * walk) >= ttl; it lives between 0 and ttl. The clock is read at the start of
 * every vmie_read_virt / vmie_read_str call, on every miss of vmie_translate
 * and on every 16th of its hits, not on each one: so vmie_translate may
 * answer from an entry whose ttl ran out since the latest reading for at
 * most 15 further calls on that cache (e.g. the first calls after an idle
 * pause); reads never do. A caller that needs the bound at a given moment
 * calls vmie_tlb_flush or changes the epoch. */
struct vmie_tlb;

#define VMIE_TLB_DEFAULT_ENTRIES 4096u
#define VMIE_TLB_MAX_ENTRIES     (1u << 22)
#define VMIE_TLB_DEFAULT_TTL_NS  1000000000ull /* 1 s, as memflow and LibVMI */

/* entries: slots of the page table: 0 = default, else rounded up to a power
 * of two (16 .. MAX; -EINVAL above); 32 bytes each, the region table (1/8 of
 * that) is extra. ttl_ns: 0 = default; the clock is CLOCK_MONOTONIC_COARSE,
 * so the effective granularity is a few milliseconds. */
int vmie_tlb_new(size_t entries, uint64_t ttl_ns, struct vmie_tlb **ret);
struct vmie_tlb *vmie_tlb_free(struct vmie_tlb *tlb);
/* Drop every entry (e.g. after the caller wrote guest page tables). */
void vmie_tlb_flush(struct vmie_tlb *tlb);

/* Counters since creation. */
struct vmie_tlb_stats {
        uint64_t hits;
        uint64_t misses;
        uint64_t flushes; /* explicit + epoch changes */
};
void vmie_tlb_stats(const struct vmie_tlb *tlb, struct vmie_tlb_stats *ret);

/* ---- Address space ----------------------------------------------------------
 * Everything a translation needs, as a plain value the caller fills in: cheap
 * to make one per process root. */
struct vmie_as {
        const struct vmie_ram *ram;
        struct vmie_tlb *tlb; /* optional; NULL = always walk */
        uint64_t root;        /* page-table root; low 12 bits ignored */
        uint64_t epoch;       /* memctx epoch, only used with a tlb */
        uint8_t levels;       /* 4 or 5 (CR4.LA57); 0 = 4 */
        uint8_t maxphyaddr;   /* 0 = 52 */
};

/* Uncached page walk. */
int vmie_walk(const struct vmie_as *as, uint64_t va, struct vmie_xlate *ret);

/* Cached translation (walks on a miss; same as vmie_walk without a tlb). A
 * hit stores all sizeof(struct vmie_xlate) bytes of *ret, its tail padding
 * included: pass a whole struct. */
int vmie_translate(const struct vmie_as *as, uint64_t va, struct vmie_xlate *ret);

/* Read len bytes of virtual memory, page by page, across page and RAM range
 * boundaries. Returns 0 when everything was read; otherwise the error of the
 * first byte that could not be read, with *ret_done (if not NULL) set to how
 * many leading bytes of buf are valid (the bad address is va + *ret_done). */
int vmie_read_virt(const struct vmie_as *as, uint64_t va, void *buf, size_t len, size_t *ret_done);

/* Read a NUL-terminated string of at most cap-1 characters into buf (always
 * NUL-terminated when cap > 0); *ret_len (if not NULL) gets its length.
 * Reads no further than the terminator's page. -E2BIG if no terminator within
 * cap-1 bytes (buf holds the truncated prefix), translation errors as above
 * (buf holds what was read before the fault). */
int vmie_read_str(const struct vmie_as *as, uint64_t va, char *buf, size_t cap, size_t *ret_len);

/* ---- Write planning -------------------------------------------------------
 * For writing guest memory through a translation with a separate writable fd
 * (the daemon's MEMWRITE): translate the whole extent first, write after. */
struct vmie_chunk {
        uint64_t file_offset; /* where to pwrite in the RAM backing file */
        uint64_t gpa;         /* for audit */
        uint64_t len;
};

enum vmie_extent_flags {
        VMIE_EXTENT_WRITABLE = 1u << 0, /* every page must be writable (R/W at all levels) */
        VMIE_EXTENT_USER = 1u << 1,     /* every page must be user-accessible */
};

/* Translate [va, va+len) under as into file chunks, in order, merging chunks
 * that are contiguous in the file; bytes src[k] go to the chunk covering
 * va+k. Always walks fresh (ignores as->tlb: a write must not trust a stale
 * translation). Checks every page before returning anything: on error
 * *ret_n is 0 and *ret_bad_va (if not NULL) names the first address that
 * failed. Errors: translation errors above, -EACCES (a page lacks a required
 * permission), -ENOBUFS (more than cap chunks), -EINVAL (len 0 or va+len
 * wraps). At most len/4096 + 2 chunks are needed unless RAM ranges split a
 * page. */
int vmie_extent_plan(const struct vmie_as *as, uint64_t va, uint64_t len, unsigned flags,
                     struct vmie_chunk *chunks, size_t cap, size_t *ret_n, uint64_t *ret_bad_va);

#ifdef __cplusplus
}
#endif
#endif
