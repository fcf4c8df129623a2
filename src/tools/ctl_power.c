/* SPDX-License-Identifier: MIT */
/* vmsigctl status and power: the VM's run state, asked and changed. */
#include <stdio.h>
#include <string.h>

#include "tools/ctl_common.h"

int ctl_cmd_status(struct ctl *ctl, int argc, char **argv)
{
        struct vmsig_event ev;
        struct vmsig_ack_body ack;
        uint32_t ep;
        int r;

        if (argc != 1)
                return ctl_usage_error(ctl);
        if ((r = ctl_resolve_vm(ctl, argv[0], &ep)))
                return r;
        vmsig_event_init(&ev, VMSIG_EV_CMD_STATUS_QUERY, ep, VMSIG_SRC_VMHOST);
        struct ctl_waiter w = {.each = ctl_print_event, .ud = ctl};
        r = vmsig_client_send(ctl->client, &ev, &w.corr);
        if (r >= 0)
                r = ctl_wait_for(ctl, &w, ctl->timeout_ms); /* the STATUS prints, then the ACK ends it */
        if (r < 0)
                return ctl_connection_lost(ctl, r);
        ack = w.ack;
        if (ack.result < 0)
                return ctl_fail(ctl_exit_for(ack.result), "status of '%s': %s", argv[0], ESC(ack.msg));
        printf("%s: %s\n", argv[0], vmsig_run_state_name((uint8_t)ack.value));
        return 0;
}

/* The operation named s (vmsig_power_op_name's names), or 0. */
static uint32_t power_op_from_name(const char *s)
{
        for (uint32_t op = VMSIG_POWER_ON; strcmp(vmsig_power_op_name(op), "?") != 0; op++)
                if (strcmp(s, vmsig_power_op_name(op)) == 0)
                        return op;
        return 0;
}

int ctl_cmd_power(struct ctl *ctl, int argc, char **argv)
{
        struct vmsig_power_body b = {0};
        struct vmsig_event ev;
        struct vmsig_ack_body ack;
        char names[128];
        size_t n = 0;
        uint32_t ep;
        int r;

        if (argc != 2)
                return ctl_usage_error(ctl);
        if (!(b.op = power_op_from_name(argv[1]))) {
                for (uint32_t op = VMSIG_POWER_ON; strcmp(vmsig_power_op_name(op), "?") != 0; op++)
                        n += (size_t)snprintf(names + n, sizeof(names) - n, "%s%s", n ? ", " : "",
                                              vmsig_power_op_name(op));
                return ctl_fail(EXIT_USAGE, "unknown power operation '%s' (%s)", argv[1], names);
        }
        if ((r = ctl_resolve_vm(ctl, argv[0], &ep)) || (r = ctl_acquire(ctl, ep, VMSIG_LEASE_POWER)))
                return r;
        vmsig_event_init(&ev, VMSIG_EV_CMD_POWER, ep, VMSIG_SRC_VMHOST);
        vmsig_event_set_body(&ev, &b, sizeof(b));
        if ((r = ctl_send_and_wait(ctl, &ev, NULL, 0, &ack)))
                return r;
        if (ack.result < 0)
                return ctl_fail(ctl_exit_for(ack.result), "power %s on '%s': %s", argv[1], argv[0],
                                ESC(ack.msg));
        printf("%s: %s\n", argv[0], ESC(ack.msg));
        return 0;
}
