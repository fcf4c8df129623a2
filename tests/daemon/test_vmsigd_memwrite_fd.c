/* SPDX-License-Identifier: MIT */
/* vmsigd integration: CMD_MEMWRITE with its source in a client's memfd
 * (protocol version 2, docs/protocol.md section 7.2), from outside over the
 * socket. The client API writes (copying form, zero-copy staging buffer,
 * a caller's memfd at an offset) land in guest RAM; a pipe, socket, char
 * device, O_WRONLY memfd or O_PATH fd ends the connection; so do two fds at
 * once, an fd on a frame that does not announce one, a HAS_FD frame without
 * its fd, and any fd or HAS_FD on a version-1 connection. A too-small
 * source, a length over the bound and a missing lease are ACKed refusals
 * and the connection stays. A source truncated while writes run gives only
 * success or a failed ACK. A source sealed against shrinking is mapped by
 * the daemon and reused: rewritten, grown and swapped sources land right,
 * and the mapping is gone a little after the writes stop. The daemon's fd
 * count returns to where it was
 * after all of it, and after refusals for a missing capability; with fd
 * writes still queued it shuts down cleanly. tail_max = 65536. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <inttypes.h>
#include <linux/magic.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/statfs.h>

#include "adapters/stub_internal.h"
#include "vmsigd_harness.h"

#define TAIL_MAX   65536u
#define TARGET_VA  (VMSIG_STUB_KERNEL_BASE + 0x300000u)
#define TARGET_GPA UINT64_C(0x300000)

static struct vh H;
static struct vmsig_client *W; /* watcher: roster + leases + memctx */
static uint32_t EP;
static struct vmsig_memctx CTX = {.fd = -1}; /* alpha's memctx; CTX.fd its RAM fd */

static int setup_with(const char *extra_conf)
{
        char conf[256];

        CTX.fd = -1;
        snprintf(conf, sizeof(conf), "[limits]\ntail_max = 65536\n%s", extra_conf);
        if (vh_setup_memctx_vm(&H, conf, &W, &EP, &CTX) < 0)
                return -1;
        return 0;
}

static int setup(void **state)
{
        (void)state;
        return setup_with("");
}

/* root without the memwrite capability */
static int setup_nocap(void **state)
{
        (void)state;
        return setup_with("[uid:0]\ncaps = roster,memctx,status\n");
}

static int teardown(void **state)
{
        (void)state;
        vh_teardown_memctx_vm(&H, &W, &CTX);
        return 0;
}

static int memfd_with(const uint8_t *data, size_t len, size_t size)
{
        int fd = memfd_create("test-src", MFD_CLOEXEC);

        assert_true(fd >= 0);
        assert_int_equal(ftruncate(fd, (off_t)size), 0);
        if (len)
                assert_int_equal(pwrite(fd, data, len, 0), (ssize_t)len);
        return fd;
}

/* A client holding the memwrite lease. */
static struct vmsig_client *writer(const char *name)
{
        struct vmsig_client *c = vh_client(&H, name);

        assert_non_null(c);
        assert_int_equal(vh_lease(c, EP, VMSIG_LEASE_MEMWRITE, true), 0);
        assert_true(vmsig_client_can_memwrite_fd(c));
        assert_int_equal(vmsig_client_get_info(c)->version, 2);
        return c;
}

static void mw_event(struct vmsig_event *ev, uint64_t va)
{
        struct vmsig_memwrite_body mb = {.addr = va};

        vmsig_event_init(ev, VMSIG_EV_CMD_MEMWRITE, EP, VMSIG_SRC_MEMCTX);
        vmsig_event_set_body(ev, &mb, WIRE_MEMWRITE_HDR_LEN);
}

static int32_t ack_of(struct vmsig_client *c, uint64_t corr, char *msg, size_t len)
{
        struct vmsig_ack_body ack;

        assert_int_equal(vh_wait_ack(c, corr, &ack, NULL, NULL), 0);
        if (msg)
                snprintf(msg, len, "%s", ack.msg);
        return ack.result;
}

/* ---- raw version-2 connections ---- */

/* HELLO offering 1..vmax, WELCOME. */
static int raw_hello(uint16_t vmax, uint16_t *ret_version)
{
        struct wire_hello h = {.magic = WIRE_MAGIC, .version_min = 1, .version_max = vmax};
        uint8_t buf[WIRE_FRAME_MAX];
        struct wire_frame f;
        int fd = vh_raw_connect(H.sock);

        assert_true(fd >= 0);
        snprintf(h.name, sizeof(h.name), "raw-v%u", vmax);
        ssize_t n = wire_encode_hello_raw(buf, sizeof(buf), &h);
        assert_true(n > 0);
        assert_int_equal(vh_raw_send(fd, buf, (size_t)n), 0);
        assert_int_equal(vh_raw_frame(fd, &f, VH_TIMEOUT_MS), 1);
        assert_int_equal(f.type, WIRE_WELCOME);
        *ret_version = f.u.welcome.version;
        return fd;
}

/* The bytes of an fd-source CMD_MEMWRITE frame (flags as given). */
static size_t fd_frame(uint8_t *buf, uint64_t corr, uint16_t flags, uint32_t len, uint64_t src_off)
{
        struct vmsig_event ev;
        struct vmsig_memwrite_fd_body fb = {.addr = TARGET_VA, .len = len, .src_off = src_off};

        vmsig_event_init(&ev, VMSIG_EV_CMD_MEMWRITE, EP, VMSIG_SRC_MEMCTX);
        ev.hdr.corr = corr;
        ev.hdr.flags = flags;
        vmsig_event_set_body(&ev, &fb, sizeof(fb));
        ssize_t n = wire_encode_event(buf, WIRE_FRAME_MAX, &ev, true);
        if (n < 0) {
                /* the codec refuses what the daemon would: build it by hand */
                ev.hdr.flags = VMSIG_F_HAS_FD;
                n = wire_encode_event(buf, WIRE_FRAME_MAX, &ev, true);
                assert_true(n > 0);
                buf[WIRE_PREFIX_LEN + 6] = (uint8_t)flags;
                buf[WIRE_PREFIX_LEN + 7] = (uint8_t)(flags >> 8);
        }
        return (size_t)n;
}

static void send_with_fds(int sock, const void *buf, size_t len, const int *fds, unsigned nfds)
{
        union {
                char b[CMSG_SPACE(sizeof(int) * 4)];
                struct cmsghdr align;
        } cb;
        struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};

        memset(&cb, 0, sizeof(cb));
        if (nfds) {
                mh.msg_control = cb.b;
                mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
                struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
                cm->cmsg_level = SOL_SOCKET;
                cm->cmsg_type = SCM_RIGHTS;
                cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
                memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
        }
        assert_int_equal(sendmsg(sock, &mh, MSG_NOSIGNAL), (ssize_t)len);
}

/* ERROR with code and a message naming needle, then the end of the stream. */
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
                assert_true(f.type == WIRE_EVENT || f.type == WIRE_REPLY); /* answers sent before it */
        }
        if (f.u.error.code != code || !strstr(f.u.error.msg, needle))
                fail_msg("ERROR %d '%s', expected %d naming '%s'", f.u.error.code, f.u.error.msg, code,
                         needle);
        assert_true(vh_raw_ends(fd, VH_TIMEOUT_MS));
}

/* One bad fd as the source of an otherwise good v2 frame. */
static void bad_source(int src, const char *needle)
{
        uint16_t v;
        int s = raw_hello(2, &v);
        uint8_t buf[WIRE_FRAME_MAX];

        assert_int_equal(v, 2);
        size_t n = fd_frame(buf, 5, VMSIG_F_HAS_FD, 4096, 0);
        send_with_fds(s, buf, n, &src, 1);
        expect_error_then_end(s, -EBADF, needle);
        close(s);
}

/* ---- the daemon's fds ---- */

static unsigned daemon_fds(void)
{
        char path[64];
        unsigned n = 0;
        DIR *d;

        snprintf(path, sizeof(path), "/proc/%d/fd", (int)H.pid);
        d = opendir(path);
        assert_non_null(d);
        for (struct dirent *e; (e = readdir(d));)
                if (e->d_name[0] != '.')
                        n++;
        closedir(d);
        return n;
}

/* The count settles back to at most want (connections close
 * asynchronously; the daemon may also have closed a spare meanwhile). */
static void expect_daemon_fds(unsigned want)
{
        uint64_t deadline = vh_now_ms() + VH_TIMEOUT_MS;
        unsigned n;

        while ((n = daemon_fds()) > want && vh_left(deadline) > 0) {
                /* keep the daemon's loop turning: a round trip on the watcher */
                uint64_t corr;
                if (vmsig_client_subscribe(W, 0, 1ull << VMSIG_EV_ROSTER, &corr) == 0)
                        (void)vh_wait_reply(W, corr, NULL, NULL, NULL, VH_TIMEOUT_MS);
                poll(NULL, 0, 20);
        }
        if (n > want)
                fail_msg("vmsigd holds %u fds, %u before", n, want);
}

/* ---- tests ---- */

static void test_client_forms(void **state)
{
        (void)state;
        struct vmsig_client *c = writer("fd-writer");
        struct vmsig_event ev;
        static uint8_t data[TAIL_MAX];
        uint64_t corr;
        char msg[VMSIG_MSG_MAX];
        void *stage, *again;
        size_t stage_len = 0;

        /* copying form, at the fd threshold: the staging memfd */
        vh_pattern(data, sizeof(data), 0x11);
        mw_event(&ev, TARGET_VA);
        assert_int_equal(vmsig_client_memwrite(c, &ev, data, VMSIG_CLIENT_MEMWRITE_FD_MIN, &corr), 0);
        assert_int_equal(vmsig_client_memwrite_buffer(c, &again, NULL), -EBUSY); /* until its ACK */
        assert_int_equal(ack_of(c, corr, msg, sizeof(msg)), 0);
        assert_non_null(strstr(msg, "from the source fd"));
        assert_true(vh_ram_equals(&CTX, TARGET_GPA, data, VMSIG_CLIENT_MEMWRITE_FD_MIN));

        /* zero-copy: fill the staging buffer in place */
        assert_int_equal(vmsig_client_memwrite_buffer(c, &stage, &stage_len), 0);
        assert_int_equal(stage_len, TAIL_MAX);
        vh_pattern(stage, 5000, 0x22);
        mw_event(&ev, TARGET_VA + 0x10000 + 3);
        assert_int_equal(vmsig_client_memwrite_submit(c, &ev, 5000, &corr), 0);
        assert_int_equal(vmsig_client_memwrite_submit(c, &ev, 5000, NULL), -EBUSY);
        assert_int_equal(ack_of(c, corr, NULL, 0), 0);
        vh_pattern(data, 5000, 0x22);
        assert_true(vh_ram_equals(&CTX, TARGET_GPA + 0x10000 + 3, data, 5000));
        assert_int_equal(vmsig_client_memwrite_buffer(c, &again, NULL), 0);
        assert_ptr_equal(again, stage);
        assert_int_equal(vmsig_client_memwrite_submit(c, &ev, TAIL_MAX + 1, NULL), -EMSGSIZE);

        /* a caller's memfd at an offset */
        vh_pattern(data, sizeof(data), 0x33);
        int src = memfd_with(data, sizeof(data), sizeof(data));
        mw_event(&ev, TARGET_VA + 0x20000);
        assert_int_equal(vmsig_client_send_fd(c, &ev, src, 4096, 8192, &corr), 0);
        assert_int_equal(ack_of(c, corr, NULL, 0), 0);
        assert_true(vh_ram_equals(&CTX, TARGET_GPA + 0x20000, data + 4096, 8192));
        close(src);

        /* the tail still works on the same connection */
        vh_pattern(data, 3000, 0x44);
        mw_event(&ev, TARGET_VA + 0x30000);
        assert_int_equal(vmsig_client_memwrite(c, &ev, data, 3000, &corr), 0);
        assert_int_equal(ack_of(c, corr, msg, sizeof(msg)), 0);
        assert_null(strstr(msg, "source fd"));
        assert_true(vh_ram_equals(&CTX, TARGET_GPA + 0x30000, data, 3000));
        vh_client_close(c);
}

static void test_bad_fd_types(void **state)
{
        (void)state;
        int p[2], sp[2];

        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        bad_source(p[0], "pipe");
        close(p[0]);
        close(p[1]);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
        bad_source(sp[0], "socket");
        close(sp[0]);
        close(sp[1]);
        int z = open("/dev/zero", O_RDONLY | O_CLOEXEC);
        assert_true(z >= 0);
        bad_source(z, "not a regular file");
        close(z);
        int mfd = memfd_with(NULL, 0, 8192);
        char path[64];
        snprintf(path, sizeof(path), "/proc/self/fd/%d", mfd);
        int wo = open(path, O_WRONLY | O_CLOEXEC);
        assert_true(wo >= 0);
        bad_source(wo, "not open for reading");
        close(wo);
        int op = open(path, O_PATH | O_CLOEXEC);
        assert_true(op >= 0);
        bad_source(op, "O_PATH");
        close(op);
        close(mfd);
        /* a regular file, but not on tmpfs (the daemon's own log file) */
        int reg = open(H.conf, O_RDONLY | O_CLOEXEC);
        assert_true(reg >= 0);
        struct statfs sf;
        if (fstatfs(reg, &sf) == 0 && sf.f_type != TMPFS_MAGIC)
                bad_source(reg, "not a memfd or tmpfs file");
        close(reg);
}

static void test_fd_framing(void **state)
{
        (void)state;
        uint8_t buf[2 * WIRE_FRAME_MAX];
        uint16_t v;
        int mfd = memfd_with(NULL, 0, 8192), s;
        int two[2] = {mfd, mfd};

        /* two fds at once */
        s = raw_hello(2, &v);
        size_t n = fd_frame(buf, 1, VMSIG_F_HAS_FD, 4096, 0);
        send_with_fds(s, buf, n, two, 2);
        expect_error_then_end(s, -EPROTO, "more than one fd");
        close(s);

        /* an fd on a frame that does not announce one */
        s = raw_hello(2, &v);
        n = wire_encode_subscribe(buf, sizeof(buf), 1, 0, 1ull << VMSIG_EV_ROSTER);
        send_with_fds(s, buf, n, &mfd, 1);
        expect_error_then_end(s, -EPROTO, "fd");
        close(s);

        /* ... nor on a tail-form MEMWRITE */
        s = raw_hello(2, &v);
        struct vmsig_event ev;
        struct vmsig_memwrite_body mb = {.addr = TARGET_VA, .len = 8};
        vmsig_event_init(&ev, VMSIG_EV_CMD_MEMWRITE, EP, VMSIG_SRC_MEMCTX);
        vmsig_event_set_body(&ev, &mb, WIRE_MEMWRITE_HDR_LEN + 8);
        n = (size_t)wire_encode_event(buf, sizeof(buf), &ev, true);
        send_with_fds(s, buf, n, &mfd, 1);
        expect_error_then_end(s, -EPROTO, "fd");
        close(s);

        /* HAS_FD without an fd */
        s = raw_hello(2, &v);
        n = fd_frame(buf, 1, VMSIG_F_HAS_FD, 4096, 0);
        send_with_fds(s, buf, n, NULL, 0);
        expect_error_then_end(s, -EPROTO, "HAS_FD");
        close(s);

        /* HAS_FD with SRC_PAYLOAD: one source only */
        s = raw_hello(2, &v);
        n = fd_frame(buf, 1, VMSIG_F_HAS_FD | VMSIG_F_SRC_PAYLOAD, 4096, 0);
        send_with_fds(s, buf, n, &mfd, 1);
        expect_error_then_end(s, -EPROTO, "flag");
        close(s);

        /* version 1: no fd, no HAS_FD */
        s = raw_hello(1, &v);
        assert_int_equal(v, 1);
        n = fd_frame(buf, 1, VMSIG_F_HAS_FD, 4096, 0);
        send_with_fds(s, buf, n, &mfd, 1);
        expect_error_then_end(s, -EPROTO, "version 2");
        close(s);
        s = raw_hello(1, &v);
        send_with_fds(s, buf, n, NULL, 0);
        expect_error_then_end(s, -EPROTO, "flag");
        close(s);
        close(mfd);
}

static void test_refusals_are_acks(void **state)
{
        (void)state;
        struct vmsig_client *c = writer("fd-refused");
        struct vmsig_client *nolease = vh_client(&H, "no-lease");
        struct vmsig_event ev;
        uint8_t data[8192];
        uint64_t corr;
        char msg[VMSIG_MSG_MAX];

        vh_pattern(data, sizeof(data), 0x55);
        int small = memfd_with(data, 4096, 4096);
        mw_event(&ev, TARGET_VA);
        /* the source ends before off + len: nothing written */
        assert_int_equal(vmsig_client_send_fd(c, &ev, small, 0, 8192, &corr), 0);
        assert_int_equal(ack_of(c, corr, msg, sizeof(msg)), -ENODATA);
        assert_non_null(strstr(msg, "nothing written"));
        assert_int_equal(vmsig_client_send_fd(c, &ev, small, UINT64_MAX - 10, 100, &corr), 0);
        assert_int_equal(ack_of(c, corr, NULL, 0), -ENODATA);
        /* over the bound: the bus refuses it like any CMD_MEMWRITE */
        int big = memfd_with(NULL, 0, 2 * TAIL_MAX);
        assert_int_equal(vmsig_client_send_fd(c, &ev, big, 0, TAIL_MAX + 1, &corr), 0);
        assert_int_equal(ack_of(c, corr, NULL, 0), -EMSGSIZE);
        /* no lease */
        assert_non_null(nolease);
        assert_int_equal(vmsig_client_send_fd(nolease, &ev, big, 0, 4096, &corr), 0);
        assert_int_equal(ack_of(nolease, corr, NULL, 0), -EPERM);
        /* the connections stay and still write */
        assert_int_equal(vmsig_client_send_fd(c, &ev, small, 0, 4096, &corr), 0);
        assert_int_equal(ack_of(c, corr, NULL, 0), 0);
        assert_true(vh_ram_equals(&CTX, TARGET_GPA, data, 4096));
        close(small);
        close(big);
        vh_client_close(nolease);
        vh_client_close(c);
}

struct shaker {
        int fd;
        atomic_bool stop;
};

static void *shake(void *arg)
{
        struct shaker *s = arg;
        for (unsigned i = 0; !atomic_load(&s->stop); i++)
                (void)!ftruncate(s->fd, (off_t)((i & 1) ? TAIL_MAX : (i % 7) * 4096));
        return NULL;
}

static int sealed_memfd(const char *name, const uint8_t *data, size_t len)
{
        int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);

        assert_true(fd >= 0);
        assert_int_equal(pwrite(fd, data, len, 0), (ssize_t)len);
        assert_int_equal(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK), 0);
        return fd;
}

static void write_fd_ok(struct vmsig_client *c, int fd, uint64_t src_off, size_t len)
{
        struct vmsig_event ev;
        uint64_t corr;
        char msg[VMSIG_MSG_MAX];

        mw_event(&ev, TARGET_VA);
        assert_int_equal(vmsig_client_send_fd(c, &ev, fd, src_off, len, &corr), 0);
        assert_int_equal(ack_of(c, corr, msg, sizeof(msg)), 0);
}

static void test_sealed_source(void **state)
{
        (void)state;
        static uint8_t a[TAIL_MAX], b[TAIL_MAX];
        struct vmsig_client *c = writer("fd-sealed");
        unsigned fds = daemon_fds();

        vh_pattern(a, sizeof(a), 0x51);
        int s1 = sealed_memfd("vmsig-test-sealed1", a, sizeof(a));
        write_fd_ok(c, s1, 0, TAIL_MAX);
        assert_true(vh_ram_equals(&CTX, TARGET_GPA, a, TAIL_MAX));
        assert_true(vh_daemon_maps_memfd(&H, "vmsig-test-sealed1"));
        /* the same file, new bytes: the kept mapping sees them */
        vh_pattern(a, sizeof(a), 0x52);
        assert_int_equal(pwrite(s1, a, sizeof(a), 0), (ssize_t)sizeof(a));
        write_fd_ok(c, s1, 0, TAIL_MAX);
        assert_true(vh_ram_equals(&CTX, TARGET_GPA, a, TAIL_MAX));
        /* grown past what was mapped (only shrinking is sealed) */
        vh_pattern(b, sizeof(b), 0x53);
        assert_int_equal(pwrite(s1, b, sizeof(b), TAIL_MAX), (ssize_t)sizeof(b));
        write_fd_ok(c, s1, TAIL_MAX, TAIL_MAX);
        assert_true(vh_ram_equals(&CTX, TARGET_GPA, b, TAIL_MAX));
        /* it cannot shrink under the mapping */
        assert_int_equal(ftruncate(s1, 4096), -1);
        assert_int_equal(errno, EPERM);
        /* an unsealed file is read, not mapped, and the sealed one stays
         * mapped; another sealed one takes its place */
        vh_pattern(a, sizeof(a), 0x55);
        int u = memfd_with(a, sizeof(a), sizeof(a));
        write_fd_ok(c, u, 0, TAIL_MAX);
        assert_true(vh_ram_equals(&CTX, TARGET_GPA, a, TAIL_MAX));
        assert_false(vh_daemon_maps_memfd(&H, "test-src"));
        assert_true(vh_daemon_maps_memfd(&H, "vmsig-test-sealed1"));
        vh_pattern(b, sizeof(b), 0x54);
        int s2 = sealed_memfd("vmsig-test-sealed2", b, sizeof(b));
        write_fd_ok(c, s2, 0, TAIL_MAX);
        assert_true(vh_ram_equals(&CTX, TARGET_GPA, b, TAIL_MAX));
        assert_true(vh_daemon_maps_memfd(&H, "vmsig-test-sealed2"));
        assert_false(vh_daemon_maps_memfd(&H, "vmsig-test-sealed1"));
        close(s1);
        close(s2);
        close(u);
        vh_client_close(c);
        /* the daemon lets go of the control's memory once writes stop */
        int waited_ms = 0;
        while (vh_daemon_maps_memfd(&H, "vmsig-test-sealed2") && waited_ms < 6000) {
                usleep(100 * 1000);
                waited_ms += 100;
        }
        print_message("the sealed source was unmapped %d ms after the last write\n", waited_ms);
        assert_false(vh_daemon_maps_memfd(&H, "vmsig-test-sealed2"));
        expect_daemon_fds(fds);
}

/* vmsigctl write --file: from 64 KiB up through its staging memfd, below
 * as a tail; the bytes land either way. */
static void test_vmsigctl_write_file(void **state)
{
        (void)state;
        static uint8_t data[TAIL_MAX];
        char path[64], out[4096], va[32];
        const size_t sizes[2] = {TAIL_MAX, 10000};

        snprintf(path, sizeof(path), "%s/write.bin", H.dir);
        snprintf(va, sizeof(va), "0x%" PRIx64, (uint64_t)TARGET_VA);
        for (int i = 0; i < 2; i++) {
                vh_pattern(data, sizes[i], (uint8_t)(0x61 + i));
                int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
                assert_true(fd >= 0);
                assert_int_equal(write(fd, data, sizes[i]), (ssize_t)sizes[i]);
                close(fd);
                assert_int_equal(
                    vh_vmsigctl(&H, -1, out, sizeof(out), "write", "--file", path, "alpha", va, (char *)NULL),
                    0);
                print_message("vmsigctl write --file (%zu bytes): %s", sizes[i], out);
                assert_true((strstr(out, "from the source fd") != NULL) == (i == 0));
                assert_true(vh_ram_equals(&CTX, TARGET_GPA, data, sizes[i]));
        }
}

static void test_truncate_race(void **state)
{
        (void)state;
        struct vmsig_client *c = writer("fd-race");
        struct shaker sh = {.fd = memfd_with(NULL, 0, TAIL_MAX)};
        struct vmsig_event ev;
        pthread_t th;
        unsigned ok = 0, failed = 0;

        mw_event(&ev, TARGET_VA);
        assert_int_equal(pthread_create(&th, NULL, shake, &sh), 0);
        for (int i = 0; i < 200; i++) {
                uint64_t corr;
                char msg[VMSIG_MSG_MAX];
                assert_int_equal(vmsig_client_send_fd(c, &ev, sh.fd, 0, TAIL_MAX, &corr), 0);
                int32_t r = ack_of(c, corr, msg, sizeof(msg));
                if (r == 0)
                        ok++;
                else if (r == -ENODATA || (r == -EIO && strstr(msg, "shrank")))
                        failed++;
                else
                        fail_msg("unexpected ACK %d '%s'", r, msg);
        }
        atomic_store(&sh.stop, true);
        pthread_join(th, NULL);
        print_message("truncate race: %u written, %u refused as short\n", ok, failed);
        assert_int_equal(ok + failed, 200);
        close(sh.fd);
        /* the daemon is fine */
        assert_true(vh_try_reap(&H) == false);
        vh_client_close(c);
}

static void test_daemon_fds_return(void **state)
{
        (void)state;
        int mfd = memfd_with(NULL, 0, TAIL_MAX), p[2];
        struct vmsig_event ev;
        uint64_t corr;

        /* one good write first, so that whatever the daemon keeps for
         * later writes already exists */
        struct vmsig_client *w0 = writer("fd-warm");
        mw_event(&ev, TARGET_VA);
        assert_int_equal(vmsig_client_send_fd(w0, &ev, mfd, 0, 4096, &corr), 0);
        assert_int_equal(ack_of(w0, corr, NULL, 0), 0);
        vh_client_close(w0);
        unsigned base = daemon_fds();
        print_message("vmsigd holds %u fds before\n", base);

        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        for (int round = 0; round < 10; round++) {
                struct vmsig_client *c = writer("fd-count");
                mw_event(&ev, TARGET_VA);
                /* good, too small, over the bound */
                assert_int_equal(vmsig_client_send_fd(c, &ev, mfd, 0, 4096, &corr), 0);
                assert_int_equal(ack_of(c, corr, NULL, 0), 0);
                assert_int_equal(vmsig_client_send_fd(c, &ev, mfd, TAIL_MAX, 4096, &corr), 0);
                assert_int_equal(ack_of(c, corr, NULL, 0), -ENODATA);
                assert_int_equal(vmsig_client_send_fd(c, &ev, mfd, 0, TAIL_MAX + 1, &corr), 0);
                assert_int_equal(ack_of(c, corr, NULL, 0), -EMSGSIZE);
                /* queued ones, then gone without waiting for their ACKs */
                for (int i = 0; i < 8; i++)
                        (void)vmsig_client_send_fd(c, &ev, mfd, 0, TAIL_MAX, NULL);
                vh_client_close(c);
                /* no lease */
                c = vh_client(&H, "fd-nolease");
                assert_non_null(c);
                assert_int_equal(vmsig_client_send_fd(c, &ev, mfd, 0, 4096, &corr), 0);
                assert_int_equal(ack_of(c, corr, NULL, 0), -EPERM);
                vh_client_close(c);
                /* refused types and framing */
                bad_source(p[0], "pipe");
                uint16_t v;
                uint8_t buf[WIRE_FRAME_MAX];
                int s = raw_hello(2, &v);
                int two[2] = {mfd, mfd};
                size_t n = fd_frame(buf, 1, VMSIG_F_HAS_FD, 4096, 0);
                send_with_fds(s, buf, n, two, 2);
                expect_error_then_end(s, -EPROTO, "more than one fd");
                close(s);
        }
        close(p[0]);
        close(p[1]);
        close(mfd);
        expect_daemon_fds(base);
        print_message("vmsigd holds %u fds after 10 rounds of good and bad fd writes\n", daemon_fds());
}

static void test_capability_missing(void **state)
{
        (void)state;
        struct vmsig_client *c = vh_client(&H, "fd-nocap");
        int mfd = memfd_with(NULL, 0, 8192);
        struct vmsig_event ev;
        uint64_t corr;
        char msg[VMSIG_MSG_MAX];

        assert_non_null(c);
        unsigned base = daemon_fds();
        mw_event(&ev, TARGET_VA);
        for (int i = 0; i < 20; i++) {
                assert_int_equal(vmsig_client_send_fd(c, &ev, mfd, 0, 4096, &corr), 0);
                assert_int_equal(ack_of(c, corr, msg, sizeof(msg)), -EPERM);
                assert_non_null(strstr(msg, "capability memwrite"));
        }
        expect_daemon_fds(base);
        close(mfd);
        vh_client_close(c);
}

/* Writes still queued when the daemon stops: it exits cleanly (the ASan
 * build also checks that nothing leaks). */
static void test_queued_at_shutdown(void **state)
{
        (void)state;
        struct vmsig_client *c = writer("fd-shutdown");
        int mfd = memfd_with(NULL, 0, TAIL_MAX);
        struct vmsig_event ev;

        mw_event(&ev, TARGET_VA);
        for (int i = 0; i < 16; i++)
                (void)vmsig_client_send_fd(c, &ev, mfd, 0, TAIL_MAX, NULL);
        assert_int_equal(vh_stop(&H, VH_TIMEOUT_MS), 0);
        close(mfd);
        vh_client_close(c);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_client_forms, setup, teardown),
            cmocka_unit_test_setup_teardown(test_bad_fd_types, setup, teardown),
            cmocka_unit_test_setup_teardown(test_fd_framing, setup, teardown),
            cmocka_unit_test_setup_teardown(test_refusals_are_acks, setup, teardown),
            cmocka_unit_test_setup_teardown(test_sealed_source, setup, teardown),
            cmocka_unit_test_setup_teardown(test_vmsigctl_write_file, setup, teardown),
            cmocka_unit_test_setup_teardown(test_truncate_race, setup, teardown),
            cmocka_unit_test_setup_teardown(test_daemon_fds_return, setup, teardown),
            cmocka_unit_test_setup_teardown(test_capability_missing, setup_nocap, teardown),
            cmocka_unit_test_setup_teardown(test_queued_at_shutdown, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
