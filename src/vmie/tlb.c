/* SPDX-License-Identifier: MIT */
/* Translation cache and the virtual reads that use it. The hit path of
 * vmie_translate is one compare of the caller's address space against the
 * last one's, an index, and one 64-bit key compare per way on 16-byte entries
 * (a set is half a cache line): the key is the virtual page ORed with a small
 * id of (root, mode) that flushes, epoch changes and ttl expiry retire, so no
 * per-entry stamp or root is stored or checked. The clock is read once per
 * virtual read, on every miss and on every VMIEI_TLB_CLOCK_EVERY-th hit
 * (paging.h). */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <time.h>

#include "internal.h"

#define WAYS    2
#define ROOTS   8  /* address spaces remembered, each with its own id */
#define ID_BITS 12 /* ids live in the key's page-offset bits */
#define ID_MAX  ((1u << ID_BITS) - 1)

/* 16 bytes: a 2-way set is half a cache line. */
struct tlb_ent {
        uint64_t key; /* va & ~0xfff | id of (root, mode) in this generation; 0 = empty */
        uint64_t val; /* 4 KiB frame gpa | log2(page size) | VAL_* flags */
};

#define VAL_SZ_MASK 0x3full /* 12, 21 or 30 */
#define VAL_W       (1ull << 6)
#define VAL_U       (1ull << 7)
#define VAL_NX      (1ull << 8)

/* An address space the cache has an id for. */
struct root_slot {
        const struct vmie_ram *ram;
        uint64_t root;
        uint32_t lm; /* levels | maxphyaddr << 8, as the caller gave them */
        uint32_t id; /* 0: slot unused */
        struct vmiei_mode m;
        uint64_t spread; /* per-root set offset, keeps contiguous pages apart */
};

struct vmie_tlb {
        /* The hit path reads only these: the last address space's key (the
         * caller's values, compared as given) and where its entries are. */
        const struct vmie_ram *k_ram;
        uint64_t k_root;
        uint64_t k_epoch;
        uint32_t k_lm;     /* LM_VALID | levels | maxphyaddr << 8; 0 = no key */
        uint64_t k_id;     /* ORed into the key */
        uint64_t k_spread; /* per-root set offset */
        struct tlb_ent *e; /* 4 KiB pages: sets of WAYS entries */
        uint64_t setmask;  /* sets - 1 */
        struct tlb_ent *b; /* 2 MiB regions of big leaves: sets of WAYS entries */
        uint64_t bsetmask;
        uint64_t hits;
        /* Everything else. */
        struct vmiei_mode k_m;
        uint64_t misses, flushes;
        uint64_t epoch;
        uint32_t next_id; /* next id to hand out (1..ID_MAX) */
        uint32_t floor;   /* ids below it are dead: flushed or expired */
        unsigned next_slot;
        struct root_slot slot[ROOTS];
        uint64_t ttl;       /* ns */
        uint64_t win_start; /* clock reading that opened the current lifetime window */
        uint64_t (*clock)(void *);
        void *clock_arg;
};

#define LM_VALID (1u << 16)

static inline uint32_t lm_of(const struct vmie_as *as)
{
        return LM_VALID | as->levels | (uint32_t)as->maxphyaddr << 8;
}

static uint64_t coarse_ns(void *arg)
{
        (void)arg;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Every id issued so far is dead from now on; roots get new ones on use. */
static void kill_ids(struct vmie_tlb *t)
{
        t->floor = t->next_id;
        t->k_lm = 0;
        memset(t->slot, 0, sizeof(t->slot));
}

/* A clock reading: at the end of a ttl window every entry expires at once, so
 * none is used longer than ttl after its walk (each was walked inside the
 * window). */
static void read_clock(struct vmie_tlb *t)
{
        uint64_t now = t->clock(t->clock_arg);
        if (now - t->win_start >= t->ttl) {
                kill_ids(t);
                t->win_start = now;
        }
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
        unsigned bbits = bits > 7 ? bits - 3 : 4; /* big leaves: 1/8 as many, >= 16 */
        size_t bytes = ((size_t)1 << bits) * sizeof(*t->e), bbytes = ((size_t)1 << bbits) * sizeof(*t->b);
        t->e = aligned_alloc(64, bytes);
        t->b = aligned_alloc(64, bbytes);
        if (!t->e || !t->b) {
                free(t->e);
                free(t->b);
                free(t);
                return -ENOMEM;
        }
        memset(t->e, 0, bytes);
        memset(t->b, 0, bbytes);
        t->setmask = ((1ull << bits) / WAYS) - 1;
        t->bsetmask = ((1ull << bbits) / WAYS) - 1;
        t->next_id = 1; /* empty entries (key 0) never match: ids are >= 1 */
        t->floor = 1;
        t->ttl = ttl_ns;
        t->clock = coarse_ns;
        t->win_start = t->clock(NULL);
        *ret = t;
        return 0;
}

struct vmie_tlb *vmie_tlb_free(struct vmie_tlb *tlb)
{
        if (tlb) {
                free(tlb->e);
                free(tlb->b);
                free(tlb);
        }
        return NULL;
}

void vmie_tlb_flush(struct vmie_tlb *tlb)
{
        if (!tlb)
                return;
        tlb->flushes++;
        kill_ids(tlb);
}

void vmie_tlb_stats(const struct vmie_tlb *tlb, struct vmie_tlb_stats *ret)
{
        if (!ret)
                return;
        memset(ret, 0, sizeof(*ret));
        if (tlb) {
                ret->hits = tlb->hits;
                ret->misses = tlb->misses;
                ret->flushes = tlb->flushes;
        }
}

void vmiei_tlb_set_clock(struct vmie_tlb *tlb, uint64_t (*fn)(void *), void *arg)
{
        tlb->clock = fn ? fn : coarse_ns;
        tlb->clock_arg = fn ? arg : NULL;
        /* A new time base: start a fresh window and drop what the old one
         * stamped. */
        kill_ids(tlb);
        tlb->win_start = tlb->clock(tlb->clock_arg);
}

size_t vmiei_tlb_entries(const struct vmie_tlb *tlb)
{
        return (size_t)(tlb->setmask + 1) * WAYS;
}

/* Per-call state: checked mode, id and set offset of the address space. */
struct xctx {
        const struct vmie_as *as;
        struct vmiei_mode m;
        struct vmie_tlb *tlb;
        uint64_t id;
        uint64_t spread;
};

static inline bool key_same(const struct vmie_tlb *t, const struct vmie_as *as)
{
        /* One branch for five fields; k_lm is 0 (never equal) without a key. */
        return (((uintptr_t)as->ram ^ (uintptr_t)t->k_ram) | (as->root ^ t->k_root) |
                (as->epoch ^ t->k_epoch) | (uint64_t)(lm_of(as) ^ t->k_lm)) == 0;
}

/* A fresh id. When they run out, empty the table so old keys cannot match
 * the recycled ids (once per ID_MAX new ids). */
static uint32_t new_id(struct vmie_tlb *t)
{
        if (t->next_id > ID_MAX) {
                memset(t->e, 0, (size_t)(t->setmask + 1) * WAYS * sizeof(*t->e));
                memset(t->b, 0, (size_t)(t->bsetmask + 1) * WAYS * sizeof(*t->b));
                t->next_id = 1;
                kill_ids(t);
        }
        return t->next_id++;
}

/* Checks the mode (or reuses the cache's check of the same address space),
 * applies an epoch change and finds or assigns the address space's id. Does
 * not read the clock. */
static int xctx_init(struct xctx *x, const struct vmie_as *as)
{
        if (!as)
                return -EINVAL;
        struct vmie_tlb *t = as->tlb;
        x->as = as;
        x->tlb = t;
        if (t && key_same(t, as)) {
                x->m = t->k_m;
                x->id = t->k_id;
                x->spread = t->k_spread;
                return 0;
        }
        int r = vmiei_mode(as, &x->m);
        if (r < 0 || !t)
                return r;
        if (t->epoch != as->epoch) {
                vmie_tlb_flush(t);
                t->epoch = as->epoch;
        }
        /* The mode is part of the identity: the same root walked as 4- or
         * 5-level, or with another MAXPHYADDR, gives different answers. */
        uint32_t lm = lm_of(as);
        struct root_slot *s = NULL;
        for (unsigned i = 0; i < ROOTS; i++)
                if (t->slot[i].id && t->slot[i].ram == as->ram && t->slot[i].root == as->root &&
                    t->slot[i].lm == lm) {
                        s = &t->slot[i];
                        break;
                }
        if (!s) {
                uint32_t id = new_id(t);
                s = &t->slot[t->next_slot++ % ROOTS];
                s->ram = as->ram;
                s->root = as->root;
                s->lm = lm;
                s->id = id;
                s->m = x->m;
                s->spread = ((as->root >> 12) * 0x9e3779b97f4a7c15ull) >> 40;
        }
        x->id = s->id;
        x->spread = s->spread;
        t->k_ram = as->ram;
        t->k_root = as->root;
        t->k_epoch = as->epoch;
        t->k_lm = lm;
        t->k_id = s->id;
        t->k_spread = s->spread;
        t->k_m = s->m;
        return 0;
}

/* Index by the low bits of the page number (offset per root): a contiguous
 * range of pages fills distinct sets instead of colliding at random. */
static inline struct tlb_ent *set_of(const struct vmie_tlb *t, uint64_t spread, uint64_t va)
{
        return &t->e[(((va >> 12) + spread) & t->setmask) * WAYS];
}

static inline struct tlb_ent *bset_of(const struct vmie_tlb *t, uint64_t spread, uint64_t va)
{
        return &t->b[(((va >> 21) + spread) & t->bsetmask) * WAYS];
}

#define BIG_MASK ((1ull << 21) - 1)

/* omask: the offset bits the entry does not fix (0xfff, or BIG_MASK for an
 * entry of the big table, whose frame is the 2 MiB region's). */
static inline void ent_out(uint64_t val, uint64_t va, uint64_t omask, struct vmie_xlate *ret)
{
        ret->gpa = (val & ~omask) | (va & omask);
        ret->page_size = 1ull << (val & VAL_SZ_MASK);
        /* W, U, NX (bits 6..8) spread to one bit per byte, stored at once:
         * the three bools are adjacent. */
        uint32_t f = (uint32_t)((val >> 6) & 7) * 0x4081u & 0x10101u;
        uint16_t wu = (uint16_t)f;
        uint8_t nx = (uint8_t)(f >> 16);
        memcpy((unsigned char *)ret + offsetof(struct vmie_xlate, writable), &wu, 2);
        memcpy((unsigned char *)ret + offsetof(struct vmie_xlate, nx), &nx, 1);
}

_Static_assert(offsetof(struct vmie_xlate, user) == offsetof(struct vmie_xlate, writable) + 1 &&
                   offsetof(struct vmie_xlate, nx) == offsetof(struct vmie_xlate, writable) + 2,
               "ent_out stores the three flags as adjacent bytes");

static int xlate(struct xctx *x, uint64_t va, struct vmie_xlate *ret)
{
        struct vmie_tlb *t = x->tlb;
        if (!t)
                return vmiei_walk(x->as->ram, &x->m, x->as->root, va, ret);
        uint64_t bkey = (va & ~BIG_MASK) | x->id;
        struct tlb_ent *bs = bset_of(t, x->spread, va);
        for (unsigned w = 0; w < WAYS; w++)
                if (bs[w].key == bkey) {
                        t->hits++;
                        ent_out(bs[w].val, va, BIG_MASK, ret);
                        return 0;
                }
        uint64_t key = (va & ~0xfffull) | x->id;
        struct tlb_ent *s = set_of(t, x->spread, va);
        for (unsigned w = 0; w < WAYS; w++)
                if (s[w].key == key) {
                        t->hits++;
                        ent_out(s[w].val, va, 0xfff, ret);
                        return 0;
                }
        t->misses++;
        /* Canonical check happens in the walk, so garbage never gets cached. */
        int r = vmiei_walk(x->as->ram, &x->m, x->as->root, va, ret);
        if (r < 0)
                return r;
        /* Way 0 is kept while live (expiry frees it within ttl); way 1 takes
         * the rest. A cyclic scan over a full set then still hits way 0
         * instead of missing everywhere, as LRU would. */
        /* A big leaf is cached once per 2 MiB region it covers, in the big
         * table: one entry answers all 512 of the region's 4 KiB pages. */
        uint64_t lg = ret->page_size == (1ull << 30) ? 30 : ret->page_size == (1ull << 21) ? 21 : 12;
        uint64_t omask = lg == 12 ? 0xfff : BIG_MASK;
        if (lg != 12) {
                s = bs;
                key = bkey;
        }
        struct tlb_ent *e = (s[0].key & ID_MAX) >= t->floor ? &s[1] : &s[0];
        e->key = key;
        e->val = (ret->gpa & ~omask) | lg | (ret->writable ? VAL_W : 0) | (ret->user ? VAL_U : 0) |
                 (ret->nx ? VAL_NX : 0);
        return 0;
}

/* Everything but a hit on the last address space, and every
 * VMIEI_TLB_CLOCK_EVERY-th hit: a miss reads the clock anyway, so no more
 * than VMIEI_TLB_CLOCK_EVERY - 1 calls pass between readings. */
static __attribute__((noinline)) int translate_slow(const struct vmie_as *as, uint64_t va,
                                                    struct vmie_xlate *ret)
{
        struct xctx x;
        if (as->tlb)
                read_clock(as->tlb);
        int r = xctx_init(&x, as);
        if (r < 0)
                return r;
        return xlate(&x, va, ret);
}

int vmie_translate(const struct vmie_as *as, uint64_t va, struct vmie_xlate *ret)
{
        if (!ret || !as)
                return -EINVAL;
        struct vmie_tlb *t = as->tlb;
        /* The hit path: same address space and epoch as the last call, no
         * clock reading due; a compare per way on half a cache line. */
        if (t && key_same(t, as) && ((t->hits + 1) & (VMIEI_TLB_CLOCK_EVERY - 1))) {
                /* Big leaves first: few entries cover much, so they stay in L1. */
                uint64_t bkey = (va & ~BIG_MASK) | t->k_id;
                struct tlb_ent *bs = bset_of(t, t->k_spread, va);
                if (bs[0].key == bkey || bs[1].key == bkey) {
                        t->hits++;
                        ent_out(bs[bs[0].key != bkey].val, va, BIG_MASK, ret);
                        return 0;
                }
                uint64_t key = (va & ~0xfffull) | t->k_id;
                struct tlb_ent *s = set_of(t, t->k_spread, va);
                if (s[0].key == key || s[1].key == key) {
                        t->hits++;
                        ent_out(s[s[0].key != key].val, va, 0xfff, ret);
                        return 0;
                }
        }
        return translate_slow(as, va, ret);
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
        if (as && as->tlb)
                read_clock(as->tlb); /* before the id lookup: it may expire ids */
        r = xctx_init(&x, as);
        if (r < 0)
                return r;
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
        if (as && as->tlb)
                read_clock(as->tlb); /* before the id lookup: it may expire ids */
        int r = xctx_init(&x, as);
        if (r < 0)
                return r;
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
