/* SPDX-License-Identifier: MIT */
/* Translation cache and the virtual reads that use it. The hit path of
 * vmie_translate is a few compares against the last address space's key, an
 * index, one cache line (a 2-way set) and a stamp check against the cache's
 * last clock reading; the clock itself is read on misses, once per virtual
 * read and on every VMIEI_TLB_CLOCK_EVERY-th translate call (paging.h). */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "internal.h"

/* Time is kept in ticks of 2^20 ns (~1.05 ms) so a stamp fits 32 bits. */
#define TICK_SHIFT 20
#define WAYS       2

struct tlb_ent {
        uint64_t tag;   /* root page | mode bits */
        uint64_t vpage; /* va >> 12 */
        uint64_t val;   /* 4 KiB frame gpa | VAL_* flags */
        uint32_t gen;   /* valid iff == tlb->gen */
        uint32_t stamp; /* fill time, in ticks */
};

#define VAL_W        (1ull << 0)
#define VAL_U        (1ull << 1)
#define VAL_NX       (1ull << 2)
#define VAL_SZ_SHIFT 3 /* 0: 4 KiB, 1: 2 MiB, 2: 1 GiB */
#define VAL_SZ_MASK  (3ull << VAL_SZ_SHIFT)

struct vmie_tlb {
        struct tlb_ent *e; /* sets of WAYS entries, one cache line each */
        uint64_t setmask;  /* sets - 1 */
        uint32_t gen;
        uint32_t ttl;    /* ticks */
        uint32_t now;    /* last clock reading, in ticks */
        uint32_t budget; /* translate calls before the clock is read again */
        uint64_t epoch;
        /* The last address space's key, so that a run of calls on one root
         * skips the mode check and the tag computation. */
        const struct vmie_ram *k_ram;
        uint64_t k_root;
        uint8_t k_levels, k_mpa;
        bool k_ok;
        struct vmiei_mode k_m;
        uint64_t k_tag;
        uint64_t k_spread; /* per-root set offset, keeps contiguous pages apart */
        uint64_t (*clock)(void *);
        void *clock_arg;
        struct vmie_tlb_stats st;
};

static uint64_t coarse_ns(void *arg)
{
        (void)arg;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void read_clock(struct vmie_tlb *t)
{
        t->now = (uint32_t)(t->clock(t->clock_arg) >> TICK_SHIFT);
        t->budget = VMIEI_TLB_CLOCK_EVERY;
}

int vmie_tlb_new(size_t entries, uint64_t ttl_ns, struct vmie_tlb **ret)
{
        if (!ret)
                return -EINVAL;
        if (entries == 0)
                entries = VMIE_TLB_DEFAULT_ENTRIES;
        if (entries > VMIE_TLB_MAX_ENTRIES)
                return -EINVAL;
        if (ttl_ns == 0)
                ttl_ns = VMIE_TLB_DEFAULT_TTL_NS;
        unsigned bits = 4;
        while ((1ull << bits) < entries)
                bits++;
        struct vmie_tlb *t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        size_t bytes = ((size_t)1 << bits) * sizeof(*t->e);
        t->e = aligned_alloc(WAYS * sizeof(*t->e), bytes);
        if (!t->e) {
                free(t);
                return -ENOMEM;
        }
        memset(t->e, 0, bytes);
        t->setmask = ((1ull << bits) / WAYS) - 1;
        t->gen = 1; /* zeroed entries (gen 0) never match */
        uint64_t ticks = (ttl_ns + (1ull << TICK_SHIFT) - 1) >> TICK_SHIFT;
        t->ttl = ticks > (1u << 31) ? (1u << 31) : (uint32_t)ticks;
        t->clock = coarse_ns;
        read_clock(t);
        *ret = t;
        return 0;
}

struct vmie_tlb *vmie_tlb_free(struct vmie_tlb *tlb)
{
        if (tlb) {
                free(tlb->e);
                free(tlb);
        }
        return NULL;
}

void vmie_tlb_flush(struct vmie_tlb *tlb)
{
        if (!tlb)
                return;
        tlb->st.flushes++;
        if (++tlb->gen == 0) { /* after 2^32 flushes: really clear once */
                memset(tlb->e, 0, (size_t)(tlb->setmask + 1) * WAYS * sizeof(*tlb->e));
                tlb->gen = 1;
        }
}

void vmie_tlb_stats(const struct vmie_tlb *tlb, struct vmie_tlb_stats *ret)
{
        if (!ret)
                return;
        if (tlb)
                *ret = tlb->st;
        else
                memset(ret, 0, sizeof(*ret));
}

void vmiei_tlb_set_clock(struct vmie_tlb *tlb, uint64_t (*fn)(void *), void *arg)
{
        tlb->clock = fn ? fn : coarse_ns;
        tlb->clock_arg = fn ? arg : NULL;
        read_clock(tlb);
}

size_t vmiei_tlb_entries(const struct vmie_tlb *tlb)
{
        return (size_t)(tlb->setmask + 1) * WAYS;
}

/* Per-call state: checked mode, cache tag and set offset. */
struct xctx {
        const struct vmie_as *as;
        struct vmiei_mode m;
        struct vmie_tlb *tlb;
        uint64_t tag;
        uint64_t spread;
};

static inline bool key_same(const struct vmie_tlb *t, const struct vmie_as *as)
{
        return t->k_ok && as->ram == t->k_ram && as->root == t->k_root && as->levels == t->k_levels &&
               as->maxphyaddr == t->k_mpa;
}

/* Checks the mode (or reuses the cache's check of the same key) and applies
 * an epoch change. Does not read the clock. */
static int xctx_init(struct xctx *x, const struct vmie_as *as)
{
        if (!as)
                return -EINVAL;
        struct vmie_tlb *t = as->tlb;
        x->as = as;
        x->tlb = t;
        if (t && key_same(t, as)) {
                x->m = t->k_m;
                x->tag = t->k_tag;
                x->spread = t->k_spread;
        } else {
                int r = vmiei_mode(as, &x->m);
                if (r < 0)
                        return r;
                if (!t)
                        return 0;
                /* The mode is part of the key: the same root walked as 4- or
                 * 5-level, or with another MAXPHYADDR, gives different
                 * answers. */
                x->tag =
                    (as->root & ~0xfffull) | ((uint64_t)x->m.levels << 8) | (uint64_t)(as->maxphyaddr & 0x3f);
                x->spread = ((x->tag >> 8) * 0x9e3779b97f4a7c15ull) >> 40;
                t->k_ram = as->ram;
                t->k_root = as->root;
                t->k_levels = as->levels;
                t->k_mpa = as->maxphyaddr;
                t->k_m = x->m;
                t->k_tag = x->tag;
                t->k_spread = x->spread;
                t->k_ok = true;
        }
        if (t->epoch != as->epoch) {
                vmie_tlb_flush(t);
                t->epoch = as->epoch;
        }
        return 0;
}

/* Index by the low bits of the page number (offset per root): a contiguous
 * range of pages fills distinct sets instead of colliding at random. */
static inline struct tlb_ent *set_of(const struct vmie_tlb *t, uint64_t spread, uint64_t vpage)
{
        return &t->e[((vpage + spread) & t->setmask) * WAYS];
}

static inline bool ent_live(const struct vmie_tlb *t, const struct tlb_ent *e)
{
        return e->gen == t->gen && (uint32_t)(t->now - e->stamp) < t->ttl;
}

static inline bool ent_hit(const struct vmie_tlb *t, const struct tlb_ent *e, uint64_t tag, uint64_t vpage)
{
        return e->vpage == vpage && e->tag == tag && ent_live(t, e);
}

static inline void ent_out(const struct tlb_ent *e, uint64_t va, struct vmie_xlate *ret)
{
        ret->gpa = (e->val & ~0xfffull) | (va & 0xfff);
        ret->page_size = 1ull << (12 + 9 * ((e->val & VAL_SZ_MASK) >> VAL_SZ_SHIFT));
        ret->writable = e->val & VAL_W;
        ret->user = e->val & VAL_U;
        ret->nx = e->val & VAL_NX;
}

static int xlate(struct xctx *x, uint64_t va, struct vmie_xlate *ret)
{
        struct vmie_tlb *t = x->tlb;
        if (!t)
                return vmiei_walk(x->as->ram, &x->m, x->as->root, va, ret);
        uint64_t vpage = va >> 12;
        struct tlb_ent *s = set_of(t, x->spread, vpage);
        for (unsigned w = 0; w < WAYS; w++)
                if (ent_hit(t, &s[w], x->tag, vpage)) {
                        t->st.hits++;
                        ent_out(&s[w], va, ret);
                        return 0;
                }
        t->st.misses++;
        /* A miss costs a walk anyway: a fresh reading stamps the fill. */
        read_clock(t);
        /* Canonical check happens in the walk, so garbage never gets cached. */
        int r = vmiei_walk(x->as->ram, &x->m, x->as->root, va, ret);
        if (r < 0)
                return r;
        /* Way 0 is kept while live (expiry frees it within ttl); way 1 takes
         * the rest. A cyclic scan over a full set then still hits way 0
         * instead of missing everywhere, as LRU would. */
        struct tlb_ent *e = ent_live(t, &s[0]) ? &s[1] : &s[0];
        uint64_t sz = ret->page_size == (1ull << 30) ? 2 : ret->page_size == (1ull << 21) ? 1 : 0;
        e->tag = x->tag;
        e->vpage = vpage;
        e->val = (ret->gpa & ~0xfffull) | (ret->writable ? VAL_W : 0) | (ret->user ? VAL_U : 0) |
                 (ret->nx ? VAL_NX : 0) | (sz << VAL_SZ_SHIFT);
        e->gen = t->gen;
        e->stamp = t->now;
        return 0;
}

int vmie_translate(const struct vmie_as *as, uint64_t va, struct vmie_xlate *ret)
{
        if (!ret || !as)
                return -EINVAL;
        struct vmie_tlb *t = as->tlb;
        /* The hit path: same address space and epoch as the last call. */
        if (t && as->epoch == t->epoch && key_same(t, as)) {
                if (--t->budget == 0)
                        read_clock(t);
                uint64_t vpage = va >> 12;
                struct tlb_ent *s = set_of(t, t->k_spread, vpage);
                for (unsigned w = 0; w < WAYS; w++)
                        if (ent_hit(t, &s[w], t->k_tag, vpage)) {
                                t->st.hits++;
                                ent_out(&s[w], va, ret);
                                return 0;
                        }
        } else if (t && --t->budget == 0) {
                read_clock(t);
        }
        struct xctx x;
        int r = xctx_init(&x, as);
        if (r < 0)
                return r;
        return xlate(&x, va, ret);
}

/* How many of the n bytes at gpa are backed by RAM, without a gap. */
static size_t ram_prefix(const struct vmie_ram *ram, uint64_t gpa, size_t n)
{
        size_t ok = 0;
        while (ok < n) {
                uint64_t avail;
                if (vmie_ram_gpa_to_offset(ram, gpa + ok, NULL, &avail) < 0)
                        break;
                ok += avail < n - ok ? (size_t)avail : n - ok;
        }
        return ok;
}

int vmie_read_virt(const struct vmie_as *as, uint64_t va, void *buf, size_t len, size_t *ret_done)
{
        struct xctx x;
        size_t done = 0;
        int r;
        if (ret_done)
                *ret_done = 0;
        if (!buf && len)
                return -EINVAL;
        if (va + len < va && va + len != 0)
                return -EINVAL; /* wraps past 2^64 */
        r = xctx_init(&x, as);
        if (r < 0)
                return r;
        if (x.tlb)
                read_clock(x.tlb);
        while (done < len) {
                struct vmie_xlate xl;
                uint64_t cur = va + done;
                r = xlate(&x, cur, &xl);
                if (r < 0)
                        return r;
                /* Copy up to the end of the mapping page (a big page at once). */
                uint64_t room = xl.page_size - (cur & (xl.page_size - 1));
                size_t n = room < len - done ? (size_t)room : len - done;
                /* A RAM hole may start mid-page: read the good prefix so
                 * *ret_done is exact, then fail. */
                size_t ok = ram_prefix(x.as->ram, xl.gpa, n);
                r = vmie_ram_read(x.as->ram, xl.gpa, (uint8_t *)buf + done, ok);
                if (r < 0)
                        return r;
                done += ok;
                if (ret_done)
                        *ret_done = done;
                if (ok < n)
                        return -EFAULT;
        }
        return 0;
}

int vmie_read_str(const struct vmie_as *as, uint64_t va, char *buf, size_t cap, size_t *ret_len)
{
        struct xctx x;
        size_t got = 0;
        if (!buf || cap == 0)
                return -EINVAL;
        buf[0] = 0;
        int r = xctx_init(&x, as);
        if (r < 0)
                return r;
        if (x.tlb)
                read_clock(x.tlb);
        while (got < cap - 1) {
                struct vmie_xlate xl;
                uint64_t cur = va + got;
                if (cur < va)
                        return -ERANGE; /* wrapped past 2^64 */
                r = xlate(&x, cur, &xl);
                if (r < 0)
                        return r;
                /* Never read past the current 4 KiB page: the string may end
                 * just before an unmapped one. */
                size_t room = VMIE_PAGE_SIZE - (size_t)(cur & (VMIE_PAGE_SIZE - 1));
                size_t n = room < cap - 1 - got ? room : cap - 1 - got;
                r = vmie_ram_read(x.as->ram, xl.gpa, buf + got, n);
                if (r < 0) {
                        buf[got] = 0;
                        return r;
                }
                char *z = memchr(buf + got, 0, n);
                if (z) {
                        if (ret_len)
                                *ret_len = (size_t)(z - buf);
                        return 0;
                }
                got += n;
                buf[got] = 0;
        }
        if (ret_len)
                *ret_len = got;
        return -E2BIG;
}
