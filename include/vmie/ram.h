/* SPDX-License-Identifier: MIT */
#ifndef VMIE_RAM_H
#define VMIE_RAM_H

/* Guest RAM: a read-only view of the RAM backing file (QEMU
 * memory-backend-file,share=on) plus the layout that says which guest-physical
 * ranges live at which file offsets. A vmie_ram is immutable once opened, so
 * one instance may be shared by any number of threads.
 *
 * Trusting the file: the RAM file belongs to the QEMU user, who can shrink it
 * (ftruncate) at any time. A read through a MAP_SHARED mapping of a page that
 * no longer exists raises SIGBUS and kills the reader. Two modes:
 *   - mapped (default): fastest, zero-copy (vmie_ram_peek). Use it only when
 *     the file cannot shrink under you (a sealed memfd, a snapshot, a file
 *     you own) or when dying with the file's owner is acceptable.
 *   - safe, VMIE_RAM_NO_MMAP: every access is a pread(2). Safe against a file
 *     that shrinks: a read of bytes that are gone returns -EIO (a page walk
 *     through them -ENXIO), never a signal; the same vmie_ram keeps working
 *     if the file grows back. Costs one system call per page-table entry on a
 *     walk, so put a vmie_tlb in front of repeated translations.
 * vmsigd always opens the RAM file in safe mode. A control reading the fd of
 * a MEMCTX faces the same file: use VMIE_RAM_NO_MMAP unless the control is
 * willing to be killed by the QEMU user (or contains SIGBUS itself; libvmie
 * installs no signal handlers). */

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Upper bound on layout entries: real flat views have a handful; the bound
 * keeps validation and lookups cheap on untrusted input. */
#define VMIE_RAM_MAX_RANGES 256u

/* One layout entry. Same shape as the memctx datum's ranges. */
struct vmie_range {
        uint64_t gpa;         /* guest-physical start */
        uint64_t len;         /* bytes, > 0 */
        uint64_t file_offset; /* where gpa lives in the backing file */
};

enum vmie_ram_flags {
        /* Safe mode: never mmap; every access is a pread, so a file that
         * shrinks makes reads fail with -EIO instead of raising SIGBUS (see
         * the top of this file). Also for callers that must not fault
         * tmpfs/hugetlbfs holes into existence through a mapping. */
        VMIE_RAM_NO_MMAP = 1u << 0,
        /* Allow two ranges to share file bytes (a genuine alias in the flat
         * view). Default: overlapping file extents are rejected as a bad
         * layout. GPA overlaps are always rejected. */
        VMIE_RAM_ALLOW_ALIAS = 1u << 1,
};

struct vmie_ram;

/* Open the backing file at path read-only (O_RDONLY|O_CLOEXEC).
 * Layout rules (fail closed, -EINVAL): 1..VMIE_RAM_MAX_RANGES ranges, no zero
 * length, no arithmetic overflow, no GPA overlap, no file-extent overlap
 * (unless VMIE_RAM_ALLOW_ALIAS), every range inside the file (-ERANGE if not).
 * Ranges may be given in any order; unknown flags are -EINVAL. The file is
 * mapped PROT_READ/MAP_SHARED; if mapping fails, reads fall back to pread.
 * The RAM file must not shrink while mapped (reads would raise SIGBUS, as
 * with any mapping); use VMIE_RAM_NO_MMAP (safe mode) where that cannot be
 * ruled out, e.g. for any file another user owns. */
int vmie_ram_open_path(const char *path, const struct vmie_range *ranges, size_t nranges, unsigned flags,
                       struct vmie_ram **ret);

/* Same from an fd (e.g. the read-only fd a control received with a memctx).
 * fd is duplicated (F_DUPFD_CLOEXEC): the caller keeps and closes its own. */
int vmie_ram_open_fd(int fd, const struct vmie_range *ranges, size_t nranges, unsigned flags,
                     struct vmie_ram **ret);

/* Wrap memory the caller already holds (its own mapping, a snapshot buffer)
 * as a "file" of size bytes. The memory is borrowed and must outlive the
 * vmie_ram. */
int vmie_ram_wrap(const void *base, size_t size, const struct vmie_range *ranges, size_t nranges,
                  unsigned flags, struct vmie_ram **ret);

/* Destructor: accepts NULL, returns NULL. */
struct vmie_ram *vmie_ram_free(struct vmie_ram *ram);

/* GPA -> file offset, plus the bytes available from gpa to the end of its
 * range. -EFAULT if gpa is in a hole. */
int vmie_ram_gpa_to_offset(const struct vmie_ram *ram, uint64_t gpa, uint64_t *ret_offset,
                           uint64_t *ret_avail);

/* Read len bytes of guest-physical memory, crossing range boundaries as
 * needed. Whole or error: -EFAULT if any byte falls in a hole (holes are never
 * read as zeros), -EIO if the file is shorter than it was at open (safe mode;
 * a mapped ram gets SIGBUS there instead). */
int vmie_ram_read(const struct vmie_ram *ram, uint64_t gpa, void *buf, size_t len);

/* Zero-copy access: a pointer to len bytes at gpa inside the read-only
 * mapping. -EFAULT for a hole or if the bytes straddle two ranges; -ENOTSUP
 * when the ram is not mapped (pread mode). The bytes can change under you:
 * the guest is live. */
int vmie_ram_peek(const struct vmie_ram *ram, uint64_t gpa, size_t len, const void **ret_ptr);

/* Layout introspection (sorted by gpa). */
size_t vmie_ram_nranges(const struct vmie_ram *ram);
int vmie_ram_range(const struct vmie_ram *ram, size_t idx, struct vmie_range *ret);
/* 1 if reads go through a mapping, 0 if through pread. */
int vmie_ram_is_mapped(const struct vmie_ram *ram);

#ifdef __cplusplus
}
#endif
#endif
