/* SPDX-License-Identifier: MIT */
/* Pure parser for QEMU's `info mtree -f` text: where guest RAM sits in guest
 * physical space and where each piece lives in the RAM backend file.
 *
 * Input is the plain HMP text (QMP string already un-escaped), LF or CRLF line
 * endings, NOT NUL-terminated: nothing past `len` is read. Both the flat-view
 * format of QEMU >= 2.11 (`FlatView #N` / ` AS "memory", root: system`) and
 * the older `address-space (flat view): memory` one are understood.
 *
 * Everything is derived from the system flatview (AS "memory", root "system");
 * cpu-smm-*, I/O and bus-master views are ignored. When a value cannot be
 * derived unambiguously the functions fail closed: a negative errno and a
 * reason in `err`, never a guess. */
#ifndef VMSIG_HOST_MTREE_H
#define VMSIG_HOST_MTREE_H

#include <stddef.h>
#include <stdint.h>

/* More pieces than this means something unexpected is carving up guest RAM. */
#define MTREE_MAX_RANGES 16
#define MTREE_NAME_MAX   64

struct mtree_range {
        uint64_t gpa;         /* guest physical start */
        uint64_t len;         /* bytes, > 0 */
        uint64_t file_offset; /* offset of gpa in the RAM backend */
};

struct mtree_layout {
        /* Guest RAM below 4 GiB: the file offset where RAM above 4 GiB starts. */
        uint64_t low;
        /* Highest file offset any range maps (exclusive): the backend is at
         * least this big. */
        uint64_t file_end;
        /* Name of the RAM backend region (memory-backend id or "pc.ram"). */
        char backend[MTREE_NAME_MAX];
        size_t n_ranges;
        /* Guest-visible pieces of the backend in GPA order, adjacent pieces
         * (contiguous in GPA and file offset) merged. Blackholes, overlays,
         * ROMs and device RAM are holes; aliases that mirror low RAM elsewhere
         * (e.g. smram-open-high) are left out so each file byte appears once. */
        struct mtree_range ranges[MTREE_MAX_RANGES];
};

/* Below-4G split of guest RAM. Returns 0 and *ret_low, or:
 *   -EINVAL  bad arguments
 *   -ENOENT  no (non-empty) system flatview, or no guest RAM in it
 *   -EBADMSG malformed, truncated, ambiguous or self-contradicting dump
 * `err` (may be NULL) receives a one-line reason on failure. */
int mtree_low_split(const char *text, size_t len, uint64_t *ret_low, char *err, size_t errlen);

/* Full guest-RAM layout of the system flatview. Same errors as above, plus
 *   -E2BIG   guest RAM in more than MTREE_MAX_RANGES pieces
 * *ret is written only on success. */
int mtree_ram_layout(const char *text, size_t len, struct mtree_layout *ret, char *err, size_t errlen);

#endif
