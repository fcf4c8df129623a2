/* SPDX-License-Identifier: MIT */
#ifndef VMSIG_MEMCTX_H
#define VMSIG_MEMCTX_H

/* The memctx datum: everything a control needs to read guest memory on its
 * own: the kernel page-table root, the RAM layout (GPA -> file offset) and a
 * READ-ONLY fd of the RAM backing. It travels as a MEMCTX event whose body is
 * struct vmsig_memctx_body, with the fd beside it (never inside it). */

#include <stdint.h>
#include <vmsig/event.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VMSIG_MEMCTX_MAX_RANGES 16

enum vmsig_paging {
        VMSIG_PAGING_UNKNOWN = 0,
        VMSIG_PAGING_4LEVEL = 4,
        VMSIG_PAGING_5LEVEL = 5,
};

enum vmsig_os_kind {
        VMSIG_OS_UNKNOWN = 0,
        VMSIG_OS_LINUX = 1,
        VMSIG_OS_WINDOWS = 2,
        VMSIG_OS_SYNTHETIC = 3, /* stub adapter */
};

struct vmsig_ram_range {
        uint64_t gpa;         /* guest-physical start */
        uint64_t len;         /* bytes */
        uint64_t file_offset; /* offset in the RAM backing file */
};

/* The kernel image base travels in 32 bits: bits 12..43 of the VA, the bits
 * above all set. That covers the top 16 TiB of the address space, where
 * Linux maps its image ([-2 GiB, -1 GiB)) and Windows loads ntoskrnl
 * (0xfffff80000000000..); 0 = unknown. A base outside that window, or not
 * 4 KiB aligned, is sent as 0. docs/protocol.md §5.2. */
#define VMSIG_MEMCTX_KBASE_TOP UINT64_C(0xfffff00000000000)

/* Wire-stable MEMCTX body. valid == 0 means "invalidated": no fd, the epoch
 * is the one that ended. */
struct vmsig_memctx_body {
        uint64_t epoch;
        uint64_t kernel_root; /* normalised CR3 of the kernel address space */
        uint8_t valid;
        uint8_t paging;  /* enum vmsig_paging */
        uint8_t os_kind; /* enum vmsig_os_kind */
        uint8_t nranges;
        uint32_t kernel_base_pg; /* kernel image base, encoded as above; was reserved (0) */
        struct vmsig_ram_range ranges[VMSIG_MEMCTX_MAX_RANGES];
};
_Static_assert(sizeof(struct vmsig_memctx_body) <= VMSIG_BODY_MAX, "memctx fits inline");

/* In-process view: the body plus its endpoint and fd. */
struct vmsig_memctx {
        uint32_t endpoint;
        uint64_t epoch; /* assigned by the core at register time */
        uint64_t kernel_root;
        enum vmsig_paging paging;
        enum vmsig_os_kind os_kind;
        uint32_t nranges;
        struct vmsig_ram_range ranges[VMSIG_MEMCTX_MAX_RANGES];
        int fd; /* read-only RAM backing, -1 if invalid */
        /* VA where the guest kernel's image starts (Linux: _text, with the
         * KASLR slide; Windows: ntoskrnl's base); 0 = unknown (also what a
         * daemon that predates the field sends). */
        uint64_t kernel_base;
};

/* Decode a MEMCTX event (+ its fd) into ret. The fd is copied as given, not
 * duplicated. -EBADMSG if the body is malformed (ranges out of bounds,
 * overlapping, or len 0). */
int vmsig_memctx_from_event(const struct vmsig_event *ev, int fd, struct vmsig_memctx *ret);

/* Encode ctx into a MEMCTX body; -EINVAL if nranges is too large. A
 * kernel_base the body cannot carry (see VMSIG_MEMCTX_KBASE_TOP) goes as 0. */
int vmsig_memctx_to_body(const struct vmsig_memctx *ctx, int valid, struct vmsig_memctx_body *ret);

/* The 32-bit wire form of a kernel base and back (0 <-> 0 = unknown). */
uint32_t vmsig_memctx_kbase_encode(uint64_t kernel_base);
uint64_t vmsig_memctx_kbase_decode(uint32_t kernel_base_pg);

/* Translate a guest-physical address through the layout: file offset and the
 * bytes available up to the end of that range. -EFAULT for a hole. */
int vmsig_memctx_gpa_to_offset(const struct vmsig_memctx *ctx, uint64_t gpa, uint64_t *ret_offset,
                               uint64_t *ret_avail);

#ifdef __cplusplus
}
#endif
#endif
