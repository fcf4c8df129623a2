/* SPDX-License-Identifier: MIT */
/* memwrite_guest: 1 MiB CMD_MEMWRITE through the real vmsigd and the real
 * memctx adapter into a real guest's RAM, against pwrite() of the same bytes
 * into a memfd in the same run (bench/actuate measures the same forms
 * against the memctx stub).
 *
 * The test guest (tests/vm) boots with memmap=4M$192M: 4 MiB of its RAM
 * that its kernel never uses, which every write targets by guest-physical
 * address (VMSIG_MEMWRITE_PHYS), so the guest keeps running undisturbed.
 * Forms, interleaved in rounds with the baseline (a load burst hits all
 * alike), each write ACKed before the next:
 *   - zero-copy staging memfd (vmsig_client_memwrite_buffer + _submit): a
 *     sealed memfd, which the engine maps once; the adapter pwrites from
 *     the mapping into the RAM file;
 *   - a caller's unsealed memfd (vmsig_client_send_fd): splice through a
 *     pipe;
 *   - the SRC tail (protocol version 1 form): the bytes cross the socket.
 *
 * Checked before any figure is printed: every write ACKed with success;
 * after each form's writes, the bytes read back from guest RAM through the
 * MEMCTX fd equal what that form wrote; the guest is still running
 * afterwards (its serial console keeps printing). Otherwise
 * "INVALID: <reason>" and exit 1.
 *
 *   memwrite_guest           full run
 *   memwrite_guest --smoke   the checks on two writes per form, no figures
 *
 * Environment: VMSIGD (the vmsigd binary), VMSIG_GUEST_DIR (the built test
 * guest, ctest -R vm_guest_build; without it a full run says "guest
 * unavailable" and prints no figures), VMSIG_QEMU (optional). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <vmie/vmie.h>
#include <vmsig/client.h>

#include "bench_check.h"
#include "daemon/vmsigd_harness.h"
#include "vm/vm_guest.h"

#define BIG       (1u << 20)
#define RSV_GPA   UINT64_C(0xC000000) /* 192 MiB: memmap=4M$192M */
#define RSV_LEN   (4u << 20)
#define RSV_PARAM "memmap=4M$192M"

static struct vh H;
static struct vm_guest G = {.pid = -1};
static bool g_smoke;

static uint64_t now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void run_free(void);

static void cleanup(void)
{
        run_free();
        vh_teardown(&H);
        vm_guest_stop(&G);
}

static void on_signal(int sig)
{
        cleanup();
        signal(sig, SIG_DFL);
        raise(sig);
}

static int wait_ack(struct vmsig_client *c, uint64_t corr, struct vmsig_ack_body *ack)
{
        int r = vh_wait_ack(c, corr, ack, NULL, NULL);
        return r < 0 ? r : ack->result;
}

enum form { F_STAGE, F_OWNFD, F_TAIL, F_COUNT };
static const char *const form_name[F_COUNT] = {
    "fd source, zero-copy staging memfd (sealed: mapped)",
    "fd source, caller's unsealed memfd (spliced)",
    "SRC tail (the bytes cross the socket)",
};

struct run {
        struct vmsig_client *c;
        uint32_t ep;
        struct vmie_ram *ram;
        int own_fd;    /* the caller's unsealed memfd */
        uint8_t *own;  /* its mapping */
        uint8_t *buf;  /* the tail's source */
        uint8_t *back; /* read back from guest RAM */
        char why[200];
};

static struct run g_run = {.own_fd = -1};

static void run_free(void)
{
        struct run *r = &g_run;

        vmie_ram_free(r->ram);
        if (r->own && r->own != MAP_FAILED)
                munmap(r->own, BIG);
        if (r->own_fd >= 0)
                close(r->own_fd);
        free(r->buf);
        free(r->back);
        memset(r, 0, sizeof(*r));
        r->own_fd = -1;
}

/* One write of form f with every byte = v, at the reserved range. */
static int write_once(struct run *r, enum form f, uint8_t v)
{
        struct vmsig_memwrite_body mb = {.addr = RSV_GPA, .len = BIG, .flags = VMSIG_MEMWRITE_PHYS};
        struct vmsig_event ev;
        struct vmsig_ack_body ack = {0};
        uint64_t corr = 0;
        void *stage;
        int e;

        vmsig_event_init(&ev, VMSIG_EV_CMD_MEMWRITE, r->ep, VMSIG_SRC_MEMCTX);
        vmsig_event_set_body(&ev, &mb, offsetof(struct vmsig_memwrite_body, data));
        switch (f) {
        case F_STAGE:
                e = vmsig_client_memwrite_buffer(r->c, &stage, NULL);
                if (e == 0) {
                        if (((uint8_t *)stage)[0] != v || ((uint8_t *)stage)[BIG - 1] != v)
                                memset(stage, v, BIG); /* once per round: filled in place */
                        e = vmsig_client_memwrite_submit(r->c, &ev, BIG, &corr);
                }
                break;
        case F_OWNFD:
                if (r->own[0] != v)
                        memset(r->own, v, BIG);
                e = vmsig_client_send_fd(r->c, &ev, r->own_fd, 0, BIG, &corr);
                break;
        default:
                if (r->buf[0] != v)
                        memset(r->buf, v, BIG);
                e = vmsig_client_send_payload(r->c, &ev, r->buf, BIG, &corr);
                break;
        }
        if (e == 0)
                e = wait_ack(r->c, corr, &ack);
        if (e < 0)
                snprintf(r->why, sizeof(r->why), "%s: %s (%s)", form_name[f], strerror(-e),
                         e == ack.result ? ack.msg : "send/receive");
        return e;
}

static bool landed(struct run *r, uint8_t v)
{
        if (vmie_ram_read(r->ram, RSV_GPA, r->back, BIG) < 0)
                return false;
        for (size_t i = 0; i < BIG; i++)
                if (r->back[i] != v)
                        return false;
        return true;
}

static int setup(struct run *r)
{
        struct vm_guest_opts o = {.mem = "256M", .append = RSV_PARAM};
        struct vmsig_memctx ctx = {.fd = -1};
        int e;

        if ((e = vm_guest_start(&G, "mwg", &o)) < 0) {
                if (e == -ENOENT && !g_smoke) {
                        printf("  guest unavailable: the test guest is not built (VMSIG_GUEST_DIR; ctest -R "
                               "vm_guest_build) -- no figures\n");
                        return 1;
                }
                invalid("cannot start the test guest: %s (VMSIG_GUEST_DIR, ctest -R vm_guest_build)",
                        strerror(-e));
                return -1;
        }
        if (vm_guest_wait_serial(&G, "VMSIG-GUEST-READY", 120000) < 0) {
                invalid("the test guest did not come up within 120 s");
                return -1;
        }
        if (!strstr(vm_guest_serial_text(&G), RSV_PARAM)) {
                invalid("the guest's command line lacks %s", RSV_PARAM);
                return -1;
        }
        if (vh_start(&H, "[limits]\ntail_max = 1048576\n") < 0) {
                invalid("vmsigd did not start (VMSIGD=%s)", getenv("VMSIGD") ? getenv("VMSIGD") : "unset");
                return -1;
        }
        r->c = vh_client(&H, "memwrite-guest");
        if (!r->c || vh_subscribe(r->c, 0, VMSIG_KIND_BIT(VMSIG_EV_ROSTER), NULL, NULL) != 0 ||
            vh_vm_add_qemu(&H, "mwg", G.qmp, G.shm) < 0 || !(r->ep = vh_wait_vm(r->c, "mwg"))) {
                invalid("the guest never showed up in vmsigd's roster");
                return -1;
        }
        if (vh_subscribe(r->c, r->ep, VMSIG_KIND_BIT(VMSIG_EV_MEMCTX), NULL, NULL) != 0 ||
            vh_wait_memctx(r->c, r->ep, &ctx, 60000) < 0) {
                invalid("no MEMCTX for the guest within 60 s");
                return -1;
        }
        struct vmie_range rg[VMSIG_MEMCTX_MAX_RANGES];
        for (uint32_t i = 0; i < ctx.nranges; i++)
                rg[i] = (struct vmie_range){ctx.ranges[i].gpa, ctx.ranges[i].len, ctx.ranges[i].file_offset};
        e = vmie_ram_open_fd(ctx.fd, rg, ctx.nranges, 0, &r->ram);
        close(ctx.fd);
        if (e < 0 || vmie_ram_gpa_to_offset(r->ram, RSV_GPA + RSV_LEN - 1, NULL, NULL) < 0) {
                invalid("the reserved range 0x%" PRIx64 "+4M is not in the guest's RAM layout", RSV_GPA);
                return -1;
        }
        if (vh_lease(r->c, r->ep, VMSIG_LEASE_MEMWRITE, true) != 0) {
                invalid("the memwrite lease was refused");
                return -1;
        }
        if (!vmsig_client_can_memwrite_fd(r->c)) {
                invalid("the daemon does not offer the fd source (protocol version 2)");
                return -1;
        }
        r->own_fd = memfd_create("memwrite-guest-src", MFD_CLOEXEC);
        r->buf = malloc(BIG);
        r->back = malloc(BIG);
        if (r->own_fd < 0 || ftruncate(r->own_fd, BIG) < 0 || !r->buf || !r->back) {
                invalid("out of memory for the sources");
                return -1;
        }
        r->own = mmap(NULL, BIG, PROT_READ | PROT_WRITE, MAP_SHARED, r->own_fd, 0);
        if (r->own == MAP_FAILED) {
                invalid("cannot map the caller's memfd: %s", strerror(errno));
                return -1;
        }
        return 0;
}

int main(int argc, char **argv)
{
        const int ROUNDS = (argc > 1 && strcmp(argv[1], "--smoke") == 0) ? 1 : 10;
        const int PER = ROUNDS == 1 ? 2 : 20;
        uint64_t ns[F_COUNT] = {0}, ns_pw = 0;
        struct run *rp = &g_run;
        int ok[F_COUNT] = {0};

        g_smoke = ROUNDS == 1;
        setvbuf(stdout, NULL, _IOLBF, 0);
        atexit(cleanup);
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
        signal(SIGPIPE, SIG_IGN);
        if (!vh_bin("VMSIGD")) {
                fprintf(stderr, "memwrite_guest: set VMSIGD to the vmsigd binary\n");
                return 2;
        }
        printf("memwrite_guest%s: 1 MiB CMD_MEMWRITE into a real guest (real vmsigd, real memctx adapter, "
               "guest-physical writes into %s) vs pwrite() of the same bytes into a memfd\n",
               g_smoke ? " --smoke (checks only, no figures)" : "", RSV_PARAM);
        int e = setup(rp);
        if (e > 0)
                return 0; /* unavailable, said why */
        if (e < 0) {
                (void)bench_report_invalid();
                return 1;
        }

        int mfd = memfd_create("memwrite-guest-baseline", MFD_CLOEXEC);
        if (mfd < 0 || ftruncate(mfd, 4 * BIG) < 0) {
                invalid("no baseline memfd");
                (void)bench_report_invalid();
                return 1;
        }
        for (int round = 0; round < ROUNDS && !rp->why[0]; round++) {
                for (int f = 0; f < F_COUNT && !rp->why[0]; f++) {
                        const uint8_t v = (uint8_t)(0x10 + 0x30 * f + round);
                        uint64_t t0 = now_ns();
                        for (int i = 0; i < PER && !rp->why[0]; i++)
                                if (write_once(rp, (enum form)f, v) == 0)
                                        ok[f]++;
                        ns[f] += now_ns() - t0;
                        if (!rp->why[0] && !landed(rp, v))
                                snprintf(rp->why, sizeof(rp->why),
                                         "%s: the bytes read back from guest RAM differ", form_name[f]);
                }
                uint64_t t0 = now_ns();
                for (int i = 0; i < PER; i++)
                        (void)!pwrite(mfd, rp->buf, BIG, BIG);
                ns_pw += now_ns() - t0;
        }
        close(mfd);
        if (rp->why[0])
                invalid("%s", rp->why);
        /* the guest lived through it: its console still prints */
        size_t seen = strlen(vm_guest_serial_text(&G));
        bool alive = false;
        for (int t = 0; t < 50 && !alive; t++) {
                usleep(100000);
                alive = strlen(vm_guest_serial_text(&G)) > seen;
        }
        if (!alive)
                invalid("the guest's console went quiet after the writes");
        if (bench_report_invalid())
                return 1;
        if (g_smoke) {
                printf("  smoke: valid -- %d writes per form ACKed with success, each form's bytes read back "
                       "from guest RAM, the guest still running\n",
                       PER);
                return 0;
        }
        const double pw = (double)ROUNDS * PER * BIG / ((double)ns_pw / 1e9) / 1e6;
        printf("%-56s %10s %10s %7s\n", "1 MiB MEMWRITE into guest RAM, MB/s", "bus", "pwrite", "ratio");
        for (int f = 0; f < F_COUNT; f++) {
                const double mbs = (double)ok[f] * BIG / ((double)ns[f] / 1e9) / 1e6;
                printf("  %-54s %10.0f %10.0f %7.2f\n", form_name[f], mbs, pw, mbs / pw);
        }
        printf(
            "(%d rounds of %d writes per form, interleaved with the baseline; every write ACKed before the "
            "next)\n",
            ROUNDS, PER);
        printf(
            "checks: every write ACKed with success; each form's bytes read back from guest RAM; the guest "
            "still running\n");
        return 0;
}
