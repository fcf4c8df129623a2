/* SPDX-License-Identifier: MIT */
#ifndef VMSIG_ADAPTERS_STUB_INTERNAL_H
#define VMSIG_ADAPTERS_STUB_INTERNAL_H

/* Private to the stub adapters and their tests: the synthetic guest's
 * documented layout and small shared helpers (static inline, so nothing here
 * becomes a symbol of libvmsig). */

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <vmsig/stub_guest.h>  /* VMSIG_STUB_BANNER{,_VA,_GPA}: public */
#include "adapters/registry.h" /* adapter_options_parse: the options checker */
#include "util/clock.h"

/* ---- the synthetic guest built by the memctx stub ----
 *
 * RAM (option ram_mib, default 8, a multiple of 4 in 8..1024) is one memfd
 * split in two halves so the below/above-4GiB layout is exercised:
 *   range 0: GPA 0                   .. low,  file offset 0
 *   range 1: GPA VMSIG_STUB_HIGH_GPA .. high, file offset low
 * (low = high = ram/2).
 *
 * Kernel address space (4-level, root VMSIG_STUB_KERNEL_ROOT):
 *   VMSIG_STUB_KERNEL_BASE + x -> GPA x for every x < low:
 *     the first 2 MiB with 4 KiB pages (all writable except the two below),
 *     the rest with 2 MiB pages;
 *   VMSIG_STUB_RO_VA: a present, read-only 4 KiB page;
 *   VMSIG_STUB_NP_VA: a not-present 4 KiB page;
 *   VMSIG_STUB_HIGH_VA + y -> VMSIG_STUB_HIGH_GPA + y for y < high (2 MiB pages);
 *   nothing else is mapped.
 * A "process" address space (root VMSIG_STUB_USER_ROOT) shares the kernel
 * half and adds VMSIG_STUB_USER_PAGES user pages at VMSIG_STUB_USER_VA ->
 * VMSIG_STUB_USER_GPA.
 * VMSIG_STUB_BANNER (NUL-terminated) lives at VMSIG_STUB_BANNER_VA, inside a
 * 2 MiB page. Page-table pages occupy GPA 0x1000..0x9fff. */
#define VMSIG_STUB_RAM_MIB_DEFAULT 8u
#define VMSIG_STUB_RAM_MIB_MIN     8u
#define VMSIG_STUB_RAM_MIB_MAX     1024u
#define VMSIG_STUB_HIGH_GPA        UINT64_C(0x100000000)
#define VMSIG_STUB_KERNEL_ROOT     UINT64_C(0x1000)
#define VMSIG_STUB_KERNEL_BASE     UINT64_C(0xffffffff80000000)
#define VMSIG_STUB_RO_VA           UINT64_C(0xffffffff80030000)
#define VMSIG_STUB_NP_VA           UINT64_C(0xffffffff80031000)
#define VMSIG_STUB_HIGH_VA         UINT64_C(0xffffffffa0000000)
#define VMSIG_STUB_USER_ROOT       UINT64_C(0x6000)
#define VMSIG_STUB_USER_VA         UINT64_C(0x400000)
#define VMSIG_STUB_USER_GPA        UINT64_C(0x40000)
#define VMSIG_STUB_USER_PAGES      4u

/* x86-64 page-table entry bits the stub uses. */
#define VMSIG_STUB_PTE_P    UINT64_C(0x1)
#define VMSIG_STUB_PTE_RW   UINT64_C(0x2)
#define VMSIG_STUB_PTE_US   UINT64_C(0x4)
#define VMSIG_STUB_PTE_PS   UINT64_C(0x80)
#define VMSIG_STUB_PTE_ADDR UINT64_C(0x000ffffffffff000)

#endif
