/* SPDX-License-Identifier: MIT */
/* The client's fd-to-frame rule and vmsig_memctx_from_event's refusals,
 * pinned: what the fuzz_client harness explores, stated as cases. Uses the
 * harness's connection (the real client over a socketpair, see
 * fuzz_client.c) and the real wire encoder for the daemon's frames. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "fuzz/fuzz_client.c"

static struct vmsig_client *open_client(int *ret_s)
{
        struct vmsig_client *c = NULL;

        if (!G.ro) {
                setup();
                G.baseline = count_fds();
        }
        assert_int_equal(vmsig_client_new(&c), 0);
        assert_int_equal(vmsig_client_connect(c, "/nonexistent/vmsigd.sock", "test", 1000), 0);
        *ret_s = G.server;
        G.server = -1;
        return c;
}

static const struct vmsig_memctx_body stub_body = {
    .epoch = 1,
    .kernel_root = 0x1000,
    .valid = 1,
    .paging = VMSIG_PAGING_4LEVEL,
    .os_kind = VMSIG_OS_SYNTHETIC,
    .nranges = 2,
    .ranges = {{0, 4u << 20, 0}, {UINT64_C(1) << 32, 4u << 20, 4u << 20}},
};

static size_t frame(uint8_t *buf, uint16_t kind, uint16_t flags, const void *body, size_t len)
{
        struct vmsig_event ev;

        vmsig_event_init(&ev, kind, 1, kind == VMSIG_EV_MEMCTX ? VMSIG_SRC_MEMCTX : VMSIG_SRC_VMHOST);
        ev.hdr.flags = flags;
        assert_int_equal(vmsig_event_set_body(&ev, body, len), 0);
        ssize_t n = wire_encode_event(buf, WIRE_FRAME_MAX, &ev, false);
        assert_true(n > 0);
        return (size_t)n;
}

static size_t memctx_frame(uint8_t *buf)
{
        return frame(buf, VMSIG_EV_MEMCTX, VMSIG_F_HAS_FD, &stub_body, sizeof(stub_body));
}

static size_t status_frame(uint8_t *buf)
{
        struct vmsig_status_body b = {.run_state = VMSIG_RUN_RUNNING, .reason = "attached"};
        return frame(buf, VMSIG_EV_STATUS, 0, &b, sizeof(b));
}

/* Next message: the event kind (fd in *fd), or the error. */
static int next(struct vmsig_client *c, int *fd)
{
        struct vmsig_event ev;
        int r = vmsig_client_recv(c, &ev, fd, NULL);
        return r == VMSIG_CLIENT_EVENT ? ev.hdr.kind : r;
}

static void expect_memctx_fd(struct vmsig_client *c)
{
        struct vmsig_event ev;
        struct vmsig_memctx ctx;
        int fd = -1;

        assert_int_equal(vmsig_client_recv(c, &ev, &fd, NULL), VMSIG_CLIENT_EVENT);
        assert_int_equal(ev.hdr.kind, VMSIG_EV_MEMCTX);
        assert_true(fd >= 0);
        assert_int_equal(vmsig_memctx_from_event(&ev, fd, &ctx), 0);
        assert_int_equal(ctx.fd, fd);
        assert_int_equal(ctx.nranges, 2);
        close(fd);
}

static void finish(struct vmsig_client *c, int s)
{
        close(s);
        vmsig_client_free(c);
}

/* The fd may arrive with any write that carries part of its frame. */
static void test_fd_split_frames(void **state)
{
        uint8_t b[2 * WIRE_FRAME_MAX];
        int s;

        (void)state;
        for (size_t cut = 1; cut < 64; cut += 7) {
                for (int late = 0; late < 2; late++) {
                        struct vmsig_client *c = open_client(&s);
                        size_t n = memctx_frame(b);
                        daemon_send(s, b, cut, late ? 0 : 1);
                        daemon_send(s, b + cut, n - cut, late ? 1 : 0);
                        expect_memctx_fd(c);
                        finish(c, s);
                }
        }
        /* one write with a STATUS before the MEMCTX: the fd is the MEMCTX's */
        struct vmsig_client *c = open_client(&s);
        size_t n = status_frame(b);
        n += memctx_frame(b + n);
        daemon_send(s, b, n, 1);
        int fd = -1;
        assert_int_equal(next(c, &fd), VMSIG_EV_STATUS);
        assert_int_equal(fd, -1);
        expect_memctx_fd(c);
        finish(c, s);
}

/* An fd that cannot belong to its frame ends the connection, fd closed. */
static void test_fd_misplaced(void **state)
{
        uint8_t b[WIRE_FRAME_MAX], m[WIRE_FRAME_MAX];
        int s, fd;

        (void)state;
        /* on a STATUS, the MEMCTX follows in the next write */
        struct vmsig_client *c = open_client(&s);
        daemon_send(s, b, status_frame(b), 1);
        daemon_send(s, m, memctx_frame(m), 0);
        assert_int_equal(next(c, &fd), -EPROTO);
        assert_int_equal(fd, -1);
        assert_non_null(strstr(vmsig_client_last_error(c)->msg, "file descriptor"));
        finish(c, s);
        /* missing: the MEMCTX is complete and read before any fd came. (An fd
         * sent with a LATER write that the kernel glues into the same read
         * cannot be told apart from one sent with the MEMCTX: the client
         * credits it to the MEMCTX, the frame that announces an fd.) */
        c = open_client(&s);
        size_t n = memctx_frame(m);
        daemon_send(s, m, n, 0);
        assert_int_equal(next(c, &fd), -EPROTO);
        assert_int_equal(fd, -1);
        finish(c, s);
        /* two fds for one frame, one in each half */
        c = open_client(&s);
        daemon_send(s, m, 10, 1);
        daemon_send(s, m + 10, n - 10, 1);
        assert_int_equal(next(c, &fd), -EPROTO);
        finish(c, s);
        /* the daemon hangs up with an fd on a frame it never finished */
        c = open_client(&s);
        daemon_send(s, m, n / 2, 1);
        shutdown(s, SHUT_WR);
        assert_int_equal(next(c, &fd), -ECONNRESET);
        assert_int_equal(fd, -1);
        finish(c, s);
        assert_int_equal(count_fds(), G.baseline);
}

static void test_memctx_body_refused(void **state)
{
        struct vmsig_event ev;
        struct vmsig_memctx ctx;
        struct vmsig_memctx_body b;

        (void)state;
        vmsig_event_init(&ev, VMSIG_EV_MEMCTX, 1, VMSIG_SRC_MEMCTX);
        vmsig_event_set_body(&ev, &stub_body, sizeof(stub_body));
        assert_int_equal(vmsig_memctx_from_event(&ev, 5, &ctx), 0);
        assert_int_equal(ctx.fd, 5);
        /* invalidated: no fd, whatever came with it */
        b = stub_body;
        b.valid = 0;
        vmsig_event_set_body(&ev, &b, sizeof(b));
        assert_int_equal(vmsig_memctx_from_event(&ev, 5, &ctx), 0);
        assert_int_equal(ctx.fd, -1);
        /* adjacent ranges are fine */
        b = stub_body;
        b.ranges[1] = (struct vmsig_ram_range){4u << 20, 4096, 4u << 20};
        vmsig_event_set_body(&ev, &b, sizeof(b));
        assert_int_equal(vmsig_memctx_from_event(&ev, 5, &ctx), 0);

        static const struct vmsig_ram_range bad[][2] = {
            {{0, 0, 0}, {1u << 20, 4096, 0}},                       /* empty range */
            {{UINT64_C(0xfffffffffffff000), 0x2000, 0}, {0, 1, 0}}, /* gpa wraps */
            {{UINT64_C(0xfffffffffffff000), 0x1000, 0}, {0, 1, 0}}, /* ends exactly at 2^64 */
            {{0, 4096, UINT64_MAX}, {1u << 20, 4096, 0}},           /* file offset wraps */
            {{0, 8192, 0}, {4096, 4096, 8192}},                     /* overlap */
            {{4096, 4096, 0}, {0, 1u << 20, 8192}},                 /* contains */
            {{0, 4096, 0}, {0, 4096, 0}},                           /* the same twice */
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                b = stub_body;
                memcpy(b.ranges, bad[i], sizeof(bad[i]));
                vmsig_event_set_body(&ev, &b, sizeof(b));
                if (vmsig_memctx_from_event(&ev, 5, &ctx) != -EBADMSG)
                        fail_msg("bad ranges #%zu accepted", i);
        }
        b = stub_body;
        b.nranges = VMSIG_MEMCTX_MAX_RANGES + 1;
        vmsig_event_set_body(&ev, &b, sizeof(b));
        assert_int_equal(vmsig_memctx_from_event(&ev, 5, &ctx), -EBADMSG);
        vmsig_event_set_body(&ev, &stub_body, sizeof(stub_body) - 1);
        assert_int_equal(vmsig_memctx_from_event(&ev, 5, &ctx), -EBADMSG);
        vmsig_event_init(&ev, VMSIG_EV_STATUS, 1, VMSIG_SRC_MEMCTX);
        vmsig_event_set_body(&ev, &stub_body, sizeof(stub_body));
        assert_int_equal(vmsig_memctx_from_event(&ev, 5, &ctx), -EBADMSG);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_fd_split_frames),
            cmocka_unit_test(test_fd_misplaced),
            cmocka_unit_test(test_memctx_body_refused),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
