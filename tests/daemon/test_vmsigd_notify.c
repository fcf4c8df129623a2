/* SPDX-License-Identifier: MIT */
/* systemd readiness without systemd: vmsigd gets a NOTIFY_SOCKET of ours.
 * READY=1 must come only once the socket accepts connections and the
 * trigger directory is watched; SIGTERM must bring STOPPING=1 and exit 0. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include <sys/wait.h>

#include "vmsigd_harness.h"

static int recv_notify(int fd, char *buf, size_t len, int timeout_ms)
{
        struct pollfd p = {.fd = fd, .events = POLLIN};

        if (poll(&p, 1, timeout_ms) != 1)
                return -ETIMEDOUT;
        ssize_t n = recv(fd, buf, len - 1, 0);
        if (n < 0)
                return -errno;
        buf[n] = '\0';
        return 0;
}

static void test_ready_after_socket_and_watch(void **state)
{
        const char *bin = vh_bin("VMSIGD");
        char dir[] = "/tmp/vmsigd-it-XXXXXX", sock[256], trig[256], conf[256], notify[256], text[1024];
        char msg[512];

        assert_non_null(bin);
        assert_non_null(mkdtemp(dir));
        snprintf(sock, sizeof(sock), "%s/vmsigd.sock", dir);
        snprintf(trig, sizeof(trig), "%s/vms", dir); /* vmsigd creates it */
        snprintf(conf, sizeof(conf), "%s/vmsigd.conf", dir);
        snprintf(notify, sizeof(notify), "%s/notify", dir);
        snprintf(text, sizeof(text), "[daemon]\nsocket = %s\ntrigger_dir = %s\naudit = stderr\n", sock, trig);
        assert_int_equal(vh_write_file(conf, text, 0644), 0);

        int nfd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", notify);
        assert_true(nfd >= 0);
        assert_int_equal(bind(nfd, (struct sockaddr *)&sa, sizeof(sa)), 0);

        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                int null = open("/dev/null", O_WRONLY);
                dup2(null, 1);
                dup2(null, 2);
                setenv("NOTIFY_SOCKET", notify, 1);
                unsetenv("JOURNAL_STREAM");
                execl(bin, "vmsigd", "-c", conf, (char *)NULL);
                _exit(127);
        }
        assert_int_equal(recv_notify(nfd, msg, sizeof(msg), 10000), 0);
        assert_non_null(strstr(msg, "READY=1"));
        /* At READY=1 both must already be true. */
        struct stat st;
        assert_int_equal(stat(trig, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un ca = {.sun_family = AF_UNIX};
        snprintf(ca.sun_path, sizeof(ca.sun_path), "%s", sock);
        assert_int_equal(connect(c, (struct sockaddr *)&ca, sizeof(ca)), 0);
        close(c);

        assert_int_equal(kill(pid, SIGTERM), 0);
        assert_int_equal(recv_notify(nfd, msg, sizeof(msg), 10000), 0);
        assert_non_null(strstr(msg, "STOPPING=1"));
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        close(nfd);
        nftw(dir, vh_rm_cb_, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_ready_after_socket_and_watch),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
