/* SPDX-License-Identifier: MIT */
/* Event helpers adapters rely on: MEMWRITE decoding, ACK filling, the
 * per-kind tables the core checks commands against. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include <vmsig/event.h>

static struct vmsig_event memwrite(uint64_t addr, uint32_t len, const void *inline_src, size_t inline_len)
{
        struct vmsig_event ev;
        struct vmsig_memwrite_body b = {.addr = addr, .len = len};
        vmsig_event_init(&ev, VMSIG_EV_CMD_MEMWRITE, 1, VMSIG_SRC_MEMCTX);
        if (inline_len)
                memcpy(b.data, inline_src, inline_len);
        vmsig_event_set_body(&ev, &b, offsetof(struct vmsig_memwrite_body, data) + inline_len);
        return ev;
}

static void test_memwrite_decode(void **state)
{
        struct vmsig_memwrite_req req;
        struct vmsig_event ev = memwrite(0x1000, 4, "abcd", 4);

        assert_int_equal(vmsig_memwrite_decode(&ev, NULL, 0, &req), 0);
        assert_int_equal(req.addr, 0x1000);
        assert_int_equal(req.len, 4);
        assert_memory_equal(req.src, "abcd", 4);
        assert_ptr_equal(req.src, ev.body + offsetof(struct vmsig_memwrite_body, data)); /* no copy */

        /* Payload form: body is the 16-byte head, bytes beside it. */
        ev = memwrite(0x2000, 5, NULL, 0);
        ev.hdr.flags |= VMSIG_F_SRC_PAYLOAD;
        assert_int_equal(vmsig_memwrite_decode(&ev, "hello", 5, &req), 0);
        assert_memory_equal(req.src, "hello", 5);
        assert_int_equal(vmsig_memwrite_decode(&ev, "hell", 4, &req), -EINVAL); /* sizes disagree */
        assert_int_equal(vmsig_memwrite_decode(&ev, NULL, 0, &req), -EINVAL);   /* payload missing */

        /* Malformed inline forms. */
        ev = memwrite(0x1000, 8, "abcd", 4); /* says 8, carries 4 */
        assert_int_equal(vmsig_memwrite_decode(&ev, NULL, 0, &req), -EINVAL);
        ev = memwrite(0x1000, 0, NULL, 0); /* zero length */
        assert_int_equal(vmsig_memwrite_decode(&ev, NULL, 0, &req), -EINVAL);
        ev = memwrite(0x1000, 4, "abcd", 4);
        assert_int_equal(vmsig_memwrite_decode(&ev, "x", 1, &req), -EINVAL); /* payload without the flag */
        ev.body[12] = 0x80;                                                  /* unknown flag bit */
        assert_int_equal(vmsig_memwrite_decode(&ev, NULL, 0, &req), -EINVAL);
        ev = memwrite(0x1000, 4, "abcd", 4);
        ev.hdr.body_len = 10; /* shorter than the head */
        assert_int_equal(vmsig_memwrite_decode(&ev, NULL, 0, &req), -EINVAL);
        ev.hdr.kind = VMSIG_EV_KEY;
        assert_int_equal(vmsig_memwrite_decode(&ev, NULL, 0, &req), -EINVAL);
}

static void test_kind_tables(void **state)
{
        assert_int_equal(vmsig_kind_seam(VMSIG_EV_MOVE_ABS), VMSIG_SRC_INPUT);
        assert_int_equal(vmsig_kind_seam(VMSIG_EV_CMD_POWER), VMSIG_SRC_VMHOST);
        assert_int_equal(vmsig_kind_seam(VMSIG_EV_CMD_MEMWRITE), VMSIG_SRC_MEMCTX);
        assert_int_equal(vmsig_kind_seam(VMSIG_EV_LEASE_ACQUIRE), VMSIG_SRC_CORE);
        assert_int_equal(vmsig_kind_seam(VMSIG_EV_ROSTER), -1);
        assert_int_equal(vmsig_kind_lease_class(VMSIG_EV_WHEEL), VMSIG_LEASE_INPUT);
        assert_int_equal(vmsig_kind_lease_class(VMSIG_EV_CMD_POWER), VMSIG_LEASE_POWER);
        assert_int_equal(vmsig_kind_lease_class(VMSIG_EV_CMD_STATUS_QUERY), -1);
        assert_int_equal(vmsig_kind_lease_class(VMSIG_EV_CMD_MEMWRITE), VMSIG_LEASE_MEMWRITE);
        for (uint16_t k = 0; k < 64; k++) {
                /* Every kind is UP, DOWN or unknown, never two of them. */
                assert_false(vmsig_kind_is_up(k) && vmsig_kind_is_down(k));
                if (vmsig_kind_is_up(k) || vmsig_kind_is_down(k)) {
                        assert_true(vmsig_kind_body_max(k) >= 0);
                        assert_true(vmsig_kind_body_max(k) <= (int)VMSIG_BODY_MAX);
                        assert_string_not_equal(vmsig_kind_name(k), "?");
                }
        }
        assert_int_equal(vmsig_lease_class_from_name("MemWrite"), VMSIG_LEASE_MEMWRITE);
        assert_int_equal(vmsig_lease_class_from_name("disk"), -EINVAL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_memwrite_decode),
            cmocka_unit_test(test_kind_tables),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
