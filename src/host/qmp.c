/* SPDX-License-Identifier: MIT */
/* QMP client state machine. See qmp.h for the contract. */
#include "host/qmp.h"
#include "util/clock.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define INBUF_INITIAL  4096u
#define INBUF_SHRINK   (1u << 20)
#define OUTBUF_MAX     (16u * 1024 * 1024)
#define READS_PER_CALL 64 /* level-triggered: leave the rest for the next wakeup */
#define JSON_DEPTH     64
#define REASON_MAX     256

enum cmd_kind { CMD_PLAIN, CMD_HMP, CMD_CAPS };

struct cmd {
        struct cmd *next;
        uint64_t id;
        enum cmd_kind kind;
        qmp_reply_fn cb;
        void *userdata;
};

struct buf {
        char *data;
        size_t len, alloc;
};

struct qmp {
        int fd;
        enum qmp_state state;
        struct qmp_config cfg;

        struct buf in;  /* received bytes not yet consumed as lines */
        size_t in_scan; /* bytes of `in` known to hold no '\n' */
        struct buf out; /* bytes to send, from out_off */
        size_t out_off;
        struct buf held; /* commands queued before READY */
        struct buf text; /* HMP reply scratch, reused */

        struct json_tokener *tok;
        struct json_object *greeting;

        struct cmd *pending; /* in flight or held, newest first */
        struct cmd *spare;   /* recycled entries: no allocation per command in steady state */
        unsigned n_pending;
        uint64_t next_id;

        unsigned busy; /* nesting depth of callback-running calls */
        bool dead;     /* qmp_free() ran inside a callback */
        int close_err;
        char close_reason[REASON_MAX];
};

static int buf_reserve(struct buf *b, size_t extra, size_t max)
{
        if (extra > max || b->len > max - extra)
                return -ENOBUFS;
        size_t need = b->len + extra;
        if (need <= b->alloc)
                return 0;
        size_t n = b->alloc ? b->alloc : INBUF_INITIAL;
        while (n < need)
                n = n > SIZE_MAX / 2 ? need : n * 2;
        if (n > max)
                n = max;
        char *p = realloc(b->data, n);
        if (!p)
                return -ENOMEM;
        b->data = p;
        b->alloc = n;
        return 0;
}

static int buf_append(struct buf *b, const void *data, size_t len, size_t max)
{
        if (len == 0)
                return 0; /* data may be NULL (an empty held buffer) */
        int r = buf_reserve(b, len, max);
        if (r < 0)
                return r;
        memcpy(b->data + b->len, data, len);
        b->len += len;
        return 0;
}

static void buf_done(struct buf *b)
{
        free(b->data);
        *b = (struct buf){0};
}

static void cmd_recycle(struct qmp *q, struct cmd *c)
{
        c->next = q->spare;
        q->spare = c;
}

static struct cmd *cmd_take(struct qmp *q, uint64_t id)
{
        for (struct cmd **pp = &q->pending; *pp; pp = &(*pp)->next) {
                if ((*pp)->id == id) {
                        struct cmd *c = *pp;
                        *pp = c->next;
                        q->n_pending--;
                        return c;
                }
        }
        return NULL;
}

static void call_reply(struct qmp *q, struct cmd *c, const struct qmp_reply *r)
{
        if (c->cb)
                c->cb(q, r, c->userdata);
}

/* Fails every pending command; the caller recycles nothing afterwards. */
static void fail_pending(struct qmp *q, int err, const char *reason)
{
        struct qmp_reply r = {.error = err, .reason = reason};

        /* Detach the list first: a callback may queue (rejected) or free. */
        while (q->pending) {
                struct cmd *c = q->pending;
                q->pending = c->next;
                q->n_pending--;
                if (c->kind != CMD_CAPS)
                        call_reply(q, c, &r);
                cmd_recycle(q, c);
        }
}

static void close_fd(struct qmp *q)
{
        if (q->fd >= 0)
                close(q->fd);
        q->fd = -1;
}

/* The one way to close: record why, fail pending commands, tell the owner,
 * then close the fd (the owner may still EPOLL_CTL_DEL it in on_close). */
static void qmp_fail(struct qmp *q, bool notify, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void qmp_fail(struct qmp *q, bool notify, int err, const char *fmt, ...)
{
        if (q->state == QMP_STATE_CLOSED)
                return;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(q->close_reason, sizeof(q->close_reason), fmt, ap);
        va_end(ap);
        q->state = QMP_STATE_CLOSED;
        q->close_err = err;
        q->busy++;
        fail_pending(q, err, q->close_reason);
        if (notify && q->cfg.on_close && !q->dead)
                q->cfg.on_close(q, err, q->close_reason, q->cfg.userdata);
        q->busy--;
        close_fd(q);
        buf_done(&q->out);
        q->out_off = 0;
        buf_done(&q->held);
}

static int flush_out(struct qmp *q)
{
        while (q->out_off < q->out.len) {
                ssize_t n = send(q->fd, q->out.data + q->out_off, q->out.len - q->out_off,
                                 MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return errno == EAGAIN ? 0 : -errno;
                }
                q->out_off += (size_t)n;
        }
        q->out.len = q->out_off = 0;
        return 0;
}

static int append_command(struct qmp *q, struct buf *dst, const char *command, struct json_object *args,
                          uint64_t id)
{
        struct json_object *o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        int r = -ENOMEM;
        if (json_object_object_add(o, "execute", json_object_new_string(command)) < 0)
                goto out;
        if (args && json_object_object_add(o, "arguments", json_object_get(args)) < 0)
                goto out;
        if (json_object_object_add(o, "id", json_object_new_int64((int64_t)id)) < 0)
                goto out;
        size_t len;
        const char *s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &len);
        if (!s)
                goto out;
        size_t mark = dst->len;
        r = buf_append(dst, s, len, OUTBUF_MAX);
        if (r == 0)
                r = buf_append(dst, "\n", 1, OUTBUF_MAX);
        if (r < 0)
                dst->len = mark;
out:
        json_object_put(o);
        return r;
}

static int queue_command(struct qmp *q, enum cmd_kind kind, const char *command, struct json_object *args,
                         qmp_reply_fn cb, void *userdata, uint64_t *ret_id)
{
        if (!q || !command || !*command)
                return -EINVAL;
        if (q->state == QMP_STATE_CLOSED || q->dead)
                return -EPIPE;
        if (q->n_pending >= QMP_MAX_PENDING)
                return -ENOBUFS;

        struct cmd *c = q->spare;
        if (c)
                q->spare = c->next;
        else if (!(c = malloc(sizeof(*c))))
                return -ENOMEM;
        *c = (struct cmd){.id = q->next_id, .kind = kind, .cb = cb, .userdata = userdata};

        /* Until capabilities are accepted, anything but qmp_capabilities would
         * get CommandNotFound: hold it back. */
        bool now = q->state == QMP_STATE_READY || kind == CMD_CAPS;
        int r = append_command(q, now ? &q->out : &q->held, command, args, c->id);
        if (r < 0) {
                cmd_recycle(q, c);
                return r;
        }
        q->next_id++;
        c->next = q->pending;
        q->pending = c;
        q->n_pending++;
        if (ret_id)
                *ret_id = c->id;
        /* Eager send saves a wakeup; errors surface as EOF/HUP on the next read. */
        if (now && q->fd >= 0 && q->state != QMP_STATE_CONNECTING)
                (void)flush_out(q);
        return 0;
}

int qmp_execute(struct qmp *q, const char *command, struct json_object *args, qmp_reply_fn cb, void *userdata,
                uint64_t *ret_id)
{
        return queue_command(q, CMD_PLAIN, command, args, cb, userdata, ret_id);
}

int qmp_hmp(struct qmp *q, const char *command_line, qmp_reply_fn cb, void *userdata, uint64_t *ret_id)
{
        if (!command_line)
                return -EINVAL;
        struct json_object *args = json_object_new_object();
        if (!args)
                return -ENOMEM;
        int r = -ENOMEM;
        if (json_object_object_add(args, "command-line", json_object_new_string(command_line)) == 0)
                r = queue_command(q, CMD_HMP, "human-monitor-command", args, cb, userdata, ret_id);
        json_object_put(args);
        return r;
}

static int become_ready(struct qmp *q)
{
        q->state = QMP_STATE_READY;
        int r = buf_append(&q->out, q->held.data, q->held.len, OUTBUF_MAX);
        buf_done(&q->held);
        if (r < 0)
                return r;
        if (q->cfg.on_ready)
                q->cfg.on_ready(q, q->greeting, q->cfg.userdata);
        return 0;
}

/* HMP text: json-c already un-escaped it; normalise CRLF to LF here so
 * parsers above this boundary see plain text. */
static int hmp_text(struct qmp *q, const char *s, size_t len)
{
        q->text.len = 0;
        int r = buf_reserve(&q->text, len + 1, SIZE_MAX);
        if (r < 0)
                return r;
        char *d = q->text.data;
        for (size_t i = 0; i < len; i++) {
                if (s[i] == '\r' && i + 1 < len && s[i + 1] == '\n')
                        continue;
                *d++ = s[i];
        }
        *d = 0;
        q->text.len = (size_t)(d - q->text.data);
        return 0;
}

static void handle_reply(struct qmp *q, struct json_object *msg, struct json_object *ret,
                         struct json_object *err)
{
        struct json_object *jid;
        if (!json_object_object_get_ex(msg, "id", &jid) || !json_object_is_type(jid, json_type_int))
                return; /* errors raised before QEMU read the id carry none: nobody to tell */
        int64_t id = json_object_get_int64(jid);
        if (id <= 0)
                return;
        struct cmd *c = cmd_take(q, (uint64_t)id);
        if (!c)
                return; /* unknown id: dropped */

        struct qmp_reply r = {0};
        if (err) {
                struct json_object *jc = NULL, *jd = NULL;
                json_object_object_get_ex(err, "class", &jc);
                json_object_object_get_ex(err, "desc", &jd);
                r.error = -EREMOTEIO;
                r.value = err;
                r.error_class = jc ? json_object_get_string(jc) : "unknown";
                r.reason = jd ? json_object_get_string(jd) : r.error_class;
        } else {
                r.value = ret;
        }

        if (c->kind == CMD_CAPS) {
                cmd_recycle(q, c);
                if (r.error) {
                        qmp_fail(q, true, -EPROTO, "QMP capabilities negotiation failed: %s: %s",
                                 r.error_class, r.reason);
                        return;
                }
                if (become_ready(q) < 0)
                        qmp_fail(q, true, -ENOBUFS, "QMP: too many commands queued before ready");
                return;
        }
        if (c->kind == CMD_HMP && !r.error) {
                if (!json_object_is_type(ret, json_type_string)) {
                        r.error = -EPROTO;
                        r.reason = "human-monitor-command returned a non-string";
                } else {
                        int e =
                            hmp_text(q, json_object_get_string(ret), (size_t)json_object_get_string_len(ret));
                        if (e < 0) {
                                r.error = e;
                                r.reason = "out of memory for HMP text";
                        } else {
                                r.text = q->text.data;
                                r.text_len = q->text.len;
                        }
                }
        }
        /* Recycle before the callback: a callback may queue and reuse it. */
        qmp_reply_fn cb = c->cb;
        void *ud = c->userdata;
        cmd_recycle(q, c);
        if (cb)
                cb(q, &r, ud);
}

static void handle_event(struct qmp *q, struct json_object *msg, struct json_object *name)
{
        struct qmp_event ev = {.name = json_object_get_string(name), .ts_sec = -1, .ts_usec = -1, .raw = msg};
        struct json_object *ts, *v;

        json_object_object_get_ex(msg, "data", &ev.data);
        if (json_object_object_get_ex(msg, "timestamp", &ts) && json_object_is_type(ts, json_type_object)) {
                if (json_object_object_get_ex(ts, "seconds", &v))
                        ev.ts_sec = json_object_get_int64(v);
                if (json_object_object_get_ex(ts, "microseconds", &v))
                        ev.ts_usec = json_object_get_int64(v);
        }
        if (q->cfg.on_event)
                q->cfg.on_event(q, &ev, q->cfg.userdata);
}

static void handle_greeting(struct qmp *q, struct json_object *msg, struct json_object *body)
{
        if (q->state != QMP_STATE_GREETING) {
                qmp_fail(q, true, -EPROTO, "QMP: unexpected greeting in state %s",
                         qmp_state_to_string(q->state));
                return;
        }
        if (!json_object_is_type(body, json_type_object)) {
                qmp_fail(q, true, -EPROTO, "QMP: malformed greeting");
                return;
        }
        q->greeting = json_object_get(msg);
        q->state = QMP_STATE_NEGOTIATING;
        /* Held user commands must follow the capabilities reply, not precede it. */
        int r = queue_command(q, CMD_CAPS, "qmp_capabilities", NULL, NULL, NULL, NULL);
        if (r < 0)
                qmp_fail(q, true, r, "QMP: cannot queue qmp_capabilities: %s", strerror(-r));
}

/* Classify by key, in every state: an event may arrive at any time. */
static void dispatch(struct qmp *q, struct json_object *msg)
{
        struct json_object *v, *ret = NULL, *err = NULL;

        if (json_object_object_get_ex(msg, "event", &v)) {
                if (!json_object_is_type(v, json_type_string)) {
                        qmp_fail(q, true, -EPROTO, "QMP: event name is not a string");
                        return;
                }
                handle_event(q, msg, v);
        } else if (json_object_object_get_ex(msg, "QMP", &v)) {
                handle_greeting(q, msg, v);
        } else if (json_object_object_get_ex(msg, "return", &ret) ||
                   json_object_object_get_ex(msg, "error", &err)) {
                if (err && !json_object_is_type(err, json_type_object)) {
                        qmp_fail(q, true, -EPROTO, "QMP: error member is not an object");
                        return;
                }
                handle_reply(q, msg, ret, err);
        }
        /* Anything else: unknown message kinds are ignored (forward compatible). */
}

static bool is_blank(const char *s, size_t len)
{
        for (size_t i = 0; i < len; i++)
                if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
                        return false;
        return true;
}

/* One line including its '\n'. */
static void handle_line(struct qmp *q, const char *line, size_t len)
{
        if (is_blank(line, len))
                return;
        json_tokener_reset(q->tok);
        struct json_object *msg = json_tokener_parse_ex(q->tok, line, (int)len);
        enum json_tokener_error e = json_tokener_get_error(q->tok);
        if (!msg && e == json_tokener_continue)
                e = json_tokener_error_parse_eof;
        if (e != json_tokener_success || !msg) {
                qmp_fail(q, true, -EPROTO, "QMP: invalid JSON: %s", json_tokener_error_desc(e));
                json_object_put(msg);
                return;
        }
        size_t end = json_tokener_get_parse_end(q->tok);
        if (!json_object_is_type(msg, json_type_object) || !is_blank(line + end, len - end)) {
                qmp_fail(q, true, -EPROTO, "QMP: %s",
                         json_object_is_type(msg, json_type_object) ? "trailing data after JSON object"
                                                                    : "JSON line is not an object");
                json_object_put(msg);
                return;
        }
        dispatch(q, msg);
        json_object_put(msg);
}

/* Splits q->in into lines and handles the complete ones. */
static void consume(struct qmp *q)
{
        size_t start = 0;
        size_t max = q->cfg.max_line;

        while (q->state != QMP_STATE_CLOSED && !q->dead) {
                char *nl = memchr(q->in.data + q->in_scan, '\n', q->in.len - q->in_scan);
                if (!nl) {
                        q->in_scan = q->in.len;
                        break;
                }
                size_t end = (size_t)(nl - q->in.data) + 1;
                if (end - start - 1 > max) {
                        qmp_fail(q, true, -EMSGSIZE, "QMP: line of %zu bytes exceeds the %zu byte limit",
                                 end - start - 1, max);
                        return;
                }
                handle_line(q, q->in.data + start, end - start);
                start = q->in_scan = end;
        }
        if (q->state == QMP_STATE_CLOSED || q->dead)
                return;
        if (start) {
                memmove(q->in.data, q->in.data + start, q->in.len - start);
                q->in.len -= start;
                q->in_scan -= start;
        }
        if (q->in.len > max) {
                qmp_fail(q, true, -EMSGSIZE, "QMP: line exceeds the %zu byte limit", max);
                return;
        }
        /* Give back what one huge reply (e.g. query-qmp-schema) made us grow to. */
        if (q->in.alloc > INBUF_SHRINK && q->in.len <= INBUF_INITIAL) {
                char *p = realloc(q->in.data, INBUF_INITIAL);
                if (p) {
                        q->in.data = p;
                        q->in.alloc = INBUF_INITIAL;
                }
        }
}

/* Room to read into: the buffer never exceeds max_line + 1 bytes, which is
 * enough to see that a line is too long. */
static int in_room(struct qmp *q, size_t *ret_room)
{
        size_t cap = q->cfg.max_line + 1;
        if (q->in.len >= cap)
                return -EMSGSIZE;
        if (q->in.alloc == q->in.len) {
                int r = buf_reserve(&q->in, q->in.alloc ? q->in.alloc : INBUF_INITIAL, cap);
                if (r == -ENOBUFS)
                        r = buf_reserve(&q->in, cap - q->in.len, cap);
                if (r < 0)
                        return r;
        }
        *ret_room = q->in.alloc - q->in.len;
        return 0;
}

static void do_read(struct qmp *q)
{
        for (int i = 0; i < READS_PER_CALL && q->state != QMP_STATE_CLOSED && !q->dead; i++) {
                size_t room;
                int r = in_room(q, &room);
                if (r < 0) {
                        qmp_fail(q, true, r, "QMP: receive buffer: %s", strerror(-r));
                        return;
                }
                ssize_t n = recv(q->fd, q->in.data + q->in.len, room, MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return;
                        int e = errno;
                        qmp_fail(q, true, -e, "QMP: read: %s", strerror(e));
                        return;
                }
                if (n == 0) {
                        if (q->in.len && !is_blank(q->in.data, q->in.len))
                                qmp_fail(q, true, -EPIPE,
                                         "QMP: peer closed the connection mid-line (%zu bytes)", q->in.len);
                        else
                                qmp_fail(q, true, -EPIPE, "QMP: peer closed the connection");
                        return;
                }
                q->in.len += (size_t)n;
                consume(q);
        }
}

static int finish_call(struct qmp *q)
{
        if (--q->busy == 0 && q->dead) {
                qmp_free(q);
                return -ECANCELED;
        }
        return q->state == QMP_STATE_CLOSED ? q->close_err : 0;
}

int qmp_process(struct qmp *q, uint32_t revents)
{
        if (!q)
                return -EINVAL;
        if (q->state == QMP_STATE_CLOSED)
                return q->close_err;
        q->busy++;
        if (q->state == QMP_STATE_CONNECTING && (revents & (POLLOUT | POLLERR | POLLHUP))) {
                int soerr = 0;
                socklen_t sl = sizeof(soerr);
                if (getsockopt(q->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
                        soerr = errno;
                if (soerr)
                        qmp_fail(q, true, -soerr, "QMP: connect: %s", strerror(soerr));
                else
                        q->state = QMP_STATE_GREETING;
        }
        if (q->state != QMP_STATE_CLOSED && q->state != QMP_STATE_CONNECTING &&
            (revents & (POLLIN | POLLHUP | POLLERR)))
                do_read(q);
        if (q->state != QMP_STATE_CLOSED && q->state != QMP_STATE_CONNECTING && !q->dead &&
            q->out_off < q->out.len) {
                int r = flush_out(q);
                if (r < 0)
                        qmp_fail(q, true, r, "QMP: write: %s", strerror(-r));
        }
        return finish_call(q);
}

int qmp_feed(struct qmp *q, const void *data, size_t len)
{
        if (!q)
                return -EINVAL;
        if (q->state == QMP_STATE_CLOSED)
                return q->close_err;
        q->busy++;
        const char *p = data;
        while (len && q->state != QMP_STATE_CLOSED && !q->dead) {
                size_t room;
                int r = in_room(q, &room);
                if (r < 0) {
                        qmp_fail(q, true, r, "QMP: receive buffer: %s", strerror(-r));
                        break;
                }
                size_t n = len < room ? len : room;
                memcpy(q->in.data + q->in.len, p, n);
                q->in.len += n;
                p += n;
                len -= n;
                consume(q);
        }
        return finish_call(q);
}

static int qmp_alloc(const struct qmp_config *cfg, struct qmp **ret)
{
        struct qmp *q = calloc(1, sizeof(*q));
        if (!q)
                return -ENOMEM;
        q->fd = -1;
        q->next_id = 1;
        if (cfg)
                q->cfg = *cfg;
        if (!q->cfg.max_line)
                q->cfg.max_line = QMP_MAX_LINE_DEFAULT;
        if (q->cfg.max_line > (size_t)INT_MAX - 2) /* json-c takes an int length */
                q->cfg.max_line = (size_t)INT_MAX - 2;
        q->tok = json_tokener_new_ex(JSON_DEPTH);
        if (!q->tok) {
                free(q);
                return -ENOMEM;
        }
        json_tokener_set_flags(q->tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
        *ret = q;
        return 0;
}

int qmp_new_fd(int fd, const struct qmp_config *cfg, struct qmp **ret)
{
        if (fd < 0 || !ret) {
                if (fd >= 0)
                        close(fd);
                return -EINVAL;
        }
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
                int e = errno;
                close(fd);
                return -e;
        }
        struct qmp *q;
        int r = qmp_alloc(cfg, &q);
        if (r < 0) {
                close(fd);
                return r;
        }
        q->fd = fd;
        q->state = QMP_STATE_GREETING;
        *ret = q;
        return 0;
}

int qmp_new(const char *path, const struct qmp_config *cfg, struct qmp **ret)
{
        if (!path || !ret)
                return -EINVAL;
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        size_t plen = strlen(path);
        if (plen == 0)
                return -EINVAL;
        if (plen >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, plen + 1);

        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        bool in_progress = false;
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                if (errno != EINPROGRESS) {
                        int e = errno; /* ENOENT, ECONNREFUSED, EAGAIN...: the owner backs off */
                        close(fd);
                        return -e;
                }
                in_progress = true;
        }
        struct qmp *q;
        int r = qmp_alloc(cfg, &q);
        if (r < 0) {
                close(fd);
                return r;
        }
        q->fd = fd;
        q->state = in_progress ? QMP_STATE_CONNECTING : QMP_STATE_GREETING;
        *ret = q;
        return 0;
}

struct qmp *qmp_free(struct qmp *q)
{
        if (!q)
                return NULL;
        if (q->busy) {
                /* Inside a callback: the running qmp_process() reclaims it. */
                if (!q->dead) {
                        q->dead = true;
                        qmp_fail(q, false, -ECANCELED, "QMP client freed");
                        fail_pending(q, -ECANCELED, "QMP client freed");
                }
                return NULL;
        }
        if (!q->dead) {
                q->dead = true;
                qmp_fail(q, false, -ECANCELED, "QMP client freed");
        }
        q->busy++; /* a callback freeing again must not recurse */
        fail_pending(q, -ECANCELED, "QMP client freed");
        close_fd(q);
        while (q->spare) {
                struct cmd *c = q->spare;
                q->spare = c->next;
                free(c);
        }
        buf_done(&q->in);
        buf_done(&q->out);
        buf_done(&q->held);
        buf_done(&q->text);
        json_object_put(q->greeting);
        json_tokener_free(q->tok);
        free(q);
        return NULL;
}

int qmp_fd(const struct qmp *q)
{
        return q ? q->fd : -1;
}

bool qmp_want_write(const struct qmp *q)
{
        if (!q || q->fd < 0 || q->state == QMP_STATE_CLOSED)
                return false;
        return q->state == QMP_STATE_CONNECTING || q->out_off < q->out.len;
}

uint32_t qmp_poll_mask(const struct qmp *q)
{
        if (!q || q->fd < 0 || q->state == QMP_STATE_CLOSED)
                return 0;
        if (q->state == QMP_STATE_CONNECTING)
                return POLLOUT;
        return POLLIN | (qmp_want_write(q) ? POLLOUT : 0);
}

enum qmp_state qmp_get_state(const struct qmp *q)
{
        return q ? q->state : QMP_STATE_CLOSED;
}

const char *qmp_state_to_string(enum qmp_state s)
{
        switch (s) {
        case QMP_STATE_CONNECTING:
                return "connecting";
        case QMP_STATE_GREETING:
                return "greeting";
        case QMP_STATE_NEGOTIATING:
                return "negotiating";
        case QMP_STATE_READY:
                return "ready";
        case QMP_STATE_CLOSED:
                return "closed";
        }
        return "invalid";
}

struct json_object *qmp_greeting(const struct qmp *q)
{
        return q ? q->greeting : NULL;
}

/* ---- blocking helpers ---- */

static int64_t now_ms(void)
{
        return (int64_t)vmsig_now_ms();
}

int qmp_pump(struct qmp *q, int timeout_ms)
{
        if (!q)
                return -EINVAL;
        if (q->state == QMP_STATE_CLOSED)
                return q->close_err;
        struct pollfd p = {.fd = q->fd, .events = (short)qmp_poll_mask(q)};
        int n = poll(&p, 1, timeout_ms);
        if (n < 0)
                return errno == EINTR ? 0 : -errno;
        if (n == 0)
                return -ETIMEDOUT;
        return qmp_process(q, (uint32_t)p.revents);
}

struct sync_call {
        bool done;
        bool abandoned; /* timed out: the -ECANCELED from qmp_free() is not the answer */
        int error;
        struct json_object *value;
        char *text;
        char reason[REASON_MAX];
};

static void sync_reply(struct qmp *q, const struct qmp_reply *r, void *userdata)
{
        struct sync_call *s = userdata;
        if (s->abandoned)
                return;
        s->done = true;
        s->error = r->error;
        if (r->error) {
                snprintf(s->reason, sizeof(s->reason), "%s", r->reason ? r->reason : strerror(-r->error));
                return;
        }
        if (r->text) {
                s->text = strdup(r->text);
                if (!s->text)
                        s->error = -ENOMEM;
        } else {
                s->value = json_object_get(r->value);
        }
}

static int sync_run(const char *path, bool hmp, const char *what, struct json_object *args, int timeout_ms,
                    struct sync_call *s)
{
        struct qmp *q;
        int r = qmp_new(path, NULL, &q);
        if (r < 0) {
                snprintf(s->reason, sizeof(s->reason), "connect %s: %s", path, strerror(-r));
                return r;
        }
        r = hmp ? qmp_hmp(q, what, sync_reply, s, NULL) : qmp_execute(q, what, args, sync_reply, s, NULL);
        if (r < 0) {
                snprintf(s->reason, sizeof(s->reason), "queue %s: %s", what, strerror(-r));
                qmp_free(q);
                return r;
        }
        int64_t deadline = timeout_ms < 0 ? INT64_MAX : now_ms() + timeout_ms;
        while (!s->done) {
                int64_t left = deadline == INT64_MAX ? -1 : deadline - now_ms();
                if (deadline != INT64_MAX && left <= 0) {
                        r = -ETIMEDOUT;
                        snprintf(s->reason, sizeof(s->reason), "%s: no reply within %d ms", what, timeout_ms);
                        break;
                }
                r = qmp_pump(q, left > INT_MAX ? INT_MAX : (int)left);
                if (r == -ETIMEDOUT)
                        r = 0;
                if (r < 0 && !s->done)
                        break; /* the reply callback already recorded the close reason */
                r = 0;
        }
        s->abandoned = !s->done;
        qmp_free(q);
        if (s->done)
                return s->error;
        return r;
}

int qmp_sync_execute(const char *path, const char *command, struct json_object *args, int timeout_ms,
                     struct json_object **ret_value, char *reason, size_t reason_len)
{
        struct sync_call s = {0};
        int r = sync_run(path, false, command, args, timeout_ms, &s);
        if (reason && reason_len)
                snprintf(reason, reason_len, "%s", r < 0 ? s.reason : "");
        if (r < 0 || !ret_value)
                json_object_put(s.value);
        else
                *ret_value = s.value;
        return r;
}

int qmp_sync_hmp(const char *path, const char *command_line, int timeout_ms, char **ret_text, char *reason,
                 size_t reason_len)
{
        struct sync_call s = {0};
        int r = sync_run(path, true, command_line, NULL, timeout_ms, &s);
        if (reason && reason_len)
                snprintf(reason, reason_len, "%s", r < 0 ? s.reason : "");
        if (r < 0 || !ret_text)
                free(s.text);
        else
                *ret_text = s.text;
        return r;
}
