/* SPDX-License-Identifier: MIT */
/* The real input adapter: DOWN input commands -> vmctl, the input driver.
 *
 * vmctl picks the backend from what the host offers (a uinput pair held by
 * `vmsig-uinput hold` for this VM, else QMP input-send-event); this adapter
 * only supplies the QMP transport, the VM's shared vmconn session, and turns
 * completions into ACT_ACKs. Each command is one batch (x AND y of a move in
 * one SYN_REPORT / one input-send-event). Everything runs on the loop thread
 * and never blocks: uinput writes are immediate, QMP replies come back
 * through the session's fd.
 *
 * ACKs: exactly one per command, keyed by corr, with the real result (e.g.
 * -EHOSTDOWN "VM not running", -ENODEV "no absolute pointer device"). With
 * VMSIG_F_FF a successful command is not acknowledged; a failed one still is
 * (docs/protocol.md 8.2: a refused stream must not look delivered).
 *
 * Over QMP each command has a deadline (cmd_timeout_ms, default 3000) and is
 * re-checked right before it is written: its issuer must still hold the input
 * lease, else -ECANCELED and QEMU never sees it. Results the session makes
 * itself are in adapters/vmconn.h (-ETIMEDOUT never sent, -EINPROGRESS sent but
 * unanswered, -ECANCELED never sent); detaching answers every command still
 * pending the same way.
 *
 * Options (input_options): uinput=PATH (the holder socket, default
 * /run/vmsig/uinput/<vm>.sock if present), backend=auto|qmp (qmp: never
 * uinput), retry_ms, retry_max_ms (QMP reconnect bounds), cmd_timeout_ms. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vmsig/adapter.h>
#include <vmsig/event.h>

#include "adapters/input_cmd.h"
#include "adapters/vmconn.h"
#include "vmctl/vmctl.h"

#define POOL_SLOTS   4096u /* QMP commands in flight per VM (= QMP_MAX_PENDING) */
#define COOKIE_QMP   1u
#define COOKIE_RETRY 2u

struct pending {
        struct pending *next_free;
        struct vmsig_event_hdr hdr;
};

struct input {
        uint32_t endpoint;
        char *vm_name, *qmp_path, *uinput_sock;
        struct vmconn_opts copts;
        uint32_t timeout_ms;
        const struct vmsig_emit_sink *sink;
        struct vmconn_listener l;
        bool conn_attached;
        struct vmctl *vm;
        char backend_msg[VMCTL_MSG_MAX];
        struct pending *free_list;
        unsigned inflight;
        struct pending pool[POOL_SLOTS];
};

static void emit_ack(struct input *a, const struct vmsig_event_hdr *hdr, int result, const char *msg)
{
        (void)vmsig_sink_ack(a->sink, VMSIG_SRC_INPUT, hdr, result, 0, "%s", msg);
}

static void emit_diag(struct input *a, int code, const char *msg)
{
        (void)vmsig_sink_diag(a->sink, a->endpoint, VMSIG_SRC_INPUT, code, "%s", msg);
}

static struct pending *slot_get(struct input *a)
{
        struct pending *p = a->free_list;

        if (p) {
                a->free_list = p->next_free;
                a->inflight++;
        }
        return p;
}

static bool slot_of_pool(struct input *a, struct pending *p)
{
        return p >= a->pool && p < a->pool + POOL_SLOTS;
}

static void slot_put(struct input *a, struct pending *p)
{
        if (!slot_of_pool(a, p))
                return;
        p->next_free = a->free_list;
        a->free_list = p;
        a->inflight--;
}

/* vmctl completion (loop thread): synchronous for uinput, from the QMP reply
 * otherwise. token NULL: a release vmctl sent on its own. */
static void on_done(void *userdata, void *token, int result, const char *msg)
{
        struct input *a = userdata;
        struct pending *p = token;

        if (!p)
                return;
        if (result < 0 || !(p->hdr.flags & VMSIG_F_FF))
                emit_ack(a, &p->hdr, result, msg);
        slot_put(a, p);
}

/* ---- QMP transport for vmctl ---- */

static void on_reply(struct vmconn_listener *l, const struct qmp_reply *reply, void *token)
{
        struct input *a = l->userdata;

        vmctl_qmp_reply(a->vm, token, reply);
}

/* Right before QEMU gets it: does the issuer still hold the input lease? */
static int input_admit(struct vmconn_listener *l, void *token, char *why, size_t len)
{
        struct input *a = l->userdata;
        struct pending *p = token;
        int e;

        if (!a->sink->check_issuer)
                return 0;
        e = a->sink->check_issuer(a->sink, p->hdr.peer, VMSIG_LEASE_INPUT);
        if (e == 0)
                return 0;
        snprintf(why, len, "not sent to QEMU: control %u %s", p->hdr.peer,
                 e == -ESRCH ? "has disconnected" : "no longer holds the input lease");
        return -ECANCELED;
}

static int input_qmp_execute(void *ctx, const char *command, struct json_object *args, void *token, char *msg)
{
        struct input *a = ctx;
        const char *why = "";
        int r;

        if (!a->conn_attached || vmconn_get_state(&a->l, &why) != VMCONN_READY) {
                snprintf(msg, VMCTL_MSG_MAX, "QEMU not connected%s%s", why && why[0] ? ": " : "",
                         why ? why : "");
                return -ENOTCONN;
        }
        /* token NULL: vmctl's own releases, fire-and-forget: they must reach
         * the guest even after we detach. */
        struct vmconn_cmd c = {.command = command,
                               .args = args,
                               .timeout_ms = a->l.timeout_ms,
                               .admit = token ? input_admit : NULL};
        r = vmconn_submit(&a->l, &c, token ? on_reply : NULL, token);
        if (r < 0)
                snprintf(msg, VMCTL_MSG_MAX, "QMP %s: %s", command, strerror(-r));
        return r;
}

static void l_ready(struct vmconn_listener *l)
{
}

static void l_event(struct vmconn_listener *l, const struct qmp_event *ev)
{
}

static void l_gone(struct vmconn_listener *l, int err, const char *reason)
{
        /* pending commands already got their error replies (-> ACKs) */
}

static const struct vmconn_listener_ops listener_ops = {.ready = l_ready, .event = l_event, .gone = l_gone};

/* ---- ops ---- */

static void input_close(void *instance)
{
        struct input *a = instance;

        if (!a)
                return;
        if (a->vm)
                (void)vmctl_release_all(a->vm); /* nothing stays held in the guest */
        if (a->conn_attached)
                vmconn_detach(&a->l); /* answers what is pending (we are closing: the ACKs pass) */
        vmctl_free(a->vm);
        free(a->vm_name);
        free(a->qmp_path);
        free(a->uinput_sock);
        free(a);
}

/* A control that leaves with a key or button down must not leave it down
 * in the guest: release whatever vmctl believes held. */
static void input_lease_ended(void *instance, uint8_t lease_class)
{
        struct input *a = instance;

        if (lease_class == VMSIG_LEASE_INPUT && a->vm)
                (void)vmctl_release_all(a->vm);
}

static const struct opt_spec input_opts[] = {
    VMCONN_OPT_RETRY,
    VMCONN_OPT_CMD_TIMEOUT,
    {.key = "uinput", .type = OPT_ABS_PATH, .min = 1, .max = 127}, /* a sockaddr_un path */
    /* qmp: never the uinput pair, even if held (a libvirt domain without
     * <input type='evdev'> of it: its events would reach no guest) */
    {.key = "backend", .type = OPT_WORD, .words = "auto|qmp"},
};

static int input_open(const struct vmsig_adapter_cfg *cfg, uint32_t endpoint, void **ret_instance)
{
        const char *opts = cfg ? cfg->options : NULL;
        char sock[128];
        uint64_t v[OPT_COUNT(input_opts)];
        struct input *a;
        int r;

        if (!cfg || !cfg->vm_name || !*cfg->vm_name)
                return -EINVAL;
        if (adapter_options_parse(opts, input_opts, OPT_COUNT(input_opts), NULL, v, NULL, 0) < 0)
                return -EINVAL;
        uint64_t retry_ms = v[0], retry_max_ms = v[1], timeout_ms = v[2];
        r = vmsig_option_get(opts, "uinput", sock, sizeof(sock));

        a = calloc(1, sizeof(*a));
        if (!a)
                return -ENOMEM;
        a->endpoint = endpoint;
        a->copts.retry_min_ms = (uint32_t)retry_ms;
        a->copts.retry_max_ms = (uint32_t)retry_max_ms;
        snprintf(a->copts.vm_name, sizeof(a->copts.vm_name), "%s", cfg->vm_name);
        a->timeout_ms = (uint32_t)timeout_ms;
        for (unsigned i = POOL_SLOTS; i-- > 0;) {
                a->pool[i].next_free = a->free_list;
                a->free_list = &a->pool[i];
        }
        a->vm_name = strdup(cfg->vm_name);
        a->qmp_path = cfg->qmp_path && *cfg->qmp_path ? strdup(cfg->qmp_path) : NULL;
        a->uinput_sock = r == 0 ? strdup(sock) : NULL;
        if (!a->vm_name || (cfg->qmp_path && *cfg->qmp_path && !a->qmp_path) || (r == 0 && !a->uinput_sock)) {
                input_close(a);
                return -ENOMEM;
        }

        /* vmctl decides the backend: uinput if this VM's pair is offered,
         * else QMP through the session (if there is a QMP socket). */
        static const struct vmctl_qmp_transport no_qmp = {0};
        struct vmctl_qmp_transport qt = {.execute = input_qmp_execute, .ctx = a};
        struct vmctl_config vc = VMCTL_CONFIG_INIT;
        vc.vm_name = a->vm_name;
        vc.uinput_socket = a->uinput_sock;
        vc.no_uinput = v[4] == 1;
        vc.qmp = a->qmp_path ? &qt : &no_qmp;
        vc.done = on_done;
        vc.userdata = a;
        r = vmctl_open(&vc, &a->vm, a->backend_msg);
        if (r < 0) {
                input_close(a);
                return r;
        }
        *ret_instance = a;
        return 0;
}

static int input_attach(void *instance, const struct vmsig_emit_sink *sink, struct vmsig_fd_reg *reg,
                        size_t cap, size_t *ret_n)
{
        struct input *a = instance;
        int r;

        if (!sink)
                return -EINVAL;
        if (a->sink)
                return -EALREADY;
        a->sink = sink;
        *ret_n = 0;
        if (vmctl_get_backend(a->vm) == VMCTL_BACKEND_QMP) {
                a->l = (struct vmconn_listener){.ops = &listener_ops,
                                                .sink = sink,
                                                .cookie_qmp = COOKIE_QMP,
                                                .cookie_timer = COOKIE_RETRY,
                                                .userdata = a,
                                                .timeout_ms = a->timeout_ms};
                r = vmconn_attach(a->qmp_path, &a->copts, &a->l);
                if (r < 0) {
                        a->sink = NULL;
                        return r;
                }
                a->conn_attached = true;
        }
        char line[VMSIG_MSG_MAX];
        snprintf(line, sizeof(line), "input driver: %s", a->backend_msg);
        emit_diag(a, 0, line);
        return 0;
}

static void input_on_readiness(void *instance, uint64_t cookie, uint32_t events)
{
        struct input *a = instance;

        if (a->conn_attached)
                (void)vmconn_on_readiness(&a->l, cookie, events);
}

static int input_submit(void *instance, const struct vmsig_event *ev, const void *payload, size_t payload_len)
{
        struct input *a = instance;
        struct vmctl_cmd c = {0};
        struct pending local, *p;
        char msg[VMCTL_MSG_MAX] = "";
        int r = input_cmd_decode(ev, payload, &c, msg);

        if (r != 0)
                return r; /* not mine, or malformed: the core answers, as for the stub */

        /* uinput completes inside vmctl_submit(): a stack slot will do. */
        p = vmctl_get_backend(a->vm) == VMCTL_BACKEND_QMP ? slot_get(a) : &local;
        if (!p)
                return -EBUSY;
        p->hdr = ev->hdr;
        r = vmctl_submit(a->vm, &c, p, msg);
        if (r < 0) {
                /* refused with a reason worth reading (grab toggle, no qcode,
                 * QEMU not connected): answer it ourselves */
                emit_ack(a, &ev->hdr, r, msg);
                slot_put(a, p);
        }
        return VMSIG_SUBMIT_ACCEPTED;
}

static const struct vmsig_adapter_ops input_ops = {
    .name = "input-vmctl",
    .seam = VMSIG_SRC_INPUT,
    .open = input_open,
    .attach = input_attach,
    .on_readiness = input_on_readiness,
    .submit = input_submit,
    .close = input_close,
    .lease_ended = input_lease_ended,
};

const struct adapter_desc input_qemu_adapter = {&input_ops, input_opts, OPT_COUNT(input_opts)};
