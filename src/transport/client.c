/* SPDX-License-Identifier: MIT */
/* Control-side client of the vmsigd socket. The daemon is not trusted: every
 * frame goes through the strict receiver, fds are accepted only where the
 * protocol puts them, and any violation ends the connection with -EPROTO. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <vmsig/client.h>
#include <vmsig/event.h>

#include "transport/wire.h"
#include "util/clock.h"

#define IN_CAP   (64u * 1024u)
#define OUT_BASE (64u * 1024u + WIRE_FRAME_MAX + WIRE_TAIL_LEN_LEN)
#define FDQ_MAX  8u /* fds received whose frame has not completed yet */
#define FDS_RECV 4u /* room for more than one fd, so excess is seen, not truncated */

/* An fd that arrived with the stream bytes [lo, hi): its frame starts there. */
struct pending_fd {
        int fd;
        uint64_t lo;
        uint64_t hi;
};

struct vmsig_client {
        int fd;
        bool connected; /* WELCOME seen */
        bool dead;      /* sticky: err.code says why */
        bool drained;   /* the last read found the socket empty (a short read or EAGAIN) */
        bool out_broken;
        struct vmsig_client_info info;
        struct vmsig_client_error err;
        struct wire_rx rx;
        uint8_t *in;
        size_t in_start, in_end;
        uint64_t recv_total; /* stream offset of in[in_end] */
        uint8_t *out;
        size_t out_cap, out_start, out_end;
        struct pending_fd fdq[FDQ_MAX];
        unsigned nfd;
        uint64_t next_corr;
        /* The staging memfd of the fd source (version 2), tail_max bytes,
         * sealed so it can neither shrink nor grow; made on first use. The
         * daemon reads it when the write runs, so it is busy from the send
         * until that write's ACT_ACK arrives. */
        int stage_fd;
        uint8_t *stage;
        bool stage_busy;
        uint64_t stage_corr;
};

static uint64_t deadline_of(int timeout_ms)
{
        return timeout_ms < 0 ? UINT64_MAX : vmsig_now_ms() + (uint64_t)timeout_ms;
}

/* Milliseconds left for poll(): -1 forever, 0 when expired. */
static int remaining(uint64_t deadline)
{
        uint64_t n;
        if (deadline == UINT64_MAX)
                return -1;
        n = vmsig_now_ms();
        if (n >= deadline)
                return 0;
        return deadline - n > INT32_MAX ? INT32_MAX : (int)(deadline - n);
}

static void set_error(struct vmsig_client *c, int code, bool from_daemon, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void set_error(struct vmsig_client *c, int code, bool from_daemon, const char *fmt, ...)
{
        va_list ap;

        c->err.code = code;
        c->err.from_daemon = from_daemon;
        va_start(ap, fmt);
        vsnprintf(c->err.msg, sizeof(c->err.msg), fmt, ap);
        va_end(ap);
}

static void drop_fds(struct vmsig_client *c)
{
        for (unsigned i = 0; i < c->nfd; i++)
                close(c->fdq[i].fd);
        c->nfd = 0;
}

/* End the connection; the first reason wins. The socket stays open until
 * free so a caller's poll set never holds a recycled fd number. */
static int die(struct vmsig_client *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int die(struct vmsig_client *c, int code, const char *fmt, ...)
{
        if (!c->dead) {
                va_list ap;
                if (c->err.code == 0) {
                        c->err.code = code;
                        c->err.from_daemon = false;
                        va_start(ap, fmt);
                        vsnprintf(c->err.msg, sizeof(c->err.msg), fmt, ap);
                        va_end(ap);
                }
                c->dead = true;
                drop_fds(c);
                c->out_start = c->out_end = 0;
                if (c->fd >= 0)
                        shutdown(c->fd, SHUT_RDWR);
        }
        return c->err.code;
}

static int violation(struct vmsig_client *c, enum wire_err e)
{
        wire_rx_fail(&c->rx, e);
        return die(c, -EPROTO, "protocol violation by the daemon: %s", wire_err_str(e));
}

int vmsig_client_new(struct vmsig_client **ret)
{
        struct vmsig_client *c;

        if (!ret)
                return -EINVAL;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->fd = -1;
        c->stage_fd = -1;
        c->next_corr = 1;
        *ret = c;
        return 0;
}

struct vmsig_client *vmsig_client_free(struct vmsig_client *c)
{
        if (!c)
                return NULL;
        drop_fds(c);
        if (c->fd >= 0)
                close(c->fd);
        wire_rx_done(&c->rx);
        if (c->stage)
                munmap(c->stage, c->info.tail_max);
        if (c->stage_fd >= 0)
                close(c->stage_fd);
        free(c->in);
        free(c->out);
        free(c);
        return NULL;
}

int vmsig_client_fd(const struct vmsig_client *c)
{
        return c ? c->fd : -EINVAL;
}

size_t vmsig_client_pending_output(const struct vmsig_client *c)
{
        return c ? c->out_end - c->out_start : 0;
}

short vmsig_client_poll_events(const struct vmsig_client *c)
{
        return (short)(POLLIN | (vmsig_client_pending_output(c) ? POLLOUT : 0));
}

const struct vmsig_client_info *vmsig_client_get_info(const struct vmsig_client *c)
{
        return c && c->connected ? &c->info : NULL;
}

const struct vmsig_client_error *vmsig_client_last_error(const struct vmsig_client *c)
{
        static const struct vmsig_client_error none;
        return c ? &c->err : &none;
}

/* ---- output ---- */

/* Write what the socket takes now. 0 when empty, -EAGAIN when some is left. */
static int flush_nb(struct vmsig_client *c)
{
        if (c->dead)
                return c->err.code;
        if (c->out_broken)
                return -EPIPE;
        while (c->out_start < c->out_end) {
                ssize_t n = send(c->fd, c->out + c->out_start, c->out_end - c->out_start,
                                 MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN || errno == EWOULDBLOCK)
                                return -EAGAIN;
                        if (errno == EPIPE || errno == ECONNRESET) {
                                /* The daemon hung up, maybe after an ERROR
                                 * frame still to be read: keep the read side. */
                                c->out_broken = true;
                                c->out_start = c->out_end = 0;
                                return -EPIPE;
                        }
                        return die(c, -errno, "send: %s", strerror(errno));
                }
                c->out_start += (size_t)n;
        }
        c->out_start = c->out_end = 0;
        return 0;
}

/* Append a (+ b) as one unit: a frame is either queued whole or not at all. */
static int queue_out(struct vmsig_client *c, const void *a, size_t alen, const void *b, size_t blen)
{
        size_t need = alen + blen;
        int r;

        if (c->dead)
                return c->err.code;
        if (!c->connected)
                return -ENOTCONN;
        if (c->out_broken)
                return -EPIPE;
        if (need > c->out_cap)
                return -EMSGSIZE;
        if (c->out_cap - c->out_end < need) {
                r = flush_nb(c);
                if (r < 0 && r != -EAGAIN)
                        return r;
                if (c->out_start > 0) {
                        memmove(c->out, c->out + c->out_start, c->out_end - c->out_start);
                        c->out_end -= c->out_start;
                        c->out_start = 0;
                }
                if (c->out_cap - c->out_end < need)
                        return -EAGAIN;
        }
        memcpy(c->out + c->out_end, a, alen);
        if (blen)
                memcpy(c->out + c->out_end + alen, b, blen);
        c->out_end += need;
        r = flush_nb(c);
        return r == -EAGAIN ? 0 : r;
}

static int wait_fd(struct vmsig_client *c, short events, uint64_t deadline)
{
        struct pollfd p = {.fd = c->fd, .events = events};
        int r;

        /* EINTR is handed back: a caller waiting forever must be able to
         * notice a signal (Ctrl-C) and act on it. */
        r = poll(&p, 1, remaining(deadline));
        if (r < 0)
                return -errno;
        return r == 0 ? -ETIMEDOUT : 0;
}

int vmsig_client_flush(struct vmsig_client *c, int timeout_ms)
{
        uint64_t deadline = deadline_of(timeout_ms);
        int r;

        if (!c)
                return -EINVAL;
        for (;;) {
                r = flush_nb(c);
                if (r != -EAGAIN || timeout_ms == 0)
                        return r;
                r = wait_fd(c, POLLOUT, deadline);
                if (r < 0)
                        return r;
        }
}

/* ---- input ---- */

/* One recvmsg into the input buffer, with the fd bookkeeping. */
static int read_some(struct vmsig_client *c)
{
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int) * FDS_RECV)];
        } cbuf;
        struct iovec iov = {.iov_base = c->in + c->in_end, .iov_len = IN_CAP - c->in_end};
        struct msghdr msg = {
            .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf.buf, .msg_controllen = sizeof(cbuf.buf)};
        int fds[FDS_RECV * 2];
        unsigned nfds = 0;
        bool overflow = false;
        ssize_t n;

        do {
                n = recvmsg(c->fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        } while (n < 0 && errno == EINTR);
        if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                        c->drained = true;
                        return -EAGAIN;
                }
                return die(c, -errno, "recvmsg: %s", strerror(errno));
        }
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
                if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
                        continue;
                size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (size_t i = 0; i < k; i++) {
                        int fd;
                        memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
                        if (nfds < sizeof(fds) / sizeof(fds[0]))
                                fds[nfds++] = fd;
                        else {
                                close(fd);
                                overflow = true;
                        }
                }
        }
        if ((msg.msg_flags & MSG_CTRUNC) || nfds > 1 || overflow || (nfds && c->nfd >= FDQ_MAX) ||
            (nfds && n == 0)) {
                for (unsigned i = 0; i < nfds; i++)
                        close(fds[i]);
                return violation(c, (msg.msg_flags & MSG_CTRUNC) ? WIRE_E_CTRUNC : WIRE_E_FD);
        }
        if (n == 0) {
                if (!wire_rx_idle(&c->rx))
                        return die(c, -ECONNRESET, "daemon closed the connection inside a frame");
                return die(c, -ECONNRESET, "daemon closed the connection");
        }
        if (nfds == 1) {
                /* The kernel hands over an fd with the read that reaches its
                 * byte, so its frame starts somewhere in this chunk. */
                c->fdq[c->nfd++] = (struct pending_fd){fds[0], c->recv_total, c->recv_total + (uint64_t)n};
        }
        c->in_end += (size_t)n;
        c->recv_total += (uint64_t)n;
        /* A short read emptied the socket: the next wait polls first. */
        c->drained = (size_t)n < iov.iov_len;
        return 0;
}

/* The next complete frame, its fd claimed. 0, -EAGAIN, or the end. */
static int next_frame(struct vmsig_client *c, const struct wire_frame **ret_f, int *ret_fd)
{
        for (;;) {
                while (c->in_start < c->in_end) {
                        const struct wire_frame *f;
                        ssize_t n = wire_rx_feed(&c->rx, c->in + c->in_start, c->in_end - c->in_start, &f);
                        if (n < 0)
                                return violation(c, wire_rx_error(&c->rx));
                        c->in_start += (size_t)n;
                        if (!f)
                                continue;
                        *ret_fd = -1;
                        if (f->type == WIRE_EVENT && (f->u.event.hdr.flags & VMSIG_F_HAS_FD)) {
                                int fl;
                                if (!c->nfd || c->fdq[0].lo > f->stream_off || c->fdq[0].hi <= f->stream_off)
                                        return violation(c, WIRE_E_FD);
                                *ret_fd = c->fdq[0].fd;
                                memmove(c->fdq, c->fdq + 1, --c->nfd * sizeof(c->fdq[0]));
                                /* A control only ever gets read-only RAM. */
                                fl = fcntl(*ret_fd, F_GETFL);
                                if (fl < 0 || (fl & O_ACCMODE) != O_RDONLY) {
                                        close(*ret_fd);
                                        *ret_fd = -1;
                                        return violation(c, WIRE_E_FD);
                                }
                        }
                        /* The read that brought an fd ended inside its frame.
                         * Once a frame reaching that point is complete and
                         * has not claimed it, the fd sat on a frame that
                         * carries none (c->rx.off is this frame's end). */
                        if (c->nfd && c->fdq[0].hi <= c->rx.off) {
                                if (*ret_fd >= 0)
                                        close(*ret_fd);
                                *ret_fd = -1;
                                return violation(c, WIRE_E_FD);
                        }
                        if (f->type == WIRE_ERROR) {
                                set_error(c, f->u.error.code, true, "%s", f->u.error.msg);
                                return die(c, f->u.error.code, "daemon error");
                        }
                        *ret_f = f;
                        return 0;
                }
                c->in_start = c->in_end = 0;
                int r = read_some(c);
                if (r < 0)
                        return r;
        }
}

int vmsig_client_recv(struct vmsig_client *c, struct vmsig_event *ret_event, int *ret_fd,
                      struct vmsig_client_reply *ret_reply)
{
        if (!c || !ret_event)
                return -EINVAL;
        if (ret_fd)
                *ret_fd = -1;
        if (c->dead)
                return c->err.code;
        if (!c->connected)
                return -ENOTCONN;
        for (;;) {
                const struct wire_frame *f;
                int fd, r = next_frame(c, &f, &fd);
                if (r < 0)
                        return r;
                if (f->type == WIRE_REPLY) {
                        if (!ret_reply)
                                continue;
                        memset(ret_reply, 0, sizeof(*ret_reply));
                        ret_reply->corr = f->u.reply.corr;
                        ret_reply->request_type = f->u.reply.request_type;
                        ret_reply->result = f->u.reply.result;
                        memcpy(ret_reply->msg, f->u.reply.msg, sizeof(ret_reply->msg));
                        return VMSIG_CLIENT_REPLY;
                }
                if (f->type != WIRE_EVENT) /* the receiver admits nothing else here */
                        return violation(c, WIRE_E_DIRECTION);
                *ret_event = f->u.event;
                if (c->stage_busy && f->u.event.hdr.kind == VMSIG_EV_ACT_ACK &&
                    f->u.event.hdr.corr == c->stage_corr) {
                        struct vmsig_ack_body a;
                        memcpy(&a, f->u.event.body, sizeof(a));
                        if (a.cmd_kind == VMSIG_EV_CMD_MEMWRITE)
                                c->stage_busy = false; /* the daemon is done with the staging memfd */
                }
                if (ret_fd)
                        *ret_fd = fd;
                else if (fd >= 0)
                        close(fd);
                return VMSIG_CLIENT_EVENT;
        }
}

int vmsig_client_recv_wait(struct vmsig_client *c, struct vmsig_event *ret_event, int *ret_fd,
                           struct vmsig_client_reply *ret_reply, int timeout_ms)
{
        uint64_t deadline = deadline_of(timeout_ms);

        for (;;) {
                /* Nothing buffered and the last read emptied the socket: a
                 * recvmsg now would only say EAGAIN, so poll first. */
                if (c && c->connected && !c->dead && c->drained && c->in_start == c->in_end) {
                        int r = flush_nb(c);
                        if (r < 0 && r != -EAGAIN && r != -EPIPE)
                                return r;
                        r = wait_fd(c, vmsig_client_poll_events(c), deadline);
                        if (r < 0)
                                return r;
                        c->drained = false;
                }
                int r = vmsig_client_recv(c, ret_event, ret_fd, ret_reply);
                if (r != -EAGAIN)
                        return r;
                r = flush_nb(c);
                if (r < 0 && r != -EAGAIN && r != -EPIPE)
                        return r;
                if (remaining(deadline) == 0)
                        return -ETIMEDOUT;
                r = wait_fd(c, vmsig_client_poll_events(c), deadline);
                if (r < 0)
                        return r;
        }
}

/* ---- handshake ---- */

static int do_connect(int fd, const char *path, int timeout_ms)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int r;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, strlen(path));
        if (timeout_ms >= 0) {
                /* A unix connect waits on a full backlog for up to SO_SNDTIMEO. */
                struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
                if (timeout_ms == 0)
                        tv.tv_usec = 1000;
                if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
                        return -errno;
        }
        do {
                r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
        } while (r < 0 && errno == EINTR);
        if (r < 0)
                return errno == EAGAIN || errno == EINPROGRESS ? -ETIMEDOUT : -errno;
        if (timeout_ms >= 0) {
                struct timeval zero = {0, 0};
                if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &zero, sizeof(zero)) < 0)
                        return -errno;
        }
        r = fcntl(fd, F_GETFL);
        if (r < 0 || fcntl(fd, F_SETFL, r | O_NONBLOCK) < 0)
                return -errno;
        return 0;
}

int vmsig_client_connect(struct vmsig_client *c, const char *path, const char *name, int timeout_ms)
{
        uint64_t deadline = deadline_of(timeout_ms);
        uint8_t hello[WIRE_PREFIX_LEN + WIRE_HELLO_LEN];
        const struct wire_frame *f;
        int fd, r;

        if (!c || !path)
                return -EINVAL;
        if (c->fd >= 0 || c->dead)
                return -EISCONN;
        if (name && strlen(name) >= VMSIG_NAME_MAX)
                return -EINVAL;

        c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0)
                return -errno;
        r = do_connect(c->fd, path, timeout_ms);
        if (r < 0) {
                set_error(c, r, false, "connect %s: %s", path, strerror(-r));
                return die(c, r, "connect");
        }
        r = wire_rx_init(&c->rx, WIRE_SIDE_CLIENT, 0);
        if (r < 0)
                return die(c, r, "out of memory");
        c->in = malloc(IN_CAP);
        c->out_cap = OUT_BASE;
        c->out = malloc(c->out_cap);
        if (!c->in || !c->out)
                return die(c, -ENOMEM, "out of memory");

        if (wire_encode_hello(hello, sizeof(hello), name) < 0)
                return die(c, -EINVAL, "bad name");
        memcpy(c->out, hello, sizeof(hello));
        c->out_end = sizeof(hello);
        while ((r = flush_nb(c)) == -EAGAIN) {
                r = wait_fd(c, POLLOUT, deadline);
                if (r < 0)
                        return die(c, r, "sending HELLO: %s", strerror(-r));
        }
        if (r == -EPIPE) {
                /* Refused before we could even say HELLO: read the reason. */
        } else if (r < 0) {
                return r;
        }

        for (;;) {
                r = next_frame(c, &f, &fd);
                if (r == 0)
                        break;
                if (r != -EAGAIN)
                        return r;
                r = wait_fd(c, POLLIN, deadline);
                if (r < 0)
                        return die(c, r, "no WELCOME from the daemon: %s", strerror(-r));
        }
        /* The receiver lets only WELCOME or ERROR open the stream, and
         * next_frame() turned ERROR into the refusal. */
        if (f->type != WIRE_WELCOME)
                return violation(c, WIRE_E_ORDER);
        if (c->out_broken)
                return die(c, -EPIPE, "daemon hung up after WELCOME");
        c->info = (struct vmsig_client_info){
            .version = f->u.welcome.version,
            .control_id = f->u.welcome.control_id,
            .caps = f->u.welcome.caps,
            .uid = f->u.welcome.uid,
            .body_max = f->u.welcome.body_max,
            .tail_max = f->u.welcome.tail_max,
            .queue_bytes = f->u.welcome.queue_bytes,
        };
        /* Room for the largest frame plus the largest tail, so a
         * send_payload can always be queued whole once the buffer drains. */
        uint8_t *out = realloc(c->out, OUT_BASE + (size_t)c->info.tail_max);
        if (!out)
                return die(c, -ENOMEM, "out of memory");
        c->out = out;
        c->out_cap = OUT_BASE + (size_t)c->info.tail_max;
        c->connected = true;
        return 0;
}

/* ---- requests ---- */

/* Requests on a connection that ended report why, before any argument check. */
static int usable(const struct vmsig_client *c)
{
        if (!c)
                return -EINVAL;
        if (c->dead)
                return c->err.code;
        return c->connected ? 0 : -ENOTCONN;
}

static uint64_t take_corr(struct vmsig_client *c)
{
        uint64_t v = c->next_corr++;
        if (c->next_corr == 0)
                c->next_corr = 1;
        return v;
}

int vmsig_client_subscribe(struct vmsig_client *c, uint32_t endpoint, uint64_t kinds, uint64_t *ret_corr)
{
        uint8_t b[WIRE_PREFIX_LEN + WIRE_SUBSCRIBE_LEN];
        uint64_t corr;
        ssize_t n;
        int r;

        r = usable(c);
        if (r < 0)
                return r;
        corr = c->next_corr;
        n = wire_encode_subscribe(b, sizeof(b), corr, endpoint, kinds);
        if (n < 0)
                return (int)n;
        r = queue_out(c, b, (size_t)n, NULL, 0);
        if (r < 0)
                return r;
        take_corr(c);
        if (ret_corr)
                *ret_corr = corr;
        return 0;
}

int vmsig_client_unsubscribe(struct vmsig_client *c, uint32_t endpoint, uint64_t *ret_corr)
{
        uint8_t b[WIRE_PREFIX_LEN + WIRE_UNSUBSCRIBE_LEN];
        uint64_t corr;
        ssize_t n;
        int r;

        r = usable(c);
        if (r < 0)
                return r;
        corr = c->next_corr;
        n = wire_encode_unsubscribe(b, sizeof(b), corr, endpoint);
        if (n < 0)
                return (int)n;
        r = queue_out(c, b, (size_t)n, NULL, 0);
        if (r < 0)
                return r;
        take_corr(c);
        if (ret_corr)
                *ret_corr = corr;
        return 0;
}

static int send_event(struct vmsig_client *c, struct vmsig_event *ev, const void *src, uint32_t len,
                      uint64_t *ret_corr)
{
        uint8_t b[WIRE_FRAME_MAX + WIRE_TAIL_LEN_LEN];
        bool own_corr = ev->hdr.corr == 0;
        ssize_t n;
        int r;

        if (own_corr)
                ev->hdr.corr = c->next_corr;
        /* peer, seq and ts are the daemon's to stamp. */
        ev->hdr.peer = 0;
        ev->hdr.seq = 0;
        n = wire_encode_event(b, WIRE_FRAME_MAX, ev, true);
        if (n < 0)
                return -EINVAL;
        if (src)
                n += wire_encode_tail_len(b + n, WIRE_TAIL_LEN_LEN, len);
        r = queue_out(c, b, (size_t)n, src, src ? len : 0);
        if (r < 0)
                return r;
        if (own_corr)
                take_corr(c);
        if (ret_corr)
                *ret_corr = ev->hdr.corr;
        return 0;
}

int vmsig_client_send(struct vmsig_client *c, const struct vmsig_event *ev, uint64_t *ret_corr)
{
        struct vmsig_event e;

        int r = usable(c);

        if (r < 0)
                return r;
        if (!ev)
                return -EINVAL;
        if (ev->hdr.flags & VMSIG_F_SRC_PAYLOAD)
                return -EINVAL; /* that is send_payload's */
        e = *ev;
        return send_event(c, &e, NULL, 0, ret_corr);
}

int vmsig_client_send_payload(struct vmsig_client *c, const struct vmsig_event *ev, const void *src,
                              size_t len, uint64_t *ret_corr)
{
        struct vmsig_event e;
        struct vmsig_memwrite_body mw;

        int r = usable(c);

        if (r < 0)
                return r;
        if (!ev || (!src && len))
                return -EINVAL;
        if (ev->hdr.kind != VMSIG_EV_CMD_MEMWRITE || ev->hdr.codec != 0)
                return -EINVAL;
        if (len == 0 || len > c->info.tail_max)
                return -EMSGSIZE;
        e = *ev;
        memcpy(&mw, e.body, WIRE_MEMWRITE_HDR_LEN);
        mw.len = (uint32_t)len;
        memset(e.body, 0, sizeof(e.body));
        memcpy(e.body, &mw, WIRE_MEMWRITE_HDR_LEN);
        e.hdr.body_len = WIRE_MEMWRITE_HDR_LEN;
        e.hdr.flags |= VMSIG_F_SRC_PAYLOAD;
        return send_event(c, &e, src, (uint32_t)len, ret_corr);
}

static int lease_cmd(struct vmsig_client *c, uint16_t kind, uint32_t endpoint, uint8_t lease_class,
                     uint64_t *ret_corr)
{
        struct vmsig_event ev;
        struct vmsig_lease_body b;
        int r = usable(c);

        if (r < 0)
                return r;
        if (lease_class >= VMSIG_LEASE_CLASS_COUNT)
                return -EINVAL;
        vmsig_event_init(&ev, kind, endpoint, VMSIG_SRC_CORE);
        memset(&b, 0, sizeof(b));
        b.class_ = lease_class;
        vmsig_event_set_body(&ev, &b, sizeof(b));
        return send_event(c, &ev, NULL, 0, ret_corr);
}

int vmsig_client_lease_acquire(struct vmsig_client *c, uint32_t endpoint, uint8_t lease_class,
                               uint64_t *ret_corr)
{
        return lease_cmd(c, VMSIG_EV_LEASE_ACQUIRE, endpoint, lease_class, ret_corr);
}

int vmsig_client_lease_release(struct vmsig_client *c, uint32_t endpoint, uint8_t lease_class,
                               uint64_t *ret_corr)
{
        return lease_cmd(c, VMSIG_EV_LEASE_RELEASE, endpoint, lease_class, ret_corr);
}

/* ---- CMD_MEMWRITE from an fd (protocol version 2) ---- */

bool vmsig_client_can_memwrite_fd(const struct vmsig_client *c)
{
        return usable(c) == 0 && c->info.version >= WIRE_VERSION_FD;
}

int vmsig_client_send_fd(struct vmsig_client *c, const struct vmsig_event *ev, int fd, uint64_t src_off,
                         size_t len, uint64_t *ret_corr)
{
        uint8_t b[WIRE_FRAME_MAX];
        struct vmsig_event e;
        struct vmsig_memwrite_fd_body fb;
        union {
                char buf[CMSG_SPACE(sizeof(int))];
                struct cmsghdr align;
        } cb;
        bool own_corr;
        ssize_t n, sent;
        int r = usable(c);

        if (r < 0)
                return r;
        if (!ev || fd < 0 || ev->hdr.kind != VMSIG_EV_CMD_MEMWRITE || ev->hdr.codec != 0)
                return -EINVAL;
        if (c->info.version < WIRE_VERSION_FD)
                return -EOPNOTSUPP;
        if (len == 0 || len > UINT32_MAX)
                return -EMSGSIZE;
        e = *ev;
        memcpy(&fb, e.body, WIRE_MEMWRITE_HDR_LEN);
        fb.len = (uint32_t)len;
        fb.src_off = src_off;
        memset(e.body, 0, sizeof(e.body));
        memcpy(e.body, &fb, sizeof(fb));
        e.hdr.body_len = sizeof(fb);
        e.hdr.flags = (uint16_t)((e.hdr.flags & ~VMSIG_F_SRC_PAYLOAD) | VMSIG_F_HAS_FD);
        own_corr = e.hdr.corr == 0;
        if (own_corr)
                e.hdr.corr = c->next_corr;
        e.hdr.peer = 0;
        e.hdr.seq = 0;
        n = wire_encode_event(b, sizeof(b), &e, true);
        if (n < 0)
                return -EINVAL;
        /* The fd rides on the frame's first byte: everything before it
         * must be on the wire first. */
        r = flush_nb(c);
        if (r < 0)
                return r;

        struct iovec iov = {.iov_base = b, .iov_len = (size_t)n};
        struct msghdr mh = {
            .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cb.buf, .msg_controllen = sizeof(cb.buf)};
        struct cmsghdr *cm;

        memset(&cb, 0, sizeof(cb));
        cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &fd, sizeof(int));
        do {
                sent = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        } while (sent < 0 && errno == EINTR);
        if (sent < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                        return -EAGAIN;
                if (errno == EPIPE || errno == ECONNRESET) {
                        c->out_broken = true;
                        return -EPIPE;
                }
                return die(c, -errno, "sendmsg: %s", strerror(errno));
        }
        /* The fd went with the first byte; the rest of the frame queues. */
        if (sent < n) {
                memcpy(c->out, b + sent, (size_t)(n - sent));
                c->out_start = 0;
                c->out_end = (size_t)(n - sent);
                (void)flush_nb(c);
        }
        if (own_corr)
                take_corr(c);
        if (ret_corr)
                *ret_corr = e.hdr.corr;
        return 0;
}

/* The staging memfd: tail_max bytes, sealed against shrinking and growing
 * (a daemon copying from it can never see it shrink), mapped here. */
static int stage_open(struct vmsig_client *c)
{
        const int seals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
        size_t size = c->info.tail_max;
        void *p;
        int fd;

        if (c->stage)
                return 0;
        fd = memfd_create("vmsig-memwrite", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (fd < 0)
                return -errno;
        if (ftruncate(fd, (off_t)size) < 0 || fcntl(fd, F_ADD_SEALS, seals) < 0) {
                int e = -errno;
                close(fd);
                return e;
        }
        p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
                int e = -errno;
                close(fd);
                return e;
        }
        c->stage_fd = fd;
        c->stage = p;
        return 0;
}

int vmsig_client_memwrite_buffer(struct vmsig_client *c, void **ret_buf, size_t *ret_size)
{
        int r = usable(c);

        if (r < 0)
                return r;
        if (!ret_buf)
                return -EINVAL;
        if (c->info.version < WIRE_VERSION_FD)
                return -EOPNOTSUPP;
        if (c->stage_busy)
                return -EBUSY;
        r = stage_open(c);
        if (r < 0)
                return r;
        *ret_buf = c->stage;
        if (ret_size)
                *ret_size = c->info.tail_max;
        return 0;
}

int vmsig_client_memwrite_submit(struct vmsig_client *c, const struct vmsig_event *ev, size_t len,
                                 uint64_t *ret_corr)
{
        uint64_t corr;
        int r = usable(c);

        if (r < 0)
                return r;
        if (!c->stage)
                return -EINVAL; /* no buffer was handed out */
        if (c->stage_busy)
                return -EBUSY;
        if (len == 0 || len > c->info.tail_max)
                return -EMSGSIZE;
        r = vmsig_client_send_fd(c, ev, c->stage_fd, 0, len, &corr);
        if (r < 0)
                return r;
        c->stage_busy = true;
        c->stage_corr = corr;
        if (ret_corr)
                *ret_corr = corr;
        return 0;
}

int vmsig_client_memwrite(struct vmsig_client *c, const struct vmsig_event *ev, const void *src, size_t len,
                          uint64_t *ret_corr)
{
        struct vmsig_event e;
        struct vmsig_memwrite_body mb;
        void *buf;
        int r = usable(c);

        if (r < 0)
                return r;
        if (!ev || !src || ev->hdr.kind != VMSIG_EV_CMD_MEMWRITE || ev->hdr.codec != 0)
                return -EINVAL;
        if (len == 0 || len > c->info.tail_max)
                return -EMSGSIZE;
        if (len <= VMSIG_MEMWRITE_INLINE_MAX) {
                e = *ev;
                memcpy(&mb, e.body, WIRE_MEMWRITE_HDR_LEN);
                mb.len = (uint32_t)len;
                memcpy(mb.data, src, len);
                e.hdr.flags &= (uint16_t) ~(VMSIG_F_SRC_PAYLOAD | VMSIG_F_HAS_FD);
                vmsig_event_set_body(&e, &mb, WIRE_MEMWRITE_HDR_LEN + len);
                return vmsig_client_send(c, &e, ret_corr);
        }
        /* Above the threshold, through the staging memfd when it is free
         * and nothing else waits to be written; else as a tail. */
        if (len >= VMSIG_CLIENT_MEMWRITE_FD_MIN && c->info.version >= WIRE_VERSION_FD && !c->stage_busy &&
            vmsig_client_pending_output(c) == 0 && vmsig_client_memwrite_buffer(c, &buf, NULL) == 0) {
                memcpy(buf, src, len);
                r = vmsig_client_memwrite_submit(c, ev, len, ret_corr);
                if (r != -EAGAIN)
                        return r;
        }
        return vmsig_client_send_payload(c, ev, src, len, ret_corr);
}
