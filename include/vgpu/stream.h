/* SPDX-License-Identifier: MIT */
#ifndef VGPU_STREAM_H
#define VGPU_STREAM_H

/* The vgpu-stream shared-region format, version 1: what the in-guest
 * producer (vgpu-stream) writes into ordinary, pinned guest memory and what
 * libvgpu-perception reads from the host through the memctx. docs/vgpu-stream.md
 * is the normative description; this header is its C rendering. It is
 * header-only and depends on nothing but <stdint.h> and <string.h>, so the
 * Windows (mingw) and Linux producers and the host library share it.
 *
 * Why every page carries a tag: the region is contiguous only in the
 * producer's virtual memory. Its physical pages are scattered, and finding
 * the producer's page tables would need guest symbols. A tag at the start of
 * every 4 KiB page (magic, per-run nonce, page index) lets the host find and
 * order the pages by one scan of guest RAM, with no symbols and no CR3.
 *
 * The region is a "logical stream": the concatenation of each page's payload
 * (the page minus its tag). Logical offset L lives in page L / PAYLOAD at
 * byte TAG_SIZE + L % PAYLOAD. All integers are little-endian. */

#include <stdint.h>
#include <string.h>

#define VGPU_PAGE_SIZE 4096u
#define VGPU_TAG_SIZE  32u
#define VGPU_PAYLOAD   (VGPU_PAGE_SIZE - VGPU_TAG_SIZE) /* 4064 */

#define VGPU_TAG_MAGIC 0x47415447u           /* "GTAG" little-endian */
#define VGPU_HDR_MAGIC 0x4d52545355504756ull /* "VGPUSTRM" little-endian */
#define VGPU_VERSION   1u
#define VGPU_MAX_PAGES (1u << 20) /* 4 GiB: a reader's bound */
#define VGPU_MAX_SLOTS 16u
#define VGPU_MAX_DIM   16384u

/* At byte 0 of every page of the region. `check` is vgpu_tag_check() of the
 * fields before it, so a random guest page is not taken for a tag. */
struct vgpu_page_tag {
        uint32_t magic;  /* VGPU_TAG_MAGIC */
        uint32_t index;  /* this page's index in the region, 0 .. npages-1 */
        uint64_t nonce;  /* the producer run's random nonce, never 0 */
        uint32_t npages; /* pages in the region */
        uint32_t check;  /* vgpu_tag_check(magic, index, nonce, npages) */
        uint64_t reserved;
};

/* Pixel formats: byte order in memory. */
enum vgpu_format {
        VGPU_FMT_BGRA8888 = 1, /* B, G, R, A bytes: Windows DXGI, Linux fb 32bpp */
        VGPU_FMT_BGRX8888 = 2, /* as BGRA, the 4th byte is undefined */
};

/* Header flags. */
#define VGPU_HF_PAUSED 0x1u /* the producer honours a pause request */

/* Logical offset 0. The producer writes it; the host only reads it. */
struct vgpu_header {
        uint64_t magic;        /* VGPU_HDR_MAGIC */
        uint32_t version;      /* VGPU_VERSION */
        uint32_t header_size;  /* sizeof(struct vgpu_header) = 256 */
        uint64_t nonce;        /* equals every page tag's nonce */
        uint32_t producer_pid; /* guest pid, informational */
        uint32_t flags;        /* VGPU_HF_* */
        uint64_t heartbeat_ns; /* producer monotonic clock, updated >= every 100 ms */
        uint32_t geometry_gen; /* increments on every geometry change */
        uint32_t width;        /* current geometry, pixels */
        uint32_t height;
        uint32_t stride;            /* bytes per row, >= width * 4, multiple of 4 */
        uint32_t format;            /* enum vgpu_format */
        uint32_t nslots;            /* 1 .. VGPU_MAX_SLOTS */
        uint32_t slot_size;         /* logical bytes per slot, header included, multiple of 64 */
        uint32_t frame_interval_us; /* the producer's current cadence; 0 = unknown */
        uint64_t slots_offset;      /* logical offset of slot 0, multiple of 64 */
        uint64_t control_offset;    /* logical offset of the control block, in page 0's payload */
        uint64_t latest_seq;        /* frame_seq of the newest published frame, 0 = none yet */
        uint32_t latest_slot;       /* its slot */
        uint32_t ctrl_ack_seq;      /* the last control req_seq the producer handled */
        int32_t ctrl_ack_result;    /* its result: 0 or a negative errno */
        uint32_t reserved0;
        uint64_t frames_published; /* counters, informational */
        uint64_t frames_dropped;
        uint8_t reserved[128]; /* zero */
};

/* Slot header at slots_offset + i * slot_size; the pixels follow it. */
struct vgpu_slot {
        /* Seqlock: odd while the producer writes this slot. A reader copies
         * the slot and accepts it only if `lock` was even and unchanged
         * before and after the copy. */
        uint32_t lock;
        uint32_t geometry_gen; /* header geometry_gen this frame was made with */
        uint64_t frame_seq;    /* 1, 2, 3 ... across all slots of this run */
        uint64_t timestamp_ns; /* producer monotonic clock at publish */
        uint32_t width, height, stride, format;
        uint32_t data_len; /* = stride * height, <= slot_size - 64 */
        uint32_t reserved0;
        uint64_t checksum; /* vgpu_checksum() of the data_len pixel bytes */
        uint64_t reserved1;
};

/* Control requests (host -> producer), written with CMD_MEMWRITE under the
 * memwrite lease at the control block's guest-physical address. The producer
 * acts on a request only when req_seq != 0, req_seq != the last one it
 * handled, and req_seq_check == ~req_seq (so a half-written block is ignored),
 * then sets the header's ctrl_ack_seq/ctrl_ack_result. */
enum vgpu_op {
        VGPU_OP_PAUSE = 1,      /* arg[0]: 1 pause, 0 resume */
        VGPU_OP_FPS_CAP = 2,    /* arg[0]: frames per second, 0 = no cap */
        VGPU_OP_REGION = 3,     /* arg[0..3]: x, y, width, height; all 0 = whole screen */
        VGPU_OP_FULL_FRAME = 4, /* publish a complete frame now */
};

struct vgpu_control {
        uint32_t req_seq;
        uint32_t op;
        uint32_t arg[4];
        uint32_t reserved[9];
        uint32_t req_seq_check; /* ~req_seq, written with the rest */
};

_Static_assert(sizeof(struct vgpu_page_tag) == VGPU_TAG_SIZE, "page tag layout");
_Static_assert(sizeof(struct vgpu_header) == 256, "header layout");
_Static_assert(sizeof(struct vgpu_slot) == 64, "slot header layout");
_Static_assert(sizeof(struct vgpu_control) == 64, "control block layout");

#define VGPU_CONTROL_OFFSET 256u /* where producers put the control block */

static inline uint32_t vgpu_tag_check(uint32_t magic, uint32_t index, uint64_t nonce, uint32_t npages)
{
        uint64_t h = 0x9e3779b97f4a7c15ull;
        h = (h ^ magic) * 0x100000001b3ull;
        h = (h ^ index) * 0x100000001b3ull;
        h = (h ^ nonce) * 0x100000001b3ull;
        h = (h ^ npages) * 0x100000001b3ull;
        return (uint32_t)(h ^ (h >> 32));
}

/* Frame checksum: four independent FNV-style lanes, so the multiplies
 * overlap and it runs at memory speed (one serial chain ran at a quarter of
 * memcpy). The data is cut into 32-byte blocks (a trailing partial block
 * zero-padded); 64-bit little-endian word k of every block feeds lane k. The
 * lanes and the length are folded together at the end. 32-byte blocks never
 * straddle a page's payload (4064 = 127 * 32), so pixel data can be summed
 * page piece by page piece. docs/vgpu-stream.md section 5 is the definition. */
#define VGPU_CSUM_BASIS 0xcbf29ce484222325ull
#define VGPU_CSUM_PRIME 0x100000001b3ull
#define VGPU_CSUM_BLOCK 32u

static inline uint64_t vgpu_csum_step(uint64_t h, uint64_t w)
{
        h = (h ^ w) * VGPU_CSUM_PRIME;
        return (h << 29) | (h >> 35); /* rotate: high bits reach low ones */
}

/* One 32-byte block into lanes h[0..3]. */
static inline void vgpu_csum_block(uint64_t h[4], const unsigned char *p)
{
        uint64_t w[4];
        memcpy(w, p, 32);
        h[0] = vgpu_csum_step(h[0], w[0]);
        h[1] = vgpu_csum_step(h[1], w[1]);
        h[2] = vgpu_csum_step(h[2], w[2]);
        h[3] = vgpu_csum_step(h[3], w[3]);
}

static inline void vgpu_csum_lanes_init(uint64_t h[4])
{
        for (unsigned k = 0; k < 4; k++)
                h[k] = VGPU_CSUM_BASIS + k;
}

/* Fold the lanes and the total length into the checksum. */
static inline uint64_t vgpu_csum_fold(const uint64_t h[4], uint64_t len)
{
        uint64_t r = len;
        for (unsigned k = 0; k < 4; k++)
                r = vgpu_csum_step(r, h[k]);
        return r;
}

static inline uint64_t vgpu_checksum(const void *data, size_t len)
{
        const unsigned char *p = (const unsigned char *)data;
        uint64_t h[4];
        size_t i = 0;
        vgpu_csum_lanes_init(h);
        for (; i + VGPU_CSUM_BLOCK <= len; i += VGPU_CSUM_BLOCK)
                vgpu_csum_block(h, p + i);
        if (i < len) {
                unsigned char tail[VGPU_CSUM_BLOCK] = {0};
                memcpy(tail, p + i, len - i);
                vgpu_csum_block(h, tail);
        }
        return vgpu_csum_fold(h, (uint64_t)len);
}

/* Logical offset -> (page index, byte offset within that page). */
static inline void vgpu_locate(uint64_t logical, uint64_t *ret_page, uint32_t *ret_off)
{
        *ret_page = logical / VGPU_PAYLOAD;
        *ret_off = (uint32_t)(VGPU_TAG_SIZE + logical % VGPU_PAYLOAD);
}

/* Pages needed for a region of `logical_len` logical bytes. */
static inline uint64_t vgpu_pages_for(uint64_t logical_len)
{
        return (logical_len + VGPU_PAYLOAD - 1) / VGPU_PAYLOAD;
}

#endif
