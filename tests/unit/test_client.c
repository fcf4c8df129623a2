/* SPDX-License-Identifier: MIT */
/* The control-side client against a fake daemon: a thread in this test that
 * speaks the protocol with the wire codec over a unix socket in a temp dir. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include <vmsig/bus.h>
#include <vmsig/client.h>
#include <vmsig/event.h>
#include <vmsig/memctx.h>

#include "transport/wire.h"

#define TAIL_MAX  (1u << 20)
#define RAM_BYTES 8192u

/* ---- the fake daemon ---- */

struct srv {
        char dir[64];
        char path[128];
        int lfd;
        int cfd;
        struct wire_rx rx;
        uint8_t in[65536];
        size_t in_start, in_end;
        void (*scenario)(struct srv *s);
        int fail_line; /* 0 = scenario passed */
        pthread_t thread;
};

#define CHECK(x)                                                                                             \
        do {                                                                                                 \
                if (!(x)) {                                                                                  \
                        if (!s->fail_line)                                                                   \
                                s->fail_line = __LINE__;                                                     \
                        return;                                                                              \
                }                                                                                            \
        } while (0)

static int write_all(int fd, const void *p, size_t n)
{
        const uint8_t *b = p;
        while (n) {
                ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0)
                        return -errno;
                b += w;
                n -= (size_t)w;
        }
        return 0;
}

/* Next frame from the client (blocking). 0, or -1 on EOF / violation. */
static int srv_frame(struct srv *s, struct wire_frame *ret, uint8_t **ret_tail)
{
        for (;;) {
                while (s->in_start < s->in_end) {
                        const struct wire_frame *f;
                        ssize_t n = wire_rx_feed(&s->rx, s->in + s->in_start, s->in_end - s->in_start, &f);
                        if (n < 0)
                                return -1;
                        s->in_start += (size_t)n;
                        if (f) {
                                *ret = *f;
                                if (ret_tail) {
                                        *ret_tail = NULL;
                                        if (f->tail) {
                                                *ret_tail = malloc(f->tail_len);
                                                memcpy(*ret_tail, f->tail, f->tail_len);
                                        }
                                }
                                return 0;
                        }
                }
                s->in_start = s->in_end = 0;
                ssize_t n = read(s->cfd, s->in, sizeof(s->in));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return -1;
                s->in_end = (size_t)n;
        }
}

static void srv_welcome(struct srv *s)
{
        struct wire_welcome w = {.version = 1,
                                 .control_id = 42,
                                 .caps = VMSIG_CAP_ROSTER | VMSIG_CAP_MEMCTX,
                                 .uid = 1000,
                                 .body_max = VMSIG_BODY_MAX,
                                 .tail_max = TAIL_MAX,
                                 .queue_bytes = 1u << 20};
        struct wire_frame f;
        uint8_t b[WIRE_FRAME_MAX];

        CHECK(srv_frame(s, &f, NULL) == 0);
        CHECK(f.type == WIRE_HELLO);
        CHECK(strcmp(f.u.hello.name, "ctl-test") == 0);
        CHECK(write_all(s->cfd, b, (size_t)wire_encode_welcome(b, sizeof(b), &w)) == 0);
}

/* WELCOME, then wait for the client's SUBSCRIBE: what follows cannot be
 * read during the client's handshake. */
static void srv_welcome_sub(struct srv *s)
{
        struct wire_frame f;

        srv_welcome(s);
        CHECK(!s->fail_line);
        CHECK(srv_frame(s, &f, NULL) == 0 && f.type == WIRE_SUBSCRIBE);
}

static void srv_send_event(struct srv *s, const struct vmsig_event *ev, int fd)
{
        uint8_t b[WIRE_FRAME_MAX];
        ssize_t n = wire_encode_event(b, sizeof(b), ev, false);

        CHECK(n > 0);
        if (fd < 0) {
                CHECK(write_all(s->cfd, b, (size_t)n) == 0);
                return;
        }
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int))];
        } cbuf;
        struct iovec iov = {.iov_base = b, .iov_len = (size_t)n};
        struct msghdr msg = {
            .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf.buf, .msg_controllen = sizeof(cbuf.buf)};
        struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &fd, sizeof(int));
        CHECK(sendmsg(s->cfd, &msg, MSG_NOSIGNAL) == n);
}

static void srv_wait_eof(struct srv *s)
{
        struct wire_frame f;
        while (srv_frame(s, &f, NULL) == 0)
                ;
}

static void *srv_main(void *arg)
{
        struct srv *s = arg;

        s->cfd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (s->cfd < 0) {
                s->fail_line = __LINE__;
                return NULL;
        }
        s->scenario(s);
        close(s->cfd);
        return NULL;
}

static struct srv *srv_start(void (*scenario)(struct srv *s))
{
        struct srv *s = calloc(1, sizeof(*s));
        struct sockaddr_un sa = {.sun_family = AF_UNIX};

        assert_non_null(s);
        strcpy(s->dir, "/tmp/vmsig-client-XXXXXX");
        assert_non_null(mkdtemp(s->dir));
        snprintf(s->path, sizeof(s->path), "%s/sock", s->dir);
        strcpy(sa.sun_path, s->path);
        s->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(s->lfd >= 0);
        assert_int_equal(bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(listen(s->lfd, 4), 0);
        assert_int_equal(wire_rx_init(&s->rx, WIRE_SIDE_SERVER, TAIL_MAX), 0);
        s->scenario = scenario;
        assert_int_equal(pthread_create(&s->thread, NULL, srv_main, s), 0);
        return s;
}

static void srv_finish(struct srv *s)
{
        pthread_join(s->thread, NULL);
        close(s->lfd);
        unlink(s->path);
        rmdir(s->dir);
        wire_rx_done(&s->rx);
        if (s->fail_line)
                fail_msg("fake daemon check failed at test_client.c:%d", s->fail_line);
        free(s);
}

static struct vmsig_client *connect_ok(struct srv *s)
{
        struct vmsig_client *c;
        assert_int_equal(vmsig_client_new(&c), 0);
        assert_int_equal(vmsig_client_connect(c, s->path, "ctl-test", 5000), 0);
        return c;
}

/* ---- scenarios ---- */

static void sc_session(struct srv *s)
{
        struct wire_frame f;
        struct vmsig_event ev;
        struct vmsig_roster_body rb = {.change = VMSIG_ROSTER_APPEARED, .seams = 0xe, .run_state = 1};
        uint8_t b[WIRE_FRAME_MAX];

        srv_welcome(s);
        CHECK(!s->fail_line);
        CHECK(srv_frame(s, &f, NULL) == 0);
        CHECK(f.type == WIRE_SUBSCRIBE && f.u.sub.endpoint == 0 && f.u.sub.kinds == VMSIG_KINDS_ALL_UP);
        CHECK(write_all(s->cfd, b,
                        (size_t)wire_encode_reply(b, sizeof(b), f.u.sub.corr, WIRE_SUBSCRIBE, 0, "ok")) == 0);
        vmsig_event_init(&ev, VMSIG_EV_ROSTER, 1, VMSIG_SRC_CORE);
        ev.hdr.flags = VMSIG_F_RETAINED;
        strcpy(rb.name, "vm-one");
        vmsig_event_set_body(&ev, &rb, sizeof(rb));
        srv_send_event(s, &ev, -1);

        CHECK(srv_frame(s, &f, NULL) == 0);
        CHECK(f.type == WIRE_EVENT && f.u.event.hdr.kind == VMSIG_EV_LEASE_ACQUIRE);
        CHECK(f.u.event.hdr.endpoint == 1 && f.u.event.body[0] == VMSIG_LEASE_MEMWRITE);
        CHECK(f.u.event.hdr.corr != 0);
        vmsig_ack_init(&ev, &f.u.event, VMSIG_SRC_CORE, 0, 0, "lease granted");
        srv_send_event(s, &ev, -1);

        CHECK(srv_frame(s, &f, NULL) == 0);
        CHECK(f.type == WIRE_UNSUBSCRIBE && f.u.sub.endpoint == 3);
        CHECK(write_all(s->cfd, b,
                        (size_t)wire_encode_reply(b, sizeof(b), f.u.sub.corr, WIRE_UNSUBSCRIBE, -ENOENT,
                                                  "not subscribed")) == 0);
        srv_wait_eof(s);
}

static void test_session(void **state)
{
        struct srv *s = srv_start(sc_session);
        struct vmsig_client *c = connect_ok(s);
        const struct vmsig_client_info *info = vmsig_client_get_info(c);
        struct vmsig_client_reply rep;
        struct vmsig_event ev;
        uint64_t corr, lcorr;
        int fd;

        (void)state;
        assert_non_null(info);
        assert_int_equal(info->version, 1);
        assert_int_equal(info->control_id, 42);
        assert_int_equal(info->caps, VMSIG_CAP_ROSTER | VMSIG_CAP_MEMCTX);
        assert_int_equal(info->uid, 1000);
        assert_int_equal(info->tail_max, TAIL_MAX);
        assert_true(vmsig_client_fd(c) >= 0);
        assert_int_equal(fcntl(vmsig_client_fd(c), F_GETFL) & O_NONBLOCK, O_NONBLOCK);
        assert_true(fcntl(vmsig_client_fd(c), F_GETFD) & FD_CLOEXEC);
        assert_int_equal(vmsig_client_last_error(c)->code, 0);
        /* nothing there yet: non-blocking */
        assert_int_equal(vmsig_client_recv(c, &ev, &fd, &rep), -EAGAIN);

        assert_int_equal(vmsig_client_subscribe(c, 0, VMSIG_KINDS_ALL_UP, &corr), 0);
        assert_int_equal(vmsig_client_subscribe(c, 0, VMSIG_KIND_BIT(VMSIG_EV_KEY), NULL), -EINVAL);
        assert_int_equal(vmsig_client_recv_wait(c, &ev, &fd, &rep, 5000), VMSIG_CLIENT_REPLY);
        assert_int_equal(rep.corr, corr);
        assert_int_equal(rep.request_type, VMSIG_CLIENT_REQ_SUBSCRIBE);
        assert_int_equal(rep.result, 0);
        assert_string_equal(rep.msg, "ok");
        assert_int_equal(vmsig_client_recv_wait(c, &ev, &fd, &rep, 5000), VMSIG_CLIENT_EVENT);
        assert_int_equal(ev.hdr.kind, VMSIG_EV_ROSTER);
        assert_int_equal(fd, -1);
        assert_true(ev.hdr.flags & VMSIG_F_RETAINED);
        assert_string_equal(((struct vmsig_roster_body *)ev.body)->name, "vm-one");

        assert_int_equal(vmsig_client_lease_acquire(c, 1, VMSIG_LEASE_MEMWRITE, &lcorr), 0);
        assert_int_not_equal(lcorr, corr);
        assert_int_equal(vmsig_client_lease_acquire(c, 1, VMSIG_LEASE_CLASS_COUNT, NULL), -EINVAL);
        assert_int_equal(vmsig_client_recv_wait(c, &ev, &fd, &rep, 5000), VMSIG_CLIENT_EVENT);
        assert_int_equal(ev.hdr.kind, VMSIG_EV_ACT_ACK);
        assert_int_equal(ev.hdr.corr, lcorr);
        assert_string_equal(((struct vmsig_ack_body *)ev.body)->msg, "lease granted");

        assert_int_equal(vmsig_client_unsubscribe(c, 3, &corr), 0);
        assert_int_equal(vmsig_client_recv_wait(c, &ev, &fd, &rep, 5000), VMSIG_CLIENT_REPLY);
        assert_int_equal(rep.corr, corr);
        assert_int_equal(rep.result, -ENOENT);
        assert_string_equal(rep.msg, "not subscribed");
        assert_int_equal(vmsig_client_recv_wait(c, &ev, &fd, &rep, 50), -ETIMEDOUT);
        assert_int_equal(vmsig_client_pending_output(c), 0);
        assert_int_equal(vmsig_client_poll_events(c), POLLIN);
        assert_null(vmsig_client_free(c));
        srv_finish(s);
}

static void sc_refuse(struct srv *s)
{
        struct wire_frame f;
        uint8_t b[WIRE_FRAME_MAX];

        CHECK(srv_frame(s, &f, NULL) == 0 && f.type == WIRE_HELLO);
        CHECK(write_all(s->cfd, b,
                        (size_t)wire_encode_error(b, sizeof(b), -EACCES, "uid 1234 is not admitted")) == 0);
        shutdown(s->cfd, SHUT_WR);
}

static void test_refused(void **state)
{
        struct srv *s = srv_start(sc_refuse);
        struct vmsig_client *c;
        const struct vmsig_client_error *e;
        struct vmsig_event ev;

        (void)state;
        assert_int_equal(vmsig_client_new(&c), 0);
        assert_int_equal(vmsig_client_connect(c, s->path, "ctl-test", 5000), -EACCES);
        e = vmsig_client_last_error(c);
        assert_int_equal(e->code, -EACCES);
        assert_true(e->from_daemon);
        assert_string_equal(e->msg, "uid 1234 is not admitted");
        assert_null(vmsig_client_get_info(c));
        assert_int_equal(vmsig_client_recv(c, &ev, NULL, NULL), -EACCES);
        assert_int_equal(vmsig_client_subscribe(c, 0, VMSIG_KINDS_ALL_UP, NULL), -EACCES);
        assert_int_equal(vmsig_client_connect(c, s->path, "again", 100), -EISCONN);
        vmsig_client_free(c);
        srv_finish(s);
}

/* Refused at accept, before HELLO is read: the ERROR still reaches the
 * client whether its HELLO went out before or after the close. */
static void sc_refuse_early(struct srv *s)
{
        uint8_t b[WIRE_FRAME_MAX];

        CHECK(write_all(s->cfd, b,
                        (size_t)wire_encode_error(b, sizeof(b), -EACCES, "uid 1234 is not admitted")) == 0);
}

static void test_refused_early(void **state)
{
        (void)state;
        for (int i = 0; i < 20; i++) {
                struct srv *s = srv_start(sc_refuse_early);
                struct vmsig_client *c;

                assert_int_equal(vmsig_client_new(&c), 0);
                assert_int_equal(vmsig_client_connect(c, s->path, "ctl-test", 5000), -EACCES);
                assert_true(vmsig_client_last_error(c)->from_daemon);
                assert_string_equal(vmsig_client_last_error(c)->msg, "uid 1234 is not admitted");
                vmsig_client_free(c);
                srv_finish(s);
        }
}

static void test_connect_errors(void **state)
{
        struct vmsig_client *c;
        char dir[] = "/tmp/vmsig-client-XXXXXX", path[128];

        (void)state;
        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/none", dir);
        assert_int_equal(vmsig_client_new(&c), 0);
        assert_int_equal(vmsig_client_connect(c, path, "x", 100), -ENOENT);
        assert_int_equal(vmsig_client_last_error(c)->code, -ENOENT);
        assert_false(vmsig_client_last_error(c)->from_daemon);
        vmsig_client_free(c);
        rmdir(dir);
        assert_int_equal(vmsig_client_new(&c), 0);
        assert_int_equal(
            vmsig_client_connect(c, "/tmp/x",
                                 "0123456789012345678901234567890123456789012345678901234567890123", 100),
            -EINVAL);
        assert_int_equal(vmsig_client_recv(c, &(struct vmsig_event){0}, NULL, NULL), -ENOTCONN);
        assert_int_equal(vmsig_client_subscribe(c, 0, VMSIG_KINDS_ALL_UP, NULL), -ENOTCONN);
        vmsig_client_free(c);
        assert_null(vmsig_client_free(NULL));
}

static void sc_silent(struct srv *s)
{
        srv_wait_eof(s); /* never answers HELLO */
}

static void test_handshake_timeout(void **state)
{
        struct srv *s = srv_start(sc_silent);
        struct vmsig_client *c;

        (void)state;
        assert_int_equal(vmsig_client_new(&c), 0);
        assert_int_equal(vmsig_client_connect(c, s->path, "ctl-test", 200), -ETIMEDOUT);
        vmsig_client_free(c); /* closing lets the fake daemon see EOF */
        srv_finish(s);
}

static int make_ram_fd(void)
{
        char p[64];
        uint8_t buf[RAM_BYTES];
        int mfd = memfd_create("guest-ram", MFD_CLOEXEC), ro;

        assert_true(mfd >= 0);
        for (size_t i = 0; i < sizeof(buf); i++)
                buf[i] = (uint8_t)(i * 31 + 1);
        assert_int_equal(write(mfd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
        snprintf(p, sizeof(p), "/proc/self/fd/%d", mfd);
        ro = open(p, O_RDONLY | O_CLOEXEC);
        assert_true(ro >= 0);
        close(mfd);
        return ro;
}

static int ram_fd_for_srv = -1;

static void sc_memctx(struct srv *s)
{
        struct vmsig_event st, mc, dg;
        struct vmsig_status_body sb = {.run_state = VMSIG_RUN_RUNNING};
        struct vmsig_diag_body db = {.code = 0};
        struct vmsig_memctx_body mb = {.epoch = 1,
                                       .kernel_root = 0x1ad000,
                                       .valid = 1,
                                       .paging = 4,
                                       .os_kind = VMSIG_OS_SYNTHETIC,
                                       .nranges = 1};
        uint8_t b[2 * WIRE_FRAME_MAX];

        srv_welcome(s);
        CHECK(!s->fail_line);
        vmsig_event_init(&st, VMSIG_EV_STATUS, 1, VMSIG_SRC_VMHOST);
        strcpy(sb.reason, "running");
        vmsig_event_set_body(&st, &sb, sizeof(sb));
        vmsig_event_init(&mc, VMSIG_EV_MEMCTX, 1, VMSIG_SRC_MEMCTX);
        mc.hdr.flags = VMSIG_F_HAS_FD;
        mb.ranges[0] = (struct vmsig_ram_range){0, RAM_BYTES, 0};
        vmsig_event_set_body(&mc, &mb, sizeof(mb));
        vmsig_event_init(&dg, VMSIG_EV_DIAG, 1, VMSIG_SRC_MEMCTX);
        strcpy(db.msg, "after memctx");
        vmsig_event_set_body(&dg, &db, sizeof(db));

        /* STATUS alone; then MEMCTX + DIAG in one sendmsg with the fd on the
         * MEMCTX frame's first byte; then STATUS again. */
        srv_send_event(s, &st, -1);
        CHECK(!s->fail_line);
        {
                ssize_t n1 = wire_encode_event(b, sizeof(b), &mc, false);
                ssize_t n2 = wire_encode_event(b + n1, sizeof(b) - (size_t)n1, &dg, false);
                union {
                        struct cmsghdr align;
                        char buf[CMSG_SPACE(sizeof(int))];
                } cbuf;
                struct iovec iov = {.iov_base = b, .iov_len = (size_t)(n1 + n2)};
                struct msghdr msg = {.msg_iov = &iov,
                                     .msg_iovlen = 1,
                                     .msg_control = cbuf.buf,
                                     .msg_controllen = sizeof(cbuf.buf)};
                struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
                CHECK(n1 > 0 && n2 > 0);
                cm->cmsg_level = SOL_SOCKET;
                cm->cmsg_type = SCM_RIGHTS;
                cm->cmsg_len = CMSG_LEN(sizeof(int));
                memcpy(CMSG_DATA(cm), &ram_fd_for_srv, sizeof(int));
                CHECK(sendmsg(s->cfd, &msg, MSG_NOSIGNAL) == n1 + n2);
        }
        srv_send_event(s, &st, -1);
        srv_wait_eof(s);
}

static void test_memctx_fd(void **state)
{
        struct srv *s;
        struct vmsig_client *c;
        struct vmsig_event ev;
        struct vmsig_memctx ctx;
        int fd;

        (void)state;
        ram_fd_for_srv = make_ram_fd();
        s = srv_start(sc_memctx);
        c = connect_ok(s);
        assert_int_equal(vmsig_client_recv_wait(c, &ev, &fd, NULL, 5000), VMSIG_CLIENT_EVENT);
        assert_int_equal(ev.hdr.kind, VMSIG_EV_STATUS);
        assert_int_equal(fd, -1);
        assert_int_equal(vmsig_client_recv_wait(c, &ev, &fd, NULL, 5000), VMSIG_CLIENT_EVENT);
        assert_int_equal(ev.hdr.kind, VMSIG_EV_MEMCTX);
        assert_true(fd >= 0);
        assert_int_equal(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDONLY);
        assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
        assert_int_equal(vmsig_memctx_from_event(&ev, fd, &ctx), 0);
        assert_int_equal(ctx.kernel_root, 0x1ad000);
        assert_int_equal(ctx.fd, fd);

        /* read-only: a writable shared mapping is refused, a read one matches */
        void *w = mmap(NULL, RAM_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        assert_true(w == MAP_FAILED);
        assert_int_equal(errno, EACCES);
        const uint8_t *r = mmap(NULL, RAM_BYTES, PROT_READ, MAP_SHARED, fd, 0);
        assert_true(r != MAP_FAILED);
        for (size_t i = 0; i < RAM_BYTES; i++)
                assert_int_equal(r[i], (uint8_t)(i * 31 + 1));
        munmap((void *)r, RAM_BYTES);
        close(fd);

        assert_int_equal(vmsig_client_recv_wait(c, &ev, &fd, NULL, 5000), VMSIG_CLIENT_EVENT);
        assert_int_equal(ev.hdr.kind, VMSIG_EV_DIAG);
        assert_int_equal(fd, -1);
        assert_int_equal(vmsig_client_recv_wait(c, &ev, &fd, NULL, 5000), VMSIG_CLIENT_EVENT);
        assert_int_equal(ev.hdr.kind, VMSIG_EV_STATUS);
        assert_int_equal(fd, -1);
        vmsig_client_free(c);
        srv_finish(s);
        close(ram_fd_for_srv);
}

#define PAYLOAD_LEN 300000u

static uint8_t payload_byte(size_t i)
{
        return (uint8_t)((i * 2654435761u) >> 13);
}

static void sc_payload(struct srv *s)
{
        struct wire_frame f;
        struct vmsig_memwrite_body mw;
        struct vmsig_event ack;
        uint8_t *tail = NULL;

        srv_welcome(s);
        CHECK(!s->fail_line);
        CHECK(srv_frame(s, &f, &tail) == 0);
        CHECK(f.type == WIRE_EVENT && f.u.event.hdr.kind == VMSIG_EV_CMD_MEMWRITE);
        CHECK(f.u.event.hdr.flags & VMSIG_F_SRC_PAYLOAD);
        CHECK(f.u.event.hdr.body_len == 16 && f.u.event.hdr.cr3 == 0x1234000);
        memcpy(&mw, f.u.event.body, 16);
        CHECK(mw.addr == 0xfffff80000010000ull && mw.len == PAYLOAD_LEN && mw.flags == 0);
        CHECK(tail && f.tail_len == PAYLOAD_LEN);
        for (size_t i = 0; i < PAYLOAD_LEN; i++)
                if (tail[i] != payload_byte(i)) {
                        free(tail);
                        CHECK(0);
                }
        free(tail);
        vmsig_ack_init(&ack, &f.u.event, VMSIG_SRC_MEMCTX, 0, PAYLOAD_LEN, "written");
        /* then a plain command follows the tail, in step */
        CHECK(srv_frame(s, &f, NULL) == 0);
        CHECK(f.type == WIRE_EVENT && f.u.event.hdr.kind == VMSIG_EV_KEY && f.tail == NULL);
        srv_send_event(s, &ack, -1);
        srv_wait_eof(s);
}

static void test_send_payload(void **state)
{
        struct srv *s = srv_start(sc_payload);
        struct vmsig_client *c = connect_ok(s);
        struct vmsig_event ev, key;
        struct vmsig_memwrite_body mw = {.addr = 0xfffff80000010000ull};
        struct vmsig_input_body ib = {.code = 30, .value = 1};
        uint8_t *src = malloc(PAYLOAD_LEN);
        uint64_t corr;
        int fd, r;

        (void)state;
        for (size_t i = 0; i < PAYLOAD_LEN; i++)
                src[i] = payload_byte(i);
        vmsig_event_init(&ev, VMSIG_EV_CMD_MEMWRITE, 1, VMSIG_SRC_MEMCTX);
        ev.hdr.cr3 = 0x1234000;
        vmsig_event_set_body(&ev, &mw, 16);
        assert_int_equal(vmsig_client_send_payload(c, &ev, src, 0, NULL), -EMSGSIZE);
        assert_int_equal(vmsig_client_send_payload(c, &ev, src, TAIL_MAX + 1, NULL), -EMSGSIZE);
        assert_int_equal(vmsig_client_send_payload(c, &ev, src, PAYLOAD_LEN, &corr), 0);
        assert_true(corr != 0);
        vmsig_event_init(&key, VMSIG_EV_KEY, 1, VMSIG_SRC_INPUT);
        vmsig_event_set_body(&key, &ib, sizeof(ib));
        key.hdr.flags = VMSIG_F_FF;
        r = vmsig_client_send(c, &key, NULL);
        assert_int_equal(r, 0);
        /* more than a socket buffer: most of it waits for the daemon to read */
        assert_int_equal(vmsig_client_flush(c, 5000), 0);
        assert_int_equal(vmsig_client_pending_output(c), 0);
        assert_int_equal(vmsig_client_recv_wait(c, &ev, &fd, NULL, 5000), VMSIG_CLIENT_EVENT);
        assert_int_equal(ev.hdr.kind, VMSIG_EV_ACT_ACK);
        assert_int_equal(ev.hdr.corr, corr);
        assert_int_equal(((struct vmsig_ack_body *)ev.body)->value, PAYLOAD_LEN);

        /* a client refuses to send what the daemon would treat as a violation */
        ev.hdr.kind = VMSIG_EV_ROSTER;
        assert_int_equal(vmsig_client_send(c, &ev, NULL), -EINVAL);
        key.hdr.body_len = 3;
        assert_int_equal(vmsig_client_send(c, &key, NULL), -EINVAL);
        /* nor reserved or "send 0" fields: cr3 outside MEMWRITE, input flags */
        key.hdr.body_len = sizeof(struct vmsig_input_body);
        key.hdr.cr3 = 0x1000;
        assert_int_equal(vmsig_client_send(c, &key, NULL), -EINVAL);
        key.hdr.cr3 = 0;
        key.body[offsetof(struct vmsig_input_body, flags)] = 1;
        assert_int_equal(vmsig_client_send(c, &key, NULL), -EINVAL);
        free(src);
        vmsig_client_free(c);
        srv_finish(s);
}

/* ---- a daemon that breaks the protocol ---- */

static void sc_bad_body(struct srv *s)
{
        uint8_t b[WIRE_FRAME_MAX];
        struct vmsig_event ev;
        ssize_t n;

        srv_welcome_sub(s);
        CHECK(!s->fail_line);
        vmsig_event_init(&ev, VMSIG_EV_ROSTER, 1, VMSIG_SRC_CORE);
        memset(ev.body, 0, sizeof(ev.body)); /* init leaves the body as it was */
        ev.hdr.body_len = 72;
        n = wire_encode_event(b, sizeof(b), &ev, false);
        CHECK(n > 0);
        b[8 + 48] = 10; /* body_len no longer matches the frame length */
        CHECK(write_all(s->cfd, b, (size_t)n) == 0);
        srv_wait_eof(s);
}

/* A reserved byte of the event header set: the client must not take the
 * frame for an event. (Reserved bytes of UP bodies are ignored instead.) */
static void sc_reserved_body(struct srv *s)
{
        uint8_t b[WIRE_FRAME_MAX];
        struct vmsig_event ev;
        struct vmsig_lease_body lb = {.class_ = VMSIG_LEASE_INPUT, .holder_id = 4};
        ssize_t n;

        srv_welcome_sub(s);
        CHECK(!s->fail_line);
        vmsig_event_init(&ev, VMSIG_EV_LEASE_GRANT, 1, VMSIG_SRC_CORE);
        vmsig_event_set_body(&ev, &lb, sizeof(lb));
        n = wire_encode_event(b, sizeof(b), &ev, false);
        CHECK(n > 0);
        b[8 + 52] = 1; /* event header reserved1 */
        CHECK(write_all(s->cfd, b, (size_t)n) == 0);
        srv_wait_eof(s);
}

static void sc_stray_fd(struct srv *s)
{
        struct vmsig_event ev;
        struct vmsig_status_body sb = {.run_state = 1};

        srv_welcome_sub(s);
        CHECK(!s->fail_line);
        vmsig_event_init(&ev, VMSIG_EV_STATUS, 1, VMSIG_SRC_VMHOST);
        vmsig_event_set_body(&ev, &sb, sizeof(sb));
        srv_send_event(s, &ev, ram_fd_for_srv); /* an fd on a frame without HAS_FD */
        srv_wait_eof(s);
}

static void sc_missing_fd(struct srv *s)
{
        struct vmsig_event ev;
        struct vmsig_memctx_body mb = {.epoch = 1, .valid = 1};

        srv_welcome_sub(s);
        CHECK(!s->fail_line);
        vmsig_event_init(&ev, VMSIG_EV_MEMCTX, 1, VMSIG_SRC_MEMCTX);
        ev.hdr.flags = VMSIG_F_HAS_FD;
        vmsig_event_set_body(&ev, &mb, sizeof(mb));
        srv_send_event(s, &ev, -1);
        srv_wait_eof(s);
}

static void sc_writable_fd(struct srv *s)
{
        struct vmsig_event ev;
        struct vmsig_memctx_body mb = {.epoch = 1, .valid = 1};
        int mfd = memfd_create("rw", MFD_CLOEXEC);

        srv_welcome_sub(s);
        CHECK(!s->fail_line && mfd >= 0);
        vmsig_event_init(&ev, VMSIG_EV_MEMCTX, 1, VMSIG_SRC_MEMCTX);
        ev.hdr.flags = VMSIG_F_HAS_FD;
        vmsig_event_set_body(&ev, &mb, sizeof(mb));
        srv_send_event(s, &ev, mfd);
        close(mfd);
        srv_wait_eof(s);
}

/* A MEMCTX frame carrying nfds copies of the RAM fd. */
static void send_memctx_fds(struct srv *s, int nfds)
{
        struct vmsig_event ev;
        struct vmsig_memctx_body mb = {.epoch = 1, .valid = 1};
        uint8_t b[WIRE_FRAME_MAX];
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int) * 8)];
        } cbuf;
        int fds[8];

        vmsig_event_init(&ev, VMSIG_EV_MEMCTX, 1, VMSIG_SRC_MEMCTX);
        ev.hdr.flags = VMSIG_F_HAS_FD;
        vmsig_event_set_body(&ev, &mb, sizeof(mb));
        ssize_t n = wire_encode_event(b, sizeof(b), &ev, false);
        struct iovec iov = {.iov_base = b, .iov_len = (size_t)n};
        struct msghdr msg = {.msg_iov = &iov,
                             .msg_iovlen = 1,
                             .msg_control = cbuf.buf,
                             .msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds)};
        struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
        for (int i = 0; i < nfds; i++)
                fds[i] = ram_fd_for_srv;
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
        memcpy(CMSG_DATA(cm), fds, sizeof(int) * (size_t)nfds);
        CHECK(sendmsg(s->cfd, &msg, MSG_NOSIGNAL) == n);
}

static void sc_two_fds(struct srv *s)
{
        srv_welcome_sub(s);
        CHECK(!s->fail_line);
        send_memctx_fds(s, 2);
        srv_wait_eof(s);
}

static void sc_fd_flood(struct srv *s)
{
        srv_welcome_sub(s);
        CHECK(!s->fail_line);
        send_memctx_fds(s, 8); /* more than the client makes room for */
        srv_wait_eof(s);
}

static void sc_bad_welcome(struct srv *s)
{
        struct wire_welcome w = {.version = 3,
                                 /* 1 and 2 exist */ .control_id = 1,
                                 .body_max = VMSIG_BODY_MAX,
                                 .tail_max = 1,
                                 .queue_bytes = 1};
        struct wire_frame f;
        uint8_t b[WIRE_FRAME_MAX];

        CHECK(srv_frame(s, &f, NULL) == 0);
        CHECK(write_all(s->cfd, b, (size_t)wire_encode_welcome(b, sizeof(b), &w)) == 0);
        srv_wait_eof(s);
}

static void sc_hangup(struct srv *s)
{
        srv_welcome_sub(s);
}

static void expect_broken(void (*scenario)(struct srv *s), int code, const char *needle)
{
        struct srv *s = srv_start(scenario);
        struct vmsig_client *c = connect_ok(s);
        struct vmsig_event ev;
        int fd = 123;

        assert_int_equal(vmsig_client_subscribe(c, 0, VMSIG_KINDS_ALL_UP, NULL), 0);

        assert_int_equal(vmsig_client_recv_wait(c, &ev, &fd, NULL, 5000), code);
        assert_int_equal(fd, -1);
        assert_int_equal(vmsig_client_last_error(c)->code, code);
        assert_false(vmsig_client_last_error(c)->from_daemon);
        assert_non_null(strstr(vmsig_client_last_error(c)->msg, needle));
        /* sticky */
        assert_int_equal(vmsig_client_recv(c, &ev, &fd, NULL), code);
        assert_int_equal(vmsig_client_send(c, &ev, NULL), code);
        vmsig_client_free(c);
        srv_finish(s);
}

/* A version-1 daemon (this fake one): no fd source; vmsig_client_memwrite
 * falls back to the tail, which the daemon reads as in test_send_payload. */
static void test_memwrite_v1_daemon(void **state)
{
        struct srv *s = srv_start(sc_payload);
        struct vmsig_client *c = connect_ok(s);
        struct vmsig_event ev, key;
        struct vmsig_memwrite_body mw = {.addr = 0xfffff80000010000ull};
        struct vmsig_input_body ib = {.code = 30, .value = 1};
        uint8_t *src = malloc(PAYLOAD_LEN);
        void *buf = NULL;
        uint64_t corr;
        int fd, mfd = memfd_create("v1", MFD_CLOEXEC);

        (void)state;
        assert_true(mfd >= 0);
        for (size_t i = 0; i < PAYLOAD_LEN; i++)
                src[i] = payload_byte(i);
        assert_int_equal(vmsig_client_get_info(c)->version, 1);
        assert_false(vmsig_client_can_memwrite_fd(c));
        vmsig_event_init(&ev, VMSIG_EV_CMD_MEMWRITE, 1, VMSIG_SRC_MEMCTX);
        ev.hdr.cr3 = 0x1234000;
        vmsig_event_set_body(&ev, &mw, 16);
        assert_int_equal(vmsig_client_memwrite_buffer(c, &buf, NULL), -EOPNOTSUPP);
        assert_int_equal(vmsig_client_memwrite_submit(c, &ev, 4096, NULL), -EINVAL);
        assert_int_equal(vmsig_client_send_fd(c, &ev, mfd, 0, 4096, NULL), -EOPNOTSUPP);
        assert_int_equal(vmsig_client_memwrite(c, &ev, src, 0, NULL), -EMSGSIZE);
        assert_int_equal(vmsig_client_memwrite(c, &ev, src, TAIL_MAX + 1, NULL), -EMSGSIZE);
        assert_int_equal(vmsig_client_memwrite(c, &ev, src, PAYLOAD_LEN, &corr), 0);
        vmsig_event_init(&key, VMSIG_EV_KEY, 1, VMSIG_SRC_INPUT);
        vmsig_event_set_body(&key, &ib, sizeof(ib));
        key.hdr.flags = VMSIG_F_FF;
        assert_int_equal(vmsig_client_send(c, &key, NULL), 0);
        assert_int_equal(vmsig_client_flush(c, 5000), 0);
        assert_int_equal(vmsig_client_recv_wait(c, &ev, &fd, NULL, 5000), VMSIG_CLIENT_EVENT);
        assert_int_equal(ev.hdr.kind, VMSIG_EV_ACT_ACK);
        assert_int_equal(ev.hdr.corr, corr);
        close(mfd);
        free(src);
        vmsig_client_free(c);
        srv_finish(s);
}

static void test_bad_daemon(void **state)
{
        struct vmsig_client *c;

        (void)state;
        ram_fd_for_srv = make_ram_fd();
        expect_broken(sc_bad_body, -EPROTO, "body_len");
        expect_broken(sc_reserved_body, -EPROTO, "field not zero");
        expect_broken(sc_stray_fd, -EPROTO, "file descriptor");
        expect_broken(sc_missing_fd, -EPROTO, "file descriptor");
        expect_broken(sc_writable_fd, -EPROTO, "file descriptor");
        expect_broken(sc_two_fds, -EPROTO, "file descriptor");
        expect_broken(sc_fd_flood, -EPROTO, "truncated");
        expect_broken(sc_hangup, -ECONNRESET, "closed");
        close(ram_fd_for_srv);

        struct srv *s = srv_start(sc_bad_welcome);
        assert_int_equal(vmsig_client_new(&c), 0);
        assert_int_equal(vmsig_client_connect(c, s->path, "ctl-test", 5000), -EPROTO);
        assert_non_null(strstr(vmsig_client_last_error(c)->msg, "version"));
        vmsig_client_free(c);
        srv_finish(s);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_session),           cmocka_unit_test(test_refused),
            cmocka_unit_test(test_refused_early),     cmocka_unit_test(test_connect_errors),
            cmocka_unit_test(test_handshake_timeout), cmocka_unit_test(test_memctx_fd),
            cmocka_unit_test(test_send_payload),      cmocka_unit_test(test_memwrite_v1_daemon),
            cmocka_unit_test(test_bad_daemon),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
