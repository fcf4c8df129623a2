/* SPDX-License-Identifier: MIT */
/* libvmsig's client receive path against a fuzzed daemon: the frames AND
 * the SCM_RIGHTS fds riding on them, through a real unix socket, so the
 * client's fd-to-frame matching sees the kernel's own read boundaries; each
 * MEMCTX event then goes through vmsig_memctx_from_event().
 *
 * The input decides exactly what the daemon has queued before each client
 * read:
 *
 *   op % 4: 0 raw bytes: u8 len, u8 fd mode, bytes
 *           1 the client reads until -EAGAIN or the end
 *           2 an event frame: u8 kind, u8 flags, u8 body_len (255: the
 *             kind's natural size), u8 fd mode, u8 split, u16 LE n, n body
 *             bytes (the rest of the body is zero);
 *             split != 0 sends it in two writes, the fd on the first or the
 *             second (fd mode bit 4)
 *           3 the daemon closes its write side
 *   fd mode & 7: 0 none, 1 read-only fd, 2 read-write fd, 3 write-only fd,
 *                4 two read-only fds in one message, else none
 *
 * Invariants (abort() on a miss): an event comes with an fd exactly when it
 * says VMSIG_F_HAS_FD, and that fd is read-only; a decoded MEMCTX has at
 * most 16 sane, disjoint ranges and the fd only when valid; once the client
 * is freed no fd is left open (received or in flight). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <vmsig/client.h>
#include <vmsig/event.h>
#include <vmsig/memctx.h>

#include "transport/wire.h"

/* The client is included, not linked, for one reason: its connect(2) call
 * becomes fuzz_connect() below, which hands it one end of a socketpair with
 * the daemon's WELCOME already queued. Everything else (HELLO, the WELCOME
 * check, every read and frame) is the library's own code, and the run is
 * single-threaded and deterministic: no listener, no accept, no scheduler. */
static int fuzz_connect(int fd, const struct sockaddr *sa, socklen_t len);
#define connect fuzz_connect
#include "transport/client.c"
#undef connect

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FD_SCAN 64 /* leak check: fds below this */

static struct {
        int server; /* the daemon's end of the current connection */
        int ro, rw, wo;
        int baseline; /* open fds before this run */
} G = {.server = -1};

static int count_fds(void)
{
        int n = 0;

        for (int fd = 0; fd < FD_SCAN; fd++)
                if (fcntl(fd, F_GETFD) >= 0)
                        n++;
        return n;
}

/* The daemon accepts and says WELCOME, as vmsigd does before reading HELLO. */
static int fuzz_connect(int fd, const struct sockaddr *sa, socklen_t len)
{
        uint8_t w[WIRE_PREFIX_LEN + WIRE_WELCOME_LEN];
        const struct wire_welcome wel = {.version = 1,
                                         .control_id = 1,
                                         .caps = 0xf,
                                         .uid = 1000,
                                         .body_max = VMSIG_BODY_MAX,
                                         .tail_max = 4096, /* sends only: keeps the run small */
                                         .queue_bytes = 256u * 1024u};
        ssize_t wl = wire_encode_welcome(w, sizeof(w), &wel);
        int sv[2];

        if (wl < 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 ||
            dup3(sv[0], fd, O_CLOEXEC) < 0)
                abort();
        close(sv[0]);
        if (send(sv[1], w, (size_t)wl, MSG_NOSIGNAL) != wl)
                abort();
        G.server = sv[1];
        return 0;
}

static void setup(void)
{
        G.ro = open("/dev/null", O_RDONLY | O_CLOEXEC);
        G.rw = open("/dev/null", O_RDWR | O_CLOEXEC);
        G.wo = open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (G.ro < 0 || G.rw < 0 || G.wo < 0)
                abort();
}

/* One write of the daemon, maybe with fds. */
static void daemon_send(int s, const void *buf, size_t len, unsigned mode)
{
        union {
                struct cmsghdr align;
                char b[CMSG_SPACE(2 * sizeof(int))];
        } cb;
        struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
        int fds[2] = {G.ro, G.ro};
        unsigned n = 0;

        if (!len)
                return; /* a stream carries no fd without a byte */
        switch (mode & 7) {
        case 1:
                n = 1;
                break;
        case 2:
                fds[0] = G.rw, n = 1;
                break;
        case 3:
                fds[0] = G.wo, n = 1;
                break;
        case 4:
                n = 2;
                break;
        }
        if (n) {
                memset(&cb, 0, sizeof(cb));
                msg.msg_control = cb.b;
                msg.msg_controllen = CMSG_SPACE(n * sizeof(int));
                struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
                cm->cmsg_level = SOL_SOCKET;
                cm->cmsg_type = SCM_RIGHTS;
                cm->cmsg_len = CMSG_LEN(n * sizeof(int));
                memcpy(CMSG_DATA(cm), fds, n * sizeof(int));
        }
        /* The client reads between writes, so the socket never fills. */
        (void)sendmsg(s, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
}

static size_t natural_body(uint16_t kind)
{
        switch (kind) {
        case VMSIG_EV_ROSTER:
                return sizeof(struct vmsig_roster_body);
        case VMSIG_EV_MEMCTX:
                return sizeof(struct vmsig_memctx_body);
        case VMSIG_EV_STATUS:
                return sizeof(struct vmsig_status_body);
        case VMSIG_EV_ACT_ACK:
                return sizeof(struct vmsig_ack_body);
        case VMSIG_EV_DIAG:
                return sizeof(struct vmsig_diag_body);
        case VMSIG_EV_LEASE_GRANT:
        case VMSIG_EV_LEASE_DENY:
        case VMSIG_EV_LEASE_REVOKE:
                return sizeof(struct vmsig_lease_body);
        default:
                return 0;
        }
}

static void check_memctx(const struct vmsig_event *ev, int fd)
{
        struct vmsig_memctx ctx;
        struct vmsig_memctx_body b;

        int r = vmsig_memctx_from_event(ev, fd, &ctx);
        if (r < 0) {
                if (r != -EBADMSG)
                        abort();
                return;
        }
        memcpy(&b, ev->body, sizeof(b));
        if (ctx.nranges > VMSIG_MEMCTX_MAX_RANGES || ctx.fd != (b.valid ? fd : -1) ||
            ctx.endpoint != ev->hdr.endpoint)
                abort();
        for (uint32_t i = 0; i < ctx.nranges; i++) {
                const struct vmsig_ram_range *x = &ctx.ranges[i];
                uint64_t off, avail;
                if (!x->len || x->gpa + x->len < x->gpa || x->file_offset + x->len < x->file_offset)
                        abort();
                for (uint32_t j = 0; j < i; j++)
                        if (x->gpa < ctx.ranges[j].gpa + ctx.ranges[j].len &&
                            ctx.ranges[j].gpa < x->gpa + x->len)
                                abort();
                /* disjoint ranges: each GPA resolves through its own range */
                if (vmsig_memctx_gpa_to_offset(&ctx, x->gpa + x->len - 1, &off, &avail) < 0 ||
                    off != x->file_offset + x->len - 1 || avail != 1)
                        abort();
        }
}

/* Let the client read what is queued; false once the connection ended. */
static bool client_reads(struct vmsig_client *c)
{
        static int verbose = -1; /* VMSIG_FUZZ_VERBOSE=1: say what the client made of a seed */

        if (verbose < 0)
                verbose = getenv("VMSIG_FUZZ_VERBOSE") != NULL;
        for (int i = 0; i < 256; i++) {
                struct vmsig_event ev;
                struct vmsig_client_reply rep;
                int fd = -1;
                int r = vmsig_client_recv(c, &ev, &fd, &rep);
                if (r == -EAGAIN)
                        return true;
                if (verbose)
                        fprintf(stderr, "recv %d kind %u fd %d%s%s\n", r,
                                r == VMSIG_CLIENT_EVENT ? ev.hdr.kind : 0, fd, r < 0 ? ": " : "",
                                r < 0 ? vmsig_client_last_error(c)->msg : "");
                if (r < 0) {
                        if (fd != -1 || !vmsig_client_last_error(c)->code)
                                abort();
                        return false;
                }
                if (r == VMSIG_CLIENT_REPLY) {
                        if (fd != -1)
                                abort();
                        continue;
                }
                if (r != VMSIG_CLIENT_EVENT || (fd >= 0) != !!(ev.hdr.flags & VMSIG_F_HAS_FD))
                        abort();
                if (fd >= 0) {
                        int fl = fcntl(fd, F_GETFL);
                        if (fl < 0 || (fl & O_ACCMODE) != O_RDONLY || !(fcntl(fd, F_GETFD) & FD_CLOEXEC))
                                abort();
                }
                if (ev.hdr.kind == VMSIG_EV_MEMCTX)
                        check_memctx(&ev, fd);
                if (fd >= 0)
                        close(fd);
        }
        return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static bool ready;
        static const uint16_t kinds[] = {VMSIG_EV_MEMCTX,     VMSIG_EV_ROSTER,       VMSIG_EV_STATUS,
                                         VMSIG_EV_ACT_ACK,    VMSIG_EV_DIAG,         VMSIG_EV_LEASE_GRANT,
                                         VMSIG_EV_LEASE_DENY, VMSIG_EV_LEASE_REVOKE, VMSIG_EV_CMD_POWER};
        static uint64_t seq;
        struct vmsig_client *c = NULL;
        int s = -1;

        if (!ready) {
                setup();
                ready = true;
        }
        /* per run: the replay main holds a directory open between runs */
        G.baseline = count_fds();
        /* the path is never used: fuzz_connect() makes the connection */
        if (vmsig_client_new(&c) < 0 || vmsig_client_connect(c, "/nonexistent/vmsigd.sock", "fuzz", 5000) < 0)
                abort();
        s = G.server;
        G.server = -1;

        bool alive = true;
        for (size_t i = 0; i < size && alive;) {
                uint8_t op = data[i++] % 4;
                switch (op) {
                case 0: {
                        if (size - i < 2) {
                                i = size;
                                break;
                        }
                        size_t len = data[i], mode = data[i + 1];
                        i += 2;
                        if (len > size - i)
                                len = size - i;
                        daemon_send(s, data + i, len, (unsigned)mode);
                        i += len;
                        break;
                }
                case 1:
                        alive = client_reads(c);
                        break;
                case 2: {
                        if (size - i < 7) {
                                i = size;
                                break;
                        }
                        uint8_t k = data[i], fl = data[i + 1], bl = data[i + 2], mode = data[i + 3],
                                split = data[i + 4];
                        size_t n = (size_t)data[i + 5] | (size_t)data[i + 6] << 8;
                        i += 7;
                        if (n > size - i)
                                n = size - i;
                        struct vmsig_event ev;
                        memset(&ev, 0, sizeof(ev));
                        ev.hdr.kind = k & 0x80 ? k & 0x3f : kinds[k % (sizeof(kinds) / sizeof(kinds[0]))];
                        ev.hdr.source = ev.hdr.kind == VMSIG_EV_MEMCTX ? VMSIG_SRC_MEMCTX : VMSIG_SRC_CORE;
                        ev.hdr.priority = VMSIG_PRIO_HIGH;
                        ev.hdr.flags = fl;
                        ev.hdr.endpoint = 1;
                        ev.hdr.seq = ++seq;
                        ev.hdr.ts_ns = 1000000;
                        size_t body = bl == 255 ? natural_body(ev.hdr.kind) : (size_t)bl * 2;
                        ev.hdr.body_len = (uint32_t)body;
                        if (body > VMSIG_BODY_MAX)
                                body = VMSIG_BODY_MAX;
                        memcpy(ev.body, data + i, n < body ? n : body);
                        i += n;
                        uint8_t fr[WIRE_FRAME_MAX];
                        uint32_t plen = (uint32_t)(sizeof(ev.hdr) + body);
                        uint16_t type = WIRE_EVENT;
                        memcpy(fr, &plen, 4); /* little-endian hosts only, like the daemon */
                        memcpy(fr + 4, &type, 2);
                        memset(fr + 6, 0, 2);
                        memcpy(fr + WIRE_PREFIX_LEN, &ev, plen);
                        size_t flen = WIRE_PREFIX_LEN + plen, cut = split ? split % flen : 0;
                        if (!cut) {
                                daemon_send(s, fr, flen, mode);
                        } else {
                                bool late = mode & 0x10;
                                daemon_send(s, fr, cut, late ? 0 : mode);
                                daemon_send(s, fr + cut, flen - cut, late ? mode : 0);
                        }
                        break;
                }
                default:
                        shutdown(s, SHUT_WR);
                        break;
                }
        }
        if (alive) { /* the daemon goes away: whatever is queued, then the end */
                shutdown(s, SHUT_WR);
                (void)client_reads(c);
        }
        close(s);
        vmsig_client_free(c);
        if (count_fds() != G.baseline)
                abort(); /* an fd the client received or was sent leaked */
        return 0;
}
