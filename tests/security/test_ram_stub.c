/* SPDX-License-Identifier: MIT */
/* The stub's guest RAM seen by a control (issue 9, items 2 and 13), through
 * the real vmsigd: the read-only fd of a MEMCTX must not turn into write
 * access by any route (/proc reopen, fchmod, ftruncate, fallocate, write,
 * writable shared mappings), neither for a non-root control nor for root;
 * and a raw CR3 carrying PCID bits is masked, as the real adapter does. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include <inttypes.h>

#include "adapters/stub_internal.h"
#include "daemon/vmsigd_harness.h"
#include "test_ram_common.h"

static struct vh H;

static int teardown(void **state)
{
        (void)state;
        vh_teardown(&H);
        return 0;
}

/* Start vmsigd with one stub VM; its endpoint. */
static uint32_t start_stub(struct vmsig_client **ret)
{
        vh_must_start(&H, RAM_OTHER_CONF);
        struct vmsig_client *c = vh_client(&H, "ram-root");
        assert_non_null(c);
        assert_int_equal(vh_subscribe(c, 0, VMSIG_KIND_BIT(VMSIG_EV_ROSTER), NULL, NULL), 0);
        assert_int_equal(vh_vm_add(&H, "stub1", NULL), 0);
        uint32_t ep = vh_wait_vm(c, "stub1");
        assert_true(ep != 0);
        *ret = c;
        return ep;
}

static void test_stub_fd_never_writable(void **state)
{
        (void)state;
        struct vmsig_client *c;
        struct vmsig_memctx ctx;
        uint32_t ep = start_stub(&c);
        int fd = ram_memctx_fd(c, ep, &ctx, VH_TIMEOUT_MS);
        assert_true(fd >= 0);
        struct stat st0;
        assert_int_equal(fstat(fd, &st0), 0);

        /* uid 65534, a control with only roster+memctx, on its own fd */
        struct ram_child rc = {.sock = H.sock, .ep = ep};
        struct ram_routes other;
        assert_int_equal(vh_run_as(RAM_OTHER_UID, ram_child_routes, &rc, &other, sizeof(other)), 0);
        assert_true(other.got_fd);
        int holes = ram_holes(&other, true, "uid 65534");

        /* root may reopen (it bypasses the mode), but write nothing */
        struct ram_routes root = {0};
        ram_try_routes(fd, false, &root);
        holes += ram_holes(&root, false, "root");
        assert_int_equal(holes, 0);

        /* nothing changed: size, banner */
        struct stat st1;
        char banner[sizeof(VMSIG_STUB_BANNER)];
        assert_int_equal(fstat(fd, &st1), 0);
        assert_int_equal(st1.st_size, st0.st_size);
        assert_int_equal(pread(fd, banner, sizeof(banner), VMSIG_STUB_BANNER_GPA), (ssize_t)sizeof(banner));
        assert_memory_equal(banner, VMSIG_STUB_BANNER, sizeof(banner));

        /* the daemon itself still writes (through its own mapping) */
        char out[4096], addr[32];
        snprintf(addr, sizeof(addr), "0x%" PRIx64, VMSIG_STUB_KERNEL_BASE + 0x50000);
        assert_int_equal(
            vh_vmsigctl(&H, -1, out, sizeof(out), "write", "stub1", addr, "52414d21", (char *)NULL), 0);
        char got[4];
        assert_int_equal(pread(fd, got, 4, 0x50000), 4);
        assert_memory_equal(got, "RAM!", 4);
        close(fd);
        assert_int_equal(vh_vmsigctl(&H, -1, out, sizeof(out), "list", (char *)NULL), 0);
        assert_int_equal(vh_stop(&H, VH_TIMEOUT_MS), 0);
}

/* CR3 as the vCPU holds it: PCID in bits 0..11 (and nothing above MAXPHYADDR)
 * are not part of the root. */
static void test_stub_cr3_with_pcid(void **state)
{
        (void)state;
        struct vmsig_client *c;
        struct vmsig_memctx ctx;
        uint32_t ep = start_stub(&c);
        int fd = ram_memctx_fd(c, ep, &ctx, VH_TIMEOUT_MS);
        assert_true(fd >= 0);
        char out[4096], addr[32], cr3[32];

        snprintf(addr, sizeof(addr), "0x%" PRIx64, VMSIG_STUB_USER_VA);
        snprintf(cr3, sizeof(cr3), "0x%" PRIx64, VMSIG_STUB_USER_ROOT | 0x5);
        int code = vh_vmsigctl(&H, -1, out, sizeof(out), "--cr3", cr3, "write", "stub1", addr, "50434944",
                               (char *)NULL);
        printf("# cr3 %s: exit %d: %s", cr3, code, out);
        assert_int_equal(code, 0);
        char got[4];
        assert_int_equal(pread(fd, got, 4, VMSIG_STUB_USER_GPA), 4);
        assert_memory_equal(got, "PCID", 4);

        /* a root outside guest RAM is refused by name, PCID or not */
        snprintf(cr3, sizeof(cr3), "0x%" PRIx64, UINT64_C(0x80000000) | 0x5);
        code =
            vh_vmsigctl(&H, -1, out, sizeof(out), "--cr3", cr3, "write", "stub1", addr, "00", (char *)NULL);
        printf("# cr3 %s: exit %d: %s", cr3, code, out);
        assert_int_equal(code, 1);
        assert_non_null(strstr(out, "outside guest RAM"));
        close(fd);
        assert_int_equal(vh_stop(&H, VH_TIMEOUT_MS), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_teardown(test_stub_fd_never_writable, teardown),
            cmocka_unit_test_teardown(test_stub_cr3_with_pcid, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
