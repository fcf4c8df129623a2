/* SPDX-License-Identifier: MIT */
/* Discovery: one pass over all guest RAM collects the pages whose tag is
 * valid, groups them by (nonce, npages), keeps the complete groups whose
 * header validates against their tags, and resolves the one with the newest
 * heartbeat into a page index -> GPA map.
 *
 * Duplicates: the same (nonce, index) on two pages is a stale copy left
 * behind by page migration (the guest kernel copied the page and freed the
 * old one, which still holds the old bytes). Page 0: the copy whose header
 * validates with the newest heartbeat wins. Other pages: the first copy in
 * GPA order is used and the other one remembered (up to VGPUP_MAX_DUPS);
 * while any are remembered every frame is checksummed, and a mismatch over
 * a duplicated page swaps in its other copy before the retry. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "internal.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22 /* Linux 5.14 */
#endif

static int cmp_tagged(const void *a, const void *b)
{
        const struct vgpup_tagged *x = a, *y = b;
        if (x->nonce != y->nonce)
                return x->nonce < y->nonce ? -1 : 1;
        if (x->npages != y->npages)
                return x->npages < y->npages ? -1 : 1;
        if (x->index != y->index)
                return x->index < y->index ? -1 : 1;
        return x->gpa < y->gpa ? -1 : x->gpa > y->gpa;
}

void vgpup_forget(struct vgpu_perception *p)
{
        free(p->gpa);
        free(p->ptr);
        p->gpa = NULL;
        p->ptr = NULL;
        p->ready = false;
        p->npages = 0;
        p->nonce = 0;
        p->ndups = 0;
        p->seen_seq = 0;
        p->cadence_ns = 0;
        p->jitter_ns = 0;
}

static bool is_dead(const struct vgpu_perception *p, uint64_t nonce, uint64_t heartbeat)
{
        for (uint32_t i = 0; i < p->ndead; i++)
                if (p->dead[i].nonce == nonce && p->dead[i].heartbeat == heartbeat)
                        return true;
        return false;
}

struct tag_list {
        struct vgpup_tagged *v;
        size_t n, cap, max;
};

static int push(struct tag_list *l, const struct vgpu_page_tag *t, uint64_t gpa)
{
        if (l->n == l->cap) {
                size_t ncap = l->cap ? l->cap * 2 : 256;
                if (ncap > l->max)
                        ncap = l->max;
                if (ncap <= l->n)
                        return 0; /* bound reached: further tags are ignored */
                struct vgpup_tagged *nv = realloc(l->v, ncap * sizeof(*nv));
                if (!nv)
                        return -ENOMEM;
                l->v = nv;
                l->cap = ncap;
        }
        l->v[l->n++] =
            (struct vgpup_tagged){.nonce = t->nonce, .gpa = gpa, .index = t->index, .npages = t->npages};
        return 0;
}

/* One page fault per 4 KiB page is what a scan of a fresh mapping costs
 * (dear under nested virtualisation); populating the chunk's page tables
 * in one call avoids them. Advice only: failure (old kernel) is harmless. */
static void populate(const void *ptr, size_t len)
{
        uintptr_t a = (uintptr_t)ptr & ~(uintptr_t)(VGPU_PAGE_SIZE - 1);
        (void)madvise((void *)a, len + ((uintptr_t)ptr - a), MADV_POPULATE_READ);
}

/* Every page of the resolved region mapped in this process's page tables
 * now, so no frame read takes a page fault (a fault per 4 KiB page is about
 * a microsecond, 2 ms over a 1080p frame). The scan's advice did this too,
 * but only as a side effect of reading the whole RAM; a region resolved
 * from a pread scan, a kernel without MADV_POPULATE_READ (< 5.14) or page
 * tables dropped since (THP collapse, compaction) are covered here:
 * physically consecutive pages are populated in one call, and where the
 * advice fails each page is touched once. */
void vgpup_populate_pages(const uint8_t *const *ptr, uint32_t n)
{
        for (uint32_t i = 0; i < n;) {
                uint32_t run = 1;
                while (i + run < n && ptr[i + run] == ptr[i] + (size_t)run * VGPU_PAGE_SIZE)
                        run++;
                uintptr_t a = (uintptr_t)ptr[i] & ~(uintptr_t)(VGPU_PAGE_SIZE - 1);
                if (madvise((void *)a, (size_t)run * VGPU_PAGE_SIZE, MADV_POPULATE_READ) < 0)
                        for (uint32_t k = 0; k < run; k++)
                                (void)*(const volatile uint8_t *)ptr[i + k];
                i += run;
        }
}

static int collect(struct vgpu_perception *p, struct tag_list *l)
{
        size_t chunk = p->opt.scan_chunk_size, nr = vmie_ram_nranges(p->ram);
        uint8_t *buf = NULL;
        int r = 0;

        if (!p->mapped && !(buf = malloc(chunk)))
                return -ENOMEM;
        for (size_t i = 0; i < nr && r == 0; i++) {
                struct vmie_range rg;
                if ((r = vmie_ram_range(p->ram, i, &rg)) < 0)
                        break;
                uint64_t g = (rg.gpa + VGPU_PAGE_SIZE - 1) & ~(uint64_t)(VGPU_PAGE_SIZE - 1);
                uint64_t end = rg.gpa + rg.len;
                while (r == 0 && g < end && end - g >= VGPU_PAGE_SIZE) {
                        uint64_t n = (end - g) & ~(uint64_t)(VGPU_PAGE_SIZE - 1);
                        const uint8_t *base;
                        if (n > chunk)
                                n = chunk;
                        if (p->mapped) {
                                const void *v;
                                if ((r = vmie_ram_peek(p->ram, g, n, &v)) < 0)
                                        break;
                                base = v;
                                populate(base, n);
                        } else {
                                if ((r = vmie_ram_read(p->ram, g, buf, n)) < 0)
                                        break;
                                base = buf;
                        }
                        p->st.scan_bytes += n;
                        for (uint64_t off = 0; off < n; off += VGPU_PAGE_SIZE) {
                                struct vgpu_page_tag t;
                                uint32_t magic;
                                memcpy(&magic, base + off, sizeof(magic));
                                if (magic != VGPU_TAG_MAGIC)
                                        continue;
                                memcpy(&t, base + off, sizeof(t));
                                if (vgpup_tag_valid(&t) == 0 && t.npages <= p->ram_pages &&
                                    (r = push(l, &t, g + off)) < 0)
                                        break;
                        }
                        g += n;
                }
        }
        free(buf);
        return r;
}

/* Page 0 copy at gpa: its header if it validates. */
static int read_header_at(struct vgpu_perception *p, uint64_t gpa, uint64_t nonce, uint32_t npages,
                          struct vgpu_header *ret)
{
        int r = vmie_ram_read(p->ram, gpa + VGPU_TAG_SIZE, ret, sizeof(*ret));
        if (r < 0)
                return r;
        return vgpup_header_validate(ret, nonce, npages);
}

struct candidate {
        size_t first, count; /* in the sorted list */
        uint64_t page0;
        struct vgpu_header hdr;
};

/* Is the group [first, first+count) complete, with a valid header? */
static int judge(struct vgpu_perception *p, const struct tag_list *l, size_t first, size_t count,
                 struct candidate *ret)
{
        const struct vgpup_tagged *v = l->v + first;
        uint32_t npages = v[0].npages, distinct = 0;
        bool have = false;

        if (count < npages)
                return -ENOENT;
        for (size_t i = 0; i < count; i++)
                if (i == 0 || v[i].index != v[i - 1].index)
                        distinct++;
        if (distinct != npages)
                return -ENOENT; /* indices are < npages, so distinct == npages means all present */
        for (size_t i = 0; i < count && v[i].index == 0; i++) {
                struct vgpu_header h;
                if (read_header_at(p, v[i].gpa, v[0].nonce, npages, &h) < 0)
                        continue;
                if (is_dead(p, h.nonce, h.heartbeat_ns))
                        continue;
                if (!have || h.heartbeat_ns > ret->hdr.heartbeat_ns) {
                        ret->hdr = h;
                        ret->page0 = v[i].gpa;
                        have = true;
                }
        }
        if (!have)
                return -ENOENT;
        ret->first = first;
        ret->count = count;
        return 0;
}

static int resolve(struct vgpu_perception *p, const struct tag_list *l, const struct candidate *c)
{
        const struct vgpup_tagged *v = l->v + c->first;
        uint32_t npages = v[0].npages;

        p->gpa = calloc(npages, sizeof(*p->gpa));
        if (!p->gpa)
                return -ENOMEM;
        if (p->mapped && !(p->ptr = calloc(npages, sizeof(*p->ptr)))) {
                free(p->gpa);
                p->gpa = NULL;
                return -ENOMEM;
        }
        p->ndups = 0;
        p->st.duplicate_pages = 0;
        for (size_t i = 0; i < c->count; i++) {
                bool first_copy = i == 0 || v[i].index != v[i - 1].index;
                if (v[i].index == 0) {
                        if (first_copy)
                                p->gpa[0] = c->page0;
                        if (!first_copy)
                                p->st.duplicate_pages++;
                        continue;
                }
                if (first_copy) {
                        p->gpa[v[i].index] = v[i].gpa;
                        continue;
                }
                p->st.duplicate_pages++;
                if (p->ndups < VGPUP_MAX_DUPS)
                        p->dups[p->ndups++] = (struct vgpup_dup){.index = v[i].index, .alt_gpa = v[i].gpa};
        }
        if (p->mapped)
                for (uint32_t i = 0; i < npages; i++) {
                        const void *ptr;
                        int r = vmie_ram_peek(p->ram, p->gpa[i], VGPU_PAGE_SIZE, &ptr);
                        if (r < 0) {
                                vgpup_forget(p);
                                return r;
                        }
                        p->ptr[i] = ptr;
                }
        if (p->mapped)
                vgpup_populate_pages(p->ptr, npages);
        p->nonce = v[0].nonce;
        p->npages = npages;
        p->hdr = c->hdr;
        p->heartbeat = c->hdr.heartbeat_ns;
        p->heartbeat_moved_ns = vgpup_now_ns();
        p->seen_seq = c->hdr.latest_seq;
        p->seen_seq_ns = p->heartbeat_moved_ns;
        p->cadence_ns = 0;
        p->jitter_ns = 0;
        if (p->last_req_seq < c->hdr.ctrl_ack_seq)
                p->last_req_seq = c->hdr.ctrl_ack_seq;
        p->ready = true;
        return 0;
}

int vgpup_scan(struct vgpu_perception *p)
{
        uint64_t t0 = vgpup_now_ns();
        struct tag_list l = {0};
        struct candidate best = {0}, c;
        bool found = false;
        int r;

        vgpup_forget(p);
        p->force_scan = false;
        p->st.scans++;
        /* Bound: one entry per RAM page at most, and never more than a few
         * regions' worth whatever the guest writes. */
        l.max = p->ram_pages < 4ull * VGPU_MAX_PAGES ? p->ram_pages : 4ull * VGPU_MAX_PAGES;
        r = collect(p, &l);
        if (r == 0 && l.n) {
                qsort(l.v, l.n, sizeof(*l.v), cmp_tagged);
                for (size_t i = 0; i < l.n;) {
                        size_t j = i + 1;
                        while (j < l.n && l.v[j].nonce == l.v[i].nonce && l.v[j].npages == l.v[i].npages)
                                j++;
                        if (judge(p, &l, i, j - i, &c) == 0 &&
                            (!found || c.hdr.heartbeat_ns > best.hdr.heartbeat_ns)) {
                                best = c;
                                found = true;
                        }
                        i = j;
                }
        }
        if (r == 0 && found) {
                r = resolve(p, &l, &best);
                if (r == 0 && p->ever_ready)
                        p->st.rediscoveries++;
                if (r == 0)
                        p->ever_ready = true;
        } else if (r == 0) {
                r = -ENOENT;
        }
        free(l.v);
        p->last_scan_ns = vgpup_now_ns();
        p->st.scan_ns += p->last_scan_ns - t0;
        return r;
}

int vgpup_ensure(struct vgpu_perception *p)
{
        if (p->ready)
                return 0;
        if ((!p->force_scan || p->quick_stale) && p->st.scans &&
            vgpup_now_ns() - p->last_scan_ns < (uint64_t)p->opt.rescan_min_ms * 1000000ull)
                return -ENOENT;
        p->quick_stale = false;
        return vgpup_scan(p);
}
