/* SPDX-License-Identifier: MIT */
/* The kind table: every kind has a complete row that agrees with the public
 * header, with docs/protocol.md §5.1 and with the public per-kind queries;
 * the body layouts tile their structs; the byte order is little-endian; and
 * the one CMD_MEMWRITE check gives the wire, the bus and
 * vmsig_memwrite_decode the same answer. */
/* cmocka needs these first */
// clang-format off
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>
// clang-format on

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <vmsig/bus.h>
#include <vmsig/memctx.h>

#include "bus_fixture.h"
#include "core/kinds.h"
#include "transport/wire.h"

static void test_every_kind_has_a_complete_row(void **state)
{
        unsigned rows = 0;

        for (uint32_t kind = 0; kind <= UINT16_MAX; kind++) {
                const struct kind_info *k = kind_info((uint16_t)kind);
                int up = vmsig_kind_is_up((uint16_t)kind), down = vmsig_kind_is_down((uint16_t)kind);

                /* A row exactly for the kinds of the public direction masks. */
                assert_int_equal(k != NULL, up || down);
                if (!k) {
                        assert_string_equal(vmsig_kind_name((uint16_t)kind), "?");
                        assert_int_equal(vmsig_kind_body_max((uint16_t)kind), -1);
                        continue;
                }
                rows++;
                assert_int_equal(k->dir, up ? KIND_UP : KIND_DOWN);
                assert_non_null(k->name);
                assert_true(k->name[0]);
                assert_string_equal(vmsig_kind_name((uint16_t)kind), k->name);
                assert_non_null(k->body);
                assert_non_null(k->body->format);
                assert_true(k->body->min <= k->body->size && k->body->size <= VMSIG_BODY_MAX);
                assert_int_equal(vmsig_kind_body_max((uint16_t)kind), k->body->size);
                assert_int_equal(vmsig_kind_seam((uint16_t)kind), k->seam);
                assert_int_equal(vmsig_kind_lease_class((uint16_t)kind), k->lease);
                assert_true(k->priority == VMSIG_PRIO_URGENT || k->priority == VMSIG_PRIO_HIGH ||
                            k->priority == VMSIG_PRIO_NORMAL || k->priority == VMSIG_PRIO_BULK);
                assert_int_equal(k->cap & ~(uint32_t)VMSIG_CAP_ALL, 0);
                assert_int_equal(k->flags & ~(uint32_t)(KIND_RETAINED | KIND_DROPPABLE | KIND_FF | KIND_CR3 |
                                                        KIND_TAIL | KIND_FD),
                                 0);

                struct vmsig_event ev;
                vmsig_event_init(&ev, (uint16_t)kind, 1, 0);
                assert_int_equal(ev.hdr.priority, k->priority);
                assert_int_equal(!!(ev.hdr.flags & VMSIG_F_DROPPABLE), !!(k->flags & KIND_DROPPABLE));

                if (k->dir == KIND_UP) {
                        /* UP: no seam to name, no lease; the command-only flags are not theirs. */
                        assert_int_equal(k->seam, -1);
                        assert_int_equal(k->lease, -1);
                        assert_int_equal(k->flags & (KIND_FF | KIND_CR3 | KIND_TAIL), 0);
                } else {
                        assert_true(k->seam >= VMSIG_SRC_CORE && k->seam < VMSIG_SRC_MAX_);
                        assert_true(k->lease >= -1 && k->lease < VMSIG_LEASE_CLASS_COUNT);
                        /* Every command needs a capability, except the lease
                         * commands (their class's, checked by the bus). */
                        assert_int_equal(k->cap == 0, k->seam == VMSIG_SRC_CORE);
                        assert_int_equal(k->flags & (KIND_RETAINED | KIND_FD), 0);
                        /* A variable body is a CMD_MEMWRITE head with data. */
                        if (k->body->min != k->body->size || (k->flags & KIND_TAIL))
                                assert_int_equal(kind, VMSIG_EV_CMD_MEMWRITE);
                }
        }
        assert_int_equal(rows, __builtin_popcountll(VMSIG_KINDS_ALL_UP | VMSIG_KINDS_ALL_DOWN));
}

static void test_layouts_tile_their_bodies(void **state)
{
        for (uint16_t kind = 0; kind <= VMSIG_EV_KIND_MAX_; kind++) {
                const struct kind_info *k = kind_info(kind);
                unsigned next = 0;

                if (!k)
                        continue;
                for (unsigned i = 0; i < k->body->nfields; i++) {
                        const struct kind_field *f = &k->body->fields[i];
                        /* in offset order, no gap, no overlap */
                        assert_int_equal(f->off, next);
                        assert_true(f->size > 0);
                        next = f->off + f->size;
                        assert_true(f->swap == 0 || f->swap == 2 || f->swap == 4 || f->swap == 8);
                        if (f->swap)
                                assert_int_equal(f->size % f->swap, 0);
                        switch ((enum kind_check)f->check) {
                        case KC_NONE:
                        case KC_ZERO:
                        case KC_STRING:
                                break;
                        case KC_BELOW:
                                assert_int_equal(f->size, 1);
                                assert_true(f->arg > 0);
                                break;
                        case KC_ERRNO:
                                assert_int_equal(f->size, 4);
                                break;
                        case KC_UNUSED:
                                assert_true(f->arg > 0);
                                assert_int_equal(f->size % f->arg, 0);
                                assert_true(f->arg2 < f->off);
                                break;
                        default:
                                fail_msg("%s: field at %u has check %u", k->name, f->off, f->check);
                        }
                }
                assert_int_equal(next, k->body->size);
        }
}

/* The source tree, from this file's own path (tests/unit/test_kinds.c). */
static char *source_file(const char *rel)
{
        static char path[4096];
        const char *end = strstr(__FILE__, "tests/unit/test_kinds.c");

        if (!end)
                return NULL;
        snprintf(path, sizeof(path), "%.*s%s", (int)(end - __FILE__), __FILE__, rel);
        return path;
}

/* Each enumerator of enum vmsig_kind has a row of its name, and
 * docs/protocol.md §5.1 has a line for each row that says the same. */
static void test_rows_match_the_enum_and_the_docs(void **state)
{
        char *path = source_file("include/vmsig/event.h");
        char line[512];
        unsigned enumerators = 0, documented = 0;
        FILE *f = path ? fopen(path, "re") : NULL;

        assert_non_null(f);
        while (fgets(line, sizeof(line), f)) {
                char name[64];
                unsigned v;
                if (sscanf(line, " VMSIG_EV_%63[A-Z0-9_] = %u,", name, &v) != 2)
                        continue;
                if (!strcmp(name, "NONE") || name[strlen(name) - 1] == '_')
                        continue; /* NONE and the range markers */
                assert_non_null(kind_info((uint16_t)v));
                assert_string_equal(kind_info((uint16_t)v)->name, name);
                enumerators++;
        }
        fclose(f);
        assert_int_equal(enumerators, __builtin_popcountll(VMSIG_KINDS_ALL_UP | VMSIG_KINDS_ALL_DOWN));

        f = fopen(source_file("docs/protocol.md"), "re");
        assert_non_null(f);
        bool in_kinds = false;
        while (fgets(line, sizeof(line), f)) {
                char name[64], dir[64], body[64], blen[128];
                unsigned v;
                if (!strncmp(line, "###", 3))
                        in_kinds = !strncmp(line, "### 5.1 Kinds", 13);
                if (!in_kinds)
                        continue;
                if (sscanf(line, "| %u | %63[A-Z0-9_] | %63[^|]| %63[^|]| %127[^|]|", &v, name, dir, body,
                           blen) != 5)
                        continue;
                const struct kind_info *k = kind_info((uint16_t)v);
                char want_dir[64], want_body[64];
                if (!k || strcmp(k->name, name))
                        fail_msg("docs/protocol.md: kind %u %s has no row of that name", v, name);
                snprintf(want_dir, sizeof(want_dir), k->dir == KIND_UP ? "UP " : "DOWN, %s ",
                         vmsig_source_name((uint8_t)k->seam));
                assert_string_equal(dir, want_dir);
                /* The body column starts with the layout's name ("lease" for
                 * both lease layouts). */
                snprintf(want_body, sizeof(want_body), "%.*s", (int)strcspn(k->body->name, "_"),
                         k->body->name);
                assert_memory_equal(body, want_body, strlen(want_body));
                if (k->body->min == k->body->size)
                        assert_int_equal(strtoul(blen, NULL, 10), k->body->size);
                documented++;
        }
        fclose(f);
        assert_int_equal(documented, enumerators);
}

/* Converted to little-endian field by field, and back: an involution. */
static void test_byteorder_is_little_endian(void **state)
{
        struct vmsig_ack_body a = {.result = -5, .cmd_kind = 0x0102, .value = 0x0102030405060708ull};
        struct vmsig_memctx_body m = {.epoch = 0x1122334455667788ull, .nranges = 1};
        uint8_t buf[VMSIG_BODY_MAX], want[VMSIG_BODY_MAX];

        strcpy(a.msg, "ok");
        memcpy(buf, &a, sizeof(a));
        kind_body_byteorder(VMSIG_EV_ACT_ACK, 0, buf, sizeof(a));
        memcpy(want, &a, sizeof(a));
        const uint8_t res[4] = {0xfb, 0xff, 0xff, 0xff}, kind[2] = {0x02, 0x01},
                      val[8] = {8, 7, 6, 5, 4, 3, 2, 1};
        memcpy(want, res, 4);
        memcpy(want + 4, kind, 2);
        memcpy(want + 8, val, 8);
        assert_memory_equal(buf, want, sizeof(a));
        kind_body_byteorder(VMSIG_EV_ACT_ACK, 0, buf, sizeof(a));
        assert_memory_equal(buf, &a, sizeof(a));

        /* memctx: every u64 of every range entry too */
        m.ranges[15].file_offset = 0x0102030405060708ull;
        memcpy(buf, &m, sizeof(m));
        kind_body_byteorder(VMSIG_EV_MEMCTX, 0, buf, sizeof(m));
        assert_memory_equal(buf + offsetof(struct vmsig_memctx_body, ranges[15].file_offset), val, 8);
        /* another codec: opaque */
        memcpy(buf, &m, sizeof(m));
        kind_body_byteorder(VMSIG_EV_MEMCTX, 1, buf, sizeof(m));
        assert_memory_equal(buf, &m, sizeof(m));
}

/* ---- CMD_MEMWRITE ---- */

static struct vmsig_event mw_event(uint32_t len, uint32_t flags, uint32_t inline_bytes, bool src_tail)
{
        struct vmsig_event ev;
        struct vmsig_memwrite_body b = {.addr = 0x1000, .len = len, .flags = flags};

        vmsig_event_init(&ev, VMSIG_EV_CMD_MEMWRITE, 1, VMSIG_SRC_MEMCTX);
        memset(b.data, 'd', sizeof(b.data));
        vmsig_event_set_body(&ev, &b, offsetof(struct vmsig_memwrite_body, data) + inline_bytes);
        if (src_tail)
                ev.hdr.flags |= VMSIG_F_SRC_PAYLOAD;
        return ev;
}

static void test_memwrite_check_faults_in_order(void **state)
{
        static char tail[4096];
        struct vmsig_memwrite_req req;
        struct vmsig_event ev;

        ev = mw_event(4, 0, 4, false);
        assert_int_equal(memwrite_check(&ev, true, NULL, 0, 4, &req), MW_OK);
        assert_int_equal(req.len, 4);
        assert_ptr_equal(req.src, ev.body + 16);
        assert_int_equal(memwrite_check(&ev, true, NULL, 0, 3, NULL), MW_E_BOUND);
        ev.hdr.body_len = 15;
        assert_int_equal(memwrite_check(&ev, true, NULL, 0, 4, NULL), MW_E_BODY);
        ev = mw_event(4, 0x2, 4, false);
        assert_int_equal(memwrite_check(&ev, true, NULL, 0, 4, NULL), MW_E_FLAGS);
        ev = mw_event(8, VMSIG_MEMWRITE_PHYS, 4, false);
        assert_int_equal(memwrite_check(&ev, true, NULL, 0, 100, NULL), MW_E_SIZE);
        /* Sizes are judged before the zero length. */
        ev = mw_event(0, 0, 4, false);
        assert_int_equal(memwrite_check(&ev, true, NULL, 0, 100, NULL), MW_E_SIZE);
        ev = mw_event(0, 0, 0, false);
        assert_int_equal(memwrite_check(&ev, true, NULL, 0, 100, NULL), MW_E_ZERO);
        ev = mw_event(4, 0, 4, false);
        assert_int_equal(memwrite_check(&ev, true, tail, 4, 100, NULL), MW_E_TAIL);

        /* With a tail: the body is the head alone, the tail has len bytes. */
        ev = mw_event(sizeof(tail), 0, 0, true);
        assert_int_equal(memwrite_check(&ev, false, NULL, 0, UINT64_MAX, &req), MW_OK);
        assert_null(req.src);
        assert_int_equal(memwrite_check(&ev, true, tail, sizeof(tail), sizeof(tail), &req), MW_OK);
        assert_ptr_equal(req.src, tail);
        assert_int_equal(memwrite_check(&ev, true, tail, sizeof(tail), sizeof(tail) - 1, NULL), MW_E_BOUND);
        assert_int_equal(memwrite_check(&ev, true, tail, 10, sizeof(tail), NULL), MW_E_SIZE);
        assert_int_equal(memwrite_check(&ev, true, NULL, sizeof(tail), sizeof(tail), NULL), MW_E_TAIL);
        ev.hdr.body_len = 20;
        assert_int_equal(memwrite_check(&ev, false, NULL, 0, UINT64_MAX, NULL), MW_E_SIZE);
}

/* The wire and vmsig_memwrite_decode agree with the one check on every
 * combination of sizes, flags and tail. */
static void test_memwrite_paths_agree(void **state)
{
        static const uint32_t lens[] = {0, 1, 4, 439, 440, 441, 4096};
        static const uint32_t inl[] = {0, 1, 4, 439, 440};
        static const uint32_t flags[] = {0, VMSIG_MEMWRITE_PHYS, 2, 0x80000000u};
        static char tail[4096];

        for (size_t a = 0; a < sizeof(lens) / sizeof(lens[0]); a++)
                for (size_t b = 0; b < sizeof(inl) / sizeof(inl[0]); b++)
                        for (size_t c = 0; c < sizeof(flags) / sizeof(flags[0]); c++)
                                for (int t = 0; t < 2; t++) {
                                        struct vmsig_event ev = mw_event(lens[a], flags[c], inl[b], t);
                                        struct vmsig_memwrite_req req;
                                        enum memwrite_fault frame =
                                            memwrite_check(&ev, false, NULL, 0, UINT64_MAX, NULL);
                                        enum memwrite_fault full = memwrite_check(
                                            &ev, true, t ? tail : NULL, t ? lens[a] : 0, UINT64_MAX, NULL);
                                        enum wire_err want = frame == MW_E_BODY || frame == MW_E_SIZE
                                                                 ? WIRE_E_BODY_KIND
                                                             : frame == MW_E_FLAGS ? WIRE_E_FIELD
                                                                                   : WIRE_OK;
                                        assert_int_equal(wire_check_event(&ev, true), want);
                                        assert_int_equal(vmsig_memwrite_decode(&ev, t ? tail : NULL,
                                                                               t ? lens[a] : 0, &req),
                                                         full == MW_OK ? 0 : -EINVAL);
                                }
}

TAD_OPS(memctx_ops, VMSIG_SRC_MEMCTX);

static const struct vmsig_ack_body *ack_for(const struct rec *r, uint64_t corr)
{
        for (unsigned i = 0; i < r->n; i++)
                if (r->ev[i].hdr.kind == VMSIG_EV_ACT_ACK && r->ev[i].hdr.corr == corr)
                        return (const struct vmsig_ack_body *)r->ev[i].body;
        return NULL;
}

/* The bus refuses with the same check, before the adapter sees anything;
 * unknown body flags included (the adapter used to be the one to notice). */
static void test_memwrite_refused_by_the_bus(void **state)
{
        struct vmsig_bus_limits lim;
        struct vmsig_bus *bus;
        struct rec r;
        uint32_t ep;
        const struct {
                struct vmsig_event ev;
                int32_t result;
                const char *msg;
        } cases[] = {
            {mw_event(4, 0x2, 4, false), -EINVAL, "flags 0x2"},
            {mw_event(0, 0, 0, false), -EINVAL, "of 0 bytes"},
            {mw_event(8, 0, 4, false), -EINVAL, "carries 4 inline"},
            {mw_event(200, 0, 200, false), -EMSGSIZE, "exceeds the 100-byte bound"},
            {mw_event(4, VMSIG_MEMWRITE_PHYS, 4, false), 0, "done"},
        };

        vmsig_bus_limits_default(&lim);
        lim.memwrite_max = 100;
        assert_int_equal(vmsig_bus_new(&lim, &bus), 0);
        assert_int_equal(vmsig_bus_endpoint_add(bus, "vm", &ep), 0);
        assert_int_equal(vmsig_bus_attach(bus, ep, &memctx_ops, NULL), 0);
        struct tad *t = tad_last;
        struct vmsig_control *c = rec_control(bus, &r, "writer", VMSIG_CAP_ALL);
        assert_int_equal(vmsig_control_lease_acquire(c, ep, VMSIG_LEASE_MEMWRITE, 1), 0);
        pump(bus, 1);
        for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct vmsig_event ev = cases[i].ev;
                ev.hdr.endpoint = ep;
                ev.hdr.corr = 10 + i;
                assert_int_equal(vmsig_control_send(c, &ev), 0);
        }
        pump(bus, 2);
        for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                const struct vmsig_ack_body *a = ack_for(&r, 10 + i);
                assert_non_null(a);
                assert_int_equal(a->result, cases[i].result);
                if (!strstr(a->msg, cases[i].msg))
                        fail_msg("case %u: '%s' lacks '%s'", i, a->msg, cases[i].msg);
        }
        assert_int_equal(t->submits, 1); /* only the good one */
        vmsig_bus_free(bus);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_every_kind_has_a_complete_row),
            cmocka_unit_test(test_layouts_tile_their_bodies),
            cmocka_unit_test(test_rows_match_the_enum_and_the_docs),
            cmocka_unit_test(test_byteorder_is_little_endian),
            cmocka_unit_test(test_memwrite_check_faults_in_order),
            cmocka_unit_test(test_memwrite_paths_agree),
            cmocka_unit_test(test_memwrite_refused_by_the_bus),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
