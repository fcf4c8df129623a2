/* SPDX-License-Identifier: MIT */
/* The newcomer's path, end to end through the real daemon: a real guest, a
 * trigger file naming its QMP socket and RAM file, vmsigd discovering it,
 * and vmsigctl reading the guest kernel's linux_banner (System.map address,
 * nokaslr), pausing/resuming it and writing its memory. Then QEMU dies and
 * the daemon keeps serving; the trigger file goes and the VM leaves. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include <inttypes.h>

#include "../daemon/vmsigd_harness.h"
#include "vm_bus.h"
#include "vm_guest.h"

static struct vh H;
static struct vm_guest G = {.pid = -1};

static int setup(void **state)
{
        return vm_guest_load_env(&G) < 0 ? -1 : 0;
}

static int teardown(void **state)
{
        vh_teardown(&H);
        vm_guest_stop(&G);
        return 0;
}

struct death {
        bool invalidated, gone;
        uint64_t epoch;
};

static void note_death(const struct vmsig_event *ev, int fd, void *ud)
{
        struct death *d = ud;

        if (fd >= 0)
                close(fd);
        if (ev->hdr.kind == VMSIG_EV_MEMCTX && !ev->body[offsetof(struct vmsig_memctx_body, valid)]) {
                struct vmsig_memctx_body b;
                memcpy(&b, ev->body, sizeof(b));
                d->invalidated = true;
                d->epoch = b.epoch;
        }
        if (ev->hdr.kind == VMSIG_EV_STATUS && ev->body[0] == VMSIG_RUN_GONE)
                d->gone = true;
}

static void test_trigger_to_banner_power_write_and_death(void **state)
{
        char out[8192], addr[32];
        struct vm_guest_opts o = {.mem = "256M"};
        uint64_t banner = vm_symbol("linux_banner");

        assert_true(banner != 0);
        assert_int_equal(vm_guest_start(&G, "e2e", &o), 0);
        assert_int_equal(vm_guest_wait_serial(&G, "VMSIG-GUEST-READY", 60000), 0);
        assert_int_equal(vh_start(&H, NULL), 0);

        struct vmsig_client *c = vh_client(&H, "e2e-watch");
        assert_non_null(c);
        assert_int_equal(vh_subscribe(c, 0,
                                      VMSIG_KIND_BIT(VMSIG_EV_ROSTER) | VMSIG_KIND_BIT(VMSIG_EV_MEMCTX) |
                                          VMSIG_KIND_BIT(VMSIG_EV_STATUS),
                                      NULL, NULL),
                         0);
        assert_int_equal(vh_vm_add_qemu(&H, "e2e", G.qmp, G.shm), 0);
        uint32_t ep = vh_wait_vm(c, "e2e");
        assert_true(ep != 0);

        /* The memctx arrives once the kernel root is found (self-healing). */
        struct vmsig_memctx ctx;
        assert_int_equal(vh_wait_memctx(c, ep, &ctx, 60000), 0);
        assert_true(ctx.fd >= 0);
        uint64_t epoch = ctx.epoch;
        close(ctx.fd);

        /* vmsigctl: roster, then the kernel's own version string. */
        assert_int_equal(vh_vmsigctl(&H, -1, out, sizeof(out), "list", (char *)NULL), 0);
        assert_non_null(strstr(out, "e2e"));
        assert_non_null(strstr(out, "memctx"));
        assert_non_null(strstr(out, "vmhost"));
        snprintf(addr, sizeof(addr), "0x%" PRIx64, banner);
        assert_int_equal(vh_vmsigctl(&H, -1, out, sizeof(out), "read", "e2e", addr, "64", (char *)NULL), 0);
        printf("# %s", out);
        assert_non_null(strstr(out, "|Linux version 6"));

        /* Power through the daemon, mirrored by STATUS. */
        assert_int_equal(vh_vmsigctl(&H, -1, out, sizeof(out), "power", "e2e", "pause", (char *)NULL), 0);
        struct vh_match st = {.kind = VMSIG_EV_STATUS, .endpoint = ep, .run_state = VMSIG_RUN_PAUSED};
        assert_int_equal(vh_wait_event(c, &st, NULL, NULL, NULL, 10000), 0);
        assert_int_equal(vh_vmsigctl(&H, -1, out, sizeof(out), "power", "e2e", "resume", (char *)NULL), 0);
        st.run_state = VMSIG_RUN_RUNNING;
        assert_int_equal(vh_wait_event(c, &st, NULL, NULL, NULL, 10000), 0);

        /* linux_banner is .rodata: the write is refused whole, nothing written. */
        assert_int_equal(
            vh_vmsigctl(&H, -1, out, sizeof(out), "write", "e2e", addr, "4c494e5558", (char *)NULL), 1);
        assert_non_null(strstr(out, "read-only"));
        assert_int_equal(vh_vmsigctl(&H, -1, out, sizeof(out), "read", "e2e", addr, "16", (char *)NULL), 0);
        assert_non_null(strstr(out, "|Linux version 6"));
        /* init_uts_ns is .data (its sysname is what /proc/version prints):
         * written under the memwrite lease, read back. */
        uint64_t uts = vm_symbol("init_uts_ns");
        char uaddr[32];
        assert_true(uts != 0);
        snprintf(uaddr, sizeof(uaddr), "0x%" PRIx64, uts);
        assert_int_equal(
            vh_vmsigctl(&H, -1, out, sizeof(out), "write", "e2e", uaddr, "4c494e5558", (char *)NULL), 0);
        assert_int_equal(vh_vmsigctl(&H, -1, out, sizeof(out), "read", "e2e", uaddr, "16", (char *)NULL), 0);
        assert_non_null(strstr(out, "|LINUX"));

        /* QEMU dies: the context is invalidated, the daemon keeps serving. */
        vm_guest_stop(&G);
        /* Two sources (memctx, vmhost): their order is not defined. */
        struct death seen = {0};
        struct vh_match never = {.kind = VMSIG_EV_NONE + 1, .endpoint = UINT32_MAX};
        uint64_t deadline = vh_now_ms() + 10000;
        while (!(seen.invalidated && seen.gone) && vh_left(deadline))
                (void)vh_wait_event(c, &never, NULL, note_death, &seen, 200);
        assert_true(seen.invalidated);
        assert_true(seen.gone);
        assert_int_equal(seen.epoch, epoch);
        assert_int_equal(vh_vmsigctl(&H, -1, out, sizeof(out), "list", (char *)NULL), 0);
        assert_non_null(strstr(out, "gone"));

        /* The hook removes the trigger file: the VM leaves the roster. */
        char path[512];
        snprintf(path, sizeof(path), "%s/e2e.vm", H.trig);
        assert_int_equal(unlink(path), 0);
        struct vh_match left = {.kind = VMSIG_EV_ROSTER, .endpoint = ep, .roster_change = VMSIG_ROSTER_LEFT};
        assert_int_equal(vh_wait_event(c, &left, NULL, NULL, NULL, 10000), 0);
        vh_client_close(c);
        assert_int_equal(vh_stop(&H, 10000), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_trigger_to_banner_power_write_and_death, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
