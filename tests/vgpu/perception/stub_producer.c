/* SPDX-License-Identifier: MIT */
#include "stub_producer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static uint32_t xorshift(uint32_t *st)
{
        uint32_t x = *st;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        return *st = x;
}

uint8_t *stub_producer_at(struct stub_producer *s, uint64_t loff)
{
        uint64_t page;
        uint32_t off;
        vgpu_locate(loff, &page, &off);
        return s->ram + s->page_off[page] + off;
}

static void write_logical(struct stub_producer *s, uint64_t loff, const void *src, size_t len)
{
        const uint8_t *p = src;
        while (len) {
                size_t n = VGPU_PAYLOAD - loff % VGPU_PAYLOAD;
                if (n > len)
                        n = len;
                memcpy(stub_producer_at(s, loff), p, n);
                p += n;
                loff += n;
                len -= n;
        }
}

static struct vgpu_header *hdr(struct stub_producer *s)
{
        return (struct vgpu_header *)(void *)stub_producer_at(s, 0);
}

/* Slot headers are 64-aligned in the logical stream but may straddle a
 * page: copy them in and out. */
static void slot_get(struct stub_producer *s, uint32_t i, struct vgpu_slot *sl)
{
        uint64_t loff = hdr(s)->slots_offset + (uint64_t)i * s->slot_size;
        uint8_t *d = (uint8_t *)sl;
        for (size_t k = 0; k < sizeof(*sl);) {
                size_t n = VGPU_PAYLOAD - (loff + k) % VGPU_PAYLOAD;
                if (n > sizeof(*sl) - k)
                        n = sizeof(*sl) - k;
                memcpy(d + k, stub_producer_at(s, loff + k), n);
                k += n;
        }
}

static void slot_put(struct stub_producer *s, uint32_t i, const struct vgpu_slot *sl)
{
        write_logical(s, hdr(s)->slots_offset + (uint64_t)i * s->slot_size, sl, sizeof(*sl));
}

static void set_lock(struct stub_producer *s, uint32_t i, uint32_t lock)
{
        /* The lock is the first word of the slot; 64-aligned, so never split. */
        uint32_t *l =
            (uint32_t *)(void *)stub_producer_at(s, hdr(s)->slots_offset + (uint64_t)i * s->slot_size);
        __atomic_store_n(l, lock, __ATOMIC_RELEASE);
}

int stub_producer_init(struct stub_producer *s, void *ram, size_t ram_size, uint64_t gpa_base, uint64_t nonce,
                       uint32_t max_w, uint32_t max_h, uint32_t nslots, uint32_t seed)
{
        uint32_t stride = max_w * 4;
        uint32_t slot_size = (uint32_t)((sizeof(struct vgpu_slot) + (uint64_t)stride * max_h + 63) & ~63ull);
        uint64_t slots_offset = 512, logical = slots_offset + (uint64_t)nslots * slot_size;
        uint64_t npages = vgpu_pages_for(logical), total = ram_size / VGPU_PAGE_SIZE;
        uint32_t *perm, st = seed ? seed : 1;

        memset(s, 0, sizeof(*s));
        if (npages + 1 > total)
                return -ENOSPC;
        s->ram = ram;
        s->ram_size = ram_size;
        s->gpa_base = gpa_base;
        s->nonce = nonce;
        s->npages = (uint32_t)npages;
        s->width = max_w;
        s->height = max_h;
        s->stride = stride;
        s->nslots = nslots;
        s->slot_size = slot_size;
        s->geometry_gen = 1;
        s->page_off = calloc(npages, sizeof(*s->page_off));
        s->frame = malloc((size_t)stride * max_h);
        perm = malloc(total * sizeof(*perm));
        if (!s->page_off || !s->frame || !perm) {
                free(perm);
                stub_producer_fini(s);
                return -ENOMEM;
        }
        for (uint32_t i = 0; i < total; i++)
                perm[i] = i;
        for (uint32_t i = (uint32_t)total - 1; i > 1; i--) {
                uint32_t j = 1 + xorshift(&st) % i;
                uint32_t t = perm[i];
                perm[i] = perm[j];
                perm[j] = t;
        }
        for (uint32_t i = 0; i < npages; i++) {
                struct vgpu_page_tag t = {
                    .magic = VGPU_TAG_MAGIC,
                    .index = i,
                    .nonce = nonce,
                    .npages = (uint32_t)npages,
                };
                t.check = vgpu_tag_check(t.magic, t.index, t.nonce, t.npages);
                s->page_off[i] = (uint64_t)perm[i + 1] * VGPU_PAGE_SIZE; /* perm[0] is page 0 */
                memset(s->ram + s->page_off[i], 0, VGPU_PAGE_SIZE);
                memcpy(s->ram + s->page_off[i], &t, sizeof(t));
        }
        free(perm);
        struct vgpu_header h = {
            .magic = VGPU_HDR_MAGIC,
            .version = VGPU_VERSION,
            .header_size = sizeof(struct vgpu_header),
            .nonce = nonce,
            .producer_pid = 4242,
            .heartbeat_ns = 1,
            .geometry_gen = 1,
            .width = max_w,
            .height = max_h,
            .stride = stride,
            .format = VGPU_FMT_BGRA8888,
            .nslots = nslots,
            .slot_size = slot_size,
            .frame_interval_us = 0,
            .slots_offset = slots_offset,
            .control_offset = VGPU_CONTROL_OFFSET,
        };
        s->heartbeat = 1;
        write_logical(s, 0, &h, sizeof(h));
        return 0;
}

void stub_producer_fini(struct stub_producer *s)
{
        free(s->page_off);
        free(s->frame);
        s->page_off = NULL;
        s->frame = NULL;
}

void stub_producer_resize(struct stub_producer *s, uint32_t w, uint32_t h)
{
        struct vgpu_header *hd = hdr(s);
        s->width = w;
        s->height = h;
        s->stride = w * 4;
        s->geometry_gen++;
        hd->geometry_gen = s->geometry_gen;
        hd->width = w;
        hd->height = h;
        hd->stride = s->stride;
}

void stub_producer_beat(struct stub_producer *s)
{
        __atomic_store_n(&hdr(s)->heartbeat_ns, ++s->heartbeat, __ATOMIC_RELEASE);
}

uint64_t stub_producer_publish(struct stub_producer *s)
{
        uint64_t seq = ++s->seq;
        uint32_t i = (uint32_t)(seq % s->nslots), len = s->stride * s->height;
        struct vgpu_slot sl;

        if (!s->reuse_pixels || !s->rendered)
                for (uint32_t y = 0; y < s->height; y++)
                        for (uint32_t x = 0; x < s->width; x++)
                                stub_pattern_pixel(seq, x, y,
                                                   s->frame + (size_t)y * s->stride + (size_t)x * 4);
        s->rendered = true;
        slot_get(s, i, &sl);
        set_lock(s, i, sl.lock + 1); /* odd: writing */
        __atomic_thread_fence(__ATOMIC_RELEASE);
        sl.lock++;
        sl.geometry_gen = s->geometry_gen;
        sl.frame_seq = seq;
        sl.timestamp_ns = seq * 1000;
        sl.width = s->width;
        sl.height = s->height;
        sl.stride = s->stride;
        sl.format = VGPU_FMT_BGRA8888;
        sl.data_len = len;
        if (!s->reuse_pixels || !s->csum_valid || s->csum_len != len) {
                s->csum = vgpu_checksum(s->frame, len);
                s->csum_len = len;
                s->csum_valid = true;
        }
        sl.checksum = s->csum ^ (s->corrupt_checksum ? 1 : 0);
        slot_put(s, i, &sl);
        write_logical(s, hdr(s)->slots_offset + (uint64_t)i * s->slot_size + sizeof(sl), s->frame, len);
        __atomic_thread_fence(__ATOMIC_RELEASE);
        set_lock(s, i, sl.lock + 1); /* even: done */
        struct vgpu_header *h = hdr(s);
        h->latest_slot = i;
        h->frames_published = seq;
        __atomic_store_n(&h->latest_seq, seq, __ATOMIC_RELEASE);
        stub_producer_beat(s);
        return seq;
}

int stub_producer_poll_control(struct stub_producer *s)
{
        struct vgpu_header *h = hdr(s);
        struct vgpu_control c;
        memcpy(&c, stub_producer_at(s, h->control_offset), sizeof(c));
        if (c.req_seq == 0 || c.req_seq == s->last_ctrl || c.req_seq_check != ~c.req_seq)
                return 0;
        s->last_ctrl = c.req_seq;
        if (c.op == VGPU_OP_PAUSE)
                h->flags = c.arg[0] ? h->flags | VGPU_HF_PAUSED : h->flags & ~VGPU_HF_PAUSED;
        h->ctrl_ack_result = (c.op >= VGPU_OP_PAUSE && c.op <= VGPU_OP_FULL_FRAME) ? 0 : -EINVAL;
        __atomic_store_n(&h->ctrl_ack_seq, c.req_seq, __ATOMIC_RELEASE);
        return 1;
}

void stub_producer_wipe(struct stub_producer *s)
{
        for (uint32_t i = 0; i < s->npages; i++)
                memset(s->ram + s->page_off[i], 0, VGPU_PAGE_SIZE);
}
