/* SPDX-License-Identifier: MIT */
/* The real input adapter against a real QEMU (TCG) and a guest that prints
 * the input events its kernel gets (build-guest.sh: vmsig-input-reader).
 *
 *  - QMP backend (the one these machines have): a typed word, then an
 *    absolute move and a click, injected through a bus under an input lease,
 *    each acknowledged with QEMU's real result, and found in the guest's
 *    output IN ORDER (the move's X and Y in one frame); QEMU's refusals as
 *    ACKs ("VM not running", "no absolute pointer device"); FF; the
 *    grab-toggle guard; every vmctl qcode exists in QEMU's schema.
 *  - uinput backend: only where /dev/uinput exists (SKIP with the reason
 *    otherwise): the pair held by an in-test holder, QEMU reading it with
 *    -object input-linux, same word and click seen by the guest. */
#include <errno.h>
#include <json-c/json.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cmocka.h>

#include "vm/vm_bus.h"
#include "vm/vm_guest.h"

#ifndef VMCTL_ABSENT
#include "vmctl/vmctl.h"
#endif

#define KEY_LEFTCTRL  29
#define KEY_RIGHTCTRL 97
#define BTN_LEFT_CODE 272

struct fx {
        struct vb b;
        struct vm_guest g;
        char dir[128];
        char side[200], a_side[260];
        long t0;
};

static bool guest_has_reader(void)
{
        const char *dir = getenv("VMSIG_GUEST_DIR");
        char path[512], line[256];
        bool yes = false;
        if (!dir)
                return false;
        snprintf(path, sizeof(path), "%s/guest.env", dir);
        FILE *f = fopen(path, "re");
        if (!f)
                return false;
        while (fgets(line, sizeof(line), f))
                if (!strncmp(line, "INPUT_READER=1", 14))
                        yes = true;
        fclose(f);
        return yes;
}

static int setup(void **state)
{
        struct fx *f = calloc(1, sizeof(*f));
        snprintf(f->dir, sizeof(f->dir), "/tmp/vmsig-input.XXXXXX");
        if (!mkdtemp(f->dir))
                return -1;
        snprintf(f->side, sizeof(f->side), "%s/side.sock", f->dir);
        snprintf(f->a_side, sizeof(f->a_side), "unix:%s,server=on,wait=off", f->side);
        f->t0 = vm_guest_now_ms();
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fx *f = *state;
        char shm[256];
        struct stat st;
        snprintf(shm, sizeof(shm), "%s", f->g.shm);
        vb_free(&f->b);
        vm_guest_stop(&f->g);
        unlink(f->side);
        char p[200];
        snprintf(p, sizeof(p), "%s/holder.sock", f->dir);
        unlink(p);
        rmdir(f->dir);
        if (shm[0])
                assert_int_not_equal(stat(shm, &st), 0); /* nothing left in /dev/shm */
        printf("# total %ld ms\n", vm_guest_now_ms() - f->t0);
        free(f);
        return 0;
}

static void start_qemu(struct fx *f, const char *const *more)
{
        const char *extra[16] = {"-qmp", f->a_side};
        size_t n = 2;
        for (; more && *more && n < 15; more++)
                extra[n++] = *more;
        struct vm_guest_opts o = {.extra = extra};
        vm_guest_stop(&f->g);
        assert_int_equal(vm_guest_start(&f->g, "input", &o), 0);
}

static void attach_input(struct fx *f, const char *options, const char *expect_backend)
{
        const struct vmsig_adapter_ops *ops = vmsig_input_ops();
        struct vmsig_adapter_cfg cfg = {
            .vm_name = "vmsig-input-test", .qmp_path = f->g.qmp, .options = options};
        unsigned from = f->b.n;
        assert_int_equal(vmsig_bus_attach(f->b.bus, f->b.ep, ops, &cfg), 0);
        int i = vb_wait_kind(&f->b, from, VMSIG_EV_DIAG, 5000);
        assert_true(i >= 0);
        const struct vmsig_diag_body *d = (const void *)f->b.ev[i].body;
        printf("# %s\n", d->msg);
        assert_non_null(strstr(d->msg, expect_backend));
}

static uint64_t send_input(struct fx *f, uint16_t kind, int32_t x, int32_t y, uint32_t code, int32_t value,
                           bool ff)
{
        struct vmsig_input_body in = {.x = x, .y = y, .code = code, .value = value};
        struct vmsig_event ev;
        vmsig_event_init(&ev, kind, f->b.ep, VMSIG_SRC_INPUT);
        ev.hdr.corr = ++f->b.corr;
        if (ff)
                ev.hdr.flags |= VMSIG_F_FF;
        vmsig_event_set_body(&ev, &in, sizeof(in));
        assert_int_equal(vmsig_control_send(f->b.ctl, &ev), 0);
        return ev.hdr.corr;
}

static const struct vmsig_ack_body *ack_of(struct fx *f, uint64_t corr, int timeout_ms)
{
        int i = vb_wait_ack(&f->b, corr, timeout_ms);
        assert_true(i >= 0);
        return vb_ack(&f->b.ev[i]);
}

/* Waits until a MOVE_ABS is accepted by QEMU (the shared QMP session is up). */
static void wait_connected(struct fx *f)
{
        for (long deadline = vm_guest_now_ms() + 15000;;) {
                const struct vmsig_ack_body *a =
                    ack_of(f, send_input(f, VMSIG_EV_MOVE_ABS, 1, 1, 0, 0, false), 5000);
                if (a->result == 0)
                        return;
                assert_int_equal(a->result, -ENOTCONN);
                assert_true(vm_guest_now_ms() < deadline);
                vb_pump(&f->b, 100);
        }
}

static void wait_guest_input(struct fx *f, const char *pointer_name)
{
        long t = vm_guest_now_ms();
        assert_int_equal(vm_guest_wait_serial(&f->g, "VMSIG-GUEST-READY", 90000), 0);
        printf("# guest ready after %ld ms\n", vm_guest_now_ms() - t);
        assert_int_equal(vm_guest_wait_serial(&f->g, "VMSIG-INPUT-READY", 60000), 0);
        assert_int_equal(vm_guest_wait_serial(&f->g, "AT Translated Set 2 keyboard", 60000), 0);
        if (pointer_name)
                assert_int_equal(vm_guest_wait_serial(&f->g, pointer_name, 60000), 0);
        printf("# guest input devices up after %ld ms\n", vm_guest_now_ms() - t);
}

/* ---- finding the injected input in the guest's output, in order ----
 *
 * Order is checked per guest device: the keyboard (PS/2, atkbd) and the
 * tablet (virtio) are separate devices with their own queues, and the guest
 * interleaves them as their interrupts come (a PS/2 keyboard is much slower
 * than virtio), so only the order within one device is a property of the
 * injection path. */

struct want {
        unsigned type, code;
        int value; /* ignored when any_value */
        bool any_value;
        bool adjacent; /* must be the very next event line of the device (same frame) */
};

/* The ev=N of the device whose name contains name, or -1. */
static int guest_dev(struct fx *f, const char *name)
{
        const char *t = vm_guest_serial_text(&f->g), *p = t;
        while ((p = strstr(p, "VMSIG-INPUT-DEV ev="))) {
                int n;
                const char *nl = strchr(p, '\n');
                const char *hit = strstr(p, name);
                if (sscanf(p, "VMSIG-INPUT-DEV ev=%d", &n) == 1 && hit && (!nl || hit < nl))
                        return n;
                p += 10;
        }
        return -1;
}

/* Each want must match a later event line of device dev than the previous
 * one. Returns how many matched; seen[] gets their values. */
static int match_in_order(const char *text, int dev, const struct want *w, int n, int *seen)
{
        const char *p = text;
        int k = 0;
        bool prev_matched = false;
        while (k < n) {
                const char *l = strstr(p, "VMSIG-INPUT ev="), *nl;
                int ev, value;
                unsigned type, code;
                if (!l || !(nl = strchr(l, '\n')))
                        break; /* no (complete) line left */
                p = nl + 1;
                if (sscanf(l, "VMSIG-INPUT ev=%d type=%u code=%u value=%d", &ev, &type, &code, &value) != 4 ||
                    ev != dev)
                        continue;
                if (type == w[k].type && code == w[k].code && (w[k].any_value || value == w[k].value)) {
                        seen[k++] = value;
                        prev_matched = true;
                } else if (w[k].adjacent && prev_matched) {
                        return k; /* a frame was split */
                } else {
                        prev_matched = false;
                }
        }
        return k;
}

static int wait_match(struct fx *f, size_t from, int dev, const struct want *w, int n, int *seen,
                      int timeout_ms)
{
        int k = 0;
        for (long deadline = vm_guest_now_ms() + timeout_ms;;) {
                const char *text = vm_guest_serial_text(&f->g);
                k = strlen(text) >= from ? match_in_order(text + from, dev, w, n, seen) : 0;
                if (k == n || vm_guest_now_ms() >= deadline)
                        return k;
                vb_pump(&f->b, 100);
        }
}

/* "vmsig" on a US layout */
static const uint32_t word[] = {47, 50, 31, 23, 34};

static void inject_word_and_click(struct fx *f, int32_t x, int32_t y, bool ff_keys)
{
        uint64_t corr[32];
        int n = 0;
        for (size_t i = 0; i < sizeof(word) / sizeof(word[0]); i++) {
                corr[n++] = send_input(f, VMSIG_EV_KEY, 0, 0, word[i], 1, ff_keys);
                corr[n++] = send_input(f, VMSIG_EV_KEY, 0, 0, word[i], 0, ff_keys);
        }
        int first_ptr = n;
        corr[n++] = send_input(f, VMSIG_EV_MOVE_ABS, x, y, 0, 0, false);
        corr[n++] = send_input(f, VMSIG_EV_BUTTON, 0, 0, VMSIG_BTN_LEFT, 1, false);
        corr[n++] = send_input(f, VMSIG_EV_BUTTON, 0, 0, VMSIG_BTN_LEFT, 0, false);
        long t = vm_guest_now_ms();
        for (int i = ff_keys ? first_ptr : 0; i < n; i++) {
                const struct vmsig_ack_body *a = ack_of(f, corr[i], 10000);
                if (a->result != 0)
                        printf("# ACK %d: %d %s\n", i, a->result, a->msg);
                assert_int_equal(a->result, 0);
        }
        printf("# %d commands acknowledged in %ld ms\n", n - (ff_keys ? first_ptr : 0),
               vm_guest_now_ms() - t);
}

static void expect_word_and_click(struct fx *f, size_t from, int32_t x, int32_t y)
{
        struct want kw[16], pw[8];
        int seen[16], nk = 0, np = 0;
        int kbd = guest_dev(f, "AT Translated Set 2 keyboard"), tab = guest_dev(f, "QEMU Virtio Tablet");
        assert_true(kbd >= 0 && tab >= 0);
        for (size_t i = 0; i < sizeof(word) / sizeof(word[0]); i++) {
                kw[nk++] = (struct want){1, word[i], 1, false, false};
                kw[nk++] = (struct want){1, word[i], 0, false, false};
        }
        /* QEMU's range is 0..0x7fff like vmsig's: the guest sees x, y as sent */
        pw[np++] = (struct want){3, 0, x, false, false}; /* ABS_X */
        pw[np++] = (struct want){3, 1, y, false, true};  /* ABS_Y, same frame */
        pw[np++] = (struct want){0, 0, 0, false, true};  /* SYN_REPORT closes it */
        pw[np++] = (struct want){1, BTN_LEFT_CODE, 1, false, false};
        pw[np++] = (struct want){1, BTN_LEFT_CODE, 0, false, false};
        long t = vm_guest_now_ms();
        int k = wait_match(f, from, kbd, kw, nk, seen, 15000);
        if (k != nk)
                printf("# keyboard (ev=%d): matched %d of %d; guest output:\n%s\n", kbd, k, nk,
                       vm_guest_serial_text(&f->g) + from);
        assert_int_equal(k, nk);
        long tk = vm_guest_now_ms() - t;
        k = wait_match(f, from, tab, pw, np, seen, 15000);
        if (k != np)
                printf("# tablet (ev=%d): matched %d of %d; guest output:\n%s\n", tab, k, np,
                       vm_guest_serial_text(&f->g) + from);
        assert_int_equal(k, np);
        printf("# guest saw the %d key events and the %d pointer events in order (keys within %ld ms, all "
               "within %ld ms)\n",
               nk, np, tk, vm_guest_now_ms() - t);
}

/* ---- QMP backend ---- */

static void test_qmp_backend(void **state)
{
        struct fx *f = *state;
        if (!vmsig_input_ops()) {
                printf("# SKIP: the real input adapter is not in this build (VMSIG_ARMED=OFF)\n");
                skip();
        }
        if (!guest_has_reader()) {
                printf("# SKIP: the test guest has no input reader (see build-guest.sh stderr)\n");
                skip();
        }
        const char *more[] = {"-device", "virtio-tablet-pci", NULL};
        start_qemu(f, more);
        wait_guest_input(f, "QEMU Virtio Tablet");
        assert_int_equal(vb_init(&f->b, "vmsig-input-test"), 0);
        attach_input(f, NULL, "qmp");

        /* no lease: refused by the core */
        const struct vmsig_ack_body *a = ack_of(f, send_input(f, VMSIG_EV_KEY, 0, 0, 30, 1, false), 5000);
        assert_int_equal(a->result, -EPERM);
        assert_int_equal(vb_lease(&f->b, VMSIG_LEASE_INPUT), 0);
        wait_connected(f);

        /* a word, then a move and a click: acknowledged, then seen in order */
        inject_word_and_click(f, 16384, 8192, false);
        expect_word_and_click(f, 0, 16384, 8192);

        /* fire-and-forget: no ACK on success */
        uint64_t ff = send_input(f, VMSIG_EV_MOVE_REL, 3, -2, 0, 0, true);
        uint64_t sync = send_input(f, VMSIG_EV_MOVE_ABS, 100, 200, 0, 0, false);
        assert_int_equal(ack_of(f, sync, 5000)->result, 0);
        vb_pump(&f->b, 200);
        assert_true(vb_wait_ack(&f->b, ff, 0) < 0);

        /* the grab-toggle guard */
        assert_int_equal(ack_of(f, send_input(f, VMSIG_EV_KEY, 0, 0, KEY_LEFTCTRL, 1, false), 5000)->result,
                         0);
        a = ack_of(f, send_input(f, VMSIG_EV_KEY, 0, 0, KEY_RIGHTCTRL, 1, false), 5000);
        assert_int_equal(a->result, -EPERM);
        printf("# both Ctrl keys: %s\n", a->msg);
        assert_int_equal(ack_of(f, send_input(f, VMSIG_EV_KEY, 0, 0, KEY_LEFTCTRL, 0, false), 5000)->result,
                         0);

        /* the stub's validation rules hold */
        assert_int_equal(ack_of(f, send_input(f, VMSIG_EV_MOVE_ABS, 40000, 0, 0, 0, false), 5000)->result,
                         -ERANGE);
        assert_int_equal(ack_of(f, send_input(f, VMSIG_EV_BUTTON, 0, 0, 9, 1, false), 5000)->result, -EINVAL);

        /* QEMU's own refusal: VM not running, also for FF */
        assert_int_equal(side_qmp(f->side, "stop", NULL), 0);
        a = ack_of(f, send_input(f, VMSIG_EV_MOVE_ABS, 5, 5, 0, 0, false), 5000);
        printf("# paused: %d %s\n", a->result, a->msg);
        assert_int_equal(a->result, -EHOSTDOWN);
        assert_non_null(strstr(a->msg, "VM not running"));
        a = ack_of(f, send_input(f, VMSIG_EV_KEY, 0, 0, 30, 1, true), 5000);
        assert_int_equal(a->result, -EHOSTDOWN);
        assert_int_equal(side_qmp(f->side, "cont", NULL), 0);

        /* after all that the guest still takes input (keys FF this time) */
        vb_pump(&f->b, 1000); /* let the guest print what came before */
        size_t from = strlen(vm_guest_serial_text(&f->g));
        inject_word_and_click(f, 30000, 2000, true);
        expect_word_and_click(f, from, 30000, 2000);

        /* a key left down when the input lease ends is released in the guest */
        vb_pump(&f->b, 500);
        from = strlen(vm_guest_serial_text(&f->g));
        assert_int_equal(ack_of(f, send_input(f, VMSIG_EV_KEY, 0, 0, word[0], 1, false), 5000)->result, 0);
        assert_int_equal(vmsig_control_lease_release(f->b.ctl, f->b.ep, VMSIG_LEASE_INPUT, ++f->b.corr), 0);
        struct want held[] = {{1, word[0], 1, false, false}, {1, word[0], 0, false, false}};
        int seen[2];
        int kbd = guest_dev(f, "AT Translated Set 2 keyboard");
        assert_int_equal(wait_match(f, from, kbd, held, 2, seen, 15000), 2);
        printf("# the key held at lease release was released in the guest\n");

#ifndef VMCTL_ABSENT
        /* every qcode vmctl uses exists in this QEMU's schema */
        struct json_object *schema = NULL;
        char reason[256];
        assert_int_equal(
            qmp_sync_execute(f->side, "query-qmp-schema", NULL, 10000, &schema, reason, sizeof(reason)), 0);
        struct json_object *values = NULL;
        for (size_t i = 0; i < json_object_array_length(schema) && !values; i++) {
                struct json_object *e = json_object_array_get_idx(schema, i), *vals;
                if (json_object_object_get_ex(e, "values", &vals) &&
                    strstr(json_object_to_json_string(vals), "\"ctrl_r\"") &&
                    strstr(json_object_to_json_string(vals), "\"kp_enter\""))
                        values = vals;
        }
        assert_non_null(values);
        const char *all = json_object_to_json_string(values);
        int checked = 0;
        for (uint32_t code = 1; code <= VMCTL_KEY_MAX; code++) {
                const char *q = vmctl_qcode(code);
                char quoted[64];
                if (!q)
                        continue;
                snprintf(quoted, sizeof(quoted), "\"%s\"", q);
                if (!strstr(all, quoted))
                        printf("# qcode '%s' (key %u) not in QEMU's QKeyCode\n", q, code);
                assert_non_null(strstr(all, quoted));
                checked++;
        }
        printf("# %d qcodes checked against query-qmp-schema\n", checked);
        json_object_put(schema);
#endif
}

/* No tablet: QEMU refuses absolute input, and the ACK says so. */
static void test_qmp_no_abs_device(void **state)
{
        struct fx *f = *state;
        if (!vmsig_input_ops()) {
                printf("# SKIP: the real input adapter is not in this build (VMSIG_ARMED=OFF)\n");
                skip();
        }
        start_qemu(f, NULL); /* the guest need not boot: QEMU checks its own devices */
        assert_int_equal(vb_init(&f->b, "vmsig-input-test"), 0);
        attach_input(f, NULL, "qmp");
        assert_int_equal(vb_lease(&f->b, VMSIG_LEASE_INPUT), 0);
        const struct vmsig_ack_body *a;
        for (long deadline = vm_guest_now_ms() + 15000;;) {
                a = ack_of(f, send_input(f, VMSIG_EV_MOVE_ABS, 100, 100, 0, 0, false), 5000);
                if (a->result != -ENOTCONN || vm_guest_now_ms() > deadline)
                        break;
                vb_pump(&f->b, 100);
        }
        printf("# no tablet: %d %s\n", a->result, a->msg);
        assert_int_equal(a->result, -ENODEV);
        assert_non_null(strstr(a->msg, "no absolute pointer device"));
        /* relative moves go to the PS/2 mouse QEMU always has */
        assert_int_equal(ack_of(f, send_input(f, VMSIG_EV_MOVE_REL, 1, 1, 0, 0, false), 5000)->result, 0);
}

/* ---- uinput backend ---- */

#ifndef VMCTL_ABSENT
struct holder {
        int lfd;
        struct vmctl_uinput_pair p;
        volatile bool stop;
};

static void *holder_main(void *arg)
{
        struct holder *h = arg;
        while (!h->stop) {
                int c = accept4(h->lfd, NULL, NULL, SOCK_CLOEXEC);
                if (c < 0)
                        break;
                (void)vmctl_holder_send(c, &h->p);
                close(c);
        }
        return NULL;
}
#endif

static void test_uinput_backend(void **state)
{
#ifdef VMCTL_ABSENT
        printf("# SKIP: vmctl is not built (needs libevdev-dev)\n");
        skip();
#else
        struct fx *f = *state;
        char msg[VMCTL_MSG_MAX];
        if (vmctl_uinput_probe(msg) < 0) {
                printf("# SKIP test_uinput_backend: %s\n", msg);
                skip();
        }
        if (!vmsig_input_ops() || !guest_has_reader()) {
                printf("# SKIP test_uinput_backend: no real input adapter or no guest input reader\n");
                skip();
        }
        struct holder h = {.stop = false};
        assert_int_equal(vmctl_uinput_create("vmsig-input-test", &h.p, msg), 0);
        printf("# uinput pair: keyboard %s, pointer %s\n", h.p.kbd_node, h.p.ptr_node);
        char sock[200], opt[260], kbd[120], ptr[120];
        snprintf(sock, sizeof(sock), "%s/holder.sock", f->dir);
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
        h.lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        assert_int_equal(bind(h.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(listen(h.lfd, 4), 0);
        pthread_t th;
        pthread_create(&th, NULL, holder_main, &h);

        /* the devices exist before QEMU starts: input-linux opens them once */
        snprintf(kbd, sizeof(kbd), "input-linux,id=vk,evdev=%s,grab-toggle=ctrl-ctrl", h.p.kbd_node);
        snprintf(ptr, sizeof(ptr), "input-linux,id=vp,evdev=%s", h.p.ptr_node);
        const char *more[] = {"-device", "virtio-tablet-pci", "-object", kbd, "-object", ptr, NULL};
        start_qemu(f, more);
        wait_guest_input(f, "QEMU Virtio Tablet");
        assert_int_equal(vb_init(&f->b, "vmsig-input-test"), 0);
        snprintf(opt, sizeof(opt), "uinput=%s", sock);
        attach_input(f, opt, "uinput");
        assert_int_equal(vb_lease(&f->b, VMSIG_LEASE_INPUT), 0);
        inject_word_and_click(f, 16384, 8192, false);
        expect_word_and_click(f, 0, 16384, 8192);

        h.stop = true;
        shutdown(h.lfd, SHUT_RDWR);
        pthread_join(th, NULL);
        close(h.lfd);
        vb_free(&f->b);
        vmctl_uinput_pair_close(&h.p);
#endif
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_qmp_backend, setup, teardown),
            cmocka_unit_test_setup_teardown(test_qmp_no_abs_device, setup, teardown),
            cmocka_unit_test_setup_teardown(test_uinput_backend, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
