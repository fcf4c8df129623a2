/* SPDX-License-Identifier: MIT */
/* Translation cache and the virtual reads that use it. The hit path of
 * vmie_translate is branch-light straight-line code: three 16-byte compares
 * of the caller's address space against the last one's, an index, a
 * cmov between the two ways of one 64-byte set of the page table, one key
 * compare, and the answer copied out as stored (32-byte entries). The key
 * is the virtual page ORed with a small id of (root, mode) that flushes,
 * epoch changes and ttl expiry retire, so no per-entry stamp or root is
 * stored or checked. Big leaves live in a region table (one entry per 2 MiB
 * region) and are copied into the page table per page used, into free ways
 * only, so the hit path never has to guess which table holds an address.
 * The clock is read once per virtual read, on every miss and on every
 * VMIEI_TLB_CLOCK_EVERY-th hit (paging.h). */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <time.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "internal.h"

#define WAYS    2
#define ROOTS   8  /* address spaces remembered, each with its own id */
#define ID_BITS 12 /* ids live in the key's page-offset bits */
#define ID_MAX  ((1u << ID_BITS) - 1)

/* 32 bytes: a 2-way set is one cache line. A hit copies the answer out
 * as it is stored: no decoding on the hit path. */
struct tlb_ent {
        uint64_t key;   /* va & ~0xfff (or region) | id of (root, mode) in this generation; 0 = empty */
        uint64_t delta; /* gpa - va, the same for every va the leaf maps */
        uint64_t size;  /* page size of the leaf */
        uint64_t flags; /* the bytes of struct vmie_xlate from .writable to its end */
};

_Static_assert(sizeof(struct tlb_ent) == 32, "two ways per cache line");
_Static_assert(offsetof(struct vmie_xlate, writable) + sizeof(uint64_t) == sizeof(struct vmie_xlate) &&
                   offsetof(struct vmie_xlate, user) == offsetof(struct vmie_xlate, writable) + 1 &&
                   offsetof(struct vmie_xlate, nx) == offsetof(struct vmie_xlate, writable) + 2,
               "tlb_ent.flags is stored over the flag bytes and tail padding of struct vmie_xlate");

/* An address space the cache has an id for. */
struct root_slot {
        const struct vmie_ram *ram;
        uint64_t root;
        uint32_t lm; /* levels | maxphyaddr << 8, as the caller gave them */
        uint32_t id; /* 0: slot unused */
        struct vmiei_mode m;
        uint64_t spread; /* per-root set offset, keeps contiguous pages apart */
};

/* The leading fields of struct vmie_as, as the caller gave them: the hit
 * path compares them 16 bytes at a time. */
struct as_key {
        const struct vmie_ram *ram;
        struct vmie_tlb *tlb; /* NULL: no key (never equal to a caller's) */
        uint64_t root;
        uint64_t epoch;
        uint16_t lm; /* levels | maxphyaddr << 8 */
};

_Static_assert(offsetof(struct vmie_as, ram) == offsetof(struct as_key, ram) &&
                   offsetof(struct vmie_as, tlb) == offsetof(struct as_key, tlb) &&
                   offsetof(struct vmie_as, root) == offsetof(struct as_key, root) &&
                   offsetof(struct vmie_as, epoch) == offsetof(struct as_key, epoch) &&
                   offsetof(struct vmie_as, levels) == offsetof(struct as_key, lm) &&
                   offsetof(struct vmie_as, maxphyaddr) == offsetof(struct as_key, lm) + 1,
               "as_key mirrors the head of struct vmie_as");

struct vmie_tlb {
        /* The hit path reads only these (the first two cache lines): the
         * last address space's key and where its entries are. */
        struct as_key k;
        /* bytes 18..33 of k (the end of root, epoch, lm): with k's first 32
         * bytes, three 16-byte compares cover the whole key */
        unsigned char k_tail[16] __attribute__((aligned(16)));
        uint64_t k_id;     /* ORed into the key */
        uint64_t k_esp;    /* k_spread << 12: added to va before indexing */
        uint64_t emask;    /* (sets - 1) * set size: byte offset bits of a set */
        struct tlb_ent *e; /* 4 KiB pages: sets of WAYS entries */
        uint64_t hits;
        /* Everything else. */
        uint64_t k_spread; /* per-root set offset */
        uint64_t setmask;  /* sets - 1 */
        struct tlb_ent *b; /* 2 MiB regions of big leaves: sets of WAYS entries */
        uint64_t bsetmask;
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

static inline uint16_t lm_of(const struct vmie_as *as)
{
        return (uint16_t)(as->levels | as->maxphyaddr << 8);
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
        t->k.tlb = NULL;
        memset(t->slot, 0, sizeof(t->slot));
}

/* A clock reading: at the end of a ttl window every entry expires at once, so
 * none is used longer than ttl after its walk (each was walked inside the
 * window). */
static void read_clock(struct vmie_tlb *t)
{
        /* the default clock called directly: no indirect call on the hit
         * path's every-16th reading */
        uint64_t now = t->clock == coarse_ns ? coarse_ns(NULL) : t->clock(t->clock_arg);
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
        /* cache-line aligned: the hit path's fields share two lines */
        size_t tsize = (sizeof(struct vmie_tlb) + 63) & ~(size_t)63;
        struct vmie_tlb *t = aligned_alloc(64, tsize);
        if (!t)
                return -ENOMEM;
        memset(t, 0, tsize);
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
        t->emask = t->setmask * sizeof(struct tlb_ent[WAYS]);
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

#define KEY_TAIL (offsetof(struct as_key, lm) + sizeof(uint16_t) - 16)
_Static_assert(KEY_TAIL + 16 <= sizeof(struct vmie_as), "the tail load stays inside struct vmie_as");

/* Whether as is the address space (and epoch) of the cache's last call.
 * t->k.tlb is NULL without a key, and as->tlb is t, so that is never equal. */
static inline bool key_same(const struct vmie_tlb *t, const struct vmie_as *as)
{
#ifdef __SSE2__
        const __m128i *a = (const __m128i *)(const void *)as, *k = (const __m128i *)(const void *)&t->k;
        const __m128i *a_tail = (const __m128i *)(const void *)((const char *)as + KEY_TAIL);
        __m128i eq = _mm_and_si128(_mm_cmpeq_epi8(_mm_loadu_si128(a), _mm_load_si128(k)),
                                   _mm_cmpeq_epi8(_mm_loadu_si128(a + 1), _mm_load_si128(k + 1)));
        eq = _mm_and_si128(eq, _mm_cmpeq_epi8(_mm_loadu_si128(a_tail),
                                              _mm_load_si128((const __m128i *)(const void *)t->k_tail)));
        return _mm_movemask_epi8(eq) == 0xffff;
#else
        return (((uintptr_t)as->ram ^ (uintptr_t)t->k.ram) | ((uintptr_t)as->tlb ^ (uintptr_t)t->k.tlb) |
                (as->root ^ t->k.root) | (as->epoch ^ t->k.epoch) | (uint64_t)(lm_of(as) ^ t->k.lm)) == 0;
#endif
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
        t->k = (struct as_key){.ram = as->ram, .tlb = t, .root = as->root, .epoch = as->epoch, .lm = lm};
        memcpy(t->k_tail, (const char *)&t->k + KEY_TAIL, sizeof(t->k_tail));
        t->k_id = s->id;
        t->k_spread = s->spread;
        t->k_esp = s->spread << 12;
        t->k_m = s->m;
        return 0;
}

/* Index by the low bits of the page number (offset per root): a contiguous
 * range of pages fills distinct sets instead of colliding at random. */
static inline const struct tlb_ent *set_of(const struct vmie_tlb *t, uint64_t spread, uint64_t va)
{
        return &t->e[(((va >> 12) + spread) & t->setmask) * WAYS];
}

/* The same set from the hit path's precomputed fields: a set is 64 bytes,
 * so ((va >> 12) + spread) * 64 is (va + (spread << 12)) >> 6 with the
 * page-offset bits masked off. */
static inline const struct tlb_ent *set_of_hot(const struct vmie_tlb *t, uint64_t va)
{
        return (const struct tlb_ent *)(const void *)((const char *)t->e +
                                                      (((va + t->k_esp) >> 6) & t->emask));
}

_Static_assert(sizeof(struct tlb_ent[WAYS]) == 64, "set_of_hot: 64-byte sets");

static inline const struct tlb_ent *bset_of(const struct vmie_tlb *t, uint64_t spread, uint64_t va)
{
        return &t->b[(((va >> 21) + spread) & t->bsetmask) * WAYS];
}

#define BIG_MASK ((1ull << 21) - 1)

/* The entry for va in the page table's set s, or NULL: the way is picked
 * without a branch, so only a miss leaves the straight line. */
static inline const struct tlb_ent *probe(const struct tlb_ent *s, uint64_t id, uint64_t va)
{
        uint64_t key = (va & ~0xfffull) | id;
        /* A key is in one way at most: pick way 1 if its key matches, then
         * one compare decides. */
        const struct tlb_ent *e = s;
#if defined(__x86_64__)
        /* a cmov: compilers turn the select into a branch, and which way
         * holds a page is as random as the caller's addresses */
        __asm__("cmpq %[key], %c[k1](%[s])\n\tcmove %[s1], %[e]"
                : [e] "+r"(e)
                : [key] "r"(key), [s] "r"(s), [s1] "r"(s + 1),
                  [k1] "i"(sizeof(*s) + offsetof(struct tlb_ent, key)), "m"(s[1].key)
                : "cc");
#else
        e += s[1].key == key;
#endif
        return e->key == key ? e : NULL;
}

static inline void ent_out(const struct tlb_ent *e, uint64_t va, struct vmie_xlate *ret)
{
        ret->gpa = va + e->delta;
        /* page_size and the flag bytes (with the tail padding) at once */
        memcpy((unsigned char *)ret + offsetof(struct vmie_xlate, page_size), &e->size,
               sizeof(e->size) + sizeof(e->flags));
}

_Static_assert(offsetof(struct vmie_xlate, page_size) + 8 == offsetof(struct vmie_xlate, writable) &&
                   offsetof(struct tlb_ent, size) + 8 == offsetof(struct tlb_ent, flags),
               "ent_out copies page_size and the flags as one 16-byte block");

static inline bool live(const struct vmie_tlb *t, const struct tlb_ent *e)
{
        return (e->key & ID_MAX) >= t->floor;
}

/* Only a 4 KiB leaf needs a walk to come back: a copy of a region's entry
 * in the page table is rebuilt from the region table. */
static inline bool walked(const struct tlb_ent *e)
{
        return e->size == VMIE_PAGE_SIZE;
}

/* Where a walked leaf goes. Way 0 is kept while it holds a live walked
 * leaf (expiry frees it within ttl); way 1 takes the rest. A cyclic scan
 * over a full set then still hits way 0 instead of missing everywhere, as
 * LRU would. */
static inline struct tlb_ent *victim(const struct vmie_tlb *t, struct tlb_ent *s)
{
        return live(t, &s[0]) && walked(&s[0]) ? &s[1] : &s[0];
}

/* Copy a region's entry into the page table for va's page, into a free way
 * only: displacing a live entry would make a full set thrash on a cyclic
 * scan, and the region table answers without a walk anyway. Same id: the
 * copy expires with the region's entry. */
static void copy_in(struct vmie_tlb *t, uint64_t id, uint64_t spread, uint64_t va, const struct tlb_ent *big)
{
        struct tlb_ent *s = (struct tlb_ent *)set_of(t, spread, va), *e;
        if (!live(t, &s[0]))
                e = &s[0];
        else if (!live(t, &s[1]))
                e = &s[1];
        else
                return;
        *e = *big;
        e->key = (va & ~0xfffull) | id;
}

/* The region table's entry for va's 2 MiB region, or NULL. */
static inline const struct tlb_ent *probe_region(const struct vmie_tlb *t, uint64_t id, uint64_t spread,
                                                 uint64_t va)
{
        const struct tlb_ent *bs = bset_of(t, spread, va);
        uint64_t bkey = (va & ~BIG_MASK) | id;
        return bs[0].key == bkey ? &bs[0] : bs[1].key == bkey ? &bs[1] : NULL;
}

static int xlate(struct xctx *x, uint64_t va, struct vmie_xlate *ret)
{
        struct vmie_tlb *t = x->tlb;
        if (!t)
                return vmiei_walk(x->as->ram, &x->m, x->as->root, va, ret);
        const struct tlb_ent *hit = probe(set_of(t, x->spread, va), x->id, va);
        if (!hit && (hit = probe_region(t, x->id, x->spread, va)))
                copy_in(t, x->id, x->spread, va, hit);
        if (hit) {
                t->hits++;
                ent_out(hit, va, ret);
                return 0;
        }
        t->misses++;
        /* Canonical check happens in the walk, so garbage never gets cached. */
        int r = vmiei_walk(x->as->ram, &x->m, x->as->root, va, ret);
        if (r < 0)
                return r;
        unsigned char f[sizeof(hit->flags)] = {ret->writable, ret->user, ret->nx};
        struct tlb_ent n = {.delta = ret->gpa - va, .size = ret->page_size};
        memcpy(&n.flags, f, sizeof(f));
        if (ret->page_size == VMIE_PAGE_SIZE) {
                n.key = (va & ~0xfffull) | x->id;
                *victim(t, (struct tlb_ent *)set_of(t, x->spread, va)) = n;
        } else {
                /* A big leaf is cached once per 2 MiB region it covers: one
                 * walk answers all 512 of the region's 4 KiB pages. */
                n.key = (va & ~BIG_MASK) | x->id;
                struct tlb_ent *bs = (struct tlb_ent *)bset_of(t, x->spread, va);
                struct tlb_ent *e = live(t, &bs[0]) ? &bs[1] : &bs[0];
                *e = n;
                copy_in(t, x->id, x->spread, va, e);
        }
        return 0;
}

/* Everything the hit path does not answer. clock: read the clock first (a
 * miss, a new address space), not when the caller just did. */
static __attribute__((noinline)) int translate_slow(const struct vmie_as *as, uint64_t va,
                                                    struct vmie_xlate *ret, bool clock)
{
        struct xctx x;
        if (!ret || !as)
                return -EINVAL;
        if (as->tlb && clock)
                read_clock(as->tlb);
        int r = xctx_init(&x, as);
        if (r < 0)
                return r;
        return xlate(&x, va, ret);
}

/* A page of a big leaf whose copy is not in the page table (or was never
 * made): the region table answers, still without a clock reading. hits is
 * the caller's count including this call. */
static __attribute__((noinline)) int translate_region(struct vmie_tlb *t, const struct vmie_as *as,
                                                      uint64_t va, struct vmie_xlate *ret, uint64_t hits)
{
        const struct tlb_ent *big = probe_region(t, t->k_id, t->k_spread, va);
        if (!big)
                return translate_slow(as, va, ret, true);
        t->hits = hits;
        copy_in(t, t->k_id, t->k_spread, va, big);
        ent_out(big, va, ret);
        return 0;
}

/* The hit path after the hit count h is known: probe the page table, then
 * the region table. */
static inline int translate_hit(struct vmie_tlb *t, const struct vmie_as *as, uint64_t va,
                                struct vmie_xlate *ret, uint64_t h)
{
        const struct tlb_ent *e = probe(set_of_hot(t, va), t->k_id, va);
        if (__builtin_expect(e == NULL, 0))
                return translate_region(t, as, va, ret, h);
        t->hits = h;
        ent_out(e, va, ret);
        return 0;
}

/* Every VMIEI_TLB_CLOCK_EVERY-th hit reads the clock (a miss reads it
 * anyway), so no more than VMIEI_TLB_CLOCK_EVERY - 1 calls pass between
 * readings; if the reading closed the window, the key is gone and the
 * call takes the slow path. */
static __attribute__((noinline)) int translate_tick(struct vmie_tlb *t, const struct vmie_as *as, uint64_t va,
                                                    struct vmie_xlate *ret, uint64_t h)
{
        read_clock(t);
        if (!t->k.tlb)
                return translate_slow(as, va, ret, false);
        return translate_hit(t, as, va, ret, h);
}

int vmie_translate(const struct vmie_as *as, uint64_t va, struct vmie_xlate *ret)
{
        struct vmie_tlb *t;
        /* The hit path: same address space and epoch as the last call, then
         * one probe of the page table. Straight-line code that only tail
         * calls: the clock reading and everything else are out of line. */
        if (__builtin_expect(as && ret && (t = as->tlb) && key_same(t, as), 1)) {
                uint64_t h = t->hits + 1;
                if (__builtin_expect((h & (VMIEI_TLB_CLOCK_EVERY - 1)) == 0, 0))
                        return translate_tick(t, as, va, ret, h);
                return translate_hit(t, as, va, ret, h);
        }
        return translate_slow(as, va, ret, true);
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
