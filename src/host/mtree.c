/* SPDX-License-Identifier: MIT */
/* `info mtree -f` parser: guest-RAM layout and the below-4G split. See mtree.h.
 *
 * The system flatview is walked several times (validate + pick the backend,
 * classify, overlays, build) instead of being copied: it can hold hundreds of
 * device ranges, and re-walking keeps memory fixed and the code simple. Every
 * walk is linear in `len` and every loop advances through the text. */
#include "host/mtree.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define GIB4           UINT64_C(0x100000000)
#define PAGE_SIZE_4K   UINT64_C(0x1000)
#define MAX_CANDIDATES 8
/* Legacy VGA/SMRAM window that q35 can alias above the PCI hole. */
#define LEGACY_LO UINT64_C(0xa0000)
#define LEGACY_HI UINT64_C(0xc0000)

struct line {
        const char *p;
        size_t n; /* without the line ending */
        size_t no;
};

struct cursor {
        const char *text;
        size_t len;
        size_t pos;
        size_t no;
};

enum rtype { RT_RAM, RT_ROM, RT_RAMD, RT_ROMD, RT_IO, RT_CONTAINER, RT_OTHER };

struct mrange {
        uint64_t start;
        uint64_t last; /* inclusive, as QEMU prints it */
        uint64_t off;  /* 0 when QEMU printed no @offset */
        bool has_off;
        enum rtype type;
        const char *name;
        size_t name_len;
        size_t no;
};

enum header { HDR_NONE, HDR_FLATVIEW, HDR_OLD_FLAT, HDR_OLD_TREE };

struct range_iter {
        struct cursor c;
        bool started;
        bool done;
        bool skip;
        bool any;
        uint64_t prev_last;
};

__attribute__((format(printf, 4, 5))) static int fail(char *err, size_t errlen, int r, const char *fmt, ...)
{
        if (err && errlen > 0) {
                va_list ap;
                va_start(ap, fmt);
                vsnprintf(err, errlen, fmt, ap);
                va_end(ap);
        }
        return r;
}

static bool next_line(struct cursor *c, struct line *ret)
{
        if (c->pos >= c->len)
                return false;
        const char *start = c->text + c->pos;
        size_t rest = c->len - c->pos;
        const char *nl = memchr(start, '\n', rest);
        size_t n = nl ? (size_t)(nl - start) : rest;
        c->pos += nl ? n + 1 : n;
        if (n > 0 && start[n - 1] == '\r')
                n--;
        ret->p = start;
        ret->n = n;
        ret->no = ++c->no;
        return true;
}

static bool has_prefix(const struct line *l, const char *s)
{
        size_t k = strlen(s);
        return l->n >= k && memcmp(l->p, s, k) == 0;
}

static bool span_eq(const char *p, size_t n, const char *s)
{
        return strlen(s) == n && memcmp(p, s, n) == 0;
}

/* First occurrence of `s` in [p, p+n), or NULL. */
static const char *span_find(const char *p, size_t n, const char *s)
{
        size_t k = strlen(s);
        for (size_t i = 0; k <= n && i <= n - k; i++)
                if (memcmp(p + i, s, k) == 0)
                        return p + i;
        return NULL;
}

static enum header header_kind(const struct line *l, const char **ret_name, size_t *ret_n)
{
        static const struct {
                const char *prefix;
                enum header kind;
        } hdrs[] = {
            {"FlatView #", HDR_FLATVIEW},
            {"address-space (flat view): ", HDR_OLD_FLAT},
            {"address-space: ", HDR_OLD_TREE},
        };
        for (size_t i = 0; i < sizeof(hdrs) / sizeof(hdrs[0]); i++) {
                if (!has_prefix(l, hdrs[i].prefix))
                        continue;
                size_t k = strlen(hdrs[i].prefix);
                if (ret_name) {
                        *ret_name = l->p + k;
                        *ret_n = l->n - k;
                }
                return hdrs[i].kind;
        }
        return HDR_NONE;
}

static int hexval(char ch)
{
        if (ch >= '0' && ch <= '9')
                return ch - '0';
        if (ch >= 'a' && ch <= 'f')
                return ch - 'a' + 10;
        if (ch >= 'A' && ch <= 'F')
                return ch - 'A' + 10;
        return -1;
}

/* 1..16 hex digits; more would overflow, so they are malformed. */
static bool parse_hex(const char **p, const char *e, uint64_t *ret)
{
        uint64_t v = 0;
        size_t n = 0;
        while (*p < e && hexval(**p) >= 0) {
                if (++n > 16)
                        return false;
                v = v << 4 | (uint64_t)hexval(**p);
                (*p)++;
        }
        *ret = v;
        return n > 0;
}

static bool eat(const char **p, const char *e, const char *s)
{
        size_t k = strlen(s);
        if ((size_t)(e - *p) < k || memcmp(*p, s, k) != 0)
                return false;
        *p += k;
        return true;
}

static enum rtype parse_type(const char *p, size_t n)
{
        static const struct {
                const char *s;
                enum rtype t;
        } types[] = {
            {"ram", RT_RAM},   {"rom", RT_ROM}, {"ramd", RT_RAMD},
            {"romd", RT_ROMD}, {"i/o", RT_IO},  {"container", RT_CONTAINER},
        };
        for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
                if (span_eq(p, n, types[i].s))
                        return types[i].t;
        return RT_OTHER;
}

/* NAME[ @OFFSET][ owner:{..}| parent:{..}][ kvm]: names may hold spaces
 * ("vga ioports remapped"), so the optional tails are cut off instead. */
static bool parse_name(const char *p, const char *e, struct mrange *r)
{
        const char *end = e;
        r->has_off = false;
        r->off = 0;
        for (const char *q = p; q + 2 < e; q++) {
                if (q[0] != ' ' || q[1] != '@' || hexval(q[2]) < 0)
                        continue;
                const char *h = q + 2;
                uint64_t v;
                if (!parse_hex(&h, e, &v) || (h < e && *h != ' '))
                        continue;
                r->has_off = true;
                r->off = v;
                end = q;
                break;
        }
        if (!r->has_off) {
                const char *o = span_find(p, (size_t)(end - p), " owner:{");
                const char *a = span_find(p, (size_t)(end - p), " parent:{");
                if (o)
                        end = o;
                if (a && a < end)
                        end = a;
                size_t n = (size_t)(end - p);
                if (end == e && n > 4 && (memcmp(end - 4, " kvm", 4) == 0 || memcmp(end - 4, " KVM", 4) == 0))
                        end -= 4;
        }
        r->name = p;
        r->name_len = (size_t)(end - p);
        return r->name_len > 0;
}

/* "  START-END (prio P, [nv-]TYPE): NAME..." */
static int parse_range(const struct line *l, struct mrange *r, char *err, size_t errlen)
{
        const char *p = l->p, *e = l->p + l->n;
        if (l->n < 3 || p[0] != ' ' || p[1] != ' ')
                return fail(err, errlen, -EBADMSG, "line %zu: unexpected line in the system flatview", l->no);
        /* QEMU prints none; a NUL or escape in a name would make it lie. */
        for (size_t i = 0; i < l->n; i++)
                if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
                        return fail(err, errlen, -EBADMSG, "line %zu: control character in a range line",
                                    l->no);
        p += 2;
        if (*p == ' ')
                return fail(err, errlen, -EBADMSG, "line %zu: nested line: a memory tree, not a flat view",
                            l->no);
        r->no = l->no;
        if (!parse_hex(&p, e, &r->start) || !eat(&p, e, "-") || !parse_hex(&p, e, &r->last) ||
            !eat(&p, e, " (prio "))
                return fail(err, errlen, -EBADMSG, "line %zu: malformed range line", l->no);
        if (p < e && *p == '-')
                p++;
        size_t digits = 0;
        while (p < e && *p >= '0' && *p <= '9' && digits < 11) {
                p++;
                digits++;
        }
        if (digits == 0 || digits > 10 || !eat(&p, e, ", "))
                return fail(err, errlen, -EBADMSG, "line %zu: malformed priority", l->no);
        eat(&p, e, "nv-");
        const char *t = p;
        while (p < e && *p != ')' && p - t < 16)
                p++;
        size_t tn = (size_t)(p - t);
        if (tn == 0 || !eat(&p, e, "): "))
                return fail(err, errlen, -EBADMSG, "line %zu: malformed region type", l->no);
        r->type = parse_type(t, tn);
        if (!parse_name(p, e, r))
                return fail(err, errlen, -EBADMSG, "line %zu: range without a region name", l->no);
        if (r->last < r->start)
                return fail(err, errlen, -EBADMSG, "line %zu: range ends before it starts", l->no);
        return 0;
}

/* 1 and *ret: the next range of the view; 0: end of the view; <0: error.
 * QEMU ends every view with a blank line: without it the dump was cut short
 * and the missing tail could hold RAM, so that is an error, not an end. */
static int next_range(struct range_iter *it, struct mrange *ret, char *err, size_t errlen)
{
        struct line l;
        if (it->done)
                return 0;
        while (next_line(&it->c, &l)) {
                if (l.n == 0) {
                        it->done = true;
                        return 0;
                }
                if (header_kind(&l, NULL, NULL) != HDR_NONE)
                        break;
                if (it->skip)
                        continue;
                if (!it->started && (has_prefix(&l, " AS \"") || has_prefix(&l, " Root memory region: ")))
                        continue;
                if (has_prefix(&l, "  No rendered FlatView")) {
                        if (it->any)
                                return fail(err, errlen, -EBADMSG,
                                            "line %zu: 'No rendered FlatView' after ranges", l.no);
                        return fail(err, errlen, -ENOENT, "system flatview is empty (No rendered FlatView)");
                }
                if (has_prefix(&l, "  Dispatch")) {
                        it->skip = true; /* -d output: no more ranges */
                        continue;
                }
                it->started = true;
                int r = parse_range(&l, ret, err, errlen);
                if (r < 0)
                        return r;
                if (it->any && ret->start <= it->prev_last)
                        return fail(err, errlen, -EBADMSG,
                                    "line %zu: overlapping or unsorted ranges (not a flat view)", l.no);
                it->any = true;
                it->prev_last = ret->last;
                return 1;
        }
        return fail(err, errlen, -EBADMSG, "system flatview is truncated (no blank line ends it)");
}

/* Position just past the header of the one system flatview. */
static int find_system_view(const char *text, size_t len, struct cursor *ret, char *err, size_t errlen)
{
        struct cursor c = {.text = text, .len = len};
        struct cursor here = c;
        struct line l;
        bool in_view = false, in_header = false, is_sys = false;
        unsigned found = 0;

        while (next_line(&c, &l)) {
                const char *name;
                size_t n;
                enum header h = header_kind(&l, &name, &n);
                if (h != HDR_NONE) {
                        if (in_view && is_sys && found++ == 0)
                                *ret = here;
                        in_view = true;
                        in_header = h == HDR_FLATVIEW;
                        /* Old formats print one view per address space, by name. */
                        is_sys = h != HDR_FLATVIEW && span_eq(name, n, "memory");
                        here = c;
                        continue;
                }
                if (!in_header)
                        continue;
                if (has_prefix(&l, " AS \"")) {
                        const char *p = l.p + 5;
                        size_t rest = l.n - 5;
                        const char *q = span_find(p, rest, "\", root: ");
                        if (!q || !span_eq(p, (size_t)(q - p), "memory"))
                                continue;
                        const char *root = q + 9;
                        size_t rn = (size_t)(l.p + l.n - root);
                        const char *alias = span_find(root, rn, ", alias ");
                        if (alias)
                                rn = (size_t)(alias - root);
                        if (!span_eq(root, rn, "system"))
                                return fail(err, errlen, -EBADMSG,
                                            "line %zu: AS \"memory\" is rooted at '%.*s', not system", l.no,
                                            (int)(rn > 64 ? 64 : rn), root);
                        is_sys = true;
                        continue;
                }
                if (has_prefix(&l, " Root memory region: ")) {
                        size_t k = strlen(" Root memory region: ");
                        if (is_sys && !span_eq(l.p + k, l.n - k, "system"))
                                return fail(err, errlen, -EBADMSG,
                                            "line %zu: system flatview has root '%.*s'", l.no,
                                            (int)(l.n - k > 64 ? 64 : l.n - k), l.p + k);
                        continue;
                }
                in_header = false;
        }
        if (in_view && is_sys && found++ == 0)
                *ret = here;
        if (found == 0)
                return fail(err, errlen, -ENOENT,
                            "no system flatview (AS \"memory\", root: system) in the dump");
        if (found > 1)
                return fail(err, errlen, -EBADMSG, "%u system flatviews in the dump", found);
        return 0;
}

static bool is_ramlike(const struct mrange *m)
{
        /* rom: a read-only flat range of RAM, e.g. PAM-shadowed low RAM. */
        return m->type == RT_RAM || m->type == RT_ROM;
}

/* Regions QEMU lays over guest RAM: the file keeps the bytes underneath, but
 * the guest (and so this layout) sees a hole. */
static bool is_overlay(const struct mrange *m)
{
        return span_eq(m->name, m->name_len, "tseg-blackhole") ||
               span_eq(m->name, m->name_len, "smbase-blackhole") ||
               (m->name_len > 6 && memcmp(m->name, "synic-", 6) == 0);
}

struct backend {
        const char *name;
        size_t n;
};

static bool is_backend(const struct mrange *m, const struct backend *b)
{
        return is_ramlike(m) && m->name_len == b->n && memcmp(m->name, b->name, b->n) == 0;
}

/* Pass 1: validate the whole view and pick the backend: the RAM region that
 * maps the most bytes below 4 GiB at file offset == GPA (device RAM such as
 * vga.vram sits at offsets unrelated to its GPA). */
static int pick_backend(const struct cursor *body, struct backend *ret, bool *ret_any_off, char *err,
                        size_t errlen)
{
        struct {
                const char *name;
                size_t n;
                uint64_t bytes;
        } cand[MAX_CANDIDATES];
        size_t ncand = 0, nranges = 0;
        struct range_iter it = {.c = *body};
        struct mrange m;
        int r;

        *ret_any_off = false;
        while ((r = next_range(&it, &m, err, errlen)) > 0) {
                nranges++;
                if (m.has_off)
                        *ret_any_off = true;
                if (!is_ramlike(&m) || m.last >= GIB4 || m.off != m.start)
                        continue;
                size_t i;
                for (i = 0; i < ncand; i++)
                        if (cand[i].n == m.name_len && memcmp(cand[i].name, m.name, m.name_len) == 0)
                                break;
                if (i == ncand) {
                        if (ncand == MAX_CANDIDATES)
                                return fail(err, errlen, -EBADMSG, "more than %d RAM regions below 4 GiB",
                                            MAX_CANDIDATES);
                        cand[ncand].name = m.name;
                        cand[ncand].n = m.name_len;
                        cand[ncand].bytes = 0;
                        ncand++;
                }
                cand[i].bytes += m.last - m.start + 1; /* below 4 GiB: no overflow */
        }
        if (r < 0)
                return r;
        if (nranges == 0)
                return fail(err, errlen, -ENOENT, "system flatview has no ranges");
        size_t best = 0;
        bool tie = false;
        for (size_t i = 1; i < ncand; i++) {
                if (cand[i].bytes > cand[best].bytes) {
                        best = i;
                        tie = false;
                } else if (cand[i].bytes == cand[best].bytes) {
                        tie = true;
                }
        }
        if (ncand == 0)
                return fail(err, errlen, -ENOENT, "no guest RAM below 4 GiB in the system flatview");
        if (tie)
                return fail(err, errlen, -EBADMSG,
                            "ambiguous RAM backend: two regions map equal RAM below 4 GiB");
        if (cand[best].n >= MTREE_NAME_MAX)
                return fail(err, errlen, -EBADMSG, "RAM backend name longer than %d bytes",
                            MTREE_NAME_MAX - 1);
        ret->name = cand[best].name;
        ret->n = cand[best].n;
        return 0;
}

static int piece_extent(const struct mrange *m, uint64_t *ret_len, char *err, size_t errlen)
{
        uint64_t len = m->last - m->start + 1;
        if (len == 0 || m->off + len < m->off)
                return fail(err, errlen, -EBADMSG, "line %zu: RAM range overflows 64 bits", m->no);
        *ret_len = len;
        return 0;
}

/* With want_ranges false only `low` is filled: the split must not fail just
 * because RAM is in many pieces. */
static int derive(const char *text, size_t len, bool want_ranges, struct mtree_layout *out, char *err,
                  size_t errlen)
{
        struct cursor body;
        struct backend be = {NULL, 0};
        struct range_iter it;
        struct mrange m;
        bool any_off;
        int r;

        if (!text && len > 0)
                return fail(err, errlen, -EINVAL, "no text");
        r = find_system_view(text, len, &body, err, errlen);
        if (r < 0)
                return r;
        r = pick_backend(&body, &be, &any_off, err, errlen);
        if (r < 0)
                return r;

        /* Pass 2: where low RAM ends, and the file offset RAM above 4 GiB starts
         * at. A run of overlays right before the first high piece (a SynIC page
         * at 4 GiB) still belongs to high RAM, so it moves the base back. */
        uint64_t end_low = 0, low_hi = 0, delta = 0, chain_start = 0, chain_next = 0;
        bool have_high = false, chain = false;
        size_t pieces = 0;
        it = (struct range_iter){.c = body};
        while ((r = next_range(&it, &m, err, errlen)) > 0) {
                if (is_overlay(&m)) {
                        if (!chain || m.start != chain_next)
                                chain_start = m.start;
                        chain = m.last != UINT64_MAX;
                        chain_next = m.last + 1;
                        continue;
                }
                bool after_chain = chain && m.start == chain_next;
                chain = false;
                if (!is_backend(&m, &be))
                        continue;
                uint64_t plen = 0;
                r = piece_extent(&m, &plen, err, errlen);
                if (r < 0)
                        return r;
                pieces++;
                if (m.start < GIB4 && m.last >= GIB4)
                        return fail(err, errlen, -EBADMSG, "line %zu: RAM range straddles 4 GiB", m.no);
                if (m.start < GIB4) {
                        if (m.off == m.start && m.last + 1 > end_low)
                                end_low = m.last + 1;
                        continue; /* non-identity pieces are mirrors, checked below */
                }
                uint64_t base = have_high || !after_chain || chain_start < GIB4 ? m.start : chain_start;
                if (m.start - base > m.off)
                        return fail(err, errlen, -EBADMSG,
                                    "line %zu: RAM above 4 GiB at an impossible file offset", m.no);
                if (!have_high) {
                        have_high = true;
                        low_hi = m.off - (m.start - base);
                        delta = m.start - m.off;
                } else if (m.start - m.off != delta) {
                        return fail(err, errlen, -EBADMSG,
                                    "line %zu: RAM above 4 GiB is not one contiguous piece of the backend",
                                    m.no);
                }
        }
        if (r < 0)
                return r;
        if (pieces >= 2 && !any_off)
                return fail(err, errlen, -EBADMSG,
                            "no @offset in the system flatview (QEMU < 2.10?): file offsets unknown");

        /* Pass 3: blackholes over the top of low RAM (TSEG) are still RAM below
         * the PCI hole: skip them to find the hole's base. */
        it = (struct range_iter){.c = body};
        while ((r = next_range(&it, &m, err, errlen)) > 0)
                if (end_low != 0 && m.start == end_low && m.last < GIB4 && is_overlay(&m))
                        end_low = m.last + 1;
        if (r < 0)
                return r;
        if (end_low == 0)
                return fail(err, errlen, -ENOENT, "no guest RAM below 4 GiB in the system flatview");

        uint64_t low = end_low;
        if (have_high && low_hi != end_low)
                return fail(err, errlen, -EBADMSG,
                            "RAM above 4 GiB starts at file offset 0x%" PRIx64
                            " but the PCI hole starts at 0x%" PRIx64,
                            low_hi, end_low);
        if (low > GIB4 || low % PAGE_SIZE_4K != 0)
                return fail(err, errlen, -EBADMSG, "implausible below-4G split 0x%" PRIx64, low);

        /* Pass 4: the layout. Below 4 GiB only identity pieces count; the one
         * known exception is an alias above the split showing legacy SMRAM
         * (smram-open-high: 0xfeda0000 -> 0xa0000). Anything else means this
         * parser's model of the layout is wrong. */
        memset(out, 0, sizeof(*out));
        out->low = low;
        memcpy(out->backend, be.name, be.n);
        it = (struct range_iter){.c = body};
        while ((r = next_range(&it, &m, err, errlen)) > 0) {
                if (!is_backend(&m, &be))
                        continue;
                uint64_t plen = 0;
                r = piece_extent(&m, &plen, err, errlen);
                if (r < 0)
                        return r;
                if (m.start < GIB4 && m.off != m.start) {
                        if (m.start < low || m.off < LEGACY_LO || m.off + plen > LEGACY_HI)
                                return fail(err, errlen, -EBADMSG,
                                            "line %zu: RAM at 0x%" PRIx64 " maps file offset 0x%" PRIx64
                                            ": neither low RAM nor a legacy SMRAM alias",
                                            m.no, m.start, m.off);
                        continue;
                }
                if (!want_ranges)
                        continue;
                struct mtree_range *prev = out->n_ranges ? &out->ranges[out->n_ranges - 1] : NULL;
                if (prev && prev->gpa + prev->len == m.start && prev->file_offset + prev->len == m.off) {
                        prev->len += plen;
                } else {
                        if (out->n_ranges == MTREE_MAX_RANGES)
                                return fail(err, errlen, -E2BIG, "guest RAM in more than %d pieces",
                                            MTREE_MAX_RANGES);
                        out->ranges[out->n_ranges++] =
                            (struct mtree_range){.gpa = m.start, .len = plen, .file_offset = m.off};
                }
                if (m.off + plen > out->file_end)
                        out->file_end = m.off + plen;
        }
        if (r < 0)
                return r;
        return 0;
}

int mtree_ram_layout(const char *text, size_t len, struct mtree_layout *ret, char *err, size_t errlen)
{
        if (err && errlen > 0)
                err[0] = '\0';
        if (!ret)
                return fail(err, errlen, -EINVAL, "no output");
        struct mtree_layout tmp;
        int r = derive(text, len, true, &tmp, err, errlen);
        if (r < 0)
                return r;
        *ret = tmp;
        return 0;
}

int mtree_low_split(const char *text, size_t len, uint64_t *ret_low, char *err, size_t errlen)
{
        if (err && errlen > 0)
                err[0] = '\0';
        if (!ret_low)
                return fail(err, errlen, -EINVAL, "no output");
        struct mtree_layout tmp;
        int r = derive(text, len, false, &tmp, err, errlen);
        if (r < 0)
                return r;
        *ret_low = tmp.low;
        return 0;
}
