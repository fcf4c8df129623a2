/* SPDX-License-Identifier: MIT */
/* A VM whose QEMU is not up yet (its QMP socket is absent, or refuses) is
 * "starting", not "gone" (issue 12): against the real vmsigd and vmsigctl,
 * no QEMU needed. `vmsigctl read` says why there is no memory context. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include <sys/socket.h>
#include <sys/un.h>

#include "daemon/vmsigd_harness.h"
#include "test_disco_util.h"

static struct vh H;

/* The STATE column (4th) of name's `vmsigctl list` line. */
static bool list_state(const char *name, char *state, size_t len)
{
        char out[16384];

        state[0] = '\0';
        if (vh_vmsigctl(&H, -1, out, sizeof(out), "list", (char *)NULL) != 0)
                return false;
        for (char *l = out; *l;) {
                char *eol = strchrnul(l, '\n');
                char id[16], vm[128], seams[64], st[32];
                if (sscanf(l, "%15s %127s %63s %31s", id, vm, seams, st) == 4 && strcmp(vm, name) == 0) {
                        snprintf(state, len, "%s", st);
                        return true;
                }
                l = *eol ? eol + 1 : eol;
        }
        return false;
}

static bool wait_state(const char *name, const char *want, int timeout_ms)
{
        uint64_t deadline = vh_now_ms() + (uint64_t)timeout_ms;
        char st[32];

        for (;;) {
                if (list_state(name, st, sizeof(st)) && strcmp(st, want) == 0)
                        return true;
                if (!vh_left(deadline)) {
                        fprintf(stderr, "%s is '%s', not '%s'\n", name, st, want);
                        return false;
                }
                struct timespec ts = {0, 50000000};
                nanosleep(&ts, NULL);
        }
}

static void test_no_socket_is_starting(void **state)
{
        char text[512], out[4096];

        (void)state;
        snprintf(text, sizeof(text), "name=early\ndriver=qemu\nqmp=%s/early.qmp\nram=/dev/shm/early-ram\n",
                 H.dir);
        assert_int_equal(dz_put(H.trig, "early.vm", text), 0);
        if (!wait_state("early", "starting", VH_TIMEOUT_MS)) {
                vh_dump_log(&H);
                fail_msg("a VM whose QMP socket does not exist yet is not listed as starting");
        }
        /* and it stays so across the session's retries */
        struct timespec ts = {1, 0};
        nanosleep(&ts, NULL);
        assert_true(wait_state("early", "starting", 0));

        assert_int_not_equal(
            vh_vmsigctl(&H, -1, out, sizeof(out), "read", "early", "0x1000", "16", (char *)NULL), 0);
        printf("# read: %s", out);
        assert_non_null(strstr(out, "QEMU not up yet"));
        assert_null(strstr(out, "still booting"));
}

/* A socket that exists but refuses (nobody listens): still starting. */
static void test_refusing_socket_is_starting(void **state)
{
        char text[512], path[256];
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        int fd;

        (void)state;
        snprintf(path, sizeof(path), "%s/dead.qmp", H.dir);
        snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
        close(fd); /* bound, never listening: connect() is refused */
        snprintf(text, sizeof(text), "name=dead\ndriver=qemu\nqmp=%s\nram=/dev/shm/dead-ram\n", path);
        assert_int_equal(dz_put(H.trig, "dead.vm", text), 0);
        if (!wait_state("dead", "starting", VH_TIMEOUT_MS)) {
                vh_dump_log(&H);
                fail_msg("a VM whose QMP socket refuses is not listed as starting");
        }
        unlink(path);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            vh_unit_test(test_no_socket_is_starting, &H),
            vh_unit_test(test_refusing_socket_is_starting, &H),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
