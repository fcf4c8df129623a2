/* SPDX-License-Identifier: MIT */
#ifndef VGPU_PERCEPTION_INTERNAL_H
#define VGPU_PERCEPTION_INTERNAL_H

/* Internals of libvgpu-perception, shared by its files and reachable by the
 * unit tests and the fuzzer through the static twin (vgpup_ prefix). */

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <vgpu/perception.h>

#define VGPUP_DEAD_NONCES    8u
#define VGPUP_RUN_PAGES      64u /* pages per read in pread mode */
#define VGPUP_MAX_DUPS       64u /* extra copies remembered per region */
#define VGPUP_MAX_CANDIDATES 16u /* complete regions considered per scan */

/* One tag-valid page found by a scan. */
struct vgpup_tagged {
        uint64_t nonce;
        uint64_t gpa;
        uint32_t index;
        uint32_t npages;
};

/* A second copy of a region page (a stale copy left by page migration). */
struct vgpup_dup {
        uint32_t index;
        uint64_t alt_gpa;
};

struct vgpu_perception {
        struct vmie_ram *ram;
        struct vgpu_perception_options opt;
        bool mapped;
        uint64_t ram_pages; /* bound on every page count */

        /* The resolved region. */
        bool ready;
        bool force_scan;
        bool quick_stale;      /* lost within rescan_min_ms of its scan: rate-limit */
        uint64_t last_scan_ns; /* host monotonic */
        uint64_t nonce;
        uint32_t npages;
        uint64_t *gpa;       /* [npages] page index -> GPA */
        const uint8_t **ptr; /* [npages] page index -> mapping, mapped mode only */
        struct vgpup_dup dups[VGPUP_MAX_DUPS];
        uint32_t ndups;
        struct vgpu_header hdr; /* last validated header */

        /* Liveness: host time the heartbeat last moved. */
        uint64_t heartbeat;
        uint64_t heartbeat_moved_ns;
        struct {
                uint64_t nonce, heartbeat; /* skipped by scans while the heartbeat stays */
        } dead[VGPUP_DEAD_NONCES];
        uint32_t ndead, dead_next;
        bool ever_ready;

        /* Cadence for wait(). */
        uint64_t seen_seq, seen_seq_ns, cadence_ns;
        uint64_t jitter_ns; /* mean deviation of the gaps from cadence_ns */

        uint32_t last_req_seq;
        uint64_t last_frame_nonce; /* run of the last frame handed out */

        /* The frame handed out by vgpu_perception_map(). */
        uint32_t map_lock;
        uint64_t map_seq;
        uint64_t map_loff, map_len;

        uint8_t *scratch; /* VGPUP_RUN_PAGES pages, pread mode */
        struct iovec *spans;
        size_t spans_cap;

        struct vgpu_perception_stats st;
};

static inline uint64_t vgpup_now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Pure checks of guest-controlled structures (fuzzed). 0 or -EBADMSG. */
int vgpup_tag_valid(const struct vgpu_page_tag *t);
int vgpup_header_validate(const struct vgpu_header *h, uint64_t nonce, uint32_t npages);
int vgpup_slot_validate(const struct vgpu_header *h, const struct vgpu_slot *s);

/* discover.c */
/* Map the n pages at ptr[] into the page tables now (advice, then touch). */
void vgpup_populate_pages(const uint8_t *const *ptr, uint32_t n);
int vgpup_scan(struct vgpu_perception *p);
void vgpup_forget(struct vgpu_perception *p);
/* Have a region: scan if allowed (rate-limited unless forced). 0 or -ENOENT. */
int vgpup_ensure(struct vgpu_perception *p);

/* region.c: reads through the resolved page map, each page's tag checked.
 * -ESTALE when a tag no longer matches (the region is then forgotten). */
int vgpup_copy_logical(struct vgpu_perception *p, uint64_t loff, void *dst, size_t len);
/* The same, and vgpu_checksum() of the bytes copied, computed as they are. */
int vgpup_copy_logical_sum(struct vgpu_perception *p, uint64_t loff, void *dst, size_t len,
                           uint64_t *ret_sum);
/* Mapped mode only: vgpu_checksum() of [loff, loff+len) summed in place in
 * the mapping, no copy (zero-copy access with VGPU_PERCEPTION_VERIFY). */
int vgpup_sum_logical(struct vgpu_perception *p, uint64_t loff, size_t len, uint64_t *ret_sum);
/* Header re-read and validated; liveness tracked. -ESTALE / -ENOENT. */
int vgpup_read_header(struct vgpu_perception *p, struct vgpu_header *ret);
/* Swap the stale and live copies of duplicate pages inside [loff, loff+len)
 * after a checksum mismatch; returns how many were swapped. */
uint32_t vgpup_flip_dups(struct vgpu_perception *p, uint64_t loff, uint64_t len);
/* Re-check the tags of the pages holding [loff, loff+len). */
int vgpup_check_tags(struct vgpu_perception *p, uint64_t loff, uint64_t len);
int vgpup_read_slot(struct vgpu_perception *p, uint32_t slot, struct vgpu_slot *ret);
uint64_t vgpup_slot_offset(const struct vgpu_header *h, uint32_t slot);

#endif
