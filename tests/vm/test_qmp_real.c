/* SPDX-License-Identifier: MIT */
/* The QMP client against a real QEMU (TCG) running the build-guest.sh guest. */
#include <errno.h>
#include <json-c/json.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "host/qmp.h"
#include "vm/vm_guest.h"

struct rec {
        int n_ready;
        int n_close;
        int close_err;
        char close_reason[256];
        char events[32][32];
        int n_events;

        bool done;
        int error;
        struct json_object *value;
        char *text;
        char reason[256];
};

static void on_ready(struct qmp *q, struct json_object *greeting, void *ud)
{
        ((struct rec *)ud)->n_ready++;
}

static void on_event(struct qmp *q, const struct qmp_event *ev, void *ud)
{
        struct rec *r = ud;
        if (r->n_events < 32)
                snprintf(r->events[r->n_events++], 32, "%s", ev->name);
        assert_true(ev->ts_sec > 0); /* QEMU stamps every event */
}

static void on_close(struct qmp *q, int err, const char *reason, void *ud)
{
        struct rec *r = ud;
        r->n_close++;
        r->close_err = err;
        snprintf(r->close_reason, sizeof(r->close_reason), "%s", reason);
}

static void on_reply(struct qmp *q, const struct qmp_reply *reply, void *ud)
{
        struct rec *r = ud;
        r->done = true;
        r->error = reply->error;
        json_object_put(r->value);
        r->value = reply->error ? NULL : json_object_get(reply->value);
        free(r->text);
        r->text = reply->text ? strdup(reply->text) : NULL;
        snprintf(r->reason, sizeof(r->reason), "%s", reply->reason ? reply->reason : "");
}

struct fx {
        struct vm_guest g;
        struct qmp *q;
        struct rec rec;
        long t0;
};

static int setup(void **state)
{
        struct fx *f = calloc(1, sizeof(*f));
        f->t0 = vm_guest_now_ms();
        int r = vm_guest_start(&f->g, "qmpreal", NULL);
        if (r < 0) {
                free(f);
                return -1;
        }
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fx *f = *state;
        char shm[256];
        snprintf(shm, sizeof(shm), "%s", f->g.shm);
        qmp_free(f->q);
        vm_guest_stop(&f->g); /* kills QEMU no matter how the test went */
        json_object_put(f->rec.value);
        free(f->rec.text);
        free(f);
        struct stat st;
        assert_int_not_equal(stat(shm, &st), 0); /* no leftovers in /dev/shm */
        return 0;
}

/* Pumps until *flag becomes true; false on timeout or close. */
static bool pump_until(struct fx *f, const bool *flag, int timeout_ms)
{
        long deadline = vm_guest_now_ms() + timeout_ms;
        while (!*flag) {
                long left = deadline - vm_guest_now_ms();
                if (left <= 0)
                        return false;
                int r = qmp_pump(f->q, (int)left);
                if (r < 0 && r != -ETIMEDOUT)
                        return *flag;
        }
        return true;
}

static bool ready(struct fx *f)
{
        return qmp_get_state(f->q) == QMP_STATE_READY;
}

static bool has_event(struct fx *f, const char *name)
{
        for (int i = 0; i < f->rec.n_events; i++)
                if (!strcmp(f->rec.events[i], name))
                        return true;
        return false;
}

/* Runs one command and waits for its reply. */
static void run(struct fx *f, const char *cmd, bool hmp)
{
        f->rec.done = false;
        int r = hmp ? qmp_hmp(f->q, cmd, on_reply, &f->rec, NULL)
                    : qmp_execute(f->q, cmd, NULL, on_reply, &f->rec, NULL);
        assert_int_equal(r, 0);
        assert_true(pump_until(f, &f->rec.done, 10000));
        if (f->rec.error)
                fail_msg("%s: %s (%d)", cmd, f->rec.reason, f->rec.error);
}

static const char *status_of(struct fx *f)
{
        run(f, "query-status", false);
        struct json_object *v;
        assert_true(json_object_object_get_ex(f->rec.value, "status", &v));
        return json_object_get_string(v);
}

static void connect_client(struct fx *f)
{
        struct qmp_config cfg = {
            .on_ready = on_ready, .on_event = on_event, .on_close = on_close, .userdata = &f->rec};
        assert_int_equal(qmp_new(f->g.qmp, &cfg, &f->q), 0);
        long t = vm_guest_now_ms();
        bool ok = false;
        for (long deadline = t + 10000; !ok && vm_guest_now_ms() < deadline;) {
                int r = qmp_pump(f->q, 200);
                assert_true(r == 0 || r == -ETIMEDOUT);
                ok = ready(f);
        }
        assert_true(ok);
        assert_int_equal(f->rec.n_ready, 1);
        printf("# QMP ready %ld ms after connect\n", vm_guest_now_ms() - t);
}

static void test_real_qmp_session(void **state)
{
        struct fx *f = *state;

        /* The blocking helper first: QEMU serves one QMP client at a time. */
        char *text = NULL, reason[256];
        assert_int_equal(qmp_sync_hmp(f->g.qmp, "info version", 10000, &text, reason, sizeof(reason)), 0);
        assert_non_null(strstr(text, "7."));
        free(text);

        connect_client(f);
        struct json_object *g = qmp_greeting(f->q), *v, *ver, *qemu;
        assert_true(json_object_object_get_ex(g, "QMP", &v));
        assert_true(json_object_object_get_ex(v, "version", &ver));
        assert_true(json_object_object_get_ex(ver, "qemu", &qemu));
        assert_true(json_object_object_get_ex(qemu, "major", &v));
        printf("# QEMU %d.x greeting seen\n", json_object_get_int(v));

        assert_string_equal(status_of(f), "running");

        /* Serial: ready marker and the kernel version from /proc/version. */
        long t = vm_guest_now_ms();
        if (vm_guest_wait_serial(&f->g, "VMSIG-GUEST-READY", 60000) < 0)
                fail_msg("no ready marker within 60 s; serial:\n%s", vm_guest_serial_text(&f->g));
        assert_int_equal(vm_guest_wait_serial(&f->g, "VMSIG-GUEST-READY\r\nLinux version ", 10000), 0);
        printf("# guest ready %ld ms after QEMU start\n", vm_guest_now_ms() - f->t0);
        (void)t;

        /* pause/resume, seen as events. */
        run(f, "stop", false);
        f->rec.done = false;
        long deadline = vm_guest_now_ms() + 10000;
        while (!has_event(f, "STOP") && vm_guest_now_ms() < deadline)
                (void)qmp_pump(f->q, 100);
        assert_true(has_event(f, "STOP"));
        assert_string_equal(status_of(f), "paused");
        run(f, "cont", false);
        deadline = vm_guest_now_ms() + 10000;
        while (!has_event(f, "RESUME") && vm_guest_now_ms() < deadline)
                (void)qmp_pump(f->q, 100);
        assert_true(has_event(f, "RESUME"));
        assert_string_equal(status_of(f), "running");

        /* HMP through the helper: plain text, LF only. */
        t = vm_guest_now_ms();
        run(f, "info mtree -f", true);
        assert_non_null(f->rec.text);
        printf("# info mtree -f: %zu bytes in %ld ms\n", strlen(f->rec.text), vm_guest_now_ms() - t);
        assert_null(strchr(f->rec.text, '\r'));
        assert_non_null(strstr(f->rec.text, "FlatView #"));
        assert_non_null(strstr(f->rec.text, "AS \"memory\""));
        assert_non_null(strstr(f->rec.text, "): ram0\n")); /* the memory-backend-file region */

        /* An unknown command is a QMP error reply, not a closed connection. */
        f->rec.done = false;
        assert_int_equal(qmp_execute(f->q, "no-such-command", NULL, on_reply, &f->rec, NULL), 0);
        assert_true(pump_until(f, &f->rec.done, 10000));
        assert_int_equal(f->rec.error, -EREMOTEIO);
        assert_int_equal(qmp_get_state(f->q), QMP_STATE_READY);
        assert_int_equal(f->rec.n_close, 0);
}

static void test_real_qemu_killed(void **state)
{
        struct fx *f = *state;
        connect_client(f);
        /* A command in flight when QEMU dies gets the close error. */
        f->rec.done = false;
        assert_int_equal(qmp_hmp(f->q, "info registers", on_reply, &f->rec, NULL), 0);
        assert_int_equal(kill(f->g.pid, SIGKILL), 0);
        long t = vm_guest_now_ms();
        bool closed = false;
        for (long deadline = t + 10000; !closed && vm_guest_now_ms() < deadline;) {
                int r = qmp_pump(f->q, 200);
                closed = r < 0 && r != -ETIMEDOUT;
        }
        assert_true(closed);
        assert_int_equal(f->rec.n_close, 1);
        assert_true(f->rec.close_err == -EPIPE || f->rec.close_err == -ECONNRESET);
        assert_true(strlen(f->rec.close_reason) > 0);
        printf("# close noticed %ld ms after SIGKILL: %s\n", vm_guest_now_ms() - t, f->rec.close_reason);
        /* Either the reply won the race, or the close failed it. */
        assert_true(f->rec.done);
        assert_int_equal(qmp_get_state(f->q), QMP_STATE_CLOSED);
        assert_int_equal(qmp_fd(f->q), -1);
        /* Reconnecting to a dead QEMU (reaped: its fds are surely gone): the
         * socket file is left behind and nobody listens. */
        assert_int_equal(waitpid(f->g.pid, NULL, 0), f->g.pid);
        f->g.pid = 0;
        struct qmp *q2 = NULL;
        int r = qmp_new(f->g.qmp, NULL, &q2);
        if (r != -ECONNREFUSED && r != -ENOENT)
                fail_msg("reconnect to a dead QEMU: %d (%s)", r, strerror(-r));
        assert_null(q2);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_real_qmp_session, setup, teardown),
            cmocka_unit_test_setup_teardown(test_real_qemu_killed, setup, teardown),
        };
        return cmocka_run_group_tests_name("qmp_real", tests, NULL, NULL);
}
