/* SPDX-License-Identifier: MIT */
/* The C side of bench/python_client.py: the same three measurements through
 * the C client (libvmsig) and libvmie, so the Python figures are ratios
 * against C in the same run. Not a bench by itself (no --smoke): the Python
 * script runs it and checks what it prints.
 *
 *   pyclient_c_baseline events SOCK VM N   subscribe to LEASE_GRANT|LEASE_REVOKE
 *       of VM, print "ready", take N events; print the events, how many were
 *       out of order (not GRANT/REVOKE alternating, seq not increasing) and
 *       the process CPU time spent from the first event to the last
 *   pyclient_c_baseline rtt SOCK VM N      hold the input lease, N MOVE_ABS one at
 *       a time, each waited for; print the failures and the wall time
 *   pyclient_c_baseline read SOCK VM N VA  N reads of 4 KiB at VA through the
 *       VM's memory context (safe mode, as vmsigctl read); print a checksum of
 *       the first page, the wall time and the process CPU time */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <vmie/vmie.h>
#include <vmsig/client.h>
#include <vmsig/event.h>
#include <vmsig/memctx.h>

#define TIMEOUT_MS 20000

static uint64_t now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t cpu_ns(void)
{
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000u +
               (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000u;
}

static int die(const char *what, int r)
{
        fprintf(stderr, "pyclient_c_baseline: %s: %s\n", what, strerror(r < 0 ? -r : r));
        return 1;
}

/* Wait for the REPLY to corr or the ACT_ACK with corr; events with fds
 * other than a wanted MEMCTX are closed. */
static int wait_for(struct vmsig_client *c, uint64_t corr, bool reply, struct vmsig_ack_body *ack,
                    struct vmsig_memctx *ctx, uint32_t ep)
{
        for (;;) {
                struct vmsig_event ev;
                struct vmsig_client_reply rep;
                int fd = -1;
                int r = vmsig_client_recv_wait(c, &ev, &fd, &rep, TIMEOUT_MS);
                if (r < 0)
                        return r;
                if (r == VMSIG_CLIENT_REPLY) {
                        if (reply && rep.corr == corr)
                                return rep.result;
                        continue;
                }
                if (ctx && ev.hdr.kind == VMSIG_EV_MEMCTX && ev.hdr.endpoint == ep && fd >= 0 &&
                    ctx->fd < 0) {
                        if (vmsig_memctx_from_event(&ev, fd, ctx) < 0)
                                close(fd);
                        continue;
                }
                if (fd >= 0)
                        close(fd);
                if (!reply && ev.hdr.kind == VMSIG_EV_ACT_ACK && ev.hdr.corr == corr) {
                        memcpy(ack, ev.body, sizeof(*ack));
                        return 0;
                }
        }
}

static int find_vm(struct vmsig_client *c, const char *name, uint32_t *ret)
{
        uint64_t corr;
        int r = vmsig_client_subscribe(c, 0, VMSIG_KIND_BIT(VMSIG_EV_ROSTER), &corr);

        if (r < 0)
                return r;
        for (;;) {
                struct vmsig_event ev;
                struct vmsig_client_reply rep;
                int fd = -1;
                r = vmsig_client_recv_wait(c, &ev, &fd, &rep, TIMEOUT_MS);
                if (r < 0)
                        return r;
                if (fd >= 0)
                        close(fd);
                if (r == VMSIG_CLIENT_REPLY && rep.corr == corr)
                        return -ENOENT;
                if (r != VMSIG_CLIENT_REPLY && ev.hdr.kind == VMSIG_EV_ROSTER) {
                        struct vmsig_roster_body b;
                        memcpy(&b, ev.body, sizeof(b));
                        if (!strncmp(b.name, name, sizeof(b.name))) {
                                *ret = ev.hdr.endpoint;
                                return 0;
                        }
                }
        }
}

static int do_events(struct vmsig_client *c, uint32_t ep, long n)
{
        uint64_t corr, cpu0 = 0, seq = 0;
        long got = 0, bad = 0;
        int r = vmsig_client_subscribe(
            c, ep, VMSIG_KIND_BIT(VMSIG_EV_LEASE_GRANT) | VMSIG_KIND_BIT(VMSIG_EV_LEASE_REVOKE), &corr);
        uint16_t expect = VMSIG_EV_LEASE_GRANT;

        if (r < 0 || (r = wait_for(c, corr, true, NULL, NULL, 0)) < 0)
                return die("subscribe", r);
        printf("ready\n");
        fflush(stdout);
        while (got < n) {
                struct vmsig_event ev;
                struct vmsig_client_reply rep;
                int fd = -1;
                r = vmsig_client_recv_wait(c, &ev, &fd, &rep, TIMEOUT_MS);
                if (r < 0)
                        break;
                if (fd >= 0)
                        close(fd);
                if (r == VMSIG_CLIENT_REPLY || ev.hdr.endpoint != ep)
                        continue;
                if (ev.hdr.kind != VMSIG_EV_LEASE_GRANT && ev.hdr.kind != VMSIG_EV_LEASE_REVOKE)
                        continue;
                if (!got)
                        cpu0 = cpu_ns();
                if (ev.hdr.kind != expect || ev.hdr.seq <= seq)
                        bad++;
                expect = ev.hdr.kind == VMSIG_EV_LEASE_GRANT ? VMSIG_EV_LEASE_REVOKE : VMSIG_EV_LEASE_GRANT;
                seq = ev.hdr.seq;
                got++;
        }
        printf("events n=%ld bad=%ld cpu_ns=%" PRIu64 "\n", got, bad, got ? cpu_ns() - cpu0 : 0);
        return got == n ? 0 : 1;
}

static int do_rtt(struct vmsig_client *c, uint32_t ep, long n)
{
        struct vmsig_ack_body ack;
        uint64_t corr, t0;
        long failed = 0;
        int r = vmsig_client_lease_acquire(c, ep, VMSIG_LEASE_INPUT, &corr);

        if (r < 0 || (r = wait_for(c, corr, false, &ack, NULL, 0)) < 0 || (r = ack.result) < 0)
                return die("input lease", r);
        t0 = now_ns();
        for (long i = 0; i < n; i++) {
                struct vmsig_input_body b = {.x = (int32_t)(i & 0x7fff), .y = 1};
                struct vmsig_event ev;
                vmsig_event_init(&ev, VMSIG_EV_MOVE_ABS, ep, VMSIG_SRC_INPUT);
                vmsig_event_set_body(&ev, &b, sizeof(b));
                if ((r = vmsig_client_send(c, &ev, &corr)) < 0 ||
                    (r = wait_for(c, corr, false, &ack, NULL, 0)) < 0)
                        return die("MOVE_ABS", r);
                failed += ack.result != 0;
        }
        printf("rtt n=%ld failed=%ld wall_ns=%" PRIu64 "\n", n, failed, now_ns() - t0);
        return 0;
}

static int do_read(struct vmsig_client *c, uint32_t ep, long n, uint64_t va)
{
        struct vmsig_memctx ctx = {.fd = -1};
        struct vmie_range ranges[VMSIG_MEMCTX_MAX_RANGES];
        struct vmie_ram *ram = NULL;
        uint8_t buf[4096];
        uint64_t corr, t0, sum = 1469598103934665603ull;
        long failed = 0;
        int r = vmsig_client_subscribe(c, ep, VMSIG_KIND_BIT(VMSIG_EV_MEMCTX), &corr);

        if (r < 0 || (r = wait_for(c, corr, true, NULL, &ctx, ep)) < 0)
                return die("subscribe MEMCTX", r);
        if (ctx.fd < 0)
                return die("no valid memory context", -EAGAIN);
        for (uint32_t i = 0; i < ctx.nranges; i++)
                ranges[i] =
                    (struct vmie_range){ctx.ranges[i].gpa, ctx.ranges[i].len, ctx.ranges[i].file_offset};
        r = vmie_ram_open_fd(ctx.fd, ranges, ctx.nranges, VMIE_RAM_NO_MMAP, &ram);
        close(ctx.fd);
        if (r < 0)
                return die("vmie_ram_open_fd", r);
        struct vmie_tlb *tlb = NULL;
        if ((r = vmie_tlb_new(0, 0, &tlb)) < 0)
                return die("vmie_tlb_new", r);
        struct vmie_as as = {.ram = ram,
                             .tlb = tlb,
                             .root = ctx.kernel_root,
                             .epoch = ctx.epoch,
                             .levels = (uint8_t)(ctx.paging == 5 ? 5 : 4)};
        t0 = now_ns();
        uint64_t c0 = cpu_ns();
        for (long i = 0; i < n; i++)
                failed += vmie_read_virt(&as, va, buf, sizeof(buf), NULL) != 0;
        uint64_t wall = now_ns() - t0, cpu = cpu_ns() - c0;
        for (size_t i = 0; i < sizeof(buf); i++)
                sum = (sum ^ buf[i]) * 1099511628211ull;
        printf("read n=%ld failed=%ld fnv=%016" PRIx64 " wall_ns=%" PRIu64 " cpu_ns=%" PRIu64 "\n", n, failed,
               sum, wall, cpu);
        vmie_tlb_free(tlb);
        vmie_ram_free(ram);
        return 0;
}

int main(int argc, char **argv)
{
        struct vmsig_client *c = NULL;
        uint32_t ep = 0;
        int r;

        if (argc < 5 || (!strcmp(argv[1], "read") && argc < 6)) {
                fprintf(stderr, "usage: %s events|rtt|read SOCK VM N [VA]\n", argv[0]);
                return 2;
        }
        long n = strtol(argv[4], NULL, 0);
        if ((r = vmsig_client_new(&c)) < 0 ||
            (r = vmsig_client_connect(c, argv[2], "c-baseline", TIMEOUT_MS)) < 0)
                return die("connect", r);
        if ((r = find_vm(c, argv[3], &ep)) < 0)
                return die("find the VM", r);
        if (!strcmp(argv[1], "events"))
                r = do_events(c, ep, n);
        else if (!strcmp(argv[1], "rtt"))
                r = do_rtt(c, ep, n);
        else if (!strcmp(argv[1], "read"))
                r = do_read(c, ep, n, strtoull(argv[5], NULL, 0));
        else
                r = 2;
        vmsig_client_free(c);
        return r;
}
