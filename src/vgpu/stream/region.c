/* SPDX-License-Identifier: MIT */
/* The producer core: region layout, page tags, seqlocked slot writes, the
 * control block and the header. docs/vgpu-stream.md describes the contract. */

#include "region.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "region_os.h"

#define SLOTS_OFFSET  320u /* header (256) + control block (64), 64-aligned */
#define DEFAULT_SLOTS 3u

struct vgpu_region {
        /* The current mapping; replaced when a geometry change recreates it. */
        unsigned char **pages;
        uint32_t npages;
        void *mem; /* default provider: one pinned allocation */
        size_t mem_len;
        struct vgpu_region_pages prov;
        int custom_pages;

        uint64_t nonce;
        struct vgpu_header *hdr;  /* in page 0's payload */
        struct vgpu_control *ctl; /* idem */
        uint32_t nslots, slot_size;

        uint32_t width, height, stride, format;
        uint32_t geometry_gen, flags, frame_interval_us;
        uint64_t capacity_pixels;
        uint32_t next_slot;
        uint64_t next_seq, published, dropped;
        uint32_t last_ctrl_seq;
};

/* ---- incremental checksum ---------------------------------------------- */

void vgpu_csum_init(struct vgpu_csum *c)
{
        vgpu_csum_lanes_init(c->h);
        c->len = 0;
        c->nbuf = 0;
}

void vgpu_csum_update(struct vgpu_csum *c, const void *data, size_t n)
{
        const unsigned char *p = data;
        c->len += n;
        if (c->nbuf) {
                size_t take = VGPU_CSUM_BLOCK - c->nbuf < n ? VGPU_CSUM_BLOCK - c->nbuf : n;
                memcpy(c->buf + c->nbuf, p, take);
                c->nbuf += (unsigned)take;
                p += take;
                n -= take;
                if (c->nbuf < VGPU_CSUM_BLOCK)
                        return;
                vgpu_csum_block(c->h, c->buf);
                c->nbuf = 0;
        }
        for (; n >= VGPU_CSUM_BLOCK; n -= VGPU_CSUM_BLOCK, p += VGPU_CSUM_BLOCK)
                vgpu_csum_block(c->h, p);
        memcpy(c->buf, p, n);
        c->nbuf = (unsigned)n;
}

uint64_t vgpu_csum_final(const struct vgpu_csum *c)
{
        uint64_t h[4] = {c->h[0], c->h[1], c->h[2], c->h[3]};
        if (c->nbuf) {
                unsigned char b[VGPU_CSUM_BLOCK] = {0};
                memcpy(b, c->buf, c->nbuf);
                vgpu_csum_block(h, b);
        }
        return vgpu_csum_fold(h, c->len);
}

/* ---- logical stream ------------------------------------------------------ */

/* Pointer to logical offset `off`. Valid for the rest of that page's payload;
 * any 32-byte-aligned 32-byte block lies in one page (4064 = 127 * 32). */
static unsigned char *lptr(const struct vgpu_region *r, uint64_t off)
{
        uint64_t page;
        uint32_t in;
        vgpu_locate(off, &page, &in);
        return r->pages[page] + in;
}

/* Copies n bytes to logical offset `off`, split at payload boundaries;
 * hashes what landed in the region when c is set. */
static void lwrite(struct vgpu_region *r, uint64_t off, const void *src, size_t n, struct vgpu_csum *c)
{
        const unsigned char *s = src;
        while (n) {
                uint32_t in = (uint32_t)(off % VGPU_PAYLOAD);
                size_t chunk = VGPU_PAYLOAD - in < n ? VGPU_PAYLOAD - in : n;
                unsigned char *d = lptr(r, off);
                memcpy(d, s, chunk);
                if (c)
                        vgpu_csum_update(c, d, chunk);
                s += chunk;
                off += chunk;
                n -= chunk;
        }
}

static uint64_t slot_offset(const struct vgpu_region *r, uint32_t i)
{
        return (uint64_t)SLOTS_OFFSET + (uint64_t)i * r->slot_size;
}

/* ---- mapping lifetime ---------------------------------------------------- */

static int default_alloc(struct vgpu_region *r, uint32_t npages)
{
        size_t len = (size_t)npages * VGPU_PAGE_SIZE;
        void *mem;
        int rc = vgpu_os_alloc_pinned(len, &mem);
        if (rc < 0)
                return rc;
        for (uint32_t i = 0; i < npages; i++)
                r->pages[i] = (unsigned char *)mem + (size_t)i * VGPU_PAGE_SIZE;
        r->mem = mem;
        r->mem_len = len;
        return 0;
}

static int map_pages(struct vgpu_region *r, uint32_t npages)
{
        int rc;
        r->pages = calloc(npages, sizeof(*r->pages));
        if (!r->pages)
                return -ENOMEM;
        if (r->custom_pages)
                rc = r->prov.alloc(r->prov.ctx, npages, r->pages);
        else
                rc = default_alloc(r, npages);
        if (rc < 0) {
                free(r->pages);
                r->pages = NULL;
                return rc;
        }
        r->npages = npages;
        for (uint32_t i = 0; i < npages; i++)
                memset(r->pages[i], 0, VGPU_PAGE_SIZE);
        return 0;
}

/* Makes the old pages unrecognisable before they are freed, so a host scan
 * does not lock onto a dead region: header magic first, then every tag. */
static void unmap_pages(struct vgpu_region *r)
{
        if (!r->pages)
                return;
        __atomic_store_n(&r->hdr->magic, 0, __ATOMIC_RELEASE);
        for (uint32_t i = 0; i < r->npages; i++)
                memset(r->pages[i], 0, VGPU_TAG_SIZE);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        if (r->custom_pages)
                r->prov.release(r->prov.ctx, r->npages, r->pages);
        else
                vgpu_os_free_pinned(r->mem, r->mem_len);
        free(r->pages);
        r->pages = NULL;
        r->mem = NULL;
        r->hdr = NULL;
        r->ctl = NULL;
        r->npages = 0;
}

static int new_nonce(uint64_t *ret)
{
        uint64_t n = 0;
        while (n == 0) {
                int rc = vgpu_os_random(&n, sizeof(n));
                if (rc < 0)
                        return rc;
        }
        *ret = n;
        return 0;
}

static uint64_t align64(uint64_t v)
{
        return (v + 63) & ~(uint64_t)63;
}

/* Allocates a mapping for the current geometry/capacity, writes tags and the
 * header; the header magic is stored last. */
static int build(struct vgpu_region *r)
{
        uint64_t slot_size = align64(sizeof(struct vgpu_slot) + r->capacity_pixels * 4);
        if (slot_size > UINT32_MAX)
                return -EFBIG;
        r->slot_size = (uint32_t)slot_size;
        uint64_t npages = vgpu_pages_for(SLOTS_OFFSET + (uint64_t)r->nslots * slot_size);
        if (npages > VGPU_MAX_PAGES)
                return -EFBIG;
        int rc = new_nonce(&r->nonce);
        if (rc < 0)
                return rc;
        rc = map_pages(r, (uint32_t)npages);
        if (rc < 0)
                return rc;

        for (uint32_t i = 0; i < r->npages; i++) {
                struct vgpu_page_tag t = {
                    .magic = VGPU_TAG_MAGIC,
                    .index = i,
                    .nonce = r->nonce,
                    .npages = r->npages,
                };
                t.check = vgpu_tag_check(t.magic, t.index, t.nonce, t.npages);
                memcpy(r->pages[i], &t, sizeof(t));
        }
        r->hdr = (struct vgpu_header *)lptr(r, 0);
        r->ctl = (struct vgpu_control *)lptr(r, VGPU_CONTROL_OFFSET);
        r->next_slot = 0;
        r->last_ctrl_seq = 0;

        struct vgpu_header *h = r->hdr;
        h->version = VGPU_VERSION;
        h->header_size = sizeof(*h);
        h->nonce = r->nonce;
        h->producer_pid = vgpu_os_pid();
        h->flags = r->flags;
        h->heartbeat_ns = vgpu_os_now_ns();
        h->geometry_gen = r->geometry_gen;
        h->width = r->width;
        h->height = r->height;
        h->stride = r->stride;
        h->format = r->format;
        h->nslots = r->nslots;
        h->slot_size = r->slot_size;
        h->frame_interval_us = r->frame_interval_us;
        h->slots_offset = SLOTS_OFFSET;
        h->control_offset = VGPU_CONTROL_OFFSET;
        h->frames_published = r->published;
        h->frames_dropped = r->dropped;
        __atomic_store_n(&h->magic, VGPU_HDR_MAGIC, __ATOMIC_RELEASE);
        return 0;
}

static int valid_geometry(uint32_t width, uint32_t height, uint32_t format)
{
        return width >= 1 && height >= 1 && width <= VGPU_MAX_DIM && height <= VGPU_MAX_DIM &&
               (format == VGPU_FMT_BGRA8888 || format == VGPU_FMT_BGRX8888);
}

int vgpu_region_create(struct vgpu_region **ret, const struct vgpu_region_params *p)
{
        if (!ret || !p || !valid_geometry(p->width, p->height, p->format) || p->nslots > VGPU_MAX_SLOTS)
                return -EINVAL;
        if (p->pages && (!p->pages->alloc || !p->pages->release))
                return -EINVAL;
        struct vgpu_region *r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        r->width = p->width;
        r->height = p->height;
        r->stride = p->width * 4;
        r->format = p->format;
        r->nslots = p->nslots ? p->nslots : DEFAULT_SLOTS;
        r->capacity_pixels = (uint64_t)p->width * p->height;
        if (p->capacity_pixels > r->capacity_pixels)
                r->capacity_pixels = p->capacity_pixels;
        r->frame_interval_us = p->frame_interval_us;
        r->geometry_gen = 1;
        r->next_seq = 1;
        if (p->pages) {
                r->prov = *p->pages;
                r->custom_pages = 1;
        }
        int rc = build(r);
        if (rc < 0) {
                free(r);
                return rc;
        }
        *ret = r;
        return 0;
}

void vgpu_region_destroy(struct vgpu_region *r)
{
        if (!r)
                return;
        unmap_pages(r);
        free(r);
}

/* ---- frames -------------------------------------------------------------- */

int64_t vgpu_region_publish_frame(struct vgpu_region *r, const void *pixels, uint32_t width, uint32_t height,
                                  uint32_t src_stride, uint64_t timestamp_ns)
{
        if (!r || !pixels || width != r->width || height != r->height || src_stride < width * 4)
                return -EINVAL;
        if (!r->hdr)
                return -ENODEV; /* a failed recreate left no region */
        uint32_t i = r->next_slot;
        uint64_t base = slot_offset(r, i);
        uint32_t *lock = (uint32_t *)lptr(r, base);
        uint32_t seq0 = __atomic_load_n(lock, __ATOMIC_RELAXED) & ~1u;
        uint64_t frame_seq = r->next_seq;

        /* Odd: readers discard what they copy from now on. The release fence
         * keeps the slot writes below from becoming visible before it. */
        __atomic_store_n(lock, seq0 + 1, __ATOMIC_RELAXED);
        __atomic_thread_fence(__ATOMIC_RELEASE);

        struct vgpu_csum c;
        vgpu_csum_init(&c);
        uint64_t data = base + sizeof(struct vgpu_slot);
        size_t row = (size_t)width * 4;
        if (src_stride == row) {
                lwrite(r, data, pixels, row * height, &c);
        } else {
                const unsigned char *s = pixels;
                for (uint32_t y = 0; y < height; y++)
                        lwrite(r, data + (uint64_t)y * row, s + (size_t)y * src_stride, row, &c);
        }

        struct vgpu_slot sh = {
            .lock = seq0 + 1,
            .geometry_gen = r->geometry_gen,
            .frame_seq = frame_seq,
            .timestamp_ns = timestamp_ns,
            .width = width,
            .height = height,
            .stride = r->stride,
            .format = r->format,
            .data_len = (uint32_t)(row * height),
            .checksum = vgpu_csum_final(&c),
        };
        /* Everything after the lock word; the lock itself is only ever
         * stored atomically. */
        lwrite(r, base + 4, (const unsigned char *)&sh + 4, sizeof(sh) - 4, NULL);

        /* Even again: the release store orders every slot write before it. */
        __atomic_store_n(lock, seq0 + 2, __ATOMIC_RELEASE);

        /* Then the header: slot before seq, so a reader that loads latest_seq
         * (acquire) and then latest_slot sees a slot at least that new. */
        struct vgpu_header *h = r->hdr;
        __atomic_store_n(&h->latest_slot, i, __ATOMIC_RELAXED);
        __atomic_store_n(&h->latest_seq, frame_seq, __ATOMIC_RELEASE);
        r->published++;
        __atomic_store_n(&h->frames_published, r->published, __ATOMIC_RELAXED);
        __atomic_store_n(&h->heartbeat_ns, vgpu_os_now_ns(), __ATOMIC_RELAXED);

        r->next_slot = (i + 1) % r->nslots;
        r->next_seq++;
        return (int64_t)frame_seq;
}

int vgpu_region_set_geometry(struct vgpu_region *r, uint32_t width, uint32_t height, uint32_t format,
                             int *recreated)
{
        if (recreated)
                *recreated = 0;
        if (!r || !valid_geometry(width, height, format))
                return -EINVAL;
        if (width == r->width && height == r->height && format == r->format)
                return 0;
        uint64_t pixels = (uint64_t)width * height;
        r->width = width;
        r->height = height;
        r->stride = width * 4;
        r->format = format;
        r->geometry_gen++;
        if (pixels * 4 + sizeof(struct vgpu_slot) <= r->slot_size) {
                struct vgpu_header *h = r->hdr;
                __atomic_store_n(&h->width, width, __ATOMIC_RELAXED);
                __atomic_store_n(&h->height, height, __ATOMIC_RELAXED);
                __atomic_store_n(&h->stride, r->stride, __ATOMIC_RELAXED);
                __atomic_store_n(&h->format, format, __ATOMIC_RELAXED);
                __atomic_store_n(&h->geometry_gen, r->geometry_gen, __ATOMIC_RELEASE);
                return 0;
        }
        /* Does not fit: a new region with a new nonce. The old one goes
         * first, so a host never sees two live regions of this producer. */
        unmap_pages(r);
        r->capacity_pixels = pixels;
        int rc = build(r);
        if (rc < 0)
                return rc;
        if (recreated)
                *recreated = 1;
        return 0;
}

void vgpu_region_heartbeat(struct vgpu_region *r, uint64_t now_ns)
{
        if (!r->hdr)
                return;
        __atomic_store_n(&r->hdr->heartbeat_ns, now_ns, __ATOMIC_RELAXED);
}

/* ---- control block ------------------------------------------------------- */

static void read_control(const struct vgpu_region *r, struct vgpu_control *out)
{
        /* The host writes this memory behind the compiler's back. */
        const volatile uint32_t *src = (const volatile uint32_t *)r->ctl;
        uint32_t *dst = (uint32_t *)out;
        for (size_t i = 0; i < sizeof(*out) / 4; i++)
                dst[i] = src[i];
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
}

int vgpu_region_poll_control(struct vgpu_region *r, struct vgpu_request *req)
{
        struct vgpu_control a, b;
        if (!r->ctl)
                return 0;
        read_control(r, &a);
        if (a.req_seq == 0 || a.req_seq == r->last_ctrl_seq || a.req_seq_check != ~a.req_seq)
                return 0;
        /* A second identical read: a block caught mid-write is taken on a
         * later poll. */
        read_control(r, &b);
        if (memcmp(&a, &b, sizeof(a)) != 0)
                return 0;
        r->last_ctrl_seq = a.req_seq;
        req->seq = a.req_seq;
        req->op = a.op;
        memcpy(req->arg, a.arg, sizeof(req->arg));
        return 1;
}

void vgpu_region_ack(struct vgpu_region *r, uint32_t seq, int32_t result)
{
        if (!r->hdr)
                return;
        __atomic_store_n(&r->hdr->ctrl_ack_result, result, __ATOMIC_RELAXED);
        __atomic_store_n(&r->hdr->ctrl_ack_seq, seq, __ATOMIC_RELEASE);
}

/* ---- small setters and getters ------------------------------------------ */

void vgpu_region_set_flags(struct vgpu_region *r, uint32_t flags)
{
        r->flags = flags;
        if (!r->hdr)
                return;
        __atomic_store_n(&r->hdr->flags, flags, __ATOMIC_RELEASE);
}

void vgpu_region_set_interval(struct vgpu_region *r, uint32_t frame_interval_us)
{
        r->frame_interval_us = frame_interval_us;
        if (!r->hdr)
                return;
        __atomic_store_n(&r->hdr->frame_interval_us, frame_interval_us, __ATOMIC_RELAXED);
}

void vgpu_region_count_dropped(struct vgpu_region *r, uint64_t n)
{
        r->dropped += n;
        if (!r->hdr)
                return;
        __atomic_store_n(&r->hdr->frames_dropped, r->dropped, __ATOMIC_RELAXED);
}

uint32_t vgpu_region_npages(const struct vgpu_region *r)
{
        return r->npages;
}

unsigned char *vgpu_region_page(const struct vgpu_region *r, uint32_t index)
{
        return index < r->npages ? r->pages[index] : NULL;
}

uint64_t vgpu_region_nonce(const struct vgpu_region *r)
{
        return r->nonce;
}

uint64_t vgpu_region_next_seq(const struct vgpu_region *r)
{
        return r->next_seq;
}

const struct vgpu_header *vgpu_region_header(const struct vgpu_region *r)
{
        return r->hdr;
}

struct vgpu_control *vgpu_region_control(struct vgpu_region *r)
{
        return r->ctl;
}

int vgpu_region_dump(const struct vgpu_region *r, const char *path)
{
        char tmp[4096];
        if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
                return -ENAMETOOLONG;
        FILE *f = fopen(tmp, "wb");
        if (!f)
                return -errno;
        for (uint32_t i = 0; i < r->npages; i++) {
                if (fwrite(r->pages[i], VGPU_PAGE_SIZE, 1, f) != 1) {
                        int err = errno ? -errno : -EIO;
                        fclose(f);
                        remove(tmp);
                        return err;
                }
        }
        if (fclose(f) != 0) {
                int err = -errno;
                remove(tmp);
                return err;
        }
        return vgpu_os_replace_file(tmp, path);
}
