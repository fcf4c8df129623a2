/* SPDX-License-Identifier: MIT */
/* vmconn deadlines against a scripted QMP peer on a real unix socket.
 * The peer answers qmp_capabilities and the liveness probe (query-status)
 * and leaves the test's own commands ("test-*") unanswered unless told.
 *  - one command at a time: a command queued behind an unanswered one is
 *    dropped at its deadline (-ETIMEDOUT) and never written, the written one
 *    is "outcome unknown" (-EINPROGRESS) and its late reply is discarded;
 *  - admit runs right before the write and can cancel;
 *  - detach answers a listener's commands, fire-and-forget ones still go;
 *  - a silent peer times out the handshake: one DIAG, then a retry. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <vmsig/event.h>

#include "adapters/vmconn.h"

/* ---- a fake sink: remembers watched fds, records emitted events ---- */

struct fake {
        struct vmsig_emit_sink sink;
        struct vmsig_fd_reg regs[8];
        unsigned nregs;
        unsigned diags;
        char last_diag[VMSIG_MSG_MAX];
};

static int f_emit(const struct vmsig_emit_sink *s, const struct vmsig_event *ev)
{
        struct fake *f = (struct fake *)s;
        struct vmsig_diag_body d;

        if (ev->hdr.kind == VMSIG_EV_DIAG) {
                memcpy(&d, ev->body, sizeof(d));
                f->diags++;
                snprintf(f->last_diag, sizeof(f->last_diag), "%s", d.msg);
        }
        return 0;
}

static int f_watch(const struct vmsig_emit_sink *s, const struct vmsig_fd_reg *reg)
{
        struct fake *f = (struct fake *)s;

        if (f->nregs == 8)
                return -ENOSPC;
        f->regs[f->nregs++] = *reg;
        return 0;
}

static int f_unwatch(const struct vmsig_emit_sink *s, int fd)
{
        struct fake *f = (struct fake *)s;

        for (unsigned i = 0; i < f->nregs; i++)
                if (f->regs[i].fd == fd) {
                        f->regs[i] = f->regs[--f->nregs];
                        return 0;
                }
        return -ENOENT;
}

/* ---- the scripted peer ---- */

struct peer {
        char path[108];
        int lfd, fd;
        unsigned accepts;
        bool silent;     /* say nothing at all */
        bool answer_all; /* answer test-* too */
        char seen[4096]; /* every line received */
        char in[4096];
        size_t inlen;
};

static struct peer P;
static struct fake F[2];
static struct vmconn_listener L[2];

struct result {
        bool done;
        int err;
        char reason[256];
};

static void on_reply(struct vmconn_listener *l, const struct qmp_reply *r, void *ud)
{
        struct result *res = ud;
        (void)l;
        assert_false(res->done); /* exactly once */
        res->done = true;
        res->err = r->error;
        snprintf(res->reason, sizeof(res->reason), "%s", r->reason ? r->reason : "");
}

static void l_ready(struct vmconn_listener *l)
{
        (void)l;
}
static void l_event(struct vmconn_listener *l, const struct qmp_event *ev)
{
        (void)l;
        (void)ev;
}
static int gone_err;
static void l_gone(struct vmconn_listener *l, int err, const char *reason)
{
        (void)l;
        (void)reason;
        gone_err = err;
}
static const struct vmconn_listener_ops lops = {.ready = l_ready, .event = l_event, .gone = l_gone};

static void peer_line(struct peer *p, const char *line)
{
        char out[256];
        const char *id = strstr(line, "\"id\":");
        long n = id ? strtol(id + 5, NULL, 10) : 0;

        strncat(p->seen, line, sizeof(p->seen) - strlen(p->seen) - 1);
        if (strstr(line, "qmp_capabilities"))
                snprintf(out, sizeof(out), "{\"return\": {}, \"id\": %ld}\r\n", n);
        else if (strstr(line, "query-status"))
                snprintf(out, sizeof(out),
                         "{\"return\": {\"status\": \"running\", \"running\": true}, \"id\": %ld}\r\n", n);
        else if (p->answer_all)
                snprintf(out, sizeof(out), "{\"return\": {}, \"id\": %ld}\r\n", n);
        else
                return;
        assert_true(write(p->fd, out, strlen(out)) > 0);
}

/* Answer a command the peer saw earlier (late). */
static void peer_answer_late(const char *name)
{
        const char *at = strstr(P.seen, name);
        const char *id = at ? strstr(at, "\"id\":") : NULL;
        char out[64];

        assert_non_null(id);
        snprintf(out, sizeof(out), "{\"return\": {}, \"id\": %ld}\r\n", strtol(id + 5, NULL, 10));
        assert_true(write(P.fd, out, strlen(out)) > 0);
}

/* One round: the peer's work and the session's readiness. */
static void step(int timeout_ms)
{
        struct pollfd pf[20];
        unsigned n = 0, map_l[20], map_r[20];

        pf[n++] = (struct pollfd){.fd = P.lfd, .events = POLLIN};
        if (P.fd >= 0)
                pf[n++] = (struct pollfd){.fd = P.fd, .events = POLLIN};
        unsigned base = n;
        for (unsigned k = 0; k < 2; k++)
                for (unsigned i = 0; i < F[k].nregs; i++) {
                        map_l[n] = k;
                        map_r[n] = i;
                        pf[n++] = (struct pollfd){.fd = F[k].regs[i].fd,
                                                  .events = (short)F[k].regs[i].epoll_events};
                }
        assert_true(poll(pf, n, timeout_ms) >= 0);
        if (pf[0].revents & POLLIN) {
                int fd = accept4(P.lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
                if (fd >= 0) {
                        if (P.fd >= 0)
                                close(P.fd);
                        P.fd = fd;
                        P.inlen = 0;
                        P.accepts++;
                        static const char greet[] = "{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n";
                        if (!P.silent)
                                assert_true(write(fd, greet, sizeof(greet) - 1) > 0);
                }
        }
        if (base > 1 && (pf[1].revents & (POLLIN | POLLHUP))) {
                ssize_t k = read(P.fd, P.in + P.inlen, sizeof(P.in) - 1 - P.inlen);
                if (k == 0) { /* the session gave up on us */
                        close(P.fd);
                        P.fd = -1;
                } else if (k > 0 && P.silent) {
                        P.inlen = 0;
                } else if (k > 0) {
                        P.inlen += (size_t)k;
                        char *nl;
                        while ((nl = memchr(P.in, '\n', P.inlen))) {
                                char line[1024];
                                size_t len = (size_t)(nl - P.in) + 1;
                                snprintf(line, sizeof(line), "%.*s", (int)len, P.in);
                                memmove(P.in, P.in + len, P.inlen - len);
                                P.inlen -= len;
                                peer_line(&P, line);
                        }
                }
        }
        for (unsigned i = base; i < n; i++) {
                if (!pf[i].revents)
                        continue;
                unsigned k = map_l[i], r = map_r[i];
                if (r < F[k].nregs && F[k].regs[r].fd == pf[i].fd)
                        (void)vmconn_on_readiness(&L[k], F[k].regs[r].cookie, (uint32_t)pf[i].revents);
        }
}

static bool run_until(bool *flag, int ms)
{
        for (int i = 0; i < ms / 10 && !*flag; i++)
                step(10);
        return *flag;
}

static int setup(void **state)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        (void)state;

        memset(&P, 0, sizeof(P));
        P.fd = -1;
        snprintf(P.path, sizeof(P.path), "/tmp/vmconn-test-%d.sock", (int)getpid());
        unlink(P.path);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", P.path);
        P.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (P.lfd < 0 || bind(P.lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(P.lfd, 4) < 0)
                return -1;
        for (int k = 0; k < 2; k++) {
                memset(&F[k], 0, sizeof(F[k]));
                F[k].sink =
                    (struct vmsig_emit_sink){.emit = f_emit, .watch_fd = f_watch, .unwatch_fd = f_unwatch};
                L[k] = (struct vmconn_listener){
                    .ops = &lops, .sink = &F[k].sink, .cookie_qmp = 1, .cookie_timer = 2, .timeout_ms = 300};
        }
        gone_err = 0;
        return 0;
}

static int teardown(void **state)
{
        (void)state;
        vmconn_detach(&L[0]);
        vmconn_detach(&L[1]);
        if (P.fd >= 0)
                close(P.fd);
        close(P.lfd);
        unlink(P.path);
        return 0;
}

static void attach_ready(const struct vmconn_opts *o)
{
        assert_int_equal(vmconn_attach(P.path, o, &L[0]), 0);
        for (int i = 0; i < 300 && vmconn_get_state(&L[0], NULL) != VMCONN_READY; i++)
                step(10);
        assert_int_equal(vmconn_get_state(&L[0], NULL), VMCONN_READY);
}

static void test_unsent_command_is_dropped_at_its_deadline(void **state)
{
        struct result a = {0}, b = {0}, c = {0};
        (void)state;

        attach_ready(NULL);
        assert_int_equal(vmconn_execute(&L[0], "test-a", NULL, on_reply, &a), 0);
        assert_int_equal(vmconn_execute(&L[0], "test-b", NULL, on_reply, &b), 0);
        assert_false(a.done); /* never inside the call */
        assert_true(run_until(&b.done, 3000));
        assert_true(a.done);
        assert_int_equal(a.err, -EINPROGRESS);
        assert_int_equal(b.err, -ETIMEDOUT);
        assert_non_null(strstr(b.reason, "not sent"));
        assert_non_null(strstr(P.seen, "test-a"));
        /* QEMU comes back: the late reply of a is dropped, b never goes out,
         * and the queue flows again */
        P.answer_all = true;
        peer_answer_late("test-a");
        assert_int_equal(vmconn_execute(&L[0], "test-c", NULL, on_reply, &c), 0);
        assert_true(run_until(&c.done, 3000));
        assert_int_equal(c.err, 0);
        assert_null(strstr(P.seen, "test-b"));
        assert_true(F[0].diags >= 1); /* "not answering", once per stall */
        assert_non_null(strstr(F[0].last_diag, "not answering"));
}

static int refuse(struct vmconn_listener *l, void *ud, char *why, size_t len)
{
        (void)l;
        (void)ud;
        snprintf(why, len, "issuer lost its lease");
        return -ECANCELED;
}

static void test_admit_cancels_before_the_write(void **state)
{
        struct result a = {0};
        (void)state;

        attach_ready(NULL);
        struct vmconn_cmd cmd = {.command = "test-refused", .timeout_ms = 1000, .admit = refuse};
        assert_int_equal(vmconn_submit(&L[0], &cmd, on_reply, &a), 0);
        assert_false(a.done);
        assert_true(run_until(&a.done, 2000));
        assert_int_equal(a.err, -ECANCELED);
        assert_string_equal(a.reason, "issuer lost its lease");
        for (int i = 0; i < 10; i++)
                step(10);
        assert_null(strstr(P.seen, "test-refused"));
}

static void test_detach_answers_and_fire_and_forget_still_goes(void **state)
{
        struct result a = {0}, b = {0};
        (void)state;

        attach_ready(NULL);
        assert_int_equal(vmconn_attach(P.path, NULL, &L[1]), 0);
        assert_int_equal(vmconn_execute(&L[0], "test-sent", NULL, on_reply, &a), 0);
        for (int i = 0; i < 20 && !strstr(P.seen, "test-sent"); i++)
                step(10);
        assert_non_null(strstr(P.seen, "test-sent"));
        assert_int_equal(vmconn_execute(&L[0], "test-queued", NULL, on_reply, &b), 0);
        assert_int_equal(vmconn_execute(&L[0], "test-release", NULL, NULL, NULL), 0);
        vmconn_detach(&L[0]);
        assert_true(a.done && b.done);
        assert_int_equal(a.err, -EINPROGRESS);
        assert_int_equal(b.err, -ECANCELED);
        /* the other listener keeps the session; once QEMU answers the
         * written one, the release goes out, the cancelled one never */
        P.answer_all = true;
        peer_answer_late("test-sent");
        for (int i = 0; i < 100 && !strstr(P.seen, "test-release"); i++)
                step(10);
        assert_non_null(strstr(P.seen, "test-release"));
        assert_null(strstr(P.seen, "test-queued"));
}

static void test_silent_peer_times_out_the_handshake_once(void **state)
{
        struct vmconn_opts o = {.retry_min_ms = 50, .retry_max_ms = 100, .handshake_ms = 200};
        (void)state;

        P.silent = true;
        snprintf(o.vm_name, sizeof(o.vm_name), "quiet");
        assert_int_equal(vmconn_attach(P.path, &o, &L[0]), 0);
        for (int i = 0; i < 300 && P.accepts < 3; i++)
                step(10);
        assert_true(P.accepts >= 3);
        assert_int_equal(gone_err, -ETIMEDOUT);
        assert_int_equal(F[0].diags, 1);
        assert_non_null(strstr(F[0].last_diag, "quiet"));
        assert_non_null(strstr(F[0].last_diag, P.path));
        assert_non_null(strstr(F[0].last_diag, "no QMP greeting"));
        assert_int_equal(vmconn_get_state(&L[0], NULL) == VMCONN_READY, false);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_unsent_command_is_dropped_at_its_deadline, setup, teardown),
            cmocka_unit_test_setup_teardown(test_admit_cancels_before_the_write, setup, teardown),
            cmocka_unit_test_setup_teardown(test_detach_answers_and_fire_and_forget_still_goes, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_silent_peer_times_out_the_handshake_once, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
