/* SPDX-License-Identifier: MIT */
/* Server side of the unix-socket transport. One connection = one control.
 *
 * Input: recvmsg into a buffer, fed to the incremental wire receiver; any
 * violation sends one ERROR frame naming it, flushes, and closes only that
 * connection. The one fd a client may send is the source of a version-2
 * CMD_MEMWRITE with HAS_FD (src_fd.c checks it is a readable regular file
 * on tmpfs); any other fd, or MSG_CTRUNC, is a violation.
 *
 * Output: the bus delivers into a fixed per-connection buffer; when a frame
 * does not fit, delivery returns -EAGAIN and the bus holds further events in
 * the control's bounded queue (the hard limit: overflow disconnects). We
 * write as soon as we have bytes and ask for EPOLLOUT only after EAGAIN. An
 * fd travels with SCM_RIGHTS on the first byte of its frame. A little of
 * the socket buffer is always kept free, so the ERROR that ends a
 * connection fits in the socket and outlives our close.
 *
 * Accept: refusals are reported in full only a few times per uid and
 * window, then summarised. Out of fds, a spare fd lets us accept a waiting
 * client to tell it why; with no spare the listener pauses (it would stay
 * readable and spin the loop) until a connection closes or the next tick. */
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <linux/sockios.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#include <vmsig/server.h>

#include "transport/wire.h"
#include "util/clock.h"

#define OUT_FDS_MAX 16
#define RX_CHUNK    65536
#define MAX_GROUPS  64

/* Socket buffer kept free behind the last frame we write, so the ERROR
 * that ends a connection always fits in the socket (the rest of a partly
 * written frame, the ERROR, and the kernel's per-skb overhead of the
 * writes before them), and a client that resumes reading late still finds
 * why it was dropped. */
#define SOCK_RESERVE    (32u << 10)
#define SOCK_SNDBUF_MIN (4 * SOCK_RESERVE)

/* Refused connections are reported one by one up to REFUSE_BURST per uid
 * in a REFUSE_WINDOW_S window; the rest are counted and summarised once the
 * window ends. A fixed table: uids beyond it share one "other uids" slot. */
#define REFUSE_SLOTS    64
#define REFUSE_BURST    5u
#define REFUSE_WINDOW_S 10u

struct refuse_slot {
        bool used;
        uid_t uid;
        int code;
        uint64_t start_ns;
        unsigned count;
        unsigned long suppressed;
};

struct out_fd {
        size_t off; /* stream offset (in out[]) of the frame's first byte */
        int fd;
};

/* A client fd that arrived with the stream bytes [lo, hi): the HAS_FD frame
 * it belongs to starts there (the kernel hands an fd over with the read
 * that reaches its first byte, and ends that read with it). Two may wait:
 * a frame cut by the end of our buffer completes in the next read, which
 * may bring the next fd. */
#define IN_FDS_MAX 2
struct in_fd {
        int fd;
        uint64_t lo, hi;
};

struct conn {
        struct vmsig_server *srv;
        int fd;
        struct vmsig_io *io;
        uid_t uid;
        gid_t gid;
        pid_t pid;
        uint32_t caps;
        struct vmsig_control *ctl;
        struct wire_rx rx;
        uint8_t *out;
        size_t out_cap, out_start, out_end;
        /* The first frame start at or after out_start: bytes before it
         * belong to a frame already partly on the wire, which must finish;
         * frames from it on may still be dropped whole. */
        size_t boundary;
        uint32_t ctl_id;
        size_t sndbuf, reserve; /* the socket's send buffer and what we keep free of it */
        size_t outq_bound;      /* >= the kernel's SIOCOUTQ: last reading + outq_cost of each send since */
        bool closing;           /* ERROR queued: only writing, until flushed or the deadline */
        uint64_t close_deadline_ns;
        struct out_fd ofd[OUT_FDS_MAX];
        unsigned nofd;
        struct in_fd ifd[IN_FDS_MAX];
        unsigned nifd;
        uint64_t rx_total; /* stream bytes received */
        bool want_out;     /* EPOLLOUT armed */
        bool dirty;        /* bytes appended this iteration, not yet written */
        struct conn *next_dirty;
        bool stalled; /* told the bus -EAGAIN */
        bool dead;
        /* A SUBSCRIBE reply held until the replay queued ahead of it is out,
         * so on the wire the replay always precedes its REPLY. */
        uint8_t held_reply[WIRE_PREFIX_LEN + WIRE_REPLY_LEN];
        size_t held_reply_len;
        uint64_t soft_since_ns;
        struct conn *next, *prev;
        struct conn *next_zombie;
};

struct vmsig_server {
        struct vmsig_bus *bus;
        struct vmsig_server_config cfg;
        char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
        bool own_path;
        int lfd;
        struct vmsig_io *lio;
        int tfd; /* 1 s tick: soft limit, zombie reaping */
        struct vmsig_io *tio;
        struct conn *conns;
        struct conn *zombies;
        struct conn *dirty; /* written once, at the end of the iteration */
        struct vmsig_post *post;
        unsigned nconns;
        /* Out of fds: a spare fd is given up to accept one waiting client
         * and tell it why; without one the listener pauses until a tick or
         * a connection closes. One log line when it starts, one at the end. */
        int spare;
        bool lpaused;
        bool fd_short;
        uint64_t fd_short_since_ns;
        unsigned long fd_short_refused;
        struct refuse_slot refuse[REFUSE_SLOTS + 1]; /* the last: other uids */
};

static void logf_(struct vmsig_server *srv, int prio, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void logf_(struct vmsig_server *srv, int prio, const char *fmt, ...)
{
        char msg[512];
        va_list ap;

        if (!srv->cfg.log)
                return;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        srv->cfg.log(srv->cfg.log_userdata, prio, msg);
}

/* ---- output ---- */

static void set_want_out(struct conn *c, bool on)
{
        if (c->want_out == on || c->dead || c->closing)
                return;
        c->want_out = on;
        vmsig_io_set_events(c->io, EPOLLIN | EPOLLRDHUP | (on ? EPOLLOUT : 0));
}

static uint32_t le32_at(const uint8_t *p)
{
        return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* An upper bound on what sending n bytes adds to SIOCOUTQ: the kernel counts
 * skb truesize, up to 2n + 1 KiB for small linear skbs and n + 768 per
 * skb for paged ones. */
static size_t outq_cost(size_t n)
{
        return 2 * n + 4096;
}

/* Write what we can. 0 when everything is out, -EAGAIN if some is left,
 * other negative errno if the peer is gone. */
static int flush_out(struct conn *c)
{
        while (c->out_start < c->out_end) {
                size_t end = c->out_end;
                struct msghdr mh = {0};
                struct iovec iov;
                union {
                        char buf[CMSG_SPACE(sizeof(int))];
                        struct cmsghdr align;
                } cb;
                bool with_fd = c->nofd && c->ofd[0].off == c->out_start;

                /* An fd rides on its frame's first byte: stop a write short
                 * of the next fd-carrying frame. */
                if (c->nofd && !with_fd && c->ofd[0].off < end)
                        end = c->ofd[0].off;
                if (with_fd && c->nofd > 1 && c->ofd[1].off < end)
                        end = c->ofd[1].off;
                iov.iov_base = c->out + c->out_start;
                iov.iov_len = end - c->out_start;
                if (c->reserve && !c->closing) {
                        /* Ask the kernel only when the bound leaves too
                         * little room: SIOCOUTQ is a syscall per send. */
                        if (c->outq_bound + c->reserve + outq_cost(iov.iov_len) > c->sndbuf) {
                                int outq = 0;
                                c->outq_bound =
                                    ioctl(c->fd, SIOCOUTQ, &outq) == 0 && outq > 0 ? (size_t)outq : 0;
                        }
                        size_t used = c->outq_bound + c->reserve;
                        if (used >= c->sndbuf)
                                return -EAGAIN; /* EPOLLOUT comes at a quarter full */
                        if (iov.iov_len > c->sndbuf - used)
                                iov.iov_len = c->sndbuf - used;
                }
                mh.msg_iov = &iov;
                mh.msg_iovlen = 1;
                if (with_fd) {
                        struct cmsghdr *cm;
                        memset(&cb, 0, sizeof(cb));
                        mh.msg_control = cb.buf;
                        mh.msg_controllen = sizeof(cb.buf);
                        cm = CMSG_FIRSTHDR(&mh);
                        cm->cmsg_level = SOL_SOCKET;
                        cm->cmsg_type = SCM_RIGHTS;
                        cm->cmsg_len = CMSG_LEN(sizeof(int));
                        memcpy(CMSG_DATA(cm), &c->ofd[0].fd, sizeof(int));
                }
                ssize_t n = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return -EAGAIN;
                        return -errno;
                }
                c->outq_bound += outq_cost((size_t)n);
                if (with_fd) {
                        close(c->ofd[0].fd);
                        memmove(&c->ofd[0], &c->ofd[1], (c->nofd - 1) * sizeof(c->ofd[0]));
                        c->nofd--;
                }
                c->out_start += (size_t)n;
                while (c->boundary < c->out_start)
                        c->boundary += WIRE_PREFIX_LEN + le32_at(c->out + c->boundary);
        }
        c->out_start = c->out_end = c->boundary = 0;
        for (unsigned i = 0; i < c->nofd; i++)
                c->ofd[i].off = 0; /* cannot happen: all fds went with their bytes */
        return 0;
}

/* Make room for len bytes at the end, compacting first. */
static bool out_room(struct conn *c, size_t len)
{
        if (c->out_cap - c->out_end >= len)
                return true;
        if (c->out_start) {
                memmove(c->out, c->out + c->out_start, c->out_end - c->out_start);
                for (unsigned i = 0; i < c->nofd; i++)
                        c->ofd[i].off -= c->out_start;
                c->out_end -= c->out_start;
                c->boundary -= c->out_start;
                c->out_start = 0;
        }
        return c->out_cap - c->out_end >= len;
}

static void conn_kill(struct conn *c);

/* After appending: write now; arm EPOLLOUT only if the socket said EAGAIN. */
static void kick_out(struct conn *c)
{
        int r = flush_out(c);

        if (r == -EAGAIN)
                set_want_out(c, true);
        else if (r < 0)
                conn_kill(c);
        else
                set_want_out(c, false);
}

#define CLOSE_GRACE_NS (5ull * 1000000000ull)

static void drop_in_fds(struct conn *c)
{
        for (unsigned i = 0; i < c->nifd; i++)
                close(c->ifd[i].fd);
        c->nifd = 0;
}

/* The one way a connection ends on our side: unsent frames are dropped
 * whole (a frame already partly written is finished first), one ERROR frame
 * naming the reason goes after them, and the connection closes once that is
 * flushed, or after a grace period if the client never reads it. */
static void conn_end(struct conn *c, bool quiet, int code, const char *msg)
{
        if (c->dead || c->closing)
                return;
        if (!quiet)
                logf_(c->srv, LOG_NOTICE, "connection uid %u pid %d (control %u) closed: %s", c->uid, c->pid,
                      c->ctl_id, msg);

        drop_in_fds(c);
        /* Drop whole frames not yet begun, and their fds. */
        c->out_end = c->boundary;
        while (c->nofd && c->ofd[c->nofd - 1].off >= c->out_end)
                close(c->ofd[--c->nofd].fd);
        c->held_reply_len = 0;
        /* The buffer holds at most one partial frame now, so the error fits. */
        if (out_room(c, WIRE_PREFIX_LEN + WIRE_ERROR_LEN)) {
                ssize_t n = wire_encode_error(c->out + c->out_end, c->out_cap - c->out_end, code, msg);
                if (n > 0)
                        c->out_end += (size_t)n;
        }
        if (c->ctl) {
                vmsig_control_close(c->ctl); /* releases its leases now */
                c->ctl = NULL;
        }
        /* From here on the reserve is ours to use: the ERROR goes into it. */
        c->closing = true;
        int r = flush_out(c);
        if (r != -EAGAIN) {
                conn_kill(c);
                return;
        }
        c->close_deadline_ns = vmsig_now_ns() + CLOSE_GRACE_NS;
        c->want_out = true;
        vmsig_io_set_events(c->io, EPOLLOUT);
}

static void conn_fail(struct conn *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void conn_fail(struct conn *c, int code, const char *fmt, ...)
{
        char msg[VMSIG_MSG_MAX];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        conn_end(c, false, code, msg);
}

/* Events delivered in one loop iteration leave in one write: the post hook
 * flushes every connection that got bytes. */
static void mark_dirty(struct conn *c)
{
        if (c->dirty || c->want_out)
                return; /* already queued, or EPOLLOUT will write it */
        c->dirty = true;
        c->next_dirty = c->srv->dirty;
        c->srv->dirty = c;
}

static void flush_dirty(struct vmsig_post *post, void *ud)
{
        struct vmsig_server *srv = ud;

        while (srv->dirty) {
                struct conn *c = srv->dirty;
                srv->dirty = c->next_dirty;
                c->dirty = false;
                if (!c->dead && !c->closing)
                        kick_out(c);
        }
}

/* ---- bus -> socket ---- */

static int conn_deliver(struct vmsig_control *ctl, const struct vmsig_event *ev, int *fd, void *ud)
{
        struct conn *c = ud;
        ssize_t n;

        if (c->dead || c->closing)
                return 0;
        if (*fd >= 0 && c->nofd == OUT_FDS_MAX) {
                c->stalled = true;
                return -EAGAIN;
        }
        if (!out_room(c, WIRE_FRAME_MAX)) {
                c->stalled = true;
                kick_out(c);
                return -EAGAIN;
        }
        n = wire_encode_event(c->out + c->out_end, c->out_cap - c->out_end, ev, false);
        if (n < 0) {
                logf_(c->srv, LOG_ERR, "cannot encode %s for uid %u: %s", vmsig_kind_name(ev->hdr.kind),
                      c->uid, strerror((int)-n));
                return 0; /* an event we cannot express is not the client's fault */
        }
        if (*fd >= 0) {
                c->ofd[c->nofd].off = c->out_end;
                c->ofd[c->nofd].fd = *fd;
                c->nofd++;
                *fd = -1;
        }
        c->out_end += (size_t)n;
        if (c->held_reply_len) {
                struct vmsig_control_stats st;
                /* During a flush the entry being delivered is still counted. */
                if (vmsig_control_get_stats(ctl, &st) == 0 && st.queued <= 1 &&
                    out_room(c, c->held_reply_len)) {
                        memcpy(c->out + c->out_end, c->held_reply, c->held_reply_len);
                        c->out_end += c->held_reply_len;
                        c->held_reply_len = 0;
                }
        }
        mark_dirty(c);
        return 0;
}

static void conn_closed_by_bus(struct vmsig_control *ctl, int reason, const char *msg, void *ud)
{
        struct conn *c = ud;

        c->ctl = NULL; /* the bus frees it */
        conn_fail(c, reason, "%s", msg);
}

/* ---- socket -> bus ---- */

static void send_frame(struct conn *c, const void *frame, size_t len)
{
        if (!out_room(c, len)) {
                conn_fail(c, -ENOBUFS, "output buffer full");
                return;
        }
        memcpy(c->out + c->out_end, frame, len);
        c->out_end += len;
        kick_out(c);
}

static void handle_hello(struct conn *c, const struct wire_hello *h)
{
        struct vmsig_control_info info = {.name = h->name, .uid = c->uid, .pid = c->pid, .caps = c->caps};
        struct wire_welcome w = {0};
        uint8_t frame[WIRE_PREFIX_LEN + WIRE_WELCOME_LEN];
        int r;

        r = vmsig_control_new(c->srv->bus, &info, conn_deliver, conn_closed_by_bus, c, &c->ctl);
        if (r < 0) {
                conn_fail(c, r, "cannot create control: %s", strerror(-r));
                return;
        }
        c->ctl_id = vmsig_control_id(c->ctl);
        /* The highest version both speak; 2 admits the fd source. */
        w.version = h->version_max < WIRE_VERSION_MAX ? h->version_max : WIRE_VERSION_MAX;
        c->rx.fd_src = w.version >= WIRE_VERSION_FD;
        w.control_id = c->ctl_id;
        w.caps = c->caps;
        w.uid = c->uid;
        w.body_max = VMSIG_BODY_MAX;
        w.tail_max = c->srv->cfg.tail_max;
        w.queue_bytes = c->srv->cfg.queue_bytes > UINT32_MAX ? UINT32_MAX : (uint32_t)c->srv->cfg.queue_bytes;
        ssize_t n = wire_encode_welcome(frame, sizeof(frame), &w);
        if (n > 0)
                send_frame(c, frame, (size_t)n);
}

static void handle_sub(struct conn *c, uint16_t type, const struct wire_sub *s)
{
        uint8_t frame[WIRE_PREFIX_LEN + WIRE_REPLY_LEN];
        char msg[VMSIG_MSG_MAX] = "";
        int r;

        if (type == WIRE_SUBSCRIBE) {
                r = vmsig_control_subscribe(c->ctl, s->endpoint, s->kinds);
                if (r == -EPERM)
                        snprintf(msg, sizeof(msg), "a requested kind needs a capability you lack");
                else if (r == -ENOENT)
                        snprintf(msg, sizeof(msg), "no endpoint %u", s->endpoint);
                else if (r == -EINVAL)
                        snprintf(msg, sizeof(msg), "kinds mask names non-UP kinds");
                else if (r == -ENOSPC)
                        snprintf(msg, sizeof(msg), "too many subscriptions");
        } else {
                r = vmsig_control_unsubscribe(c->ctl, s->endpoint);
                if (r == -ENOENT)
                        snprintf(msg, sizeof(msg), "no subscription for endpoint %u", s->endpoint);
        }
        if (c->dead || !c->ctl)
                return;
        ssize_t n = wire_encode_reply(frame, sizeof(frame), s->corr, type, r, msg);
        if (n <= 0)
                return;
        if (c->held_reply_len) {
                /* One reply may wait at a time; a second subscribe before
                 * the first replay drained is answered after it. */
                conn_fail(c, -EBUSY, "subscribe while a previous replay is still queued");
                return;
        }
        int left = r == 0 ? vmsig_control_flush(c->ctl) : 0;
        if (c->dead)
                return;
        if (left > 0) {
                memcpy(c->held_reply, frame, (size_t)n);
                c->held_reply_len = (size_t)n;
                return;
        }
        send_frame(c, frame, (size_t)n);
}

/* Why a CMD_MEMWRITE source fd is refused, or NULL. The daemon must never
 * block on it nor fault on it: only a regular file on tmpfs (a memfd, or a
 * file in /dev/shm) qualifies; it is read with read-style calls, or mapped
 * only when sealed against shrinking (memctx_engine.c). A FIFO, socket,
 * pipe, device, FUSE or hugetlbfs file fails here. */
static const char *src_fd_refusal(int fd)
{
        struct stat st;
        struct statfs sf;
        int fl = fcntl(fd, F_GETFL);

        if (fl < 0 || fstat(fd, &st) < 0)
                return "cannot be inspected";
        if (fl & O_PATH)
                return "is an O_PATH fd";
        if ((fl & O_ACCMODE) == O_WRONLY)
                return "is not open for reading";
        if (S_ISFIFO(st.st_mode))
                return "is a pipe or FIFO";
        if (S_ISSOCK(st.st_mode))
                return "is a socket";
        if (!S_ISREG(st.st_mode))
                return "is not a regular file";
        if (fstatfs(fd, &sf) < 0 || sf.f_type != TMPFS_MAGIC)
                return "is not a memfd or tmpfs file";
        return NULL;
}

/* A version-2 CMD_MEMWRITE with HAS_FD: claim the fd that came with the
 * frame's first byte, check it, and hand both to the bus (which closes the
 * fd on every path). A missing or unfit fd ends the connection. */
static int send_with_fd(struct conn *c, const struct wire_frame *f)
{
        const char *why;
        int fd;

        if (!c->nifd || c->ifd[0].lo > f->stream_off || c->ifd[0].hi <= f->stream_off) {
                conn_fail(c, wire_err_errno(WIRE_E_FD), "protocol violation: %s (CMD_MEMWRITE with HAS_FD)",
                          wire_err_str(WIRE_E_FD));
                return 0;
        }
        fd = c->ifd[0].fd;
        memmove(&c->ifd[0], &c->ifd[1], (--c->nifd) * sizeof(c->ifd[0]));
        why = src_fd_refusal(fd);
        if (why) {
                close(fd);
                conn_fail(c, -EBADF, "protocol violation: the CMD_MEMWRITE source fd %s", why);
                return 0;
        }
        return vmsig_control_send_fd(c->ctl, &f->u.event, fd);
}

static void handle_frame(struct conn *c, const struct wire_frame *f)
{
        int r;

        switch (f->type) {
        case WIRE_HELLO:
                handle_hello(c, &f->u.hello);
                break;
        case WIRE_SUBSCRIBE:
        case WIRE_UNSUBSCRIBE:
                handle_sub(c, f->type, &f->u.sub);
                break;
        case WIRE_EVENT:
                if (f->u.event.hdr.flags & VMSIG_F_HAS_FD)
                        r = send_with_fd(c, f);
                else if (f->tail)
                        r = vmsig_control_send_payload(c->ctl, &f->u.event, f->tail, f->tail_len);
                else
                        r = vmsig_control_send(c->ctl, &f->u.event);
                if (c->dead || c->closing)
                        break;
                if (r < 0)
                        conn_fail(c, r, "%s refused: %s", vmsig_kind_name(f->u.event.hdr.kind), strerror(-r));
                break;
        default:
                conn_fail(c, -EPROTO, "unexpected frame type %u", f->type);
                break;
        }
}

static void conn_read(struct conn *c)
{
        uint8_t buf[RX_CHUNK];
        union {
                char b[CMSG_SPACE(sizeof(int) * 8)];
                struct cmsghdr align;
        } cb;

        for (int rounds = 0; rounds < 16 && !c->dead && !c->closing; rounds++) {
                struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
                struct msghdr mh = {
                    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cb.b, .msg_controllen = sizeof(cb.b)};
                ssize_t n = recvmsg(c->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
                int fds[8];
                unsigned nfds = 0;

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno != EAGAIN)
                                conn_kill(c);
                        return;
                }
                for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
                        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
                                size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                                for (size_t i = 0; i < k; i++) {
                                        int fd;
                                        memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
                                        if (nfds < sizeof(fds) / sizeof(fds[0]))
                                                fds[nfds++] = fd;
                                        else
                                                close(fd);
                                }
                        }
                }
                if (mh.msg_flags & MSG_CTRUNC) {
                        for (unsigned i = 0; i < nfds; i++)
                                close(fds[i]);
                        conn_fail(c, wire_err_errno(WIRE_E_CTRUNC), "protocol violation: %s",
                                  wire_err_str(WIRE_E_CTRUNC));
                        return;
                }
                /* Version 2: one fd per read, for a HAS_FD CMD_MEMWRITE. */
                if (nfds && (!c->rx.fd_src || nfds > 1 || n == 0 || c->nifd == IN_FDS_MAX)) {
                        for (unsigned i = 0; i < nfds; i++)
                                close(fds[i]);
                        conn_fail(c, wire_err_errno(WIRE_E_FD), "protocol violation: %s (%s)",
                                  wire_err_str(WIRE_E_FD),
                                  !c->rx.fd_src ? "clients send no fds before version 2"
                                  : nfds > 1    ? "more than one fd at once"
                                                : "fds without their frames");
                        return;
                }
                if (nfds)
                        c->ifd[c->nifd++] = (struct in_fd){fds[0], c->rx_total, c->rx_total + (uint64_t)n};
                if (n > 0)
                        c->rx_total += (uint64_t)n;
                if (n == 0) {
                        if (!wire_rx_idle(&c->rx))
                                logf_(c->srv, LOG_NOTICE, "uid %u pid %d hung up mid-frame", c->uid, c->pid);
                        conn_kill(c);
                        return;
                }
                size_t off = 0;
                while (off < (size_t)n && !c->dead && !c->closing) {
                        const struct wire_frame *f = NULL;
                        ssize_t used = wire_rx_feed(&c->rx, buf + off, (size_t)n - off, &f);
                        if (used < 0) {
                                enum wire_err e = wire_rx_error(&c->rx);
                                conn_fail(c, wire_err_errno(e), "protocol violation: %s", wire_err_str(e));
                                return;
                        }
                        off += (size_t)used;
                        if (!f)
                                continue;
                        handle_frame(c, f);
                        /* The read that brought an fd ended inside its frame:
                         * once a frame reaching that point is complete and has
                         * not claimed it, it sat on a frame that carries none. */
                        if (!c->dead && !c->closing && c->nifd && c->ifd[0].hi <= c->rx.off) {
                                conn_fail(c, wire_err_errno(WIRE_E_FD), "protocol violation: %s",
                                          "fd on a frame that carries none");
                                return;
                        }
                }
                if ((size_t)n < sizeof(buf))
                        return;
        }
}

static void zombie_reap(struct vmsig_server *srv)
{
        flush_dirty(NULL, srv); /* no zombie may stay on the dirty list */
        while (srv->zombies) {
                struct conn *z = srv->zombies;
                srv->zombies = z->next_zombie;
                wire_rx_done(&z->rx);
                free(z->out);
                free(z);
        }
}

static void conn_on_io(struct vmsig_io *io, int fd, uint32_t events, void *ud)
{
        struct conn *c = ud;

        if (c->dead)
                return;
        if (c->closing) {
                /* Only the ERROR (and a partial frame before it) is left. */
                if (flush_out(c) != -EAGAIN)
                        conn_kill(c);
                return;
        }
        if (events & EPOLLOUT) {
                int r = flush_out(c);
                if (r == 0) {
                        set_want_out(c, false);
                        if (c->stalled && c->ctl) {
                                c->stalled = false;
                                vmsig_control_resume(c->ctl);
                        }
                } else if (r != -EAGAIN) {
                        conn_kill(c);
                        return;
                }
        }
        if (events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP))
                conn_read(c);
}

/* Take the connection out of service; its memory goes on the next tick (the
 * current epoll batch may still name its watch, which is dead by then). */
static void conn_kill(struct conn *c)
{
        struct vmsig_server *srv = c->srv;

        if (c->dead)
                return;
        c->dead = true;
        if (c->ctl) {
                vmsig_control_close(c->ctl); /* releases its leases */
                c->ctl = NULL;
        }
        c->io = vmsig_io_free(c->io);
        close(c->fd);
        c->fd = -1;
        for (unsigned i = 0; i < c->nofd; i++)
                close(c->ofd[i].fd);
        c->nofd = 0;
        drop_in_fds(c);
        if (c->prev)
                c->prev->next = c->next;
        else
                srv->conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        srv->nconns--;
        c->next_zombie = srv->zombies;
        srv->zombies = c;
        if (srv->lpaused) {
                /* An fd came free: try the waiting clients again. */
                srv->lpaused = false;
                vmsig_io_set_events(srv->lio, EPOLLIN);
        }
}

/* ---- accept and admission ---- */

static unsigned conns_of_uid(struct vmsig_server *srv, uid_t uid)
{
        unsigned n = 0;
        for (struct conn *c = srv->conns; c; c = c->next)
                n += c->uid == uid;
        return n;
}

/* ---- refusals: rate-limited per uid ---- */

static void refuse_summary(struct vmsig_server *srv, struct refuse_slot *s)
{
        char msg[VMSIG_MSG_MAX];

        if (s->suppressed) {
                bool other = s == &srv->refuse[REFUSE_SLOTS];
                if (other)
                        snprintf(msg, sizeof(msg),
                                 "other uids: %lu more refused connections in the last %u s suppressed",
                                 s->suppressed, REFUSE_WINDOW_S);
                else
                        snprintf(msg, sizeof(msg),
                                 "uid %u: %lu more refused connections in the last %u s suppressed",
                                 (unsigned)s->uid, s->suppressed, REFUSE_WINDOW_S);
                logf_(srv, LOG_NOTICE, "%s", msg);
                if (srv->cfg.refused) {
                        struct vmsig_peer peer = {.uid = other ? (uid_t)-1 : s->uid, .gid = (gid_t)-1};
                        srv->cfg.refused(srv->cfg.log_userdata, &peer, s->code, msg);
                }
        }
        memset(s, 0, sizeof(*s));
}

/* Count one refusal of uid; true if it is to be reported in full. */
static bool refuse_note(struct vmsig_server *srv, uid_t uid, int code, uint64_t now)
{
        struct refuse_slot *s = NULL, *free_slot = NULL;

        for (unsigned i = 0; i < REFUSE_SLOTS && !s; i++) {
                if (srv->refuse[i].used && srv->refuse[i].uid == uid)
                        s = &srv->refuse[i];
                else if (!srv->refuse[i].used && !free_slot)
                        free_slot = &srv->refuse[i];
        }
        if (!s)
                s = free_slot ? free_slot : &srv->refuse[REFUSE_SLOTS];
        if (s->used && now - s->start_ns >= REFUSE_WINDOW_S * 1000000000ull)
                refuse_summary(srv, s);
        if (!s->used) {
                s->used = true;
                s->uid = uid;
                s->start_ns = now;
        }
        s->code = code;
        if (++s->count <= REFUSE_BURST)
                return true;
        s->suppressed++;
        return false;
}

static void refuse_tick(struct vmsig_server *srv, uint64_t now)
{
        for (unsigned i = 0; i <= REFUSE_SLOTS; i++)
                if (srv->refuse[i].used && now - srv->refuse[i].start_ns >= REFUSE_WINDOW_S * 1000000000ull)
                        refuse_summary(srv, &srv->refuse[i]);
}

static void conn_refuse(struct conn *c, const struct vmsig_peer *peer, int code, const char *why)
{
        struct vmsig_server *srv = c->srv;
        bool full = refuse_note(srv, peer->uid, code, vmsig_now_ns());

        if (full && srv->cfg.refused)
                srv->cfg.refused(srv->cfg.log_userdata, peer, code, why);
        conn_end(c, !full, code, why); /* the client always gets its ERROR */
}

/* ---- out of file descriptors ---- */

static unsigned long nofile_limit(void)
{
        struct rlimit rl;

        return getrlimit(RLIMIT_NOFILE, &rl) == 0 ? (unsigned long)rl.rlim_cur : 0;
}

/* accept failed for want of fds. Give up the spare to accept one waiting
 * client and tell it why; true if one was taken off the backlog (go on).
 * Without a spare, pause the listener: it stays readable, and polling it
 * would spin. */
static bool fd_short(struct vmsig_server *srv, int err)
{
        uint8_t frame[WIRE_PREFIX_LEN + WIRE_ERROR_LEN];
        int fd, e;

        if (!srv->fd_short) {
                srv->fd_short = true;
                srv->fd_short_since_ns = vmsig_now_ns();
                srv->fd_short_refused = 0;
                logf_(srv, LOG_ERR,
                      "cannot accept connections: %s (open file limit %lu); refusing new connections until "
                      "resources come free",
                      strerror(err), nofile_limit());
        }
        if (srv->spare >= 0) {
                close(srv->spare);
                fd = accept4(srv->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                e = errno;
                if (fd >= 0) {
                        bool fds = err == EMFILE || err == ENFILE;
                        ssize_t n =
                            wire_encode_error(frame, sizeof(frame), -err,
                                              fds ? "vmsigd is out of file descriptors; try again later"
                                                  : "vmsigd is out of memory; try again later");
                        if (n > 0)
                                (void)!send(fd, frame, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
                        close(fd);
                        srv->fd_short_refused++;
                }
                srv->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
                if (fd >= 0 && srv->spare >= 0)
                        return true;
                if (fd < 0 && (e == EINTR || e == ECONNABORTED) && srv->spare >= 0)
                        return true;
                if (fd < 0 && e == EAGAIN)
                        return false; /* the backlog is empty: nothing to spin on */
        }
        /* No spare, or accept fails even with it given up (memory): wait
         * for a tick or a connection to close. */
        if (!srv->lpaused) {
                srv->lpaused = true;
                vmsig_io_set_events(srv->lio, 0);
        }
        return false;
}

static void fd_short_over(struct vmsig_server *srv)
{
        uint64_t ms = (vmsig_now_ns() - srv->fd_short_since_ns) / 1000000u;

        srv->fd_short = false;
        logf_(srv, LOG_NOTICE,
              "accepting connections again after %llu.%03llu s out of file descriptors or memory; %lu "
              "connections refused meanwhile",
              (unsigned long long)(ms / 1000), (unsigned long long)(ms % 1000), srv->fd_short_refused);
}

/* Make sure the send buffer is big enough to keep SOCK_RESERVE free and
 * still take a useful amount; if it cannot be, keep an eighth free. */
static void sock_reserve_init(struct conn *c)
{
        int v = 0;
        socklen_t len = sizeof(v);

        if (getsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &v, &len) == 0 && v > 0 && (size_t)v < SOCK_SNDBUF_MIN) {
                int want = SOCK_SNDBUF_MIN / 2; /* the kernel doubles it */
                setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &want, sizeof(want));
                len = sizeof(v);
                getsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &v, &len);
        }
        c->sndbuf = v > 0 ? (size_t)v : 0;
        c->reserve = c->sndbuf >= SOCK_SNDBUF_MIN ? SOCK_RESERVE : c->sndbuf / 8;
}

static void on_accept(struct vmsig_io *io, int lfd, uint32_t events, void *ud)
{
        struct vmsig_server *srv = ud;

        zombie_reap(srv);
        for (int i = 0; i < 64; i++) {
                struct ucred cred;
                socklen_t clen = sizeof(cred);
                gid_t groups[MAX_GROUPS];
                socklen_t glen = sizeof(groups);
                char why[VMSIG_MSG_MAX] = "";
                struct conn *c;
                int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

                if (fd < 0) {
                        int e = errno;
                        if (e == EINTR || e == ECONNABORTED)
                                continue;
                        if ((e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) && fd_short(srv, e))
                                continue;
                        return;
                }
                if (srv->fd_short)
                        fd_short_over(srv);
                if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0) {
                        close(fd);
                        continue;
                }
                if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &glen) < 0)
                        glen = 0;
                c = calloc(1, sizeof(*c));
                if (!c) {
                        close(fd);
                        continue;
                }
                c->srv = srv;
                c->fd = fd;
                c->uid = cred.uid;
                c->gid = cred.gid;
                c->pid = cred.pid;
                c->out_cap = srv->cfg.out_bytes;
                sock_reserve_init(c);
                c->out = malloc(c->out_cap);
                if (!c->out || wire_rx_init(&c->rx, WIRE_SIDE_SERVER, srv->cfg.tail_max) < 0 ||
                    vmsig_bus_add_io(srv->bus, fd, EPOLLIN | EPOLLRDHUP, conn_on_io, c, &c->io) < 0) {
                        wire_rx_done(&c->rx);
                        free(c->out);
                        free(c);
                        close(fd);
                        continue;
                }
                c->next = srv->conns;
                if (srv->conns)
                        srv->conns->prev = c;
                srv->conns = c;
                srv->nconns++;

                struct vmsig_peer peer = {.uid = cred.uid,
                                          .gid = cred.gid,
                                          .pid = cred.pid,
                                          .groups = groups,
                                          .n_groups = glen / sizeof(gid_t)};
                int r = srv->cfg.admit
                            ? srv->cfg.admit(srv->cfg.admit_userdata, &peer, &c->caps, why, sizeof(why))
                            : -EACCES;
                if (r < 0) {
                        conn_refuse(c, &peer, r, why[0] ? why : "not admitted");
                        continue;
                }
                if (conns_of_uid(srv, cred.uid) > srv->cfg.conns_per_uid) {
                        snprintf(why, sizeof(why), "uid %u already has %u connections (limit)", cred.uid,
                                 srv->cfg.conns_per_uid);
                        conn_refuse(c, &peer, -EUSERS, why);
                        continue;
                }
        }
}

static void on_tick(struct vmsig_io *io, int fd, uint32_t events, void *ud)
{
        struct vmsig_server *srv = ud;
        uint64_t v, now = vmsig_now_ns();
        struct conn *next;

        (void)!read(fd, &v, sizeof(v));
        zombie_reap(srv);
        refuse_tick(srv, now);
        if (srv->spare < 0)
                srv->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (srv->lpaused) {
                srv->lpaused = false; /* try again once a second */
                vmsig_io_set_events(srv->lio, EPOLLIN);
        }
        for (struct conn *c = srv->conns; c; c = next) {
                next = c->next;
                if (c->closing && now >= c->close_deadline_ns)
                        conn_kill(c);
        }
        if (!srv->cfg.soft_seconds)
                return;
        for (struct conn *c = srv->conns; c; c = next) {
                struct vmsig_control_stats st;
                next = c->next;
                if (c->closing || !c->ctl || vmsig_control_get_stats(c->ctl, &st) < 0)
                        continue;
                size_t held = st.queued_bytes + (c->out_end - c->out_start);
                if (held <= srv->cfg.soft_bytes) {
                        c->soft_since_ns = 0;
                        continue;
                }
                if (!c->soft_since_ns)
                        c->soft_since_ns = now;
                else if (now - c->soft_since_ns >= (uint64_t)srv->cfg.soft_seconds * 1000000000ull)
                        conn_fail(c, -ENOBUFS, "too slow: %zu bytes held for %u s (soft limit %zu)", held,
                                  srv->cfg.soft_seconds, srv->cfg.soft_bytes);
        }
}

/* ---- lifecycle ---- */

static int server_setup(struct vmsig_bus *bus, int lfd, const struct vmsig_server_config *cfg,
                        struct vmsig_server **ret)
{
        struct vmsig_server *srv = calloc(1, sizeof(*srv));
        struct itimerspec its = {.it_interval = {1, 0}, .it_value = {1, 0}};
        int r;

        if (!srv)
                return -ENOMEM;
        srv->bus = bus;
        srv->cfg = *cfg;
        if (!srv->cfg.tail_max)
                srv->cfg.tail_max = WIRE_TAIL_MAX_DEFAULT;
        if (!srv->cfg.out_bytes)
                srv->cfg.out_bytes = 256u << 10;
        if (srv->cfg.out_bytes < 2 * WIRE_FRAME_MAX)
                srv->cfg.out_bytes = 2 * WIRE_FRAME_MAX;
        if (!srv->cfg.conns_per_uid)
                srv->cfg.conns_per_uid = 16;
        if (!srv->cfg.soft_bytes)
                srv->cfg.soft_bytes = 512u << 10;
        if (!srv->cfg.queue_bytes)
                srv->cfg.queue_bytes = 1u << 20;
        srv->cfg.path = NULL;
        srv->lfd = lfd;
        srv->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
        srv->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (srv->tfd < 0) {
                r = -errno;
                goto fail;
        }
        timerfd_settime(srv->tfd, 0, &its, NULL);
        r = vmsig_bus_add_io(bus, lfd, EPOLLIN, on_accept, srv, &srv->lio);
        if (r < 0)
                goto fail;
        r = vmsig_bus_add_io(bus, srv->tfd, EPOLLIN, on_tick, srv, &srv->tio);
        if (r < 0)
                goto fail;
        r = vmsig_bus_add_post(bus, flush_dirty, srv, &srv->post);
        if (r < 0)
                goto fail;
        *ret = srv;
        return 0;
fail:
        srv->lio = vmsig_io_free(srv->lio);
        srv->tio = vmsig_io_free(srv->tio);
        if (srv->tfd >= 0)
                close(srv->tfd);
        if (srv->spare >= 0)
                close(srv->spare);
        free(srv);
        return r;
}

int vmsig_server_new_fd(struct vmsig_bus *bus, int listen_fd, const struct vmsig_server_config *cfg,
                        struct vmsig_server **ret)
{
        if (!bus || listen_fd < 0 || !cfg || !ret)
                return -EINVAL;
        return server_setup(bus, listen_fd, cfg, ret);
}

/* A socket file nobody answers on is stale (a crashed daemon); one that
 * answers belongs to a running daemon and must not be stolen. */
static int clear_stale(const struct sockaddr_un *sa)
{
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int r;

        if (fd < 0)
                return -errno;
        r = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
        close(fd);
        if (r == 0)
                return -EADDRINUSE;
        if (errno == ECONNREFUSED)
                return unlink(sa->sun_path) < 0 && errno != ENOENT ? -errno : 0;
        return 0;
}

int vmsig_server_new(struct vmsig_bus *bus, const struct vmsig_server_config *cfg, struct vmsig_server **ret)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd, r;

        if (!bus || !cfg || !cfg->path || !ret)
                return -EINVAL;
        if (strlen(cfg->path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, cfg->path);
        r = clear_stale(&sa);
        if (r < 0)
                return r;
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                r = -errno;
                close(fd);
                return r;
        }
        if ((cfg->mode && chmod(cfg->path, cfg->mode) < 0) ||
            (cfg->group != (gid_t)-1 && chown(cfg->path, (uid_t)-1, cfg->group) < 0) || listen(fd, 128) < 0) {
                r = -errno;
                close(fd);
                unlink(cfg->path);
                return r;
        }
        r = server_setup(bus, fd, cfg, ret);
        if (r < 0) {
                close(fd);
                unlink(cfg->path);
                return r;
        }
        snprintf((*ret)->path, sizeof((*ret)->path), "%s", cfg->path);
        (*ret)->own_path = true;
        return 0;
}

unsigned vmsig_server_connections(const struct vmsig_server *srv)
{
        return srv ? srv->nconns : 0;
}

struct vmsig_server *vmsig_server_shutdown(struct vmsig_server *srv, const char *msg)
{
        if (!srv)
                return NULL;
        for (struct conn *c = srv->conns, *next; c; c = next) {
                next = c->next;
                conn_fail(c, -ESHUTDOWN, "%s", msg ? msg : "server shutting down");
        }
        /* No grace at shutdown: what did not fit in the socket is lost. */
        while (srv->conns)
                conn_kill(srv->conns);
        zombie_reap(srv);
        srv->post = vmsig_post_free(srv->post);
        srv->lio = vmsig_io_free(srv->lio);
        srv->tio = vmsig_io_free(srv->tio);
        close(srv->lfd);
        close(srv->tfd);
        if (srv->spare >= 0)
                close(srv->spare);
        if (srv->own_path)
                unlink(srv->path);
        free(srv);
        return NULL;
}
