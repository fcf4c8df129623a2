/* SPDX-License-Identifier: MIT */
/* vmsigctl lease, and the lease every acting command takes first. */
#include <errno.h>
#include <stdio.h>

#include "tools/ctl_common.h"

int ctl_acquire(struct ctl *ctl, uint32_t ep, uint8_t cls)
{
        struct ctl_waiter w = {0};
        int r = vmsig_client_lease_acquire(ctl->client, ep, cls, &w.corr);

        if (r >= 0)
                r = ctl_wait_for(ctl, &w, ctl->timeout_ms);
        if (r < 0)
                return ctl_connection_lost(ctl, r);
        if (w.ack.result < 0)
                return ctl_fail(ctl_exit_for(w.ack.result), "%s",
                                ESC(w.ack.msg)); /* names class, VM and holder */
        return 0;
}

int ctl_cmd_lease(struct ctl *ctl, int argc, char **argv)
{
        char names[64];
        size_t n = 0;
        uint32_t ep;
        int cls, r;

        if (argc != 2)
                return ctl_usage_error(ctl);
        cls = vmsig_lease_class_from_name(argv[1]);
        if (cls < 0) {
                for (uint8_t c = 0; c < VMSIG_LEASE_CLASS_COUNT; c++)
                        n += (size_t)snprintf(names + n, sizeof(names) - n, "%s%s", n ? ", " : "",
                                              vmsig_lease_class_name(c));
                return ctl_fail(EXIT_USAGE, "unknown lease class '%s' (%s)", argv[1], names);
        }
        if ((r = ctl_resolve_vm(ctl, argv[0], &ep)) || (r = ctl_acquire(ctl, ep, (uint8_t)cls)))
                return r;
        printf("holding the %s lease on '%s' (control %u); Ctrl-C or SIGTERM releases it\n", argv[1], argv[0],
               vmsig_client_get_info(ctl->client)->control_id);
        fflush(stdout);
        struct ctl_waiter w = {.corr = UINT64_MAX};
        r = ctl_wait_for(ctl, &w, -1);
        if (r == -EINTR)
                return 0; /* closing the connection releases the lease */
        return ctl_connection_lost(ctl, r);
}
