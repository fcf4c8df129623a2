/* SPDX-License-Identifier: MIT */
/* vmsigctl: the roster. `list`, and VM names -> endpoint ids for the other
 * commands. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vmsig/adapter.h> /* vmsig_seams_format */
#include <vmsig/bus.h>

#include "tools/ctl_common.h"

struct vm {
        uint32_t id;
        char name[VMSIG_NAME_MAX];
        uint8_t seams;
        uint8_t run_state;
        bool has_status;
        char memctx_why[VMSIG_MSG_MAX]; /* the memctx adapter's retained DIAG, "" if none */
};

struct roster {
        struct vm vms[1024];
        unsigned n;
};

static struct vm *roster_get(struct roster *ro, uint32_t id)
{
        for (unsigned i = 0; i < ro->n; i++)
                if (ro->vms[i].id == id)
                        return &ro->vms[i];
        if (ro->n == sizeof(ro->vms) / sizeof(ro->vms[0]))
                return NULL;
        memset(&ro->vms[ro->n], 0, sizeof(ro->vms[0]));
        ro->vms[ro->n].id = id;
        return &ro->vms[ro->n++];
}

static void roster_collect(const struct vmsig_event *ev, int fd, void *ud)
{
        struct roster *ro = ud;
        struct vm *vm;

        if (fd >= 0)
                close(fd);
        if (!(vm = roster_get(ro, ev->hdr.endpoint)))
                return;
        if (ev->hdr.kind == VMSIG_EV_ROSTER && ev->hdr.body_len == sizeof(struct vmsig_roster_body)) {
                struct vmsig_roster_body b;
                memcpy(&b, ev->body, sizeof(b));
                b.name[sizeof(b.name) - 1] = '\0';
                if (b.change == VMSIG_ROSTER_LEFT) {
                        *vm = ro->vms[--ro->n];
                        return;
                }
                memcpy(vm->name, b.name, sizeof(vm->name));
                vm->seams = b.seams;
                if (!vm->has_status)
                        vm->run_state = b.run_state;
        } else if (ev->hdr.kind == VMSIG_EV_STATUS && ev->hdr.body_len == sizeof(struct vmsig_status_body)) {
                vm->run_state = ev->body[0];
                vm->has_status = true;
        } else if (ev->hdr.kind == VMSIG_EV_DIAG && ev->hdr.source == VMSIG_SRC_MEMCTX &&
                   ev->hdr.body_len == sizeof(struct vmsig_diag_body)) {
                struct vmsig_diag_body b;
                memcpy(&b, ev->body, sizeof(b));
                b.msg[sizeof(b.msg) - 1] = '\0';
                if (b.code < 0)
                        memcpy(vm->memctx_why, b.msg, sizeof(vm->memctx_why));
        }
}

/* 0 or an exit code (the message printed). */
static int load_roster(struct ctl *ctl, struct roster *ro)
{
        const struct vmsig_client_info *info = vmsig_client_get_info(ctl->client);
        uint64_t kinds = VMSIG_KIND_BIT(VMSIG_EV_ROSTER);
        struct ctl_waiter w = {.each = roster_collect, .ud = ro};
        int r;

        if (!(info->caps & VMSIG_CAP_ROSTER))
                return ctl_fail(EXIT_DENIED,
                                "your uid lacks the roster capability (ask for it in vmsigd.conf)");
        /* STATUS for the run state; DIAG for why a VM has no memctx (the
         * memctx adapter's latest problem is retained, protocol.md §8.3) */
        if (info->caps & VMSIG_CAP_STATUS)
                kinds |= VMSIG_KIND_BIT(VMSIG_EV_STATUS) | VMSIG_KIND_BIT(VMSIG_EV_DIAG);
        r = ctl_subscribe_sync(ctl, 0, kinds, &w);
        if (r < 0)
                return r == -EPERM ? ctl_fail(EXIT_DENIED, "subscribe refused: %s", ESC(w.reply.msg))
                                   : ctl_connection_lost(ctl, r);
        return 0;
}

int ctl_resolve_vm(struct ctl *ctl, const char *arg, uint32_t *ret)
{
        struct roster *ro;
        char *end;
        int r;

        unsigned long id = strtoul(arg, &end, 10);
        if (*arg && !*end && id > 0 && id < UINT32_MAX) {
                *ret = (uint32_t)id;
                return 0;
        }
        ro = calloc(1, sizeof(*ro));
        if (!ro)
                return ctl_fail(EXIT_FAILED, "out of memory");
        r = load_roster(ctl, ro);
        if (r) {
                free(ro);
                return r;
        }
        for (unsigned i = 0; i < ro->n; i++)
                if (strcmp(ro->vms[i].name, arg) == 0) {
                        *ret = ro->vms[i].id;
                        free(ro);
                        return 0;
                }
        free(ro);
        return ctl_fail(EXIT_NOVM, "no VM named '%s' (vmsigctl list shows them)", arg);
}

/* "memctx,input,vmhost" (the roster's seams bits, 1 << source), "-" if none. */
static const char *seams_str(uint8_t s, char *buf, size_t len)
{
        return vmsig_seams_format(s, ",", "-", buf, len);
}

int ctl_cmd_list(struct ctl *ctl, int argc, char **argv)
{
        struct roster *ro = calloc(1, sizeof(*ro));
        char seams[40];
        int r;

        if (!ro)
                return ctl_fail(EXIT_FAILED, "out of memory");
        r = load_roster(ctl, ro);
        if (r) {
                free(ro);
                return r;
        }
        if (!ctl->json)
                printf("%-4s %-24s %-20s %s\n", "ID", "NAME", "ADAPTERS", "STATE");
        for (unsigned i = 0; i < ro->n; i++) {
                const struct vm *vm = &ro->vms[i];
                /* memctx attached but no context: say why (the latest DIAG) */
                bool why = vm->memctx_why[0] && (vm->seams & (1u << VMSIG_SRC_MEMCTX));
                if (ctl->json) {
                        printf("{\"id\": %u, \"name\": \"%s\", \"adapters\": \"%s\", \"state\": \"%s\"",
                               vm->id, ctl_esc(vm->name, sizeof(vm->name), true),
                               seams_str(vm->seams, seams, sizeof(seams)),
                               vmsig_run_state_name(vm->run_state));
                        if (why)
                                printf(", \"memctx_error\": \"%s\"",
                                       ctl_esc(vm->memctx_why, sizeof(vm->memctx_why), true));
                        printf("}\n");
                } else {
                        printf("%-4u %-24s %-20s %s", vm->id, ESC(vm->name),
                               seams_str(vm->seams, seams, sizeof(seams)),
                               vmsig_run_state_name(vm->run_state));
                        if (why) /* after the state, so the columns before stay as they were */
                                printf("  %s", ESC(vm->memctx_why));
                        printf("\n");
                }
        }
        free(ro);
        return 0;
}
