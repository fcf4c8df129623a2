/* SPDX-License-Identifier: MIT */
/* Checks of the guest-controlled structures of a vgpu-stream region: page
 * tags, the header, slot headers. Pure functions over copies, so every later
 * use of a field (offsets, lengths, allocation sizes) stays in bounds. */
#include <errno.h>

#include "internal.h"

int vgpup_tag_valid(const struct vgpu_page_tag *t)
{
        if (t->magic != VGPU_TAG_MAGIC || t->nonce == 0 || t->npages == 0 || t->npages > VGPU_MAX_PAGES ||
            t->index >= t->npages)
                return -EBADMSG;
        if (t->check != vgpu_tag_check(t->magic, t->index, t->nonce, t->npages))
                return -EBADMSG;
        return 0;
}

int vgpup_header_validate(const struct vgpu_header *h, uint64_t nonce, uint32_t npages)
{
        uint64_t region = (uint64_t)npages * VGPU_PAYLOAD, frame;

        if (h->magic != VGPU_HDR_MAGIC || h->version != VGPU_VERSION || h->header_size != sizeof(*h) ||
            h->nonce != nonce || nonce == 0)
                return -EBADMSG;
        if (h->nslots < 1 || h->nslots > VGPU_MAX_SLOTS)
                return -EBADMSG;
        if (h->width < 1 || h->width > VGPU_MAX_DIM || h->height < 1 || h->height > VGPU_MAX_DIM)
                return -EBADMSG;
        if (h->format != VGPU_FMT_BGRA8888 && h->format != VGPU_FMT_BGRX8888)
                return -EBADMSG;
        if (h->stride % 4 || (uint64_t)h->stride < (uint64_t)h->width * 4)
                return -EBADMSG;
        frame = (uint64_t)h->stride * h->height; /* < 2^32 * 2^14, no overflow */
        if (h->slot_size % 64 || h->slot_size < sizeof(struct vgpu_slot) ||
            frame > h->slot_size - sizeof(struct vgpu_slot))
                return -EBADMSG;
        /* The control block: in page 0's payload, after the header. */
        if (h->control_offset < sizeof(*h) || h->control_offset % 8 ||
            h->control_offset > VGPU_PAYLOAD - sizeof(struct vgpu_control))
                return -EBADMSG;
        /* The slots: after header and control block, inside the region.
         * nslots * slot_size < 2^4 * 2^32: no overflow in 64 bits. */
        if (h->slots_offset % 64 || h->slots_offset < h->control_offset + sizeof(struct vgpu_control) ||
            h->slots_offset > region || (uint64_t)h->nslots * h->slot_size > region - h->slots_offset)
                return -EBADMSG;
        if (h->latest_seq != 0 && h->latest_slot >= h->nslots)
                return -EBADMSG;
        return 0;
}

int vgpup_slot_validate(const struct vgpu_header *h, const struct vgpu_slot *s)
{
        /* A reader never interprets a slot with another geometry than the
         * header's: during a resolution change it waits for a new frame. */
        if (s->geometry_gen != h->geometry_gen || s->width != h->width || s->height != h->height ||
            s->stride != h->stride || s->format != h->format)
                return -EBADMSG;
        if (s->frame_seq == 0 || (uint64_t)s->data_len != (uint64_t)s->stride * s->height ||
            s->data_len > h->slot_size - sizeof(struct vgpu_slot))
                return -EBADMSG;
        return 0;
}
