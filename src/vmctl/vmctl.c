/* SPDX-License-Identifier: MIT */
/* vmctl core: backend choice, the grab-toggle guard, and the QMP backend
 * (input-send-event). Validation is in validate.c, the uinput side in
 * uinput.c. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>
#include <linux/input.h>

#include "host/qmp.h"
#include "vmctl/internal.h"

/* ---- the grab-toggle guard ---- */

static bool key_held(const struct vmctl *vm, uint32_t code)
{
        return vm->held[code / 64] & (UINT64_C(1) << (code % 64));
}

static void key_set(struct vmctl *vm, uint32_t code, bool down)
{
        if (down)
                vm->held[code / 64] |= UINT64_C(1) << (code % 64);
        else
                vm->held[code / 64] &= ~(UINT64_C(1) << (code % 64));
}

/* QEMU's default grab-toggle (ctrl-ctrl) fires when both Ctrl keys were down
 * together: refuse the press that would make it so, on every backend, so a
 * control sees the same rule whichever driver runs. */
static int guard(const struct vmctl *vm, const struct vmctl_cmd *c, char *msg)
{
        if (c->op != VMCTL_KEY || c->value != 1)
                return 0;
        if ((c->code == KEY_LEFTCTRL && key_held(vm, KEY_RIGHTCTRL)) ||
            (c->code == KEY_RIGHTCTRL && key_held(vm, KEY_LEFTCTRL))) {
                vmctl_msg(msg, "refused: both Ctrl keys held together is QEMU's input grab toggle");
                return -EPERM;
        }
        return 0;
}

/* ---- QMP backend ---- */

static struct json_object *ev_obj(const char *type, struct json_object *data)
{
        struct json_object *o = json_object_new_object();

        if (!o || !data) {
                json_object_put(o);
                json_object_put(data);
                return NULL;
        }
        json_object_object_add(o, "type", json_object_new_string(type));
        json_object_object_add(o, "data", data);
        return o;
}

static struct json_object *axis_ev(const char *type, const char *axis, int32_t v)
{
        struct json_object *d = json_object_new_object();

        if (d) {
                json_object_object_add(d, "axis", json_object_new_string(axis));
                json_object_object_add(d, "value", json_object_new_int(v));
        }
        return ev_obj(type, d);
}

static struct json_object *btn_ev(const char *button, bool down)
{
        struct json_object *d = json_object_new_object();

        if (d) {
                json_object_object_add(d, "button", json_object_new_string(button));
                json_object_object_add(d, "down", json_object_new_boolean(down));
        }
        return ev_obj("btn", d);
}

static struct json_object *key_ev(const char *qcode, bool down)
{
        struct json_object *d = json_object_new_object(), *k = json_object_new_object();

        if (!d || !k) {
                json_object_put(d);
                json_object_put(k);
                return NULL;
        }
        json_object_object_add(k, "type", json_object_new_string("qcode"));
        json_object_object_add(k, "data", json_object_new_string(qcode));
        json_object_object_add(d, "key", k);
        json_object_object_add(d, "down", json_object_new_boolean(down));
        return ev_obj("key", d);
}

static int push(struct json_object *arr, struct json_object *ev)
{
        if (!ev)
                return -ENOMEM;
        if (json_object_array_add(arr, ev) < 0) {
                json_object_put(ev);
                return -ENOMEM;
        }
        return 0;
}

static int wheel_clicks(struct json_object *arr, int32_t n, const char *pos, const char *neg)
{
        const char *b = n > 0 ? pos : neg;
        int r = 0;

        for (int32_t i = 0; i < (n > 0 ? n : -n) && r == 0; i++) {
                r = push(arr, btn_ev(b, true));
                if (r == 0)
                        r = push(arr, btn_ev(b, false));
        }
        return r;
}

int vmctl_qmp_args(const struct vmctl_cmd *c, struct json_object **ret, char *msg)
{
        static const char *const buttons[] = {
            [VMCTL_BTN_LEFT] = "left", [VMCTL_BTN_RIGHT] = "right", [VMCTL_BTN_MIDDLE] = "middle"};
        struct json_object *args, *arr;
        const char *qcode = NULL;
        int r = vmctl_validate(c, msg);

        if (r < 0)
                return r;
        if (c->op == VMCTL_KEY && !(qcode = vmctl_qcode(c->code))) {
                vmctl_msg(msg, "key code %u has no QEMU qcode", c->code);
                return -EOPNOTSUPP;
        }
        args = json_object_new_object();
        arr = json_object_new_array();
        if (!args || !arr) {
                json_object_put(args);
                json_object_put(arr);
                return -ENOMEM;
        }
        json_object_object_add(args, "events", arr);
        switch (c->op) {
        case VMCTL_MOVE_ABS:
        case VMCTL_MOVE_REL: {
                /* QEMU queues every event of one call and syncs once at the
                 * end: x and y arrive in the guest as ONE move. */
                const char *t = c->op == VMCTL_MOVE_ABS ? "abs" : "rel";
                r = push(arr, axis_ev(t, "x", c->x));
                if (r == 0)
                        r = push(arr, axis_ev(t, "y", c->y));
                break;
        }
        case VMCTL_BUTTON:
                r = push(arr, btn_ev(buttons[c->code], c->value == 1));
                break;
        case VMCTL_KEY:
                r = push(arr, key_ev(qcode, c->value == 1));
                break;
        case VMCTL_WHEEL:
                r = wheel_clicks(arr, c->y, "wheel-up", "wheel-down");
                if (r == 0)
                        r = wheel_clicks(arr, c->x, "wheel-right", "wheel-left");
                break;
        }
        if (r < 0) {
                json_object_put(args);
                return r;
        }
        *ret = args;
        return 0;
}

int vmctl_qmp_result(const struct qmp_reply *rep, char *msg)
{
        const char *why = rep->reason ? rep->reason : "";

        if (rep->error == 0) {
                vmctl_msg(msg, "ok");
                return 0;
        }
        if (rep->error != -EREMOTEIO) {
                vmctl_msg(msg, "QMP: %s", why[0] ? why : strerror(-rep->error));
                return rep->error;
        }
        /* desc is for people; the few we map to an errno are QEMU's
         * documented failures of input-send-event (ui/input.c). The text is
         * always passed on verbatim. */
        if (strstr(why, "not running")) {
                vmctl_msg(msg, "VM not running (QEMU: %s)", why);
                return -EHOSTDOWN;
        }
        if (strstr(why, "handler not found") && strstr(why, "abs")) {
                vmctl_msg(
                    msg,
                    "no absolute pointer device in the guest, add usb-tablet or virtio-tablet (QEMU: %s)",
                    why);
                return -ENODEV;
        }
        if (strstr(why, "handler not found")) {
                vmctl_msg(msg, "no input device in the guest for this event (QEMU: %s)", why);
                return -ENODEV;
        }
        if (rep->error_class && !strcmp(rep->error_class, "DeviceNotFound")) {
                vmctl_msg(msg, "QEMU: %s", why);
                return -ENODEV;
        }
        vmctl_msg(msg, "QEMU refused input-send-event: %s", why);
        return -EIO;
}

static int qmp_submit(struct vmctl *vm, const struct vmctl_cmd *c, void *token, char *msg)
{
        struct json_object *args;
        int r = vmctl_qmp_args(c, &args, msg);

        if (r < 0)
                return r;
        if (msg)
                msg[0] = 0;
        r = vm->qmp.execute(vm->qmp.ctx, "input-send-event", args, token, msg);
        json_object_put(args);
        if (r < 0 && msg && !msg[0])
                vmctl_msg(msg, "QMP: %s", strerror(-r));
        return r;
}

void vmctl_qmp_reply(struct vmctl *vm, void *token, const struct qmp_reply *reply)
{
        char msg[VMCTL_MSG_MAX];
        int r = vmctl_qmp_result(reply, msg);

        vm->done(vm->userdata, token, r, msg);
}

/* ---- the object ---- */

int vmctl_submit(struct vmctl *vm, const struct vmctl_cmd *c, void *token, char *msg)
{
        int r = vmctl_validate(c, msg);

        if (r < 0)
                return r;
        r = guard(vm, c, msg);
        if (r < 0)
                return r;
        if (vm->backend == VMCTL_BACKEND_UINPUT)
                r = vmctl_uinput_submit(vm, c, msg);
        else
                r = qmp_submit(vm, c, token, msg);
        if (r < 0)
                return r;
        /* Held keys are tracked at submit: a press that later fails over QMP
         * stays "held" for the guard, which only errs on the safe side. */
        if (c->op == VMCTL_KEY)
                key_set(vm, c->code, c->value == 1);
        else if (c->op == VMCTL_BUTTON)
                key_set(vm, BTN_LEFT + c->code - 1, c->value == 1);
        if (vm->backend == VMCTL_BACKEND_UINPUT)
                vm->done(vm->userdata, token, 0, "ok");
        return 0;
}

int vmctl_release_all(struct vmctl *vm)
{
        int r = 0;

        for (uint32_t code = 1; code <= VMCTL_KEY_MAX; code++) {
                if (!key_held(vm, code))
                        continue;
                struct vmctl_cmd c = {.op = VMCTL_KEY, .code = code, .value = 0};
                if (code >= BTN_LEFT && code <= BTN_MIDDLE) {
                        c.op = VMCTL_BUTTON;
                        c.code = code - BTN_LEFT + 1;
                }
                int k = vm->backend == VMCTL_BACKEND_UINPUT ? vmctl_uinput_submit(vm, &c, NULL)
                                                            : qmp_submit(vm, &c, NULL, NULL);
                if (k < 0 && r == 0)
                        r = k;
                key_set(vm, code, false);
        }
        return r;
}

static void noop_done(void *userdata, void *token, int result, const char *msg)
{
}

int vmctl_open(const struct vmctl_config *cfg, struct vmctl **ret, char *msg)
{
        struct vmctl *vm;
        char path[VMCTL_PATH_MAX];
        int r;

        if (!cfg || !cfg->vm_name || !cfg->vm_name[0] || !ret) {
                vmctl_msg(msg, "no VM name");
                return -EINVAL;
        }
        vm = calloc(1, sizeof(*vm));
        if (!vm)
                return -ENOMEM;
        vm->kbd_fd = vm->ptr_fd = -1;
        vm->done = cfg->done ? cfg->done : noop_done;
        vm->userdata = cfg->userdata;
        if (cfg->qmp)
                vm->qmp = *cfg->qmp;

        if (!cfg->no_uinput && cfg->uinput_kbd_fd >= 0 && cfg->uinput_ptr_fd >= 0) {
                /* given fds (e.g. from the systemd fd store) */
                vm->kbd_fd = fcntl(cfg->uinput_kbd_fd, F_DUPFD_CLOEXEC, 3);
                vm->ptr_fd = fcntl(cfg->uinput_ptr_fd, F_DUPFD_CLOEXEC, 3);
                if (vm->kbd_fd < 0 || vm->ptr_fd < 0) {
                        r = -errno;
                        vmctl_free(vm);
                        return r;
                }
                vm->backend = VMCTL_BACKEND_UINPUT;
                vmctl_msg(msg, "uinput: given fds");
        } else if (!cfg->no_uinput) {
                const char *sock = cfg->uinput_socket;
                struct stat st;
                if (!sock) {
                        snprintf(path, sizeof(path), "%s/%s.sock", VMCTL_UINPUT_DIR, cfg->vm_name);
                        sock = path;
                }
                /* A given socket must work; the default one only if present. */
                if (cfg->uinput_socket || stat(sock, &st) == 0) {
                        r = vmctl_holder_fetch(sock, &vm->kbd_fd, &vm->ptr_fd, vm->kbd_node, vm->ptr_node,
                                               sizeof(vm->kbd_node), msg);
                        if (r < 0 && (cfg->uinput_socket || !vm->qmp.execute)) {
                                vmctl_free(vm);
                                return r;
                        }
                        if (r == 0) {
                                vm->backend = VMCTL_BACKEND_UINPUT;
                                vmctl_msg(msg, "uinput: %s (keyboard %s, pointer %s)", sock, vm->kbd_node,
                                          vm->ptr_node);
                        }
                }
        }
        if (vm->backend == VMCTL_BACKEND_NONE && vm->qmp.execute) {
                vm->backend = VMCTL_BACKEND_QMP;
                vmctl_msg(msg, "qmp: input-send-event (no uinput holder for '%s')", cfg->vm_name);
        }
        if (vm->backend == VMCTL_BACKEND_NONE) {
                vmctl_msg(msg, "no input backend: no uinput devices and no QMP transport");
                vmctl_free(vm);
                return -ENODEV;
        }
        if (vm->backend == VMCTL_BACKEND_UINPUT) {
                /* Adopted devices may have keys left down by a previous
                 * owner (a daemon that died mid-chord): release everything.
                 * The kernel drops releases of keys that are up. */
                (void)vmctl_uinput_reset(vm);
        }
        *ret = vm;
        return 0;
}

struct vmctl *vmctl_free(struct vmctl *vm)
{
        if (!vm)
                return NULL;
        if (vm->kbd_fd >= 0)
                close(vm->kbd_fd);
        if (vm->ptr_fd >= 0)
                close(vm->ptr_fd);
        free(vm);
        return NULL;
}

enum vmctl_backend vmctl_get_backend(const struct vmctl *vm)
{
        return vm ? vm->backend : VMCTL_BACKEND_NONE;
}

const char *vmctl_pointer_node(const struct vmctl *vm)
{
        return vm->ptr_node;
}
