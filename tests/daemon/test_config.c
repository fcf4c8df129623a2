/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "daemon/config.h"

static int parse(const char *text, struct config **c, char *err, size_t errlen)
{
        return config_parse_string(text, strlen(text), "t.conf", 0, c, err, errlen);
}

static void expect_error(const char *text, const char *where, const char *field, const char *what)
{
        struct config *c = NULL;
        char err[512] = "";
        int r = parse(text, &c, err, sizeof(err));

        if (r == 0 || !strstr(err, where) || !strstr(err, field) || (what && !strstr(err, what)))
                fail_msg("input:\n%s\nerror: '%s' (r=%d), want '%s' '%s' '%s'", text, err, r, where, field,
                         what ? what : "");
        assert_null(c);
}

static void check_defaults(const struct config *c)
{
        assert_string_equal(c->socket, "/run/vmsig/vmsigd.sock");
        assert_int_equal(c->socket_mode, 0660);
        assert_false(c->has_socket_group);
        assert_string_equal(c->trigger_dir, "/run/vmsig/vms");
        assert_string_equal(c->audit, "journal");
        assert_int_equal(c->limits.queue_bytes, 1u << 20);
        assert_int_equal(c->limits.queue_soft_bytes, 0);
        assert_int_equal(c->limits.queue_soft_seconds, 10);
        assert_int_equal(c->limits.tail_max, 1u << 20);
        assert_int_equal(c->limits.conns_per_uid, 16);
        assert_int_equal(c->limits.max_endpoints, 1024);
        assert_int_equal(c->n_rules, 0);
        assert_string_equal(c->libvirt_uri, "qemu:///system");
        assert_int_equal(c->libvirt_attach, CONFIG_LIBVIRT_METADATA);
}

/* The libvirt driver's keys: a URI or none (off), metadata or shared-ram. */
static void test_libvirt_keys(void **state)
{
        struct config *c = NULL;
        char err[512] = "";

        (void)state;
        assert_int_equal(parse("[daemon]\nlibvirt_uri = qemu+ssh://h/system\nlibvirt_attach = shared-ram\n",
                               &c, err, sizeof(err)),
                         0);
        assert_string_equal(c->libvirt_uri, "qemu+ssh://h/system");
        assert_int_equal(c->libvirt_attach, CONFIG_LIBVIRT_SHARED_RAM);
        config_free(c);
        c = NULL;
        assert_int_equal(parse("[daemon]\nlibvirt_uri = none\n", &c, err, sizeof(err)), 0);
        assert_string_equal(c->libvirt_uri, "");
        config_free(c);
        expect_error("[daemon]\nlibvirt_uri =\n", "t.conf:2", "libvirt_uri", NULL);
        expect_error("[daemon]\nlibvirt_uri = qemu:///sys tem\n", "t.conf:2", "libvirt_uri", "no blanks");
        expect_error("[daemon]\nlibvirt_attach = all\n", "t.conf:2", "libvirt_attach",
                     "metadata or shared-ram");
        expect_error("[daemon]\nlibvirt_attach = metadata\nlibvirt_attach = metadata\n", "t.conf:3",
                     "libvirt_attach", "duplicate");
}

static void test_defaults_no_file(void **state)
{
        struct config *c = NULL;
        char err[256] = "";
        uint32_t caps = 0;

        assert_int_equal(config_load("/nonexistent/vmsigd.conf", CONFIG_MISSING_OK, &c, err, sizeof(err)), 0);
        check_defaults(c);
        /* Default deny: only root. */
        assert_int_equal(config_admit(c, 0, 0, NULL, 0, &caps), 0);
        assert_int_equal(caps, VMSIG_CAP_ALL);
        assert_int_equal(config_admit(c, 1000, 1000, NULL, 0, &caps), -EACCES);
        config_free(c);

        /* Without MISSING_OK a missing file is an error naming it. */
        c = NULL;
        assert_int_equal(config_load("/nonexistent/vmsigd.conf", 0, &c, err, sizeof(err)), -ENOENT);
        assert_non_null(strstr(err, "/nonexistent/vmsigd.conf"));
        assert_null(c);

        /* An empty file, or one of comments only, is the defaults too. */
        assert_int_equal(parse("", &c, err, sizeof(err)), 0);
        check_defaults(c);
        config_free(c);
        assert_int_equal(parse("; nothing\n# at all\n\n", &c, err, sizeof(err)), 0);
        check_defaults(c);
        config_free(c);
}

static void test_shipped_config_is_defaults(void **state)
{
        struct config *c = NULL;
        char err[512] = "";
        char path[1024];

        /* CMake compiles with absolute source paths: find the tree from here. */
        const char *here = __FILE__, *tail = strstr(here, "tests/daemon/test_config.c");
        if (!tail || here[0] != '/')
                skip();
        snprintf(path, sizeof(path), "%.*spackaging/vmsigd.conf", (int)(tail - here), here);
        assert_int_equal(config_load(path, 0, &c, err, sizeof(err)), 0);
        check_defaults(c);
        config_free(c);
}

static void test_full(void **state)
{
        struct config *c = NULL;
        char err[512] = "";
        uint32_t caps = 0;
        const char *text = "[daemon]\n"
                           "socket = /run/x/v.sock\n"
                           "socket_mode = 0600\n"
                           "socket_group = 0\n"
                           "trigger_dir = /run/x/vms\n"
                           "audit = file:/var/log/vmsig-audit.log\n"
                           "[limits]\n"
                           "queue_bytes = 2M\n"
                           "queue_soft_bytes = 512K\n"
                           "queue_soft_seconds = 3\n"
                           "tail_max = 65536\n"
                           "conns_per_uid = 4\n"
                           "max_endpoints = 64 ; inline comment\n"
                           "[uid:1000]\n"
                           "caps = roster,memctx,status\n"
                           "[user:root]\n"
                           "caps = all\n"
                           "[gid:100]\n"
                           "caps = roster, input\n"
                           "[group:root]\n"
                           "caps = power\n"
                           "[uid:1001]\n"
                           "caps = none\n";

        assert_int_equal(parse(text, &c, err, sizeof(err)), 0);
        assert_string_equal(c->socket, "/run/x/v.sock");
        assert_int_equal(c->socket_mode, 0600);
        assert_true(c->has_socket_group);
        assert_int_equal(c->socket_gid, 0);
        assert_string_equal(c->trigger_dir, "/run/x/vms");
        assert_string_equal(c->audit, "file:/var/log/vmsig-audit.log");
        assert_int_equal(c->limits.queue_bytes, 2u << 20);
        assert_int_equal(c->limits.queue_soft_bytes, 512u << 10);
        assert_int_equal(c->limits.queue_soft_seconds, 3);
        assert_int_equal(c->limits.tail_max, 65536);
        assert_int_equal(c->limits.conns_per_uid, 4);
        assert_int_equal(c->limits.max_endpoints, 64);
        assert_int_equal(c->n_rules, 5);

        /* uid rule */
        assert_int_equal(config_admit(c, 1000, 1000, NULL, 0, &caps), 0);
        assert_int_equal(caps, VMSIG_CAP_ROSTER | VMSIG_CAP_MEMCTX | VMSIG_CAP_STATUS);
        /* uid rule wins over a matching gid rule */
        {
                gid_t g[] = {100};
                assert_int_equal(config_admit(c, 1000, 1000, g, 1, &caps), 0);
                assert_int_equal(caps, VMSIG_CAP_ROSTER | VMSIG_CAP_MEMCTX | VMSIG_CAP_STATUS);
                /* caps = none for a uid shuts it out despite its group */
                assert_int_equal(config_admit(c, 1001, 100, g, 1, &caps), -EACCES);
        }
        /* primary gid rule */
        assert_int_equal(config_admit(c, 2000, 100, NULL, 0, &caps), 0);
        assert_int_equal(caps, VMSIG_CAP_ROSTER | VMSIG_CAP_INPUT);
        /* supplementary gids: union of matches */
        {
                gid_t g[] = {5, 100, 0};
                assert_int_equal(config_admit(c, 2000, 2000, g, 3, &caps), 0);
                assert_int_equal(caps, VMSIG_CAP_ROSTER | VMSIG_CAP_INPUT | VMSIG_CAP_POWER);
        }
        /* unknown */
        {
                gid_t g[] = {5, 6};
                assert_int_equal(config_admit(c, 2000, 2000, g, 2, &caps), -EACCES);
        }
        /* root via its explicit rule */
        assert_int_equal(config_admit(c, 0, 0, NULL, 0, &caps), 0);
        assert_int_equal(caps, VMSIG_CAP_ALL);

        {
                struct vmsig_bus_limits l;
                config_bus_limits(c, &l);
                assert_int_equal(l.queue_bytes, 2u << 20);
                assert_int_equal(l.memwrite_max, 65536);
                assert_int_equal(l.max_endpoints, 64);
        }
        config_free(c);
}

static void test_root_rule_replaces_implicit(void **state)
{
        struct config *c = NULL;
        char err[256] = "";
        uint32_t caps = 0;

        assert_int_equal(parse("[uid:0]\ncaps = roster\n", &c, err, sizeof(err)), 0);
        assert_int_equal(config_admit(c, 0, 0, NULL, 0, &caps), 0);
        assert_int_equal(caps, VMSIG_CAP_ROSTER);
        config_free(c);
}

static void test_errors(void **state)
{
        char longline[400];

        expect_error("[daemon]\nsocket = /a\n[bogus]\n", "t.conf:3", "[bogus]", "unknown section");
        expect_error("[daemon]\nsockett = /a\n", "t.conf:2", "sockett", "unknown key");
        expect_error("[limits]\nqueue_bytes = 1M\nqueue_bytes = 2M\n", "t.conf:3", "queue_bytes",
                     "duplicate");
        expect_error("[limits]\nqueue_bytes = lots\n", "t.conf:2", "queue_bytes", "not a decimal");
        expect_error("[limits]\nqueue_bytes = -5\n", "t.conf:2", "queue_bytes", "not a decimal");
        expect_error("[limits]\nqueue_bytes = 10\n", "t.conf:2", "queue_bytes", "out of range");
        expect_error("[limits]\nqueue_bytes = 99999999999999999999999\n", "t.conf:2", "queue_bytes",
                     "too large");
        expect_error("[limits]\ntail_max = 4X\n", "t.conf:2", "tail_max", "bad unit");
        expect_error("[limits]\nconns_per_uid = 4K\n", "t.conf:2", "conns_per_uid", "not a decimal");
        expect_error("[limits]\nqueue_soft_seconds = 0\n", "t.conf:2", "queue_soft_seconds", "out of range");
        expect_error("[limits]\nqueue_bytes = 64K\n\nqueue_soft_bytes = 1M\n", "t.conf:4", "queue_soft_bytes",
                     "larger than queue_bytes");
        expect_error("[daemon]\nsocket_mode = 0999\n", "t.conf:2", "socket_mode", "octal");
        expect_error("[daemon]\nsocket_mode = 4755\n", "t.conf:2", "socket_mode", "permission bits");
        expect_error("[daemon]\nsocket = relative.sock\n", "t.conf:2", "socket", "absolute");
        expect_error("[daemon]\ntrigger_dir = \n", "t.conf:2", "trigger_dir", "empty");
        expect_error("[daemon]\naudit = syslog\n", "t.conf:2", "audit", "journal, stderr or file:");
        expect_error("[daemon]\naudit = file:log.txt\n", "t.conf:2", "audit", "absolute");
        expect_error("[daemon]\nsocket_group = no-such-group-xyz\n", "t.conf:2", "socket_group",
                     "unknown group");
        expect_error("[uid:1000]\ncaps = roster,telepathy\n", "t.conf:2", "caps", "bad capability");
        expect_error("[uid:1000]\ncaps =\n", "t.conf:2", "caps", "empty");
        expect_error("[uid:1000]\ncaps = all\nother = 1\n", "t.conf:3", "other", "unknown key");
        expect_error("[uid:1000]\ncaps = all\ncaps = none\n", "t.conf:3", "caps", "duplicate");
        expect_error("[daemon]\n[uid:1000]\n[limits]\n", "t.conf:2", "[uid:1000]", "without a caps key");
        expect_error("[user:no-such-user-xyz]\ncaps = all\n", "t.conf:1", "[user:no-such-user-xyz]",
                     "unknown user");
        expect_error("[group:no-such-group-xyz]\ncaps = all\n", "t.conf:1", "[group:no-such-group-xyz]",
                     "unknown group");
        expect_error("[uid:a b]\ncaps = all\n", "t.conf:1", "[uid:a b]", "bad user");
        expect_error("[uid:4294967295]\ncaps = all\n", "t.conf:1", "[uid:4294967295]", "bad user");
        expect_error("[uid:0]\ncaps = all\n[user:root]\ncaps = all\n", "t.conf:3", "[user:root]",
                     "same uid 0 as [uid:0] on line 1");
        expect_error("[daemon]\n[limits]\n[daemon]\n", "t.conf:3", "[daemon]", "duplicate section");
        expect_error("socket = /a\n", "t.conf:1", "socket", "outside");
        expect_error("[daemon]\nsocket /a\n", "t.conf:2", "(line)", "syntax error");
        expect_error("[daemon\nsocket = /a\n", "t.conf:1", "(line)", "syntax error");
        expect_error("[daemon]\nsocket = /a\n  continued\n", "t.conf:3", "(line)", "indented");
        /* The first error wins, even when it's a syntax error before ours. */
        expect_error("[daemon]\nsocket /a\nbogus = 1\n", "t.conf:2", "(line)", "syntax error");

        memset(longline, 'a', sizeof(longline));
        memcpy(longline, "[daemon]\nsocket = /", 19);
        longline[sizeof(longline) - 1] = '\0';
        expect_error(longline, "t.conf:2", "(line)", "too long");

        {
                static const char nul[] = "[daemon]\nsocket = /a\0b\n";
                struct config *c = NULL;
                char err[256] = "";
                assert_int_equal(config_parse_string(nul, sizeof(nul) - 1, "n.conf", 0, &c, err, sizeof(err)),
                                 -EINVAL);
                assert_non_null(strstr(err, "n.conf:2"));
                assert_non_null(strstr(err, "NUL"));
        }
}

static void test_load_file(void **state)
{
        char path[] = "/tmp/vmsig-conf-XXXXXX";
        const char *text = "[daemon]\nsocket = /run/t.sock\n[limits]\nbad_key = 1\n";
        struct config *c = NULL;
        char err[512] = "";
        int fd = mkstemp(path);

        assert_true(fd >= 0);
        assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
        close(fd);
        assert_int_equal(config_load(path, CONFIG_MISSING_OK, &c, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, path));
        assert_non_null(strstr(err, ":4: bad_key: unknown key"));
        unlink(path);
}

static void test_no_nss(void **state)
{
        struct config *c = NULL;
        char err[256] = "";
        const char *t = "[user:root]\ncaps = all\n";

        assert_int_equal(config_parse_string(t, strlen(t), "f", CONFIG_NO_NSS, &c, err, sizeof(err)),
                         -EINVAL);
        assert_non_null(strstr(err, "unknown user"));
        t = "[uid:0]\ncaps = all\n";
        assert_int_equal(config_parse_string(t, strlen(t), "f", CONFIG_NO_NSS, &c, err, sizeof(err)), 0);
        config_free(c);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_defaults_no_file),
            cmocka_unit_test(test_shipped_config_is_defaults),
            cmocka_unit_test(test_full),
            cmocka_unit_test(test_root_rule_replaces_implicit),
            cmocka_unit_test(test_errors),
            cmocka_unit_test(test_libvirt_keys),
            cmocka_unit_test(test_load_file),
            cmocka_unit_test(test_no_nss),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
