/* SPDX-License-Identifier: MIT */
/* vmsigd integration: round trips through the real daemon over its socket.
 * HELLO/WELCOME, SUBSCRIBE (retained replay strictly before its REPLY),
 * UNSUBSCRIBE, every DOWN command kind acknowledged with its corr, every UP
 * kind observed, and the MEMCTX fd (SCM_RIGHTS, read-only, banner). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <sys/mman.h>

#include "adapters/stub_internal.h"
#include "vmsigd_harness.h"

static struct vh H;

/* Every event a control saw, for "each UP kind at least once". */
struct seen {
        uint64_t kinds;  /* 1 << kind */
        unsigned n_diag; /* DIAG about diag_ep */
        uint32_t diag_ep;
        unsigned n_bcast; /* events with peer 0 */
};

static void track(const struct vmsig_event *ev, int fd, void *ud)
{
        struct seen *s = ud;

        if (fd >= 0)
                close(fd);
        s->kinds |= 1ull << ev->hdr.kind;
        if (ev->hdr.kind == VMSIG_EV_DIAG && ev->hdr.endpoint == s->diag_ep)
                s->n_diag++;
        if (ev->hdr.peer == 0)
                s->n_bcast++;
}

static uint64_t send_input(struct vmsig_client *c, uint16_t kind, uint32_t ep, int32_t x, int32_t y,
                           uint32_t code, int32_t value)
{
        struct vmsig_event ev;
        struct vmsig_input_body b = {.x = x, .y = y, .code = code, .value = value};
        uint64_t corr = 0;

        vmsig_event_init(&ev, kind, ep, VMSIG_SRC_INPUT);
        vmsig_event_set_body(&ev, &b, sizeof(b));
        assert_int_equal(vmsig_client_send(c, &ev, &corr), 0);
        assert_true(corr != 0);
        return corr;
}

static uint64_t send_power(struct vmsig_client *c, uint32_t ep, uint32_t op)
{
        struct vmsig_event ev;
        struct vmsig_power_body b = {.op = op};
        uint64_t corr = 0;

        vmsig_event_init(&ev, VMSIG_EV_CMD_POWER, ep, VMSIG_SRC_VMHOST);
        vmsig_event_set_body(&ev, &b, sizeof(b));
        assert_int_equal(vmsig_client_send(c, &ev, &corr), 0);
        return corr;
}

/* Wait for the ACK of corr and check it names the command and the sender. */
static void expect_ack(struct vmsig_client *c, uint64_t corr, uint16_t cmd_kind, uint32_t ep, int32_t result,
                       struct seen *s, uint64_t *ret_value)
{
        struct vh_match m = {.kind = VMSIG_EV_ACT_ACK, .corr = corr};
        struct vmsig_event ev;
        struct vmsig_ack_body ack;

        int r = vh_wait_event(c, &m, &ev, s ? track : NULL, s, VH_TIMEOUT_MS);
        if (r < 0)
                fail_msg("no ACK for %s corr %llu: %s", vmsig_kind_name(cmd_kind), (unsigned long long)corr,
                         strerror(-r));
        memcpy(&ack, ev.body, sizeof(ack));
        ack.msg[sizeof(ack.msg) - 1] = '\0';
        if (ack.result != result || ack.cmd_kind != cmd_kind)
                fail_msg("ACK corr %llu: %s result %d (%s), expected %s result %d", (unsigned long long)corr,
                         vmsig_kind_name(ack.cmd_kind), ack.result, ack.msg, vmsig_kind_name(cmd_kind),
                         result);
        assert_int_equal(ev.hdr.endpoint, ep);
        assert_int_equal(ev.hdr.peer, vmsig_client_get_info(c)->control_id);
        assert_int_equal(ev.hdr.flags & VMSIG_F_RETAINED, 0);
        if (ret_value)
                *ret_value = ack.value;
}

/* CMD_STATUS_QUERY: wait for both the addressed STATUS and the ACK (in
 * either order; test_status_query_order checks the documented one). Returns
 * the ACK's value; *status_first tells the order seen. */
static uint64_t query_status(struct vmsig_client *c, uint32_t ep, struct seen *s, bool *status_first)
{
        uint32_t me = vmsig_client_get_info(c)->control_id;
        struct vmsig_event q, ev;
        uint64_t corr = 0, value = 0;
        bool got_status = false, got_ack = false;
        uint8_t state = 0xff;

        vmsig_event_init(&q, VMSIG_EV_CMD_STATUS_QUERY, ep, VMSIG_SRC_VMHOST);
        assert_int_equal(vmsig_client_send(c, &q, &corr), 0);
        while (!got_status || !got_ack) {
                struct vh_match any = {0};
                assert_int_equal(vh_wait_event(c, &any, &ev, s ? track : NULL, s, VH_TIMEOUT_MS), 0);
                if (ev.hdr.kind == VMSIG_EV_STATUS && ev.hdr.peer == me) {
                        assert_int_equal(ev.hdr.endpoint, ep);
                        state = ((struct vmsig_status_body *)ev.body)->run_state;
                        if (status_first && !got_ack)
                                *status_first = true;
                        got_status = true;
                } else if (ev.hdr.kind == VMSIG_EV_ACT_ACK && ev.hdr.corr == corr) {
                        struct vmsig_ack_body ack;
                        memcpy(&ack, ev.body, sizeof(ack));
                        assert_int_equal(ack.result, 0);
                        assert_int_equal(ack.cmd_kind, VMSIG_EV_CMD_STATUS_QUERY);
                        assert_int_equal(ev.hdr.peer, me);
                        value = ack.value;
                        got_ack = true;
                }
        }
        assert_int_equal(value, state);
        return value;
}

static void test_handshake_subscribe_replay(void **state)
{
        (void)state;
        struct vmsig_client *w = vh_client(&H, "watcher");
        struct vmsig_client *b = vh_client(&H, "holder");
        struct vmsig_client *c = vh_client(&H, "late");
        assert_non_null(w);
        assert_non_null(b);
        assert_non_null(c);

        /* WELCOME: root gets every capability (no rules), its uid, limits. */
        const struct vmsig_client_info *wi = vmsig_client_get_info(w);
        assert_int_equal(wi->version, 2); /* the C client offers 1..2 (protocol.md §7.2) */
        assert_true(wi->control_id != 0);
        assert_int_equal(wi->caps, 0x3f);
        assert_int_equal(wi->uid, getuid());
        assert_int_equal(wi->body_max, VMSIG_BODY_MAX);
        assert_int_equal(wi->tail_max, 1u << 20);
        assert_true(wi->queue_bytes > 0);
        assert_true(vmsig_client_get_info(b)->control_id != wi->control_id);
        assert_true(vmsig_client_get_info(c)->control_id != wi->control_id);
        assert_true(vmsig_client_get_info(c)->control_id != vmsig_client_get_info(b)->control_id);

        /* Nothing to replay yet; then a VM appears live. */
        assert_int_equal(vh_subscribe(w, 0, VH_ALL_UP_KINDS, NULL, NULL), 0);
        assert_int_equal(vh_vm_add(&H, "alpha", NULL), 0);
        struct vh_match ma = {
            .kind = VMSIG_EV_ROSTER, .name = "alpha", .roster_change = VMSIG_ROSTER_APPEARED};
        struct vmsig_event ev;
        assert_int_equal(vh_wait_event(w, &ma, &ev, NULL, NULL, VH_TIMEOUT_MS), 0);
        assert_int_equal(ev.hdr.flags & VMSIG_F_RETAINED, 0);
        uint32_t ep = ev.hdr.endpoint;
        assert_true(ep != 0);
        struct vh_match mm = {.kind = VMSIG_EV_MEMCTX, .endpoint = ep};
        assert_int_equal(vh_wait_event(w, &mm, NULL, NULL, NULL, VH_TIMEOUT_MS), 0);

        /* b holds a lease, so the replay has a LEASE_GRANT too. */
        assert_int_equal(vh_lease(b, ep, VMSIG_LEASE_POWER, true), 0);
        struct vh_match mg = {.kind = VMSIG_EV_LEASE_GRANT, .endpoint = ep};
        assert_int_equal(vh_wait_event(w, &mg, NULL, NULL, NULL, VH_TIMEOUT_MS), 0);

        /* The late subscriber: the whole replay comes BEFORE the REPLY. */
        uint64_t corr = 0;
        assert_int_equal(vmsig_client_subscribe(c, 0, VH_ALL_UP_KINDS, &corr), 0);
        bool got_roster = false, got_memctx = false, got_grant = false;
        for (;;) {
                struct vmsig_client_reply rep;
                int fd = -1;
                int r = vmsig_client_recv_wait(c, &ev, &fd, &rep, VH_TIMEOUT_MS);
                assert_true(r == VMSIG_CLIENT_EVENT || r == VMSIG_CLIENT_REPLY);
                if (r == VMSIG_CLIENT_REPLY) {
                        assert_int_equal(rep.corr, corr);
                        assert_int_equal(rep.request_type, VMSIG_CLIENT_REQ_SUBSCRIBE);
                        assert_int_equal(rep.result, 0);
                        break;
                }
                /* Nothing live happens meanwhile: all of it is replay. */
                assert_true(ev.hdr.flags & VMSIG_F_RETAINED);
                assert_int_equal(ev.hdr.endpoint, ep);
                if (ev.hdr.kind == VMSIG_EV_ROSTER) {
                        struct vmsig_roster_body rb;
                        memcpy(&rb, ev.body, sizeof(rb));
                        assert_string_equal(rb.name, "alpha");
                        got_roster = true;
                } else if (ev.hdr.kind == VMSIG_EV_MEMCTX) {
                        assert_true(ev.hdr.flags & VMSIG_F_HAS_FD);
                        assert_true(fd >= 0);
                        got_memctx = true;
                } else if (ev.hdr.kind == VMSIG_EV_LEASE_GRANT) {
                        struct vmsig_lease_body lb;
                        memcpy(&lb, ev.body, sizeof(lb));
                        assert_int_equal(lb.class_, VMSIG_LEASE_POWER);
                        assert_int_equal(lb.holder_id, vmsig_client_get_info(b)->control_id);
                        assert_string_equal(lb.holder_name, "holder");
                        got_grant = true;
                }
                if (fd >= 0)
                        close(fd);
        }
        assert_true(got_roster);
        assert_true(got_memctx);
        assert_true(got_grant);

        /* Live events after the REPLY are not flagged RETAINED. */
        uint64_t pc = send_power(b, ep, VMSIG_POWER_PAUSE);
        expect_ack(b, pc, VMSIG_EV_CMD_POWER, ep, 0, NULL, NULL);
        struct vh_match ms = {.kind = VMSIG_EV_STATUS, .endpoint = ep};
        assert_int_equal(vh_wait_event(c, &ms, &ev, NULL, NULL, VH_TIMEOUT_MS), 0);
        assert_int_equal(ev.hdr.flags & VMSIG_F_RETAINED, 0);
        assert_int_equal(((struct vmsig_status_body *)ev.body)->run_state, VMSIG_RUN_PAUSED);

        /* UNSUBSCRIBE: REPLY 0, then -ENOENT for a second one. */
        struct vmsig_client_reply rep;
        assert_int_equal(vmsig_client_unsubscribe(c, 0, &corr), 0);
        assert_int_equal(vh_wait_reply(c, corr, &rep, NULL, NULL, VH_TIMEOUT_MS), 0);
        assert_int_equal(rep.request_type, VMSIG_CLIENT_REQ_UNSUBSCRIBE);
        assert_int_equal(rep.result, 0);
        assert_int_equal(vmsig_client_unsubscribe(c, 0, &corr), 0);
        assert_int_equal(vh_wait_reply(c, corr, &rep, NULL, NULL, VH_TIMEOUT_MS), 0);
        assert_int_equal(rep.result, -ENOENT);

        /* Unsubscribed: a broadcast STATUS no longer reaches c. Its own
         * status query (same endpoint and seam, so FIFO behind the resume)
         * is answered by an addressed STATUS and the ACK, nothing else. */
        pc = send_power(b, ep, VMSIG_POWER_RESUME);
        expect_ack(b, pc, VMSIG_EV_CMD_POWER, ep, 0, NULL, NULL);
        struct seen s = {0};
        assert_int_equal(query_status(c, ep, &s, NULL), VMSIG_RUN_RUNNING);
        assert_int_equal(s.n_bcast, 0);
        assert_int_equal(s.kinds, (1ull << VMSIG_EV_STATUS) | (1ull << VMSIG_EV_ACT_ACK));

        vh_client_close(c);
        vh_client_close(b);
        vh_client_close(w);
}

static void test_every_command_and_up_kind(void **state)
{
        (void)state;
        struct seen sw = {0}, sa = {0}, sd = {0};
        struct vmsig_client *w = vh_client(&H, "watcher");
        struct vmsig_client *a = vh_client(&H, "actor");
        struct vmsig_client *d = vh_client(&H, "denied");
        assert_non_null(w);
        assert_non_null(a);
        assert_non_null(d);
        uint32_t aid = vmsig_client_get_info(a)->control_id;

        assert_int_equal(vh_subscribe(w, 0, VH_ALL_UP_KINDS, track, &sw), 0);
        assert_int_equal(vh_vm_add(&H, "alpha", NULL), 0);
        struct vh_match ma = {.kind = VMSIG_EV_ROSTER, .name = "alpha"};
        struct vmsig_event ev;
        assert_int_equal(vh_wait_event(w, &ma, &ev, track, &sw, VH_TIMEOUT_MS), 0);
        uint32_t ep = ev.hdr.endpoint;
        struct vh_match mm = {.kind = VMSIG_EV_MEMCTX, .endpoint = ep};
        assert_int_equal(vh_wait_event(w, &mm, &ev, track, &sw, VH_TIMEOUT_MS), 0);

        /* Leases: acquire each class (ACK + GRANT broadcast). */
        static const uint8_t classes[] = {VMSIG_LEASE_INPUT, VMSIG_LEASE_POWER, VMSIG_LEASE_MEMWRITE};
        for (size_t i = 0; i < 3; i++) {
                uint64_t corr = 0;
                assert_int_equal(vmsig_client_lease_acquire(a, ep, classes[i], &corr), 0);
                expect_ack(a, corr, VMSIG_EV_LEASE_ACQUIRE, ep, 0, &sa, NULL);
                struct vh_match mg = {.kind = VMSIG_EV_LEASE_GRANT, .endpoint = ep};
                assert_int_equal(vh_wait_event(w, &mg, &ev, track, &sw, VH_TIMEOUT_MS), 0);
                struct vmsig_lease_body lb;
                memcpy(&lb, ev.body, sizeof(lb));
                assert_int_equal(lb.class_, classes[i]);
                assert_int_equal(lb.holder_id, aid);
        }

        /* Another control: -EBUSY plus a LEASE_DENY naming the holder. */
        uint64_t corr = 0;
        assert_int_equal(vmsig_client_lease_acquire(d, ep, VMSIG_LEASE_INPUT, &corr), 0);
        bool got_deny = false, got_ack = false;
        while (!got_deny || !got_ack) {
                struct vh_match many = {0};
                assert_int_equal(vh_wait_event(d, &many, &ev, track, &sd, VH_TIMEOUT_MS), 0);
                assert_int_equal(ev.hdr.peer, vmsig_client_get_info(d)->control_id);
                if (ev.hdr.kind == VMSIG_EV_LEASE_DENY) {
                        struct vmsig_lease_body lb;
                        memcpy(&lb, ev.body, sizeof(lb));
                        assert_int_equal(lb.class_, VMSIG_LEASE_INPUT);
                        assert_int_equal(lb.holder_id, aid);
                        assert_string_equal(lb.holder_name, "actor");
                        got_deny = true;
                } else if (ev.hdr.kind == VMSIG_EV_ACT_ACK && ev.hdr.corr == corr) {
                        struct vmsig_ack_body ack;
                        memcpy(&ack, ev.body, sizeof(ack));
                        assert_int_equal(ack.result, -EBUSY);
                        assert_int_equal(ack.cmd_kind, VMSIG_EV_LEASE_ACQUIRE);
                        got_ack = true;
                }
        }

        /* Every input kind: an ACK each with the right corr and kind. */
        struct {
                uint16_t kind;
                int32_t x, y;
                uint32_t code;
                int32_t value;
        } in[] = {
            {VMSIG_EV_MOVE_ABS, 16384, 8192, 0, 0},
            {VMSIG_EV_MOVE_REL, 5, -7, 0, 0},
            {VMSIG_EV_BUTTON, 0, 0, VMSIG_BTN_LEFT, 1},
            {VMSIG_EV_BUTTON, 0, 0, VMSIG_BTN_LEFT, 0},
            {VMSIG_EV_KEY, 0, 0, 30 /* KEY_A */, 1},
            {VMSIG_EV_KEY, 0, 0, 30, 0},
            {VMSIG_EV_WHEEL, 0, -2, 0, 0},
        };
        uint64_t corrs[sizeof(in) / sizeof(in[0])];
        /* Pipelined: all sent first, then the ACKs in order. */
        for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++)
                corrs[i] = send_input(a, in[i].kind, ep, in[i].x, in[i].y, in[i].code, in[i].value);
        for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++)
                expect_ack(a, corrs[i], in[i].kind, ep, 0, &sa, NULL);

        /* Power: pause and resume, with the STATUS broadcast each. */
        static const uint32_t ops[] = {VMSIG_POWER_PAUSE, VMSIG_POWER_RESUME};
        static const uint8_t states[] = {VMSIG_RUN_PAUSED, VMSIG_RUN_RUNNING};
        for (size_t i = 0; i < 2; i++) {
                corr = send_power(a, ep, ops[i]);
                expect_ack(a, corr, VMSIG_EV_CMD_POWER, ep, 0, &sa, NULL);
                struct vh_match ms = {.kind = VMSIG_EV_STATUS, .endpoint = ep};
                assert_int_equal(vh_wait_event(w, &ms, &ev, track, &sw, VH_TIMEOUT_MS), 0);
                assert_int_equal(((struct vmsig_status_body *)ev.body)->run_state, states[i]);
        }

        /* Status query: an addressed STATUS and the ACK with the state. */
        assert_int_equal(query_status(a, ep, &sa, NULL), VMSIG_RUN_RUNNING);
        uint64_t value = 99;

        /* Inline MEMWRITE; ACK value is the byte count. */
        struct vmsig_event mw;
        struct vmsig_memwrite_body mb = {.addr = VMSIG_STUB_BANNER_VA + 64, .len = 4};
        memcpy(mb.data, "\x11\x22\x33\x44", 4);
        vmsig_event_init(&mw, VMSIG_EV_CMD_MEMWRITE, ep, VMSIG_SRC_MEMCTX);
        vmsig_event_set_body(&mw, &mb, 16 + 4);
        assert_int_equal(vmsig_client_send(a, &mw, &corr), 0);
        expect_ack(a, corr, VMSIG_EV_CMD_MEMWRITE, ep, 0, &sa, &value);
        assert_int_equal(value, 4);

        /* Release each lease: ACK, then LEASE_REVOKE (reason released). */
        for (size_t i = 0; i < 3; i++) {
                assert_int_equal(vmsig_client_lease_release(a, ep, classes[i], &corr), 0);
                expect_ack(a, corr, VMSIG_EV_LEASE_RELEASE, ep, 0, &sa, NULL);
                struct vh_match mr = {.kind = VMSIG_EV_LEASE_REVOKE, .endpoint = ep};
                assert_int_equal(vh_wait_event(w, &mr, &ev, track, &sw, VH_TIMEOUT_MS), 0);
                struct vmsig_lease_body lb;
                memcpy(&lb, ev.body, sizeof(lb));
                assert_int_equal(lb.class_, classes[i]);
                assert_int_equal(lb.reason, VMSIG_LEASE_R_RELEASED);
        }

        /* DIAG: a guest that fails to boot 3 times gives ONE diagnostic,
         * then heals and publishes its MEMCTX. */
        assert_int_equal(vh_vm_add(&H, "beta", "memctx_options=fail_boots=3,retry_ms=5\n"), 0);
        struct vh_match mb2 = {.kind = VMSIG_EV_ROSTER, .name = "beta"};
        assert_int_equal(vh_wait_event(w, &mb2, &ev, track, &sw, VH_TIMEOUT_MS), 0);
        sw.diag_ep = ev.hdr.endpoint;
        struct vh_match mmb = {.kind = VMSIG_EV_MEMCTX, .endpoint = sw.diag_ep};
        assert_int_equal(vh_wait_event(w, &mmb, &ev, track, &sw, VH_TIMEOUT_MS), 0);
        assert_int_equal(sw.n_diag, 1);

        uint64_t all = sw.kinds | sa.kinds | sd.kinds;
        for (uint16_t k = VMSIG_EV_ROSTER; k <= VMSIG_EV_LEASE_REVOKE; k++)
                if (!(all & (1ull << k)))
                        fail_msg("UP kind %s never observed", vmsig_kind_name(k));

        vh_client_close(d);
        vh_client_close(a);
        vh_client_close(w);
}

/* protocol.md 8.2: "CMD_STATUS_QUERY is answered by a STATUS event
 * addressed to the asker ... and then its ACT_ACK". vmsigctl relies on it
 * ("the STATUS prints, then the ACK ends it").
 * KNOWN BUG (reported): the ACK (priority URGENT) overtakes the STATUS
 * (priority HIGH), so the ACK arrives first. This test fails until fixed. */
static void test_status_query_order(void **state)
{
        (void)state;
        struct vmsig_client *c = vh_client(&H, "asker");
        assert_non_null(c);
        assert_int_equal(vh_subscribe(c, 0, 1ull << VMSIG_EV_ROSTER, NULL, NULL), 0);
        assert_int_equal(vh_vm_add(&H, "alpha", NULL), 0);
        uint32_t ep = vh_wait_vm(c, "alpha");
        assert_true(ep != 0);
        bool status_first = false;
        query_status(c, ep, NULL, &status_first);
        if (!status_first)
                fail_msg("BUG: the ACT_ACK of CMD_STATUS_QUERY arrived before its STATUS (protocol.md 8.2)");
        vh_client_close(c);
}

/* Keep the first event of one kind (and its fd). */
struct grab {
        uint16_t kind;
        bool got;
        struct vmsig_event ev;
        int fd;
};

static void grab_fn(const struct vmsig_event *ev, int fd, void *ud)
{
        struct grab *g = ud;

        if (!g->got && ev->hdr.kind == g->kind) {
                g->got = true;
                g->ev = *ev;
                g->fd = fd;
        } else if (fd >= 0) {
                close(fd);
        }
}

/* MEMCTX over the socket: the fd comes with SCM_RIGHTS, is read-only, a
 * writable shared mapping is refused, and it shows the guest's banner. */
static void test_memctx_fd(void **state)
{
        (void)state;
        struct vmsig_client *c = vh_client(&H, "reader");
        assert_non_null(c);
        assert_int_equal(vh_subscribe(c, 0, 1ull << VMSIG_EV_ROSTER, NULL, NULL), 0);
        assert_int_equal(vh_vm_add(&H, "alpha", NULL), 0);
        uint32_t ep = vh_wait_vm(c, "alpha");
        assert_true(ep != 0);

        /* Either the replay before the REPLY (if published already) or the
         * live one after it. */
        struct grab g = {.kind = VMSIG_EV_MEMCTX, .fd = -1};
        assert_int_equal(vh_subscribe(c, ep, 1ull << VMSIG_EV_MEMCTX, grab_fn, &g), 0);
        if (!g.got) {
                struct vh_match mm = {.kind = VMSIG_EV_MEMCTX, .endpoint = ep};
                assert_int_equal(vh_wait_event(c, &mm, NULL, grab_fn, &g, VH_TIMEOUT_MS), 0);
        }
        assert_true(g.got);
        struct vmsig_event ev = g.ev;
        int fd = g.fd;
        assert_true(ev.hdr.flags & VMSIG_F_HAS_FD);
        assert_true(fd >= 0);
        struct vmsig_memctx ctx;
        assert_int_equal(vmsig_memctx_from_event(&ev, fd, &ctx), 0);
        assert_int_equal(ctx.kernel_root, VMSIG_STUB_KERNEL_ROOT);

        int fl = fcntl(fd, F_GETFL);
        assert_true(fl >= 0);
        assert_int_equal(fl & O_ACCMODE, O_RDONLY);
        assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);

        uint64_t off = 0, avail = 0;
        assert_int_equal(vmsig_memctx_gpa_to_offset(&ctx, VMSIG_STUB_BANNER_GPA, &off, &avail), 0);
        assert_true(avail >= sizeof(VMSIG_STUB_BANNER));

        long pg = sysconf(_SC_PAGESIZE);
        off_t base = (off_t)(off & ~(uint64_t)(pg - 1));
        size_t maplen = (size_t)(off - (uint64_t)base) + sizeof(VMSIG_STUB_BANNER);

        errno = 0;
        void *rw = mmap(NULL, maplen, PROT_READ | PROT_WRITE, MAP_SHARED, fd, base);
        assert_true(rw == MAP_FAILED);
        assert_int_equal(errno, EACCES);
        assert_true(write(fd, "x", 1) < 0);

        void *ro = mmap(NULL, maplen, PROT_READ, MAP_SHARED, fd, base);
        assert_true(ro != MAP_FAILED);
        assert_memory_equal((const char *)ro + (off - (uint64_t)base), VMSIG_STUB_BANNER,
                            sizeof(VMSIG_STUB_BANNER));
        munmap(ro, maplen);

        char buf[sizeof(VMSIG_STUB_BANNER)];
        assert_int_equal(pread(fd, buf, sizeof(buf), (off_t)off), (ssize_t)sizeof(buf));
        assert_memory_equal(buf, VMSIG_STUB_BANNER, sizeof(buf));
        close(fd);
        vh_client_close(c);
}

/* The retained MEMCTX is replayed to a late subscriber, whether it
 * subscribes for all endpoints or names the endpoint. */
static void test_memctx_replay(void **state)
{
        (void)state;
        struct vmsig_client *w = vh_client(&H, "watcher");
        assert_non_null(w);
        assert_int_equal(
            vh_subscribe(w, 0, (1ull << VMSIG_EV_ROSTER) | (1ull << VMSIG_EV_MEMCTX), NULL, NULL), 0);
        assert_int_equal(vh_vm_add(&H, "alpha", NULL), 0);
        uint32_t ep = vh_wait_vm(w, "alpha");
        assert_true(ep != 0);
        struct vh_match mm = {.kind = VMSIG_EV_MEMCTX, .endpoint = ep};
        assert_int_equal(vh_wait_event(w, &mm, NULL, NULL, NULL, VH_TIMEOUT_MS), 0);

        for (int round = 0; round < 2; round++) {
                struct vmsig_client *c = vh_client(&H, "late");
                struct seen s = {0};
                assert_non_null(c);
                assert_int_equal(vh_subscribe(c, round ? ep : 0, 1ull << VMSIG_EV_MEMCTX, track, &s), 0);
                if (!(s.kinds & (1ull << VMSIG_EV_MEMCTX)))
                        fail_msg("no retained MEMCTX replayed for a subscription to endpoint %u",
                                 round ? ep : 0);
                vh_client_close(c);
        }
        vh_client_close(w);
}

/* protocol.md 5.2/8.6: ROSTER run_state is the "last known run state",
 * and a run-state change is a ROSTER "changed". After a pause, the retained
 * ROSTER a late subscriber gets must say paused.
 * KNOWN BUG (reported): the retained ROSTER keeps run_state 0 (unknown)
 * and no ROSTER "changed" follows a run-state change. Fails until fixed. */
static void test_roster_tracks_run_state(void **state)
{
        (void)state;
        struct vmsig_client *a = vh_client(&H, "actor");
        assert_non_null(a);
        assert_int_equal(vh_subscribe(a, 0, 1ull << VMSIG_EV_ROSTER, NULL, NULL), 0);
        assert_int_equal(vh_vm_add(&H, "alpha", NULL), 0);
        uint32_t ep = vh_wait_vm(a, "alpha");
        assert_true(ep != 0);
        assert_int_equal(vh_lease(a, ep, VMSIG_LEASE_POWER, true), 0);
        uint64_t corr = send_power(a, ep, VMSIG_POWER_PAUSE);
        expect_ack(a, corr, VMSIG_EV_CMD_POWER, ep, 0, NULL, NULL);
        /* The query makes sure the paused STATUS has been dispatched. */
        assert_int_equal(query_status(a, ep, NULL, NULL), VMSIG_RUN_PAUSED);

        struct vmsig_client *c = vh_client(&H, "late");
        struct grab g = {.kind = VMSIG_EV_ROSTER, .fd = -1};
        assert_non_null(c);
        assert_int_equal(vh_subscribe(c, ep, 1ull << VMSIG_EV_ROSTER, grab_fn, &g), 0);
        assert_true(g.got);
        struct vmsig_roster_body rb;
        memcpy(&rb, g.ev.body, sizeof(rb));
        if (rb.run_state != VMSIG_RUN_PAUSED)
                fail_msg("BUG: retained ROSTER of a paused VM says run_state %s (%u)",
                         vmsig_run_state_name(rb.run_state), rb.run_state);
        vh_client_close(c);
        vh_client_close(a);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            vh_unit_test(test_handshake_subscribe_replay, &H),
            vh_unit_test(test_every_command_and_up_kind, &H),
            vh_unit_test(test_memctx_fd, &H),
            vh_unit_test(test_memctx_replay, &H),
            vh_unit_test(test_status_query_order, &H),
            vh_unit_test(test_roster_tracks_run_state, &H),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
