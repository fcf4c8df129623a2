/* SPDX-License-Identifier: MIT */
/* Issue 9, items 4 and 12: a QMP peer that accepts and then says nothing
 * (the QEMU user can put any socket at the qmp= path) must not leave a VM
 * silently stuck, and commands to a QEMU that stops answering must come back
 * within vmsigctl's 5 s wait, naming QEMU rather than the daemon.
 *
 * The peer is a tiny listener in this test, not an imitation of QEMU:
 *  - silent: accepts, never writes. A DIAG naming the VM and the socket must
 *    reach a watcher, the session must retry (a second accept), and the
 *    daemon must keep serving.
 *  - mute: greets, accepts qmp_capabilities, then never answers again.
 *    `vmsigctl power VM pause` must fail with the command's own timeout. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>

#include "daemon/vmsigd_harness.h"

static struct vh H;

enum peer_mode { PEER_SILENT, PEER_MUTE };

struct peer {
        enum peer_mode mode;
        char path[128];
        int lfd;
        int stop_pipe[2];
        pthread_t thr;
        bool started;
        atomic_uint accepts;
        atomic_uint muted; /* mute: sessions that got to their first command */
        int conns[64];
        unsigned nconns;
};

static struct peer P;
static char ram[128];

/* Read one line (up to 5 s); true if one came. */
static bool read_line(int fd, char *buf, size_t len)
{
        size_t got = 0;

        while (got < len - 1) {
                struct pollfd p = {.fd = fd, .events = POLLIN};
                if (poll(&p, 1, 5000) <= 0)
                        return false;
                ssize_t n = read(fd, buf + got, 1); /* byte by byte: never read past the line */
                if (n <= 0)
                        return false;
                if (buf[got++] == '\n')
                        break;
        }
        buf[got] = 0;
        return true;
}

/* The mute peer: greeting, an answer to qmp_capabilities, then it reads the
 * first real command (so the session is surely ready) and never answers. */
static bool mute_handshake(int fd)
{
        static const char greet[] =
            "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, "
            "\"package\": \"\"}, \"capabilities\": []}}\r\n";
        char line[1024], ok[128];

        if (write(fd, greet, sizeof(greet) - 1) < 0 || !read_line(fd, line, sizeof(line)))
                return false;
        const char *id = strstr(line, "\"id\":");
        snprintf(ok, sizeof(ok), "{\"return\": {}, \"id\": %ld}\r\n", id ? strtol(id + 5, NULL, 10) : 0L);
        if (write(fd, ok, strlen(ok)) < 0)
                return false;
        return read_line(fd, line, sizeof(line));
}

static void *peer_main(void *arg)
{
        struct peer *p = arg;

        for (;;) {
                struct pollfd f[2] = {{.fd = p->lfd, .events = POLLIN},
                                      {.fd = p->stop_pipe[0], .events = POLLIN}};
                if (poll(f, 2, -1) < 0 && errno != EINTR)
                        break;
                if (f[1].revents)
                        break;
                if (!(f[0].revents & POLLIN))
                        continue;
                int fd = accept4(p->lfd, NULL, NULL, SOCK_CLOEXEC);
                if (fd < 0)
                        continue;
                if (p->mode == PEER_MUTE && mute_handshake(fd))
                        atomic_fetch_add(&p->muted, 1);
                /* keep it open and say nothing (more) */
                if (p->nconns < 64)
                        p->conns[p->nconns++] = fd;
                else
                        close(fd);
                atomic_fetch_add(&p->accepts, 1);
        }
        return NULL;
}

static int peer_start(struct peer *p, enum peer_mode mode, const char *dir)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};

        memset(p, 0, sizeof(*p));
        p->mode = mode;
        snprintf(p->path, sizeof(p->path), "%s/qmp.sock", dir);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", p->path);
        p->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (p->lfd < 0 || bind(p->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(p->lfd, 16) < 0 ||
            pipe2(p->stop_pipe, O_CLOEXEC) < 0)
                return -errno;
        if (pthread_create(&p->thr, NULL, peer_main, p) != 0)
                return -EAGAIN;
        p->started = true;
        return 0;
}

static void peer_stop(struct peer *p)
{
        if (p->started) {
                (void)!write(p->stop_pipe[1], "x", 1);
                pthread_join(p->thr, NULL);
                p->started = false;
                close(p->stop_pipe[0]);
                close(p->stop_pipe[1]);
        }
        for (unsigned i = 0; i < p->nconns; i++)
                close(p->conns[i]);
        p->nconns = 0;
        if (p->lfd > 0)
                close(p->lfd);
        p->lfd = -1;
        if (p->path[0])
                unlink(p->path);
}

static int setup(void **state)
{
        (void)state;
        if (vh_setup_default(&H) < 0)
                return -1;
        snprintf(ram, sizeof(ram), "%s/ram", H.dir);
        return vh_write_file(ram, "", 0600) < 0 ? -1 : 0;
}

static int teardown(void **state)
{
        (void)state;
        peer_stop(&P);
        vh_teardown(&H);
        return 0;
}

static void add_vm(const char *name)
{
        char tmp[256], path[256], text[512];

        snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", H.trig, name);
        snprintf(path, sizeof(path), "%s/%s", H.trig, name);
        snprintf(text, sizeof(text), "name=%s\ndriver=qemu\nqmp=%s\nram=%s\n", name, P.path, ram);
        assert_int_equal(vh_write_file(tmp, text, 0644), 0);
        assert_int_equal(rename(tmp, path), 0);
}

struct diags {
        char want[64];
        unsigned n;
        char msg[VMSIG_MSG_MAX];
};

static void note_diag(const struct vmsig_event *ev, int fd, void *ud)
{
        struct diags *d = ud;
        struct vmsig_diag_body b;

        if (fd >= 0)
                close(fd);
        if (ev->hdr.kind != VMSIG_EV_DIAG)
                return;
        memcpy(&b, ev->body, sizeof(b));
        b.msg[sizeof(b.msg) - 1] = 0;
        printf("# DIAG %d: %s\n", b.code, b.msg);
        if (strstr(b.msg, d->want)) {
                d->n++;
                snprintf(d->msg, sizeof(d->msg), "%s", b.msg);
        }
}

static void test_silent_peer_gets_a_diag_and_retries(void **state)
{
        (void)state;
        char out[4096];

        assert_int_equal(peer_start(&P, PEER_SILENT, H.dir), 0);
        struct vmsig_client *w = vh_client(&H, "silent-watch");
        assert_non_null(w);
        assert_int_equal(vh_subscribe(w, 0, (1ull << VMSIG_EV_ROSTER) | (1ull << VMSIG_EV_DIAG), NULL, NULL),
                         0);
        add_vm("silentvm");

        struct diags d = {.want = "no QMP greeting"};
        struct vh_match never = {.kind = VMSIG_EV_NONE + 1, .endpoint = UINT32_MAX};
        uint64_t deadline = vh_now_ms() + 30000;
        while (!d.n && vh_left(deadline))
                (void)vh_wait_event(w, &never, NULL, note_diag, &d, 200);
        assert_int_equal(d.n, 1);
        assert_non_null(strstr(d.msg, "silentvm"));
        assert_non_null(strstr(d.msg, P.path));
        /* it keeps retrying (a new connection) ... */
        deadline = vh_now_ms() + 30000;
        while (atomic_load(&P.accepts) < 2 && vh_left(deadline))
                (void)vh_wait_event(w, &never, NULL, note_diag, &d, 200);
        assert_true(atomic_load(&P.accepts) >= 2);
        /* ... without repeating the DIAG for the same outage, and the
         * daemon keeps serving */
        assert_int_equal(d.n, 1);
        assert_int_equal(vh_vmsigctl(&H, -1, out, sizeof(out), "list", (char *)NULL), 0);
        assert_non_null(strstr(out, "silentvm"));
        assert_int_equal(vh_stop(&H, VH_TIMEOUT_MS), 0);
}

static void test_mute_qemu_command_times_out_naming_qemu(void **state)
{
        (void)state;
        char out[4096];

        assert_int_equal(peer_start(&P, PEER_MUTE, H.dir), 0);
        struct vmsig_client *w = vh_client(&H, "mute-watch");
        assert_non_null(w);
        assert_int_equal(vh_subscribe(w, 0, (1ull << VMSIG_EV_ROSTER) | (1ull << VMSIG_EV_DIAG), NULL, NULL),
                         0);
        add_vm("mutevm");
        assert_true(vh_wait_vm(w, "mutevm") != 0);
        uint64_t deadline = vh_now_ms() + 30000;
        while (atomic_load(&P.muted) < 1 && vh_left(deadline))
                usleep(10000);
        assert_true(atomic_load(&P.muted) >= 1);

        uint64_t t0 = vh_now_ms();
        int rc = vh_vmsigctl(&H, -1, out, sizeof(out), "power", "mutevm", "pause", (char *)NULL);
        uint64_t took = vh_now_ms() - t0;
        printf("# vmsigctl exit %d after %" PRIu64 " ms: %s", rc, took, out);
        assert_int_equal(rc, 1);
        assert_non_null(strstr(out, "QEMU"));
        assert_null(strstr(out, "no answer from vmsigd"));

        /* The stall is reported once, naming the VM. */
        struct diags d = {.want = "not answering"};
        struct vh_match never = {.kind = VMSIG_EV_NONE + 1, .endpoint = UINT32_MAX};
        deadline = vh_now_ms() + 10000;
        while (!d.n && vh_left(deadline))
                (void)vh_wait_event(w, &never, NULL, note_diag, &d, 200);
        assert_true(d.n >= 1);
        assert_non_null(strstr(d.msg, "mutevm"));
        assert_int_equal(vh_stop(&H, VH_TIMEOUT_MS), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_silent_peer_gets_a_diag_and_retries, setup, teardown),
            cmocka_unit_test_setup_teardown(test_mute_qemu_command_times_out_naming_qemu, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
