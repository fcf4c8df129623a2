/* SPDX-License-Identifier: MIT */
#ifndef VMSIG_TESTS_VMSIGD_HARNESS_H
#define VMSIG_TESTS_VMSIGD_HARNESS_H

/* Header-only helpers for daemon-level integration tests: run the real
 * vmsigd binary ($VMSIGD) as a child with a private temp dir (socket,
 * trigger dir, config, audit file, log), wait until it says it is ready,
 * stop it with SIGTERM, and always kill + reap it and remove the dir in
 * teardown. Plus small helpers for trigger files, clients (public API and a
 * raw socket speaking the wire codec), the audit file, running vmsigctl, and
 * running code as another uid.
 *
 * Include after <cmocka.h>. Nothing here is a test itself; every helper
 * returns an error instead of asserting, except where named vh_must_*. */

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <vmsig/client.h>
#include <vmsig/event.h>
#include <vmsig/memctx.h>

#include "transport/wire.h"

#define VH_UNUSED __attribute__((unused))

/* Generous: the ASan build and a loaded CI box are slow. */
#define VH_TIMEOUT_MS 10000

struct vh {
        char dir[64];
        char sock[128];
        char trig[128];
        char conf[128];
        char audit[128];
        char log[128];
        pid_t pid;  /* > 0 while the child is not reaped */
        int status; /* wait status once reaped */
        bool reaped;
};

#define VH_MAX_CLIENTS 64
static struct vmsig_client *vh_clients_[VH_MAX_CLIENTS] VH_UNUSED;

static VH_UNUSED uint64_t vh_now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Milliseconds left until deadline (>= 0). */
static VH_UNUSED int vh_left(uint64_t deadline)
{
        uint64_t now = vh_now_ms();
        return now >= deadline ? 0 : (int)(deadline - now);
}

static VH_UNUSED const char *vh_bin(const char *env)
{
        const char *p = getenv(env);
        return p && *p ? p : NULL;
}

static VH_UNUSED int vh_write_file(const char *path, const char *text, mode_t mode)
{
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
        size_t len = strlen(text), off = 0;

        if (fd < 0)
                return -errno;
        while (off < len) {
                ssize_t n = write(fd, text + off, len - off);
                if (n < 0) {
                        int e = errno;
                        close(fd);
                        return -e;
                }
                off += (size_t)n;
        }
        fchmod(fd, mode);
        close(fd);
        return 0;
}

/* Whole file into a malloc'ed NUL-terminated string (NULL on error). */
static VH_UNUSED char *vh_read_file(const char *path)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        size_t cap = 4096, len = 0;
        char *buf;

        if (fd < 0)
                return NULL;
        buf = malloc(cap);
        while (buf) {
                if (cap - len < 2) {
                        char *nb = realloc(buf, cap * 2);
                        if (!nb) {
                                free(buf);
                                buf = NULL;
                                break;
                        }
                        buf = nb;
                        cap *= 2;
                }
                ssize_t n = read(fd, buf + len, cap - len - 1);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                len += (size_t)n;
        }
        close(fd);
        if (buf)
                buf[len] = '\0';
        return buf;
}

/* Does any line of text contain every string of the NULL-terminated list? */
static VH_UNUSED bool vh_text_has_line_v(const char *text, va_list ap)
{
        const char *needles[16];
        size_t n = 0;
        const char *s;

        while (n < 16 && (s = va_arg(ap, const char *)))
                needles[n++] = s;
        for (const char *line = text; line && *line;) {
                const char *eol = strchrnul(line, '\n');
                size_t i;
                for (i = 0; i < n; i++) {
                        const char *hit = memmem(line, (size_t)(eol - line), needles[i], strlen(needles[i]));
                        if (!hit)
                                break;
                }
                if (i == n)
                        return true;
                line = *eol ? eol + 1 : eol;
        }
        return false;
}

static VH_UNUSED bool vh_file_has_line(const char *path, ...)
{
        char *text = vh_read_file(path);
        va_list ap;
        bool r;

        if (!text)
                return false;
        va_start(ap, path);
        r = vh_text_has_line_v(text, ap);
        va_end(ap);
        free(text);
        return r;
}

/* Count lines of text containing needle. */
static VH_UNUSED unsigned vh_count_lines(const char *text, const char *needle)
{
        unsigned n = 0;

        for (const char *line = text; line && *line;) {
                const char *eol = strchrnul(line, '\n');
                if (memmem(line, (size_t)(eol - line), needle, strlen(needle)))
                        n++;
                line = *eol ? eol + 1 : eol;
        }
        return n;
}

/* Reap without blocking; true once the child is gone. */
static VH_UNUSED bool vh_try_reap(struct vh *h)
{
        if (h->reaped || h->pid <= 0)
                return true;
        pid_t r = waitpid(h->pid, &h->status, WNOHANG);
        if (r == h->pid) {
                h->reaped = true;
                return true;
        }
        return false;
}

/* Wait for the child to exit for at most timeout_ms. Uses a pidfd when the
 * kernel has one (an event, not a poll loop), else checks every 2 ms. */
static VH_UNUSED bool vh_wait_exit(struct vh *h, int timeout_ms)
{
        uint64_t deadline = vh_now_ms() + (uint64_t)timeout_ms;
        int pfd = -1;

#ifdef SYS_pidfd_open
        if (!h->reaped && h->pid > 0)
                pfd = (int)syscall(SYS_pidfd_open, h->pid, 0);
#endif
        while (!vh_try_reap(h)) {
                int left = vh_left(deadline);
                if (!left)
                        break;
                if (pfd >= 0) {
                        struct pollfd p = {.fd = pfd, .events = POLLIN};
                        poll(&p, 1, left);
                } else {
                        struct timespec ts = {0, 2000000};
                        nanosleep(&ts, NULL);
                }
        }
        if (pfd >= 0)
                close(pfd);
        return h->reaped;
}

static int vh_rm_cb_(const char *path, const struct stat *st, int flag, struct FTW *ftw);

/* The [daemon] libvirt_uri of the next vh_start: "none" unless a test
 * (bench/scale's libvirt row) wants the driver, e.g. "test:///default",
 * libvirt's in-process test driver. */
static const char *vh_libvirt_uri = "none";

/* Start vmsigd. extra is appended to the config after the [daemon] keys
 * (socket, trigger_dir, audit, socket_mode 0666, libvirt_uri none: no test
 * daemon touches the host's libvirt): more [daemon] keys, then
 * other sections. Returns 0 once the daemon logged "ready:", else a negative
 * errno with the log printed. */
static VH_UNUSED int vh_start(struct vh *h, const char *extra)
{
        const char *bin = vh_bin("VMSIGD");
        char conf[4096];
        int r;

        /* Restarting: finish the previous daemon and remove its directory
         * first (the harness structs are static, so a fresh one is zero). */
        if (strncmp(h->dir, "/tmp/vmsigd-it-", 15) == 0) {
                if (h->pid > 0 && !h->reaped) {
                        kill(h->pid, SIGKILL);
                        while (waitpid(h->pid, &h->status, 0) < 0 && errno == EINTR)
                                ;
                }
                nftw(h->dir, vh_rm_cb_, 16, FTW_DEPTH | FTW_PHYS);
        }
        memset(h, 0, sizeof(*h));
        h->pid = -1;
        if (!bin) {
                fprintf(stderr, "VMSIGD is not set (the path of the vmsigd binary)\n");
                return -ENOENT;
        }
        snprintf(h->dir, sizeof(h->dir), "/tmp/vmsigd-it-XXXXXX");
        if (!mkdtemp(h->dir))
                return -errno;
        /* Others (uid 65534 in the admission tests) must reach the socket. */
        chmod(h->dir, 0755);
        snprintf(h->sock, sizeof(h->sock), "%s/vmsigd.sock", h->dir);
        snprintf(h->trig, sizeof(h->trig), "%s/vms", h->dir);
        snprintf(h->conf, sizeof(h->conf), "%s/vmsigd.conf", h->dir);
        snprintf(h->audit, sizeof(h->audit), "%s/audit.log", h->dir);
        snprintf(h->log, sizeof(h->log), "%s/vmsigd.log", h->dir);
        if (mkdir(h->trig, 0755) < 0)
                return -errno;
        snprintf(conf, sizeof(conf),
                 "[daemon]\nsocket = %s\ntrigger_dir = %s\naudit = file:%s\nsocket_mode = 0666\nlibvirt_uri "
                 "= %s\n%s\n",
                 h->sock, h->trig, h->audit, vh_libvirt_uri, extra ? extra : "");
        r = vh_write_file(h->conf, conf, 0644);
        if (r < 0)
                return r;

        pid_t parent = getpid();
        h->pid = fork();
        if (h->pid < 0)
                return -errno;
        if (h->pid == 0) {
                /* Never outlive the test process, whatever happens to it. */
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (getppid() != parent)
                        _exit(127);
                int lfd = open(h->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
                int nfd = open("/dev/null", O_RDONLY);
                if (lfd < 0 || nfd < 0)
                        _exit(127);
                dup2(nfd, 0);
                dup2(lfd, 1);
                dup2(lfd, 2);
                unsetenv("JOURNAL_STREAM");
                unsetenv("NOTIFY_SOCKET");
                execl(bin, "vmsigd", "-c", h->conf, (char *)NULL);
                _exit(127);
        }

        uint64_t deadline = vh_now_ms() + VH_TIMEOUT_MS;
        for (;;) {
                if (vh_file_has_line(h->log, "vmsigd: ready:", (char *)NULL))
                        return 0;
                if (vh_try_reap(h) || !vh_left(deadline))
                        break;
                struct timespec ts = {0, 2000000};
                nanosleep(&ts, NULL);
        }
        char *log = vh_read_file(h->log);
        fprintf(stderr, "vmsigd did not become ready (%s); its log:\n%s\n",
                h->reaped ? "it exited" : "timeout", log ? log : "(none)");
        free(log);
        return -ETIMEDOUT;
}

/* SIGTERM, then wait for the exit. Returns the exit code (0..255), or -1 if
 * it did not exit in time or died from a signal. */
static VH_UNUSED int vh_stop(struct vh *h, int timeout_ms)
{
        if (h->pid <= 0)
                return -1;
        if (!h->reaped)
                kill(h->pid, SIGTERM);
        if (!vh_wait_exit(h, timeout_ms))
                return -1;
        return WIFEXITED(h->status) ? WEXITSTATUS(h->status) : -1;
}

static int vh_rm_cb_(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        (void)st;
        (void)flag;
        (void)ftw;
        remove(path);
        return 0;
}

static VH_UNUSED struct vmsig_client *vh_client_close(struct vmsig_client *c);

/* Always safe: frees leftover clients, kills the daemon if it still runs,
 * reaps it, removes the dir. */
static VH_UNUSED void vh_teardown(struct vh *h)
{
        for (size_t i = 0; i < VH_MAX_CLIENTS; i++)
                vh_client_close(vh_clients_[i]);
        if (h->pid > 0 && !h->reaped) {
                kill(h->pid, SIGKILL);
                while (waitpid(h->pid, &h->status, 0) < 0 && errno == EINTR)
                        ;
                h->reaped = true;
        }
        if (h->dir[0] && strncmp(h->dir, "/tmp/vmsigd-it-", 15) == 0)
                nftw(h->dir, vh_rm_cb_, 16, FTW_DEPTH | FTW_PHYS);
        h->dir[0] = '\0';
}

/* The usual cmocka setup: a daemon with the default config, or -1 with
 * everything already cleaned up. */
static VH_UNUSED int vh_setup_default(struct vh *h)
{
        if (vh_start(h, NULL) < 0) {
                vh_teardown(h);
                return -1;
        }
        return 0;
}

/* cmocka setup/teardown around a test whose daemon is the struct vh given
 * as its initial state: see vh_unit_test. */
static VH_UNUSED int vh_fixture_setup(void **state)
{
        return vh_setup_default(*state);
}

static VH_UNUSED int vh_fixture_teardown(void **state)
{
        vh_teardown(*state);
        return 0;
}

/* A cmocka test entry that runs f with its own default daemon h (a
 * struct vh *), started before and always torn down after. */
#define vh_unit_test(f, h)                                                                                   \
        cmocka_unit_test_prestate_setup_teardown(f, vh_fixture_setup, vh_fixture_teardown, h)

static VH_UNUSED void vh_dump_log(const struct vh *h)
{
        char *log = vh_read_file(h->log);
        fprintf(stderr, "---- vmsigd log ----\n%s---- end ----\n", log ? log : "(none)\n");
        free(log);
}

/* ---- trigger files ---- */

/* Atomically: a temp name the daemon ignores ('.' prefix), then rename. */
static VH_UNUSED int vh_vm_add_as(const struct vh *h, const char *file, const char *name, const char *extra)
{
        char tmp[256], path[256], text[1024];
        int r;

        snprintf(tmp, sizeof(tmp), "%s/.%s.new", h->trig, file);
        snprintf(path, sizeof(path), "%s/%s", h->trig, file);
        snprintf(text, sizeof(text), "name=%s\ndriver=stub\n%s", name, extra ? extra : "");
        r = vh_write_file(tmp, text, 0644);
        if (r < 0)
                return r;
        return rename(tmp, path) < 0 ? -errno : 0;
}

static VH_UNUSED int vh_vm_add(const struct vh *h, const char *name, const char *extra)
{
        return vh_vm_add_as(h, name, name, extra);
}

/* A QEMU VM's trigger file <name>.vm: its QMP socket and RAM file. */
static VH_UNUSED int vh_vm_add_qemu(const struct vh *h, const char *name, const char *qmp, const char *ram)
{
        char tmp[256], path[256], text[1024];
        int r;

        snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", h->trig, name);
        snprintf(path, sizeof(path), "%s/%s.vm", h->trig, name);
        snprintf(text, sizeof(text), "name=%s\ndriver=qemu\nqmp=%s\nram=%s\n", name, qmp, ram);
        r = vh_write_file(tmp, text, 0644);
        if (r < 0)
                return r;
        return rename(tmp, path) < 0 ? -errno : 0;
}

static VH_UNUSED int vh_vm_remove(const struct vh *h, const char *file)
{
        char path[256];

        snprintf(path, sizeof(path), "%s/%s", h->trig, file);
        return unlink(path) < 0 ? -errno : 0;
}

/* ---- clients through the public API ---- */

/* Clients made by vh_client() are remembered, so that a test failing
 * half-way (cmocka longjmps out) does not leak them: vh_teardown() frees
 * what vh_client_close() did not. */

static VH_UNUSED struct vmsig_client *vh_client(const struct vh *h, const char *name)
{
        struct vmsig_client *c = NULL;

        if (vmsig_client_new(&c) < 0)
                return NULL;
        if (vmsig_client_connect(c, h->sock, name, VH_TIMEOUT_MS) < 0) {
                fprintf(stderr, "connect '%s': %s\n", name, vmsig_client_last_error(c)->msg);
                return vmsig_client_free(c);
        }
        for (size_t i = 0; i < VH_MAX_CLIENTS; i++)
                if (!vh_clients_[i]) {
                        vh_clients_[i] = c;
                        break;
                }
        return c;
}

/* Free a client from vh_client(). Accepts NULL; returns NULL. */
static VH_UNUSED struct vmsig_client *vh_client_close(struct vmsig_client *c)
{
        if (!c)
                return NULL;
        for (size_t i = 0; i < VH_MAX_CLIENTS; i++)
                if (vh_clients_[i] == c)
                        vh_clients_[i] = NULL;
        return vmsig_client_free(c);
}

/* What the tests look for while waiting. Any field 0 = don't care. */
struct vh_match {
        uint16_t kind;
        uint32_t endpoint;
        uint64_t corr;
        uint8_t roster_change; /* ROSTER only */
        const char *name;      /* ROSTER only: the VM name */
        uint8_t run_state;     /* STATUS only */
        bool memctx_valid;     /* MEMCTX only: a valid datum (with its fd) */
        bool memctx_invalid;   /* MEMCTX only: an invalidation */
};

static VH_UNUSED bool vh_matches(const struct vmsig_event *ev, const struct vh_match *m)
{
        if (m->kind && ev->hdr.kind != m->kind)
                return false;
        if (m->endpoint && ev->hdr.endpoint != m->endpoint)
                return false;
        if (m->corr && ev->hdr.corr != m->corr)
                return false;
        if (ev->hdr.kind == VMSIG_EV_ROSTER && (m->roster_change || m->name)) {
                struct vmsig_roster_body rb;
                memcpy(&rb, ev->body, sizeof(rb));
                rb.name[sizeof(rb.name) - 1] = '\0';
                if (m->roster_change && rb.change != m->roster_change)
                        return false;
                if (m->name && strcmp(rb.name, m->name) != 0)
                        return false;
        }
        if (ev->hdr.kind == VMSIG_EV_STATUS && m->run_state && ev->body[0] != m->run_state)
                return false;
        if (ev->hdr.kind == VMSIG_EV_MEMCTX && (m->memctx_valid || m->memctx_invalid)) {
                bool valid = ev->body[offsetof(struct vmsig_memctx_body, valid)] != 0;
                if (valid != m->memctx_valid)
                        return false;
        }
        return true;
}

/* Called for every event seen while waiting (also the matching one). */
typedef void (*vh_seen_fn)(const struct vmsig_event *ev, int fd, void *ud);

/* Receive until an event matches m (copied to *ret if non-NULL). Events
 * before it go to seen (fds are closed unless seen is given ownership: seen
 * must close them). Replies are dropped. 0 or negative errno. */
static VH_UNUSED int vh_wait_event(struct vmsig_client *c, const struct vh_match *m, struct vmsig_event *ret,
                                   vh_seen_fn seen, void *ud, int timeout_ms)
{
        uint64_t deadline = vh_now_ms() + (uint64_t)timeout_ms;

        for (;;) {
                struct vmsig_event ev;
                int fd = -1;
                int r = vmsig_client_recv_wait(c, &ev, &fd, NULL, vh_left(deadline));
                if (r == -EINTR)
                        continue;
                if (r < 0)
                        return r;
                if (r != VMSIG_CLIENT_EVENT)
                        continue;
                bool hit = vh_matches(&ev, m);
                if (hit && ret)
                        *ret = ev;
                if (seen)
                        seen(&ev, fd, ud);
                else if (fd >= 0)
                        close(fd);
                if (hit)
                        return 0;
        }
}

/* Receive until the REPLY with corr (copied to *ret_reply); events before
 * it (a subscription's retained replay) go to seen, or are dropped. 0, or
 * a negative errno of the connection (-ETIMEDOUT, the daemon's ERROR...). */
static VH_UNUSED int vh_wait_reply(struct vmsig_client *c, uint64_t corr,
                                   struct vmsig_client_reply *ret_reply, vh_seen_fn seen, void *ud,
                                   int timeout_ms)
{
        uint64_t deadline = vh_now_ms() + (uint64_t)timeout_ms;

        for (;;) {
                struct vmsig_event ev;
                struct vmsig_client_reply rep;
                int fd = -1;
                int r = vmsig_client_recv_wait(c, &ev, &fd, &rep, vh_left(deadline));
                if (r == -EINTR)
                        continue;
                if (r < 0)
                        return r;
                if (r == VMSIG_CLIENT_REPLY) {
                        if (rep.corr != corr)
                                continue;
                        if (ret_reply)
                                *ret_reply = rep;
                        return 0;
                }
                if (seen)
                        seen(&ev, fd, ud);
                else if (fd >= 0)
                        close(fd);
        }
}

/* The ACT_ACK of corr: its body in *ack. 0 or a negative errno (transport). */
static VH_UNUSED int vh_wait_ack(struct vmsig_client *c, uint64_t corr, struct vmsig_ack_body *ack,
                                 vh_seen_fn seen, void *ud)
{
        struct vh_match m = {.kind = VMSIG_EV_ACT_ACK, .corr = corr};
        struct vmsig_event ev;
        int r = vh_wait_event(c, &m, &ev, seen, ud, VH_TIMEOUT_MS);

        if (r < 0)
                return r;
        memcpy(ack, ev.body, sizeof(*ack));
        ack->msg[sizeof(ack->msg) - 1] = '\0';
        return 0;
}

/* Subscribe and wait for the REPLY; its result (0 / -EPERM ...) or a
 * transport error. */
static VH_UNUSED int vh_subscribe(struct vmsig_client *c, uint32_t ep, uint64_t kinds, vh_seen_fn seen,
                                  void *ud)
{
        struct vmsig_client_reply rep;
        uint64_t corr = 0;
        int r = vmsig_client_subscribe(c, ep, kinds, &corr);

        if (r < 0)
                return r;
        r = vh_wait_reply(c, corr, &rep, seen, ud, VH_TIMEOUT_MS);
        return r < 0 ? r : rep.result;
}

/* Acquire/release a lease and wait for its ACK; the ACK's result. */
static VH_UNUSED int vh_lease(struct vmsig_client *c, uint32_t ep, uint8_t cls, bool acquire)
{
        struct vmsig_ack_body ack;
        uint64_t corr = 0;
        int r = acquire ? vmsig_client_lease_acquire(c, ep, cls, &corr)
                        : vmsig_client_lease_release(c, ep, cls, &corr);

        if (r < 0)
                return r;
        r = vh_wait_ack(c, corr, &ack, NULL, NULL);
        return r < 0 ? r : ack.result;
}

#define VH_ALL_UP_KINDS                                                                                      \
        ((1ull << VMSIG_EV_ROSTER) | (1ull << VMSIG_EV_MEMCTX) | (1ull << VMSIG_EV_STATUS) |                 \
         (1ull << VMSIG_EV_ACT_ACK) | (1ull << VMSIG_EV_DIAG) | (1ull << VMSIG_EV_LEASE_GRANT) |             \
         (1ull << VMSIG_EV_LEASE_DENY) | (1ull << VMSIG_EV_LEASE_REVOKE))

/* Wait until the VM name appears for a roster watcher; its endpoint id. */
static VH_UNUSED uint32_t vh_wait_vm(struct vmsig_client *c, const char *name)
{
        struct vh_match m = {.kind = VMSIG_EV_ROSTER, .name = name};
        struct vmsig_event ev;

        if (vh_wait_event(c, &m, &ev, NULL, NULL, VH_TIMEOUT_MS) < 0)
                return 0;
        return ev.hdr.endpoint;
}

/* A vh_seen_fn that keeps the fd of the first MEMCTX (in *(int *)ud, -1
 * before) and closes every other fd. */
static VH_UNUSED void vh_keep_memctx_fd(const struct vmsig_event *ev, int fd, void *ud)
{
        int *keep = ud;

        if (ev->hdr.kind == VMSIG_EV_MEMCTX && fd >= 0 && *keep < 0)
                *keep = fd;
        else if (fd >= 0)
                close(fd);
}

/* Wait for a valid MEMCTX of endpoint ep (the client subscribed to it) and
 * decode it into *ctx; ctx->fd is the guest RAM fd (the caller closes it).
 * 0 or a negative errno. */
static VH_UNUSED int vh_wait_memctx(struct vmsig_client *c, uint32_t ep, struct vmsig_memctx *ctx,
                                    int timeout_ms)
{
        struct vh_match m = {.kind = VMSIG_EV_MEMCTX, .endpoint = ep, .memctx_valid = true};
        struct vmsig_event ev;
        int fd = -1, r = vh_wait_event(c, &m, &ev, vh_keep_memctx_fd, &fd, timeout_ms);

        if (r == 0)
                r = vmsig_memctx_from_event(&ev, fd, ctx);
        if (r < 0 && fd >= 0)
                close(fd);
        return r;
}

/* Test bytes that depend on seed and have no short period. */
static VH_UNUSED void vh_pattern(uint8_t *p, size_t len, uint8_t seed)
{
        for (size_t i = 0; i < len; i++)
                p[i] = (uint8_t)(seed + i * 7 + (i >> 8));
}

/* Do the len guest-RAM bytes at gpa, read through ctx's read-only fd,
 * equal want? */
static VH_UNUSED bool vh_ram_equals(const struct vmsig_memctx *ctx, uint64_t gpa, const void *want,
                                    size_t len)
{
        uint64_t off = 0, avail = 0;
        uint8_t *got = malloc(len);
        bool ok = got && vmsig_memctx_gpa_to_offset(ctx, gpa, &off, &avail) == 0 && avail >= len &&
                  pread(ctx->fd, got, len, (off_t)off) == (ssize_t)len && memcmp(got, want, len) == 0;

        free(got);
        return ok;
}

/* A daemon with one stub VM "alpha" and a client *w subscribed to roster,
 * memctx and lease events of every endpoint; *ep is alpha's endpoint and
 * *ctx its memctx (ctx->fd the guest RAM fd; the caller closes it). 0, or
 * -1 with the log dumped and everything torn down. */
static VH_UNUSED int vh_setup_memctx_vm(struct vh *h, const char *conf, struct vmsig_client **w, uint32_t *ep,
                                        struct vmsig_memctx *ctx)
{
        const uint64_t kinds = (1ull << VMSIG_EV_ROSTER) | (1ull << VMSIG_EV_MEMCTX) |
                               (1ull << VMSIG_EV_LEASE_GRANT) | (1ull << VMSIG_EV_LEASE_REVOKE);

        *w = NULL;
        if (vh_start(h, conf) < 0)
                goto fail;
        *w = vh_client(h, "watcher");
        if (!*w || vh_subscribe(*w, 0, kinds, NULL, NULL) != 0)
                goto fail;
        if (vh_vm_add(h, "alpha", NULL) < 0 || !(*ep = vh_wait_vm(*w, "alpha")))
                goto fail;
        if (vh_wait_memctx(*w, *ep, ctx, VH_TIMEOUT_MS) < 0)
                goto fail;
        return 0;
fail:
        vh_dump_log(h);
        *w = vh_client_close(*w);
        vh_teardown(h);
        return -1;
}

/* Undoes vh_setup_memctx_vm: closes ctx->fd and *w, stops the daemon. */
static VH_UNUSED void vh_teardown_memctx_vm(struct vh *h, struct vmsig_client **w, struct vmsig_memctx *ctx)
{
        if (ctx->fd >= 0)
                close(ctx->fd);
        ctx->fd = -1;
        *w = vh_client_close(*w);
        vh_teardown(h);
}

/* Does the daemon map a memfd named name (/proc/<pid>/maps)? */
static VH_UNUSED bool vh_daemon_maps_memfd(const struct vh *h, const char *name)
{
        char path[64], line[512], want[96];
        bool found = false;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/maps", (int)h->pid);
        snprintf(want, sizeof(want), "/memfd:%s ", name);
        f = fopen(path, "re");
        if (!f)
                return false;
        while (!found && fgets(line, sizeof(line), f))
                found = strstr(line, want) != NULL;
        fclose(f);
        return found;
}

/* ---- raw socket clients (to misbehave on purpose) ---- */

static VH_UNUSED int vh_raw_connect(const char *path)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0)
                return -errno;
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                int e = errno;
                close(fd);
                return -e;
        }
        return fd;
}

static VH_UNUSED int vh_raw_send(int fd, const void *buf, size_t len)
{
        const uint8_t *p = buf;

        while (len) {
                ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

/* Read exactly len bytes within the deadline. 1 done, 0 EOF before any
 * byte, -EPIPE EOF mid-way, -ETIMEDOUT, -errno. Received fds are closed
 * (counted in *nfds if given). */
static VH_UNUSED int vh_raw_read_exact(int fd, void *buf, size_t len, uint64_t deadline, unsigned *nfds)
{
        uint8_t *p = buf;
        size_t got = 0;

        while (got < len) {
                struct pollfd pfd = {.fd = fd, .events = POLLIN};
                int pr = poll(&pfd, 1, vh_left(deadline));
                if (pr < 0 && errno == EINTR)
                        continue;
                if (pr == 0)
                        return -ETIMEDOUT;
                union {
                        char b[CMSG_SPACE(sizeof(int) * 4)];
                        struct cmsghdr align;
                } cb;
                struct iovec iov = {.iov_base = p + got, .iov_len = len - got};
                struct msghdr mh = {
                    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cb.b, .msg_controllen = sizeof(cb.b)};
                ssize_t n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EINTR || errno == EAGAIN)
                                continue;
                        return -errno;
                }
                for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
                        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
                                continue;
                        size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                        for (size_t i = 0; i < k; i++) {
                                int rfd;
                                memcpy(&rfd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
                                close(rfd);
                                if (nfds)
                                        (*nfds)++;
                        }
                }
                if (n == 0)
                        return got ? -EPIPE : 0;
                got += (size_t)n;
        }
        return 1;
}

/* One frame from the daemon, decoded and checked by the codec. 1 frame,
 * 0 clean EOF (at a frame boundary), -ECONNRESET (a reset after the last
 * frame), -EBADMSG a violation, -ETIMEDOUT, -errno. */
static VH_UNUSED int vh_raw_frame(int fd, struct wire_frame *f, int timeout_ms)
{
        uint64_t deadline = vh_now_ms() + (uint64_t)timeout_ms;
        uint8_t buf[WIRE_FRAME_MAX];
        int r = vh_raw_read_exact(fd, buf, WIRE_PREFIX_LEN, deadline, NULL);

        if (r <= 0)
                return r;
        uint32_t len =
            (uint32_t)buf[0] | (uint32_t)buf[1] << 8 | (uint32_t)buf[2] << 16 | (uint32_t)buf[3] << 24;
        uint16_t type = (uint16_t)(buf[4] | buf[5] << 8);
        if (len > WIRE_PAYLOAD_MAX)
                return -EBADMSG;
        r = vh_raw_read_exact(fd, buf + WIRE_PREFIX_LEN, len, deadline, NULL);
        if (r < 0)
                return r;
        if (r == 0 && len)
                return -EPIPE;
        if (wire_decode(WIRE_SIDE_CLIENT, type, buf + WIRE_PREFIX_LEN, len, f) != WIRE_OK)
                return -EBADMSG;
        f->type = type;
        return 1;
}

/* After an ERROR: the stream must end. True for EOF (or the reset a unix
 * socket reports when the daemon closed with our bytes unread). */
static VH_UNUSED bool vh_raw_ends(int fd, int timeout_ms)
{
        uint8_t b;
        uint64_t deadline = vh_now_ms() + (uint64_t)timeout_ms;
        int r = vh_raw_read_exact(fd, &b, 1, deadline, NULL);

        return r == 0 || r == -ECONNRESET;
}

/* Connect + HELLO + WELCOME. fd >= 0 and *w filled, or a negative errno
 * (-EACCES etc: the ERROR code, text in err if given). */
static VH_UNUSED int vh_raw_hello(const char *path, const char *name, struct wire_welcome *w,
                                  struct wire_error *err)
{
        uint8_t buf[WIRE_FRAME_MAX];
        struct wire_frame f;
        int fd = vh_raw_connect(path), r;
        ssize_t n;

        if (fd < 0)
                return fd;
        n = wire_encode_hello(buf, sizeof(buf), name);
        if (n < 0 || vh_raw_send(fd, buf, (size_t)n) < 0) {
                close(fd);
                return -EIO;
        }
        r = vh_raw_frame(fd, &f, VH_TIMEOUT_MS);
        if (r == 1 && f.type == WIRE_WELCOME) {
                if (w)
                        *w = f.u.welcome;
                return fd;
        }
        close(fd);
        if (r == 1 && f.type == WIRE_ERROR) {
                if (err)
                        *err = f.u.error;
                return f.u.error.code < 0 ? f.u.error.code : -EPROTO;
        }
        return r < 0 ? r : -EPROTO;
}

static VH_UNUSED int vh_raw_send_event(int fd, const struct vmsig_event *ev)
{
        uint8_t buf[WIRE_FRAME_MAX];
        ssize_t n = wire_encode_event(buf, sizeof(buf), ev, true);

        return n < 0 ? (int)n : vh_raw_send(fd, buf, (size_t)n);
}

static VH_UNUSED int vh_raw_lease_cmd(int fd, uint32_t ep, uint16_t kind, uint8_t cls, uint64_t corr)
{
        struct vmsig_event ev;
        struct vmsig_lease_body lb = {.class_ = cls};

        vmsig_event_init(&ev, kind, ep, VMSIG_SRC_CORE);
        ev.hdr.corr = corr;
        vmsig_event_set_body(&ev, &lb, sizeof(lb));
        return vh_raw_send_event(fd, &ev);
}

/* Read frames until the ACT_ACK with corr; its result, or a transport error
 * (> 0 never). Returns -EBADE if an ERROR frame came instead (code in *err). */
static VH_UNUSED int vh_raw_wait_ack(int fd, uint64_t corr, struct vmsig_ack_body *ack,
                                     struct wire_error *err)
{
        uint64_t deadline = vh_now_ms() + VH_TIMEOUT_MS;

        for (;;) {
                struct wire_frame f;
                int r = vh_raw_frame(fd, &f, vh_left(deadline));
                if (r <= 0)
                        return r == 0 ? -EPIPE : r;
                if (f.type == WIRE_ERROR) {
                        if (err)
                                *err = f.u.error;
                        return -EBADE;
                }
                if (f.type == WIRE_EVENT && f.u.event.hdr.kind == VMSIG_EV_ACT_ACK &&
                    f.u.event.hdr.corr == corr) {
                        memcpy(ack, f.u.event.body, sizeof(*ack));
                        ack->msg[sizeof(ack->msg) - 1] = '\0';
                        return 0;
                }
        }
}

/* ---- other uids ---- */

/* In a forked child: become uid/gid fully (no supplementary groups). */
static VH_UNUSED int vh_become(uid_t uid, gid_t gid)
{
        if (setgroups(0, NULL) < 0 || setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0)
                return -errno;
        return 0;
}

/* Run $VMSIGCTL -s SOCK args... (optionally as uid), collect stdout+stderr
 * into out (NUL-terminated, truncated). Returns the exit code, or -1. */
static VH_UNUSED int vh_vmsigctl(const struct vh *h, int as_uid, char *out, size_t outlen, ...)
{
        const char *bin = vh_bin("VMSIGCTL");
        char *argv[24];
        int argc = 0, pfd[2], status = 0;
        va_list ap;
        size_t got = 0;

        if (!bin || outlen < 1 || pipe2(pfd, O_CLOEXEC) < 0)
                return -1;
        argv[argc++] = (char *)"vmsigctl";
        argv[argc++] = (char *)"-s";
        argv[argc++] = (char *)h->sock;
        va_start(ap, outlen);
        for (char *a; argc < 23 && (a = va_arg(ap, char *));)
                argv[argc++] = a;
        va_end(ap);
        argv[argc] = NULL;

        pid_t pid = fork();
        if (pid < 0)
                return -1;
        if (pid == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                dup2(pfd[1], 1);
                dup2(pfd[1], 2);
                if (as_uid >= 0 && vh_become((uid_t)as_uid, (gid_t)as_uid) < 0)
                        _exit(126);
                execv(bin, argv);
                _exit(127);
        }
        close(pfd[1]);
        uint64_t deadline = vh_now_ms() + 2 * VH_TIMEOUT_MS;
        for (;;) {
                struct pollfd p = {.fd = pfd[0], .events = POLLIN};
                if (poll(&p, 1, vh_left(deadline)) <= 0)
                        break;
                char tmp[4096];
                ssize_t n = read(pfd[0], tmp, sizeof(tmp));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                size_t take = (size_t)n < outlen - 1 - got ? (size_t)n : outlen - 1 - got;
                memcpy(out + got, tmp, take);
                got += take;
        }
        out[got] = '\0';
        close(pfd[0]);
        if (vh_left(deadline) == 0)
                kill(pid, SIGKILL);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Run fn(ud, out) in a forked child as uid/gid; the child sends back up to
 * outlen bytes of out. Returns 0 with out filled, or -1. */
typedef void (*vh_child_fn)(void *ud, void *out, size_t outlen);
static VH_UNUSED int vh_run_as(uid_t uid, vh_child_fn fn, void *ud, void *out, size_t outlen)
{
        int pfd[2], status = 0;
        size_t got = 0;

        if (pipe2(pfd, O_CLOEXEC) < 0)
                return -1;
        pid_t pid = fork();
        if (pid < 0)
                return -1;
        if (pid == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                close(pfd[0]);
                memset(out, 0, outlen);
                if (vh_become(uid, (gid_t)uid) < 0)
                        _exit(126);
                fn(ud, out, outlen);
                (void)!write(pfd[1], out, outlen);
                _exit(0);
        }
        close(pfd[1]);
        uint64_t deadline = vh_now_ms() + 2 * VH_TIMEOUT_MS;
        while (got < outlen) {
                struct pollfd p = {.fd = pfd[0], .events = POLLIN};
                if (poll(&p, 1, vh_left(deadline)) <= 0)
                        break;
                ssize_t n = read(pfd[0], (char *)out + got, outlen - got);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                got += (size_t)n;
        }
        close(pfd[0]);
        if (got < outlen)
                kill(pid, SIGKILL);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
        return got == outlen && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* Start the daemon for a cmocka test or fail it with the log. */
#define vh_must_start(h, extra)                                                                              \
        do {                                                                                                 \
                int vh_r_ = vh_start((h), (extra));                                                          \
                if (vh_r_ < 0)                                                                               \
                        fail_msg("vmsigd did not start: %s", strerror(-vh_r_));                              \
        } while (0)

#endif
