/* SPDX-License-Identifier: MIT */
/* The real vmhost adapter (vmsig_vmhost_ops) against a fuzzed QEMU: the
 * harness listens on a unix socket, the adapter connects to it through its
 * own vmconn session, and the input is a script of what QEMU does next:
 *
 *   op % 8: 0 greeting (reconnecting first if QEMU went away)
 *           1 raw bytes (next byte: length)
 *           2 a reply to the oldest command the adapter sent, from templates
 *             of QEMU 7.2's real replies (query-status with any RunState,
 *             {}, errors, malformed shapes)
 *           3 an event (lifecycle events as QEMU sends them, with and
 *             without data, data of the wrong type, foreign events)
 *           4 a CMD_POWER from a control (any op, maybe a bad body)
 *           5 a CMD_STATUS_QUERY (next byte 0xff: instead, time passes:
 *             the adapter's armed timers expire, e.g. a parked "on")
 *           6 QEMU hangs up
 *           7 a reply to the oldest command with fuzzed JSON as its value
 *
 * Everything runs on this thread, as the daemon's loop would: fds the
 * adapter watches are polled and their readiness handed to on_readiness().
 * Invariants (abort() on a miss): STATUS and ACK bodies are well-formed;
 * no command gets two ACKs or an ACK it did not ask for; once QEMU is gone,
 * every command the adapter accepted has had exactly one ACK, and none it
 * refused (the core answers those). */
#include <errno.h>
#include <json-c/json.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

#include <vmsig/adapter.h>
#include <vmsig/event.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_WATCH 16
#define MAX_CMDS  64
#define MAX_IDS   64
#define CRLF      "\r\n"

static const char greeting[] =
    "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}, "
    "\"package\": \"Debian 1:7.2+dfsg-7+deb12u18+b3\"}, \"capabilities\": "
    "[\"oob\"]}}" CRLF;

static const char *const run_states[] = {
    "running",  "paused", "shutdown", "prelaunch", "suspended",       "guest-panicked", "internal-error",
    "io-error", "debug",  "watchdog", "inmigrate", "postmigrate",     "finish-migrate", "restore-vm",
    "save-vm",  "colo",   "",         "RUNNING",   "running\\u0000x", "\\ud800",
};

static const char *const event_names[] = {
    "SHUTDOWN", "RESET",  "STOP",       "RESUME",         "POWERDOWN", "GUEST_PANICKED",
    "SUSPEND",  "WAKEUP", "RTC_CHANGE", "DEVICE_DELETED", "shutdown",  "",
};

static const char *const event_data[] = {
    "",
    ", \"data\": {\"guest\": false, \"reason\": \"host-qmp-system-reset\"}",
    ", \"data\": {\"guest\": true, \"reason\": \"guest-shutdown\"}",
    ", \"data\": {\"action\": \"pause\", \"info\": {\"type\": \"hyper-v\", \"arg1\": 0}}",
    ", \"data\": {\"reason\": 5, \"action\": null}",
    ", \"data\": \"not an object\"",
    ", \"data\": null",
};

struct watch {
        int fd;
        uint32_t events;
        enum vmsig_rdy_shape shape;
        uint64_t cookie;
};

struct cmd {
        uint64_t corr;
        bool accepted;
        unsigned acks;
        int result; /* of the ACK (test_fuzz_vmhost reads these) */
        char msg[VMSIG_MSG_MAX];
};

#define MAX_STATUS 64

static struct state {
        char dir[64], path[108];
        int listener;

        struct watch w[MAX_WATCH];
        unsigned nw;
        struct cmd cmds[MAX_CMDS];
        unsigned ncmds;
        uint8_t status[MAX_STATUS]; /* run states emitted, in order */
        unsigned nstatus;

        int qemu;       /* our end of the adapter's QMP connection, -1 when gone */
        char in[65536]; /* what the adapter sent, up to a newline */
        size_t in_len;
        int64_t ids[MAX_IDS]; /* commands waiting for a reply, oldest first */
        unsigned nids;
} S;

static void cleanup(void)
{
        if (S.path[0])
                unlink(S.path);
        if (S.dir[0])
                rmdir(S.dir);
}

static int setup(void)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};

        snprintf(S.dir, sizeof(S.dir), "/tmp/vmsig-fuzz-vmhost.XXXXXX");
        if (!mkdtemp(S.dir))
                return -1;
        snprintf(S.path, sizeof(S.path), "%s/qmp.sock", S.dir);
        atexit(cleanup);
        S.listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        memcpy(sa.sun_path, S.path, strlen(S.path));
        if (S.listener < 0 || bind(S.listener, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
            listen(S.listener, 8) < 0)
                return -1;
        return 0;
}

/* ---- the sink the core would be ---- */

static struct cmd *find_cmd(uint64_t corr)
{
        for (unsigned i = 0; i < S.ncmds; i++)
                if (S.cmds[i].corr == corr)
                        return &S.cmds[i];
        return NULL;
}

static int s_emit(const struct vmsig_emit_sink *sink, const struct vmsig_event *ev)
{
        if (ev->hdr.kind == VMSIG_EV_STATUS) {
                struct vmsig_status_body b;
                if (ev->hdr.body_len != sizeof(b))
                        abort();
                memcpy(&b, ev->body, sizeof(b));
                if (b.run_state > VMSIG_RUN_STARTING || !memchr(b.reason, 0, sizeof(b.reason)))
                        abort();
                if (ev->hdr.corr && !find_cmd(ev->hdr.corr))
                        abort();
                if (S.nstatus < MAX_STATUS)
                        S.status[S.nstatus++] = b.run_state;
        } else if (ev->hdr.kind == VMSIG_EV_ACT_ACK) {
                struct vmsig_ack_body b;
                memcpy(&b, ev->body, sizeof(b));
                struct cmd *c = find_cmd(ev->hdr.corr);
                if (!c || ++c->acks > 1 || !memchr(b.msg, 0, sizeof(b.msg)) || b.result > 0)
                        abort();
                c->result = b.result;
                memcpy(c->msg, b.msg, sizeof(c->msg));
        } else {
                abort(); /* vmhost emits nothing else */
        }
        return 0;
}

static int s_watch(const struct vmsig_emit_sink *sink, const struct vmsig_fd_reg *reg)
{
        if (S.nw == MAX_WATCH || reg->fd < 0)
                abort();
        for (unsigned i = 0; i < S.nw; i++)
                if (S.w[i].fd == reg->fd)
                        abort();
        S.w[S.nw++] = (struct watch){reg->fd, reg->epoll_events, reg->shape, reg->cookie};
        return 0;
}

static int s_unwatch(const struct vmsig_emit_sink *sink, int fd)
{
        for (unsigned i = 0; i < S.nw; i++) {
                if (S.w[i].fd == fd) {
                        S.w[i] = S.w[--S.nw];
                        return 0;
                }
        }
        abort(); /* never watched */
}

static const struct vmsig_emit_sink sink = {.emit = s_emit, .watch_fd = s_watch, .unwatch_fd = s_unwatch};

/* ---- the loop ---- */

/* Hand every ready fd to the adapter until nothing is ready (bounded). */
static void pump(const struct vmsig_adapter_ops *ops, void *inst)
{
        for (int round = 0; round < 32; round++) {
                struct pollfd p[MAX_WATCH];
                struct watch w[MAX_WATCH];
                unsigned n = S.nw;
                for (unsigned i = 0; i < n; i++) {
                        p[i] = (struct pollfd){.fd = S.w[i].fd, .events = (short)S.w[i].events};
                        w[i] = S.w[i];
                }
                if (poll(p, n, 0) <= 0)
                        return;
                for (unsigned i = 0; i < n; i++) {
                        if (!p[i].revents)
                                continue;
                        uint64_t count;
                        /* as the core does: the expiry count first */
                        if (w[i].shape != VMSIG_RDY_FD &&
                            read(w[i].fd, &count, sizeof(count)) != sizeof(count))
                                continue;
                        ops->on_readiness(inst, w[i].cookie, (uint32_t)p[i].revents);
                }
        }
}

/* Read what the adapter sent and queue the ids of its commands. */
static void read_commands(void)
{
        if (S.qemu < 0)
                return;
        for (;;) {
                ssize_t n = read(S.qemu, S.in + S.in_len, sizeof(S.in) - S.in_len);
                if (n <= 0)
                        break;
                S.in_len += (size_t)n;
                char *nl;
                while ((nl = memchr(S.in, '\n', S.in_len))) {
                        *nl = '\0';
                        struct json_object *o = json_tokener_parse(S.in), *id;
                        if (!o || !json_object_object_get_ex(o, "id", &id))
                                abort(); /* the client must send well-formed commands */
                        if (S.nids < MAX_IDS)
                                S.ids[S.nids++] = json_object_get_int64(id);
                        json_object_put(o);
                        size_t used = (size_t)(nl - S.in) + 1;
                        memmove(S.in, nl + 1, S.in_len - used);
                        S.in_len -= used;
                }
                if (S.in_len == sizeof(S.in))
                        abort(); /* a 64 KiB command line */
        }
}

static void say(const char *s, size_t len)
{
        if (S.qemu >= 0 && len)
                (void)send(S.qemu, s, len, MSG_NOSIGNAL | MSG_DONTWAIT);
}

static void hang_up(void)
{
        if (S.qemu >= 0)
                close(S.qemu);
        S.qemu = -1;
        S.in_len = 0;
        S.nids = 0;
}

/* QEMU (re)appears: wait for the session's retry timer, then accept. */
static void come_up(const struct vmsig_adapter_ops *ops, void *inst)
{
        for (int i = 0; i < 20 && S.qemu < 0; i++) {
                S.qemu = accept4(S.listener, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
                if (S.qemu >= 0)
                        break;
                struct pollfd p[MAX_WATCH];
                uint64_t cookie[MAX_WATCH];
                unsigned n = 0;
                for (unsigned k = 0; k < S.nw; k++)
                        if (S.w[k].cookie == 2) { /* vmhost.c COOKIE_RETRY */
                                p[n] = (struct pollfd){.fd = S.w[k].fd, .events = POLLIN};
                                cookie[n++] = S.w[k].cookie;
                        }
                if (poll(p, n, 5) > 0)
                        for (unsigned k = 0; k < n; k++)
                                if (p[k].revents)
                                        ops->on_readiness(inst, cookie[k], (uint32_t)p[k].revents);
        }
}

/* The adapter's own timers (vmhost.c COOKIE_ON: a parked "on" waits 10 s
 * for its RESET) run out now: expire every armed one-shot at once. */
static void time_passes(void)
{
        for (unsigned k = 0; k < S.nw; k++) {
                struct itimerspec cur, now = {.it_value = {0, 1}};
                if (S.w[k].shape == VMSIG_RDY_TIMERFD && timerfd_gettime(S.w[k].fd, &cur) == 0 &&
                    (cur.it_value.tv_sec || cur.it_value.tv_nsec)) {
                        struct pollfd p = {.fd = S.w[k].fd, .events = POLLIN};
                        (void)timerfd_settime(S.w[k].fd, 0, &now, NULL);
                        (void)poll(&p, 1, 100);
                }
        }
}

static int64_t pop_id(void)
{
        if (!S.nids)
                return -1;
        int64_t id = S.ids[0];
        memmove(S.ids, S.ids + 1, --S.nids * sizeof(S.ids[0]));
        return id;
}

static void reply(uint8_t t, uint8_t a)
{
        char buf[512];
        int64_t id = pop_id();
        int n;

        if (id < 0)
                return;
        switch (t % 8) {
        case 0:
                n = snprintf(buf, sizeof(buf), "{\"return\": {}, \"id\": %lld}" CRLF, (long long)id);
                break;
        case 1:
        case 2: {
                const char *st = run_states[a % (sizeof(run_states) / sizeof(run_states[0]))];
                n = snprintf(buf, sizeof(buf),
                             "{\"return\": {\"status\": \"%s\", \"singlestep\": false, \"running\": %s}, "
                             "\"id\": %lld}" CRLF,
                             st, strcmp(st, "running") ? "false" : "true", (long long)id);
                break;
        }
        case 3:
                n = snprintf(buf, sizeof(buf),
                             "{\"id\": %lld, \"error\": {\"class\": \"GenericError\", \"desc\": \"Unable to "
                             "wake up: guest is not in suspended state\"}}" CRLF,
                             (long long)id);
                break;
        case 4:
                n = snprintf(buf, sizeof(buf),
                             "{\"id\": %lld, \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The "
                             "command system_reset has not been found\"}}" CRLF,
                             (long long)id);
                break;
        case 5:
                n = snprintf(buf, sizeof(buf),
                             "{\"return\": {\"running\": true, \"status\": %d}, \"id\": %lld}" CRLF, a,
                             (long long)id);
                break;
        case 6:
                n = snprintf(buf, sizeof(buf), "{\"id\": %lld, \"error\": {}}" CRLF, (long long)id);
                break;
        default:
                n = snprintf(buf, sizeof(buf), "{\"return\": [\"status\"], \"id\": %lld}" CRLF,
                             (long long)id);
                break;
        }
        say(buf, (size_t)n);
}

static void json_reply(const uint8_t *v, size_t len, bool error)
{
        char head[64], tail[64];
        int64_t id = pop_id();

        if (id < 0)
                return;
        int h = snprintf(head, sizeof(head), "{\"%s\": ", error ? "error" : "return");
        int t = snprintf(tail, sizeof(tail), ", \"id\": %lld}" CRLF, (long long)id);
        say(head, (size_t)h);
        say((const char *)v, len);
        say(tail, (size_t)t);
}

static void event(uint8_t name, uint8_t var)
{
        char buf[512];
        int n = snprintf(buf, sizeof(buf),
                         "{\"timestamp\": {\"seconds\": 1796013406, \"microseconds\": 838967}, \"event\": "
                         "\"%s\"%s}" CRLF,
                         event_names[name % (sizeof(event_names) / sizeof(event_names[0]))],
                         event_data[var % (sizeof(event_data) / sizeof(event_data[0]))]);
        say(buf, (size_t)n);
}

static void submit(const struct vmsig_adapter_ops *ops, void *inst, uint16_t kind, uint8_t a)
{
        static uint64_t corr;
        struct vmsig_event ev;

        if (S.ncmds == MAX_CMDS)
                return;
        vmsig_event_init(&ev, kind, 7, VMSIG_SRC_VMHOST);
        ev.hdr.corr = ++corr;
        ev.hdr.peer = 3;
        if (a & 0x80)
                ev.hdr.flags |= VMSIG_F_FF;
        if (kind == VMSIG_EV_CMD_POWER) {
                struct vmsig_power_body b = {.op = a & 7};
                vmsig_event_set_body(&ev, &b, (a & 0x40) ? sizeof(b) - 1 : sizeof(b));
        } else if (a & 0x40) {
                vmsig_event_set_body(&ev, &a, 1);
        }
        struct cmd *c = &S.cmds[S.ncmds++];
        *c = (struct cmd){.corr = ev.hdr.corr};
        int r = ops->submit(inst, &ev, NULL, 0);
        if (r == VMSIG_SUBMIT_NOT_MINE || r > 0)
                abort(); /* power and status are vmhost's */
        c->accepted = r == VMSIG_SUBMIT_ACCEPTED;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static bool ready;
        const struct vmsig_adapter_ops *ops = vmsig_vmhost_ops();

        if (!ready) {
                if (!ops || setup() < 0)
                        abort();
                ready = true;
        }
        S.nw = S.ncmds = S.nids = S.nstatus = 0;
        S.in_len = 0;
        S.qemu = -1;

        struct vmsig_adapter_cfg cfg = {
            .vm_name = "fuzz", .qmp_path = S.path, .options = "retry_ms=1,retry_max_ms=1"};
        void *inst = NULL;
        if (ops->open(&cfg, 7, &inst) < 0)
                abort();
        struct vmsig_fd_reg reg[VMSIG_FD_REG_MAX];
        size_t nreg = 0;
        if (ops->attach(inst, &sink, reg, VMSIG_FD_REG_MAX, &nreg) < 0)
                abort();
        for (size_t i = 0; i < nreg; i++)
                s_watch(&sink, &reg[i]);
        S.qemu = accept4(S.listener, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

        unsigned reconnects = 0;
        for (size_t i = 0; i < size;) {
                uint8_t op = data[i++] % 8;
                uint8_t a = i < size ? data[i] : 0, b = i + 1 < size ? data[i + 1] : 0;
                size_t avail = i + 1 < size ? size - i - 1 : 0; /* bytes after the argument */
                switch (op) {
                case 0:
                        if (S.qemu < 0 && reconnects++ < 2)
                                come_up(ops, inst);
                        say(greeting, sizeof(greeting) - 1);
                        break;
                case 1: {
                        size_t len = a < avail ? a : avail;
                        say((const char *)data + i + 1, len);
                        i += 1 + len;
                        break;
                }
                case 2:
                        reply(a, b);
                        i += 2;
                        break;
                case 3:
                        event(a, b);
                        i += 2;
                        break;
                case 4:
                        submit(ops, inst, VMSIG_EV_CMD_POWER, a);
                        i += 1;
                        break;
                case 5:
                        if (a == 0xff)
                                time_passes();
                        else
                                submit(ops, inst, VMSIG_EV_CMD_STATUS_QUERY, a);
                        i += 1;
                        break;
                case 6:
                        hang_up();
                        break;
                default: {
                        size_t len = (a & 0x7f) < avail ? (a & 0x7f) : avail;
                        json_reply(data + i + 1, len, a & 0x80);
                        i += 1 + len;
                        break;
                }
                }
                pump(ops, inst);
                read_commands();
        }

        /* QEMU goes away: every accepted command has its answer now. */
        hang_up();
        pump(ops, inst);
        for (unsigned k = 0; k < S.ncmds; k++)
                if (S.cmds[k].acks != (S.cmds[k].accepted ? 1u : 0u))
                        abort();
        ops->close(inst);
        if (S.nw != 0)    /* close() unwatches what it watched... */
                S.nw = 0; /* ...or the core drops them; either is fine */
        /* a connect the adapter made after our last accept */
        int stray;
        while ((stray = accept4(S.listener, NULL, NULL, SOCK_CLOEXEC)) >= 0)
                close(stray);
        return 0;
}
