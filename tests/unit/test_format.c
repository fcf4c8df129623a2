/* SPDX-License-Identifier: MIT */
/* Event formatting: every kind decodes, malformed bodies say so, strings
 * from bodies are made printable and JSON stays JSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include <string.h>

#include <vmsig/event.h>
#include <vmsig/memctx.h>

static void test_roster_and_ack(void **state)
{
        struct vmsig_event ev;
        struct vmsig_roster_body rb = {
            .change = VMSIG_ROSTER_APPEARED, .seams = 1u << VMSIG_SRC_INPUT, .run_state = VMSIG_RUN_RUNNING};
        char buf[512];

        strcpy(rb.name, "vm\"1\n");
        vmsig_event_init(&ev, VMSIG_EV_ROSTER, 3, VMSIG_SRC_CORE);
        vmsig_event_set_body(&ev, &rb, sizeof(rb));
        vmsig_event_format(&ev, buf, sizeof(buf));
        assert_non_null(strstr(buf, "ROSTER"));
        assert_non_null(strstr(buf, "ep 3"));
        assert_non_null(strstr(buf, "appeared"));
        assert_non_null(strstr(buf, "vm\"1\\x0a")); /* the newline made visible */
        vmsig_event_format_json(&ev, buf, sizeof(buf));
        assert_non_null(strstr(buf, "\"name\": \"vm\\\"1\\u000a\""));
        assert_non_null(strstr(buf, "\"kind\": \"ROSTER\""));
        assert_int_equal(buf[strlen(buf) - 1], '}');

        struct vmsig_event cmd, ack;
        vmsig_event_init(&cmd, VMSIG_EV_CMD_POWER, 3, VMSIG_SRC_VMHOST);
        cmd.hdr.corr = 42;
        cmd.hdr.peer = 7;
        vmsig_ack_init(&ack, &cmd, VMSIG_SRC_VMHOST, -16, 0, "held by %s", "alice");
        assert_int_equal(ack.hdr.corr, 42);
        assert_int_equal(ack.hdr.peer, 7);
        vmsig_event_format(&ack, buf, sizeof(buf));
        assert_non_null(strstr(buf, "for=CMD_POWER result=-16"));
        assert_non_null(strstr(buf, "held by alice"));
}

static void test_every_kind_and_malformed(void **state)
{
        static const uint16_t kinds[] = {VMSIG_EV_ROSTER,        VMSIG_EV_MEMCTX,       VMSIG_EV_STATUS,
                                         VMSIG_EV_ACT_ACK,       VMSIG_EV_DIAG,         VMSIG_EV_LEASE_GRANT,
                                         VMSIG_EV_LEASE_DENY,    VMSIG_EV_LEASE_REVOKE, VMSIG_EV_MOVE_ABS,
                                         VMSIG_EV_MOVE_REL,      VMSIG_EV_BUTTON,       VMSIG_EV_KEY,
                                         VMSIG_EV_WHEEL,         VMSIG_EV_CMD_POWER,    VMSIG_EV_CMD_MEMWRITE,
                                         VMSIG_EV_LEASE_ACQUIRE, VMSIG_EV_LEASE_RELEASE};
        char buf[64], big[1024];
        struct vmsig_event ev;

        for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
                vmsig_event_init(&ev, kinds[i], 1, 0);
                memset(ev.body, 0xff, sizeof(ev.body)); /* no NULs: strings must stay bounded */
                ev.hdr.body_len = (uint32_t)vmsig_kind_body_max(kinds[i]);
                vmsig_event_format(&ev, big, sizeof(big));
                assert_null(strstr(big, "malformed"));
                assert_true(strlen(big) < sizeof(big));
                vmsig_event_format(&ev, buf, sizeof(buf)); /* truncates, never overruns */
                assert_true(strlen(buf) < sizeof(buf));
                ev.hdr.body_len = 3;
                vmsig_event_format_json(&ev, big, sizeof(big));
                assert_non_null(strstr(big, "\"malformed\": true"));
        }
        vmsig_event_init(&ev, 999, 1, 0);
        vmsig_event_format(&ev, big, sizeof(big));
        assert_non_null(strstr(big, "?"));
}

/* The helper vmsigctl prints every daemon string through: the same escaping
 * as the event formatters, bounded by max and by the output size. */
static void test_str_escape(void **state)
{
        char out[64];
        const char evil[] = "\x1b[2J\ngranted\x7f\xff\"q\\";

        (void)state;
        assert_string_equal(vmsig_str_escape(evil, sizeof(evil), false, out, sizeof(out)),
                            "\\x1b[2J\\x0agranted\\x7f\\xff\"q\\");
        assert_string_equal(vmsig_str_escape(evil, sizeof(evil), true, out, sizeof(out)),
                            "\\u001b[2J\\u000agranted\\u007f\\u00ff\\\"q\\\\");
        /* max bounds the input: no NUL needed within it */
        assert_string_equal(vmsig_str_escape("abcdef", 3, false, out, sizeof(out)), "abc");
        assert_string_equal(vmsig_str_escape(NULL, 8, false, out, sizeof(out)), "");
        /* truncation keeps the output terminated */
        char small[6];
        vmsig_str_escape("\x1b\x1b\x1b", 3, false, small, sizeof(small));
        assert_true(strlen(small) < sizeof(small));
        assert_null(strchr(small, '\x1b'));
        assert_ptr_equal(vmsig_str_escape("x", 1, false, small, 0), small);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_roster_and_ack),
            cmocka_unit_test(test_every_kind_and_malformed),
            cmocka_unit_test(test_str_escape),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
