/* SPDX-License-Identifier: MIT */
/* vmctl without a VM: validation (compatible with the input stub), the
 * input-send-event arguments, QMP error mapping, the grab-toggle guard, the
 * uinput frames written to given fds (pipes stand in for /dev/uinput), the
 * holder handshake, and real uinput devices where /dev/uinput exists. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#ifdef VMCTL_ABSENT
static void absent(void **state)
{
        skip();
}
int main(void)
{
        const struct CMUnitTest tests[] = {cmocka_unit_test(absent)};
        fprintf(stderr, "SKIP: vmctl is not built (needs libevdev-dev and libjson-c-dev)\n");
        return cmocka_run_group_tests(tests, NULL, NULL);
}
#else

#include <json-c/json.h>
#include <linux/input.h>

#include "host/qmp.h"
#include "vmctl/vmctl.h"

/* ---- validation ---- */

static int v(uint32_t op, int32_t x, int32_t y, uint32_t code, int32_t value)
{
        struct vmctl_cmd c = {.op = op, .x = x, .y = y, .code = code, .value = value};
        char msg[VMCTL_MSG_MAX] = "";
        int r = vmctl_validate(&c, msg);
        if (r < 0)
                assert_true(msg[0]);
        /* the input stub asks without a message buffer: same verdict */
        assert_int_equal(vmctl_validate(&c, NULL), r);
        return r;
}

static void test_validate(void **state)
{
        assert_int_equal(v(VMCTL_MOVE_ABS, 0, 0, 0, 0), 0);
        assert_int_equal(v(VMCTL_MOVE_ABS, VMCTL_ABS_MAX, VMCTL_ABS_MAX, 0, 0), 0);
        assert_int_equal(v(VMCTL_MOVE_ABS, -1, 0, 0, 0), -ERANGE);
        assert_int_equal(v(VMCTL_MOVE_ABS, 0, VMCTL_ABS_MAX + 1, 0, 0), -ERANGE);
        assert_int_equal(v(VMCTL_MOVE_REL, -100000, 5, 0, 0), 0);
        assert_int_equal(v(VMCTL_BUTTON, 0, 0, VMCTL_BTN_LEFT, 1), 0);
        assert_int_equal(v(VMCTL_BUTTON, 0, 0, VMCTL_BTN_MIDDLE, 0), 0);
        assert_int_equal(v(VMCTL_BUTTON, 0, 0, 0, 1), -EINVAL);
        assert_int_equal(v(VMCTL_BUTTON, 0, 0, 4, 1), -EINVAL);
        assert_int_equal(v(VMCTL_BUTTON, 0, 0, 1, 2), -EINVAL);
        assert_int_equal(v(VMCTL_KEY, 0, 0, KEY_A, 1), 0);
        assert_int_equal(v(VMCTL_KEY, 0, 0, 0, 1), -EINVAL);
        assert_int_equal(v(VMCTL_KEY, 0, 0, VMCTL_KEY_MAX + 1, 1), -EINVAL);
        assert_int_equal(v(VMCTL_KEY, 0, 0, KEY_A, -1), -EINVAL);
        assert_int_equal(v(VMCTL_KEY, 0, 0, BTN_LEFT, 1), -EOPNOTSUPP); /* a button */
        assert_int_equal(v(VMCTL_KEY, 0, 0, 0x2c0, 1), -EOPNOTSUPP);    /* QEMU drops it */
        assert_int_equal(v(VMCTL_WHEEL, 0, -VMCTL_WHEEL_MAX, 0, 0), 0);
        assert_int_equal(v(VMCTL_WHEEL, VMCTL_WHEEL_MAX + 1, 0, 0, 0), -ERANGE);
        assert_int_equal(v(99, 0, 0, 0, 0), -EINVAL);
}

/* ---- QMP arguments and results ---- */

static const char *args_json(struct vmctl_cmd c, char *buf, size_t len)
{
        struct json_object *a = NULL;
        char msg[VMCTL_MSG_MAX];
        int r = vmctl_qmp_args(&c, &a, msg);
        if (r < 0) {
                snprintf(buf, len, "error %d: %s", r, msg);
                return buf;
        }
        snprintf(buf, len, "%s", json_object_to_json_string_ext(a, JSON_C_TO_STRING_PLAIN));
        json_object_put(a);
        return buf;
}

static void test_qmp_args(void **state)
{
        char b[2048];

        assert_string_equal(
            args_json((struct vmctl_cmd){.op = VMCTL_MOVE_ABS, .x = 100, .y = 32767}, b, sizeof(b)),
            "{\"events\":[{\"type\":\"abs\",\"data\":{\"axis\":\"x\",\"value\":100}},"
            "{\"type\":\"abs\",\"data\":{\"axis\":\"y\",\"value\":32767}}]}");
        assert_string_equal(
            args_json((struct vmctl_cmd){.op = VMCTL_MOVE_REL, .x = -5, .y = 7}, b, sizeof(b)),
            "{\"events\":[{\"type\":\"rel\",\"data\":{\"axis\":\"x\",\"value\":-5}},"
            "{\"type\":\"rel\",\"data\":{\"axis\":\"y\",\"value\":7}}]}");
        assert_string_equal(
            args_json((struct vmctl_cmd){.op = VMCTL_BUTTON, .code = VMCTL_BTN_RIGHT, .value = 1}, b,
                      sizeof(b)),
            "{\"events\":[{\"type\":\"btn\",\"data\":{\"button\":\"right\",\"down\":true}}]}");
        assert_string_equal(
            args_json((struct vmctl_cmd){.op = VMCTL_KEY, .code = KEY_ENTER, .value = 0}, b, sizeof(b)),
            "{\"events\":[{\"type\":\"key\",\"data\":{\"key\":{\"type\":\"qcode\",\"data\":\"ret\"},\"down\":"
            "false}}]}");
        assert_string_equal(
            args_json((struct vmctl_cmd){.op = VMCTL_WHEEL, .y = -2}, b, sizeof(b)),
            "{\"events\":[{\"type\":\"btn\",\"data\":{\"button\":\"wheel-down\",\"down\":true}},"
            "{\"type\":\"btn\",\"data\":{\"button\":\"wheel-down\",\"down\":false}},"
            "{\"type\":\"btn\",\"data\":{\"button\":\"wheel-down\",\"down\":true}},"
            "{\"type\":\"btn\",\"data\":{\"button\":\"wheel-down\",\"down\":false}}]}");
        /* KEY 84 has no QKeyCode: refused, not guessed */
        assert_non_null(
            strstr(args_json((struct vmctl_cmd){.op = VMCTL_KEY, .code = 84, .value = 1}, b, sizeof(b)),
                   "no QEMU qcode"));
        assert_string_equal(vmctl_qcode(KEY_A), "a");
        assert_string_equal(vmctl_qcode(KEY_LEFTCTRL), "ctrl");
        assert_string_equal(vmctl_qcode(KEY_RIGHTCTRL), "ctrl_r");
        assert_null(vmctl_qcode(0));
        assert_null(vmctl_qcode(100000));
}

static void test_qmp_result(void **state)
{
        char msg[VMCTL_MSG_MAX];
        struct qmp_reply ok = {0};
        struct qmp_reply notrun = {
            .error = -EREMOTEIO, .error_class = "GenericError", .reason = "VM not running"};
        struct qmp_reply noabs = {.error = -EREMOTEIO,
                                  .error_class = "GenericError",
                                  .reason = "Input handler not found for event type abs"};
        struct qmp_reply other = {
            .error = -EREMOTEIO, .error_class = "GenericError", .reason = "Invalid parameter"};
        struct qmp_reply gone = {.error = -EPIPE, .reason = "connection closed"};

        assert_int_equal(vmctl_qmp_result(&ok, msg), 0);
        assert_int_equal(vmctl_qmp_result(&notrun, msg), -EHOSTDOWN);
        assert_non_null(strstr(msg, "VM not running"));
        assert_int_equal(vmctl_qmp_result(&noabs, msg), -ENODEV);
        assert_non_null(strstr(msg, "no absolute pointer device"));
        assert_int_equal(vmctl_qmp_result(&other, msg), -EIO);
        assert_non_null(strstr(msg, "Invalid parameter"));
        assert_int_equal(vmctl_qmp_result(&gone, msg), -EPIPE);
        assert_non_null(strstr(msg, "connection closed"));
}

/* ---- the object over a fake QMP transport ---- */

struct fake {
        int sent;
        void *last_token;
        char last[1024];
        int done_n, done_result;
        void *done_token;
        char done_msg[VMCTL_MSG_MAX];
        int fail_execute;
};

static int fake_execute(void *ctx, const char *command, struct json_object *args, void *token, char *msg)
{
        struct fake *f = ctx;
        if (f->fail_execute) {
                snprintf(msg, VMCTL_MSG_MAX, "QEMU not connected: test");
                return f->fail_execute;
        }
        assert_string_equal(command, "input-send-event");
        snprintf(f->last, sizeof(f->last), "%s",
                 json_object_to_json_string_ext(args, JSON_C_TO_STRING_PLAIN));
        f->last_token = token;
        f->sent++;
        return 0;
}

static void fake_done(void *userdata, void *token, int result, const char *msg)
{
        struct fake *f = userdata;
        f->done_n++;
        f->done_token = token;
        f->done_result = result;
        snprintf(f->done_msg, sizeof(f->done_msg), "%s", msg);
}

static struct vmctl *open_qmp(struct fake *f)
{
        static struct vmctl_qmp_transport t;
        struct vmctl_config cfg = VMCTL_CONFIG_INIT;
        struct vmctl *vm = NULL;
        char msg[VMCTL_MSG_MAX];

        t = (struct vmctl_qmp_transport){.execute = fake_execute, .ctx = f};
        cfg.vm_name = "unit";
        cfg.uinput_socket = NULL;
        cfg.no_uinput = true;
        cfg.qmp = &t;
        cfg.done = fake_done;
        cfg.userdata = f;
        assert_int_equal(vmctl_open(&cfg, &vm, msg), 0);
        assert_int_equal(vmctl_get_backend(vm), VMCTL_BACKEND_QMP);
        assert_non_null(strstr(msg, "qmp"));
        return vm;
}

static int key(struct vmctl *vm, uint32_t code, int32_t value, void *token, char *msg)
{
        struct vmctl_cmd c = {.op = VMCTL_KEY, .code = code, .value = value};
        return vmctl_submit(vm, &c, token, msg);
}

static void test_qmp_backend(void **state)
{
        struct fake f = {0};
        struct vmctl *vm = open_qmp(&f);
        char msg[VMCTL_MSG_MAX];
        int tok;

        struct vmctl_cmd mv = {.op = VMCTL_MOVE_ABS, .x = 1, .y = 2};
        assert_int_equal(vmctl_submit(vm, &mv, &tok, msg), 0);
        assert_int_equal(f.sent, 1);
        assert_ptr_equal(f.last_token, &tok);
        assert_int_equal(f.done_n, 0); /* async: nothing until the reply */
        struct qmp_reply rep = {
            .error = -EREMOTEIO, .error_class = "GenericError", .reason = "VM not running"};
        vmctl_qmp_reply(vm, &tok, &rep);
        assert_int_equal(f.done_n, 1);
        assert_ptr_equal(f.done_token, &tok);
        assert_int_equal(f.done_result, -EHOSTDOWN);

        /* a refusal before any effect: no completion, a message */
        struct vmctl_cmd bad = {.op = VMCTL_MOVE_ABS, .x = -3};
        assert_int_equal(vmctl_submit(vm, &bad, &tok, msg), -ERANGE);
        assert_int_equal(f.sent, 1);
        f.fail_execute = -ENOTCONN;
        assert_int_equal(vmctl_submit(vm, &mv, &tok, msg), -ENOTCONN);
        assert_string_equal(msg, "QEMU not connected: test");
        f.fail_execute = 0;
        vmctl_free(vm);
}

static void test_grab_toggle_guard(void **state)
{
        struct fake f = {0};
        struct vmctl *vm = open_qmp(&f);
        char msg[VMCTL_MSG_MAX];

        assert_int_equal(key(vm, KEY_LEFTCTRL, 1, NULL, msg), 0);
        assert_int_equal(key(vm, KEY_RIGHTCTRL, 1, NULL, msg), -EPERM);
        assert_non_null(strstr(msg, "grab toggle"));
        assert_int_equal(key(vm, KEY_C, 1, NULL, msg), 0); /* ctrl+c is fine */
        assert_int_equal(key(vm, KEY_C, 0, NULL, msg), 0);
        assert_int_equal(key(vm, KEY_LEFTCTRL, 0, NULL, msg), 0);
        assert_int_equal(key(vm, KEY_RIGHTCTRL, 1, NULL, msg), 0);
        assert_int_equal(key(vm, KEY_LEFTCTRL, 1, NULL, msg), -EPERM);
        int sent = f.sent;
        assert_int_equal(vmctl_release_all(vm), 0); /* releases the right ctrl */
        assert_int_equal(f.sent, sent + 1);
        assert_non_null(strstr(f.last, "\"ctrl_r\"},\"down\":false"));
        assert_int_equal(key(vm, KEY_LEFTCTRL, 1, NULL, msg), 0);
        vmctl_free(vm);
}

/* ---- uinput frames, written to pipes instead of /dev/uinput ---- */

static void test_uinput_frames(void **state)
{
        struct input_event ev[4 * VMCTL_WHEEL_MAX + 4];
        char msg[VMCTL_MSG_MAX];
        int dev;

        struct vmctl_cmd mv = {.op = VMCTL_MOVE_ABS, .x = 10, .y = 20};
        assert_int_equal(vmctl_uinput_events(&mv, ev, 256, &dev, msg), 3);
        assert_int_equal(dev, 1);
        assert_int_equal(ev[0].type, EV_ABS);
        assert_int_equal(ev[0].code, ABS_X);
        assert_int_equal(ev[0].value, 10);
        assert_int_equal(ev[1].code, ABS_Y);
        assert_int_equal(ev[1].value, 20);
        assert_int_equal(ev[2].type, EV_SYN);
        struct vmctl_cmd zero = {.op = VMCTL_MOVE_REL};
        assert_int_equal(vmctl_uinput_events(&zero, ev, 256, &dev, msg), 0);
        struct vmctl_cmd k = {.op = VMCTL_KEY, .code = KEY_Q, .value = 1};
        assert_int_equal(vmctl_uinput_events(&k, ev, 256, &dev, msg), 2);
        assert_int_equal(dev, 0);
        struct vmctl_cmd w = {.op = VMCTL_WHEEL, .y = 2, .x = -1};
        assert_int_equal(vmctl_uinput_events(&w, ev, 256, &dev, msg), 6); /* one frame per click */
        assert_int_equal(ev[0].code, REL_WHEEL);
        assert_int_equal(ev[0].value, 1);
        assert_int_equal(ev[4].code, REL_HWHEEL);
        assert_int_equal(ev[4].value, -1);
}

static int drain(int fd, struct input_event *ev, int cap)
{
        ssize_t n = read(fd, ev, (size_t)cap * sizeof(*ev));
        return n < 0 ? 0 : (int)(n / (ssize_t)sizeof(*ev));
}

static void test_uinput_backend_on_pipes(void **state)
{
        int kp[2], pp[2], tok = 0;
        struct fake f = {0};
        struct vmctl_config cfg = VMCTL_CONFIG_INIT;
        struct vmctl *vm = NULL;
        static struct input_event ev[1024];
        char msg[VMCTL_MSG_MAX];

        assert_int_equal(pipe2(kp, O_NONBLOCK | O_CLOEXEC), 0);
        assert_int_equal(pipe2(pp, O_NONBLOCK | O_CLOEXEC), 0);
        cfg.vm_name = "unit";
        cfg.uinput_kbd_fd = kp[1];
        cfg.uinput_ptr_fd = pp[1];
        cfg.done = fake_done;
        cfg.userdata = &f;
        assert_int_equal(vmctl_open(&cfg, &vm, msg), 0);
        assert_int_equal(vmctl_get_backend(vm), VMCTL_BACKEND_UINPUT);
        /* adopting devices releases every key and button first */
        int n = drain(kp[0], ev, 1024);
        assert_true(n > 500);
        assert_int_equal(ev[n - 1].type, EV_SYN);
        assert_int_equal(drain(pp[0], ev, 1024), 4);

        struct vmctl_cmd mv = {.op = VMCTL_MOVE_ABS, .x = 300, .y = 400};
        assert_int_equal(vmctl_submit(vm, &mv, &tok, msg), 0);
        assert_int_equal(f.done_n, 1); /* synchronous completion */
        assert_int_equal(f.done_result, 0);
        assert_ptr_equal(f.done_token, &tok);
        struct vmctl_cmd click = {.op = VMCTL_BUTTON, .code = VMCTL_BTN_LEFT, .value = 1};
        assert_int_equal(vmctl_submit(vm, &click, &tok, msg), 0);
        assert_int_equal(key(vm, KEY_H, 1, &tok, msg), 0);
        assert_int_equal(drain(pp[0], ev, 1024), 5);
        assert_int_equal(ev[0].code, ABS_X);
        assert_int_equal(ev[1].code, ABS_Y);
        assert_int_equal(ev[2].type, EV_SYN);
        assert_int_equal(ev[3].code, BTN_LEFT);
        assert_int_equal(ev[3].value, 1);
        assert_int_equal(drain(kp[0], ev, 1024), 2);
        assert_int_equal(ev[0].code, KEY_H);

        /* a broken device: the write error comes back, no completion */
        close(pp[0]);
        f.done_n = 0;
        assert_int_equal(vmctl_submit(vm, &mv, &tok, msg), -EPIPE);
        assert_int_equal(f.done_n, 0);
        assert_non_null(strstr(msg, "uinput write"));
        vmctl_free(vm);
        close(kp[0]);
        close(kp[1]);
        close(pp[1]);
}

/* ---- the holder handshake ---- */

struct srv {
        int lfd;
        struct vmctl_uinput_pair p;
        const char *raw; /* send this text instead */
};

static void *serve_one(void *arg)
{
        struct srv *s = arg;
        int c = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (c >= 0) {
                if (s->raw)
                        (void)send(c, s->raw, strlen(s->raw), MSG_NOSIGNAL);
                else
                        (void)vmctl_holder_send(c, &s->p);
                close(c);
        }
        return NULL;
}

static void test_holder(void **state)
{
        char path[108], kn[64], pn[64], msg[VMCTL_MSG_MAX];
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        struct srv s = {0};
        int kp[2], pp[2], kfd = -1, pfd = -1;
        pthread_t th;

        snprintf(path, sizeof(path), "/tmp/vmsig-test-holder-%d.sock", (int)getpid());
        strcpy(sa.sun_path, path);
        unlink(path);
        s.lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        assert_int_equal(bind(s.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(listen(s.lfd, 4), 0);
        assert_int_equal(pipe2(kp, O_CLOEXEC), 0);
        assert_int_equal(pipe2(pp, O_CLOEXEC), 0);
        s.p.kbd_fd = kp[1];
        s.p.ptr_fd = pp[1];
        strcpy(s.p.kbd_node, "/dev/input/event7");
        strcpy(s.p.ptr_node, "/dev/input/event8");

        pthread_create(&th, NULL, serve_one, &s);
        assert_int_equal(vmctl_holder_fetch(path, &kfd, &pfd, kn, pn, sizeof(kn), msg), 0);
        pthread_join(th, NULL);
        assert_string_equal(kn, "/dev/input/event7");
        assert_string_equal(pn, "/dev/input/event8");
        assert_int_equal(write(kfd, "k", 1), 1); /* the received fds are the pipes */
        char c;
        assert_int_equal(read(kp[0], &c, 1), 1);
        assert_int_equal(c, 'k');

        /* the adapter path: vmctl_open with the socket picks uinput */
        struct fake f = {0};
        struct vmctl_config cfg = VMCTL_CONFIG_INIT;
        struct vmctl *vm = NULL;
        cfg.vm_name = "unit";
        cfg.uinput_socket = path;
        cfg.done = fake_done;
        cfg.userdata = &f;
        pthread_create(&th, NULL, serve_one, &s);
        assert_int_equal(vmctl_open(&cfg, &vm, msg), 0);
        pthread_join(th, NULL);
        assert_int_equal(vmctl_get_backend(vm), VMCTL_BACKEND_UINPUT);
        assert_string_equal(vmctl_pointer_node(vm), "/dev/input/event8");
        vmctl_free(vm);

        /* a holder speaking nonsense (and no fds) is refused */
        s.raw = "hello";
        pthread_create(&th, NULL, serve_one, &s);
        assert_int_equal(vmctl_holder_fetch(path, &kfd, &pfd, kn, pn, sizeof(kn), msg), -EPROTO);
        pthread_join(th, NULL);
        /* a given socket that is not there is an error, not a silent QMP fallback */
        unlink(path);
        assert_int_equal(vmctl_open(&cfg, &vm, msg), -ENOENT);
        assert_non_null(strstr(msg, "uinput holder"));

        assert_int_equal(vmctl_holder_parse("vmsig-uinput 1 kbd=/a ptr=/b", 28, kn, pn, sizeof(kn)), 0);
        assert_int_equal(vmctl_holder_parse("vmsig-uinput 1 kbd=/a ptr=/b x", 30, kn, pn, sizeof(kn)),
                         -EPROTO);
        assert_int_equal(vmctl_holder_parse("vmsig-uinput 1 ptr=/b kbd=/a", 28, kn, pn, sizeof(kn)), -EPROTO);
        close(s.lfd);
        close(kfd);
        close(pfd);
        close(kp[0]);
        close(kp[1]);
        close(pp[0]);
        close(pp[1]);
}

/* ---- real uinput devices (only where /dev/uinput exists) ---- */

static void test_uinput_real(void **state)
{
        struct vmctl_uinput_pair p;
        char msg[VMCTL_MSG_MAX];

        if (vmctl_uinput_probe(msg) < 0) {
                printf("# SKIP test_uinput_real: %s\n", msg);
                skip();
        }
        assert_int_equal(vmctl_uinput_create("unit-test", &p, msg), 0);
        assert_non_null(strstr(p.kbd_node, "/dev/input/event"));
        assert_non_null(strstr(p.ptr_node, "/dev/input/event"));
        int efd = open(p.ptr_node, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        assert_true(efd >= 0);
        char name[128] = "";
        ioctl(efd, EVIOCGNAME(sizeof(name)), name);
        assert_string_equal(name, "vmsig unit-test pointer");
        struct input_absinfo ai;
        assert_int_equal(ioctl(efd, EVIOCGABS(ABS_X), &ai), 0);
        assert_int_equal(ai.maximum, VMCTL_ABS_MAX);
        assert_int_equal(ai.fuzz, 0);

        struct vmctl_config cfg = VMCTL_CONFIG_INIT;
        struct vmctl *vm = NULL;
        cfg.vm_name = "unit-test";
        cfg.uinput_kbd_fd = p.kbd_fd;
        cfg.uinput_ptr_fd = p.ptr_fd;
        assert_int_equal(vmctl_open(&cfg, &vm, msg), 0);
        struct vmctl_cmd mv = {.op = VMCTL_MOVE_ABS, .x = 123, .y = 456};
        assert_int_equal(vmctl_submit(vm, &mv, NULL, msg), 0);
        struct input_event ev[8];
        usleep(10000);
        ssize_t n = read(efd, ev, sizeof(ev));
        assert_true(n >= (ssize_t)(3 * sizeof(ev[0])));
        assert_int_equal(ev[0].code, ABS_X);
        assert_int_equal(ev[0].value, 123);
        assert_int_equal(ev[1].code, ABS_Y);
        assert_int_equal(ev[2].type, EV_SYN);
        close(efd);
        vmctl_free(vm);
        vmctl_uinput_pair_close(&p);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_validate),
            cmocka_unit_test(test_qmp_args),
            cmocka_unit_test(test_qmp_result),
            cmocka_unit_test(test_qmp_backend),
            cmocka_unit_test(test_grab_toggle_guard),
            cmocka_unit_test(test_uinput_frames),
            cmocka_unit_test(test_uinput_backend_on_pipes),
            cmocka_unit_test(test_holder),
            cmocka_unit_test(test_uinput_real),
        };
        signal(SIGPIPE, SIG_IGN); /* the "broken device" is a closed pipe */
        return cmocka_run_group_tests(tests, NULL, NULL);
}
#endif
