/* SPDX-License-Identifier: MIT */
/* The QEMU user owns QMP as well as the RAM file (issue 9, item 1): here it
 * is a QMP peer of its own (a thread of this test) that serves a RAM layout
 * and registers, lets vmsigd open its RAM file, then shrinks the file and
 * sends RESET. The re-bootstrap on vmsigd's worker must read the shrunk file
 * without dying of SIGBUS; the daemon keeps answering. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include <json-c/json.h>
#include <pthread.h>
#include <stdatomic.h>

#include "daemon/vmsigd_harness.h"
#include "test_ram_common.h"

#define RAM_SIZE (512u << 20) /* the layout of tests/host/data/q35-512m.txt */

/* x86 registers as `info registers` prints them: paging on, an IDT in the
 * cpu entry area, a root in low RAM. */
static const char REGS[] = "RAX=0000000000000000 RBX=0000000000000000\r\n"
                           "CR0=80050033 CR2=0000000000000000 CR3=0000000000100000 CR4=000006f0\r\n"
                           "IDT=     fffffe0000000000 00000fff\r\n";

static struct vh H;
static char Dir[64], Sock[128], Ram[128];

struct fake {
        pthread_t thread;
        bool started;
        int lfd, stopfd, stopw; /* a pipe: teardown writes, the thread polls */
        char *mtree;
        atomic_uint regs_served;
        atomic_bool send_reset;
};
static struct fake F = {.lfd = -1, .stopfd = -1, .stopw = -1};

static int send_line(int fd, json_object *o)
{
        const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
        char buf[1 << 16];
        int n = snprintf(buf, sizeof(buf), "%s\r\n", s);

        json_object_put(o);
        return n > 0 && (size_t)n < sizeof(buf) ? vh_raw_send(fd, buf, (size_t)n) : -EMSGSIZE;
}

static void reply(int fd, json_object *cmd, json_object *ret)
{
        json_object *o = json_object_new_object(), *id;

        json_object_object_add(o, "return", ret);
        if (json_object_object_get_ex(cmd, "id", &id))
                json_object_object_add(o, "id", json_object_get(id));
        (void)send_line(fd, o);
}

static void serve_command(int fd, json_object *cmd)
{
        json_object *ex, *args, *line;
        const char *what = json_object_object_get_ex(cmd, "execute", &ex) ? json_object_get_string(ex) : "";

        if (!strcmp(what, "human-monitor-command") && json_object_object_get_ex(cmd, "arguments", &args) &&
            json_object_object_get_ex(args, "command-line", &line)) {
                const char *hmp = json_object_get_string(line);
                if (!strcmp(hmp, "info mtree -f")) {
                        reply(fd, cmd, json_object_new_string(F.mtree));
                } else if (!strcmp(hmp, "info registers")) {
                        reply(fd, cmd, json_object_new_string(REGS));
                        atomic_fetch_add(&F.regs_served, 1);
                } else {
                        reply(fd, cmd, json_object_new_string(""));
                }
                return;
        }
        if (!strcmp(what, "query-status")) {
                json_object *st = json_object_new_object();
                json_object_object_add(st, "status", json_object_new_string("running"));
                json_object_object_add(st, "running", json_object_new_boolean(1));
                json_object_object_add(st, "singlestep", json_object_new_boolean(0));
                reply(fd, cmd, st);
                return;
        }
        reply(fd, cmd, json_object_new_object());
}

/* One client at a time, like QEMU's -qmp server. */
static void *fake_main(void *arg)
{
        (void)arg;
        for (;;) {
                struct pollfd p[2] = {{.fd = F.lfd, .events = POLLIN}, {.fd = F.stopfd, .events = POLLIN}};
                if (poll(p, 2, -1) < 0 && errno != EINTR)
                        return NULL;
                if (p[1].revents)
                        return NULL;
                if (!(p[0].revents & POLLIN))
                        continue;
                int fd = accept4(F.lfd, NULL, NULL, SOCK_CLOEXEC);
                if (fd < 0)
                        continue;
                (void)vh_raw_send(
                    fd,
                    "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, "
                    "\"package\": \"\"}, \"capabilities\": []}}\r\n",
                    strlen("{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": "
                           "7}, \"package\": \"\"}, \"capabilities\": []}}\r\n"));
                json_tokener *tok = json_tokener_new();
                char buf[4096];
                bool open_ = true;
                while (open_) {
                        struct pollfd q[2] = {{.fd = fd, .events = POLLIN},
                                              {.fd = F.stopfd, .events = POLLIN}};
                        int pr = poll(q, 2, 20);
                        if (pr < 0 && errno != EINTR)
                                break;
                        if (q[1].revents) {
                                open_ = false;
                                break;
                        }
                        if (atomic_exchange(&F.send_reset, false))
                                (void)send_line(
                                    fd, json_tokener_parse("{\"event\": \"RESET\", \"data\": {\"guest\": "
                                                           "false, \"reason\": \"host-qmp-system-reset\"}, "
                                                           "\"timestamp\": {\"seconds\": 1, "
                                                           "\"microseconds\": 0}}"));
                        if (!(q[0].revents & (POLLIN | POLLHUP)))
                                continue;
                        ssize_t n = read(fd, buf, sizeof(buf));
                        if (n <= 0)
                                break;
                        for (ssize_t off = 0; off < n;) {
                                json_object *cmd = json_tokener_parse_ex(tok, buf + off, (int)(n - off));
                                enum json_tokener_error e = json_tokener_get_error(tok);
                                if (e == json_tokener_continue)
                                        break;
                                if (e != json_tokener_success) {
                                        json_tokener_reset(tok);
                                        break;
                                }
                                off += (ssize_t)json_tokener_get_parse_end(tok);
                                serve_command(fd, cmd);
                                json_object_put(cmd);
                                json_tokener_reset(tok);
                                while (off < n && (buf[off] == '\r' || buf[off] == '\n' || buf[off] == ' '))
                                        off++;
                        }
                }
                json_tokener_free(tok);
                close(fd);
                if (!open_)
                        return NULL;
        }
}

static int setup(void **state)
{
        (void)state;
        const char *src = getenv("VMSIG_SOURCE_DIR");
        char path[512];

        if (!src)
                return -1;
        snprintf(path, sizeof(path), "%s/tests/host/data/q35-512m.txt", src);
        F.mtree = vh_read_file(path);
        snprintf(Dir, sizeof(Dir), "/tmp/vmsig-ramqmp-XXXXXX");
        if (!F.mtree || !mkdtemp(Dir))
                return -1;
        snprintf(Sock, sizeof(Sock), "%s/qmp.sock", Dir);
        snprintf(Ram, sizeof(Ram), "%s/pc.ram", Dir);
        return 0;
}

static int teardown(void **state)
{
        (void)state;
        vh_teardown(&H);
        if (F.started) {
                (void)!write(F.stopw, "x", 1);
                pthread_join(F.thread, NULL);
                F.started = false;
        }
        if (F.lfd >= 0)
                close(F.lfd);
        if (F.stopfd >= 0)
                close(F.stopfd);
        if (F.stopw >= 0)
                close(F.stopw);
        F.lfd = F.stopfd = F.stopw = -1;
        unlink(Sock);
        unlink(Ram);
        rmdir(Dir);
        free(F.mtree);
        F.mtree = NULL;
        return 0;
}

static void test_shrink_then_reset_over_qmp(void **state)
{
        (void)state;
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int pfd[2];

        /* the QEMU user's RAM file: its own (root here, like this peer) */
        int fd = open(Ram, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        assert_int_equal(ftruncate(fd, RAM_SIZE), 0);
        close(fd);
        F.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(F.lfd >= 0);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", Sock);
        assert_int_equal(bind(F.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(listen(F.lfd, 4), 0);
        assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
        F.stopfd = pfd[0];
        F.stopw = pfd[1];
        assert_int_equal(pthread_create(&F.thread, NULL, fake_main, NULL), 0);
        F.started = true;

        vh_must_start(&H, NULL);
        struct vmsig_client *c = vh_client(&H, "ram-watch");
        assert_non_null(c);
        assert_int_equal(
            vh_subscribe(c, 0, VMSIG_KIND_BIT(VMSIG_EV_ROSTER) | VMSIG_KIND_BIT(VMSIG_EV_DIAG), NULL, NULL),
            0);
        char text[512], tmp[256], trig[256];
        snprintf(text, sizeof(text), "name=fake\ndriver=qemu\nqmp=%s\nram=%s\n", Sock, Ram);
        snprintf(tmp, sizeof(tmp), "%s/.fake.tmp", H.trig);
        snprintf(trig, sizeof(trig), "%s/fake.vm", H.trig);
        assert_int_equal(vh_write_file(tmp, text, 0644), 0);
        assert_int_equal(rename(tmp, trig), 0);
        uint32_t ep = vh_wait_vm(c, "fake");
        assert_true(ep != 0);

        /* the first bootstrap opened the file and found no kernel in it */
        char msg[VMSIG_MSG_MAX];
        assert_int_equal(ram_wait_diag(c, ep, "retrying", msg, sizeof(msg), VH_TIMEOUT_MS), 0);

        /* shrink it, and say RESET: a re-bootstrap reads it at once */
        assert_int_equal(truncate(Ram, 0), 0);
        unsigned base = atomic_load(&F.regs_served);
        atomic_store(&F.send_reset, true);
        /* the second `info registers` after the shrink comes only once the
         * worker finished a bootstrap on the shrunk file */
        uint64_t deadline = vh_now_ms() + VH_TIMEOUT_MS;
        while (atomic_load(&F.regs_served) < base + 2 && vh_left(deadline) && !vh_try_reap(&H)) {
                struct pollfd none = {.fd = -1};
                poll(&none, 1, 10);
        }
        printf("# info registers served after the shrink: %u\n", atomic_load(&F.regs_served) - base);
        if (vh_try_reap(&H))
                printf("# vmsigd is gone: %s %d\n", WIFSIGNALED(H.status) ? "signal" : "exit",
                       WIFSIGNALED(H.status) ? WTERMSIG(H.status) : WEXITSTATUS(H.status));
        assert_false(vh_try_reap(&H));
        assert_true(atomic_load(&F.regs_served) >= base + 2);
        char out[4096];
        assert_int_equal(vh_vmsigctl(&H, -1, out, sizeof(out), "list", (char *)NULL), 0);
        assert_int_equal(vh_stop(&H, VH_TIMEOUT_MS), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_shrink_then_reset_over_qmp, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
