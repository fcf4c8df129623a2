/* SPDX-License-Identifier: MIT */
/* vmhost stub: a simulated VM run state driven by CMD_POWER. Every transition
 * is instant except powerdown, an ACPI request the "guest" honours after
 * powerdown_ms (a timerfd). Nothing here blocks, so everything runs on the
 * loop thread and no worker is needed.
 *
 * Transitions (anything else ACKs an error and changes nothing):
 *   on        shutdown -> running
 *   off       running|paused -> shutdown
 *   reset     running|paused -> booting ("reset") -> running
 *   pause     running -> paused
 *   resume    paused -> running
 *   powerdown running: ACK now, shutdown after powerdown_ms if still running;
 *             off/on/reset cancel a pending powerdown. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <vmsig/adapter.h>
#include <vmsig/event.h>

#include "adapters/stub_internal.h"

#define COOKIE_POWERDOWN 1u

struct vmhost_stub {
        uint32_t endpoint;
        uint8_t state; /* enum vmsig_run_state */
        uint32_t powerdown_ms;
        int tfd;
        bool powerdown_pending;
        const struct vmsig_emit_sink *sink;
};

static void emit_status(struct vmhost_stub *s, const struct vmsig_event *cmd, const char *reason)
{
        /* a query's answer goes to the asker */
        (void)vmsig_sink_status(s->sink, s->endpoint, s->state, cmd ? &cmd->hdr : NULL, "%s", reason);
}

static void set_state(struct vmhost_stub *s, uint8_t state, const char *reason)
{
        s->state = state;
        emit_status(s, NULL, reason);
}

static int arm(struct vmhost_stub *s, uint32_t ms)
{
        struct itimerspec its = {0};

        its.it_value.tv_sec = ms / 1000;
        its.it_value.tv_nsec = (long)(ms % 1000) * 1000000L;
        return timerfd_settime(s->tfd, 0, &its, NULL) < 0 ? -errno : 0;
}

static void cancel_powerdown(struct vmhost_stub *s)
{
        if (s->powerdown_pending)
                (void)arm(s, 0);
        s->powerdown_pending = false;
}

static void ack(struct vmhost_stub *s, const struct vmsig_event *cmd, int result, const char *msg)
{
        /* service commands always acknowledge, FF or not */
        (void)vmsig_sink_ack(s->sink, VMSIG_SRC_VMHOST, &cmd->hdr, result, s->state, "%s", msg);
}

/* Name the outcome of a power op for its ACK. */
static int says(const char **ret_msg, const char *msg, int r)
{
        *ret_msg = msg;
        return r;
}

static int power(struct vmhost_stub *s, uint32_t op, const char **ret_msg)
{
        switch (op) {
        case VMSIG_POWER_ON:
                if (s->state == VMSIG_RUN_RUNNING)
                        return says(ret_msg, "VM is already running", -EALREADY);
                if (s->state != VMSIG_RUN_SHUTDOWN)
                        return says(ret_msg, "VM is paused, use resume", -EINVAL);
                cancel_powerdown(s);
                set_state(s, VMSIG_RUN_RUNNING, "powered on");
                return says(ret_msg, "powered on", 0);
        case VMSIG_POWER_OFF:
                if (s->state == VMSIG_RUN_SHUTDOWN)
                        return says(ret_msg, "VM is already shut down", -EALREADY);
                cancel_powerdown(s);
                set_state(s, VMSIG_RUN_SHUTDOWN, "powered off");
                return says(ret_msg, "powered off", 0);
        case VMSIG_POWER_RESET:
                if (s->state == VMSIG_RUN_SHUTDOWN)
                        return says(ret_msg, "VM is shut down, use on", -EINVAL);
                cancel_powerdown(s);
                set_state(s, VMSIG_RUN_BOOTING, "reset");
                set_state(s, VMSIG_RUN_RUNNING, "running after reset");
                return says(ret_msg, "reset", 0);
        case VMSIG_POWER_PAUSE:
                if (s->state == VMSIG_RUN_PAUSED)
                        return says(ret_msg, "VM is already paused", -EALREADY);
                if (s->state != VMSIG_RUN_RUNNING)
                        return says(ret_msg, "VM is not running", -EINVAL);
                set_state(s, VMSIG_RUN_PAUSED, "paused");
                return says(ret_msg, "paused", 0);
        case VMSIG_POWER_RESUME:
                if (s->state == VMSIG_RUN_RUNNING)
                        return says(ret_msg, "VM is already running", -EALREADY);
                if (s->state != VMSIG_RUN_PAUSED)
                        return says(ret_msg, "VM is not paused", -EINVAL);
                set_state(s, VMSIG_RUN_RUNNING, "resumed");
                return says(ret_msg, "resumed", 0);
        case VMSIG_POWER_POWERDOWN: {
                if (s->state != VMSIG_RUN_RUNNING)
                        return says(ret_msg, "VM is not running", -EINVAL);
                if (s->powerdown_pending)
                        return says(ret_msg, "powerdown already requested", -EALREADY);
                int r = arm(s, s->powerdown_ms);
                if (r < 0)
                        return says(ret_msg, "arming the powerdown timer failed", r);
                s->powerdown_pending = true;
                return says(ret_msg, "powerdown requested", 0);
        }
        default:
                return says(ret_msg, "unknown power op", -EINVAL); /* filtered in submit */
        }
}

static void vmhost_close(void *instance)
{
        struct vmhost_stub *s = instance;

        if (!s)
                return;
        if (s->tfd >= 0)
                close(s->tfd);
        free(s);
}

static const struct opt_spec vmhost_stub_opts[] = {
    {.key = "state", .type = OPT_WORD, .words = "running|paused|shutdown"},
    {.key = "powerdown_ms", .type = OPT_U64, .min = 1, .max = 600000, .def = 50},
};

static int vmhost_open(const struct vmsig_adapter_cfg *cfg, uint32_t endpoint, void **ret_instance)
{
        static const uint8_t states[] = {VMSIG_RUN_RUNNING, VMSIG_RUN_PAUSED, VMSIG_RUN_SHUTDOWN}; /* words */
        uint64_t v[OPT_COUNT(vmhost_stub_opts)];
        struct vmhost_stub *s;
        int r;

        if (adapter_options_parse(cfg ? cfg->options : NULL, vmhost_stub_opts, OPT_COUNT(vmhost_stub_opts),
                                  NULL, v, NULL, 0) < 0)
                return -EINVAL;
        uint8_t st = states[v[0]];
        uint64_t ms = v[1];

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->endpoint = endpoint;
        s->state = st;
        s->powerdown_ms = (uint32_t)ms;
        s->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (s->tfd < 0) {
                r = -errno;
                free(s);
                return r;
        }
        *ret_instance = s;
        return 0;
}

static int vmhost_attach(void *instance, const struct vmsig_emit_sink *sink, struct vmsig_fd_reg *reg,
                         size_t cap, size_t *ret_n)
{
        struct vmhost_stub *s = instance;

        if (cap < 1 || !sink)
                return -EINVAL;
        if (s->sink)
                return -EALREADY;
        s->sink = sink;
        reg[0] = (struct vmsig_fd_reg){s->tfd, EPOLLIN, VMSIG_RDY_TIMERFD, COOKIE_POWERDOWN};
        *ret_n = 1;
        emit_status(s, NULL, "attached");
        return 0;
}

static void vmhost_on_readiness(void *instance, uint64_t cookie, uint32_t events)
{
        struct vmhost_stub *s = instance;

        if (cookie != COOKIE_POWERDOWN || !s->powerdown_pending)
                return;
        s->powerdown_pending = false;
        /* a paused guest cannot act on the ACPI request */
        if (s->state == VMSIG_RUN_RUNNING)
                set_state(s, VMSIG_RUN_SHUTDOWN, "guest powered down (ACPI)");
}

static int vmhost_submit(void *instance, const struct vmsig_event *ev, const void *payload,
                         size_t payload_len)
{
        struct vmhost_stub *s = instance;
        struct vmsig_power_body b;
        const char *msg = "";
        char buf[VMSIG_MSG_MAX];
        int r;

        switch (ev->hdr.kind) {
        case VMSIG_EV_CMD_POWER:
                if (ev->hdr.body_len != sizeof(b) || payload)
                        return -EINVAL;
                memcpy(&b, ev->body, sizeof(b));
                if (b.op < VMSIG_POWER_ON || b.op > VMSIG_POWER_POWERDOWN)
                        return -EINVAL;
                r = power(s, b.op, &msg);
                if (r < 0) {
                        snprintf(buf, sizeof(buf), "%s: %s", vmsig_power_op_name(b.op), msg);
                        msg = buf;
                }
                ack(s, ev, r, msg);
                return VMSIG_SUBMIT_ACCEPTED;
        case VMSIG_EV_CMD_STATUS_QUERY:
                if (ev->hdr.body_len != 0 || payload)
                        return -EINVAL;
                emit_status(s, ev, "query");
                snprintf(buf, sizeof(buf), "state: %s", vmsig_run_state_name(s->state));
                ack(s, ev, 0, buf);
                return VMSIG_SUBMIT_ACCEPTED;
        default:
                return VMSIG_SUBMIT_NOT_MINE;
        }
}

static const struct vmsig_adapter_ops vmhost_stub_ops = {
    .name = "vmhost-stub",
    .seam = VMSIG_SRC_VMHOST,
    .open = vmhost_open,
    .attach = vmhost_attach,
    .on_readiness = vmhost_on_readiness,
    .submit = vmhost_submit,
    .close = vmhost_close,
};

const struct adapter_desc vmhost_stub_adapter = {&vmhost_stub_ops, vmhost_stub_opts,
                                                 OPT_COUNT(vmhost_stub_opts)};
