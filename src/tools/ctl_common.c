/* SPDX-License-Identifier: MIT */
/* vmsigctl: what every command uses: escaping, messages and exit codes, the
 * connection to vmsigd and waiting for its answers. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tools/ctl_common.h"

static volatile sig_atomic_t interrupted;

const char *ctl_esc(const char *s, size_t max, bool as_json)
{
        static char bufs[4][VMSIG_MSG_MAX * 6 + 1];
        static unsigned next;
        char *b = bufs[next++ % 4];

        return vmsig_str_escape(s, max, as_json, b, sizeof(bufs[0]));
}

int ctl_fail(int code, const char *fmt, ...)
{
        va_list ap;

        fputs("vmsigctl: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return code;
}

int ctl_usage_error(const struct ctl *ctl)
{
        const struct ctl_command *cmd = ctl->cmd;
        const char *u = cmd->usage ? cmd->usage : cmd->args ? cmd->args : "";

        return ctl_fail(EXIT_USAGE, "usage: vmsigctl %s%s%s", cmd->name, *u ? " " : "", u);
}

/* The core answers -EPERM (capability, lease) and -EBUSY (lease held) for
 * authorization; anything else is the command itself failing. */
int ctl_exit_for(int32_t result)
{
        return result == -EPERM || result == -EBUSY ? EXIT_DENIED : EXIT_FAILED;
}

void ctl_print_event(const struct vmsig_event *ev, int fd, void *ud)
{
        const struct ctl *ctl = ud;
        char line[1024];

        if (fd >= 0)
                close(fd);
        if (ctl->json)
                puts(vmsig_event_format_json(ev, line, sizeof(line)));
        else
                puts(vmsig_event_format(ev, line, sizeof(line)));
        fflush(stdout);
}

static void on_signal(int sig)
{
        interrupted = 1;
}

void ctl_signals_install(void)
{
        struct sigaction sa = {.sa_handler = on_signal};

        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
}

int ctl_connect(struct ctl *ctl)
{
        struct vmsig_client *c;
        int r = vmsig_client_new(&c);

        if (r < 0)
                return ctl_fail(EXIT_CONNECT, "out of memory");
        r = vmsig_client_connect(c, ctl->socket_path, "vmsigctl", ctl->timeout_ms);
        if (r < 0) {
                const struct vmsig_client_error *e = vmsig_client_last_error(c);
                if (e->from_daemon)
                        ctl_fail(EXIT_CONNECT, "vmsigd refused the connection: %s", ESC(e->msg));
                else if (r == -ENOENT || r == -ECONNREFUSED)
                        ctl_fail(EXIT_CONNECT,
                                 "cannot connect to %s: %s (is vmsigd running? --socket or VMSIG_SOCKET)",
                                 ctl->socket_path, strerror(-r));
                else
                        ctl_fail(EXIT_CONNECT, "cannot connect to %s: %s", ctl->socket_path,
                                 e->msg[0] ? ESC(e->msg) : strerror(-r));
                vmsig_client_free(c);
                return EXIT_CONNECT;
        }
        ctl->client = c;
        return 0;
}

int ctl_connection_lost(const struct ctl *ctl, int r)
{
        const struct vmsig_client_error *e = vmsig_client_last_error(ctl->client);

        if (r == -ETIMEDOUT)
                return ctl_fail(EXIT_FAILED, "no answer from vmsigd within %d ms", ctl->timeout_ms);
        if (e->from_daemon)
                return ctl_fail(EXIT_CONNECT, "vmsigd closed the connection: %s", ESC(e->msg));
        return ctl_fail(EXIT_CONNECT, "connection to vmsigd lost: %s",
                        e->msg[0] ? ESC(e->msg) : strerror(-r));
}

int ctl_wait_for(struct ctl *ctl, struct ctl_waiter *w, int ms)
{
        for (;;) {
                struct vmsig_event ev;
                struct vmsig_client_reply rep;
                int fd = -1;
                int r = vmsig_client_recv_wait(ctl->client, &ev, &fd, &rep, ms);

                if (interrupted)
                        return -EINTR;
                if (r == -EAGAIN || r == -ETIMEDOUT)
                        return -ETIMEDOUT;
                if (r < 0)
                        return r;
                if (r == VMSIG_CLIENT_REPLY) {
                        if (w->want_reply && rep.corr == w->corr) {
                                w->reply = rep;
                                return 0;
                        }
                        continue;
                }
                if (!w->want_reply && ev.hdr.kind == VMSIG_EV_ACT_ACK && ev.hdr.corr == w->corr &&
                    ev.hdr.body_len == sizeof(w->ack)) {
                        memcpy(&w->ack, ev.body, sizeof(w->ack));
                        w->ack.msg[sizeof(w->ack.msg) - 1] = '\0';
                        if (fd >= 0)
                                close(fd);
                        return 0;
                }
                if (w->each)
                        w->each(&ev, fd, w->ud);
                else if (fd >= 0)
                        close(fd);
        }
}

int ctl_subscribe_sync(struct ctl *ctl, uint32_t ep, uint64_t kinds, struct ctl_waiter *w)
{
        int r = vmsig_client_subscribe(ctl->client, ep, kinds, &w->corr);

        if (r < 0)
                return r;
        w->want_reply = true;
        r = ctl_wait_for(ctl, w, ctl->timeout_ms);
        w->want_reply = false;
        if (r < 0)
                return r;
        return w->reply.result;
}

int ctl_send_and_wait(struct ctl *ctl, struct vmsig_event *ev, const void *payload, size_t len,
                      struct vmsig_ack_body *ret)
{
        struct ctl_waiter w = {0};
        /* a MEMWRITE source goes through the staging memfd from 64 KiB up
         * (protocol version 2), else as a tail */
        int r = !payload ? vmsig_client_send(ctl->client, ev, &w.corr)
                : ev->hdr.kind == VMSIG_EV_CMD_MEMWRITE
                    ? vmsig_client_memwrite(ctl->client, ev, payload, len, &w.corr)
                    : vmsig_client_send_payload(ctl->client, ev, payload, len, &w.corr);

        if (r < 0)
                return ctl_fail(EXIT_FAILED, "cannot send %s: %s", vmsig_kind_name(ev->hdr.kind),
                                strerror(-r));
        if (ev->hdr.flags & VMSIG_F_FF)
                return vmsig_client_flush(ctl->client, ctl->timeout_ms) < 0 ? ctl_connection_lost(ctl, -EPIPE)
                                                                            : 0;
        r = ctl_wait_for(ctl, &w, ctl->timeout_ms);
        if (r < 0)
                return ctl_connection_lost(ctl, r);
        *ret = w.ack;
        return 0;
}
