/* SPDX-License-Identifier: MIT */
/* Starts and always stops a TCG test guest for C tests under tests/vm/.
 * The guest comes from build-guest.sh: VMSIG_GUEST_DIR/guest.env names the
 * kernel and initrd; VMSIG_QEMU names the binary (default qemu-system-x86_64).
 *
 * Every guest gets a private directory (QMP socket, serial log, QEMU output)
 * and a unique RAM file /dev/shm/vmsig-test-<name>-<pid>-<n>. QEMU dies with
 * the test (PR_SET_PDEATHSIG); RAM files of dead test processes are swept at
 * the next start, so even a test killed by a ctest timeout leaves nothing for
 * long. Header-only: each test is one .c file. */
#ifndef VMSIG_TESTS_VM_VM_GUEST_H
#define VMSIG_TESTS_VM_VM_GUEST_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define VM_GUEST_SHM_PREFIX "vmsig-test-"

struct vm_guest {
        pid_t pid;
        char dir[256];
        char qmp[300];
        char serial[300];
        char shm[256];
        char kernel[512];
        char initrd[512];
};

struct vm_guest_opts {
        const char *mem;          /* "256M" */
        const char *machine;      /* "q35" */
        const char *append;       /* extra kernel command line */
        const char *const *extra; /* extra QEMU args, NULL-terminated */
        uid_t uid;                /* run QEMU as this uid and gid (0: as the test) */
        bool kaslr;               /* boot with KASLR (default nokaslr, as System.map) */
};

static inline long vm_guest_now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* RAM files of test processes that no longer exist. */
static inline void vm_guest_sweep_shm(void)
{
        DIR *d = opendir("/dev/shm");
        if (!d)
                return;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (strncmp(de->d_name, VM_GUEST_SHM_PREFIX, strlen(VM_GUEST_SHM_PREFIX)))
                        continue;
                /* vmsig-test-<name>-<pid>-<n>: the pid is the second-to-last field */
                char tmp[256];
                snprintf(tmp, sizeof(tmp), "%s", de->d_name);
                char *last = strrchr(tmp, '-');
                if (!last)
                        continue;
                *last = 0;
                char *p = strrchr(tmp, '-');
                long pid = p ? strtol(p + 1, NULL, 10) : 0;
                if (pid > 0 && kill((pid_t)pid, 0) < 0 && errno == ESRCH)
                        unlinkat(dirfd(d), de->d_name, 0);
        }
        closedir(d);
}

static inline int vm_guest_load_env(struct vm_guest *g)
{
        const char *dir = getenv("VMSIG_GUEST_DIR");
        if (!dir) {
                fprintf(stderr, "vm_guest: VMSIG_GUEST_DIR is not set (run via ctest)\n");
                return -ENOENT;
        }
        char path[512];
        snprintf(path, sizeof(path), "%s/guest.env", dir);
        FILE *f = fopen(path, "re");
        if (!f) {
                fprintf(stderr, "vm_guest: %s: %s (run tests/vm/build-guest.sh)\n", path, strerror(errno));
                return -ENOENT;
        }
        char line[1024];
        while (fgets(line, sizeof(line), f)) {
                line[strcspn(line, "\n")] = 0;
                if (!strncmp(line, "KERNEL=", 7))
                        snprintf(g->kernel, sizeof(g->kernel), "%s", line + 7);
                else if (!strncmp(line, "INITRD=", 7))
                        snprintf(g->initrd, sizeof(g->initrd), "%s", line + 7);
        }
        fclose(f);
        return g->kernel[0] && g->initrd[0] ? 0 : -EINVAL;
}

/* A guest variant with the vgpu-stream producer ($VGPU_STREAM) built by
 * $VGPU_MKINITRD (tests/vgpu/guest/make-initrd.sh) from the guest directory
 * $base_env into dir (/tmp/vmsig-<tag>.<pid>), which VMSIG_GUEST_DIR then
 * names. vars: "VAR=value " words for the script, or "". 0 (dir left empty
 * when a variable is not set: the test skips) or -1. */
static inline int vm_guest_make_vgpu(char *dir, size_t cap, const char *tag, const char *base_env,
                                     const char *vars, const char *kind)
{
        char cmd[2048];
        const char *base = getenv(base_env), *prod = getenv("VGPU_STREAM"), *mk = getenv("VGPU_MKINITRD");

        dir[0] = 0;
        if (!base || !prod || !mk)
                return 0;
        snprintf(dir, cap, "/tmp/vmsig-%s.%d", tag, (int)getpid());
        snprintf(cmd, sizeof(cmd), "%s%s %s %s %s %s", vars, mk, kind, base, prod, dir);
        if (system(cmd) != 0)
                return -1;
        setenv("VMSIG_GUEST_DIR", dir, 1);
        return 0;
}

/* Removes what vm_guest_make_vgpu made (nothing if dir is empty). */
static inline void vm_guest_remove_dir(const char *dir)
{
        char cmd[512];

        if (dir[0]) {
                snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
                (void)!system(cmd);
        }
}

static inline void vm_guest_stop(struct vm_guest *g)
{
        if (g->pid > 0) {
                kill(g->pid, SIGKILL);
                while (waitpid(g->pid, NULL, 0) < 0 && errno == EINTR)
                        ;
                g->pid = 0;
        }
        if (g->shm[0])
                unlink(g->shm);
        if (g->dir[0]) {
                char p[320];
                const char *files[] = {"qmp.sock", "serial.log", "qemu.out"};
                for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
                        snprintf(p, sizeof(p), "%s/%s", g->dir, files[i]);
                        unlink(p);
                }
                rmdir(g->dir);
        }
        memset(g, 0, sizeof(*g));
}

/* Returns 0 once QEMU runs and its QMP socket exists (the guest boots on). */
static inline bool vm_guest_qmp_listening(const char *path)
{
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool ok;

        if (fd < 0)
                return false;
        snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
        ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
        close(fd);
        return ok;
}

static inline int vm_guest_start(struct vm_guest *g, const char *name, const struct vm_guest_opts *o)
{
        static unsigned seq;
        struct vm_guest_opts def = {0};
        if (!o)
                o = &def;
        memset(g, 0, sizeof(*g));
        int r = vm_guest_load_env(g);
        if (r < 0)
                return r;
        vm_guest_sweep_shm();
        snprintf(g->dir, sizeof(g->dir), "/tmp/vmsig-vm-%s.XXXXXX", name);
        if (!mkdtemp(g->dir)) {
                g->dir[0] = 0;
                return -errno;
        }
        /* QEMU running as another user creates its files in this dir. */
        if (o->uid && chown(g->dir, o->uid, o->uid) < 0) {
                r = -errno;
                vm_guest_stop(g);
                return r;
        }
        snprintf(g->qmp, sizeof(g->qmp), "%s/qmp.sock", g->dir);
        snprintf(g->serial, sizeof(g->serial), "%s/serial.log", g->dir);
        snprintf(g->shm, sizeof(g->shm), "/dev/shm/" VM_GUEST_SHM_PREFIX "%s-%d-%u", name, (int)getpid(),
                 seq++);

        const char *mem = o->mem ? o->mem : "256M";
        char a_mem[600], a_machine[128], a_append[512], a_serial[320], a_qmp[360], out[320];
        snprintf(a_mem, sizeof(a_mem), "memory-backend-file,id=ram0,size=%s,mem-path=%s,share=on", mem,
                 g->shm);
        snprintf(a_machine, sizeof(a_machine), "%s,memory-backend=ram0", o->machine ? o->machine : "q35");
        snprintf(a_append, sizeof(a_append), "console=ttyS0 %s panic=-1 %s", o->kaslr ? "" : "nokaslr",
                 o->append ? o->append : "");
        snprintf(a_serial, sizeof(a_serial), "file:%s", g->serial);
        snprintf(a_qmp, sizeof(a_qmp), "unix:%s,server=on,wait=off", g->qmp);
        snprintf(out, sizeof(out), "%s/qemu.out", g->dir);
        const char *qemu = getenv("VMSIG_QEMU") ? getenv("VMSIG_QEMU") : "qemu-system-x86_64";

        const char *argv[64] = {qemu,      "-accel",     "tcg",      "-m",       mem,           "-smp",
                                "1",       "-no-reboot", "-display", "none",     "-nodefaults", "-monitor",
                                "none",    "-object",    a_mem,      "-machine", a_machine,     "-kernel",
                                g->kernel, "-initrd",    g->initrd,  "-append",  a_append,      "-serial",
                                a_serial,  "-qmp",       a_qmp};
        size_t n = 0;
        while (argv[n])
                n++;
        for (const char *const *e = o->extra; e && *e && n < 62; e++)
                argv[n++] = *e;
        argv[n] = NULL;

        pid_t parent = getpid();
        g->pid = fork();
        if (g->pid < 0) {
                r = -errno;
                vm_guest_stop(g);
                return r;
        }
        if (g->pid == 0) {
                /* QEMU must not outlive the test, whatever kills the test. */
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (getppid() != parent)
                        _exit(127);
                int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
                if (fd >= 0) {
                        dup2(fd, 1);
                        dup2(fd, 2);
                }
                int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
                if (nul >= 0)
                        dup2(nul, 0);
                if (o->uid && (setgroups(0, NULL) < 0 || setgid(o->uid) < 0 || setuid(o->uid) < 0))
                        _exit(126);
                execvp(qemu, (char *const *)argv);
                _exit(127);
        }
        for (long deadline = vm_guest_now_ms() + 15000; vm_guest_now_ms() < deadline;) {
                struct stat st;
                /* The socket file appears at bind(), a moment before
                 * listen(): wait until a connection is accepted. */
                if (stat(g->qmp, &st) == 0 && S_ISSOCK(st.st_mode) && vm_guest_qmp_listening(g->qmp))
                        return 0;
                int status;
                if (waitpid(g->pid, &status, WNOHANG) == g->pid) {
                        g->pid = 0;
                        char msg[1024] = "";
                        FILE *f = fopen(out, "re");
                        if (f) {
                                size_t k = fread(msg, 1, sizeof(msg) - 1, f);
                                msg[k] = 0;
                                fclose(f);
                        }
                        fprintf(stderr, "vm_guest: QEMU exited at start: %s\n", msg);
                        vm_guest_stop(g);
                        return -ECHILD;
                }
                usleep(20000);
        }
        fprintf(stderr, "vm_guest: no QMP socket after 15 s\n");
        vm_guest_stop(g);
        return -ETIMEDOUT;
}

/* Waits until the serial log holds marker (a fixed string). */
static inline int vm_guest_wait_serial(struct vm_guest *g, const char *marker, int timeout_ms)
{
        static char buf[1 << 20];
        for (long deadline = vm_guest_now_ms() + timeout_ms;;) {
                FILE *f = fopen(g->serial, "re");
                if (f) {
                        size_t k = fread(buf, 1, sizeof(buf) - 1, f);
                        buf[k] = 0;
                        fclose(f);
                        if (memmem(buf, k, marker, strlen(marker)))
                                return 0;
                }
                if (vm_guest_now_ms() >= deadline)
                        return -ETIMEDOUT;
                usleep(50000);
        }
}

/* The serial log so far (static buffer, for messages and checks). */
static inline const char *vm_guest_serial_text(struct vm_guest *g)
{
        static char buf[1 << 20];
        buf[0] = 0;
        FILE *f = fopen(g->serial, "re");
        if (f) {
                size_t k = fread(buf, 1, sizeof(buf) - 1, f);
                buf[k] = 0;
                fclose(f);
        }
        return buf;
}

#endif
