/* SPDX-License-Identifier: MIT */
/* Core bus behaviour: order, retained replay, memctx epochs, leases,
 * capabilities and audit, detach from callbacks, churn, bounded queues. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include <poll.h>
#include <pthread.h>
#include <sys/mman.h>

#include <vmsig/bus.h>
#include <vmsig/memctx.h>

#include "bus_fixture.h"

TAD_OPS(input_ops, VMSIG_SRC_INPUT);
TAD_OPS(vmhost_ops, VMSIG_SRC_VMHOST);
TAD_OPS(memctx_ops, VMSIG_SRC_MEMCTX);

struct audit_log {
        unsigned n;
        struct {
                enum vmsig_audit_what what;
                uint16_t kind;
                int32_t result;
                uint32_t control_id;
                char reason[VMSIG_MSG_MAX];
        } rec[64];
};

static void audit_fn(const struct vmsig_audit_record *r, void *ud)
{
        struct audit_log *a = ud;
        if (a->n < 64) {
                a->rec[a->n].what = r->what;
                a->rec[a->n].kind = r->kind;
                a->rec[a->n].result = r->result;
                a->rec[a->n].control_id = r->control_id;
                snprintf(a->rec[a->n].reason, sizeof(a->rec[0].reason), "%s", r->reason);
        }
        a->n++;
}

static int audit_find(const struct audit_log *a, enum vmsig_audit_what what, uint16_t kind)
{
        for (unsigned i = 0; i < a->n && i < 64; i++)
                if (a->rec[i].what == what && a->rec[i].kind == kind)
                        return (int)i;
        return -1;
}

static struct vmsig_event diag(uint8_t prio, int32_t code)
{
        struct vmsig_event ev;
        struct vmsig_diag_body b = {.code = code};
        vmsig_event_init(&ev, VMSIG_EV_DIAG, 0, 0);
        ev.hdr.priority = prio;
        vmsig_event_set_body(&ev, &b, sizeof(b));
        return ev;
}

static int32_t diag_code(const struct vmsig_event *ev)
{
        struct vmsig_diag_body b;
        memcpy(&b, ev->body, sizeof(b));
        return b.code;
}

static struct vmsig_ack_body ack_of(const struct vmsig_event *ev)
{
        struct vmsig_ack_body b;
        memcpy(&b, ev->body, sizeof(b));
        return b;
}

static struct vmsig_event move_abs(uint32_t ep, int x, int y, uint64_t corr)
{
        struct vmsig_event ev;
        struct vmsig_input_body b = {.x = x, .y = y};
        vmsig_event_init(&ev, VMSIG_EV_MOVE_ABS, ep, VMSIG_SRC_INPUT);
        ev.hdr.corr = corr;
        vmsig_event_set_body(&ev, &b, sizeof(b));
        return ev;
}

/* ---- ordering ---- */

static void emit_mixed(struct tad *t)
{
        static const uint8_t prios[] = {VMSIG_PRIO_BULK, VMSIG_PRIO_NORMAL, VMSIG_PRIO_URGENT,
                                        VMSIG_PRIO_BULK, VMSIG_PRIO_NORMAL, VMSIG_PRIO_URGENT};
        for (int i = 0; i < 6; i++) {
                struct vmsig_event ev = diag(prios[i], i);
                assert_int_equal(t->sink->emit(t->sink, &ev), 0);
        }
}

static void test_order_priority_fifo(void **state)
{
        struct vmsig_bus *bus;
        struct rec r;
        uint32_t ep;

        assert_int_equal(vmsig_bus_new(NULL, &bus), 0);
        assert_int_equal(vmsig_bus_endpoint_add(bus, "vm1", &ep), 0);
        tad_default_hook = emit_mixed;
        assert_int_equal(vmsig_bus_attach(bus, ep, &input_ops, NULL), 0);
        tad_default_hook = NULL;
        struct vmsig_control *c = rec_control(bus, &r, "order", VMSIG_CAP_ALL);
        assert_int_equal(vmsig_control_subscribe(c, 0, VMSIG_KIND_BIT(VMSIG_EV_DIAG)), 0);
        pump(bus, 2);
        rec_reset(&r);

        tad_kick(tad_last);
        pump(bus, 2);
        assert_int_equal(r.n, 6);
        /* URGENT (codes 2,5), NORMAL (1,4), BULK (0,3): FIFO inside each. */
        const int32_t want[] = {2, 5, 1, 4, 0, 3};
        for (int i = 0; i < 6; i++)
                assert_int_equal(diag_code(&r.ev[i]), want[i]);
        for (int i = 1; i < 6; i++)
                if (r.ev[i].hdr.priority == r.ev[i - 1].hdr.priority)
                        assert_true(r.ev[i].hdr.seq > r.ev[i - 1].hdr.seq);
        assert_int_equal(r.ev[0].hdr.endpoint, ep);
        assert_int_equal(r.ev[0].hdr.source, VMSIG_SRC_INPUT); /* stamped by the core */
        vmsig_control_close(c);
        vmsig_bus_free(bus);
}

/* An ACK generated during dispatch (URGENT) overtakes a BULK event that was
 * queued before it: the order is re-evaluated after every dispatch. */
static void test_order_reevaluated_after_dispatch(void **state)
{
        struct vmsig_bus *bus;
        struct rec r;
        uint32_t ep;

        assert_int_equal(vmsig_bus_new(NULL, &bus), 0);
        assert_int_equal(vmsig_bus_endpoint_add(bus, "vm1", &ep), 0);
        assert_int_equal(vmsig_bus_attach(bus, ep, &input_ops, NULL), 0);
        struct tad *t = tad_last;
        struct vmsig_control *c = rec_control(bus, &r, "order", VMSIG_CAP_ALL);
        assert_int_equal(vmsig_control_subscribe(c, 0, VMSIG_KIND_BIT(VMSIG_EV_DIAG)), 0);
        assert_int_equal(vmsig_control_lease_acquire(c, ep, VMSIG_LEASE_INPUT, 1), 0);
        pump(bus, 2);
        rec_reset(&r);

        struct vmsig_event cmd = move_abs(ep, 10, 20, 99);
        cmd.hdr.priority = VMSIG_PRIO_NORMAL;
        struct vmsig_event bulk = diag(VMSIG_PRIO_BULK, 77);
        assert_int_equal(t->sink->emit(t->sink, &bulk), 0);
        assert_int_equal(vmsig_control_send(c, &cmd), 0);
        pump(bus, 1);
        assert_int_equal(r.n, 2);
        assert_int_equal(r.ev[0].hdr.kind, VMSIG_EV_ACT_ACK);
        assert_int_equal(r.ev[0].hdr.corr, 99);
        assert_int_equal(r.ev[1].hdr.kind, VMSIG_EV_DIAG);
        vmsig_bus_free(bus);
}

/* ---- retained replay + memctx ---- */

static int make_ro_ram(const char *content, int *ret_rw)
{
        int rw = memfd_create("vmsig-test-ram", MFD_CLOEXEC);
        char path[64];
        assert_true(rw >= 0);
        assert_int_equal(ftruncate(rw, 1 << 20), 0);
        assert_int_equal(pwrite(rw, content, strlen(content), 4096), (ssize_t)strlen(content));
        snprintf(path, sizeof(path), "/proc/self/fd/%d", rw);
        int ro = open(path, O_RDONLY | O_CLOEXEC);
        assert_true(ro >= 0);
        *ret_rw = rw;
        return ro;
}

static struct vmsig_memctx ctx_for(int fd)
{
        struct vmsig_memctx m;
        memset(&m, 0, sizeof(m));
        m.kernel_root = 0x1000;
        m.paging = VMSIG_PAGING_4LEVEL;
        m.os_kind = VMSIG_OS_SYNTHETIC;
        m.nranges = 1;
        m.ranges[0] = (struct vmsig_ram_range){.gpa = 0, .len = 1 << 20, .file_offset = 0};
        m.fd = fd;
        return m;
}

static void test_retained_replay_before_live(void **state)
{
        struct vmsig_bus *bus;
        struct rec early, late;
        uint32_t ep;
        int fds_before = count_fds();
        int rw, ro = make_ro_ram("hello guest", &rw);

        assert_int_equal(vmsig_bus_new(NULL, &bus), 0);
        struct vmsig_control *e = rec_control(bus, &early, "early", VMSIG_CAP_ALL);
        assert_int_equal(vmsig_control_subscribe(e, 0, VMSIG_KINDS_ALL_UP), 0);
        assert_int_equal(vmsig_bus_endpoint_add(bus, "vm1", &ep), 0);
        assert_int_equal(vmsig_bus_attach(bus, ep, &memctx_ops, NULL), 0);
        struct tad *mt = tad_last;
        assert_int_equal(vmsig_bus_attach(bus, ep, &vmhost_ops, NULL), 0);
        struct tad *vt = tad_last;
        struct vmsig_memctx m = ctx_for(ro);
        uint64_t epoch = 0;
        assert_int_equal(mt->sink->register_memctx(mt->sink, &m, &epoch), 0);
        assert_int_equal(epoch, 1);
        close(ro); /* the bus has its own dup */
        struct vmsig_event st;
        struct vmsig_status_body sb = {.run_state = VMSIG_RUN_PAUSED};
        vmsig_event_init(&st, VMSIG_EV_STATUS, 0, 0);
        vmsig_event_set_body(&st, &sb, sizeof(sb));
        assert_int_equal(vt->sink->emit(vt->sink, &st), 0);
        pump(bus, 2);
        assert_true(rec_find(&early, VMSIG_EV_MEMCTX, 0) >= 0);

        /* A late subscriber, and a live event racing it. */
        struct vmsig_control *l = rec_control(bus, &late, "late", VMSIG_CAP_ALL);
        late.keep_fds = true;
        assert_int_equal(vmsig_control_subscribe(l, ep, VMSIG_KINDS_ALL_UP), 0);
        sb.run_state = VMSIG_RUN_RUNNING;
        vmsig_event_set_body(&st, &sb, sizeof(sb));
        assert_int_equal(vt->sink->emit(vt->sink, &st), 0);
        pump(bus, 2);

        /* ... and the run state change, as a ROSTER "changed" too */
        assert_int_equal(late.n, 5);
        assert_int_equal(late.ev[4].hdr.kind, VMSIG_EV_ROSTER);
        assert_int_equal(late.ev[4].body[0], VMSIG_ROSTER_CHANGED);
        assert_int_equal(late.ev[4].body[offsetof(struct vmsig_roster_body, run_state)], VMSIG_RUN_RUNNING);
        assert_int_equal(late.ev[0].body[offsetof(struct vmsig_roster_body, run_state)], VMSIG_RUN_PAUSED);
        for (int i = 0; i < 3; i++)
                assert_true(late.ev[i].hdr.flags & VMSIG_F_RETAINED);
        assert_int_equal(late.ev[0].hdr.kind, VMSIG_EV_ROSTER);
        assert_int_equal(late.ev[1].hdr.kind, VMSIG_EV_STATUS);
        assert_int_equal(late.ev[1].body[0], VMSIG_RUN_PAUSED);
        assert_int_equal(late.ev[2].hdr.kind, VMSIG_EV_MEMCTX);
        assert_int_equal(late.ev[3].hdr.kind, VMSIG_EV_STATUS);
        assert_false(late.ev[3].hdr.flags & VMSIG_F_RETAINED);
        assert_int_equal(late.ev[3].body[0], VMSIG_RUN_RUNNING);

        /* The fd the control got: its own, read-only, same bytes. */
        struct vmsig_memctx got;
        assert_int_equal(vmsig_memctx_from_event(&late.ev[2], late.fd[2], &got), 0);
        assert_int_equal(got.epoch, 1);
        assert_true(got.fd >= 0);
        assert_int_equal(fcntl(got.fd, F_GETFL) & O_ACCMODE, O_RDONLY);
        assert_ptr_equal(mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, got.fd, 0), MAP_FAILED);
        char *p = mmap(NULL, 8192, PROT_READ, MAP_SHARED, got.fd, 0);
        assert_ptr_not_equal(p, MAP_FAILED);
        assert_memory_equal(p + 4096, "hello guest", 11);
        munmap(p, 8192);
        rec_reset(&late); /* closes the control's fd ... */

        /* ... which never affects the daemon's copy: a third subscriber still reads it. */
        struct rec third;
        struct vmsig_control *t3 = rec_control(bus, &third, "third", VMSIG_CAP_MEMCTX);
        third.keep_fds = true;
        assert_int_equal(vmsig_control_subscribe(t3, ep, VMSIG_KIND_BIT(VMSIG_EV_MEMCTX)), 0);
        pump(bus, 1);
        assert_int_equal(third.n, 1);
        char buf[12] = {0};
        assert_int_equal(pread(third.fd[0], buf, 11, 4096), 11);
        assert_string_equal(buf, "hello guest");
        rec_reset(&third);
        rec_reset(&early);
        vmsig_bus_free(bus);
        close(rw);
        assert_int_equal(count_fds(), fds_before); /* every dup the bus made is gone */
}

static void test_memctx_epoch_and_invalidation(void **state)
{
        struct vmsig_bus *bus;
        struct rec r;
        uint32_t ep;
        int rw, ro = make_ro_ram("x", &rw);

        assert_int_equal(vmsig_bus_new(NULL, &bus), 0);
        struct vmsig_control *c = rec_control(bus, &r, "c", VMSIG_CAP_MEMCTX);
        assert_int_equal(vmsig_control_subscribe(c, 0, VMSIG_KIND_BIT(VMSIG_EV_MEMCTX)), 0);
        assert_int_equal(vmsig_bus_endpoint_add(bus, "vm1", &ep), 0);
        assert_int_equal(vmsig_bus_attach(bus, ep, &memctx_ops, NULL), 0);
        struct tad *mt = tad_last;
        struct vmsig_memctx m = ctx_for(ro);
        uint64_t e1, e2;

        /* A writable fd is refused: perception is read-only by construction. */
        m.fd = rw;
        assert_int_equal(mt->sink->register_memctx(mt->sink, &m, &e1), -EPERM);
        m.fd = ro;
        assert_int_equal(mt->sink->register_memctx(mt->sink, &m, &e1), 0);
        assert_int_equal(mt->sink->register_memctx(mt->sink, &m, &e2), 0);
        assert_int_equal(e2, e1 + 1);
        assert_int_equal(mt->sink->unregister_memctx(mt->sink), 0);
        pump(bus, 2);
        assert_int_equal(r.n, 3);
        struct vmsig_memctx_body b;
        memcpy(&b, r.ev[0].body, sizeof(b));
        assert_int_equal(b.epoch, e1);
        assert_int_equal(b.valid, 1);
        memcpy(&b, r.ev[1].body, sizeof(b));
        assert_int_equal(b.epoch, e2);
        memcpy(&b, r.ev[2].body, sizeof(b));
        assert_int_equal(b.valid, 0);
        assert_int_equal(b.epoch, e2);
        assert_false(r.ev[2].hdr.flags & VMSIG_F_HAS_FD);

        /* Re-register, then detach the adapter: detach invalidates too. */
        uint64_t e3;
        assert_int_equal(mt->sink->register_memctx(mt->sink, &m, &e3), 0);
        assert_int_equal(e3, e2 + 1);
        assert_int_equal(vmsig_bus_detach(bus, ep, VMSIG_SRC_MEMCTX), 0);
        pump(bus, 2);
        assert_int_equal(r.n, 5);
        memcpy(&b, r.ev[4].body, sizeof(b));
        assert_int_equal(b.valid, 0);
        assert_int_equal(b.epoch, e3);
        vmsig_bus_free(bus);
        close(ro);
        close(rw);
}

/* ---- leases ---- */

static void test_lease_exclusive_deny_release_on_disconnect(void **state)
{
        struct vmsig_bus *bus;
        struct rec ra, rb;
        uint32_t ep;

        assert_int_equal(vmsig_bus_new(NULL, &bus), 0);
        assert_int_equal(vmsig_bus_endpoint_add(bus, "vm1", &ep), 0);
        assert_int_equal(vmsig_bus_attach(bus, ep, &input_ops, NULL), 0);
        struct tad *it = tad_last;
        struct vmsig_control *a = rec_control(bus, &ra, "alice", VMSIG_CAP_ALL);
        struct vmsig_control *b = rec_control(bus, &rb, "bob", VMSIG_CAP_ALL);
        assert_int_equal(vmsig_control_subscribe(b, ep,
                                                 VMSIG_KIND_BIT(VMSIG_EV_LEASE_GRANT) |
                                                     VMSIG_KIND_BIT(VMSIG_EV_LEASE_REVOKE)),
                         0);
        pump(bus, 1);

        assert_int_equal(vmsig_control_lease_acquire(a, ep, VMSIG_LEASE_INPUT, 1), 0);
        pump(bus, 1);
        int i = rec_find(&ra, VMSIG_EV_ACT_ACK, 0);
        assert_true(i >= 0);
        assert_int_equal(ack_of(&ra.ev[i]).result, 0);
        int g = rec_find(&rb, VMSIG_EV_LEASE_GRANT, 0);
        assert_true(g >= 0); /* the owner change is announced */
        struct vmsig_lease_body lb;
        memcpy(&lb, rb.ev[g].body, sizeof(lb));
        assert_int_equal(lb.holder_id, vmsig_control_id(a));

        rec_reset(&rb);
        assert_int_equal(vmsig_control_lease_acquire(b, ep, VMSIG_LEASE_INPUT, 2), 0);
        pump(bus, 1);
        int d = rec_find(&rb, VMSIG_EV_LEASE_DENY, 0);
        assert_true(d >= 0);
        memcpy(&lb, rb.ev[d].body, sizeof(lb));
        assert_int_equal(lb.holder_id, vmsig_control_id(a));
        assert_string_equal(lb.holder_name, "alice");
        i = rec_find(&rb, VMSIG_EV_ACT_ACK, 0);
        assert_int_equal(ack_of(&rb.ev[i]).result, -EBUSY);
        assert_non_null(strstr(ack_of(&rb.ev[i]).msg, "'alice'"));

        /* A command from the non-holder is refused and never reaches the adapter. */
        struct vmsig_event mv = move_abs(ep, 1, 2, 3);
        assert_int_equal(vmsig_control_send(b, &mv), 0);
        pump(bus, 1);
        assert_int_equal(it->submits, 0);
        i = rec_find(&rb, VMSIG_EV_ACT_ACK, (unsigned)i + 1);
        assert_int_equal(ack_of(&rb.ev[i]).result, -EPERM);
        assert_non_null(strstr(ack_of(&rb.ev[i]).msg, "input lease"));
        /* Releasing someone else's lease is refused too. */
        assert_int_equal(vmsig_control_lease_release(b, ep, VMSIG_LEASE_INPUT, 4), 0);
        pump(bus, 1);
        i = rec_find(&rb, VMSIG_EV_ACT_ACK, (unsigned)i + 1);
        assert_int_equal(ack_of(&rb.ev[i]).result, -EPERM);

        /* The holder's command goes through. */
        assert_int_equal(vmsig_control_send(a, &mv), 0);
        pump(bus, 1);
        assert_int_equal(it->submits, 1);

        /* Holder disconnects: revoked, announced, and free for bob. */
        rec_reset(&rb);
        vmsig_control_close(a);
        pump(bus, 1);
        int rv = rec_find(&rb, VMSIG_EV_LEASE_REVOKE, 0);
        assert_true(rv >= 0);
        memcpy(&lb, rb.ev[rv].body, sizeof(lb));
        assert_int_equal(lb.reason, VMSIG_LEASE_R_DISCONNECTED);
        assert_int_equal(vmsig_control_lease_acquire(b, ep, VMSIG_LEASE_INPUT, 5), 0);
        pump(bus, 1);
        i = rec_find(&rb, VMSIG_EV_ACT_ACK, 0);
        assert_int_equal(ack_of(&rb.ev[i]).result, 0);
        /* A late subscriber learns the current holder from the retained grant. */
        struct rec rc;
        struct vmsig_control *c = rec_control(bus, &rc, "carol", VMSIG_CAP_ROSTER);
        assert_int_equal(vmsig_control_subscribe(c, ep, VMSIG_KIND_BIT(VMSIG_EV_LEASE_GRANT)), 0);
        pump(bus, 1);
        g = rec_find(&rc, VMSIG_EV_LEASE_GRANT, 0);
        assert_true(g >= 0);
        memcpy(&lb, rc.ev[g].body, sizeof(lb));
        assert_int_equal(lb.holder_id, vmsig_control_id(b));
        vmsig_bus_free(bus);
}

/* ---- capabilities, source, extent: denied and audited ---- */

static void test_capability_source_extent_denials_audited(void **state)
{
        struct vmsig_bus *bus;
        struct rec r, rw;
        struct audit_log log = {0};
        uint32_t ep;

        assert_int_equal(vmsig_bus_new(NULL, &bus), 0);
        vmsig_bus_set_audit(bus, audit_fn, &log);
        assert_int_equal(vmsig_bus_endpoint_add(bus, "vm1", &ep), 0);
        assert_int_equal(vmsig_bus_attach(bus, ep, &vmhost_ops, NULL), 0);
        struct tad *vt = tad_last;
        assert_int_equal(vmsig_bus_attach(bus, ep, &input_ops, NULL), 0);
        assert_int_equal(vmsig_bus_attach(bus, ep, &memctx_ops, NULL), 0);
        struct vmsig_control *c = rec_control(bus, &r, "viewer", VMSIG_CAP_ROSTER);

        /* Default deny on subscribe. */
        assert_int_equal(vmsig_control_subscribe(c, 0, VMSIG_KIND_BIT(VMSIG_EV_MEMCTX)), -EPERM);
        assert_true(audit_find(&log, VMSIG_AUDIT_DENY, VMSIG_EV_MEMCTX) >= 0);

        /* A power command without the capability. */
        struct vmsig_event pw;
        struct vmsig_power_body pb = {.op = VMSIG_POWER_RESET};
        vmsig_event_init(&pw, VMSIG_EV_CMD_POWER, ep, VMSIG_SRC_VMHOST);
        pw.hdr.corr = 11;
        vmsig_event_set_body(&pw, &pb, sizeof(pb));
        pw.hdr.flags |= VMSIG_F_FF; /* service commands always ACK */
        assert_int_equal(vmsig_control_send(c, &pw), 0);
        pump(bus, 1);
        assert_int_equal(vt->submits, 0);
        int i = rec_find(&r, VMSIG_EV_ACT_ACK, 0);
        assert_true(i >= 0);
        assert_int_equal(r.ev[i].hdr.corr, 11);
        assert_int_equal(ack_of(&r.ev[i]).result, -EPERM);
        assert_non_null(strstr(ack_of(&r.ev[i]).msg, "capability power"));
        int a = audit_find(&log, VMSIG_AUDIT_DENY, VMSIG_EV_CMD_POWER);
        assert_true(a >= 0);
        assert_int_equal(log.rec[a].control_id, vmsig_control_id(c));

        /* A writer with every capability and the leases. */
        struct vmsig_control *w = rec_control(bus, &rw, "writer", VMSIG_CAP_ALL);
        for (uint8_t cls = 0; cls < VMSIG_LEASE_CLASS_COUNT; cls++)
                assert_int_equal(vmsig_control_lease_acquire(w, ep, cls, 100 + cls), 0);
        pump(bus, 1);
        rec_reset(&rw);
        log.n = 0;

        /* Source: MOVE_ABS that claims the vmhost seam. */
        struct vmsig_event mv = move_abs(ep, 5, 5, 21);
        mv.hdr.source = VMSIG_SRC_VMHOST;
        assert_int_equal(vmsig_control_send(w, &mv), 0);
        /* Extent: a body of the wrong size. */
        struct vmsig_event bad = move_abs(ep, 5, 5, 22);
        bad.hdr.body_len = 3;
        assert_int_equal(vmsig_control_send(w, &bad), 0);
        /* Extent: MEMWRITE above the bound, and one whose sizes disagree. */
        struct vmsig_event mw;
        struct vmsig_memwrite_body mb = {.addr = 0x1000, .len = (2u << 20)};
        vmsig_event_init(&mw, VMSIG_EV_CMD_MEMWRITE, ep, VMSIG_SRC_MEMCTX);
        mw.hdr.corr = 23;
        vmsig_event_set_body(&mw, &mb, offsetof(struct vmsig_memwrite_body, data));
        assert_int_equal(vmsig_control_send(w, &mw), 0);
        mb.len = 8;
        mw.hdr.corr = 24;
        vmsig_event_set_body(&mw, &mb, offsetof(struct vmsig_memwrite_body, data) + 4);
        assert_int_equal(vmsig_control_send(w, &mw), 0);
        /* And one good power command: audited as command and as result. */
        pw.hdr.corr = 25;
        assert_int_equal(vmsig_control_send(w, &pw), 0);
        pump(bus, 2);

        const struct {
                uint64_t corr;
                int32_t result;
        } want[] = {{21, -EINVAL}, {22, -EINVAL}, {23, -EMSGSIZE}, {24, -EINVAL}, {25, 0}};
        for (unsigned k = 0; k < 5; k++) {
                int found = 0;
                for (unsigned j = 0; j < rw.n; j++)
                        if (rw.ev[j].hdr.kind == VMSIG_EV_ACT_ACK && rw.ev[j].hdr.corr == want[k].corr) {
                                assert_int_equal(ack_of(&rw.ev[j]).result, want[k].result);
                                found = 1;
                        }
                assert_true(found);
        }
        unsigned denies = 0;
        for (unsigned k = 0; k < log.n; k++)
                denies += log.rec[k].what == VMSIG_AUDIT_DENY;
        assert_int_equal(denies, 4);
        assert_true(audit_find(&log, VMSIG_AUDIT_COMMAND, VMSIG_EV_CMD_POWER) >= 0);
        assert_true(audit_find(&log, VMSIG_AUDIT_RESULT, VMSIG_EV_CMD_POWER) >= 0);
        assert_int_equal(vt->submits, 1);
        /* Service commands never travel fire-and-forget. */
        assert_false(vt->last_cmd.hdr.flags & VMSIG_F_FF);
        vmsig_bus_free(bus);
}

/* ---- FF vs ACK ---- */

static void test_ff_suppresses_ack_only_on_success(void **state)
{
        struct vmsig_bus *bus;
        struct rec r;
        uint32_t ep;

        assert_int_equal(vmsig_bus_new(NULL, &bus), 0);
        assert_int_equal(vmsig_bus_endpoint_add(bus, "vm1", &ep), 0);
        assert_int_equal(vmsig_bus_attach(bus, ep, &input_ops, NULL), 0);
        struct vmsig_control *c = rec_control(bus, &r, "c", VMSIG_CAP_INPUT);
        struct vmsig_event mv = move_abs(ep, 1, 1, 1);
        mv.hdr.flags |= VMSIG_F_FF;
        /* Without the lease even FF is answered: a refused stream must show. */
        assert_int_equal(vmsig_control_send(c, &mv), 0);
        pump(bus, 1);
        assert_int_equal(r.n, 1);
        assert_int_equal(ack_of(&r.ev[0]).result, -EPERM);
        assert_int_equal(vmsig_control_lease_acquire(c, ep, VMSIG_LEASE_INPUT, 2), 0);
        pump(bus, 1);
        rec_reset(&r);
        for (int k = 0; k < 10; k++)
                assert_int_equal(vmsig_control_send(c, &mv), 0);
        mv.hdr.flags = 0;
        mv.hdr.corr = 77;
        assert_int_equal(vmsig_control_send(c, &mv), 0);
        pump(bus, 1);
        assert_int_equal(r.n, 1);
        assert_int_equal(r.ev[0].hdr.corr, 77);
        assert_int_equal(tad_last->submits, 11);
        vmsig_bus_free(bus);
}

/* ---- detach from inside callbacks ---- */

struct detach_ctx {
        struct vmsig_bus *bus;
        uint32_t ep;
        int emit_after;
        int closed_during;
};

static void detach_self(struct tad *t)
{
        struct detach_ctx *d = t->test_data;
        int before = atomic_load(&tad_closed);
        struct vmsig_event ev = diag(VMSIG_PRIO_NORMAL, 1);

        assert_int_equal(vmsig_bus_detach(d->bus, d->ep, t->seam), 0);
        /* Still alive (ASan would catch a use after free here)... */
        d->emit_after = t->sink->emit(t->sink, &ev);
        t->submits++;
        /* ... and not closed under our feet. */
        d->closed_during = atomic_load(&tad_closed) - before;
}

static void test_detach_inside_own_callback(void **state)
{
        struct vmsig_bus *bus;
        struct detach_ctx d = {0};
        uint32_t ep;

        assert_int_equal(vmsig_bus_new(NULL, &bus), 0);
        assert_int_equal(vmsig_bus_endpoint_add(bus, "vm1", &ep), 0);
        d.bus = bus;
        d.ep = ep;
        tad_default_hook = detach_self;
        tad_default_data = &d;
        assert_int_equal(vmsig_bus_attach(bus, ep, &input_ops, NULL), 0);
        tad_default_hook = NULL;
        tad_default_data = NULL;
        int closed0 = atomic_load(&tad_closed);
        tad_kick(tad_last);
        pump(bus, 1);
        assert_int_equal(d.emit_after, -ESHUTDOWN);
        assert_int_equal(d.closed_during, 0);
        assert_int_equal(atomic_load(&tad_closed), closed0 + 1); /* reaped after the batch */
        /* The seam is free again. */
        assert_int_equal(vmsig_bus_attach(bus, ep, &input_ops, NULL), 0);
        vmsig_bus_free(bus);
}

struct ctl_hook_ctx {
        struct vmsig_bus *bus;
        uint32_t ep;
        struct vmsig_control *self;
        int seen;
};

static void detach_from_control(struct vmsig_control *ctl, const struct vmsig_event *ev, void *data)
{
        struct ctl_hook_ctx *h = data;
        if (ev->hdr.kind != VMSIG_EV_DIAG)
                return;
        if (++h->seen == 3) {
                vmsig_bus_detach(h->bus, h->ep, VMSIG_SRC_INPUT);
                vmsig_control_close(h->self); /* and close itself, mid-delivery */
        }
}

static void emit_five(struct tad *t)
{
        for (int i = 0; i < 5; i++) {
                struct vmsig_event ev = diag(VMSIG_PRIO_NORMAL, i);
                t->sink->emit(t->sink, &ev);
        }
}

static void test_detach_and_close_inside_control_callback(void **state)
{
        struct vmsig_bus *bus;
        struct rec r, other;
        struct ctl_hook_ctx h = {0};
        uint32_t ep;

        assert_int_equal(vmsig_bus_new(NULL, &bus), 0);
        assert_int_equal(vmsig_bus_endpoint_add(bus, "vm1", &ep), 0);
        tad_default_hook = emit_five;
        assert_int_equal(vmsig_bus_attach(bus, ep, &input_ops, NULL), 0);
        tad_default_hook = NULL;
        struct vmsig_control *c = rec_control(bus, &r, "c", VMSIG_CAP_ALL);
        struct vmsig_control *o = rec_control(bus, &other, "o", VMSIG_CAP_ALL);
        h.bus = bus;
        h.ep = ep;
        h.self = c;
        r.hook = detach_from_control;
        r.hook_data = &h;
        assert_int_equal(vmsig_control_subscribe(c, 0, VMSIG_KIND_BIT(VMSIG_EV_DIAG)), 0);
        assert_int_equal(vmsig_control_subscribe(o, 0, VMSIG_KIND_BIT(VMSIG_EV_DIAG)), 0);
        tad_kick(tad_last);
        pump(bus, 2);
        assert_int_equal(r.n, 3);     /* closed itself after the third */
        assert_int_equal(other.n, 5); /* everyone else keeps receiving */
        vmsig_bus_free(bus);
}

/* ---- churn: 1000 attach/detach cycles while 100k events flow ---- */

struct flood {
        struct tad *t;
        int n;
        int failed;
};

static void *flood_thread(void *arg)
{
        struct flood *f = arg;
        for (int i = 0; i < f->n; i++) {
                struct vmsig_event ev = diag(VMSIG_PRIO_NORMAL, i);
                if (f->t->sink->emit(f->t->sink, &ev) < 0)
                        f->failed++;
        }
        return NULL;
}

static void test_attach_detach_churn_while_events_flow(void **state)
{
        struct vmsig_bus *bus;
        struct rec r;
        uint32_t ep1, ep2;
        int fds0 = count_fds();
        int opened0 = atomic_load(&tad_opened), closed0 = atomic_load(&tad_closed);
        struct flood f = {.n = 100000};
        pthread_t th;

        assert_int_equal(vmsig_bus_new(NULL, &bus), 0);
        assert_int_equal(vmsig_bus_endpoint_add(bus, "source", &ep1), 0);
        assert_int_equal(vmsig_bus_endpoint_add(bus, "churn", &ep2), 0);
        assert_int_equal(vmsig_bus_attach(bus, ep1, &vmhost_ops, NULL), 0);
        f.t = tad_last;
        struct vmsig_control *c = rec_control(bus, &r, "c", VMSIG_CAP_ALL);
        assert_int_equal(vmsig_control_subscribe(c, ep1, VMSIG_KIND_BIT(VMSIG_EV_DIAG)), 0);
        assert_int_equal(pthread_create(&th, NULL, flood_thread, &f), 0);
        for (int i = 0; i < 1000; i++) {
                const struct vmsig_adapter_ops *ops = (i & 1) ? &input_ops : &memctx_ops;
                assert_int_equal(vmsig_bus_attach(bus, ep2, ops, NULL), 0);
                vmsig_bus_run_once(bus, 0);
                assert_int_equal(vmsig_bus_detach(bus, ep2, ops->seam), 0);
                vmsig_bus_run_once(bus, 0);
        }
        /* Drain whatever the flood still has in flight. */
        for (int spins = 0; spins < 100000 && (r.total < (unsigned)f.n); spins++)
                vmsig_bus_run_once(bus, 10);
        pthread_join(th, NULL);
        pump(bus, 2);
        assert_int_equal(f.failed, 0);
        assert_int_equal(r.total, f.n);
        /* Per-source FIFO: codes arrive in emission order. */
        for (unsigned i = 0; i < r.n; i++)
                assert_int_equal(diag_code(&r.ev[i]), (int32_t)i);
        vmsig_bus_free(bus);
        assert_int_equal(atomic_load(&tad_opened) - opened0, atomic_load(&tad_closed) - closed0);
        assert_int_equal(count_fds(), fds0);
}

/* ---- bounded queues ---- */

static void test_stalled_control_disconnected_others_keep_receiving(void **state)
{
        struct vmsig_bus *bus;
        struct vmsig_bus_limits lim = {.queue_bytes = 64 * sizeof(struct vmsig_event) + 64 * 8};
        struct rec slow, fast, dropper;
        uint32_t ep;

        assert_int_equal(vmsig_bus_new(&lim, &bus), 0);
        assert_int_equal(vmsig_bus_endpoint_add(bus, "vm1", &ep), 0);
        assert_int_equal(vmsig_bus_attach(bus, ep, &vmhost_ops, NULL), 0);
        struct tad *t = tad_last;
        struct vmsig_control *s = rec_control(bus, &slow, "slow", VMSIG_CAP_ALL);
        struct vmsig_control *f = rec_control(bus, &fast, "fast", VMSIG_CAP_ALL);
        struct vmsig_control *d = rec_control(bus, &dropper, "dropper", VMSIG_CAP_ALL);
        assert_int_equal(vmsig_control_subscribe(s, 0, VMSIG_KIND_BIT(VMSIG_EV_DIAG)), 0);
        assert_int_equal(vmsig_control_subscribe(f, 0, VMSIG_KIND_BIT(VMSIG_EV_DIAG)), 0);
        assert_int_equal(vmsig_control_subscribe(d, 0, VMSIG_KIND_BIT(VMSIG_EV_STATUS)), 0);
        pump(bus, 1);
        slow.stall = true;
        dropper.stall = true;

        /* Droppable events to a stalled control: dropped and counted, no disconnect. */
        for (int i = 0; i < 200; i++) {
                struct vmsig_event st;
                struct vmsig_status_body sb = {.run_state = VMSIG_RUN_RUNNING};
                vmsig_event_init(&st, VMSIG_EV_STATUS, 0, 0);
                st.hdr.flags |= VMSIG_F_DROPPABLE;
                vmsig_event_set_body(&st, &sb, sizeof(sb));
                assert_int_equal(t->sink->emit(t->sink, &st), 0);
        }
        /* Must-deliver events to a stalled control: disconnected with a reason. */
        for (int i = 0; i < 200; i++) {
                struct vmsig_event ev = diag(VMSIG_PRIO_NORMAL, i);
                assert_int_equal(t->sink->emit(t->sink, &ev), 0);
        }
        pump(bus, 2);
        assert_true(slow.closed);
        assert_int_equal(slow.closed_reason, -ENOBUFS);
        assert_non_null(strstr(slow.closed_msg, "too slow"));
        assert_int_equal(fast.n, 200);
        assert_false(dropper.closed);
        struct vmsig_control_stats cs;
        assert_int_equal(vmsig_control_get_stats(d, &cs), 0);
        assert_int_equal(cs.dropped + cs.queued, 200);
        assert_true(cs.dropped > 0);
        struct vmsig_bus_stats bs;
        vmsig_bus_get_stats(bus, &bs);
        assert_int_equal(bs.disconnects, 1);
        assert_int_equal(bs.dropped, cs.dropped);

        /* The stalled-but-alive control resumes and gets its queue in order. */
        dropper.stall = false;
        vmsig_control_resume(d);
        pump(bus, 1);
        assert_int_equal(dropper.n, cs.queued);
        for (unsigned i = 1; i < dropper.n; i++)
                assert_true(dropper.ev[i].hdr.seq > dropper.ev[i - 1].hdr.seq);
        vmsig_bus_free(bus);
}

/* ---- endpoints ---- */

static void test_endpoint_slots_and_roster(void **state)
{
        struct vmsig_bus *bus;
        struct rec r;
        uint32_t a, b, c2;

        assert_int_equal(vmsig_bus_new(NULL, &bus), 0);
        struct vmsig_control *c = rec_control(bus, &r, "c", VMSIG_CAP_ROSTER);
        assert_int_equal(vmsig_control_subscribe(c, 0, VMSIG_KIND_BIT(VMSIG_EV_ROSTER)), 0);
        assert_int_equal(vmsig_bus_endpoint_add(bus, "a", &a), 0);
        assert_int_equal(vmsig_bus_endpoint_add(bus, "b", &b), 0);
        assert_int_equal(vmsig_bus_endpoint_add(bus, "a", NULL), -EEXIST);
        assert_int_equal(a, 1);
        assert_int_equal(b, 2);
        assert_int_equal(vmsig_bus_endpoint_remove(bus, a), 0);
        /* Not reused before the departure is dispatched. */
        assert_int_equal(vmsig_bus_endpoint_add(bus, "c", &c2), 0);
        assert_int_equal(c2, 3);
        pump(bus, 1);
        uint32_t d;
        assert_int_equal(vmsig_bus_endpoint_add(bus, "d", &d), 0);
        assert_int_equal(d, 1);
        pump(bus, 1);
        struct vmsig_roster_body rb;
        int left = -1;
        for (unsigned i = 0; i < r.n; i++) {
                memcpy(&rb, r.ev[i].body, sizeof(rb));
                if (rb.change == VMSIG_ROSTER_LEFT)
                        left = (int)i;
        }
        assert_true(left >= 0);
        memcpy(&rb, r.ev[left].body, sizeof(rb));
        assert_string_equal(rb.name, "a");
        assert_int_equal(vmsig_bus_endpoint_find(bus, "d", &d), 0);
        assert_int_equal(vmsig_bus_endpoint_find(bus, "a", NULL), -ENOENT);
        vmsig_bus_free(bus);
}

/* ---- post hooks ---- */

struct post_ctx {
        struct rec *r;
        unsigned calls;
        unsigned seen_at_call; /* deliveries already made when the hook ran */
        bool free_self;
        struct vmsig_post *self;
};

static void post_hook(struct vmsig_post *p, void *ud)
{
        struct post_ctx *pc = ud;
        pc->calls++;
        pc->seen_at_call = pc->r->n;
        if (pc->free_self)
                pc->self = vmsig_post_free(p); /* safe inside its own call */
}

static void test_post_hook_runs_after_delivery(void **state)
{
        struct vmsig_bus *bus;
        struct rec r;
        struct post_ctx pc = {.r = &r};
        uint32_t ep;

        assert_int_equal(vmsig_bus_new(NULL, &bus), 0);
        assert_int_equal(vmsig_bus_endpoint_add(bus, "vm1", &ep), 0);
        tad_default_hook = emit_five;
        assert_int_equal(vmsig_bus_attach(bus, ep, &input_ops, NULL), 0);
        tad_default_hook = NULL;
        struct vmsig_control *c = rec_control(bus, &r, "c", VMSIG_CAP_ALL);
        assert_int_equal(vmsig_control_subscribe(c, 0, VMSIG_KIND_BIT(VMSIG_EV_DIAG)), 0);
        assert_int_equal(vmsig_bus_add_post(bus, post_hook, &pc, &pc.self), 0);
        pump(bus, 1);
        unsigned before = pc.calls;
        tad_kick(tad_last);
        assert_true(vmsig_bus_run_once(bus, 1000) >= 0);
        /* Once per iteration, after all five deliveries of that iteration. */
        assert_int_equal(pc.calls, before + 1);
        assert_int_equal(pc.seen_at_call, 5);
        pc.free_self = true;
        pump(bus, 1);
        unsigned after_free = pc.calls;
        pump(bus, 3);
        assert_int_equal(pc.calls, after_free); /* freed: never called again */
        assert_null(pc.self);
        vmsig_bus_free(bus);
}

/* An embedder that nests the bus in its own poll loop sends between
 * iterations: the bus fd must turn readable, or it would sleep on queued
 * work. And once that iteration ran, the fd is quiet again. */
static void test_send_between_iterations_wakes_the_bus_fd(void **state)
{
        struct vmsig_bus *bus;
        struct rec r;
        uint32_t ep;

        (void)state;
        assert_int_equal(vmsig_bus_new(NULL, &bus), 0);
        assert_int_equal(vmsig_bus_endpoint_add(bus, "vm1", &ep), 0);
        assert_int_equal(vmsig_bus_attach(bus, ep, &input_ops, NULL), 0);
        struct vmsig_control *a = rec_control(bus, &r, "a", VMSIG_CAP_ALL);
        pump(bus, 3);
        struct pollfd p = {.fd = vmsig_bus_get_fd(bus), .events = POLLIN};
        assert_int_equal(poll(&p, 1, 0), 0); /* nothing to do */
        for (int round = 0; round < 2; round++) {
                unsigned before = r.total;
                assert_int_equal(vmsig_control_lease_acquire(a, ep, VMSIG_LEASE_INPUT, 1), 0);
                assert_int_equal(poll(&p, 1, 1000), 1);
                assert_true(vmsig_bus_run_once(bus, 0) > 0);
                assert_true(r.total > before); /* the lease's ACK */
                pump(bus, 2);
                assert_int_equal(poll(&p, 1, 0), 0);
                assert_int_equal(vmsig_control_lease_release(a, ep, VMSIG_LEASE_INPUT, 2), 0);
                pump(bus, 3);
        }
        vmsig_bus_free(bus);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_send_between_iterations_wakes_the_bus_fd),
            cmocka_unit_test(test_order_priority_fifo),
            cmocka_unit_test(test_order_reevaluated_after_dispatch),
            cmocka_unit_test(test_retained_replay_before_live),
            cmocka_unit_test(test_memctx_epoch_and_invalidation),
            cmocka_unit_test(test_lease_exclusive_deny_release_on_disconnect),
            cmocka_unit_test(test_capability_source_extent_denials_audited),
            cmocka_unit_test(test_ff_suppresses_ack_only_on_success),
            cmocka_unit_test(test_detach_inside_own_callback),
            cmocka_unit_test(test_detach_and_close_inside_control_callback),
            cmocka_unit_test(test_attach_detach_churn_while_events_flow),
            cmocka_unit_test(test_stalled_control_disconnected_others_keep_receiving),
            cmocka_unit_test(test_endpoint_slots_and_roster),
            cmocka_unit_test(test_post_hook_runs_after_delivery),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
