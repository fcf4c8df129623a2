/* SPDX-License-Identifier: MIT */
/* `info mtree -f` parser against dumps captured from real QEMU 7.2 (see
 * data/capture.sh), hand-written decoy/old-format dumps, and bad inputs that
 * must fail closed with a reason. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "host/mtree.h"

#define G UINT64_C(0x40000000)
#define M UINT64_C(0x100000)

/* Exactly `len` bytes on the heap, no NUL: ASan catches any read past it. */
static char *load(const char *name, size_t *ret_len)
{
        const char *dir = getenv("VMSIG_TEST_DATA");
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir ? dir : "tests/host/data", name);
        FILE *f = fopen(path, "rb");
        if (!f)
                fail_msg("cannot open %s", path);
        assert_int_equal(fseek(f, 0, SEEK_END), 0);
        long n = ftell(f);
        assert_true(n > 0);
        rewind(f);
        char *buf = malloc((size_t)n);
        assert_non_null(buf);
        assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
        fclose(f);
        *ret_len = (size_t)n;
        return buf;
}

static char *to_crlf(const char *s, size_t n, size_t *ret_len)
{
        char *out = malloc(2 * n + 1);
        assert_non_null(out);
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
                if (s[i] == '\n')
                        out[k++] = '\r';
                out[k++] = s[i];
        }
        *ret_len = k;
        return out;
}

struct expect {
        const char *file;
        uint64_t low;
        const char *backend;
        size_t n;
        struct mtree_range r[6];
};

/* What QEMU 7.2 does (hw/i386/pc_piix.c, pc_q35.c): pc caps low RAM at
 * 0xe0000000, and at 0xc0000000 once RAM reaches that; q35 keeps 0xb0000000,
 * or 0x80000000 once RAM reaches 0xb0000000; max-ram-below-4g lowers both.
 * The rest starts at 4 GiB at file offset == low. */
static const struct expect good[] = {
    {"pc-512m.txt", 512 * M, "ram0", 2, {{0, 0xc0000, 0}, {M, 511 * M, M}}},
    {"pc-4g.txt", 3 * G, "ram0", 3, {{0, 0xc0000, 0}, {M, 3 * G - M, M}, {4 * G, G, 3 * G}}},
    {"pc-3584m.txt", 3 * G, "ram0", 3, {{0, 0xc0000, 0}, {M, 3 * G - M, M}, {4 * G, 512 * M, 3 * G}}},
    {"pc-4g-below2g.txt", 2 * G, "ram0", 3, {{0, 0xc0000, 0}, {M, 2 * G - M, M}, {4 * G, 2 * G, 2 * G}}},
    {"q35-512m.txt", 512 * M, "ram0", 2, {{0, 0xc0000, 0}, {M, 511 * M, M}}},
    {"q35-512m-dispatch.txt", 512 * M, "ram0", 2, {{0, 0xc0000, 0}, {M, 511 * M, M}}},
    {"q35-5g.txt", 2 * G, "ram0", 3, {{0, 0xc0000, 0}, {M, 2 * G - M, M}, {4 * G, 3 * G, 2 * G}}},
    {"q35-5g-owners.txt", 2 * G, "ram0", 3, {{0, 0xc0000, 0}, {M, 2 * G - M, M}, {4 * G, 3 * G, 2 * G}}},
    {"q35-2816m.txt", 2 * G, "ram0", 3, {{0, 0xc0000, 0}, {M, 2 * G - M, M}, {4 * G, 768 * M, 2 * G}}},
    {"q35-4g-below1g.txt", G, "ram0", 3, {{0, 0xc0000, 0}, {M, G - M, M}, {4 * G, 3 * G, G}}},
    /* OVMF + SMM: smbase-blackhole at 0x30000, tseg-blackhole over the top
     * 16 MiB of low RAM. The split is still the RAM size / 2 GiB. */
    {"q35-ovmf-smm-1g.txt",
     G,
     "ram0",
     3,
     {{0, 0x30000, 0}, {0x50000, 0x70000, 0x50000}, {M, G - 16 * M - M, M}}},
    /* ... plus a VGA card: vga.vram at 0xa0000 and in the PCI hole, and
     * PAM-shadowed RAM at 0xc0000 (read-only, still the backend). */
    {"q35-ovmf-smm-5g.txt",
     2 * G,
     "ram0",
     5,
     {{0, 0x30000, 0},
      {0x50000, 0x50000, 0x50000},
      {0xc0000, 0x4000, 0xc0000},
      {M, 2 * G - 16 * M - M, M},
      {4 * G, 3 * G, 2 * G}}},
    /* Decoys first (cpu-smm, a bus master, KVM-SMRAM), SynIC pages in low
     * and high RAM, smram-open-high, nvdimm, pc-dimm, KVM suffixes. */
    {"synthetic-decoy-first.txt",
     3 * G,
     "pc.ram",
     6,
     {{0, 0xa0000, 0},
      {0xc0000, 0x8000, 0xc0000},
      {M, 0xfff0000 - M, M},
      {0xfff2000, 3 * G - 0xfff2000, 0xfff2000},
      {4 * G, 3 * G, 3 * G},
      {7 * G + 0x1000, 2 * G - 0x1000, 6 * G + 0x1000}}},
    {"old-format-2.10.txt",
     3 * G,
     "pc.ram",
     4,
     {{0, 0xa0000, 0}, {0xc0000, 0xa000, 0xc0000}, {M, 3 * G - M, M}, {4 * G, 2 * G, 3 * G}}},
};

static void check_layout(const struct expect *e, const char *text, size_t len)
{
        struct mtree_layout l;
        char err[256] = "x";
        uint64_t low = 0;

        int r = mtree_ram_layout(text, len, &l, err, sizeof(err));
        if (r != 0)
                fail_msg("%s: %d %s", e->file, r, err);
        assert_string_equal(err, "");
        assert_int_equal(l.low, e->low);
        assert_string_equal(l.backend, e->backend);
        assert_int_equal(l.n_ranges, e->n);
        uint64_t file_end = 0;
        for (size_t i = 0; i < e->n; i++) {
                if (l.ranges[i].gpa != e->r[i].gpa || l.ranges[i].len != e->r[i].len ||
                    l.ranges[i].file_offset != e->r[i].file_offset)
                        fail_msg("%s range %zu: got %#" PRIx64 "+%#" PRIx64 "@%#" PRIx64, e->file, i,
                                 l.ranges[i].gpa, l.ranges[i].len, l.ranges[i].file_offset);
                if (e->r[i].file_offset + e->r[i].len > file_end)
                        file_end = e->r[i].file_offset + e->r[i].len;
        }
        assert_int_equal(l.file_end, file_end);

        assert_int_equal(mtree_low_split(text, len, &low, err, sizeof(err)), 0);
        assert_int_equal(low, e->low);
}

static void test_good_dumps(void **state)
{
        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
                size_t len, crlf_len;
                char *text = load(good[i].file, &len);
                check_layout(&good[i], text, len);
                char *crlf = to_crlf(text, len, &crlf_len);
                check_layout(&good[i], crlf, crlf_len);
                free(crlf);
                free(text);
        }
}

struct bad {
        const char *file;
        int err;
        const char *reason; /* substring of the message */
};

static const struct bad bad[] = {
    {"bad-no-system-view.txt", -ENOENT, "no system flatview"},
    {"bad-empty-system-view.txt", -ENOENT, "empty"},
    {"bad-high-offset-mismatch.txt", -EBADMSG, "PCI hole"},
    {"bad-truncated-line.txt", -EBADMSG, "malformed"},
    {"bad-truncated-view.txt", -EBADMSG, "truncated"},
    {"bad-garbage-line.txt", -EBADMSG, "control character"},
    {"bad-garbage.txt", -ENOENT, "no system flatview"},
    {"bad-tree-q35-5g.txt", -EBADMSG, "tree"},
    {"bad-old-format-2.9-no-offsets.txt", -EBADMSG, "@offset"},
    {"bad-root-not-system.txt", -EBADMSG, "not system"},
    {"bad-two-system-views.txt", -EBADMSG, "2 system flatviews"},
    {"bad-overlapping.txt", -EBADMSG, "overlapping"},
    {"bad-not-identity.txt", -EBADMSG, "neither low RAM"},
};

static void expect_fail(const char *what, const char *text, size_t len, int want, const char *reason)
{
        struct mtree_layout l;
        memset(&l, 0xa5, sizeof(l));
        struct mtree_layout untouched = l;
        uint64_t low = 42;
        char err[256] = "";

        int r = mtree_ram_layout(text, len, &l, err, sizeof(err));
        if (r != want || !strstr(err, reason))
                fail_msg("%s: layout %d '%s', want %d '%s'", what, r, err, want, reason);
        assert_memory_equal(&l, &untouched, sizeof(l));
        err[0] = '\0';
        r = mtree_low_split(text, len, &low, err, sizeof(err));
        if (r != want || !strstr(err, reason))
                fail_msg("%s: split %d '%s', want %d '%s'", what, r, err, want, reason);
        assert_int_equal(low, 42);
}

static void test_bad_dumps(void **state)
{
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                size_t len;
                char *text = load(bad[i].file, &len);
                expect_fail(bad[i].file, text, len, bad[i].err, bad[i].reason);
                free(text);
        }
}

/* Inline dumps: a header, the system view's range lines, a closing blank. */
static void run_inline(const char *ranges, int want, const char *reason, uint64_t want_low)
{
        char buf[8192];
        int n =
            snprintf(buf, sizeof(buf),
                     "FlatView #0\n AS \"memory\", root: system\n Root memory region: system\n%s\n", ranges);
        assert_true(n > 0 && (size_t)n < sizeof(buf));
        char *text = malloc((size_t)n);
        assert_non_null(text);
        memcpy(text, buf, (size_t)n);
        if (want == 0) {
                uint64_t low = 0;
                char err[256];
                int r = mtree_low_split(text, (size_t)n, &low, err, sizeof(err));
                if (r != 0)
                        fail_msg("%d %s", r, err);
                assert_int_equal(low, want_low);
        } else {
                expect_fail(ranges, text, (size_t)n, want, reason);
        }
        free(text);
}

static void test_inline_cases(void **state)
{
        /* A SynIC page right at 4 GiB: high RAM still starts at file offset low. */
        run_inline("  0000000000000000-000000007fffffff (prio 0, ram): ram0\n"
                   "  0000000100000000-0000000100000fff (prio 0, ram): synic-0-msg-page kvm\n"
                   "  0000000100001000-000000013fffffff (prio 0, ram): ram0 @0000000080001000 kvm\n",
                   0, NULL, 2 * G);
        /* tseg-blackhole over the top of low RAM, RAM above 4 GiB. */
        run_inline("  0000000000000000-000000007effffff (prio 0, ram): ram0\n"
                   "  000000007f000000-000000007fffffff (prio 1, i/o): tseg-blackhole\n"
                   "  0000000100000000-000000013fffffff (prio 0, ram): ram0 @0000000080000000\n",
                   0, NULL, 2 * G);
        /* A 1 TiB-hole style move: high RAM above 1 TiB, offset still == low. */
        run_inline("  0000000000000000-00000000bfffffff (prio 0, ram): ram0\n"
                   "  0000010000000000-000001003fffffff (prio 0, ram): ram0 @00000000c0000000\n",
                   0, NULL, 3 * G);
        /* The AS "memory" line may carry an alias tail. */
        {
                const char *t = "FlatView #3\r\n AS \"memory\", root: system, alias x\r\n"
                                "  0000000000000000-000000001fffffff (prio 0, nv-ram): ram0\r\n\r\n";
                uint64_t low = 0;
                assert_int_equal(mtree_low_split(t, strlen(t), &low, NULL, 0), 0);
                assert_int_equal(low, 512 * M);
        }
        /* A trap for the old bug: the first run at GPA 0 is tiny, the split is not. */
        run_inline("  0000000000000000-0000000000000fff (prio 0, ram): ram0\n"
                   "  0000000000001000-0000000000001fff (prio 0, ram): synic-0-msg-page\n"
                   "  0000000000002000-00000000bfffffff (prio 0, ram): ram0 @0000000000002000\n"
                   "  0000000100000000-000000013fffffff (prio 0, ram): ram0 @00000000c0000000\n",
                   0, NULL, 3 * G);
}

static void test_inline_failures(void **state)
{
        run_inline("  0000000000000000-000000000009ffff (prio 0, ram): ram0\n"
                   "  0000000000100000-000000017fffffff (prio 0, ram): ram0 @0000000000100000\n",
                   -EBADMSG, "straddles", 0);
        run_inline("  0000000000000000-000000007fffffff (prio 0, ram): ram0\n"
                   "  0000000100000000-000000013fffffff (prio 0, ram): ram0 @0000000080000000\n"
                   "  0000000140000000-000000017fffffff (prio 0, ram): ram0 @0000000100000000\n",
                   -EBADMSG, "contiguous", 0);
        run_inline("  0000000000000000-000000000009ffff (prio 0, ram): a\n"
                   "  0000000000100000-000000000019ffff (prio 0, ram): b @0000000000100000\n",
                   -EBADMSG, "ambiguous", 0);
        run_inline("  0000000000000000-0000000000000fff (prio 0, i/o): x\n", -ENOENT, "no guest RAM", 0);
        run_inline("  00000000000000000-0000000000000fff (prio 0, ram): ram0\n", -EBADMSG, "malformed", 0);
        run_inline("  0000000000000000-0000000000000fff (prio 0, ram): \n", -EBADMSG, "name", 0);
        run_inline("  0000000000000000-0000000000000fff (prio 0, ram): \x01ram0\n", -EBADMSG, "control", 0);
        run_inline("  0000000000001000-0000000000000fff (prio 0, ram): ram0\n", -EBADMSG, "ends before", 0);
        run_inline("  0000000000000000-0000000000000fff (prio 0 ram): ram0\n", -EBADMSG, "priority", 0);
        run_inline("  0000000000000000-0000000000000fff (prio 0, ram) ram0\n", -EBADMSG, "type", 0);
        run_inline("  0000000000000000-0000000000000fff (prio 0, ram): ram0\n"
                   "    0000000000000000-0000000000000fff (prio 0, ram): ram0\n",
                   -EBADMSG, "tree", 0);
        run_inline("  0000000000000000-00000000000fffff (prio 0, ram): ram0\n"
                   "  0000000000100000-0000000000100fff (prio 0, ram): ram0 @0000000000100000\n"
                   "  0000000100000000-000000013fffffff (prio 0, ram): ram0 @0000000000200000\n",
                   -EBADMSG, "PCI hole", 0);
        run_inline("  0000000000000000-0000000000000fff (prio 0, ram): ram0\n"
                   "garbage at column zero\n",
                   -EBADMSG, "unexpected", 0);
        run_inline("  0000000000000000-000000001fffffff (prio 0, ram): ram0\n"
                   "  0000000100000000-00000001ffffffff (prio 0, ram): ram0 @ffffffffffff0000\n",
                   -EBADMSG, "overflows", 0);
}

/* Too many pieces: the layout refuses, the split (one number) does not. */
static void test_too_many_ranges(void **state)
{
        char buf[16384];
        size_t n = (size_t)snprintf(buf, sizeof(buf), "FlatView #0\n AS \"memory\", root: system\n");
        for (unsigned i = 0; i < 20; i++) {
                uint64_t a = (uint64_t)i * 0x2000;
                n += (size_t)snprintf(buf + n, sizeof(buf) - n,
                                      "  %016" PRIx64 "-%016" PRIx64 " (prio 0, ram): ram0 @%016" PRIx64 "\n"
                                      "  %016" PRIx64 "-%016" PRIx64 " (prio 0, ram): synic-%u-msg-page\n",
                                      a, a + 0xfff, a, a + 0x1000, a + 0x1fff, i);
        }
        n +=
            (size_t)snprintf(buf + n, sizeof(buf) - n,
                             "  0000000000028000-00000000bfffffff (prio 0, ram): ram0 @0000000000028000\n"
                             "  0000000100000000-000000013fffffff (prio 0, ram): ram0 @00000000c0000000\n\n");
        assert_true(n < sizeof(buf));
        struct mtree_layout l;
        char err[128];
        assert_int_equal(mtree_ram_layout(buf, n, &l, err, sizeof(err)), -E2BIG);
        assert_non_null(strstr(err, "pieces"));
        uint64_t low = 0;
        assert_int_equal(mtree_low_split(buf, n, &low, err, sizeof(err)), 0);
        assert_int_equal(low, 3 * G);
}

/* Every prefix of a real dump: no crash, no read past len, and never a
 * different answer than the whole dump gives. */
static void test_truncation_sweep(void **state)
{
        static const char *const files[] = {"q35-ovmf-smm-5g.txt", "synthetic-decoy-first.txt",
                                            "old-format-2.10.txt"};
        for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
                size_t len;
                char *text = load(files[f], &len);
                uint64_t full = 0, low;
                char err[128];
                assert_int_equal(mtree_low_split(text, len, &full, err, sizeof(err)), 0);
                for (size_t cut = 0; cut < len; cut++) {
                        char *p = malloc(cut ? cut : 1);
                        assert_non_null(p);
                        memcpy(p, text, cut);
                        int r = mtree_low_split(p, cut, &low, err, sizeof(err));
                        if (r == 0)
                                assert_int_equal(low, full);
                        else
                                assert_true(err[0] != '\0');
                        free(p);
                }
                free(text);
        }
}

static void test_arguments(void **state)
{
        struct mtree_layout l;
        uint64_t low;
        char err[8];
        const char *t = "FlatView #0\n AS \"memory\", root: system\n"
                        "  0000000000000000-000000001fffffff (prio 0, ram): ram0\n\n";

        assert_int_equal(mtree_low_split(t, strlen(t), NULL, err, sizeof(err)), -EINVAL);
        assert_int_equal(mtree_ram_layout(t, strlen(t), NULL, NULL, 0), -EINVAL);
        assert_int_equal(mtree_low_split(NULL, 0, &low, err, sizeof(err)), -ENOENT);
        assert_int_equal(mtree_low_split(NULL, 5, &low, NULL, 0), -EINVAL);
        /* The reason is truncated to the buffer, always terminated. */
        assert_int_equal(mtree_low_split("x", 1, &low, err, sizeof(err)), -ENOENT);
        assert_int_equal(strlen(err), sizeof(err) - 1);
        assert_int_equal(mtree_ram_layout(t, strlen(t), &l, NULL, 0), 0);
        assert_int_equal(l.low, 512 * M);
        assert_int_equal(l.n_ranges, 1);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_good_dumps),      cmocka_unit_test(test_bad_dumps),
            cmocka_unit_test(test_inline_cases),    cmocka_unit_test(test_inline_failures),
            cmocka_unit_test(test_too_many_ranges), cmocka_unit_test(test_truncation_sweep),
            cmocka_unit_test(test_arguments),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
