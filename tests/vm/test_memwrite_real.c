/* SPDX-License-Identifier: MIT */
/* MEMWRITE seen from inside a real guest, through vmsigd and vmsigctl:
 * - kernel memory: init_uts_ns's sysname becomes "LINUX", and the guest's
 *   own /proc/version loop prints "LINUX version ...";
 * - a user process: its page-table root is found through the memctx (the
 *   read-only RAM fd: a process's top-level table shares the kernel half with
 *   the kernel root, and only this process maps its marker at the address it
 *   prints), the write goes through that cr3, and the process prints the
 *   new value;
 * - the same process write with its source in a memfd (protocol version 2,
 *   the adapter splices it into the RAM file), seen by the process;
 * - 64 KiB from the client's sealed staging memfd (the engine maps it and
 *   the adapter pwrites from the mapping), by guest-physical address over
 *   the kernel rodata around linux_banner: changed, read back from guest
 *   RAM, restored;
 * - denials: no lease, over the tail bound, unmapped page, no capability:
 *   each refused with its error and nothing written (read back). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include <inttypes.h>
#include <sys/mman.h>

#include <vmie/vmie.h>

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

/* The last "VMSIG-MW ... addr=0x..." line the target printed. */
static uint64_t target_addr(void)
{
        const char *text = vm_guest_serial_text(&G), *p, *last = NULL;
        unsigned long long a = 0;

        for (p = text; p && (p = strstr(p, "VMSIG-MW pid=")); p++)
                last = p;
        if (last && (p = strstr(last, "addr=")))
                sscanf(p, "addr=%llx", &a);
        return a;
}

static bool serial_has(const char *needle, int timeout_ms)
{
        for (int waited = 0; waited < timeout_ms; waited += 100) {
                const char *t = vm_guest_serial_text(&G);
                if (t && strstr(t, needle))
                        return true;
                usleep(100000);
        }
        return false;
}

static uint64_t find_process_root(struct vmie_ram *ram, uint64_t kernel_root, uint8_t levels,
                                  const struct vmsig_memctx *ctx, uint64_t va)
{
        uint8_t kroot[4096];
        uint64_t found = 0;
        unsigned candidates = 0;

        assert_int_equal(vmie_ram_read(ram, kernel_root, kroot, sizeof(kroot)), 0);
        for (uint32_t i = 0; i < ctx->nranges; i++) {
                for (uint64_t gpa = ctx->ranges[i].gpa; gpa < ctx->ranges[i].gpa + ctx->ranges[i].len;
                     gpa += 4096) {
                        const void *page;
                        if (gpa == kernel_root || vmie_ram_peek(ram, gpa, 4096, &page) < 0)
                                continue;
                        /* Same kernel half (entries 256..511) as the kernel root. */
                        if (memcmp((const uint8_t *)page + 2048, kroot + 2048, 2048) != 0)
                                continue;
                        candidates++;
                        struct vmie_as as = {.ram = ram, .root = gpa, .levels = levels};
                        char mark[17] = {0};
                        size_t done = 0;
                        if (vmie_read_virt(&as, va, mark, 16, &done) == 0 &&
                            memcmp(mark, "VMSIG-MW-TARGET:", 16) == 0)
                                found = gpa;
                }
        }
        printf("# %u page tables share the kernel half; the target's root is 0x%" PRIx64 "\n", candidates,
               found);
        return found;
}

static void read_target(struct vmie_ram *ram, uint64_t root, uint8_t levels, uint64_t va, char *buf,
                        size_t len)
{
        struct vmie_as as = {.ram = ram, .root = root, .levels = levels};
        size_t done = 0;

        memset(buf, 0, len);
        assert_int_equal(vmie_read_virt(&as, va, buf, len - 1, &done), 0);
}

static void test_memwrite_seen_by_kernel_and_process(void **state)
{
        char out[8192], arg_cr3[32], arg_va[32], arg_uts[32], buf[64];
        struct vm_guest_opts o = {.mem = "256M"};
        uint64_t uts = vm_symbol("init_uts_ns");

        if (!getenv("VMSIG_GUEST_DIR"))
                skip();
        assert_true(uts != 0);
        assert_int_equal(vm_guest_start(&G, "mw", &o), 0);
        assert_int_equal(vm_guest_wait_serial(&G, "VMSIG-MW pid=", 60000), 0);
        assert_int_equal(vh_start(&H, "[limits]\ntail_max = 65536\n"), 0);

        struct vmsig_client *c = vh_client(&H, "mw-test");
        assert_non_null(c);
        assert_int_equal(vh_subscribe(c, 0, VMSIG_KIND_BIT(VMSIG_EV_ROSTER), NULL, NULL), 0);
        assert_int_equal(vh_vm_add_qemu(&H, "mw", G.qmp, G.shm), 0);
        uint32_t ep = vh_wait_vm(c, "mw");
        assert_true(ep != 0);

        /* The memctx: wait for a valid datum and keep its read-only fd. */
        struct vmsig_memctx ctx;
        assert_int_equal(vh_subscribe(c, ep, VMSIG_KIND_BIT(VMSIG_EV_MEMCTX), NULL, NULL), 0);
        assert_int_equal(vh_wait_memctx(c, ep, &ctx, 60000), 0);
        struct vmie_range r[VMSIG_MEMCTX_MAX_RANGES];
        for (uint32_t i = 0; i < ctx.nranges; i++)
                r[i] = (struct vmie_range){ctx.ranges[i].gpa, ctx.ranges[i].len, ctx.ranges[i].file_offset};
        struct vmie_ram *ram = NULL;
        assert_int_equal(vmie_ram_open_fd(ctx.fd, r, ctx.nranges, 0, &ram), 0);
        close(ctx.fd);
        uint8_t levels = ctx.paging == VMSIG_PAGING_5LEVEL ? 5 : 4;

        /* Kernel memory the guest prints: /proc/version's sysname. */
        snprintf(arg_uts, sizeof(arg_uts), "0x%" PRIx64, uts);
        assert_int_equal(
            vh_vmsigctl(&H, -1, out, sizeof(out), "write", "mw", arg_uts, "4c494e5558", (char *)NULL), 0);
        assert_true(serial_has("VMSIG-PROC-VERSION LINUX version", 10000));

        /* A user process: its root found through the memctx, then written. */
        uint64_t va = target_addr();
        assert_true(va != 0);
        uint64_t root = find_process_root(ram, ctx.kernel_root, levels, &ctx, va);
        assert_true(root != 0);
        snprintf(arg_cr3, sizeof(arg_cr3), "0x%" PRIx64, root);
        snprintf(arg_va, sizeof(arg_va), "0x%" PRIx64, va + 16);
        /* "patched!" */
        assert_int_equal(vh_vmsigctl(&H, -1, out, sizeof(out), "write", "--cr3", arg_cr3, "mw", arg_va,
                                     "7061746368656421", (char *)NULL),
                         0);
        assert_true(serial_has("value=VMSIG-MW-TARGET:patched!", 10000));
        read_target(ram, root, levels, va, buf, 25);
        assert_string_equal(buf, "VMSIG-MW-TARGET:patched!");

        /* The fd source: the same write from a memfd, then back. */
        struct vmsig_client *fc = vh_client(&H, "mw-fd");
        assert_non_null(fc);
        assert_true(vmsig_client_can_memwrite_fd(fc));
        assert_int_equal(vh_lease(fc, ep, VMSIG_LEASE_MEMWRITE, true), 0);
        int src = memfd_create("mw-src", MFD_CLOEXEC);
        assert_true(src >= 0);
        assert_int_equal(pwrite(src, "xxfdsrc-ok!patched!", 19, 0), 19);
        struct vmsig_event fe;
        struct vmsig_memwrite_body fb = {.addr = va + 16};
        vmsig_event_init(&fe, VMSIG_EV_CMD_MEMWRITE, ep, VMSIG_SRC_MEMCTX);
        fe.hdr.cr3 = root;
        vmsig_event_set_body(&fe, &fb, offsetof(struct vmsig_memwrite_body, data));
        uint64_t fcorr = 0;
        struct vmsig_ack_body fack;
        assert_int_equal(vmsig_client_send_fd(fc, &fe, src, 2, 8, &fcorr), 0);
        assert_int_equal(vh_wait_ack(fc, fcorr, &fack, NULL, NULL), 0);
        assert_int_equal(fack.result, 0);
        assert_true(serial_has("value=VMSIG-MW-TARGET:fdsrc-ok", 10000));
        assert_int_equal(vmsig_client_send_fd(fc, &fe, src, 11, 8, &fcorr), 0);
        assert_int_equal(vh_wait_ack(fc, fcorr, &fack, NULL, NULL), 0);
        assert_int_equal(fack.result, 0);
        read_target(ram, root, levels, va, buf, 25);
        assert_string_equal(buf, "VMSIG-MW-TARGET:patched!");
        close(src);

        /* 64 KiB through the sealed staging memfd, by gpa: rodata around
         * linux_banner (the guest reads it only at boot). */
        struct vmie_as kas = {.ram = ram, .root = ctx.kernel_root, .levels = levels};
        struct vmie_xlate bx;
        assert_int_equal(vmie_walk(&kas, vm_symbol("linux_banner"), &bx), 0);
        const uint64_t gpa0 = bx.gpa & ~UINT64_C(0xfff), boff = bx.gpa - gpa0;
        enum { BIGW = 65536 };
        static uint8_t orig[BIGW], now[BIGW];
        assert_int_equal(vmie_ram_read(ram, gpa0, orig, BIGW), 0);
        assert_memory_equal(orig + boff, "Linux version", 13);
        void *stage = NULL;
        size_t stage_len = 0;
        struct vmsig_memwrite_body pb = {.flags = VMSIG_MEMWRITE_PHYS};
        struct vmsig_event pe;
        for (int pass = 0; pass < 2; pass++) {
                assert_int_equal(vmsig_client_memwrite_buffer(fc, &stage, &stage_len), 0);
                assert_true(stage_len >= BIGW);
                memcpy(stage, orig, BIGW);
                if (pass == 0)
                        memcpy((uint8_t *)stage + boff, "Vmsig", 5);
                pb.addr = gpa0;
                vmsig_event_init(&pe, VMSIG_EV_CMD_MEMWRITE, ep, VMSIG_SRC_MEMCTX);
                vmsig_event_set_body(&pe, &pb, offsetof(struct vmsig_memwrite_body, data));
                assert_int_equal(vmsig_client_memwrite_submit(fc, &pe, BIGW, &fcorr), 0);
                assert_int_equal(vh_wait_ack(fc, fcorr, &fack, NULL, NULL), 0);
                assert_int_equal(fack.result, 0);
                assert_non_null(strstr(fack.msg, "from the source fd"));
                assert_int_equal(vmie_ram_read(ram, gpa0, now, BIGW), 0);
                assert_memory_equal(now, stage, BIGW);
                if (pass == 0) {
                        assert_memory_equal(now + boff, "Vmsig version", 13);
                        /* the staging memfd is what the daemon mapped */
                        assert_true(vh_daemon_maps_memfd(&H, "vmsig-memwrite"));
                }
        }
        assert_memory_equal(now, orig, BIGW);
        vh_client_close(fc);

        /* Denied: no lease (a client that never asked for it). */
        struct vmsig_event mw;
        struct vmsig_memwrite_body mb = {.addr = va + 16, .len = 8};
        memcpy(mb.data, "denied!!", 8);
        vmsig_event_init(&mw, VMSIG_EV_CMD_MEMWRITE, ep, VMSIG_SRC_MEMCTX);
        mw.hdr.cr3 = root;
        vmsig_event_set_body(&mw, &mb, offsetof(struct vmsig_memwrite_body, data) + 8);
        uint64_t corr = 0;
        struct vmsig_ack_body ack;
        assert_int_equal(vmsig_client_send(c, &mw, &corr), 0);
        assert_int_equal(vh_wait_ack(c, corr, &ack, NULL, NULL), 0);
        assert_int_equal(ack.result, -EPERM);
        assert_non_null(strstr(ack.msg, "memwrite lease"));

        /* Denied: over the tail bound (128 KiB against tail_max 64 KiB): the
         * connection gets ERROR -EMSGSIZE and is closed; nothing written. */
        struct wire_welcome w;
        int raw = vh_raw_hello(H.sock, "over-bound", &w, NULL);
        assert_true(raw >= 0);
        assert_int_equal(vh_raw_lease_cmd(raw, ep, VMSIG_EV_LEASE_ACQUIRE, VMSIG_LEASE_MEMWRITE, 1), 0);
        assert_int_equal(vh_raw_wait_ack(raw, 1, &ack, NULL), 0);
        assert_int_equal(ack.result, 0);
        struct vmsig_event big;
        struct vmsig_memwrite_body bb = {.addr = va + 16, .len = 131072};
        vmsig_event_init(&big, VMSIG_EV_CMD_MEMWRITE, ep, VMSIG_SRC_MEMCTX);
        big.hdr.cr3 = root;
        big.hdr.corr = 2;
        big.hdr.flags |= VMSIG_F_SRC_PAYLOAD;
        vmsig_event_set_body(&big, &bb, offsetof(struct vmsig_memwrite_body, data));
        assert_int_equal(vh_raw_send_event(raw, &big), 0);
        uint8_t tl[4];
        assert_int_equal(wire_encode_tail_len(tl, sizeof(tl), 131072), 4);
        assert_int_equal(vh_raw_send(raw, tl, 4), 0);
        struct wire_frame f;
        int got_error = 0;
        while (vh_raw_frame(raw, &f, 5000) == 1)
                got_error |= f.type == WIRE_ERROR && f.u.error.code == -EMSGSIZE;
        assert_true(got_error);
        close(raw);

        /* Denied: an unmapped page (the guard hole at the start of the
         * kernel half); nothing to write there, and nothing written anywhere. */
        assert_int_equal(
            vh_vmsigctl(&H, -1, out, sizeof(out), "write", "mw", "0xffff800000000000", "00", (char *)NULL),
            1);
        assert_non_null(strstr(out, "unmapped"));
        read_target(ram, root, levels, va, buf, 25);
        assert_string_equal(buf, "VMSIG-MW-TARGET:patched!");

        /* Denied: no memwrite capability (root narrowed by a rule). */
        vh_client_close(c);
        assert_int_equal(vh_stop(&H, 10000), 0);
        assert_int_equal(vh_start(&H, "[uid:0]\ncaps = roster,memctx,status\n"), 0);
        assert_int_equal(vh_vm_add_qemu(&H, "mw", G.qmp, G.shm), 0);
        for (int i = 0; i < 100; i++) { /* the VM is rediscovered at start */
                if (vh_vmsigctl(&H, -1, out, sizeof(out), "list", (char *)NULL) == 0 && strstr(out, "mw"))
                        break;
                usleep(50000);
        }
        assert_int_equal(vh_vmsigctl(&H, -1, out, sizeof(out), "write", "--cr3", arg_cr3, "mw", arg_va,
                                     "6e6f636170212121", (char *)NULL),
                         4);
        assert_non_null(strstr(out, "capability memwrite"));
        read_target(ram, root, levels, va, buf, 25);
        assert_string_equal(buf, "VMSIG-MW-TARGET:patched!");
        assert_true(serial_has("value=VMSIG-MW-TARGET:patched!", 3000));
        vmie_ram_free(ram);
        assert_int_equal(vh_stop(&H, 10000), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_memwrite_seen_by_kernel_and_process, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
