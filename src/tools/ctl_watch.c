/* SPDX-License-Identifier: MIT */
/* vmsigctl watch: print events as they happen, for all VMs or one. */
#include <errno.h>

#include <vmsig/bus.h>

#include "tools/ctl_common.h"

int ctl_cmd_watch(struct ctl *ctl, int argc, char **argv)
{
        const struct vmsig_client_info *info = vmsig_client_get_info(ctl->client);
        uint64_t kinds = 0;
        uint32_t ep = 0;
        struct ctl_waiter w = {.each = ctl_print_event, .ud = ctl};
        int r;

        if (argc > 1)
                return ctl_fail(EXIT_USAGE, "watch takes at most one VM");
        if (argc == 1 && (r = ctl_resolve_vm(ctl, argv[0], &ep)))
                return r;
        if (info->caps & VMSIG_CAP_ROSTER)
                kinds |= VMSIG_KIND_BIT(VMSIG_EV_ROSTER);
        if (info->caps & VMSIG_CAP_MEMCTX)
                kinds |= VMSIG_KIND_BIT(VMSIG_EV_MEMCTX);
        if (info->caps & VMSIG_CAP_STATUS)
                kinds |= VMSIG_KIND_BIT(VMSIG_EV_STATUS) | VMSIG_KIND_BIT(VMSIG_EV_DIAG);
        if (info->caps & (VMSIG_CAP_ROSTER | VMSIG_CAP_INPUT | VMSIG_CAP_POWER | VMSIG_CAP_MEMWRITE))
                kinds |= VMSIG_KIND_BIT(VMSIG_EV_LEASE_GRANT) | VMSIG_KIND_BIT(VMSIG_EV_LEASE_REVOKE);
        if (!kinds)
                return ctl_fail(EXIT_DENIED, "your uid has no capability that shows events");
        r = ctl_subscribe_sync(ctl, ep, kinds, &w);
        if (r < 0)
                return r == -ENOENT ? ctl_fail(EXIT_NOVM, "no endpoint %u", ep) : ctl_connection_lost(ctl, r);
        w.corr = UINT64_MAX; /* nothing to wait for: print until interrupted */
        r = ctl_wait_for(ctl, &w, -1);
        if (r == -EINTR)
                return 0;
        return ctl_connection_lost(ctl, r);
}
