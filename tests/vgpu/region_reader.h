/* SPDX-License-Identifier: MIT */
#ifndef VGPU_TESTS_REGION_READER_H
#define VGPU_TESTS_REGION_READER_H

/* A small, strict reader of a vgpu-stream region whose pages are already in
 * index order: for the producer's tests (the checker and the core unit
 * test). It checks everything docs/vgpu-stream.md promises. It is not
 * libvgpu-perception and does no discovery. */

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "vgpu/stream.h"

struct rr_region {
        const unsigned char *const *pages;
        uint32_t npages;
        struct vgpu_header hdr;
        struct vgpu_control ctl;
};

static inline int rr_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline int rr_fail(char *err, size_t errlen, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
        return -1;
}

/* Copies logical bytes [off, off + n). */
static inline int rr_read(const struct rr_region *g, uint64_t off, void *dst, size_t n)
{
        unsigned char *d = dst;
        if (off + n < off || vgpu_pages_for(off + n) > g->npages)
                return -1;
        while (n) {
                uint64_t page;
                uint32_t in;
                vgpu_locate(off, &page, &in);
                size_t chunk = VGPU_PAGE_SIZE - in < n ? VGPU_PAGE_SIZE - in : n;
                memcpy(d, g->pages[page] + in, chunk);
                d += chunk;
                off += chunk;
                n -= chunk;
        }
        return 0;
}

/* Validates every tag and the header. */
static inline int rr_open(struct rr_region *g, const unsigned char *const *pages, uint32_t npages, char *err,
                          size_t errlen)
{
        memset(g, 0, sizeof(*g));
        g->pages = pages;
        g->npages = npages;
        if (npages == 0 || npages > VGPU_MAX_PAGES)
                return rr_fail(err, errlen, "region has %u pages", npages);
        struct vgpu_page_tag t0;
        memcpy(&t0, pages[0], sizeof(t0));
        if (t0.nonce == 0)
                return rr_fail(err, errlen, "page 0: nonce is 0");
        for (uint32_t i = 0; i < npages; i++) {
                struct vgpu_page_tag t;
                memcpy(&t, pages[i], sizeof(t));
                if (t.magic != VGPU_TAG_MAGIC)
                        return rr_fail(err, errlen, "page %u: tag magic %#x", i, t.magic);
                if (t.index != i || t.nonce != t0.nonce || t.npages != npages)
                        return rr_fail(err, errlen, "page %u: tag says index %u nonce %#llx npages %u", i,
                                       t.index, (unsigned long long)t.nonce, t.npages);
                if (t.check != vgpu_tag_check(t.magic, t.index, t.nonce, t.npages))
                        return rr_fail(err, errlen, "page %u: tag check %#x is wrong", i, t.check);
                if (t.reserved != 0)
                        return rr_fail(err, errlen, "page %u: tag reserved is not 0", i);
        }
        struct vgpu_header *h = &g->hdr;
        if (rr_read(g, 0, h, sizeof(*h)) < 0)
                return rr_fail(err, errlen, "header does not fit");
        if (h->magic != VGPU_HDR_MAGIC || h->version != VGPU_VERSION || h->header_size != sizeof(*h))
                return rr_fail(err, errlen, "header: magic %#llx version %u size %u",
                               (unsigned long long)h->magic, h->version, h->header_size);
        if (h->nonce != t0.nonce)
                return rr_fail(err, errlen, "header nonce differs from the tags'");
        if (h->width < 1 || h->height < 1 || h->width > VGPU_MAX_DIM || h->height > VGPU_MAX_DIM ||
            h->stride < h->width * 4 || h->stride % 4 ||
            (h->format != VGPU_FMT_BGRA8888 && h->format != VGPU_FMT_BGRX8888))
                return rr_fail(err, errlen, "header geometry %ux%u stride %u format %u", h->width, h->height,
                               h->stride, h->format);
        if (h->nslots < 1 || h->nslots > VGPU_MAX_SLOTS || h->slot_size % 64 ||
            h->slot_size < sizeof(struct vgpu_slot) ||
            (uint64_t)h->stride * h->height > h->slot_size - sizeof(struct vgpu_slot))
                return rr_fail(err, errlen, "header: nslots %u slot_size %u too small or misaligned",
                               h->nslots, h->slot_size);
        if (h->control_offset != VGPU_CONTROL_OFFSET || h->slots_offset % 64 ||
            h->slots_offset < VGPU_CONTROL_OFFSET + sizeof(struct vgpu_control) ||
            vgpu_pages_for(h->slots_offset + (uint64_t)h->nslots * h->slot_size) > npages)
                return rr_fail(err, errlen, "header: control at %llu, slots at %llu do not fit %u pages",
                               (unsigned long long)h->control_offset, (unsigned long long)h->slots_offset,
                               npages);
        if (h->latest_slot >= h->nslots)
                return rr_fail(err, errlen, "header: latest_slot %u >= nslots", h->latest_slot);
        for (size_t i = 0; i < sizeof(h->reserved); i++)
                if (h->reserved[i])
                        return rr_fail(err, errlen, "header: reserved byte %zu is not 0", i);
        if (rr_read(g, h->control_offset, &g->ctl, sizeof(g->ctl)) < 0)
                return rr_fail(err, errlen, "control block does not fit");
        return 0;
}

/* Reads slot i into *sh and data (room for slot_size bytes). Returns 1 for a
 * valid frame, 0 for a never-written slot, -1 (with err) for a bad one. */
static inline int rr_slot(const struct rr_region *g, uint32_t i, struct vgpu_slot *sh, unsigned char *data,
                          char *err, size_t errlen)
{
        const struct vgpu_header *h = &g->hdr;
        uint64_t base = h->slots_offset + (uint64_t)i * h->slot_size;
        if (i >= h->nslots || rr_read(g, base, sh, sizeof(*sh)) < 0)
                return rr_fail(err, errlen, "slot %u out of range", i);
        if (sh->lock == 0 && sh->frame_seq == 0)
                return 0;
        if (sh->lock & 1)
                return rr_fail(err, errlen, "slot %u: lock %u is odd (being written)", i, sh->lock);
        if (sh->frame_seq == 0 || sh->frame_seq > h->latest_seq)
                return rr_fail(err, errlen, "slot %u: frame_seq %llu, latest_seq %llu", i,
                               (unsigned long long)sh->frame_seq, (unsigned long long)h->latest_seq);
        if (sh->geometry_gen > h->geometry_gen || sh->width < 1 || sh->height < 1 ||
            sh->width > VGPU_MAX_DIM || sh->height > VGPU_MAX_DIM || sh->stride < sh->width * 4 ||
            (uint64_t)sh->stride * sh->height != sh->data_len ||
            sh->data_len > h->slot_size - sizeof(struct vgpu_slot))
                return rr_fail(err, errlen, "slot %u: geometry %ux%u stride %u data_len %u gen %u", i,
                               sh->width, sh->height, sh->stride, sh->data_len, sh->geometry_gen);
        if (sh->geometry_gen == h->geometry_gen &&
            (sh->width != h->width || sh->height != h->height || sh->format != h->format))
                return rr_fail(err, errlen, "slot %u: geometry differs from the header's of the same gen", i);
        if (rr_read(g, base + sizeof(*sh), data, sh->data_len) < 0)
                return rr_fail(err, errlen, "slot %u: data out of range", i);
        uint64_t sum = vgpu_checksum(data, sh->data_len);
        if (sum != sh->checksum)
                return rr_fail(err, errlen, "slot %u (frame %llu): checksum %#llx, expected %#llx", i,
                               (unsigned long long)sh->frame_seq, (unsigned long long)sum,
                               (unsigned long long)sh->checksum);
        return 1;
}

#endif
