/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "daemon/trigger.h"

static int parse(const char *text, struct trigger *t, char *err, size_t errlen)
{
        return trigger_parse(text, strlen(text), "vm1.vm", t, err, errlen);
}

/* The error names the file, the line (when there is one) and the field. */
static void expect_error(const char *text, const char *where, const char *field, const char *what)
{
        struct trigger t;
        char err[512] = "";
        int r = parse(text, &t, err, sizeof(err));

        if (r == 0 || !strstr(err, where) || !strstr(err, field) || (what && !strstr(err, what)))
                fail_msg("input:\n%s\nerror: '%s' (r=%d), want '%s' '%s' '%s'", text, err, r, where, field,
                         what ? what : "");
}

static void test_minimal_qemu(void **state)
{
        struct trigger t;
        char err[256] = "";
        const char *text = "# written by the libvirt hook\n"
                           "\n"
                           "name=win10\n"
                           "qmp=/run/vmsig/qmp/win10.sock\n"
                           "  ram = /dev/shm/win10.ram  \n"
                           "input=uinput\n"
                           "vmhost_options=retry_ms=30,retry_max_ms=0x100\n";

        assert_int_equal(parse(text, &t, err, sizeof(err)), 0);
        assert_string_equal(t.name, "win10");
        assert_int_equal(t.driver, TRIGGER_DRIVER_QEMU);
        assert_string_equal(t.qmp, "/run/vmsig/qmp/win10.sock");
        assert_string_equal(t.ram, "/dev/shm/win10.ram");
        assert_string_equal(t.input, "uinput");
        assert_string_equal(t.vmhost_options, "retry_ms=30,retry_max_ms=0x100");
        assert_string_equal(t.memctx_options, "");
}

static void test_stub_no_paths(void **state)
{
        struct trigger t;
        char err[256] = "";
        struct vmsig_adapter_cfg cfg;

        assert_int_equal(parse("name=s1\ndriver=stub\nmemctx_options=fail_boots=3", &t, err, sizeof(err)), 0);
        assert_int_equal(t.driver, TRIGGER_DRIVER_STUB);
        assert_string_equal(t.memctx_options, "fail_boots=3");
        trigger_adapter_cfg(&t, VMSIG_SRC_MEMCTX, &cfg);
        assert_string_equal(cfg.vm_name, "s1");
        assert_null(cfg.qmp_path);
        assert_null(cfg.ram_path);
        assert_string_equal(cfg.options, "fail_boots=3");
        trigger_adapter_cfg(&t, VMSIG_SRC_INPUT, &cfg);
        assert_null(cfg.options);
        assert_string_equal(trigger_driver_name(t.driver), "stub");
        /* a seam the registry does not have gets no options */
        trigger_adapter_cfg(&t, VMSIG_SRC_MAX_, &cfg);
        assert_null(cfg.options);
        assert_string_equal(trigger_driver_name((enum trigger_driver)VM_DRIVER_COUNT), "?");
}

static void test_errors(void **state)
{
        char big[TRIGGER_FILE_MAX + 16];
        char longline[TRIGGER_LINE_MAX + 40];

        expect_error("name=a\nqmp=/q\nram=/r\nbogus=1\n", "vm1.vm:4", "bogus", "unknown key");
        expect_error("name=a\nname=b\nqmp=/q\nram=/r\n", "vm1.vm:2", "name",
                     "duplicate key (first set on line 1)");
        expect_error("qmp=/q\nram=/r\n", "vm1.vm", "name", "required");
        expect_error("name=a\nram=/r\n", "vm1.vm", "qmp", "required");
        /* ram= is optional: without it the memctx adapter asks QEMU (qom-get mem-path) */
        {
                struct trigger t;
                char err[256];
                assert_int_equal(trigger_parse("name=a\nqmp=/q\n", 14, "vm1.vm", &t, err, sizeof(err)), 0);
                assert_string_equal(t.ram, "");
        }
        expect_error("name=a b\n", "vm1.vm:1", "name", "invalid character");
        expect_error("name=\n", "vm1.vm:1", "name", "empty");
        expect_error("name=.hidden\n", "vm1.vm:1", "name", "must not start");
        expect_error("name=0123456789012345678901234567890123456789012345678901234567890123\n", "vm1.vm:1",
                     "name", "too long");
        expect_error("name=a\ndriver=xen\n", "vm1.vm:2", "driver", "unknown driver");
        expect_error("name=a\nqmp=run/q.sock\nram=/r\n", "vm1.vm:2", "qmp", "not an absolute path");
        expect_error("name=a\nqmp=/q\nram=dev/shm/r\n", "vm1.vm:3", "ram", "not an absolute path");
        expect_error(
            "name=a\nqmp=/"
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
            "aaaaaaaaaaaaaaaaaaaaaaaaaa\n",
            "vm1.vm:2", "qmp", "unix socket");
        expect_error("name=a\ndriver=stub\nmemctx_options=fail_boots\n", "vm1.vm:3", "memctx_options",
                     "expected key=value");
        expect_error("name=a\ndriver=stub\ninput_options=a=1,\n", "vm1.vm:3", "input_options", "trailing");
        expect_error("name=a\ndriver=stub\nvmhost_options=a=1 2\n", "vm1.vm:3", "vmhost_options", "blank");
        expect_error("name=a\njust words\n", "vm1.vm:2", "(line)", "expected key=value");
        expect_error("name=a\n=x\n", "vm1.vm:2", "(line)", "empty key");
        expect_error("name=a\x01\n", "vm1.vm:1", "name", "control character");
        expect_error("name=a\r\nqmp=/q\r\nram=/r\r\n", "vm1.vm:1", "name", "control character");

        memset(longline, 'x', sizeof(longline));
        memcpy(longline, "input=", 6);
        longline[sizeof(longline) - 1] = '\0';
        expect_error(longline, "vm1.vm:1", "(line)", "too long");

        /* NUL bytes: strlen() can't carry them, call the parser directly. */
        {
                static const char nul[] = "name=a\nqmp=/q\0x\nram=/r\n";
                struct trigger t;
                char err[256] = "";
                assert_int_equal(trigger_parse(nul, sizeof(nul) - 1, "n.vm", &t, err, sizeof(err)), -EINVAL);
                assert_non_null(strstr(err, "n.vm:2"));
                assert_non_null(strstr(err, "NUL"));
        }
        /* Too large. */
        {
                struct trigger t;
                char err[256] = "";
                memset(big, '#', sizeof(big));
                assert_int_equal(trigger_parse(big, sizeof(big), "big.vm", &t, err, sizeof(err)), -EFBIG);
                assert_non_null(strstr(err, "big.vm"));
                assert_non_null(strstr(err, "file"));
                assert_non_null(strstr(err, "too large"));
        }
        /* A hostile file name doesn't put a newline into the message. */
        {
                struct trigger t;
                char err[256] = "";
                assert_int_equal(trigger_parse("x", 1, "evil\nname", &t, err, sizeof(err)), -EINVAL);
                assert_null(strchr(err, '\n'));
                assert_non_null(strstr(err, "evil\\x0aname:1"));
                assert_int_equal(trigger_parse("x", 1, "\x1b[2J\\\xc2\x9b", &t, err, sizeof(err)), -EINVAL);
                assert_null(strchr(err, 0x1b));
                assert_non_null(strstr(err, "\\x1b[2J\\\\\\xc2\\x9b:1"));
        }
}

/* Adapter options are checked whole-file, per driver, naming FILE:LINE: KEY. */
static void test_adapter_options(void **state)
{
        static const struct {
                const char *text, *where, *what;
        } bad[] = {
            {"name=a\ndriver=stub\nmemctx_options=fail_bootz=1\n", "vm1.vm:3: memctx_options",
             "fail_bootz: unknown"},
            {"name=a\nmemctx_options=ram_mib=2048\ndriver=stub\n", "vm1.vm:2: memctx_options",
             "ram_mib: 2048 is out"},
            {"name=a\ndriver=stub\nmemctx_options=ram_mib=10\n", "vm1.vm:3: memctx_options", "multiple of 4"},
            {"name=a\ndriver=stub\nmemctx_options=retry_ms=x\n", "vm1.vm:3: memctx_options", "not a number"},
            {"name=a\ndriver=stub\nvmhost_options=state=gone\n", "vm1.vm:3: vmhost_options", "state: 'gone'"},
            {"name=a\ndriver=stub\nvmhost_options=state=paused,state=running\n", "vm1.vm:3: vmhost_options",
             "twice"},
            {"name=a\ndriver=stub\ninput_options=uinput=/x\n", "vm1.vm:3: input_options", "uinput: unknown"},
            {"name=a\nqmp=/q\nram=/r\nvmhost_options=powerdown_timeout=60\n", "vm1.vm:4: vmhost_options",
             "powerdown_timeout: unknown"},
            {"name=a\nqmp=/q\nram=/r\nmemctx_options=retry_ms=5000\n", "vm1.vm:4: memctx_options",
             "retry_max_ms (2000) is below"},
            {"name=a\nqmp=/q\nram=/r\ninput_options=uinput=rel\n", "vm1.vm:4: input_options", "absolute"},
            {"name=a\nqmp=/q\nram=/r\nmemctx_options=os=\xc3\xa9\n", "vm1.vm:4: memctx_options",
             "'\\xc3\\xa9'"},
        };
        static const char *const good[] = {
            "name=a\ndriver=stub\nmemctx_options=ram_mib=16,fail_boots=3,retry_ms=50\n",
            "name=a\ndriver=stub\nvmhost_options=state=paused,powerdown_ms=10\ninput_options=record=/tmp/x\n",
            "name=a\nqmp=/q\nram=/r\nmemctx_options=os=linux,retry_ms=5000,retry_max_ms=5000\n",
            "name=a\nqmp=/q\nram=/r\ninput_options=uinput=/run/u.sock\nvmhost_options=retry_max_ms=100\n",
        };
        struct trigger t;
        char err[512];

        (void)state;
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                err[0] = '\0';
                if (parse(bad[i].text, &t, err, sizeof(err)) != -EINVAL)
                        fail_msg("case %zu parsed", i);
                if (!strstr(err, bad[i].where) || !strstr(err, bad[i].what))
                        fail_msg("case %zu: '%s'", i, err);
        }
        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
                if (parse(good[i], &t, err, sizeof(err)) != 0)
                        fail_msg("good case %zu: '%s'", i, err);
}

/* The drivers and option keys are the registry's; the options of each
 * (driver, seam) are checked with that adapter's own spec. */
static void test_registry_keys(void **state)
{
        size_t n;
        const struct seam_def *seams = seam_registry(&n);
        char text[512], err[512];
        struct trigger t;

        (void)state;
        expect_error("name=a\ndriver=xen\n", "vm1.vm:2", "driver", "unknown driver (expected qemu or stub)");
        expect_error("name=a\ndriver=stub\ncore_options=x=1\n", "vm1.vm:3", "core_options", "unknown key");
        for (size_t i = 0; i < n; i++) {
                snprintf(text, sizeof(text), "name=a\ndriver=stub\n%s=nosuchkey=1\n", seams[i].options_key);
                assert_int_equal(parse(text, &t, err, sizeof(err)), -EINVAL);
                assert_non_null(strstr(err, seams[i].options_key));
                assert_non_null(strstr(err, "nosuchkey: unknown option for the stub "));
                const struct adapter_desc *ad = seams[i].adapter[VM_DRIVER_STUB];
                if (ad->n_opts == 0)
                        continue;
                /* the first key with its default (or a valid string) passes */
                const struct opt_spec *o = &ad->opts[0];
                char val[32];
                if (o->type == OPT_U64)
                        snprintf(val, sizeof(val), "%llu", (unsigned long long)o->def);
                else if (o->type == OPT_WORD)
                        snprintf(val, sizeof(val), "%.*s", (int)strcspn(o->words, "|"), o->words);
                else
                        snprintf(val, sizeof(val), "/tmp/x");
                snprintf(text, sizeof(text), "name=a\ndriver=stub\n%s=%s=%s\n", seams[i].options_key, o->key,
                         val);
                if (parse(text, &t, err, sizeof(err)) != 0)
                        fail_msg("%s: %s", text, err);
                assert_int_equal(strncmp(t.options[seams[i].seam], o->key, strlen(o->key)), 0);
        }
}

/* The parser and the stub adapters' open() agree on what they accept. */
static void test_options_match_stub_adapters(void **state)
{
        static const char *const opts[][3] = {
            {"ram_mib=16", "ram_mib=10", "ram_mib=2048"},
            {"fail_boots=0x10", "fail_boots=-1", "nope=1"},
            {"retry_ms=60000", "retry_ms=0", "retry_ms=1,retry_ms=2"},
            {"ram_mib=8,retry_ms=1", "ram_mib=", "x"},
        };
        static const char *const vopts[][3] = {
            {"state=shutdown", "state=off", "powerdown_ms=0"},
            {"powerdown_ms=600000", "powerdown_ms=600001", "s=1"},
        };
        char text[512], err[512];
        struct trigger t;

        (void)state;
        for (int seam = 0; seam < 2; seam++) {
                size_t n = seam == 0 ? sizeof(opts) / sizeof(opts[0]) : sizeof(vopts) / sizeof(vopts[0]);
                for (size_t i = 0; i < n; i++)
                        for (int j = 0; j < 3; j++) {
                                const char *o = seam == 0 ? opts[i][j] : vopts[i][j];
                                const struct vmsig_adapter_ops *ops =
                                    seam == 0 ? vmsig_memctx_stub_ops() : vmsig_vmhost_stub_ops();
                                struct vmsig_adapter_cfg cfg = {.vm_name = "a", .options = o};
                                void *inst = NULL;
                                int ra = ops->open(&cfg, 1, &inst);
                                if (ra == 0)
                                        ops->close(inst);
                                snprintf(text, sizeof(text), "name=a\ndriver=stub\n%s_options=%s\n",
                                         seam == 0 ? "memctx" : "vmhost", o);
                                int rp = parse(text, &t, err, sizeof(err));
                                /* "x" and "ram_mib=" are refused by the syntax check already */
                                if ((ra == 0) != (rp == 0))
                                        fail_msg("'%s': adapter %d, parser %d (%s)", o, ra, rp, err);
                        }
        }
}

/* The same for the real QEMU adapters: open() connects nothing yet. */
static void test_options_match_qemu_adapters(void **state)
{
        static const struct {
                const char *key; /* trigger key */
                const struct vmsig_adapter_ops *(*ops)(void);
                const char *opt;
        } cases[] = {
            {"vmhost", vmsig_vmhost_ops, "cmd_timeout_ms=10"},
            {"vmhost", vmsig_vmhost_ops, "cmd_timeout_ms=9"},
            {"vmhost", vmsig_vmhost_ops, "cmd_timeout_ms=600001"},
            {"vmhost", vmsig_vmhost_ops, "retry_ms=100,retry_max_ms=50"},
            {"vmhost", vmsig_vmhost_ops, "powerdown_timeout=60"},
            {"input", vmsig_input_ops, "cmd_timeout_ms=250,retry_ms=5"},
            {"input", vmsig_input_ops, "cmd_timeout_ms=+250"},
            {"memctx", vmsig_memctx_ops, "os=windows,retry_max_ms=600000"},
            {"memctx", vmsig_memctx_ops, "os=bsd"},
            {"memctx", vmsig_memctx_ops, "cmd_timeout_ms=100"},
        };
        char text[512], err[512];
        struct trigger t;

        (void)state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                const struct vmsig_adapter_ops *ops = cases[i].ops();
                if (!ops)
                        skip(); /* a stub-only build has no real adapters */
                struct vmsig_adapter_cfg cfg = {.vm_name = "a",
                                                .qmp_path = "/nonexistent/q",
                                                .ram_path = "/nonexistent/r",
                                                .options = cases[i].opt};
                void *inst = NULL;
                int ra = ops->open(&cfg, 1, &inst);
                if (ra == 0)
                        ops->close(inst);
                snprintf(text, sizeof(text), "name=a\nqmp=/q\nram=/r\n%s_options=%s\n", cases[i].key,
                         cases[i].opt);
                int rp = parse(text, &t, err, sizeof(err));
                if ((ra == 0) != (rp == 0))
                        fail_msg("%s '%s': adapter %d, parser %d (%s)", cases[i].key, cases[i].opt, ra, rp,
                                 err);
        }
}

static void test_last_line_no_newline_and_blanks(void **state)
{
        struct trigger t;
        char err[256] = "";

        assert_int_equal(parse("\t# c\n \t\nname=a\ndriver = stub", &t, err, sizeof(err)), 0);
        assert_string_equal(t.name, "a");
        /* '#' only starts a comment at the line start: here it is data. */
        assert_int_equal(parse("name=a\ndriver=stub\ninput=x#y", &t, err, sizeof(err)), 0);
        assert_string_equal(t.input, "x#y");
}

static void test_ignored_names(void **state)
{
        assert_true(trigger_filename_ignored(".win10.vm"));
        assert_true(trigger_filename_ignored("win10.vm.tmp"));
        assert_true(trigger_filename_ignored("win10.vm~"));
        assert_true(trigger_filename_ignored(""));
        assert_true(trigger_filename_ignored("a/b"));
        assert_false(trigger_filename_ignored("win10.vm"));
        assert_false(trigger_filename_ignored("tmp"));
}

static char tmpdir[64];

static void write_file(int dfd, const char *name, const char *text, mode_t mode)
{
        int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
        assert_int_equal(fchmod(fd, mode), 0);
        close(fd);
}

static void test_load(void **state)
{
        struct trigger t;
        struct stat st;
        char err[512];
        int dfd;

        snprintf(tmpdir, sizeof(tmpdir), "/tmp/vmsig-trig-XXXXXX");
        assert_non_null(mkdtemp(tmpdir));
        dfd = open(tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(dfd >= 0);

        write_file(dfd, "ok.vm", "name=ok\ndriver=stub\n", 0644);
        assert_int_equal(trigger_load(dfd, "ok.vm", &t, &st, err, sizeof(err)), 0);
        assert_string_equal(t.name, "ok");
        assert_true(S_ISREG(st.st_mode));

        assert_int_equal(symlinkat("ok.vm", dfd, "link.vm"), 0);
        assert_int_equal(trigger_load(dfd, "link.vm", &t, NULL, err, sizeof(err)), -ELOOP);
        assert_non_null(strstr(err, "link.vm"));

        assert_int_equal(mkfifoat(dfd, "fifo.vm", 0600), 0);
        assert_int_equal(trigger_load(dfd, "fifo.vm", &t, NULL, err, sizeof(err)), -EBADFD);
        assert_non_null(strstr(err, "fifo.vm: file: not a regular file"));

        assert_int_equal(mkdirat(dfd, "dir.vm", 0700), 0);
        assert_true(trigger_load(dfd, "dir.vm", &t, NULL, err, sizeof(err)) < 0);

        write_file(dfd, "gw.vm", "name=gw\ndriver=stub\n", 0664);
        assert_int_equal(trigger_load(dfd, "gw.vm", &t, NULL, err, sizeof(err)), -EPERM);
        assert_non_null(strstr(err, "writable"));

        write_file(dfd, "bad.vm", "name=bad\ndriver=stub\nfoo=1\n", 0644);
        assert_int_equal(trigger_load(dfd, "bad.vm", &t, NULL, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "bad.vm:3: foo: unknown key"));

        {
                char big[TRIGGER_FILE_MAX + 100];
                memset(big, '#', sizeof(big) - 1);
                big[sizeof(big) - 1] = '\0';
                write_file(dfd, "big.vm", big, 0644);
                assert_int_equal(trigger_load(dfd, "big.vm", &t, NULL, err, sizeof(err)), -EFBIG);
        }

        assert_int_equal(trigger_load(dfd, "gone.vm", &t, NULL, err, sizeof(err)), -ENOENT);
        assert_int_equal(trigger_load(dfd, ".ok.vm.tmp", &t, NULL, err, sizeof(err)), -EAGAIN);

        {
                const char *names[] = {"ok.vm", "link.vm", "fifo.vm", "gw.vm", "bad.vm", "big.vm"};
                for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
                        unlinkat(dfd, names[i], 0);
                unlinkat(dfd, "dir.vm", AT_REMOVEDIR);
        }
        close(dfd);
        assert_int_equal(rmdir(tmpdir), 0);
}

static void test_equal(void **state)
{
        struct trigger a, b;
        char err[128];

        assert_int_equal(parse("name=a\ndriver=stub\n", &a, err, sizeof(err)), 0);
        assert_int_equal(parse("driver=stub\nname=a\n", &b, err, sizeof(err)), 0);
        assert_true(trigger_equal(&a, &b));
        assert_int_equal(parse("driver=stub\nname=a\ninput=x\n", &b, err, sizeof(err)), 0);
        assert_false(trigger_equal(&a, &b));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_adapter_options),
            cmocka_unit_test(test_registry_keys),
            cmocka_unit_test(test_options_match_stub_adapters),
            cmocka_unit_test(test_options_match_qemu_adapters),
            cmocka_unit_test(test_minimal_qemu),
            cmocka_unit_test(test_stub_no_paths),
            cmocka_unit_test(test_errors),
            cmocka_unit_test(test_last_line_no_newline_and_blanks),
            cmocka_unit_test(test_ignored_names),
            cmocka_unit_test(test_load),
            cmocka_unit_test(test_equal),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
