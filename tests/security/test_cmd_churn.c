/* SPDX-License-Identifier: MIT */
/* Issue 9, item 5: every accepted command gets exactly one ACT_ACK, whatever
 * happens to the VM (docs/protocol.md 8.2).
 *
 * Several controls hold the input and memwrite leases of their own stub VM
 * and fire bursts of non-FF MOVE_ABS and CMD_MEMWRITE (inline, and 16 KiB
 * tails that queue on the memctx worker) while the test removes the VMs'
 * trigger files right behind the bursts, round after round. Every command
 * the controls sent (lease commands included) is counted by corr: each must
 * be answered exactly once. The old daemon lost the ACKs of commands still
 * queued in an adapter when its VM left. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "daemon/vmsigd_harness.h"

#define NVM      4
#define ROUNDS   25
#define BURST    60
#define MAX_CORR 20000
#define TAIL     (16u * 1024)

static struct vh H;

struct ctl {
        struct vmsig_client *c;
        uint8_t acks[MAX_CORR]; /* ACT_ACKs seen per corr */
        bool sent[MAX_CORR];
        uint64_t max_corr;
        uint64_t lease_corr[2];
        uint64_t burst_first; /* first corr of the current burst */
        int32_t lease_res[2];
};

static struct ctl C[NVM];
static struct vmsig_client *W; /* roster watcher */
static uint32_t ep_of[NVM];
static uint8_t seams_of[NVM];
static unsigned results[8]; /* 0 ok, ECANCELED, ECONNABORTED, EINPROGRESS, ENOENT, EPERM, ENODEV, other */

static void note(struct ctl *k, uint64_t corr)
{
        assert_true(corr > 0 && corr < MAX_CORR);
        k->sent[corr] = true;
        if (corr > k->max_corr)
                k->max_corr = corr;
}

static void count_result(int32_t r)
{
        static const int codes[] = {0, -ECANCELED, -ECONNABORTED, -EINPROGRESS, -ENOENT, -EPERM, -ENODEV};
        for (unsigned i = 0; i < 7; i++)
                if (r == codes[i]) {
                        results[i]++;
                        return;
                }
        results[7]++;
}

static void on_event(struct ctl *k, const struct vmsig_event *ev)
{
        struct vmsig_ack_body a;

        if (ev->hdr.kind != VMSIG_EV_ACT_ACK)
                return;
        memcpy(&a, ev->body, sizeof(a));
        if (ev->hdr.corr > 0 && ev->hdr.corr < MAX_CORR) {
                if (k->acks[ev->hdr.corr] < 255)
                        k->acks[ev->hdr.corr]++;
                for (int i = 0; i < 2; i++)
                        if (ev->hdr.corr == k->lease_corr[i])
                                k->lease_res[i] = a.result;
        }
        count_result(a.result);
}

static void on_roster(const struct vmsig_event *ev)
{
        struct vmsig_roster_body rb;

        if (ev->hdr.kind != VMSIG_EV_ROSTER)
                return;
        memcpy(&rb, ev->body, sizeof(rb));
        rb.name[sizeof(rb.name) - 1] = 0;
        for (int i = 0; i < NVM; i++) {
                char name[16];
                snprintf(name, sizeof(name), "churn%d", i);
                if (strcmp(rb.name, name))
                        continue;
                if (rb.change == VMSIG_ROSTER_LEFT) {
                        ep_of[i] = 0;
                        seams_of[i] = 0;
                } else {
                        ep_of[i] = ev->hdr.endpoint;
                        seams_of[i] = rb.seams;
                }
        }
}

/* Read whatever all clients have, for up to timeout_ms (one poll). */
static void pump(int timeout_ms)
{
        struct pollfd p[NVM + 1];

        for (int i = 0; i < NVM; i++)
                p[i] = (struct pollfd){.fd = vmsig_client_fd(C[i].c),
                                       .events = vmsig_client_poll_events(C[i].c)};
        p[NVM] = (struct pollfd){.fd = vmsig_client_fd(W), .events = POLLIN};
        if (poll(p, NVM + 1, timeout_ms) < 0)
                return;
        for (int i = 0; i <= NVM; i++) {
                struct vmsig_client *c = i < NVM ? C[i].c : W;
                struct vmsig_event ev;
                int fd, r;
                if (i < NVM)
                        (void)vmsig_client_flush(c, 0);
                while ((r = vmsig_client_recv(c, &ev, &fd, NULL)) > 0) {
                        if (fd >= 0)
                                close(fd);
                        if (r != VMSIG_CLIENT_EVENT)
                                continue;
                        if (i < NVM)
                                on_event(&C[i], &ev);
                        else
                                on_roster(&ev);
                }
                assert_true(r == -EAGAIN);
        }
}

typedef bool (*cond_fn)(void);

static bool wait_for(cond_fn f, int timeout_ms)
{
        uint64_t deadline = vh_now_ms() + (uint64_t)timeout_ms;

        while (!f()) {
                if (!vh_left(deadline))
                        return false;
                pump(vh_left(deadline) < 50 ? vh_left(deadline) : 50);
        }
        return true;
}

static bool all_attached(void)
{
        for (int i = 0; i < NVM; i++)
                if (!ep_of[i] || (seams_of[i] & 0x06) != 0x06)
                        return false;
        return true;
}

static bool all_gone(void)
{
        for (int i = 0; i < NVM; i++)
                if (ep_of[i])
                        return false;
        return true;
}

static bool leases_answered(void)
{
        for (int i = 0; i < NVM; i++)
                for (int j = 0; j < 2; j++)
                        if (!C[i].acks[C[i].lease_corr[j]])
                                return false;
        return true;
}

/* The daemon is working on every burst: leaving now catches commands in
 * the middle, queued in the adapters. */
static bool bursts_started(void)
{
        for (int i = 0; i < NVM; i++) {
                bool any = false;
                for (uint64_t corr = C[i].burst_first; corr <= C[i].max_corr && !any; corr++)
                        any = C[i].acks[corr] != 0;
                if (!any)
                        return false;
        }
        return true;
}

static bool all_acked(void)
{
        for (int i = 0; i < NVM; i++)
                for (uint64_t corr = 1; corr <= C[i].max_corr; corr++)
                        if (C[i].sent[corr] && !C[i].acks[corr])
                                return false;
        return true;
}

static void send_burst(struct ctl *k, uint32_t ep, unsigned round)
{
        static uint8_t tail[TAIL];

        for (unsigned n = 0; n < BURST; n++) {
                struct vmsig_event ev;
                bool with_tail = false;
                uint64_t corr = 0;
                int r;

                if (n % 3 == 2) {
                        struct vmsig_memwrite_body b = {.addr = 0x300000 + (uint64_t)(n % 64) * 64,
                                                        .flags = VMSIG_MEMWRITE_PHYS};
                        size_t head = offsetof(struct vmsig_memwrite_body, data);
                        vmsig_event_init(&ev, VMSIG_EV_CMD_MEMWRITE, ep, VMSIG_SRC_MEMCTX);
                        with_tail = n % 2;
                        if (with_tail) {
                                memset(tail, (int)round, sizeof(tail));
                                vmsig_event_set_body(&ev, &b, head);
                        } else {
                                b.len = 64;
                                memset(b.data, (int)n, 64);
                                vmsig_event_set_body(&ev, &b, head + 64);
                        }
                } else {
                        struct vmsig_input_body in = {.x = (int32_t)(n * 100), .y = (int32_t)round};
                        vmsig_event_init(&ev, VMSIG_EV_MOVE_ABS, ep, VMSIG_SRC_INPUT);
                        vmsig_event_set_body(&ev, &in, sizeof(in));
                }
                /* -EAGAIN: the output buffer is full, the frame was not
                 * queued: let the daemon read, then send it again. */
                while ((r = with_tail ? vmsig_client_send_payload(k->c, &ev, tail, sizeof(tail), &corr)
                                      : vmsig_client_send(k->c, &ev, &corr)) == -EAGAIN)
                        pump(10);
                assert_int_equal(r, 0);
                note(k, corr);
        }
}

static void test_every_accepted_command_is_answered_once_under_churn(void **state)
{
        (void)state;
        W = vh_client(&H, "churn-watch");
        assert_non_null(W);
        assert_int_equal(vh_subscribe(W, 0, 1ull << VMSIG_EV_ROSTER, NULL, NULL), 0);
        for (int i = 0; i < NVM; i++) {
                char name[32];
                snprintf(name, sizeof(name), "churn-ctl%d", i);
                C[i].c = vh_client(&H, name);
                assert_non_null(C[i].c);
        }

        for (unsigned round = 0; round < ROUNDS; round++) {
                for (int i = 0; i < NVM; i++) {
                        char name[16];
                        snprintf(name, sizeof(name), "churn%d", i);
                        assert_int_equal(vh_vm_add(&H, name, "memctx_options=ram_mib=8\n"), 0);
                }
                assert_true(wait_for(all_attached, VH_TIMEOUT_MS));
                for (int i = 0; i < NVM; i++) {
                        assert_int_equal(vmsig_client_lease_acquire(C[i].c, ep_of[i], VMSIG_LEASE_INPUT,
                                                                    &C[i].lease_corr[0]),
                                         0);
                        assert_int_equal(vmsig_client_lease_acquire(C[i].c, ep_of[i], VMSIG_LEASE_MEMWRITE,
                                                                    &C[i].lease_corr[1]),
                                         0);
                        note(&C[i], C[i].lease_corr[0]);
                        note(&C[i], C[i].lease_corr[1]);
                }
                assert_true(wait_for(leases_answered, VH_TIMEOUT_MS));
                for (int i = 0; i < NVM; i++) {
                        C[i].burst_first = C[i].max_corr + 1;
                        send_burst(&C[i], ep_of[i], round);
                }
                for (int i = 0; i < NVM; i++)
                        assert_int_equal(vmsig_client_flush(C[i].c, VH_TIMEOUT_MS), 0);
                (void)wait_for(bursts_started, VH_TIMEOUT_MS);
                /* Leave while the bursts are still being worked on. */
                for (int i = 0; i < NVM; i++) {
                        char name[16];
                        snprintf(name, sizeof(name), "churn%d", i);
                        assert_int_equal(vh_vm_remove(&H, name), 0);
                }
                assert_true(wait_for(all_gone, VH_TIMEOUT_MS));
        }
        bool done = wait_for(all_acked, VH_TIMEOUT_MS);

        unsigned sent = 0, missing = 0, dup = 0;
        for (int i = 0; i < NVM; i++)
                for (uint64_t corr = 1; corr <= C[i].max_corr; corr++) {
                        if (!C[i].sent[corr])
                                continue;
                        sent++;
                        if (!C[i].acks[corr])
                                missing++;
                        else if (C[i].acks[corr] > 1)
                                dup++;
                }
        printf("commands %u, unanswered %u, answered twice %u; results: ok %u, ECANCELED %u, "
               "ECONNABORTED %u, EINPROGRESS %u, ENOENT %u, EPERM %u, ENODEV %u, other %u\n",
               sent, missing, dup, results[0], results[1], results[2], results[3], results[4], results[5],
               results[6], results[7]);
        assert_true(done);
        assert_int_equal(missing, 0);
        assert_int_equal(dup, 0);
        /* the daemon is still fine */
        assert_int_equal(vh_stop(&H, VH_TIMEOUT_MS), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            vh_unit_test(test_every_accepted_command_is_answered_once_under_churn, &H),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
