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

#include "daemon/audit.h"

static const struct vmsig_audit_record deny = {
    .what = VMSIG_AUDIT_DENY,
    .control_id = 3,
    .control_name = "vmsigctl",
    .uid = 1000,
    .pid = 4242,
    .endpoint = 1,
    .kind = VMSIG_EV_CMD_POWER,
    .corr = 77,
    .result = -EPERM,
    .reason = "no power lease",
};

static void test_format(void **state)
{
        char line[AUDIT_LINE_MAX];
        size_t n = audit_format(&deny, line, sizeof(line));

        assert_int_equal(n, strlen(line));
        assert_string_equal(line, "vmsig-audit what=deny uid=1000 pid=4242 control=3 name=\"vmsigctl\" "
                                  "endpoint=1 kind=CMD_POWER corr=77 result=-1 err=EPERM "
                                  "reason=\"no power lease\"\n");
}

static void test_format_escapes_and_truncates(void **state)
{
        struct vmsig_audit_record r = deny;
        char line[AUDIT_LINE_MAX];
        char big[4000];
        size_t n;

        r.what = VMSIG_AUDIT_RESULT;
        r.result = 0;
        r.control_name = "evil\"\n\\name";
        r.reason = NULL;
        audit_format(&r, line, sizeof(line));
        assert_non_null(strstr(line, "what=result"));
        assert_non_null(strstr(line, "name=\"evil\\\"\\x0a\\\\name\""));
        assert_non_null(strstr(line, "result=0 reason=\"\"\n"));
        assert_null(strstr(line, "err="));
        assert_int_equal(strchr(line, '\n') - line, (long)strlen(line) - 1);

        memset(big, 'x', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        r.reason = big;
        n = audit_format(&r, line, 200);
        assert_int_equal(n, 199);
        assert_int_equal(line[198], '\n');
        assert_int_equal(strlen(line), 199);
}

static void test_file_mode(void **state)
{
        char dir[] = "/tmp/vmsig-audit-XXXXXX";
        char path[128], spec[160], buf[4096];
        struct audit *a = NULL;
        struct vmsig_audit_record r = deny;
        struct stat st;
        ssize_t n;
        int fd;

        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/audit.log", dir);
        snprintf(spec, sizeof(spec), "file:%s", path);
        assert_int_equal(audit_open(spec, &a), 0);
        assert_int_equal(audit_write(a, &r), 0);
        r.what = VMSIG_AUDIT_LEASE;
        r.kind = VMSIG_EV_LEASE_ACQUIRE;
        r.result = 0;
        r.reason = "granted input lease";
        assert_int_equal(audit_write(a, &r), 0);
        audit_bus_fn(&r, a);
        assert_int_equal(audit_errors(a), 0);

        /* rotation: the old file is moved away, reopen starts a new one */
        {
                char old[160];
                snprintf(old, sizeof(old), "%s.1", path);
                assert_int_equal(rename(path, old), 0);
                assert_int_equal(audit_reopen(a), 0);
                assert_int_equal(audit_write(a, &r), 0);
                assert_int_equal(stat(path, &st), 0);
                assert_true(st.st_size > 0);
                unlink(old);
        }
        a = audit_free(a);
        assert_null(a);

        fd = open(path, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        assert_true(n > 0);
        buf[n] = '\0';
        assert_string_equal(buf, "vmsig-audit what=lease uid=1000 pid=4242 control=3 name=\"vmsigctl\" "
                                 "endpoint=1 kind=LEASE_ACQUIRE corr=77 result=0 "
                                 "reason=\"granted input lease\"\n");
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 0777 & ~0640, 0); /* umask may only narrow it */

        /* appending to the existing file */
        assert_int_equal(audit_open(spec, &a), 0);
        assert_int_equal(audit_write(a, &deny), 0);
        audit_free(a);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        assert_true(n > 0);
        buf[n] = '\0';
        assert_non_null(strstr(buf, "reason=\"granted input lease\"\nvmsig-audit what=deny "));
        assert_int_equal(buf[n - 1], '\n');
        unlink(path);
        rmdir(dir);
}

static void test_journal_prefix(void **state)
{
        struct audit *a = NULL;
        struct vmsig_audit_record r = deny;
        int pfd[2], saved;
        char buf[2048];
        ssize_t n;

        assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
        saved = dup(STDERR_FILENO);
        assert_true(saved >= 0);
        assert_int_equal(dup2(pfd[1], STDERR_FILENO), STDERR_FILENO);

        assert_int_equal(audit_open("journal", &a), 0);
        assert_int_equal(audit_write(a, &r), 0);
        r.what = VMSIG_AUDIT_COMMAND;
        assert_int_equal(audit_write(a, &r), 0);
        audit_free(a);
        assert_int_equal(audit_open("stderr", &a), 0);
        assert_int_equal(audit_write(a, &r), 0);
        audit_free(a);

        assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
        close(saved);
        close(pfd[1]);
        n = read(pfd[0], buf, sizeof(buf) - 1);
        close(pfd[0]);
        assert_true(n > 0);
        buf[n] = '\0';
        assert_memory_equal(buf, "<4>vmsig-audit what=deny ", 25);
        {
                char *second = strchr(buf, '\n') + 1;
                char *third;
                assert_memory_equal(second, "<5>vmsig-audit what=command ", 28);
                third = strchr(second, '\n') + 1;
                assert_memory_equal(third, "vmsig-audit what=command ", 25);
        }
}

static void test_bad_spec(void **state)
{
        struct audit *a = NULL;

        assert_int_equal(audit_open("syslog", &a), -EINVAL);
        assert_int_equal(audit_open("file:relative", &a), -EINVAL);
        assert_int_equal(audit_open(NULL, &a), -EINVAL);
        assert_int_equal(audit_open("file:/nonexistent-dir/x/audit.log", &a), -ENOENT);
        assert_null(a);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_format),    cmocka_unit_test(test_format_escapes_and_truncates),
            cmocka_unit_test(test_file_mode), cmocka_unit_test(test_journal_prefix),
            cmocka_unit_test(test_bad_spec),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
