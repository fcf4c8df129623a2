/* SPDX-License-Identifier: MIT */
/* QMP client against a fake peer that sends exact bytes over a socketpair. */
#include <errno.h>
#include <json-c/json.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "host/qmp.h"

#define GREETING                                                                                             \
        "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, \"package\": "       \
        "\"Debian 1:7.2+dfsg-7+deb12u18\"}, \"capabilities\": [\"oob\"]}}\r\n"

#define MAX_REC 16

struct rec_reply {
        int error;
        char value[256]; /* JSON text of value */
        char cls[64];
        char reason[256];
        char *text;
        size_t text_len;
};

struct fx {
        int peer;
        struct qmp *q;
        char inbuf[65536]; /* what the client sent, not yet taken */
        size_t inlen;

        int n_events;
        char ev_name[MAX_REC][32];
        char ev_data[MAX_REC][128];
        int64_t ev_sec[MAX_REC], ev_usec[MAX_REC];
        enum qmp_state ev_state[MAX_REC];

        int n_ready;
        int n_close;
        int close_err;
        char close_reason[256];

        struct rec_reply reply[MAX_REC];
        bool free_in_reply; /* a reply callback frees the client */
        bool free_in_close;
};

static void on_ready(struct qmp *q, struct json_object *greeting, void *ud)
{
        struct fx *f = ud;
        assert_non_null(greeting);
        f->n_ready++;
}

static void on_event(struct qmp *q, const struct qmp_event *ev, void *ud)
{
        struct fx *f = ud;
        assert_true(f->n_events < MAX_REC);
        snprintf(f->ev_name[f->n_events], 32, "%s", ev->name);
        snprintf(f->ev_data[f->n_events], 128, "%s",
                 ev->data ? json_object_to_json_string_ext(ev->data, JSON_C_TO_STRING_PLAIN) : "");
        f->ev_sec[f->n_events] = ev->ts_sec;
        f->ev_usec[f->n_events] = ev->ts_usec;
        f->ev_state[f->n_events] = qmp_get_state(q);
        f->n_events++;
}

static void on_close(struct qmp *q, int err, const char *reason, void *ud)
{
        struct fx *f = ud;
        f->n_close++;
        f->close_err = err;
        snprintf(f->close_reason, sizeof(f->close_reason), "%s", reason);
        assert_true(qmp_fd(q) >= 0); /* still open for EPOLL_CTL_DEL */
        if (f->free_in_close)
                f->q = qmp_free(q);
}

/* userdata: a slot index packed in a pointer, with the fixture reached via a static. */
static struct fx *cur;

static void on_reply(struct qmp *q, const struct qmp_reply *r, void *ud)
{
        struct rec_reply *rr = &cur->reply[(intptr_t)ud];
        rr->error = r->error ? r->error : 1; /* 1 = success recorded */
        if (r->error == 0) {
                rr->error = 1;
                assert_null(r->reason);
        }
        snprintf(rr->value, sizeof(rr->value), "%s",
                 r->value ? json_object_to_json_string_ext(r->value, JSON_C_TO_STRING_PLAIN) : "");
        snprintf(rr->cls, sizeof(rr->cls), "%s", r->error_class ? r->error_class : "");
        snprintf(rr->reason, sizeof(rr->reason), "%s", r->reason ? r->reason : "");
        if (r->text) {
                assert_int_equal(strlen(r->text), r->text_len);
                rr->text = strdup(r->text);
                rr->text_len = r->text_len;
        }
        if (cur->free_in_reply)
                cur->q = qmp_free(q);
}

static const struct qmp_config base_cfg = {.on_ready = on_ready, .on_event = on_event, .on_close = on_close};

static struct fx *fx_new(size_t max_line)
{
        struct fx *f = calloc(1, sizeof(*f));
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        struct qmp_config cfg = base_cfg;
        cfg.userdata = f;
        cfg.max_line = max_line;
        assert_int_equal(qmp_new_fd(sv[0], &cfg, &f->q), 0);
        f->peer = sv[1];
        cur = f;
        return f;
}

static void fx_free(struct fx *f)
{
        qmp_free(f->q);
        if (f->peer >= 0)
                close(f->peer);
        for (int i = 0; i < MAX_REC; i++)
                free(f->reply[i].text);
        free(f);
        cur = NULL;
}

static void peer_send_len(struct fx *f, const char *s, size_t len)
{
        while (len) {
                ssize_t n = write(f->peer, s, len);
                assert_true(n > 0);
                s += n;
                len -= (size_t)n;
        }
}

static void peer_send(struct fx *f, const char *s)
{
        peer_send_len(f, s, strlen(s));
}

/* Lets the client do whatever the socket allows right now. */
static int pump(struct fx *f)
{
        return qmp_process(f->q, POLLIN | POLLOUT);
}

/* Next line the client sent, or NULL if none is complete. */
static struct json_object *peer_take(struct fx *f)
{
        for (;;) {
                char *nl = memchr(f->inbuf, '\n', f->inlen);
                if (nl) {
                        size_t l = (size_t)(nl - f->inbuf) + 1;
                        char line[4096];
                        assert_true(l < sizeof(line));
                        memcpy(line, f->inbuf, l);
                        line[l] = 0;
                        memmove(f->inbuf, f->inbuf + l, f->inlen - l);
                        f->inlen -= l;
                        struct json_object *o = json_tokener_parse(line);
                        assert_non_null(o);
                        return o;
                }
                ssize_t n = recv(f->peer, f->inbuf + f->inlen, sizeof(f->inbuf) - f->inlen, MSG_DONTWAIT);
                if (n <= 0)
                        return NULL;
                f->inlen += (size_t)n;
        }
}

/* Takes the next command, checks its name, returns its id. */
static int64_t peer_expect(struct fx *f, const char *execute)
{
        struct json_object *o = peer_take(f), *v;
        assert_non_null(o);
        assert_true(json_object_object_get_ex(o, "execute", &v));
        assert_string_equal(json_object_get_string(v), execute);
        assert_true(json_object_object_get_ex(o, "id", &v));
        int64_t id = json_object_get_int64(v);
        json_object_put(o);
        return id;
}

static void peer_reply(struct fx *f, int64_t id, const char *ret_json)
{
        char s[512];
        snprintf(s, sizeof(s), "{\"return\": %s, \"id\": %lld}\r\n", ret_json, (long long)id);
        peer_send(f, s);
}

/* Greeting + capabilities: leaves the client READY. */
static void handshake(struct fx *f)
{
        peer_send(f, GREETING);
        assert_int_equal(pump(f), 0);
        assert_int_equal(qmp_get_state(f->q), QMP_STATE_NEGOTIATING);
        int64_t id = peer_expect(f, "qmp_capabilities");
        peer_reply(f, id, "{}");
        assert_int_equal(pump(f), 0);
        assert_int_equal(qmp_get_state(f->q), QMP_STATE_READY);
        assert_int_equal(f->n_ready, 1);
}

static void test_greeting_negotiation(void **state)
{
        struct fx *f = fx_new(0);
        assert_int_equal(qmp_get_state(f->q), QMP_STATE_GREETING);
        assert_null(qmp_greeting(f->q));
        assert_int_equal(qmp_poll_mask(f->q), POLLIN);
        handshake(f);
        struct json_object *g = qmp_greeting(f->q), *v;
        assert_non_null(g);
        assert_true(json_object_object_get_ex(g, "QMP", &v));
        assert_false(qmp_want_write(f->q));
        assert_int_equal(f->n_close, 0);
        fx_free(f);
}

static void test_event_before_caps_reply(void **state)
{
        struct fx *f = fx_new(0);
        /* An event before the greeting too: accepted in every state. */
        peer_send(f, "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"EARLY\"}\r\n");
        peer_send(f, GREETING);
        assert_int_equal(pump(f), 0);
        int64_t id = peer_expect(f, "qmp_capabilities");
        peer_send(f, "{\"timestamp\": {\"seconds\": 1700000000, \"microseconds\": 123456}, \"event\": "
                     "\"RESUME\"}\r\n");
        peer_reply(f, id, "{}");
        assert_int_equal(pump(f), 0);
        assert_int_equal(qmp_get_state(f->q), QMP_STATE_READY);
        assert_int_equal(f->n_events, 2);
        assert_string_equal(f->ev_name[0], "EARLY");
        assert_int_equal(f->ev_state[0], QMP_STATE_GREETING);
        assert_string_equal(f->ev_name[1], "RESUME");
        assert_int_equal(f->ev_state[1], QMP_STATE_NEGOTIATING);
        assert_int_equal(f->ev_sec[1], 1700000000);
        assert_int_equal(f->ev_usec[1], 123456);
        assert_string_equal(f->ev_data[1], "");
        /* Ready-state event with data. */
        peer_send(f, "{\"event\": \"STOP\", \"data\": {\"reason\": \"x\"}}\r\n");
        assert_int_equal(pump(f), 0);
        assert_int_equal(f->n_events, 3);
        assert_string_equal(f->ev_data[2], "{\"reason\":\"x\"}");
        assert_int_equal(f->ev_sec[2], -1);
        fx_free(f);
}

static void test_queued_before_ready(void **state)
{
        struct fx *f = fx_new(0);
        uint64_t id1, id2;
        assert_int_equal(qmp_execute(f->q, "query-status", NULL, on_reply, (void *)0, &id1), 0);
        assert_int_equal(qmp_hmp(f->q, "info version", on_reply, (void *)1, &id2), 0);
        assert_int_equal(pump(f), 0);
        assert_null(peer_take(f)); /* nothing goes out before the greeting */
        peer_send(f, GREETING);
        assert_int_equal(pump(f), 0);
        int64_t caps = peer_expect(f, "qmp_capabilities");
        assert_null(peer_take(f)); /* nor before the capabilities reply */
        peer_reply(f, caps, "{}");
        assert_int_equal(pump(f), 0);
        assert_int_equal(peer_expect(f, "query-status"), (int64_t)id1);
        assert_int_equal(peer_expect(f, "human-monitor-command"), (int64_t)id2);
        peer_reply(f, (int64_t)id1, "{\"status\": \"running\", \"running\": true}");
        assert_int_equal(pump(f), 0);
        assert_int_equal(f->reply[0].error, 1);
        assert_string_equal(f->reply[0].value, "{\"status\":\"running\",\"running\":true}");
        fx_free(f);
}

static void test_out_of_order_and_unknown_id(void **state)
{
        struct fx *f = fx_new(0);
        handshake(f);
        uint64_t id[3];
        for (intptr_t i = 0; i < 3; i++)
                assert_int_equal(qmp_execute(f->q, "query-status", NULL, on_reply, (void *)i, &id[i]), 0);
        for (int i = 0; i < 3; i++)
                assert_int_equal(peer_expect(f, "query-status"), (int64_t)id[i]);
        peer_reply(f, (int64_t)id[2], "30");
        peer_reply(f, 999999, "\"unknown\"");                                                /* dropped */
        peer_send(f, "{\"return\": 5, \"id\": \"a-string-id\"}\r\n");                        /* dropped */
        peer_send(f, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"no id\"}}\r\n"); /* dropped */
        peer_send(f, "{\"future-kind\": true}\r\n");                                         /* ignored */
        peer_reply(f, (int64_t)id[0], "10");
        assert_int_equal(pump(f), 0);
        assert_string_equal(f->reply[2].value, "30");
        assert_string_equal(f->reply[0].value, "10");
        assert_int_equal(f->reply[1].error, 0); /* not answered yet */
        peer_reply(f, (int64_t)id[1], "20");
        peer_reply(f, (int64_t)id[1], "21"); /* duplicate: now unknown */
        assert_int_equal(pump(f), 0);
        assert_string_equal(f->reply[1].value, "20");
        assert_int_equal(f->n_close, 0);
        assert_int_equal(qmp_get_state(f->q), QMP_STATE_READY);
        fx_free(f);
}

static void test_error_reply(void **state)
{
        struct fx *f = fx_new(0);
        handshake(f);
        uint64_t id;
        struct json_object *args = json_object_new_object();
        json_object_object_add(args, "bogus", json_object_new_int(1));
        assert_int_equal(qmp_execute(f->q, "stop", args, on_reply, (void *)0, &id), 0);
        json_object_put(args);
        struct json_object *o = peer_take(f), *v, *a;
        assert_true(json_object_object_get_ex(o, "arguments", &a));
        assert_true(json_object_object_get_ex(a, "bogus", &v));
        json_object_put(o);
        char s[256];
        snprintf(s, sizeof(s),
                 "{\"id\": %llu, \"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter 'bogus' is "
                 "unexpected\"}}\r\n",
                 (unsigned long long)id);
        peer_send(f, s);
        assert_int_equal(pump(f), 0);
        assert_int_equal(f->reply[0].error, -EREMOTEIO);
        assert_string_equal(f->reply[0].cls, "GenericError");
        assert_string_equal(f->reply[0].reason, "Parameter 'bogus' is unexpected");
        assert_int_equal(qmp_get_state(f->q), QMP_STATE_READY);
        fx_free(f);
}

static void test_caps_error_closes(void **state)
{
        struct fx *f = fx_new(0);
        assert_int_equal(qmp_execute(f->q, "query-status", NULL, on_reply, (void *)0, NULL), 0);
        peer_send(f, GREETING);
        assert_int_equal(pump(f), 0);
        int64_t id = peer_expect(f, "qmp_capabilities");
        char s[256];
        snprintf(s, sizeof(s),
                 "{\"error\": {\"class\": \"GenericError\", \"desc\": \"nope\"}, \"id\": %lld}\r\n",
                 (long long)id);
        peer_send(f, s);
        assert_int_equal(pump(f), -EPROTO);
        assert_int_equal(f->n_close, 1);
        assert_int_equal(f->close_err, -EPROTO);
        assert_non_null(strstr(f->close_reason, "nope"));
        assert_int_equal(f->reply[0].error, -EPROTO); /* queued command failed with the close */
        assert_int_equal(qmp_fd(f->q), -1);
        assert_int_equal(qmp_poll_mask(f->q), 0);
        assert_int_equal(qmp_execute(f->q, "x", NULL, NULL, NULL, NULL), -EPIPE);
        fx_free(f);
}

static void test_partial_lines(void **state)
{
        struct fx *f = fx_new(0);
        const char *g = GREETING;
        for (size_t i = 0; g[i]; i++) {
                assert_int_equal(qmp_get_state(f->q), QMP_STATE_GREETING);
                peer_send_len(f, g + i, 1);
                assert_int_equal(pump(f), 0);
        }
        assert_int_equal(qmp_get_state(f->q), QMP_STATE_NEGOTIATING);
        int64_t id = peer_expect(f, "qmp_capabilities");
        /* Reply split mid-token, event glued to the reply's tail in one read. */
        char s[256];
        snprintf(s, sizeof(s), "{\"return\": {}, \"id\": %lld}\r\n{\"event\": \"STOP\"}\r\n{\"eve",
                 (long long)id);
        size_t cut = 7;
        peer_send_len(f, s, cut);
        assert_int_equal(pump(f), 0);
        assert_int_equal(qmp_get_state(f->q), QMP_STATE_NEGOTIATING);
        peer_send(f, s + cut);
        assert_int_equal(pump(f), 0);
        assert_int_equal(qmp_get_state(f->q), QMP_STATE_READY);
        assert_int_equal(f->n_events, 1);
        peer_send(f, "nt\": \"RESUME\"}\r");
        assert_int_equal(pump(f), 0);
        assert_int_equal(f->n_events, 1);
        peer_send(f, "\n\r\n\n");
        assert_int_equal(pump(f), 0);
        assert_int_equal(f->n_events, 2);
        assert_string_equal(f->ev_name[1], "RESUME");
        assert_int_equal(f->n_close, 0);
        fx_free(f);
}

static void test_oversize_line_small_cap(void **state)
{
        enum { CAP = 200 };
        assert_true(strlen(GREETING) - 2 <= CAP);
        struct fx *f = fx_new(CAP);
        handshake(f);
        assert_int_equal(qmp_execute(f->q, "query-status", NULL, on_reply, (void *)0, NULL), 0);
        /* Exactly at the cap (newline excluded) is fine. */
        char line[CAP + 8];
        memset(line, ' ', sizeof(line));
        const char *ev = "{\"event\":\"X\"}";
        memcpy(line, ev, strlen(ev));
        line[CAP] = '\n';
        peer_send_len(f, line, CAP + 1);
        assert_int_equal(pump(f), 0);
        assert_int_equal(f->n_events, 1);
        /* One byte more, no newline yet: closed without waiting for the end. */
        memset(line, ' ', CAP + 1);
        peer_send_len(f, line, CAP + 1);
        assert_int_equal(pump(f), -EMSGSIZE);
        assert_int_equal(f->close_err, -EMSGSIZE);
        assert_non_null(strstr(f->close_reason, "limit"));
        assert_int_equal(f->reply[0].error, -EMSGSIZE);
        assert_non_null(strstr(f->reply[0].reason, "limit"));
        fx_free(f);
}

struct writer {
        int fd;
        size_t len;
};

static void *writer_main(void *arg)
{
        struct writer *w = arg;
        char chunk[65536];
        memset(chunk, 'a', sizeof(chunk));
        memcpy(chunk, "{\"return\": \"", 12);
        size_t left = w->len;
        while (left) {
                size_t n = left < sizeof(chunk) ? left : sizeof(chunk);
                ssize_t k = write(w->fd, chunk, n);
                if (k <= 0)
                        break; /* the client closed on us: expected */
                left -= (size_t)k;
                memset(chunk, 'a', 12);
        }
        return NULL;
}

static void test_oversize_line_default_cap(void **state)
{
        struct fx *f = fx_new(0);
        handshake(f);
        struct writer w = {.fd = f->peer, .len = QMP_MAX_LINE_DEFAULT + 4096};
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, writer_main, &w), 0);
        int r = 0;
        while (r == 0)
                r = qmp_pump(f->q, 10000);
        assert_int_equal(r, -EMSGSIZE);
        assert_int_equal(f->close_err, -EMSGSIZE);
        /* Unblock the writer: the client side is closed, so writes fail. */
        shutdown(f->peer, SHUT_RDWR);
        pthread_join(t, NULL);
        fx_free(f);
}

struct blob_writer {
        int fd;
        const char *data;
        size_t len;
};

static void *blob_writer_main(void *arg)
{
        struct blob_writer *w = arg;
        for (size_t off = 0; off < w->len;) {
                ssize_t k = write(w->fd, w->data + off, w->len - off);
                if (k <= 0)
                        break;
                off += (size_t)k;
        }
        return NULL;
}

/* A multi-MiB HMP reply (below the cap) arrives in many reads and is whole. */
static void test_big_reply(void **state)
{
        struct fx *f = fx_new(0);
        handshake(f);
        uint64_t id;
        assert_int_equal(qmp_hmp(f->q, "info mtree -f", on_reply, (void *)0, &id), 0);
        enum { LINES = 400000 };
        size_t cap = 64 + (size_t)LINES * 8;
        char *msg = malloc(cap);
        size_t n = (size_t)snprintf(msg, cap, "{\"return\": \"");
        for (int i = 0; i < LINES; i++) {
                memcpy(msg + n, "abc\\r\\n", 7);
                n += 7;
        }
        n += (size_t)snprintf(msg + n, cap - n, "\", \"id\": %llu}\r\n", (unsigned long long)id);
        struct blob_writer w = {.fd = f->peer, .data = msg, .len = n};
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, blob_writer_main, &w), 0);
        while (f->reply[0].error == 0)
                assert_int_equal(qmp_pump(f->q, 10000), 0);
        pthread_join(t, NULL);
        assert_int_equal(f->reply[0].error, 1);
        assert_int_equal(f->reply[0].text_len, (size_t)LINES * 4);
        assert_memory_equal(f->reply[0].text, "abc\nabc\n", 8);
        assert_null(strchr(f->reply[0].text, '\r'));
        /* Still usable afterwards. */
        peer_send(f, "{\"event\": \"AFTER\"}\r\n");
        assert_int_equal(pump(f), 0);
        assert_int_equal(f->n_events, 1);
        free(msg);
        fx_free(f);
}

static void test_garbage(void **state)
{
        static const char *bad[] = {
            "this is not json\r\n",
            "[1, 2, 3]\r\n",
            "42\r\n",
            "\"str\"\r\n",
            "{\"return\": {}} {\"return\": {}}\r\n",
            "{\"return\": \xff\xfe}\r\n",
            "{\"event\": 5}\r\n",
            "{\"error\": \"not an object\", \"id\": 1}\r\n",
            "{\"a\": {\"b\": \r\n",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                struct fx *f = fx_new(0);
                handshake(f);
                assert_int_equal(qmp_execute(f->q, "query-status", NULL, on_reply, (void *)0, NULL), 0);
                assert_int_equal(qmp_hmp(f->q, "info mtree", on_reply, (void *)1, NULL), 0);
                peer_send(f, bad[i]);
                assert_int_equal(pump(f), -EPROTO);
                assert_int_equal(f->n_close, 1);
                assert_int_equal(f->close_err, -EPROTO);
                assert_true(strlen(f->close_reason) > 0);
                assert_int_equal(f->reply[0].error, -EPROTO);
                assert_int_equal(f->reply[1].error, -EPROTO);
                assert_string_equal(f->reply[1].reason, f->close_reason);
                /* Nothing after the close is looked at. */
                assert_int_equal(pump(f), -EPROTO);
                assert_int_equal(f->n_close, 1);
                fx_free(f);
        }
}

static void test_second_greeting(void **state)
{
        struct fx *f = fx_new(0);
        handshake(f);
        peer_send(f, GREETING);
        assert_int_equal(pump(f), -EPROTO);
        assert_non_null(strstr(f->close_reason, "greeting"));
        fx_free(f);
}

static void test_eof_mid_line(void **state)
{
        struct fx *f = fx_new(0);
        handshake(f);
        assert_int_equal(qmp_execute(f->q, "query-status", NULL, on_reply, (void *)0, NULL), 0);
        json_object_put(peer_take(f));
        peer_send(f, "{\"return\": {\"status\": \"runn");
        close(f->peer);
        f->peer = -1;
        assert_int_equal(pump(f), -EPIPE);
        assert_int_equal(f->n_close, 1);
        assert_int_equal(f->close_err, -EPIPE);
        assert_non_null(strstr(f->close_reason, "mid-line"));
        assert_int_equal(f->reply[0].error, -EPIPE);
        fx_free(f);
}

static void test_eof_clean(void **state)
{
        struct fx *f = fx_new(0);
        handshake(f);
        f->free_in_close = true; /* the owner frees in on_close: reclaimed after process */
        shutdown(f->peer, SHUT_WR);
        assert_int_equal(pump(f), -ECANCELED);
        assert_null(f->q);
        assert_int_equal(f->close_err, -EPIPE);
        assert_null(strstr(f->close_reason, "mid-line"));
        fx_free(f);
}

static void test_connreset(void **state)
{
        struct fx *f = fx_new(0);
        peer_send(f, GREETING);
        assert_int_equal(pump(f), 0); /* client sent qmp_capabilities, peer never reads it */
        close(f->peer);               /* unread data: the client sees ECONNRESET */
        f->peer = -1;
        int r = pump(f);
        assert_true(r == -ECONNRESET || r == -EPIPE);
        assert_int_equal(f->close_err, r);
        fx_free(f);
}

static void test_free_in_reply_and_pending_cancel(void **state)
{
        struct fx *f = fx_new(0);
        handshake(f);
        uint64_t id0;
        assert_int_equal(qmp_execute(f->q, "a", NULL, on_reply, (void *)0, &id0), 0);
        assert_int_equal(qmp_execute(f->q, "b", NULL, on_reply, (void *)1, NULL), 0);
        f->free_in_reply = true;
        peer_reply(f, (int64_t)id0, "{}");
        peer_send(f, "{\"event\": \"LATE\"}\r\n");
        assert_int_equal(pump(f), -ECANCELED);
        assert_null(f->q);
        assert_int_equal(f->reply[0].error, 1);
        assert_int_equal(f->reply[1].error, -ECANCELED);
        assert_int_equal(f->n_close, 0);  /* owner-initiated: no on_close */
        assert_int_equal(f->n_events, 0); /* nothing dispatched after the free */
        fx_free(f);

        f = fx_new(0);
        assert_int_equal(qmp_execute(f->q, "a", NULL, on_reply, (void *)0, NULL), 0);
        f->q = qmp_free(f->q);
        assert_int_equal(f->reply[0].error, -ECANCELED);
        fx_free(f);
}

static void test_hmp_text(void **state)
{
        struct fx *f = fx_new(0);
        handshake(f);
        uint64_t id;
        assert_int_equal(qmp_hmp(f->q, "info mtree -f", on_reply, (void *)0, &id), 0);
        struct json_object *o = peer_take(f), *a, *v;
        assert_true(json_object_object_get_ex(o, "arguments", &a));
        assert_true(json_object_object_get_ex(a, "command-line", &v));
        assert_string_equal(json_object_get_string(v), "info mtree -f");
        json_object_put(o);
        char s[512];
        snprintf(
            s, sizeof(s),
            "{\"return\": \"FlatView #0\\r\\n AS \\\"memory\\\", root: system\\r\\n  "
            "0000000000000000-000000000009ffff (prio 0, ram): pc.ram\\r\\n\\ttab\\u00e9 lone\\rcr\\r\\n\", "
            "\"id\": %llu}\r\n",
            (unsigned long long)id);
        peer_send(f, s);
        assert_int_equal(pump(f), 0);
        assert_int_equal(f->reply[0].error, 1);
        assert_string_equal(f->reply[0].text, "FlatView #0\n AS \"memory\", root: system\n  "
                                              "0000000000000000-000000000009ffff (prio 0, ram): pc.ram\n"
                                              "\ttab\xc3\xa9 lone\rcr\n");
        /* Empty reply and a non-string reply. */
        assert_int_equal(qmp_hmp(f->q, "stop", on_reply, (void *)1, &id), 0);
        peer_reply(f, (int64_t)id, "\"\"");
        assert_int_equal(qmp_hmp(f->q, "x", on_reply, (void *)2, &id), 0);
        peer_reply(f, (int64_t)id, "{}");
        assert_int_equal(pump(f), 0);
        assert_int_equal(f->reply[1].error, 1);
        assert_string_equal(f->reply[1].text, "");
        assert_int_equal(f->reply[2].error, -EPROTO);
        assert_null(f->reply[2].text);
        assert_int_equal(qmp_get_state(f->q), QMP_STATE_READY);
        fx_free(f);
}

static void make_path(char *buf, size_t len, const char *tag)
{
        snprintf(buf, len, "/tmp/vmsig-test-qmp-%d-%s.sock", (int)getpid(), tag);
        unlink(buf);
}

static void test_connect_errors(void **state)
{
        char path[108];
        struct qmp *q = NULL;
        make_path(path, sizeof(path), "missing");
        assert_int_equal(qmp_new(path, &base_cfg, &q), -ENOENT);
        assert_null(q);

        /* Bound but not listening (a stale socket file): refused. */
        make_path(path, sizeof(path), "stale");
        int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(qmp_new(path, &base_cfg, &q), -ECONNREFUSED);
        close(s);
        unlink(path);

        char longp[200];
        memset(longp, 'x', sizeof(longp) - 1);
        longp[sizeof(longp) - 1] = 0;
        assert_int_equal(qmp_new(longp, &base_cfg, &q), -ENAMETOOLONG);
        char reason[128];
        char *text = NULL;
        make_path(path, sizeof(path), "missing2");
        assert_int_equal(qmp_sync_hmp(path, "info version", 1000, &text, reason, sizeof(reason)), -ENOENT);
        assert_non_null(strstr(reason, "connect"));
}

/* A scripted server on a listening socket for the blocking helpers. */
struct server {
        int lfd;
        const char *reply_head; /* the reply up to its id: the server appends `, "id": N}` */
        bool hang;              /* never answer the command */
};

static void *server_main(void *arg)
{
        struct server *sv = arg;
        int c = accept4(sv->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0)
                return NULL;
        struct fx f = {.peer = c};
        peer_send(&f, GREETING);
        for (int step = 0; step < 2; step++) {
                struct json_object *o;
                while (!(o = peer_take(&f))) {
                        struct pollfd p = {.fd = c, .events = POLLIN};
                        if (poll(&p, 1, 5000) <= 0)
                                goto out;
                        char b;
                        if (recv(c, &b, 1, MSG_PEEK) <= 0)
                                goto out;
                }
                struct json_object *v;
                json_object_object_get_ex(o, "id", &v);
                long long id = json_object_get_int64(v);
                json_object_put(o);
                char s[1024];
                if (step == 0) {
                        snprintf(s, sizeof(s), "{\"return\": {}, \"id\": %lld}\r\n", id);
                } else {
                        if (sv->hang) {
                                struct pollfd p = {.fd = c, .events = POLLIN};
                                poll(&p, 1, 5000); /* until the client gives up */
                                goto out;
                        }
                        snprintf(s, sizeof(s), "%s, \"id\": %lld}\r\n", sv->reply_head, id);
                }
                peer_send(&f, s);
        }
out:
        close(c);
        return NULL;
}

static void run_server(struct server *sv, const char *path, pthread_t *t)
{
        sv->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        assert_int_equal(bind(sv->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(listen(sv->lfd, 1), 0);
        assert_int_equal(pthread_create(t, NULL, server_main, sv), 0);
}

static void stop_server(struct server *sv, const char *path, pthread_t t)
{
        pthread_join(t, NULL);
        close(sv->lfd);
        unlink(path);
}

static void test_sync_helpers(void **state)
{
        char path[108], reason[256];
        pthread_t t;
        make_path(path, sizeof(path), "sync");

        struct server sv = {.reply_head = "{\"event\": \"X\"}\r\n{\"return\": \"line1\\r\\nline2\\r\\n\""};
        run_server(&sv, path, &t);
        char *text = NULL;
        assert_int_equal(qmp_sync_hmp(path, "info version", 5000, &text, reason, sizeof(reason)), 0);
        assert_string_equal(text, "line1\nline2\n");
        assert_string_equal(reason, "");
        free(text);
        stop_server(&sv, path, t);

        sv = (struct server){.reply_head = "{\"return\": {\"running\": true, \"status\": \"running\"}"};
        run_server(&sv, path, &t);
        struct json_object *v = NULL, *m;
        assert_int_equal(qmp_sync_execute(path, "query-status", NULL, 5000, &v, reason, sizeof(reason)), 0);
        assert_true(json_object_object_get_ex(v, "status", &m));
        assert_string_equal(json_object_get_string(m), "running");
        json_object_put(v);
        stop_server(&sv, path, t);

        sv = (struct server){.reply_head =
                                 "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command "
                                 "nope has not been found\"}"};
        run_server(&sv, path, &t);
        v = NULL;
        assert_int_equal(qmp_sync_execute(path, "nope", NULL, 5000, &v, reason, sizeof(reason)), -EREMOTEIO);
        assert_null(v);
        assert_non_null(strstr(reason, "not been found"));
        stop_server(&sv, path, t);

        sv = (struct server){.hang = true};
        run_server(&sv, path, &t);
        assert_int_equal(qmp_sync_execute(path, "query-status", NULL, 200, &v, reason, sizeof(reason)),
                         -ETIMEDOUT);
        assert_non_null(strstr(reason, "200 ms"));
        stop_server(&sv, path, t);
}

static void test_feed(void **state)
{
        struct fx *f = fx_new(0);
        assert_int_equal(qmp_feed(f->q, GREETING, strlen(GREETING)), 0);
        int64_t id = peer_expect(f, "qmp_capabilities");
        char s[128];
        int n =
            snprintf(s, sizeof(s), "{\"return\": {}, \"id\": %lld}\r\n{\"event\":\"E\"}\r\n", (long long)id);
        assert_int_equal(qmp_feed(f->q, s, (size_t)n), 0);
        assert_int_equal(qmp_get_state(f->q), QMP_STATE_READY);
        assert_int_equal(f->n_events, 1);
        assert_int_equal(qmp_feed(f->q, "}", 1), 0);
        assert_int_equal(qmp_feed(f->q, "\n", 1), -EPROTO);
        fx_free(f);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_greeting_negotiation),
            cmocka_unit_test(test_event_before_caps_reply),
            cmocka_unit_test(test_queued_before_ready),
            cmocka_unit_test(test_out_of_order_and_unknown_id),
            cmocka_unit_test(test_error_reply),
            cmocka_unit_test(test_caps_error_closes),
            cmocka_unit_test(test_partial_lines),
            cmocka_unit_test(test_oversize_line_small_cap),
            cmocka_unit_test(test_oversize_line_default_cap),
            cmocka_unit_test(test_big_reply),
            cmocka_unit_test(test_garbage),
            cmocka_unit_test(test_second_greeting),
            cmocka_unit_test(test_eof_mid_line),
            cmocka_unit_test(test_eof_clean),
            cmocka_unit_test(test_connreset),
            cmocka_unit_test(test_free_in_reply_and_pending_cancel),
            cmocka_unit_test(test_hmp_text),
            cmocka_unit_test(test_connect_errors),
            cmocka_unit_test(test_sync_helpers),
            cmocka_unit_test(test_feed),
        };
        return cmocka_run_group_tests_name("qmp", tests, NULL, NULL);
}
