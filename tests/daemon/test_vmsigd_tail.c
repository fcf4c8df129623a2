/* SPDX-License-Identifier: MIT */
/* vmsigd integration: CMD_MEMWRITE with a SRC tail over a raw socket
 * (protocol.md section 7). Exact tail accepted and written; the same in
 * tiny writes; zero and over-bound tails are framing violations (ERROR
 * -EMSGSIZE, then the end of the stream); a client dropped mid-tail loses
 * its memwrite lease and nobody else notices anything. tail_max = 4096. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <sched.h>

#include "adapters/stub_internal.h"
#include "vmsigd_harness.h"

#define TAIL_MAX 4096u
/* A writable kernel VA of the stub guest (GPA 0x300000, 2 MiB page). */
#define TARGET_VA  (VMSIG_STUB_KERNEL_BASE + 0x300000u)
#define TARGET_GPA UINT64_C(0x300000)

static struct vh H;
static struct vmsig_client *W; /* watcher: roster + leases + memctx */
static uint32_t EP;
static struct vmsig_memctx CTX = {.fd = -1}; /* alpha's memctx; CTX.fd its RAM fd */

static int setup(void **state)
{
        (void)state;
        CTX.fd = -1;
        if (vh_setup_memctx_vm(&H, "[limits]\ntail_max = 4096\n", &W, &EP, &CTX) < 0)
                return -1;
        return 0;
}

static int teardown(void **state)
{
        (void)state;
        vh_teardown_memctx_vm(&H, &W, &CTX);
        return 0;
}

/* HELLO, then take the memwrite lease. */
static int raw_writer(const char *name)
{
        struct wire_welcome w;
        struct vmsig_ack_body ack;
        int fd = vh_raw_hello(H.sock, name, &w, NULL);

        assert_true(fd >= 0);
        assert_int_equal(w.tail_max, TAIL_MAX);
        assert_int_equal(vh_raw_lease_cmd(fd, EP, VMSIG_EV_LEASE_ACQUIRE, VMSIG_LEASE_MEMWRITE, 1), 0);
        assert_int_equal(vh_raw_wait_ack(fd, 1, &ack, NULL), 0);
        assert_int_equal(ack.result, 0);
        return fd;
}

/* The EVENT frame of a SRC_PAYLOAD memwrite announcing body_len_field bytes,
 * followed by the u32 tail_len. Built with the codec, then the body's len
 * patched (the codec would refuse nothing here: it is the server's check).
 * Returns the bytes written into buf. */
static size_t memwrite_head(uint8_t *buf, size_t cap, uint64_t corr, uint64_t va, uint32_t body_len_field,
                            uint32_t tail_len)
{
        struct vmsig_event ev;
        struct vmsig_memwrite_body mb = {.addr = va, .len = body_len_field};
        ssize_t n;

        vmsig_event_init(&ev, VMSIG_EV_CMD_MEMWRITE, EP, VMSIG_SRC_MEMCTX);
        ev.hdr.flags = VMSIG_F_SRC_PAYLOAD;
        ev.hdr.corr = corr;
        vmsig_event_set_body(&ev, &mb, WIRE_MEMWRITE_HDR_LEN);
        n = wire_encode_event(buf, cap, &ev, true);
        assert_int_equal(n, WIRE_PREFIX_LEN + WIRE_EVENT_HDR_LEN + WIRE_MEMWRITE_HDR_LEN);
        assert_int_equal(wire_encode_tail_len(buf + n, cap - (size_t)n, tail_len), WIRE_TAIL_LEN_LEN);
        return (size_t)n + WIRE_TAIL_LEN_LEN;
}

/* ERROR with code, msg containing needle, then the end of the stream. */
static void expect_error_then_end(int fd, int code, const char *needle)
{
        struct wire_frame f;
        uint64_t deadline = vh_now_ms() + VH_TIMEOUT_MS;

        for (;;) {
                int r = vh_raw_frame(fd, &f, vh_left(deadline));
                if (r != 1)
                        fail_msg("expected an ERROR frame, got %s", r == 0 ? "EOF" : strerror(-r));
                if (f.type == WIRE_ERROR)
                        break;
                /* ACKs or events queued before the violation are fine. */
                assert_int_equal(f.type, WIRE_EVENT);
        }
        if (f.u.error.code != code || !strstr(f.u.error.msg, needle))
                fail_msg("ERROR %d '%s', expected %d naming '%s'", f.u.error.code, f.u.error.msg, code,
                         needle);
        assert_true(vh_raw_ends(fd, VH_TIMEOUT_MS));
}

static void test_exact_tail(void **state)
{
        (void)state;
        int fd = raw_writer("tail-writer");
        uint8_t head[128 + 128], data[TAIL_MAX];
        struct vmsig_ack_body ack;

        vh_pattern(data, sizeof(data), 0x5a);
        size_t hl = memwrite_head(head, sizeof(head), 7, TARGET_VA, TAIL_MAX, TAIL_MAX);
        assert_int_equal(vh_raw_send(fd, head, hl), 0);
        assert_int_equal(vh_raw_send(fd, data, sizeof(data)), 0);
        assert_int_equal(vh_raw_wait_ack(fd, 7, &ack, NULL), 0);
        if (ack.result != 0)
                fail_msg("memwrite refused: %d %s", ack.result, ack.msg);
        assert_int_equal(ack.cmd_kind, VMSIG_EV_CMD_MEMWRITE);
        assert_int_equal(ack.value, TAIL_MAX);
        assert_true(vh_ram_equals(&CTX, TARGET_GPA, data, sizeof(data)));

        /* The stream is still in step: a second, smaller one right after. */
        vh_pattern(data, 100, 0x13);
        hl = memwrite_head(head, 128, 8, TARGET_VA + 5000, 100, 100);
        assert_true(hl + 100 <= sizeof(head));
        memcpy(head + hl, data, 100);
        assert_int_equal(vh_raw_send(fd, head, hl + 100), 0);
        assert_int_equal(vh_raw_wait_ack(fd, 8, &ack, NULL), 0);
        assert_int_equal(ack.result, 0);
        assert_true(vh_ram_equals(&CTX, TARGET_GPA + 5000, data, 100));
        close(fd);
}

static void test_tail_in_tiny_writes(void **state)
{
        (void)state;
        int fd = raw_writer("dribbler");
        uint8_t *buf = malloc(128 + TAIL_MAX);
        struct vmsig_ack_body ack;

        assert_non_null(buf);
        size_t hl = memwrite_head(buf, 128, 9, TARGET_VA + 0x10000, TAIL_MAX, TAIL_MAX);
        vh_pattern(buf + hl, TAIL_MAX, 0xc3);
        size_t total = hl + TAIL_MAX;
        /* The frame and tail_len one byte per write, the tail in 7-byte
         * pieces: the server sees every possible split of the two phases. */
        for (size_t off = 0; off < total;) {
                size_t n = off < hl ? 1 : (total - off < 7 ? total - off : 7);
                assert_int_equal(vh_raw_send(fd, buf + off, n), 0);
                off += n;
                sched_yield();
        }
        assert_int_equal(vh_raw_wait_ack(fd, 9, &ack, NULL), 0);
        if (ack.result != 0)
                fail_msg("memwrite refused: %d %s", ack.result, ack.msg);
        assert_true(vh_ram_equals(&CTX, TARGET_GPA + 0x10000, buf + hl, TAIL_MAX));
        free(buf);
        close(fd);
}

static void test_zero_tail(void **state)
{
        (void)state;
        int fd = raw_writer("zero");
        uint8_t head[128];

        size_t hl = memwrite_head(head, sizeof(head), 10, TARGET_VA, 0, 0);
        assert_int_equal(vh_raw_send(fd, head, hl), 0);
        expect_error_then_end(fd, -EMSGSIZE, "tail");
        close(fd);
        /* The daemon serves on. */
        assert_int_equal(vh_lease(W, EP, VMSIG_LEASE_MEMWRITE, true), 0);
}

static void test_tail_over_bound(void **state)
{
        (void)state;
        int fd = raw_writer("greedy");
        uint8_t head[128], junk[512];

        size_t hl = memwrite_head(head, sizeof(head), 11, TARGET_VA, 2 * TAIL_MAX, 2 * TAIL_MAX);
        assert_int_equal(vh_raw_send(fd, head, hl), 0);
        /* Some of the promised bytes: they must not be drained. */
        memset(junk, 0xee, sizeof(junk));
        (void)send(fd, junk, sizeof(junk), MSG_NOSIGNAL);
        expect_error_then_end(fd, -EMSGSIZE, "tail");
        close(fd);

        /* tail_len disagreeing with the body's len is the same violation. */
        fd = raw_writer("liar");
        hl = memwrite_head(head, sizeof(head), 12, TARGET_VA, 100, 200);
        assert_int_equal(vh_raw_send(fd, head, hl), 0);
        expect_error_then_end(fd, -EMSGSIZE, "tail");
        close(fd);
        assert_int_equal(vh_lease(W, EP, VMSIG_LEASE_MEMWRITE, true), 0);
}

static void test_drop_mid_tail(void **state)
{
        (void)state;
        /* A bystander on a raw socket with a query in flight around the drop. */
        struct wire_welcome w;
        int by = vh_raw_hello(H.sock, "bystander", &w, NULL);
        assert_true(by >= 0);

        int fd = raw_writer("dropper");
        uint32_t dropper_id = 0;
        struct vh_match mg = {.kind = VMSIG_EV_LEASE_GRANT, .endpoint = EP};
        struct vmsig_event ev;
        assert_int_equal(vh_wait_event(W, &mg, &ev, NULL, NULL, VH_TIMEOUT_MS), 0);
        dropper_id = ((struct vmsig_lease_body *)ev.body)->holder_id;

        uint8_t buf[128 + 1000];
        size_t hl = memwrite_head(buf, 128, 13, TARGET_VA + 0x20000, TAIL_MAX, TAIL_MAX);
        memset(buf + hl, 0x77, 1000);
        assert_int_equal(vh_raw_send(fd, buf, hl + 1000), 0);
        close(fd); /* 3096 promised bytes never come */

        /* The lease ends with "holder disconnected" ... */
        struct vh_match mr = {.kind = VMSIG_EV_LEASE_REVOKE, .endpoint = EP};
        assert_int_equal(vh_wait_event(W, &mr, &ev, NULL, NULL, VH_TIMEOUT_MS), 0);
        struct vmsig_lease_body lb;
        memcpy(&lb, ev.body, sizeof(lb));
        assert_int_equal(lb.class_, VMSIG_LEASE_MEMWRITE);
        assert_int_equal(lb.holder_id, dropper_id);
        assert_int_equal(lb.reason, VMSIG_LEASE_R_DISCONNECTED);

        /* ... nothing of the half tail was written ... */
        uint8_t zero[1000] = {0};
        assert_true(vh_ram_equals(&CTX, TARGET_GPA + 0x20000, zero, sizeof(zero)));

        /* ... and the others carry on in step: the bystander takes the lease
         * and writes with a tail of its own; the watcher still answers. */
        struct vmsig_ack_body ack;
        assert_int_equal(vh_raw_lease_cmd(by, EP, VMSIG_EV_LEASE_ACQUIRE, VMSIG_LEASE_MEMWRITE, 21), 0);
        assert_int_equal(vh_raw_wait_ack(by, 21, &ack, NULL), 0);
        assert_int_equal(ack.result, 0);
        uint8_t data[600];
        vh_pattern(data, sizeof(data), 0x42);
        hl = memwrite_head(buf, 128, 22, TARGET_VA + 0x30000, sizeof(data), sizeof(data));
        memcpy(buf + hl, data, sizeof(data));
        assert_int_equal(vh_raw_send(by, buf, hl + sizeof(data)), 0);
        assert_int_equal(vh_raw_wait_ack(by, 22, &ack, NULL), 0);
        assert_int_equal(ack.result, 0);
        assert_true(vh_ram_equals(&CTX, TARGET_GPA + 0x30000, data, sizeof(data)));
        assert_int_equal(vh_lease(W, EP, VMSIG_LEASE_POWER, true), 0);
        close(by);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_exact_tail, setup, teardown),
            cmocka_unit_test_setup_teardown(test_tail_in_tiny_writes, setup, teardown),
            cmocka_unit_test_setup_teardown(test_zero_tail, setup, teardown),
            cmocka_unit_test_setup_teardown(test_tail_over_bound, setup, teardown),
            cmocka_unit_test_setup_teardown(test_drop_mid_tail, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
