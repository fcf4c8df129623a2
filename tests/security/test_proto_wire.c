/* SPDX-License-Identifier: MIT */
/* The protocol on the wire (issue 9, "the protocol must tell the truth"):
 *  - a refusal (connection limit, admission) is sent at accept time, before
 *    HELLO is read: a client whose HELLO then meets EPIPE still finds the
 *    ERROR with the reason, and the client library reports that reason;
 *  - "send 0" and reserved fields a control sets are violations: that
 *    connection gets ERROR -EPROTO and ends, the others are still served. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "daemon/vmsigd_harness.h"

static struct vh H;

static int teardown(void **state)
{
        (void)state;
        vh_teardown(&H);
        return 0;
}

static void test_refusal_before_hello(void **state)
{
        (void)state;
        uint8_t buf[WIRE_FRAME_MAX];
        struct wire_frame f;

        vh_must_start(&H, "[limits]\nconns_per_uid = 1\n");
        struct vmsig_client *first = vh_client(&H, "first");
        assert_non_null(first);

        /* Raw: wait for the refusal, then say HELLO as a slow client would. */
        int fd = vh_raw_connect(H.sock);
        assert_true(fd >= 0);
        /* The refusal needs no HELLO: ERROR, then the daemon hangs up. */
        struct pollfd p = {.fd = fd, .events = POLLRDHUP};
        assert_int_equal(poll(&p, 1, VH_TIMEOUT_MS), 1);
        assert_true(p.revents & (POLLRDHUP | POLLHUP));
        ssize_t n = wire_encode_hello(buf, sizeof(buf), "late");
        assert_true(n > 0);
        int werr = send(fd, buf, (size_t)n, MSG_NOSIGNAL) < 0 ? errno : 0;
        assert_true(werr == EPIPE || werr == ECONNRESET);
        assert_int_equal(vh_raw_frame(fd, &f, VH_TIMEOUT_MS), 1);
        assert_int_equal(f.type, WIRE_ERROR);
        assert_int_equal(f.u.error.code, -EUSERS);
        assert_non_null(strstr(f.u.error.msg, "connections"));
        close(fd);

        /* The library: the daemon's reason, whatever the write met. */
        for (int i = 0; i < 20; i++) {
                struct vmsig_client *c = NULL;
                assert_int_equal(vmsig_client_new(&c), 0);
                int r = vmsig_client_connect(c, H.sock, "second", VH_TIMEOUT_MS);
                const struct vmsig_client_error *e = vmsig_client_last_error(c);
                if (r != -EUSERS || !e->from_daemon || !strstr(e->msg, "connections"))
                        fail_msg("connect %d: %d '%s' (from daemon %d), want the refusal -EUSERS", i, r,
                                 e->msg, e->from_daemon);
                vmsig_client_free(c);
        }
        /* vmsigctl shows it too. */
        char out[2048];
        assert_int_equal(vh_vmsigctl(&H, -1, out, sizeof(out), "list", (char *)NULL), 3);
        assert_non_null(strstr(out, "refused the connection"));
        assert_non_null(strstr(out, "connections"));
        assert_null(strstr(out, "Broken pipe"));
        vh_client_close(first);
}

/* In a child running as a uid with no admission rule: connect, wait until
 * the daemon has hung up, then say HELLO. Reports the write's errno and the
 * frame found afterwards. */
struct late_hello {
        int hup, werr, frame_r;
        uint16_t type;
        int32_t code;
        char msg[VMSIG_MSG_MAX];
};

static void child_late_hello(void *ud, void *outp, size_t outlen)
{
        struct late_hello *o = outp;
        uint8_t buf[WIRE_FRAME_MAX];
        struct wire_frame f;
        int fd = vh_raw_connect(H.sock);

        (void)ud;
        (void)outlen;
        if (fd < 0) {
                o->frame_r = fd;
                return;
        }
        struct pollfd p = {.fd = fd, .events = POLLRDHUP};
        o->hup = poll(&p, 1, VH_TIMEOUT_MS) == 1 && (p.revents & (POLLRDHUP | POLLHUP));
        ssize_t n = wire_encode_hello(buf, sizeof(buf), "late");
        o->werr = send(fd, buf, (size_t)n, MSG_NOSIGNAL) < 0 ? errno : 0;
        o->frame_r = vh_raw_frame(fd, &f, VH_TIMEOUT_MS);
        if (o->frame_r == 1) {
                o->type = f.type;
                o->code = f.type == WIRE_ERROR ? f.u.error.code : 0;
                snprintf(o->msg, sizeof(o->msg), "%s", f.type == WIRE_ERROR ? f.u.error.msg : "");
        }
        close(fd);
}

static void test_not_admitted_before_hello(void **state)
{
        (void)state;
        if (geteuid() != 0) {
                print_message("skipped: needs root to run a client as uid 65534\n");
                skip();
        }
        vh_must_start(&H, NULL); /* default config: only uid 0 is admitted */
        struct late_hello o;
        assert_int_equal(vh_run_as(65534, child_late_hello, NULL, &o, sizeof(o)), 0);
        assert_true(o.hup);
        if (o.werr != EPIPE && o.werr != ECONNRESET)
                fail_msg("HELLO after the refusal: errno %d, expected EPIPE", o.werr);
        if (o.frame_r != 1 || o.type != WIRE_ERROR || o.code != -EACCES || !strstr(o.msg, "uid 65534"))
                fail_msg(
                    "after the failed HELLO: %d type %u code %d '%s', expected ERROR -EACCES naming the uid",
                    o.frame_r, o.type, o.code, o.msg);
}

/* A valid command from a raw control, then one byte set where the document
 * says "0". */
static int send_patched(int fd, const struct vmsig_event *ev, size_t off, uint8_t v)
{
        uint8_t b[WIRE_FRAME_MAX];
        ssize_t n = wire_encode_event(b, sizeof(b), ev, true);

        if (n < 0 || off >= (size_t)n)
                return -EINVAL;
        b[off] = v;
        return vh_raw_send(fd, b, (size_t)n);
}

static void test_reserved_fields_close_only_that_connection(void **state)
{
        (void)state;
        const size_t hdr = WIRE_PREFIX_LEN, body = WIRE_PREFIX_LEN + WIRE_EVENT_HDR_LEN;
        struct vmsig_event ev;

        vh_must_start(&H, NULL);
        struct vmsig_client *good = vh_client(&H, "good");
        assert_non_null(good);
        assert_int_equal(vh_subscribe(good, 0, 1u << VMSIG_EV_ROSTER, NULL, NULL), 0);
        assert_int_equal(vh_vm_add(&H, "alpha", NULL), 0);
        uint32_t ep = vh_wait_vm(good, "alpha");
        assert_true(ep != 0);

        struct {
                const char *what;
                uint16_t kind;
                size_t off;
        } cases[] = {
            {"LEASE_ACQUIRE holder_id", VMSIG_EV_LEASE_ACQUIRE,
             body + offsetof(struct vmsig_lease_body, holder_id)},
            {"LEASE_ACQUIRE holder_name", VMSIG_EV_LEASE_ACQUIRE,
             body + offsetof(struct vmsig_lease_body, holder_name)},
            {"header peer", VMSIG_EV_CMD_STATUS_QUERY, hdr + 12},
            {"header seq", VMSIG_EV_CMD_STATUS_QUERY, hdr + 24},
            {"header cr3 of a non-MEMWRITE", VMSIG_EV_CMD_STATUS_QUERY, hdr + 41},
            {"input flags", VMSIG_EV_MOVE_ABS, body + offsetof(struct vmsig_input_body, flags)},
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct wire_welcome w;
                struct wire_error err;
                struct vmsig_ack_body ack;
                int fd = vh_raw_hello(H.sock, "bad", &w, NULL);
                assert_true(fd >= 0);
                if (cases[i].kind == VMSIG_EV_LEASE_ACQUIRE) {
                        struct vmsig_lease_body lb = {.class_ = VMSIG_LEASE_INPUT};
                        vmsig_event_init(&ev, cases[i].kind, ep, VMSIG_SRC_CORE);
                        vmsig_event_set_body(&ev, &lb, sizeof(lb));
                } else if (cases[i].kind == VMSIG_EV_MOVE_ABS) {
                        struct vmsig_input_body ib = {.x = 1, .y = 1};
                        vmsig_event_init(&ev, cases[i].kind, ep, VMSIG_SRC_INPUT);
                        vmsig_event_set_body(&ev, &ib, sizeof(ib));
                } else {
                        vmsig_event_init(&ev, cases[i].kind, ep, VMSIG_SRC_VMHOST);
                }
                ev.hdr.corr = 100 + i;
                assert_int_equal(send_patched(fd, &ev, cases[i].off, 7), 0);
                int r = vh_raw_wait_ack(fd, ev.hdr.corr, &ack, &err);
                if (r != -EBADE)
                        fail_msg("%s set: %s (result %d) instead of ERROR -EPROTO", cases[i].what,
                                 r == 0 ? "acknowledged" : "no ERROR", r == 0 ? ack.result : r);
                assert_int_equal(err.code, -EPROTO);
                assert_non_null(strstr(err.msg, "field not zero"));
                assert_true(vh_raw_ends(fd, VH_TIMEOUT_MS));
                close(fd);

                /* The well-behaved control is still served. */
                struct vmsig_event q;
                uint64_t corr = 0;
                vmsig_event_init(&q, VMSIG_EV_CMD_STATUS_QUERY, ep, VMSIG_SRC_VMHOST);
                assert_int_equal(vmsig_client_send(good, &q, &corr), 0);
                assert_int_equal(vh_wait_ack(good, corr, &ack, NULL, NULL), 0);
                assert_int_equal(ack.result, 0);
        }
        /* Nobody got the lease through the malformed acquire. */
        assert_int_equal(vh_lease(good, ep, VMSIG_LEASE_INPUT, true), 0);
        vh_client_close(good);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_teardown(test_refusal_before_hello, teardown),
            cmocka_unit_test_teardown(test_not_admitted_before_hello, teardown),
            cmocka_unit_test_teardown(test_reserved_fields_close_only_that_connection, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
