/* SPDX-License-Identifier: MIT */
#ifndef VGPU_STREAM_REGION_H
#define VGPU_STREAM_REGION_H

/* The producer core of vgpu-stream: owns one shared region in the format of
 * include/vgpu/stream.h and publishes frames into it. Portable C (Linux and
 * mingw), no vmsig dependency, no logging: every call returns 0 or a
 * negative errno.
 *
 * By default the region is one page-aligned, pinned allocation of this
 * process (mlock / VirtualLock). A caller may instead supply the pages
 * (struct vgpu_region_pages), e.g. scattered pages of a stub guest RAM, so
 * host-side unit tests can run a real producer with no VM. */

#include <stddef.h>
#include <stdint.h>

#include "vgpu/stream.h"

struct vgpu_region;

/* Page provider. alloc fills pages[0..npages-1] with writable 4 KiB pages
 * (any order, any address; 4 KiB alignment is what real producers use) and
 * returns 0 or a negative errno; release gets the same array back. */
struct vgpu_region_pages {
        int (*alloc)(void *ctx, uint32_t npages, unsigned char **pages);
        void (*release)(void *ctx, uint32_t npages, unsigned char **pages);
        void *ctx;
};

struct vgpu_region_params {
        uint32_t width, height; /* initial geometry, 1 .. VGPU_MAX_DIM */
        uint32_t format;        /* enum vgpu_format */
        uint32_t nslots;        /* 1 .. VGPU_MAX_SLOTS; 0 = 3 */
        /* Slot capacity in pixels; 0 = width * height. A larger capacity lets
         * later geometry changes reuse the region instead of recreating it. */
        uint64_t capacity_pixels;
        uint32_t frame_interval_us;            /* initial cadence, 0 = unknown */
        const struct vgpu_region_pages *pages; /* NULL: pinned memory of this process */
};

/* A host request taken from the control block. */
struct vgpu_request {
        uint32_t seq;
        uint32_t op; /* enum vgpu_op */
        uint32_t arg[4];
};

/* Allocates, pins and initialises a region with a fresh random nonce. */
int vgpu_region_create(struct vgpu_region **ret, const struct vgpu_region_params *p);

/* Invalidates the tags and header (so the host stops trusting the pages),
 * then unpins and frees. NULL is allowed. */
void vgpu_region_destroy(struct vgpu_region *r);

/* Copies one frame into the next slot under the slot's seqlock and publishes
 * it in the header. `pixels` is width x height pixels, `src_stride` bytes
 * apart (>= width * 4), and must not change during the call. The frame's
 * geometry must be the current one (see vgpu_region_set_geometry).
 * Returns the new frame_seq (> 0) or a negative errno. */
int64_t vgpu_region_publish_frame(struct vgpu_region *r, const void *pixels, uint32_t width, uint32_t height,
                                  uint32_t src_stride, uint64_t timestamp_ns);

/* Changes the geometry (geometry_gen + 1). If the new frame no longer fits a
 * slot, the region is recreated: the old one is invalidated and freed and a
 * new one, with a new nonce, takes its place. *recreated (may be NULL) says
 * which happened. Same geometry: nothing changes. */
int vgpu_region_set_geometry(struct vgpu_region *r, uint32_t width, uint32_t height, uint32_t format,
                             int *recreated);

/* Updates the heartbeat (the producer must call it at least every 100 ms;
 * publishing also does). */
void vgpu_region_heartbeat(struct vgpu_region *r, uint64_t now_ns);

/* Reads the control block. Returns 1 and fills *req when it holds a new,
 * complete request (req_seq != 0, req_seq_check == ~req_seq, not the last
 * one handled, the same on two consecutive reads), else 0. Call
 * vgpu_region_ack for every request returned. */
int vgpu_region_poll_control(struct vgpu_region *r, struct vgpu_request *req);

/* Acknowledges a request in the header: ctrl_ack_result, then ctrl_ack_seq. */
void vgpu_region_ack(struct vgpu_region *r, uint32_t seq, int32_t result);

/* Header fields the producer loop owns. */
void vgpu_region_set_flags(struct vgpu_region *r, uint32_t flags);
void vgpu_region_set_interval(struct vgpu_region *r, uint32_t frame_interval_us);
void vgpu_region_count_dropped(struct vgpu_region *r, uint64_t n);

/* Introspection (tests, --dump). */
uint32_t vgpu_region_npages(const struct vgpu_region *r);
unsigned char *vgpu_region_page(const struct vgpu_region *r, uint32_t index);
uint64_t vgpu_region_nonce(const struct vgpu_region *r);
/* The frame_seq the next published frame will carry. */
uint64_t vgpu_region_next_seq(const struct vgpu_region *r);
const struct vgpu_header *vgpu_region_header(const struct vgpu_region *r);
/* The control block, so a debug path can write it as the host would. */
struct vgpu_control *vgpu_region_control(struct vgpu_region *r);

/* Writes every page, in index order, to `path` (via a temporary file and
 * rename, so a reader never sees a partial dump). */
int vgpu_region_dump(const struct vgpu_region *r, const char *path);

/* Incremental vgpu_checksum(): the same value for the same bytes however
 * they are split across calls. */
struct vgpu_csum {
        uint64_t h[4], len;
        unsigned char buf[VGPU_CSUM_BLOCK];
        unsigned nbuf;
};
void vgpu_csum_init(struct vgpu_csum *c);
void vgpu_csum_update(struct vgpu_csum *c, const void *data, size_t n);
uint64_t vgpu_csum_final(const struct vgpu_csum *c);

#endif
