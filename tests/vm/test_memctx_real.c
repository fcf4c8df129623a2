/* SPDX-License-Identifier: MIT */
/* The real memctx adapter (sharing its QMP session with the vmhost adapter)
 * against real QEMU guests (TCG): the published context reads the guest
 * kernel correctly (checked against System.map and QEMU's own gva2gpa/xp),
 * for 4- and 5-level paging and RAM above 4 GiB; resets bump the epoch,
 * QEMU dying invalidates it; MEMWRITE writes whole or not at all. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include <vmie/vmie.h>

#include "host/mtree.h"
#include "vm/vm_bus.h"
#include "vm/vm_guest.h"

#define KMAP UINT64_C(0xffffffff80000000) /* __START_KERNEL_map */

struct fx {
        struct vb b;
        struct vm_guest g;
        char dir[128];
        char qmp[200], side[200], ram[200]; /* stable across QEMU restarts */
        char a_qmp[260], a_side[260];
        long t0;
        struct vmie_ram *ram_ro; /* from the last MEMCTX */
        struct vmsig_memctx_body ctx;
};

static int setup(void **state)
{
        struct fx *f = calloc(1, sizeof(*f));
        snprintf(f->dir, sizeof(f->dir), "/tmp/vmsig-memctx.XXXXXX");
        if (!mkdtemp(f->dir))
                return -1;
        snprintf(f->qmp, sizeof(f->qmp), "%s/qmp.sock", f->dir);
        snprintf(f->side, sizeof(f->side), "%s/side.sock", f->dir);
        /* beside the RAM file (a hard link cannot cross filesystems), named
         * so that vm_guest's sweep removes it after a crash */
        snprintf(f->ram, sizeof(f->ram), "/dev/shm/" VM_GUEST_SHM_PREFIX "memctxlink-%d-0", (int)getpid());
        snprintf(f->a_qmp, sizeof(f->a_qmp), "unix:%s,server=on,wait=off", f->qmp);
        snprintf(f->a_side, sizeof(f->a_side), "unix:%s,server=on,wait=off", f->side);
        f->t0 = vm_guest_now_ms();
        if (vb_init(&f->b, "vm1") < 0)
                return -1;
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fx *f = *state;
        char shm[256];
        snprintf(shm, sizeof(shm), "%s", f->g.shm);
        vmie_ram_free(f->ram_ro);
        vb_free(&f->b);
        vm_guest_stop(&f->g);
        unlink(f->qmp);
        unlink(f->side);
        unlink(f->ram);
        rmdir(f->dir);
        struct stat st;
        if (shm[0])
                assert_int_not_equal(stat(shm, &st), 0); /* no leftovers in /dev/shm */
        printf("# total %ld ms\n", vm_guest_now_ms() - f->t0);
        free(f);
        return 0;
}

/* The RAM path handed to the adapter is a hard link to the harness's
 * per-start /dev/shm file, so a restarted QEMU keeps "the same" path (not a
 * symlink: the adapter refuses those, see docs/architecture.md). */
static void start_qemu(struct fx *f, const char *mem, const char *const *more)
{
        const char *extra[16] = {"-qmp", f->a_qmp, "-qmp", f->a_side, "-action", "reboot=reset"};
        size_t n = 6;
        for (; more && *more && n < 15; more++)
                extra[n++] = *more;
        extra[n] = NULL;
        struct vm_guest_opts o = {.mem = mem, .extra = extra};
        vm_guest_stop(&f->g);
        assert_int_equal(vm_guest_start(&f->g, "memctx", &o), 0);
        unlink(f->ram);
        /* QEMU may open its QMP socket before it creates the RAM file */
        struct stat st;
        for (long deadline = vm_guest_now_ms() + 15000;
             stat(f->g.shm, &st) < 0 && vm_guest_now_ms() < deadline;)
                usleep(10000);
        assert_int_equal(link(f->g.shm, f->ram), 0);
}

static void attach_both(struct fx *f)
{
        struct vmsig_adapter_cfg cfg = {.vm_name = "vm1",
                                        .qmp_path = f->qmp,
                                        .ram_path = f->ram,
                                        .options = "retry_ms=50,retry_max_ms=500"};
        assert_non_null(vmsig_memctx_ops());
        struct vmsig_adapter_cfg bad = cfg;
        bad.options = "os=plan9";
        assert_int_equal(vmsig_bus_attach(f->b.bus, f->b.ep, vmsig_memctx_ops(), &bad), -EINVAL);
        assert_int_equal(vmsig_bus_attach(f->b.bus, f->b.ep, vmsig_vmhost_ops(), &cfg), 0);
        assert_int_equal(vmsig_bus_attach(f->b.bus, f->b.ep, vmsig_memctx_ops(), &cfg), 0);
}

static bool is_memctx(const struct vmsig_event *ev, const void *arg)
{
        return ev->hdr.kind == VMSIG_EV_MEMCTX && vb_memctx(ev)->valid == *(const uint8_t *)arg;
}

static unsigned count_diags(struct fx *f, unsigned from, unsigned to)
{
        unsigned n = 0;
        for (unsigned i = from; i < to; i++)
                if (f->b.ev[i].hdr.kind == VMSIG_EV_DIAG && f->b.ev[i].hdr.source == VMSIG_SRC_MEMCTX) {
                        printf("# DIAG: %s\n", ((const struct vmsig_diag_body *)f->b.ev[i].body)->msg);
                        n++;
                }
        return n;
}

/* Waits for a valid MEMCTX at or after from and opens its fd with vmie. */
static int take_memctx(struct fx *f, unsigned from, int timeout_ms)
{
        uint8_t valid = 1;
        int i = vb_wait(&f->b, from, is_memctx, &valid, timeout_ms);
        if (i < 0)
                fail_msg("no valid MEMCTX within %d ms; serial:\n%s", timeout_ms,
                         vm_guest_serial_text(&f->g));
        const struct vmsig_event *ev = &f->b.ev[i];
        int fd = f->b.fd[i];
        assert_true(fd >= 0);
        assert_true(ev->hdr.flags & VMSIG_F_HAS_FD);
        /* perception is read-only by construction */
        assert_int_equal(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDONLY);
        assert_true(write(fd, "x", 1) < 0);
        memcpy(&f->ctx, vb_memctx(ev), sizeof(f->ctx));
        struct vmie_range rr[VMSIG_MEMCTX_MAX_RANGES];
        for (unsigned k = 0; k < f->ctx.nranges; k++)
                rr[k] = (struct vmie_range){f->ctx.ranges[k].gpa, f->ctx.ranges[k].len,
                                            f->ctx.ranges[k].file_offset};
        f->ram_ro = vmie_ram_free(f->ram_ro);
        assert_int_equal(vmie_ram_open_fd(fd, rr, f->ctx.nranges, 0, &f->ram_ro), 0);
        printf("# MEMCTX epoch %" PRIu64 ": root 0x%" PRIx64 ", %u-level, os %u, %u ranges\n", f->ctx.epoch,
               f->ctx.kernel_root, f->ctx.paging, f->ctx.os_kind, f->ctx.nranges);
        for (unsigned k = 0; k < f->ctx.nranges; k++)
                printf("#   gpa 0x%09" PRIx64 " len 0x%09" PRIx64 " @0x%09" PRIx64 "\n", f->ctx.ranges[k].gpa,
                       f->ctx.ranges[k].len, f->ctx.ranges[k].file_offset);
        return i;
}

static struct vmie_as kas(struct fx *f)
{
        return (struct vmie_as){.ram = f->ram_ro, .root = f->ctx.kernel_root, .levels = f->ctx.paging};
}

/* QEMU's own translation; false if it says the address is unmapped. */
static bool qemu_gva2gpa(struct fx *f, uint64_t va, uint64_t *ret)
{
        char cmd[64];
        snprintf(cmd, sizeof(cmd), "gva2gpa 0x%" PRIx64, va);
        char *t = side_hmp(f->side, cmd);
        assert_non_null(t);
        unsigned long long gpa;
        bool ok = sscanf(t, "gpa: 0x%llx", &gpa) == 1;
        free(t);
        if (ok)
                *ret = gpa;
        return ok;
}

static uint64_t qemu_xp64(struct fx *f, uint64_t gpa)
{
        char cmd[64];
        snprintf(cmd, sizeof(cmd), "xp /1gx 0x%" PRIx64, gpa);
        char *t = side_hmp(f->side, cmd);
        assert_non_null(t);
        const char *p = strstr(t, ": ");
        assert_non_null(p);
        uint64_t v = strtoull(p + 2, NULL, 16);
        free(t);
        return v;
}

static void check_layout(struct fx *f)
{
        char *t = side_hmp(f->side, "info mtree -f");
        struct mtree_layout lay;
        char err[128];
        assert_non_null(t);
        assert_int_equal(mtree_ram_layout(t, strlen(t), &lay, err, sizeof(err)), 0);
        free(t);
        assert_int_equal(f->ctx.nranges, lay.n_ranges);
        for (size_t k = 0; k < lay.n_ranges; k++) {
                assert_int_equal(f->ctx.ranges[k].gpa, lay.ranges[k].gpa);
                assert_int_equal(f->ctx.ranges[k].len, lay.ranges[k].len);
                assert_int_equal(f->ctx.ranges[k].file_offset, lay.ranges[k].file_offset);
        }
}

static void check_banner(struct fx *f)
{
        uint64_t va = vm_symbol("linux_banner");
        assert_true(va != 0);
        struct vmie_as as = kas(f);
        char buf[256];
        int r = vmie_read_str(&as, va, buf, sizeof(buf), NULL);
        if (r < 0 && r != -E2BIG)
                fail_msg("reading linux_banner at 0x%" PRIx64 ": %s", va, strerror(-r));
        printf("# linux_banner: %.70s...\n", buf);
        assert_memory_equal(buf, "Linux version ", 14);
}

/* vmie's translations agree with QEMU's for a sample of kernel addresses. */
static void check_translations(struct fx *f)
{
        const char *syms[] = {"_text",  "linux_banner", "init_uts_ns", "init_top_pgt",
                              "_sdata", "jiffies_64",   "__bss_stop",  "_end"};
        struct vmie_as as = kas(f);
        unsigned checked = 0;
        for (size_t k = 0; k < sizeof(syms) / sizeof(syms[0]); k++) {
                uint64_t va = vm_symbol(syms[k]), q, mine;
                struct vmie_xlate x;
                if (!va)
                        continue;
                va += 0x123; /* not page-aligned */
                bool qok = qemu_gva2gpa(f, va, &q);
                int r = vmie_translate(&as, va, &x);
                mine = x.gpa;
                if (!qok) {
                        assert_int_not_equal(r, 0);
                        continue;
                }
                if (r < 0)
                        fail_msg("%s+0x123: vmie %s, QEMU 0x%" PRIx64, syms[k], strerror(-r), q);
                if (mine != q)
                        fail_msg("%s+0x123: vmie 0x%" PRIx64 ", QEMU 0x%" PRIx64, syms[k], mine, q);
                checked++;
        }
        printf("# %u kernel translations agree with QEMU's gva2gpa\n", checked);
        assert_true(checked >= 5);
        /* the published root is the kernel's own swapper_pg_dir */
        uint64_t pgd;
        assert_true(qemu_gva2gpa(f, vm_symbol("init_top_pgt"), &pgd));
        printf("# swapper_pg_dir (init_top_pgt) at 0x%" PRIx64 "\n", pgd);
        assert_int_equal(f->ctx.kernel_root, pgd);
}

static const struct vmsig_ack_body *memwrite(struct fx *f, uint64_t cr3, uint64_t addr, uint32_t flags,
                                             const void *src, uint32_t len)
{
        struct vmsig_memwrite_body b;
        struct vmsig_event ev;
        memset(&b, 0, sizeof(b));
        b.addr = addr;
        b.len = len;
        b.flags = flags;
        vmsig_event_init(&ev, VMSIG_EV_CMD_MEMWRITE, f->b.ep, VMSIG_SRC_MEMCTX);
        ev.hdr.corr = ++f->b.corr;
        ev.hdr.cr3 = cr3;
        if (len <= VMSIG_MEMWRITE_INLINE_MAX) {
                memcpy(b.data, src, len);
                vmsig_event_set_body(&ev, &b, offsetof(struct vmsig_memwrite_body, data) + len);
                assert_int_equal(vmsig_control_send(f->b.ctl, &ev), 0);
        } else {
                vmsig_event_set_body(&ev, &b, offsetof(struct vmsig_memwrite_body, data));
                assert_int_equal(vmsig_control_send_payload(f->b.ctl, &ev, src, len), 0);
        }
        int i = vb_wait_ack(&f->b, ev.hdr.corr, 10000);
        assert_true(i >= 0);
        const struct vmsig_ack_body *a = vb_ack(&f->b.ev[i]);
        printf("# MEMWRITE %s0x%" PRIx64 "+%u -> %d \"%s\"\n", (flags & VMSIG_MEMWRITE_PHYS) ? "gpa " : "",
               addr, len, a->result, a->msg);
        return a;
}

static void check_memwrite(struct fx *f)
{
        struct vmie_as as = kas(f);
        uint64_t uts = vm_symbol("init_uts_ns"), banner = vm_symbol("linux_banner");
        uint8_t orig[512], now[512];
        assert_int_equal(vb_lease(&f->b, VMSIG_LEASE_MEMWRITE), 0);

        /* a writable kernel object: the nodename "(none)" in init_uts_ns */
        assert_int_equal(vmie_read_virt(&as, uts, orig, sizeof(orig), NULL), 0);
        uint8_t *node = memmem(orig, sizeof(orig), "(none)", 7);
        assert_non_null(node);
        uint64_t va = uts + (uint64_t)(node - orig);
        const struct vmsig_ack_body *a = memwrite(f, 0, va, 0, "vmsig!", 7);
        assert_int_equal(a->result, 0);
        assert_int_equal(a->value, 7);
        char s[16];
        assert_int_equal(vmie_read_str(&as, va, s, sizeof(s), NULL), 0);
        assert_string_equal(s, "vmsig!");
        uint64_t gpa;
        assert_true(qemu_gva2gpa(f, va, &gpa));
        uint64_t q = qemu_xp64(f, gpa), mine;
        memcpy(&mine, "vmsig!\0", 7);
        assert_int_equal(q & 0x00ffffffffffffffull, mine & 0x00ffffffffffffffull); /* QEMU sees it too */
        /* guest-physical, and an explicit cr3 */
        a = memwrite(f, 0, gpa, VMSIG_MEMWRITE_PHYS, "physOK", 7);
        assert_int_equal(a->result, 0);
        assert_int_equal(vmie_read_str(&as, va, s, sizeof(s), NULL), 0);
        assert_string_equal(s, "physOK");
        a = memwrite(f, f->ctx.kernel_root, va, 0, "(none)", 7);
        assert_int_equal(a->result, 0);
        /* a source bigger than the inline body: the payload path (same bytes back) */
        assert_int_equal(vmie_read_virt(&as, uts, orig, 400, NULL), 0);
        a = memwrite(f, 0, uts, 0, orig, 400);
        assert_int_equal(a->result, 0);
        assert_int_equal(a->value, 400);

        /* refused, precisely, with nothing written */
        a = memwrite(f, 0, banner, 0, "X", 1);
        assert_int_equal(a->result, -EACCES);
        assert_non_null(strstr(a->msg, "read-only page at 0x"));
        assert_int_equal(vmie_read_virt(&as, banner, now, 14, NULL), 0);
        assert_memory_equal(now, "Linux version ", 14);
        a = memwrite(f, 0, 0x1000, 0, "X", 1);
        assert_int_equal(a->result, -EFAULT);
        assert_non_null(strstr(a->msg, "unmapped page at 0x1000"));

        /* writable page followed by an unmapped one: no partial write */
        uint64_t p = (vm_symbol("_end") + 4095) & ~UINT64_C(4095);
        struct vmie_xlate x;
        while (p < vm_symbol("_end") + (UINT64_C(64) << 20) && vmie_walk(&as, p, &x) == 0)
                p += 4096;
        if (vmie_walk(&as, p - 4096, &x) == 0 && x.writable && vmie_walk(&as, p, &x) < 0) {
                uint8_t before[8], after[8];
                assert_int_equal(vmie_read_virt(&as, p - 8, before, 8, NULL), 0);
                a = memwrite(f, 0, p - 8, 0, "ABCDEFGHIJKLMNOP", 16);
                assert_int_equal(a->result, -EFAULT);
                char want[64];
                snprintf(want, sizeof(want), "unmapped page at 0x%" PRIx64, p);
                assert_non_null(strstr(a->msg, want));
                assert_int_equal(vmie_read_virt(&as, p - 8, after, 8, NULL), 0);
                assert_memory_equal(before, after, 8);
        } else {
                printf("# (no writable->unmapped boundary after _end; skipped)\n");
        }
        /* guest-physical across the end of low RAM into the hole above it */
        const struct vmsig_ram_range *lo = &f->ctx.ranges[0];
        for (unsigned k = 0; k < f->ctx.nranges; k++)
                if (f->ctx.ranges[k].gpa < (UINT64_C(1) << 32))
                        lo = &f->ctx.ranges[k];
        uint64_t end = lo->gpa + lo->len;
        uint8_t before[8], after[8];
        assert_int_equal(vmie_ram_read(f->ram_ro, end - 8, before, 8), 0);
        a = memwrite(f, 0, end - 8, VMSIG_MEMWRITE_PHYS, "ABCDEFGHIJKLMNOP", 16);
        assert_int_equal(a->result, -EFAULT);
        char want[64];
        snprintf(want, sizeof(want), "not RAM at gpa 0x%" PRIx64, end);
        assert_non_null(strstr(a->msg, want));
        assert_int_equal(vmie_ram_read(f->ram_ro, end - 8, after, 8), 0);
        assert_memory_equal(before, after, 8);
}

static void test_memctx_4level(void **state)
{
        struct fx *f = *state;
        struct vb *b = &f->b;
        uint8_t invalid = 0;

        start_qemu(f, "256M", NULL);
        long t = vm_guest_now_ms();
        attach_both(f); /* right away: the bootstrap heals while the guest boots */
        int i = take_memctx(f, 0, 45000);
        printf("# MEMCTX %ld ms after QEMU start\n", vm_guest_now_ms() - t);
        assert_true(count_diags(f, 0, (unsigned)i) <= 1); /* one line for a booting guest, at most */
        assert_int_equal(f->ctx.paging, VMSIG_PAGING_4LEVEL);
        assert_int_equal(f->ctx.os_kind, VMSIG_OS_LINUX);
        check_layout(f);
        check_banner(f);
        check_translations(f);
        assert_int_equal(vm_guest_wait_serial(&f->g, "VMSIG-GUEST-READY", 45000), 0);
        check_memwrite(f);

        /* reset: invalidated, then a new context with epoch + 1 */
        uint64_t epoch = f->ctx.epoch;
        assert_int_equal(vb_lease(b, VMSIG_LEASE_POWER), 0);
        unsigned from = b->n;
        t = vm_guest_now_ms();
        assert_true(vb_power_wait(b, VMSIG_POWER_RESET, 5000) >= 0);
        i = vb_wait(b, from, is_memctx, &invalid, 5000);
        assert_true(i >= 0);
        assert_int_equal(vb_memctx(&b->ev[i])->epoch, epoch);
        take_memctx(f, (unsigned)i, 45000);
        printf("# re-bootstrapped %ld ms after reset\n", vm_guest_now_ms() - t);
        assert_int_equal(f->ctx.epoch, epoch + 1);
        check_banner(f);

        /* The vmhost adapter leaves: the shared session stays for memctx. */
        assert_int_equal(vmsig_bus_detach(b->bus, b->ep, VMSIG_SRC_VMHOST), 0);
        vb_pump(b, 100);

        /* QEMU killed: invalidated; the bus runs on; back when QEMU is */
        from = b->n;
        assert_int_equal(kill(f->g.pid, SIGKILL), 0);
        i = vb_wait(b, from, is_memctx, &invalid, 5000);
        assert_true(i >= 0);
        vb_pump(b, 200);
        from = b->n;
        t = vm_guest_now_ms();
        start_qemu(f, "256M", NULL);
        take_memctx(f, from, 45000);
        printf("# back %ld ms after the QEMU restart (new RAM file)\n", vm_guest_now_ms() - t);
        check_banner(f);
}

static void test_memctx_5level(void **state)
{
        struct fx *f = *state;
        const char *cpu[] = {"-cpu", "max", NULL};

        start_qemu(f, "256M", cpu);
        assert_int_equal(vm_guest_wait_serial(&f->g, "VMSIG-GUEST-READY", 45000), 0);
        /* the guest really runs with LA57 */
        char *regs = side_hmp(f->side, "info registers");
        assert_non_null(regs);
        const char *p = strstr(regs, "CR4=");
        assert_non_null(p);
        uint64_t cr4 = strtoull(p + 4, NULL, 16);
        free(regs);
        printf("# CR4 0x%" PRIx64 "\n", cr4);
        assert_true(cr4 & (1u << 12));
        attach_both(f);
        take_memctx(f, 0, 30000);
        assert_int_equal(f->ctx.paging, VMSIG_PAGING_5LEVEL);
        check_banner(f);
        check_translations(f);
}

static void test_memctx_above_4g(void **state)
{
        struct fx *f = *state;

        start_qemu(f, "5G", NULL); /* sparse file: the guest touches little of it */
        assert_int_equal(vm_guest_wait_serial(&f->g, "VMSIG-GUEST-READY", 45000), 0);
        attach_both(f);
        take_memctx(f, 0, 30000);
        check_layout(f);
        check_banner(f);
        check_translations(f);
        /* below the split: the banner's bytes, as QEMU sees them */
        uint64_t gpa, v;
        assert_true(qemu_gva2gpa(f, vm_symbol("linux_banner"), &gpa));
        assert_int_equal(vmie_ram_read(f->ram_ro, gpa, &v, 8), 0);
        assert_int_equal(v, qemu_xp64(f, gpa));
        /* above it: the kernel allocates early structures top-down, so the
         * top of high RAM holds data; compare the first non-zero qword */
        const struct vmsig_ram_range *hi = NULL;
        for (unsigned k = 0; k < f->ctx.nranges; k++)
                if (f->ctx.ranges[k].gpa >= (UINT64_C(1) << 32))
                        hi = &f->ctx.ranges[k];
        assert_non_null(hi);
        assert_int_equal(hi->gpa, UINT64_C(1) << 32);
        printf("# high RAM: 0x%" PRIx64 " bytes at file offset 0x%" PRIx64 "\n", hi->len, hi->file_offset);
        uint64_t found = 0;
        for (uint64_t a = hi->gpa + hi->len - 4096; a >= hi->gpa + hi->len - (UINT64_C(32) << 20) && !found;
             a -= 4096) {
                uint64_t pg[512];
                assert_int_equal(vmie_ram_read(f->ram_ro, a, pg, sizeof(pg)), 0);
                for (unsigned k = 0; k < 512; k++)
                        if (pg[k]) {
                                found = a + k * 8;
                                v = pg[k];
                                break;
                        }
        }
        assert_true(found >= UINT64_C(1) << 32);
        printf("# gpa 0x%" PRIx64 " = 0x%016" PRIx64 " (xp agrees)\n", found, v);
        assert_int_equal(v, qemu_xp64(f, found));
        /* and a kernel virtual address that lands above 4 GiB, if any */
        struct vmie_as as = kas(f);
        uint64_t dm = f->ctx.paging == 5 ? UINT64_C(0xff11000000000000) : UINT64_C(0xffff888000000000);
        struct vmie_xlate x;
        assert_int_equal(vmie_translate(&as, dm + found, &x), 0); /* the direct map */
        assert_int_equal(x.gpa, found);
        assert_true(qemu_gva2gpa(f, dm + found, &gpa));
        assert_int_equal(gpa, found);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_memctx_4level, setup, teardown),
            cmocka_unit_test_setup_teardown(test_memctx_5level, setup, teardown),
            cmocka_unit_test_setup_teardown(test_memctx_above_4g, setup, teardown),
        };
        return cmocka_run_group_tests_name("memctx_real", tests, NULL, NULL);
}
