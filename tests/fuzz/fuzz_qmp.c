/* SPDX-License-Identifier: MIT */
/* Arbitrary bytes as the QEMU side of a QMP connection. The first byte picks
 * the read split size and the line cap, so the fuzzer also explores partial
 * lines and the oversize path; the rest goes through the receive path. Some
 * commands are queued first so that replies with ids 1..4 match. */
#include <json-c/json.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "host/qmp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct sink {
        unsigned replies, events, closes;
        size_t bytes;
};

static void on_reply(struct qmp *q, const struct qmp_reply *r, void *ud)
{
        struct sink *s = ud;
        s->replies++;
        if (r->text)
                s->bytes += strlen(r->text) + r->text_len;
        if (r->reason)
                s->bytes += strlen(r->reason);
        if (r->value)
                s->bytes += strlen(json_object_to_json_string(r->value));
        /* Replies may queue more work, as adapters do. */
        if (s->replies % 3 == 0)
                (void)qmp_execute(q, "query-status", NULL, on_reply, s, NULL);
}

static void on_event(struct qmp *q, const struct qmp_event *ev, void *ud)
{
        struct sink *s = ud;
        s->events++;
        s->bytes += strlen(ev->name);
        if (ev->data)
                s->bytes += strlen(json_object_to_json_string(ev->data));
}

static void on_close(struct qmp *q, int err, const char *reason, void *ud)
{
        struct sink *s = ud;
        s->closes++;
        s->bytes += strlen(reason);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct sink s = {0};
        struct qmp_config cfg = {.on_event = on_event, .on_close = on_close, .userdata = &s};
        size_t split = 0;
        if (size) {
                split = 1 + (data[0] & 0x3f) * 7;
                cfg.max_line = (data[0] & 0x40) ? 256 : 0;
                data++;
                size--;
        }
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                return 0;
        struct qmp *q;
        if (qmp_new_fd(sv[0], &cfg, &q) < 0) {
                close(sv[1]);
                return 0;
        }
        (void)qmp_execute(q, "query-status", NULL, on_reply, &s, NULL);
        (void)qmp_hmp(q, "info mtree -f", on_reply, &s, NULL);
        (void)qmp_execute(q, "stop", NULL, on_reply, &s, NULL);

        int r = 0;
        while (size && r == 0) {
                size_t n = split && split < size ? split : size;
                r = qmp_feed(q, data, n);
                data += n;
                size -= n;
        }
        /* Then the peer goes away: EOF handling with whatever is buffered. */
        if (r == 0) {
                close(sv[1]);
                sv[1] = -1;
                for (int i = 0; i < 4 && r == 0; i++)
                        r = qmp_process(q, POLLIN | POLLHUP);
        }
        qmp_free(q);
        if (sv[1] >= 0)
                close(sv[1]);
        return 0;
}
