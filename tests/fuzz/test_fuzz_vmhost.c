/* SPDX-License-Identifier: MIT */
/* What the real vmhost adapter makes of bad QEMU replies and bad commands:
 * each fails closed with one ACK naming the cause. Runs scripts through the
 * fuzz_vmhost harness itself (its fake QEMU and sink), then reads the ACKs
 * and STATUS states it recorded. Script ops: see fuzz_vmhost.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "fuzz/fuzz_vmhost.c"

/* script pieces (fuzz_vmhost.c's op codes and template indexes) */
#define GREET       0
#define REPLY(t, a) 2, t, a
#define EVENT(n, v) 3, n, v
#define POWER(op)   4, op
#define QUERY       5, 0
#define HANGUP      6
#define R_EMPTY     0 /* {"return": {}} */
#define R_STATUS    1 /* query-status with run_states[a] */
#define R_GENERIC   3 /* GenericError */
#define R_NOTFOUND  4 /* CommandNotFound */
#define R_NUMSTATUS 5 /* {"return": {"status": a}}: a number */
#define R_NOCLASS   6 /* {"error": {}} */
#define R_LIST      7 /* {"return": ["status"]} */
#define ST_RUNNING  0
#define ST_PAUSED   1
#define ST_SHUTDOWN 2
#define HANDSHAKE   GREET, REPLY(R_EMPTY, 0), REPLY(R_STATUS, ST_RUNNING)

#define RUN(...)                                                                                             \
        do {                                                                                                 \
                static const uint8_t script_[] = {__VA_ARGS__};                                              \
                LLVMFuzzerTestOneInput(script_, sizeof(script_));                                            \
        } while (0)

static void expect_ack(unsigned i, int result, const char *needle)
{
        assert_true(i < S.ncmds);
        assert_int_equal(S.cmds[i].acks, 1);
        assert_int_equal(S.cmds[i].result, result);
        if (!strstr(S.cmds[i].msg, needle))
                fail_msg("ACK %u: \"%s\" does not say \"%s\"", i, S.cmds[i].msg, needle);
}

static void test_query_ok(void **state)
{
        (void)state;
        RUN(HANDSHAKE, QUERY, REPLY(R_STATUS, ST_PAUSED));
        expect_ack(0, 0, "state: paused (QEMU: paused)");
        assert_int_equal(S.status[0], VMSIG_RUN_RUNNING); /* on connect */
        assert_int_equal(S.status[1], VMSIG_RUN_PAUSED);  /* the query's own STATUS */
}

static void test_query_malformed(void **state)
{
        (void)state;
        /* a reply without "status" is no answer: -EPROTO, no STATUS guessed */
        RUN(HANDSHAKE, QUERY, REPLY(R_LIST, 0));
        expect_ack(0, -EPROTO, "query-status: malformed reply");
        RUN(HANDSHAKE, QUERY, REPLY(R_EMPTY, 0));
        expect_ack(0, -EPROTO, "query-status: malformed reply");
        assert_int_equal(S.nstatus, 2); /* connect, then QEMU gone at the end */
        /* a status that is not a string is no answer either (fuzz_vmhost) */
        RUN(HANDSHAKE, QUERY, REPLY(R_NUMSTATUS, 3));
        expect_ack(0, -EPROTO, "query-status: malformed reply");
        assert_int_equal(S.nstatus, 2);
}

static void test_qmp_errors(void **state)
{
        (void)state;
        RUN(HANDSHAKE, QUERY, REPLY(R_GENERIC, 0));
        expect_ack(0, -EREMOTEIO, "QEMU: GenericError: Unable to wake up");
        /* a command QEMU does not have is "not supported", not a QEMU failure */
        RUN(HANDSHAKE, POWER(VMSIG_POWER_RESET), REPLY(R_NOTFOUND, 0));
        expect_ack(0, -EOPNOTSUPP, "reset: QEMU: CommandNotFound");
        RUN(HANDSHAKE, POWER(VMSIG_POWER_PAUSE), REPLY(R_NOCLASS, 0));
        assert_int_equal(S.cmds[0].acks, 1);
        assert_true(S.cmds[0].result < 0);
}

static void test_bad_commands(void **state)
{
        (void)state;
        /* refused at submit: the core ACKs those, the adapter must not */
        RUN(HANDSHAKE, POWER(0), POWER(7), POWER(0x40 | VMSIG_POWER_RESET), 5, 0x40);
        assert_int_equal(S.ncmds, 4);
        for (unsigned i = 0; i < 4; i++) {
                assert_false(S.cmds[i].accepted);
                assert_int_equal(S.cmds[i].acks, 0);
        }
}

static void test_not_connected(void **state)
{
        (void)state;
        /* before the greeting, and after QEMU hung up */
        RUN(POWER(VMSIG_POWER_ON), QUERY, HANDSHAKE, HANGUP, POWER(VMSIG_POWER_PAUSE));
        expect_ack(0, -ENOTCONN, "QEMU not connected");
        expect_ack(1, -ENOTCONN, "QEMU not connected");
        expect_ack(2, -ENOTCONN, "QEMU not connected");
        /* in flight when QEMU goes: answered, not forgotten */
        RUN(HANDSHAKE, QUERY, POWER(VMSIG_POWER_RESET), HANGUP);
        expect_ack(0, -ENOTCONN, "QEMU not connected");
        expect_ack(1, -ENOTCONN, "QEMU not connected");
        assert_int_equal(S.status[S.nstatus - 1], VMSIG_RUN_GONE);
}

static void test_on(void **state)
{
        (void)state;
        RUN(HANDSHAKE, POWER(VMSIG_POWER_ON), REPLY(R_LIST, 0));
        expect_ack(0, -EPROTO, "on: query-status: malformed reply");
        RUN(HANDSHAKE, POWER(VMSIG_POWER_ON), REPLY(R_STATUS, ST_RUNNING));
        expect_ack(0, -EALREADY, "already running");
        /* -no-reboot: the reset turns into a SHUTDOWN; "on" says so */
        RUN(HANDSHAKE, POWER(VMSIG_POWER_ON), REPLY(R_STATUS, ST_SHUTDOWN), EVENT(0, 1), REPLY(R_EMPTY, 0));
        expect_ack(0, -ECANCELED, "system_reset became a SHUTDOWN");
        /* the reset is refused */
        RUN(HANDSHAKE, POWER(VMSIG_POWER_ON), REPLY(R_STATUS, ST_SHUTDOWN), REPLY(R_GENERIC, 0));
        expect_ack(0, -EREMOTEIO, "on: system_reset: QEMU: GenericError");
        /* parked for its RESET when QEMU goes */
        RUN(HANDSHAKE, POWER(VMSIG_POWER_ON), REPLY(R_STATUS, ST_SHUTDOWN), REPLY(R_EMPTY, 0), HANGUP);
        expect_ack(0, -ENOTCONN, "on: QEMU not connected");
        /* ... or when its RESET never comes */
        RUN(HANDSHAKE, POWER(VMSIG_POWER_ON), REPLY(R_STATUS, ST_SHUTDOWN), REPLY(R_EMPTY, 0), 5, 0xff);
        expect_ack(0, -ETIMEDOUT, "on: no RESET within 10000 ms after system_reset");
        /* and the good path: probe, reset, RESET, cont */
        RUN(HANDSHAKE, POWER(VMSIG_POWER_ON), REPLY(R_STATUS, ST_SHUTDOWN), REPLY(R_EMPTY, 0), EVENT(1, 1),
            REPLY(R_STATUS, ST_RUNNING), REPLY(R_EMPTY, 0));
        expect_ack(0, 0, "on: powered on");
        RUN(HANDSHAKE, POWER(VMSIG_POWER_ON), POWER(VMSIG_POWER_ON));
        expect_ack(1, -EBUSY, "already in progress");
}

/* "reset" is done only once its RESET shows; with the reboot action
 * "shutdown" (-no-reboot, on_reboot=destroy) it says what happened. */
static void test_reset(void **state)
{
        (void)state;
        /* reply, then RESET */
        RUN(HANDSHAKE, POWER(VMSIG_POWER_RESET), REPLY(R_EMPTY, 0), EVENT(1, 1));
        expect_ack(0, 0, "reset: done");
        /* RESET before the reply */
        RUN(HANDSHAKE, POWER(VMSIG_POWER_RESET), EVENT(1, 1), REPLY(R_EMPTY, 0));
        expect_ack(0, 0, "reset: done");
        /* reply, then SHUTDOWN */
        RUN(HANDSHAKE, POWER(VMSIG_POWER_RESET), REPLY(R_EMPTY, 0), EVENT(0, 1));
        expect_ack(0, -ESHUTDOWN, "shut down instead");
        /* SHUTDOWN, then QEMU exits before its reply got out */
        RUN(HANDSHAKE, POWER(VMSIG_POWER_RESET), EVENT(0, 1), HANGUP);
        expect_ack(0, -ESHUTDOWN, "shut down instead");
        /* accepted, then QEMU exits with no event */
        RUN(HANDSHAKE, POWER(VMSIG_POWER_RESET), REPLY(R_EMPTY, 0), HANGUP);
        expect_ack(0, -ESHUTDOWN, "QEMU exited after system_reset");
        /* accepted, and nothing ever shows */
        RUN(HANDSHAKE, POWER(VMSIG_POWER_RESET), REPLY(R_EMPTY, 0), 5, 0xff);
        expect_ack(0, -EINPROGRESS, "no RESET within");
        /* two resets, one RESET: both done */
        RUN(HANDSHAKE, POWER(VMSIG_POWER_RESET), POWER(VMSIG_POWER_RESET), REPLY(R_EMPTY, 0),
            REPLY(R_EMPTY, 0), EVENT(1, 1));
        expect_ack(0, 0, "reset: done");
        expect_ack(1, 0, "reset: done");
}

/* QEMU never reached: starting, not gone */
static void test_starting(void **state)
{
        (void)state;
        RUN(HANGUP);
        assert_true(S.nstatus >= 1);
        assert_int_equal(S.status[S.nstatus - 1], VMSIG_RUN_STARTING);
}

static void test_odd_events(void **state)
{
        (void)state;
        /* reason of the wrong type, data not an object, foreign events:
         * no crash, and the state still comes from query-status */
        RUN(HANDSHAKE, EVENT(0, 4), REPLY(R_STATUS, ST_SHUTDOWN), EVENT(1, 5), REPLY(R_STATUS, ST_RUNNING),
            EVENT(8, 0), EVENT(10, 0), EVENT(11, 0));
        assert_int_equal(S.nstatus, 4);
        assert_int_equal(S.status[1], VMSIG_RUN_SHUTDOWN);
        assert_int_equal(S.status[2], VMSIG_RUN_RUNNING);
        assert_int_equal(S.status[3], VMSIG_RUN_GONE);
        /* a failed query after an event falls back to what the event says */
        RUN(HANDSHAKE, EVENT(2, 0), REPLY(R_GENERIC, 0));
        assert_int_equal(S.status[1], VMSIG_RUN_PAUSED);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_query_ok),      cmocka_unit_test(test_query_malformed),
            cmocka_unit_test(test_qmp_errors),    cmocka_unit_test(test_bad_commands),
            cmocka_unit_test(test_not_connected), cmocka_unit_test(test_on),
            cmocka_unit_test(test_odd_events),    cmocka_unit_test(test_reset),
            cmocka_unit_test(test_starting),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
