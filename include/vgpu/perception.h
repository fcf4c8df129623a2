/* SPDX-License-Identifier: MIT */
#ifndef VGPU_PERCEPTION_H
#define VGPU_PERCEPTION_H

/* libvgpu-perception: read the frames of an in-guest vgpu-stream producer
 * (include/vgpu/stream.h, docs/vgpu-stream.md) out of guest RAM through a
 * memctx, i.e. a struct vmie_ram over the VM's read-only RAM fd and layout.
 * It depends on libvmie only; it never talks to vmsigd. Control requests are
 * built here and sent by the caller as CMD_MEMWRITE (PHYS) under the
 * memwrite lease.
 *
 * Conventions as libvmie: negative errno returns, ret_ outputs written only
 * on success, destructors accept NULL and return NULL, no logging, no
 * global state. One struct vgpu_perception is used by one thread at a time.
 *
 * Costs: discovery scans all of guest RAM once (page by page, in large
 * chunks); after it every frame is O(1) in RAM size: one header read, one
 * slot-header read, the pixel pages, one slot-header re-read. Mapped mode
 * puts every page of the resolved region in the page tables at discovery
 * (MADV_POPULATE_READ, else a touch per page), so frame reads take no page
 * faults. Waiting callers that care about wake-up precision lower their
 * thread's timer slack (prctl PR_SET_TIMERSLACK); the library leaves it.
 *
 * Everything read is guest-controlled. The library validates the region
 * against its page tags before trusting it, bounds every allocation by the
 * region format's limits and the RAM size, and reads only through the
 * vmie_ram (never outside the RAM ranges). */

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <vgpu/stream.h>
#include <vmie/ram.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VGPU_PERCEPTION_VERSION_MAJOR 0

struct vgpu_perception;

enum vgpu_perception_flags {
        /* Recompute vgpu_checksum() over every frame copied (in the same
         * pass as the copy) or mapped (in place, no copy) and report a
         * mismatch as a torn frame. Costs one pass over the pixels. */
        VGPU_PERCEPTION_VERIFY = 1u << 0,
};

/* Where the library stands with the producer. */
enum vgpu_perception_state {
        VGPU_PERCEPTION_NO_PRODUCER = 0, /* none found (yet); not an error */
        VGPU_PERCEPTION_READY = 1,       /* a region is resolved */
};

struct vgpu_perception_options {
        unsigned flags;           /* enum vgpu_perception_flags */
        uint32_t torn_retries;    /* extra attempts on a torn frame; 0 = default 3 */
        uint32_t rescan_min_ms;   /* min time between full RAM scans when no producer; 0 = default 500 */
        uint32_t stale_ms;        /* heartbeat unchanged this long = producer dead; 0 = default 2000 */
        uint32_t scan_chunk_size; /* bytes per read while scanning; 0 = default 2 MiB */
};

/* Create a reader over ram (borrowed: it must outlive the reader or be
 * replaced with vgpu_perception_reset first). opts may be NULL. No scan
 * happens here; the first call that needs the region does it. */
int vgpu_perception_new(struct vmie_ram *ram, const struct vgpu_perception_options *opts,
                        struct vgpu_perception **ret);
struct vgpu_perception *vgpu_perception_free(struct vgpu_perception *p);

/* The memctx changed (guest reset: a new epoch, a new RAM fd or layout).
 * Forget the region and use ram from now on (NULL keeps the current one).
 * The next call rescans, regardless of rescan_min_ms. */
int vgpu_perception_reset(struct vgpu_perception *p, struct vmie_ram *ram);

/* Scan guest RAM now and resolve the newest live producer. 0 when found,
 * -ENOENT when there is none (state NO_PRODUCER), another negative errno on a
 * read failure of the RAM itself. Ignores rescan_min_ms. */
int vgpu_perception_discover(struct vgpu_perception *p);

enum vgpu_perception_state vgpu_perception_state(const struct vgpu_perception *p);

/* The producer as last seen (header fields, validated). -ENOENT when none. */
struct vgpu_producer_info {
        uint64_t nonce;
        uint32_t pid;
        uint32_t flags; /* VGPU_HF_* */
        uint64_t heartbeat_ns;
        uint32_t geometry_gen;
        uint32_t width, height, stride, format;
        uint32_t nslots;
        uint32_t frame_interval_us;
        uint32_t npages;
        uint64_t latest_seq;
        uint64_t frames_published, frames_dropped;
        uint32_t ctrl_ack_seq;
        int32_t ctrl_ack_result;
        uint64_t page0_gpa; /* guest-physical address of the region's page 0 */
};
int vgpu_perception_producer(struct vgpu_perception *p, struct vgpu_producer_info *ret);

/* One frame's metadata. */
struct vgpu_frame_info {
        uint64_t seq;          /* frame_seq, 1, 2, 3 ... within one producer run */
        uint64_t timestamp_ns; /* producer monotonic clock at publish */
        uint64_t nonce;        /* the producer run it came from */
        uint32_t geometry_gen;
        uint32_t width, height, stride, format; /* enum vgpu_format */
        uint32_t data_len;                      /* stride * height bytes */
        uint32_t slot;
        uint64_t checksum; /* as the producer published it */
};

/* Copy the newest complete frame into buf (cap bytes). 0: buf holds
 * info->data_len bytes of a frame that was consistent from start to end
 * (seqlock even and unchanged, same seq and geometry, and with
 * VGPU_PERCEPTION_VERIFY its checksum matches). Errors:
 *   -ENOENT     no producer (rescans at most every rescan_min_ms);
 *   -ENODATA    a producer with no frame published yet;
 *   -ENOSPC     cap is too small: *info is filled, nothing copied;
 *   -EAGAIN     every attempt was torn (torn_retries + 1 of them);
 *   -ESTALE     the region moved under the read (restart, resize, page
 *               moved); it is rediscovered on the next call;
 *   -EIO/-EFAULT a RAM read failed (file shrunk, layout hole).
 * Returns a frame with seq <= a previous one only after a restart (nonce
 * changes). */
int vgpu_perception_read(struct vgpu_perception *p, void *buf, size_t cap, struct vgpu_frame_info *info);

/* Zero-copy: the newest published frame's pixels as spans of page payloads
 * inside the vmie_ram's own read-only mapping (vmie_ram_peek). The spans
 * (owned by p, valid until the next call on p) cover info->data_len bytes in
 * order. The bytes are live guest memory: after consuming them, call
 * vgpu_perception_still_valid(); only a 1 means they were one consistent
 * frame. With VGPU_PERCEPTION_VERIFY the checksum was recomputed over the
 * spans before returning (a mismatch is retried, then -EAGAIN). -ENOTSUP when the vmie_ram is in pread mode
 * (VMIE_RAM_NO_MMAP); otherwise the errors of vgpu_perception_read. */
int vgpu_perception_map(struct vgpu_perception *p, const struct iovec **ret_spans, size_t *ret_nspans,
                        struct vgpu_frame_info *info);
/* 1 if the slot of the frame *info still holds that frame, unchanged
 * (seqlock and seq re-read, page tags re-checked); 0 if not; negative errno
 * on a read failure. */
int vgpu_perception_still_valid(struct vgpu_perception *p, const struct vgpu_frame_info *info);

/* Wait until a frame newer than after_seq is published, or a producer run
 * other than the one of the last frame read (a restart) has published its
 * first frame, without spinning: sleeps until the producer's next expected
 * frame (frame_interval_us, else the observed cadence), then polls the
 * header with growing gaps. Returns 0 when there is one (read it next),
 * -ETIMEDOUT after timeout_ms, -EDQUOT when poll_budget header reads were
 * spent (0 = no budget), -ENOENT when there is no producer at the deadline.
 * *ret_polls (may be NULL) gets the number of header reads made. */
int vgpu_perception_wait(struct vgpu_perception *p, uint64_t after_seq, uint32_t timeout_ms,
                         uint32_t poll_budget, uint32_t *ret_polls);

/* Control requests. Build the 64-byte control block of a new request for
 * op (enum vgpu_op) with args (4 words, NULL = zeros) and the guest-physical
 * address to write it to; the caller sends it with CMD_MEMWRITE, flag PHYS,
 * under the memwrite lease. *ret_req_seq identifies the request for
 * vgpu_perception_control_ack(). -ENOENT without a producer. */
int vgpu_perception_control(struct vgpu_perception *p, uint32_t op, const uint32_t args[4],
                            struct vgpu_control *ret_block, uint64_t *ret_gpa, uint32_t *ret_req_seq);
/* 1 and *ret_result (may be NULL) when the producer acknowledged req_seq,
 * 0 when not yet, -ESTALE when the producer changed since, other negative
 * errno on a read failure. */
int vgpu_perception_control_ack(struct vgpu_perception *p, uint32_t req_seq, int32_t *ret_result);

struct vgpu_perception_stats {
        uint64_t scans;           /* full RAM scans */
        uint64_t scan_bytes;      /* bytes read by them */
        uint64_t scan_ns;         /* wall time spent in them */
        uint64_t rediscoveries;   /* region found again after losing it */
        uint64_t frames;          /* frames returned as good */
        uint64_t torn;            /* attempts that found the slot torn */
        uint64_t checksum_errors; /* of which: checksum mismatch */
        uint64_t tag_mismatches;  /* page tags that no longer matched */
        uint64_t duplicate_pages; /* (nonce, index) seen twice in the last scan */
};
void vgpu_perception_stats(const struct vgpu_perception *p, struct vgpu_perception_stats *ret);

#ifdef __cplusplus
}
#endif
#endif
