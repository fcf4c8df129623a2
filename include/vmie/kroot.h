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
        VMIE_KROOT_SELFREF = 3, /* Windows: self-referencing PML4 scan below 16 MiB */
};

struct vmie_kroot {
        uint64_t root;        /* normalised kernel page-table root */
        uint64_t kernel_hint; /* Windows low stub: LmTarget (kernel entry VA); Linux: check_va */
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
 *    LmTarget (a kernel VA) at +0x70, the CR3 to load at +0xA0.
 * 2. If there is none (common in VMs: it depends on the vCPU count), scan the
 *    first 16 MiB for a page that looks like a PML4 with a self-reference.
 * Every candidate must pass vmie_windows_validate_root. The fallback finds the
 * lowest valid PML4, normally the System process's; any process's root maps
 * the same kernel half. */
int vmie_windows_kernel_root(const struct vmie_ram *ram, unsigned maxphyaddr, struct vmie_kroot *ret);

/* A candidate PML4 at root is accepted when: some upper-half entry is a
 * present, supervisor, non-PS self-reference (points at root itself); the
 * self-map VA built from that index translates back to root through the walk;
 * and at least 6 other upper-half entries are present, supervisor, non-PS and
 * point into guest RAM. -ENOENT otherwise, -ENXIO if root is not in RAM. */
int vmie_windows_validate_root(const struct vmie_ram *ram, uint64_t root, unsigned maxphyaddr,
                               uint16_t *ret_selfref_index);

/* Try Linux first when linux_hint is given (NULL: skip), then Windows.
 * -ENOENT if neither is found. */
int vmie_kernel_root(const struct vmie_ram *ram, const struct vmie_linux_hint *linux_hint,
                     unsigned maxphyaddr, struct vmie_kroot *ret);

#ifdef __cplusplus
}
#endif
#endif
