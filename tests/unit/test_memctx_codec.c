/* SPDX-License-Identifier: MIT */
/* The MEMCTX body codec: the kernel base in the once-reserved bytes 20..23,
 * its 32-bit form, and what a body without it (an older daemon) decodes to. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <vmsig/memctx.h>

static void one_range(struct vmsig_memctx *c)
{
        memset(c, 0, sizeof(*c));
        c->epoch = 7;
        c->kernel_root = 0x1aa000;
        c->paging = VMSIG_PAGING_4LEVEL;
        c->os_kind = VMSIG_OS_LINUX;
        c->nranges = 1;
        c->ranges[0] = (struct vmsig_ram_range){0, 256u << 20, 0};
        c->fd = 5;
}

static void roundtrip(const struct vmsig_memctx *in, int valid, struct vmsig_memctx *out,
                      struct vmsig_memctx_body *body)
{
        struct vmsig_event ev;
        assert_int_equal(vmsig_memctx_to_body(in, valid, body), 0);
        vmsig_event_init(&ev, VMSIG_EV_MEMCTX, 3, VMSIG_SRC_MEMCTX);
        vmsig_event_set_body(&ev, body, sizeof(*body));
        assert_int_equal(vmsig_memctx_from_event(&ev, 9, out), 0);
}

static void test_kbase_wire_offset(void **state)
{
        (void)state;
        /* docs/protocol.md §5.2: bytes 20..23, little-endian u32. */
        assert_int_equal(offsetof(struct vmsig_memctx_body, kernel_base_pg), 20);
        assert_int_equal(sizeof(((struct vmsig_memctx_body *)0)->kernel_base_pg), 4);
        assert_int_equal(sizeof(struct vmsig_memctx_body), 408);
}

static void test_kbase_roundtrip(void **state)
{
        (void)state;
        static const uint64_t ok[] = {
            0xffffffff81000000ull, /* Linux, nokaslr */
            0xffffffff9a600000ull, /* Linux, KASLR */
            0xfffff80212200000ull, /* Windows ntoskrnl */
            0xfffff00000001000ull, /* lowest representable */
            0xfffffffffffff000ull, /* highest */
        };
        struct vmsig_memctx c, d;
        struct vmsig_memctx_body b;
        for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
                one_range(&c);
                c.kernel_base = ok[i];
                roundtrip(&c, 1, &d, &b);
                assert_int_equal(d.kernel_base, ok[i]);
                assert_int_equal(vmsig_memctx_kbase_decode(vmsig_memctx_kbase_encode(ok[i])), ok[i]);
                assert_int_equal(d.fd, 9);
                assert_int_equal(d.kernel_root, 0x1aa000);
        }
        /* The bytes on the wire: 0xffffffff9a600000 -> 0xfff9a600. */
        one_range(&c);
        c.kernel_base = 0xffffffff9a600000ull;
        roundtrip(&c, 1, &d, &b);
        const uint8_t *raw = (const uint8_t *)&b;
        assert_int_equal(raw[20] | raw[21] << 8 | raw[22] << 16 | (uint32_t)raw[23] << 24, 0xfff9a600u);
}

static void test_kbase_not_representable(void **state)
{
        (void)state;
        static const uint64_t bad[] = {
            0,
            0xffffffff81000123ull, /* not page aligned */
            0xffffe00000000000ull, /* below the window (5-level space) */
            0xfffff00000000000ull, /* would encode as 0 = unknown */
            0x0000000001000000ull, /* a user address */
        };
        struct vmsig_memctx c, d;
        struct vmsig_memctx_body b;
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                one_range(&c);
                c.kernel_base = bad[i];
                roundtrip(&c, 1, &d, &b);
                assert_int_equal(b.kernel_base_pg, 0);
                assert_int_equal(d.kernel_base, 0);
        }
}

static void test_kbase_invalidated_and_older_daemon(void **state)
{
        (void)state;
        struct vmsig_memctx c, d;
        struct vmsig_memctx_body b;
        /* An invalidation carries no base, whatever the context held. */
        one_range(&c);
        c.kernel_base = 0xffffffff81000000ull;
        roundtrip(&c, 0, &d, &b);
        assert_int_equal(b.kernel_base_pg, 0);
        assert_int_equal(d.kernel_base, 0);
        assert_int_equal(d.fd, -1);
        /* A daemon from before the field sends zero there: unknown. */
        one_range(&c);
        roundtrip(&c, 1, &d, &b);
        assert_int_equal(d.kernel_base, 0);
        /* Malformed bodies are still refused, base or not. */
        struct vmsig_event ev;
        b.nranges = VMSIG_MEMCTX_MAX_RANGES + 1;
        b.kernel_base_pg = 0xfff9a600u;
        vmsig_event_init(&ev, VMSIG_EV_MEMCTX, 3, VMSIG_SRC_MEMCTX);
        vmsig_event_set_body(&ev, &b, sizeof(b));
        assert_int_equal(vmsig_memctx_from_event(&ev, 9, &d), -EBADMSG);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_kbase_wire_offset),
            cmocka_unit_test(test_kbase_roundtrip),
            cmocka_unit_test(test_kbase_not_representable),
            cmocka_unit_test(test_kbase_invalidated_and_older_daemon),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
