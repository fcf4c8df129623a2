/* SPDX-License-Identifier: MIT */
/* vmsigd.service's sandbox costs no feature. Without systemd as PID 1 the
 * unit cannot run here, so tests/pkg/sandbox-exec.sh emulates what of it
 * decides access (capability bounding set, NoNewPrivileges, ProtectSystem=
 * strict, PrivateDevices, PrivateNetwork, ProtectProc, ProcSubset), reading
 * them from packaging/vmsigd.service. The real vmsigd runs inside it against
 * a real guest whose RAM file, QMP socket and directory belong to another
 * user with mode 0600 / 0700, as libvirt-qemu's do: memctx (read), power
 * (QMP), a memory write (RAM opened read-write), socket_group (chown) and
 * the audit file must all work. Then the same without CAP_DAC_OVERRIDE must
 * fail to open the RAM file: the emulation really removes capabilities. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include <grp.h>
#include <inttypes.h>

#include "daemon/vmsigd_harness.h"
#include "vm/vm_bus.h"
#include "vm/vm_guest.h"

#define QEMU_UID 65534 /* stands in for libvirt-qemu */

static struct vh H;
static struct vm_guest G = {.pid = -1};
static char wrapper[128];
static char real_vmsigd[512];
static char unit[512];

static int setup(void **state)
{
        const char *src = getenv("VMSIG_SOURCE_DIR");
        const char *bin = getenv("VMSIGD");

        if (vm_guest_load_env(&G) < 0 || !src || !bin) {
                fprintf(stderr,
                        "VMSIG_GUEST_DIR/VMSIG_QEMU/VMSIG_SOURCE_DIR/VMSIGD not set: run through ctest\n");
                return -1;
        }
        snprintf(real_vmsigd, sizeof(real_vmsigd), "%s", bin);
        snprintf(unit, sizeof(unit), "%s/packaging/vmsigd.service", src);
        /* The harness runs "$VMSIGD -c DIR/vmsigd.conf": DIR plays
         * /run/vmsig and /var/log/vmsig, the writable paths of the unit. */
        snprintf(wrapper, sizeof(wrapper), "/tmp/vmsig-unit-sandbox-%d.sh", (int)getpid());
        char text[2048];
        snprintf(text, sizeof(text),
                 "#!/bin/sh\nexec sh '%s/tests/pkg/sandbox-exec.sh' '%s' \"$(dirname \"$2\")\" '%s' \"$@\"\n",
                 src, unit, real_vmsigd);
        if (vh_write_file(wrapper, text, 0755) < 0)
                return -1;
        setenv("VMSIGD", wrapper, 1);
        return 0;
}

static int teardown(void **state)
{
        vh_teardown(&H);
        vm_guest_stop(&G);
        unlink(wrapper);
        unsetenv("SANDBOX_CAPS");
        setenv("VMSIGD", real_vmsigd, 1);
        return 0;
}

/* The capability mask the unit's CapabilityBoundingSet= names. */
static uint64_t unit_caps(void)
{
        static const struct {
                const char *name;
                int bit;
        } known[] = {{"CAP_CHOWN", 0},      {"CAP_DAC_OVERRIDE", 1}, {"CAP_DAC_READ_SEARCH", 2},
                     {"CAP_FOWNER", 3},     {"CAP_KILL", 5},         {"CAP_SYS_PTRACE", 19},
                     {"CAP_SYS_ADMIN", 21}, {"CAP_SYS_RESOURCE", 24}};
        char *text = vh_read_file(unit), *line, *save = NULL;
        uint64_t mask = 0;

        assert_non_null(text);
        for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                if (strncmp(line, "CapabilityBoundingSet=", 22) != 0)
                        continue;
                mask = 0;
                char *tsave = NULL;
                for (char *w = strtok_r(line + 22, " ", &tsave); w; w = strtok_r(NULL, " ", &tsave)) {
                        size_t i = 0;
                        while (i < sizeof(known) / sizeof(known[0]) && strcmp(known[i].name, w) != 0)
                                i++;
                        if (i == sizeof(known) / sizeof(known[0]))
                                fail_msg("%s: capability %s is not in this test's table: add it", unit, w);
                        mask |= 1ull << known[i].bit;
                }
        }
        free(text);
        return mask;
}

/* CapEff/CapBnd/NoNewPrivs of a running process. */
static void proc_caps(pid_t pid, uint64_t *eff, uint64_t *bnd, int *nnp)
{
        char path[64], *text, *p;

        snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
        text = vh_read_file(path);
        assert_non_null(text);
        assert_non_null(p = strstr(text, "CapEff:"));
        *eff = strtoull(p + 7, NULL, 16);
        assert_non_null(p = strstr(text, "CapBnd:"));
        *bnd = strtoull(p + 7, NULL, 16);
        assert_non_null(p = strstr(text, "NoNewPrivs:"));
        *nnp = atoi(p + 11);
        free(text);
}

/* The guest's files, as libvirt leaves them: the QEMU user's, 0600/0700
 * (QEMU already runs as that user; the chowns make sure of the rest). */
static void give_to_qemu_user(void)
{
        assert_int_equal(chown(G.shm, QEMU_UID, QEMU_UID), 0);
        assert_int_equal(chmod(G.shm, 0600), 0);
        assert_int_equal(chown(G.qmp, QEMU_UID, QEMU_UID), 0);
        assert_int_equal(chmod(G.qmp, 0600), 0);
        assert_int_equal(chown(G.dir, QEMU_UID, QEMU_UID), 0);
        assert_int_equal(chmod(G.dir, 0700), 0);
}

static void write_trigger(const char *name)
{
        char tmp[512], path[512], text[1024];

        snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", H.trig, name);
        snprintf(path, sizeof(path), "%s/%s.vm", H.trig, name);
        snprintf(text, sizeof(text), "name=%s\ndriver=qemu\nqmp=%s\nram=%s\n", name, G.qmp, G.shm);
        assert_int_equal(vh_write_file(tmp, text, 0644), 0);
        assert_int_equal(rename(tmp, path), 0);
}

static void keep_memctx_fd(const struct vmsig_event *ev, int fd, void *ud)
{
        int *keep = ud;

        if (ev->hdr.kind == VMSIG_EV_MEMCTX && fd >= 0 && *keep < 0)
                *keep = fd;
        else if (fd >= 0)
                close(fd);
}

struct denied {
        bool seen;
        char msg[VMSIG_MSG_MAX];
};

static void note_diag(const struct vmsig_event *ev, int fd, void *ud)
{
        struct denied *d = ud;

        if (fd >= 0)
                close(fd);
        if (ev->hdr.kind != VMSIG_EV_DIAG)
                return;
        struct vmsig_diag_body b;
        memcpy(&b, ev->body, sizeof(b));
        b.msg[sizeof(b.msg) - 1] = '\0';
        if (strstr(b.msg, G.shm) && strstr(b.msg, strerror(EACCES))) {
                d->seen = true;
                snprintf(d->msg, sizeof(d->msg), "%s", b.msg);
        }
}

static void test_vmsigd_keeps_its_features_in_the_unit_sandbox(void **state)
{
        char out[8192], addr[32], uaddr[32];
        /* QEMU runs as "the QEMU user": vmsigd requires the RAM file to be
         * owned by the uid on the other end of the QMP socket. */
        struct vm_guest_opts o = {.mem = "256M", .uid = QEMU_UID};
        uint64_t banner = vm_symbol("linux_banner"), uts = vm_symbol("init_uts_ns");
        struct group *nog = getgrgid(QEMU_UID);
        struct stat st;

        if (geteuid() != 0) {
                printf("# SKIP: needs root (mount namespaces, capabilities, chown)\n");
                skip();
        }
        if (system("command -v unshare >/dev/null && command -v setpriv >/dev/null && "
                   "unshare --mount true 2>/dev/null") != 0) {
                printf("# SKIP: unshare/setpriv missing or mount namespaces not allowed\n");
                skip();
        }
        assert_non_null(nog);
        assert_true(banner != 0 && uts != 0);
        assert_int_equal(vm_guest_start(&G, "unitsbx", &o), 0);
        assert_int_equal(vm_guest_wait_serial(&G, "VMSIG-GUEST-READY", 60000), 0);
        give_to_qemu_user();

        /* socket_group: root is not in this group, chown needs CAP_CHOWN. */
        char extra[128];
        snprintf(extra, sizeof(extra), "socket_group = %u", (unsigned)QEMU_UID);
        assert_int_equal(vh_start(&H, extra), 0);
        assert_int_equal(stat(H.sock, &st), 0);
        assert_int_equal(st.st_gid, QEMU_UID);

        /* The daemon really runs with the unit's capabilities and nothing more. */
        uint64_t eff, bnd, want = unit_caps();
        int nnp;
        proc_caps(H.pid, &eff, &bnd, &nnp);
        printf("# vmsigd in the sandbox: CapEff %016" PRIx64 " CapBnd %016" PRIx64 " NoNewPrivs %d\n", eff,
               bnd, nnp);
        assert_true(eff == want);
        assert_true(bnd == want);
        assert_int_equal(nnp, 1);

        struct vmsig_client *c = vh_client(&H, "unit-sandbox");
        assert_non_null(c);
        assert_int_equal(vh_subscribe(c, 0,
                                      VMSIG_KIND_BIT(VMSIG_EV_ROSTER) | VMSIG_KIND_BIT(VMSIG_EV_MEMCTX) |
                                          VMSIG_KIND_BIT(VMSIG_EV_STATUS),
                                      NULL, NULL),
                         0);
        write_trigger("unitsbx");
        uint32_t ep = vh_wait_vm(c, "unitsbx");
        assert_true(ep != 0);

        /* memctx: the RAM file (0600, another user's) opened read-only and
         * read-write, the kernel root found in it. */
        struct vh_match mm = {.kind = VMSIG_EV_MEMCTX, .endpoint = ep, .memctx_valid = true};
        int fd = -1;
        if (vh_wait_event(c, &mm, NULL, keep_memctx_fd, &fd, 60000) != 0) {
                vh_dump_log(&H);
                fail_msg("no valid memctx from the sandboxed daemon");
        }
        if (fd >= 0)
                close(fd);
        snprintf(addr, sizeof(addr), "0x%" PRIx64, banner);
        assert_int_equal(vh_vmsigctl(&H, -1, out, sizeof(out), "read", "unitsbx", addr, "64", (char *)NULL),
                         0);
        assert_non_null(strstr(out, "|Linux version 6"));

        /* QMP: another user's socket in another user's 0700 directory. */
        assert_int_equal(vh_vmsigctl(&H, -1, out, sizeof(out), "power", "unitsbx", "pause", (char *)NULL), 0);
        struct vh_match ps = {.kind = VMSIG_EV_STATUS, .endpoint = ep, .run_state = VMSIG_RUN_PAUSED};
        assert_int_equal(vh_wait_event(c, &ps, NULL, NULL, NULL, 10000), 0);
        assert_int_equal(vh_vmsigctl(&H, -1, out, sizeof(out), "power", "unitsbx", "resume", (char *)NULL),
                         0);
        ps.run_state = VMSIG_RUN_RUNNING;
        assert_int_equal(vh_wait_event(c, &ps, NULL, NULL, NULL, 10000), 0);

        /* MEMWRITE through the read-write fd, read back. */
        snprintf(uaddr, sizeof(uaddr), "0x%" PRIx64, uts);
        assert_int_equal(
            vh_vmsigctl(&H, -1, out, sizeof(out), "write", "unitsbx", uaddr, "4c494e5558", (char *)NULL), 0);
        assert_int_equal(vh_vmsigctl(&H, -1, out, sizeof(out), "read", "unitsbx", uaddr, "16", (char *)NULL),
                         0);
        assert_non_null(strstr(out, "|LINUX"));

        /* The audit file (in the writable directory) got the write. */
        char *audit = vh_read_file(H.audit);
        assert_non_null(audit);
        assert_true(audit[0] != '\0');
        free(audit);
        vh_client_close(c);
        assert_int_equal(vh_stop(&H, 10000), 0);

        /* Control: the same sandbox without CAP_DAC_OVERRIDE cannot open the
         * RAM file, so the run above needed and used the capability. */
        setenv("SANDBOX_CAPS", "+chown", 1);
        /* QMP open to all here, so that memctx gets as far as the RAM file. */
        assert_int_equal(chmod(G.dir, 0755), 0);
        assert_int_equal(chmod(G.qmp, 0666), 0);
        assert_int_equal(vh_start(&H, NULL), 0);
        proc_caps(H.pid, &eff, &bnd, &nnp);
        assert_true(eff == 1u); /* CAP_CHOWN only */
        c = vh_client(&H, "unit-sandbox-nodac");
        assert_non_null(c);
        assert_int_equal(
            vh_subscribe(c, 0, VMSIG_KIND_BIT(VMSIG_EV_ROSTER) | VMSIG_KIND_BIT(VMSIG_EV_DIAG), NULL, NULL),
            0);
        write_trigger("unitsbx");
        ep = vh_wait_vm(c, "unitsbx");
        assert_true(ep != 0);
        struct denied d = {0};
        struct vh_match never = {.kind = VMSIG_EV_NONE + 1, .endpoint = UINT32_MAX};
        uint64_t deadline = vh_now_ms() + 30000;
        while (!d.seen && vh_left(deadline))
                (void)vh_wait_event(c, &never, NULL, note_diag, &d, 200);
        printf("# without CAP_DAC_OVERRIDE: %s\n", d.seen ? d.msg : "(no diagnostic)");
        assert_true(d.seen);
        vh_client_close(c);
        assert_int_equal(vh_stop(&H, 10000), 0);
        unsetenv("SANDBOX_CAPS");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_vmsigd_keeps_its_features_in_the_unit_sandbox, setup,
                                            teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
