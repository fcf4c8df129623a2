/* SPDX-License-Identifier: MIT */
#ifndef VMIE_KROOT_H
#define VMIE_KROOT_H

/* Kernel address-space root bootstrap: find (Windows) or confirm (Linux) the
 * page-table root that maps the guest kernel, and say which OS it is.
 * -ENOENT means "not found": normal while a guest is still booting, so a
 * caller retries later rather than treating it as a fault. */

#include <stddef.h>
#include <stdint.h>

#include <vmie/paging.h>
#include <vmie/ram.h>

#ifdef __cplusplus
extern "C" {
#endif

enum vmie_os {
        VMIE_OS_UNKNOWN = 0,
        VMIE_OS_LINUX = 1,
        VMIE_OS_WINDOWS = 2,
};

enum vmie_kroot_method {
        VMIE_KROOT_NONE = 0,
        VMIE_KROOT_CR3 = 1,     /* Linux: a vCPU's CR3, normalised and validated */
        VMIE_KROOT_LOWSTUB = 2, /* Windows: PROCESSOR_START_BLOCK below 1 MiB */
        VMIE_KROOT_SELFREF = 3, /* Windows: ranked scan of all RAM for self-referencing PML4s */
};

struct vmie_kroot {
        uint64_t root;        /* normalised kernel page-table root */
        uint64_t kernel_hint; /* Windows: LmTarget (low stub) or ntoskrnl's base (scan);
                               * Linux: check_va */
        uint8_t os;           /* enum vmie_os */
        uint8_t method;       /* enum vmie_kroot_method */
        uint8_t levels;       /* paging levels the root was validated with */
        uint8_t maxphyaddr;
        uint16_t selfref_index; /* Windows: PML4 self-reference slot (256..511) */
};

/* ---- Linux ----------------------------------------------------------------
 * Any process's PGD maps the whole kernel half (pgd_ctor copies it), so the
 * CR3 of any vCPU will do once normalised. Candidates, in order: the KPTI
 * kernel root (bit 12 cleared) and the plain root; each must translate
 * check_va to a present supervisor page and, if expect is given, the bytes
 * there must equal expect. */
struct vmie_linux_hint {
        uint64_t cr3;       /* as QEMU reports it for a vCPU (PCID / KPTI bits allowed) */
        uint64_t check_va;  /* kernel VA known to be mapped, e.g. linux_banner (+ KASLR slide) */
        const void *expect; /* optional: bytes expected at check_va (e.g. "Linux version ") */
        size_t expect_len;  /* 0 .. 4096 */
        uint8_t levels;     /* 4 or 5 (CR4.LA57); 0 = try 4, then 5 */
        uint8_t maxphyaddr; /* 0 = 52 */
};

int vmie_linux_kernel_root(const struct vmie_ram *ram, const struct vmie_linux_hint *hint,
                           struct vmie_kroot *ret);

/* ---- Windows (x64, 4-level paging) ------------------------------------------
 * 1. Scan the pages of the first 1 MiB (skipping page 0) for the
 *    PROCESSOR_START_BLOCK the kernel leaves for AP startup: a JMP at +0x00,
 *    LmTarget (a kernel VA) at +0x70, the CR3 to load at +0xA0. Its CR3 is
 *    taken only if it validates (below), with LmTarget as the ntoskrnl hint.
 * 2. If there is none (common in VMs: it depends on the vCPU count), scan
 *    every page of guest RAM (through the mapping, or in 1 MiB preads) for
 *    pages shaped like a kernel PML4 (see vmie_windows_validate_root, the
 *    cheap part), rank them: most valid kernel-half entries first (Windows
 *    11's low "dummy" PML4 has a couple), then fewest user-half entries (the
 *    System process has almost none), then lowest address; and return the
 *    first of the best 64 that passes the full validation. kernel_hint is
 *    then ntoskrnl's base. Any process's root maps the same kernel half.
 *    All validations of one call share one work budget (that of
 *    vmie_windows_kernel_base), so lookalike roots cannot multiply it.
 * -ENOENT when nothing validates (a Linux guest, a guest still booting). */
int vmie_windows_kernel_root(const struct vmie_ram *ram, unsigned maxphyaddr, struct vmie_kroot *ret);

/* A candidate PML4 at root is accepted when:
 *  - cheap: an upper-half entry at index 0x100..0x1ff is a present,
 *    supervisor, non-PS self-reference (points at root itself), and at least
 *    6 other upper-half entries are present, supervisor, non-PS and point
 *    into guest RAM;
 *  - the self-map VA built from that index translates back to root;
 *  - KUSER_SHARED_DATA (0xfffff78000000000) is mapped, supervisor-only, NX;
 *  - ntoskrnl is mapped (vmie_windows_kernel_base finds it).
 * So a hypervisor's CR3 (VBS) or a dummy PML4 does not validate. Use it on a
 * vCPU's CR3 before trusting it. -ENOENT otherwise, -ENXIO if root is not in
 * RAM. */
int vmie_windows_validate_root(const struct vmie_ram *ram, uint64_t root, unsigned maxphyaddr,
                               uint16_t *ret_selfref_index);

/* Try Linux first when linux_hint is given (NULL: skip), then Windows.
 * -ENOENT if neither is found. */
int vmie_kernel_root(const struct vmie_ram *ram, const struct vmie_linux_hint *linux_hint,
                     unsigned maxphyaddr, struct vmie_kroot *ret);

/* ---- Kernel image base -------------------------------------------------------
 * The VA where the kernel image starts, found without symbols; as->root must
 * be the kernel root (vmie_*_kernel_root).
 *
 * Linux: _text, randomised by KASLR. After early boot (setup_arch's
 * cleanup_highmap) nothing below _text is mapped in the kernel-image range
 * [0xffffffff80000000, 0xffffffffc0000000), and _text is 2 MiB aligned: the
 * base is the first 2 MiB-aligned VA there mapped present, supervisor and
 * executable, accepted only if "Linux version " (linux_banner) lies in the
 * image within 256 MiB after it. Early in boot the answer may be wrong.
 * System.map's slide is (base - the map's _text).
 *
 * Windows: ntoskrnl's image base (its PE header). With hint (a kernel VA
 * inside ntoskrnl, e.g. the low stub's LmTarget) the nearest PE32+ AMD64
 * native header up to 32 MiB below whose image covers the hint; else the
 * kernel half is enumerated (its page tables read once; 2 MiB-aligned pages
 * first, then every page). A header is ntoskrnl's if its export name is
 * ntoskrnl.exe / ntkrnlmp.exe / ntkrnlpa.exe / ntkrpamp.exe or its section
 * table has POOLCODE and INITKDBG. 4-level paging only (-EINVAL otherwise).
 * Work is bounded (65536 page-table pages, 4 Mi header candidates; -E2BIG).
 *
 * -ENOENT if not found, -EINVAL for bad arguments. */
int vmie_linux_kernel_base(const struct vmie_as *as, uint64_t *ret_base);
int vmie_windows_kernel_base(const struct vmie_as *as, uint64_t hint, uint64_t *ret_base);

/* Either of the above for a root found by vmie_*_kernel_root (Windows uses
 * kr->kernel_hint). */
int vmie_kernel_base(const struct vmie_ram *ram, const struct vmie_kroot *kr, uint64_t *ret_base);

#ifdef __cplusplus
}
#endif
#endif
