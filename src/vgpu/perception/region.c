/* SPDX-License-Identifier: MIT */
/* Reads through a resolved region: logical offsets to pages, every page's
 * tag checked on the way (a page that no longer carries this run's tag means
 * the region moved: forget it and rescan), the header re-validated on every
 * read, the producer's heartbeat watched. */
#include <errno.h>
#include <string.h>

#include "internal.h"

static bool tag_matches(const struct vgpu_perception *p, const uint8_t *page, uint32_t index)
{
        struct vgpu_page_tag t;
        memcpy(&t, page, sizeof(t));
        return t.magic == VGPU_TAG_MAGIC && t.index == index && t.nonce == p->nonce && t.npages == p->npages;
}

static void lost(struct vgpu_perception *p)
{
        /* A region lost right after its scan (a guest rewriting tags on
         * purpose?) waits rescan_min_ms for the next one: a scan per read
         * would cost a full RAM pass each time. */
        p->quick_stale = vgpup_now_ns() - p->last_scan_ns < (uint64_t)p->opt.rescan_min_ms * 1000000ull;
        vgpup_forget(p);
        p->force_scan = true;
}

static int stale(struct vgpu_perception *p)
{
        p->st.tag_mismatches++;
        lost(p);
        return -ESTALE;
}

/* vgpu_checksum() fed piece by piece: each piece is summed right after it is
 * copied, while it is still in the cache, instead of re-reading the whole
 * frame afterwards. */
struct sum_feed {
        uint64_t h[4], len;
        uint8_t buf[VGPU_CSUM_BLOCK];
        size_t nbuf;
};

static void sum_add(struct sum_feed *s, const uint8_t *d, size_t n)
{
        s->len += n;
        if (s->nbuf) {
                size_t take = VGPU_CSUM_BLOCK - s->nbuf < n ? VGPU_CSUM_BLOCK - s->nbuf : n;
                memcpy(s->buf + s->nbuf, d, take);
                s->nbuf += take;
                d += take;
                n -= take;
                if (s->nbuf < VGPU_CSUM_BLOCK)
                        return;
                vgpu_csum_block(s->h, s->buf);
                s->nbuf = 0;
        }
        for (; n >= VGPU_CSUM_BLOCK; n -= VGPU_CSUM_BLOCK, d += VGPU_CSUM_BLOCK)
                vgpu_csum_block(s->h, d);
        memcpy(s->buf, d, n);
        s->nbuf = n;
}

/* Copy n bytes from src to d (d may be NULL: sum in place) and feed them to
 * the checksum in the same pass: each 32-byte block is loaded once, stored
 * and summed from the same registers, so the bytes summed are the bytes
 * copied and the copy costs no second sweep. The lanes are one serial
 * multiply chain each, so the loop runs at the chain's pace (5 cycles per
 * block), not at the pace of a copy followed by a sum. */
static void sum_copy(struct sum_feed *s, uint8_t *d, const uint8_t *src, size_t n)
{
        if (s->nbuf) {
                size_t take = VGPU_CSUM_BLOCK - s->nbuf < n ? VGPU_CSUM_BLOCK - s->nbuf : n;
                if (d) {
                        memcpy(d, src, take);
                        sum_add(s, d, take);
                        d += take;
                } else {
                        sum_add(s, src, take);
                }
                src += take;
                n -= take;
                if (s->nbuf)
                        return;
        }
        size_t nb = n / VGPU_CSUM_BLOCK;
        uint64_t h0 = s->h[0], h1 = s->h[1], h2 = s->h[2], h3 = s->h[3];
        for (size_t b = 0; b < nb; b++, src += VGPU_CSUM_BLOCK) {
                uint64_t w[4];
                memcpy(w, src, sizeof(w));
                if (d) {
                        memcpy(d, w, sizeof(w));
                        d += VGPU_CSUM_BLOCK;
                }
                h0 = vgpu_csum_step(h0, w[0]);
                h1 = vgpu_csum_step(h1, w[1]);
                h2 = vgpu_csum_step(h2, w[2]);
                h3 = vgpu_csum_step(h3, w[3]);
        }
        s->h[0] = h0;
        s->h[1] = h1;
        s->h[2] = h2;
        s->h[3] = h3;
        s->len += (uint64_t)nb * VGPU_CSUM_BLOCK;
        n -= nb * VGPU_CSUM_BLOCK;
        if (n) {
                if (d) {
                        memcpy(d, src, n);
                        sum_add(s, d, n);
                } else {
                        sum_add(s, src, n);
                }
        }
}

static uint64_t sum_final(struct sum_feed *s)
{
        if (s->nbuf) {
                memset(s->buf + s->nbuf, 0, VGPU_CSUM_BLOCK - s->nbuf);
                vgpu_csum_block(s->h, s->buf);
        }
        return vgpu_csum_fold(s->h, s->len);
}

static int copy_logical(struct vgpu_perception *p, uint64_t loff, void *dst, size_t len, struct sum_feed *sum)
{
        uint64_t total = (uint64_t)p->npages * VGPU_PAYLOAD;
        uint8_t *d = dst;
        uint64_t pi;
        uint32_t off;

        if (!p->ready)
                return -ENOENT;
        if (loff > total || len > total - loff || (!dst && (!sum || !p->mapped)))
                return -EINVAL;
        pi = loff / VGPU_PAYLOAD;
        off = (uint32_t)(loff % VGPU_PAYLOAD);
        if (p->mapped) {
                while (len) {
                        const uint8_t *page = p->ptr[pi];
                        size_t n = VGPU_PAYLOAD - off < len ? VGPU_PAYLOAD - off : len;
                        /* The pages are scattered: no hardware prefetcher
                         * guesses the next one, so name it (and its TLB
                         * entry) while this one is copied. */
                        if (len > n + VGPU_PAYLOAD) {
                                /* Two pages ahead: the tag line and the
                                 * first payload lines, so the hardware
                                 * streamer is already running there. */
                                const uint8_t *ahead = p->ptr[pi + 2];
                                for (unsigned k = 0; k < 4; k++)
                                        __builtin_prefetch(ahead + 64 * k);
                        } else if (len > n) {
                                __builtin_prefetch(p->ptr[pi + 1]);
                        }
                        if (!tag_matches(p, page, (uint32_t)pi))
                                return stale(p);
                        if (sum)
                                sum_copy(sum, d, page + VGPU_TAG_SIZE + off, n);
                        else
                                memcpy(d, page + VGPU_TAG_SIZE + off, n);
                        if (d)
                                d += n;
                        len -= n;
                        off = 0;
                        pi++;
                }
                return 0;
        }
        while (len) {
                /* One read per run of physically consecutive pages. */
                uint64_t need = (off + len + VGPU_PAYLOAD - 1) / VGPU_PAYLOAD;
                uint32_t run = 1;
                while (run < need && run < VGPUP_RUN_PAGES &&
                       p->gpa[pi + run] == p->gpa[pi] + (uint64_t)run * VGPU_PAGE_SIZE)
                        run++;
                int r = vmie_ram_read(p->ram, p->gpa[pi], p->scratch, (size_t)run * VGPU_PAGE_SIZE);
                if (r < 0)
                        return r;
                for (uint32_t k = 0; k < run; k++, pi++) {
                        const uint8_t *page = p->scratch + (size_t)k * VGPU_PAGE_SIZE;
                        size_t n = VGPU_PAYLOAD - off < len ? VGPU_PAYLOAD - off : len;
                        if (!tag_matches(p, page, (uint32_t)pi))
                                return stale(p);
                        if (sum)
                                sum_copy(sum, d, page + VGPU_TAG_SIZE + off, n);
                        else
                                memcpy(d, page + VGPU_TAG_SIZE + off, n);
                        d += n;
                        len -= n;
                        off = 0;
                }
        }
        return 0;
}

int vgpup_copy_logical(struct vgpu_perception *p, uint64_t loff, void *dst, size_t len)
{
        return copy_logical(p, loff, dst, len, NULL);
}

int vgpup_copy_logical_sum(struct vgpu_perception *p, uint64_t loff, void *dst, size_t len, uint64_t *ret_sum)
{
        struct sum_feed s = {.len = 0, .nbuf = 0};
        vgpu_csum_lanes_init(s.h);
        int r = copy_logical(p, loff, dst, len, &s);
        if (r == 0)
                *ret_sum = sum_final(&s);
        return r;
}

int vgpup_sum_logical(struct vgpu_perception *p, uint64_t loff, size_t len, uint64_t *ret_sum)
{
        struct sum_feed s = {.len = 0, .nbuf = 0};
        vgpu_csum_lanes_init(s.h);
        int r = copy_logical(p, loff, NULL, len, &s);
        if (r == 0)
                *ret_sum = sum_final(&s);
        return r;
}

int vgpup_check_tags(struct vgpu_perception *p, uint64_t loff, uint64_t len)
{
        uint8_t tag[VGPU_TAG_SIZE];

        if (!p->ready)
                return -ENOENT;
        if (len == 0)
                return 0;
        for (uint64_t pi = loff / VGPU_PAYLOAD; pi <= (loff + len - 1) / VGPU_PAYLOAD; pi++) {
                const uint8_t *page = tag;
                if (p->mapped) {
                        page = p->ptr[pi];
                } else {
                        int r = vmie_ram_read(p->ram, p->gpa[pi], tag, sizeof(tag));
                        if (r < 0)
                                return r;
                }
                if (!tag_matches(p, page, (uint32_t)pi))
                        return stale(p);
        }
        return 0;
}

uint32_t vgpup_flip_dups(struct vgpu_perception *p, uint64_t loff, uint64_t len)
{
        uint64_t first = loff / VGPU_PAYLOAD, last = (loff + len - 1) / VGPU_PAYLOAD;
        uint32_t flipped = 0;

        for (uint32_t i = 0; i < p->ndups && len; i++) {
                struct vgpup_dup *dp = &p->dups[i];
                if (dp->index < first || dp->index > last)
                        continue;
                const void *ptr = NULL;
                if (p->mapped && vmie_ram_peek(p->ram, dp->alt_gpa, VGPU_PAGE_SIZE, &ptr) < 0)
                        continue;
                uint64_t g = p->gpa[dp->index];
                p->gpa[dp->index] = dp->alt_gpa;
                dp->alt_gpa = g;
                if (p->mapped) {
                        p->ptr[dp->index] = ptr;
                        vgpup_populate_pages(&p->ptr[dp->index], 1);
                }
                flipped++;
        }
        return flipped;
}

int vgpup_read_header(struct vgpu_perception *p, struct vgpu_header *ret)
{
        struct vgpu_header h;
        uint64_t now;
        int r = vgpup_copy_logical(p, 0, &h, sizeof(h));

        if (r < 0)
                return r;
        if (vgpup_header_validate(&h, p->nonce, p->npages) < 0)
                return stale(p);
        now = vgpup_now_ns();
        if (h.heartbeat_ns != p->heartbeat) {
                p->heartbeat = h.heartbeat_ns;
                p->heartbeat_moved_ns = now;
        } else if (now - p->heartbeat_moved_ns > (uint64_t)p->opt.stale_ms * 1000000ull) {
                /* A dead producer: its region stays in RAM until reused.
                 * Scans skip it for as long as its heartbeat stands still. */
                p->dead[p->dead_next].nonce = p->nonce;
                p->dead[p->dead_next].heartbeat = h.heartbeat_ns;
                p->dead_next = (p->dead_next + 1) % VGPUP_DEAD_NONCES;
                if (p->ndead < VGPUP_DEAD_NONCES)
                        p->ndead++;
                lost(p);
                return -ENOENT;
        }
        if (h.latest_seq != p->seen_seq) {
                if (p->seen_seq && h.latest_seq > p->seen_seq) {
                        uint64_t dt = (now - p->seen_seq_ns) / (h.latest_seq - p->seen_seq);
                        /* A gap over a second is an idle or paused producer,
                         * not its cadence; a change of pace by 2x or more is
                         * taken at once, smaller jitter is averaged. */
                        if (dt >= 1000000000ull) {
                                ;
                        } else if (!p->cadence_ns || dt < p->cadence_ns / 2 || dt > p->cadence_ns * 2) {
                                p->cadence_ns = dt;
                                p->jitter_ns = 0;
                        } else {
                                uint64_t dev = dt > p->cadence_ns ? dt - p->cadence_ns : p->cadence_ns - dt;
                                p->jitter_ns = (p->jitter_ns * 7 + dev) / 8;
                                p->cadence_ns = (p->cadence_ns * 7 + dt) / 8;
                        }
                }
                p->seen_seq = h.latest_seq;
                p->seen_seq_ns = now;
        }
        p->hdr = h;
        *ret = h;
        return 0;
}

uint64_t vgpup_slot_offset(const struct vgpu_header *h, uint32_t slot)
{
        return h->slots_offset + (uint64_t)slot * h->slot_size;
}

int vgpup_read_slot(struct vgpu_perception *p, uint32_t slot, struct vgpu_slot *ret)
{
        if (slot >= p->hdr.nslots)
                return -EINVAL;
        return vgpup_copy_logical(p, vgpup_slot_offset(&p->hdr, slot), ret, sizeof(*ret));
}
