/* SPDX-License-Identifier: MIT */
/* vmsig-demo-inproc: the bus in one process, with stub endpoints (no VM
 * needed). A watcher prints everything it receives; an agent takes leases
 * and acts; an intruder is refused; the audit hook prints every decision. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vmsig/adapter.h>
#include <vmsig/bus.h>
#include <vmsig/memctx.h>
#include <vmsig/stub_guest.h> /* where the stub guest's kernel banner is */

static int deliver_print(struct vmsig_control *ctl, const struct vmsig_event *ev, int *fd, void *ud)
{
        char line[512];

        printf("  [%s] %s\n", (const char *)ud, vmsig_event_format(ev, line, sizeof(line)));
        return 0;
}

struct agent {
        struct vmsig_memctx ctx; /* latest, with our own fd */
        struct vmsig_ack_body last_ack;
        uint64_t last_corr;
};

static int deliver_agent(struct vmsig_control *ctl, const struct vmsig_event *ev, int *fd, void *ud)
{
        struct agent *a = ud;
        char line[512];

        printf("  [agent] %s\n", vmsig_event_format(ev, line, sizeof(line)));
        if (ev->hdr.kind == VMSIG_EV_MEMCTX && *fd >= 0) {
                if (a->ctx.fd >= 0)
                        close(a->ctx.fd);
                if (vmsig_memctx_from_event(ev, *fd, &a->ctx) == 0)
                        *fd = -1; /* keep it */
        } else if (ev->hdr.kind == VMSIG_EV_ACT_ACK) {
                memcpy(&a->last_ack, ev->body, sizeof(a->last_ack));
                a->last_corr = ev->hdr.corr;
        }
        return 0;
}

/* Collapse runs of identical records (a fire-and-forget stream audits every
 * command) into one line plus a count. */
static struct {
        int what;
        uint32_t control;
        uint16_t kind;
        uint64_t corr;
        unsigned repeats;
} last_audit;

static void audit_flush(void)
{
        if (last_audit.repeats)
                printf("  audit: ... and %u more identical records\n", last_audit.repeats);
        last_audit.repeats = 0;
}

static void audit_print(const struct vmsig_audit_record *r, void *ud)
{
        static const char *const what[] = {"", "DENY", "COMMAND", "RESULT", "LEASE"};

        if (r->what == VMSIG_AUDIT_COMMAND && (int)r->what == last_audit.what &&
            r->control_id == last_audit.control && r->kind == last_audit.kind && r->corr == last_audit.corr) {
                last_audit.repeats++;
                return;
        }
        audit_flush();
        last_audit.what = (int)r->what;
        last_audit.control = r->control_id;
        last_audit.kind = r->kind;
        last_audit.corr = r->corr;
        printf("  audit: %-7s control %u '%s' ep %u %s corr %" PRIu64 " result %d: %s\n", what[r->what],
               r->control_id, r->control_name, r->endpoint, vmsig_kind_name(r->kind), r->corr, r->result,
               r->reason);
}

static void settle(struct vmsig_bus *bus, int ms)
{
        for (int i = 0; i < ms / 10; i++)
                vmsig_bus_run_once(bus, 10);
        audit_flush();
}

static void step(const char *what)
{
        printf("\n== %s\n", what);
}

static struct vmsig_event power(uint32_t ep, uint32_t op, uint64_t corr)
{
        struct vmsig_event ev;
        struct vmsig_power_body b = {.op = op};
        vmsig_event_init(&ev, VMSIG_EV_CMD_POWER, ep, VMSIG_SRC_VMHOST);
        ev.hdr.corr = corr;
        vmsig_event_set_body(&ev, &b, sizeof(b));
        return ev;
}

static int attach(struct vmsig_bus *bus, uint32_t ep, const struct vmsig_adapter_ops *ops,
                  const struct vmsig_adapter_cfg *cfg)
{
        int r = vmsig_bus_attach(bus, ep, ops, cfg);
        if (r < 0)
                fprintf(stderr, "vmsig-demo-inproc: attaching %s to '%s' failed: %s\n", ops->name,
                        cfg->vm_name, strerror(-r));
        return r;
}

static void usage(FILE *f)
{
        fprintf(f, "Usage: vmsig-demo-inproc [--help]\n\n"
                   "Runs the vmsig bus in one process with two stub VMs (no QEMU needed):\n"
                   "a watcher prints every event it receives, an agent takes leases, moves the\n"
                   "pointer, pauses and resumes a VM and writes guest memory, an intruder is\n"
                   "refused, and every authorization decision is printed from the audit hook.\n");
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {{"help", no_argument, NULL, 'h'}, {0}};
        struct vmsig_bus *bus;
        struct vmsig_control *watcher, *agent_ctl, *intruder, *rival;
        struct agent agent = {.ctx.fd = -1};
        uint32_t alpha, beta;
        int c, r;

        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                usage(c == 'h' ? stdout : stderr);
                return c == 'h' ? 0 : 2;
        }
        setvbuf(stdout, NULL, _IOLBF, 0);
        r = vmsig_bus_new(NULL, &bus);
        if (r < 0) {
                fprintf(stderr, "vmsig-demo-inproc: cannot create the bus: %s\n", strerror(-r));
                return 1;
        }
        vmsig_bus_set_audit(bus, audit_print, NULL);

        step("a watcher subscribes to everything (roster, status, memctx capabilities)");
        struct vmsig_control_info wi = {.name = "watcher",
                                        .uid = getuid(),
                                        .pid = getpid(),
                                        .caps = VMSIG_CAP_ROSTER | VMSIG_CAP_STATUS | VMSIG_CAP_MEMCTX};
        vmsig_control_new(bus, &wi, deliver_print, NULL, "watcher", &watcher);
        vmsig_control_subscribe(watcher, 0, VMSIG_KINDS_ALL_UP);

        step("two stub VMs appear; 'alpha' fails its first 2 bootstraps and heals itself");
        struct vmsig_adapter_cfg mcfg = {.vm_name = "alpha", .options = "fail_boots=2,retry_ms=50"};
        struct vmsig_adapter_cfg acfg = {.vm_name = "alpha"};
        struct vmsig_adapter_cfg bcfg = {.vm_name = "beta"};
        if (vmsig_bus_endpoint_add(bus, "alpha", &alpha) < 0 ||
            vmsig_bus_endpoint_add(bus, "beta", &beta) < 0 ||
            attach(bus, alpha, vmsig_memctx_stub_ops(), &mcfg) < 0 ||
            attach(bus, alpha, vmsig_input_stub_ops(), &acfg) < 0 ||
            attach(bus, alpha, vmsig_vmhost_stub_ops(), &acfg) < 0 ||
            attach(bus, beta, vmsig_vmhost_stub_ops(), &bcfg) < 0) {
                vmsig_bus_free(bus);
                return 1;
        }
        settle(bus, 600);

        step("an agent arrives late: retained state is replayed to it first");
        struct vmsig_control_info ai = {
            .name = "agent", .uid = getuid(), .pid = getpid(), .caps = VMSIG_CAP_ALL};
        vmsig_control_new(bus, &ai, deliver_agent, NULL, &agent, &agent_ctl);
        vmsig_control_subscribe(agent_ctl, alpha, VMSIG_KINDS_ALL_UP);
        settle(bus, 50);

        step("the agent reads the guest kernel banner through its read-only memctx fd");
        if (agent.ctx.fd >= 0) {
                uint64_t off, avail;
                char banner[64] = {0};
                if (vmsig_memctx_gpa_to_offset(&agent.ctx, VMSIG_STUB_BANNER_GPA, &off, &avail) == 0 &&
                    pread(agent.ctx.fd, banner, sizeof(VMSIG_STUB_BANNER) - 1, (off_t)off) > 0)
                        printf("  banner at GPA 0x%llx (epoch %" PRIu64 "): \"%s\"\n",
                               (unsigned long long)VMSIG_STUB_BANNER_GPA, agent.ctx.epoch, banner);
        }

        step("the agent takes the input, power and memwrite leases of 'alpha'");
        for (uint8_t cls = 0; cls < VMSIG_LEASE_CLASS_COUNT; cls++)
                vmsig_control_lease_acquire(agent_ctl, alpha, cls, 100 + cls);
        settle(bus, 50);

        step("a rival agent wants the input lease too: denied, naming the holder");
        struct vmsig_control_info ri = {
            .name = "rival", .uid = getuid(), .pid = getpid(), .caps = VMSIG_CAP_INPUT};
        vmsig_control_new(bus, &ri, deliver_print, NULL, "rival", &rival);
        vmsig_control_lease_acquire(rival, alpha, VMSIG_LEASE_INPUT, 200);
        settle(bus, 50);

        step("the agent moves the pointer (ACKed), then streams 1000 fire-and-forget moves");
        struct vmsig_event mv;
        struct vmsig_input_body ib = {.x = 16384, .y = 8192};
        vmsig_event_init(&mv, VMSIG_EV_MOVE_ABS, alpha, VMSIG_SRC_INPUT);
        vmsig_event_set_body(&mv, &ib, sizeof(ib));
        mv.hdr.corr = 300;
        vmsig_control_send(agent_ctl, &mv);
        settle(bus, 50);
        mv.hdr.flags = VMSIG_F_FF;
        for (int i = 0; i < 1000; i++) {
                ib.x = i * 32;
                vmsig_event_set_body(&mv, &ib, sizeof(ib));
                vmsig_control_send(agent_ctl, &mv);
        }
        settle(bus, 100);
        printf("  (1000 moves actuated, no ACK traffic; audit lines above show each accepted command)\n");

        step("the agent pauses and resumes 'alpha': STATUS changes reach the watcher");
        struct vmsig_event pw = power(alpha, VMSIG_POWER_PAUSE, 400);
        vmsig_control_send(agent_ctl, &pw);
        settle(bus, 50);
        pw = power(alpha, VMSIG_POWER_RESUME, 401);
        vmsig_control_send(agent_ctl, &pw);
        settle(bus, 50);

        step("the agent writes guest memory under its memwrite lease, then reads it back");
        struct vmsig_event mw;
        struct vmsig_memwrite_body mb = {.addr = VMSIG_STUB_BANNER_VA, .len = 5};
        memcpy(mb.data, "VMSIG", 5);
        vmsig_event_init(&mw, VMSIG_EV_CMD_MEMWRITE, alpha, VMSIG_SRC_MEMCTX);
        mw.hdr.corr = 500;
        vmsig_event_set_body(&mw, &mb, offsetof(struct vmsig_memwrite_body, data) + mb.len);
        vmsig_control_send(agent_ctl, &mw);
        settle(bus, 100);
        if (agent.ctx.fd >= 0) {
                uint64_t off, avail;
                char banner[64] = {0};
                if (vmsig_memctx_gpa_to_offset(&agent.ctx, VMSIG_STUB_BANNER_GPA, &off, &avail) == 0 &&
                    pread(agent.ctx.fd, banner, sizeof(VMSIG_STUB_BANNER) - 1, (off_t)off) > 0)
                        printf("  banner now: \"%s\"\n", banner);
        }

        step("an intruder with only the roster capability tries to reset 'alpha': refused and audited");
        struct vmsig_control_info ii = {
            .name = "intruder", .uid = 65534, .pid = getpid(), .caps = VMSIG_CAP_ROSTER};
        vmsig_control_new(bus, &ii, deliver_print, NULL, "intruder", &intruder);
        pw = power(alpha, VMSIG_POWER_RESET, 600);
        vmsig_control_send(intruder, &pw);
        settle(bus, 50);

        step("the agent leaves: its leases are revoked and announced; 'beta' is removed at runtime");
        vmsig_control_close(agent_ctl);
        vmsig_bus_endpoint_remove(bus, beta);
        settle(bus, 50);

        struct vmsig_bus_stats st;
        vmsig_bus_get_stats(bus, &st);
        printf("\n== done: %" PRIu64 " events dispatched, %" PRIu64 " delivered, %" PRIu64
               " dropped, %u controls, %u endpoints\n",
               st.dispatched, st.delivered, st.dropped, st.controls, st.endpoints);
        printf("next: `make test` runs the whole suite; docs/architecture.md explains the parts.\n");
        if (agent.ctx.fd >= 0)
                close(agent.ctx.fd);
        vmsig_bus_free(bus);
        return 0;
}
