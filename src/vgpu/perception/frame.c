/* SPDX-License-Identifier: MIT */
/* Frames: the newest published slot, copied or mapped, accepted only if the
 * slot's seqlock was even and unchanged around the copy (and, when asked,
 * its checksum matches). A torn attempt is retried a bounded number of
 * times, never returned. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static void fill_info(const struct vgpu_perception *p, const struct vgpu_slot *s, uint32_t slot,
                      struct vgpu_frame_info *info)
{
        *info = (struct vgpu_frame_info){
            .seq = s->frame_seq,
            .timestamp_ns = s->timestamp_ns,
            .nonce = p->nonce,
            .geometry_gen = s->geometry_gen,
            .width = s->width,
            .height = s->height,
            .stride = s->stride,
            .format = s->format,
            .data_len = s->data_len,
            .slot = slot,
            .checksum = s->checksum,
        };
}

/* The newest slot's header, even and valid; -EAGAIN when torn. */
static int newest_slot(struct vgpu_perception *p, struct vgpu_slot *s, uint32_t *ret_slot)
{
        struct vgpu_header h;
        int r = vgpup_read_header(p, &h);
        if (r < 0)
                return r;
        if (h.latest_seq == 0)
                return -ENODATA;
        if ((r = vgpup_read_slot(p, h.latest_slot, s)) < 0)
                return r;
        if ((s->lock & 1) || vgpup_slot_validate(&h, s) < 0) {
                p->st.torn++;
                return -EAGAIN;
        }
        *ret_slot = h.latest_slot;
        return 0;
}

static int read_once(struct vgpu_perception *p, void *buf, size_t cap, struct vgpu_frame_info *info)
{
        uint32_t tries = p->opt.torn_retries + 1;

        for (uint32_t t = 0; t < tries; t++) {
                struct vgpu_slot s1, s2;
                uint32_t slot;
                int r = newest_slot(p, &s1, &slot);
                if (r == -EAGAIN)
                        continue;
                if (r < 0)
                        return r;
                uint64_t data = vgpup_slot_offset(&p->hdr, slot) + sizeof(struct vgpu_slot);
                fill_info(p, &s1, slot, info);
                if (cap < s1.data_len)
                        return -ENOSPC;
                /* Remembered duplicate pages: only the checksum tells the
                 * live copy from the stale one, so verify then too. */
                bool verify = (p->opt.flags & VGPU_PERCEPTION_VERIFY) || p->ndups;
                uint64_t sum = 0;
                __atomic_thread_fence(__ATOMIC_ACQUIRE);
                r = verify ? vgpup_copy_logical_sum(p, data, buf, s1.data_len, &sum)
                           : vgpup_copy_logical(p, data, buf, s1.data_len);
                if (r < 0)
                        return r;
                __atomic_thread_fence(__ATOMIC_ACQUIRE);
                if ((r = vgpup_read_slot(p, slot, &s2)) < 0)
                        return r;
                if (memcmp(&s1, &s2, sizeof(s1)) != 0) {
                        p->st.torn++;
                        continue;
                }
                if (verify && sum != s1.checksum) {
                        p->st.torn++;
                        p->st.checksum_errors++;
                        vgpup_flip_dups(p, data, s1.data_len);
                        continue;
                }
                p->st.frames++;
                return 0;
        }
        return -EAGAIN;
}

int vgpu_perception_read(struct vgpu_perception *p, void *buf, size_t cap, struct vgpu_frame_info *info)
{
        struct vgpu_frame_info tmp;
        int r = -ESTALE;

        if (!p || (!buf && cap) || !info)
                return -EINVAL;
        /* A region that moved is found again at once, within this call. */
        for (int i = 0; i < 2 && r == -ESTALE; i++) {
                if ((r = vgpup_ensure(p)) < 0)
                        return r;
                r = read_once(p, buf, cap, &tmp);
        }
        if (r == 0 || r == -ENOSPC)
                *info = tmp;
        if (r == 0)
                p->last_frame_nonce = tmp.nonce;
        return r;
}

static int build_spans(struct vgpu_perception *p, uint64_t loff, uint64_t len, size_t *ret_n)
{
        uint64_t pi = loff / VGPU_PAYLOAD, need;
        uint32_t off = (uint32_t)(loff % VGPU_PAYLOAD);
        size_t n = 0;

        need = (off + len + VGPU_PAYLOAD - 1) / VGPU_PAYLOAD;
        if (need > p->spans_cap) {
                struct iovec *v = realloc(p->spans, need * sizeof(*v));
                if (!v)
                        return -ENOMEM;
                p->spans = v;
                p->spans_cap = need;
        }
        if (vgpup_check_tags(p, loff, len) < 0)
                return -ESTALE;
        while (len) {
                size_t c = VGPU_PAYLOAD - off < len ? VGPU_PAYLOAD - off : len;
                p->spans[n].iov_base = (void *)(p->ptr[pi] + VGPU_TAG_SIZE + off);
                p->spans[n].iov_len = c;
                n++;
                len -= c;
                off = 0;
                pi++;
        }
        *ret_n = n;
        return 0;
}

static int map_once(struct vgpu_perception *p, size_t *ret_n, struct vgpu_frame_info *info)
{
        for (uint32_t t = 0; t < p->opt.torn_retries + 1; t++) {
                struct vgpu_slot s;
                uint32_t slot;
                int r = newest_slot(p, &s, &slot);
                if (r == -EAGAIN)
                        continue;
                if (r < 0)
                        return r;
                uint64_t data = vgpup_slot_offset(&p->hdr, slot) + sizeof(struct vgpu_slot);
                if ((r = build_spans(p, data, s.data_len, ret_n)) < 0)
                        return r;
                /* VERIFY (or remembered duplicates): the checksum is computed
                 * in place over the live pages, no copy. A mismatch from a
                 * slot rewritten meanwhile is a torn attempt; one over an
                 * unchanged slot is a bad checksum (or a stale duplicate). */
                if ((p->opt.flags & VGPU_PERCEPTION_VERIFY) || p->ndups) {
                        struct vgpu_slot s2;
                        uint64_t sum = 0;
                        __atomic_thread_fence(__ATOMIC_ACQUIRE);
                        if ((r = vgpup_sum_logical(p, data, s.data_len, &sum)) < 0)
                                return r;
                        __atomic_thread_fence(__ATOMIC_ACQUIRE);
                        if ((r = vgpup_read_slot(p, slot, &s2)) < 0)
                                return r;
                        if (memcmp(&s, &s2, sizeof(s)) != 0) {
                                p->st.torn++;
                                continue;
                        }
                        if (sum != s.checksum) {
                                p->st.torn++;
                                p->st.checksum_errors++;
                                vgpup_flip_dups(p, data, s.data_len);
                                continue;
                        }
                }
                fill_info(p, &s, slot, info);
                p->map_lock = s.lock;
                p->map_seq = s.frame_seq;
                p->map_loff = data;
                p->map_len = s.data_len;
                return 0;
        }
        return -EAGAIN;
}

int vgpu_perception_map(struct vgpu_perception *p, const struct iovec **ret_spans, size_t *ret_nspans,
                        struct vgpu_frame_info *info)
{
        struct vgpu_frame_info tmp;
        size_t n = 0;
        int r = -ESTALE;

        if (!p || !ret_spans || !ret_nspans || !info)
                return -EINVAL;
        if (!p->mapped)
                return -ENOTSUP;
        for (int i = 0; i < 2 && r == -ESTALE; i++) {
                if ((r = vgpup_ensure(p)) < 0)
                        return r;
                r = map_once(p, &n, &tmp);
        }
        if (r < 0)
                return r;
        *ret_spans = p->spans;
        *ret_nspans = n;
        *info = tmp;
        p->last_frame_nonce = tmp.nonce;
        return 0;
}

int vgpu_perception_still_valid(struct vgpu_perception *p, const struct vgpu_frame_info *info)
{
        struct vgpu_slot s;
        int r;

        if (!p || !info)
                return -EINVAL;
        if (!p->ready || info->nonce != p->nonce || info->seq != p->map_seq || info->slot >= p->hdr.nslots)
                return 0;
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if ((r = vgpup_read_slot(p, info->slot, &s)) < 0)
                return r == -ESTALE ? 0 : r;
        if (s.lock != p->map_lock || (s.lock & 1) || s.frame_seq != info->seq || s.checksum != info->checksum)
                return 0;
        r = vgpup_check_tags(p, p->map_loff, p->map_len);
        return r == 0 ? 1 : r == -ESTALE ? 0 : r;
}
