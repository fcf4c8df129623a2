/* SPDX-License-Identifier: MIT */
/* memread: how fast a control perceives a real QEMU guest's memory through
 * vmsig's read-only RAM mapping (libvmie), against two baselines measured in
 * the same run:
 *   - plain memcpy of the same bytes from an anonymous buffer (the ceiling
 *     for sequential guest-physical reads);
 *   - QMP human-monitor-command `xp` / `gva2gpa` over one open QMP connection
 *     (what a user without vmsig has for reads and translations).
 *   - process_vm_readv on the QEMU process through its mapping of the RAM
 *     file found in /proc/<pid>/maps (how memflow's qemu connector and
 *     vmread read guest memory), for 8 B and 4 KiB random and 1 MiB
 *     sequential reads; the bytes must be identical both ways.
 * It boots the real test guest (tests/vm/build-guest.sh, TCG, RAM in a
 * /dev/shm file, QMP socket), takes the RAM layout from `info mtree -f` and
 * the kernel root from `info registers` (validated by reading linux_banner
 * at its System.map address), measures, and always kills QEMU and removes its
 * files. Without QEMU or the guest it says why and exits 0 with no figures.
 *
 * The kernel root is the one the memctx adapter publishes: the vCPU's CR3
 * normalised by vmie_linux_kernel_root, then moved to the kernel's own
 * swapper_pg_dir (init_top_pgt in System.map), which outlives every process.
 * Every figure is checked before it is printed: QMP agrees with vmie on
 * translations and bytes, no translation or read failed, the sized TLB hit
 * rate is in range, the working set still translates the same at the end.
 * A failed check prints "INVALID: <reason>", no figures, and exits 1.
 *
 *   memread [SCALE]   SCALE (default 1) scales sizes, counts and time boxes.
 *   memread --smoke   checks only (short time boxes, no figures, no goals);
 *                     a missing guest is then a failure, not a skip.
 *
 * Environment: VMSIG_QEMU (binary), VMSIG_GUEST_DIR (an existing output of
 * build-guest.sh; default: build it into <dir of this binary>/guest),
 * VMSIG_SOURCE_DIR (repository root, if not where this file was compiled).
 * Absolute figures depend on the machine; the ratios are the result. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <vmie/vmie.h>

#include "bench_check.h"
#include "host/mtree.h"
#include "host/qmp.h"

#define READY_MARKER    "VMSIG-GUEST-READY"
#define BANNER_PREFIX   "Linux version "
#define SHM_PREFIX      "vmsig-test-" /* swept by tests/vm/vm_guest.h if we die hard */
#define CHUNK           (1u << 20)    /* sequential read unit */
#define BOOT_TIMEOUT_MS 60000
#define HMP_TIMEOUT_MS  10000

static double g_scale = 1.0;
static bool g_smoke;

/* Reasons the run is invalid, collected so that all are reported. */

static uint64_t now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double secs_since(uint64_t t0)
{
        return (double)(now_ns() - t0) / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;
        return x < y ? -1 : x > y;
}

static int cmp_u64(const void *a, const void *b)
{
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
        return x < y ? -1 : x > y;
}

static double median(double *v, size_t n)
{
        qsort(v, n, sizeof(*v), cmp_double);
        return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---------------- the guest: boot and always clean up ---------------- */

/* Everything the cleanup needs, in static storage so the signal handler can
 * use it without allocating. */
static struct {
        volatile pid_t pid;
        char dir[256];
        char qmp[320];
        char serial[320];
        char out[320];
        char shm[256];
} g_vm;

static void vm_cleanup(void)
{
        pid_t pid = g_vm.pid;
        if (pid > 0) {
                kill(pid, SIGKILL);
                while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                        ;
                g_vm.pid = 0;
        }
        if (g_vm.shm[0])
                unlink(g_vm.shm);
        if (g_vm.qmp[0])
                unlink(g_vm.qmp);
        if (g_vm.serial[0])
                unlink(g_vm.serial);
        if (g_vm.out[0])
                unlink(g_vm.out);
        if (g_vm.dir[0])
                rmdir(g_vm.dir);
        g_vm.shm[0] = g_vm.qmp[0] = g_vm.serial[0] = g_vm.out[0] = g_vm.dir[0] = 0;
}

static void on_fatal_signal(int sig)
{
        /* kill, waitpid, unlink, rmdir and _exit are async-signal-safe */
        vm_cleanup();
        _exit(128 + sig);
}

static void install_cleanup(void)
{
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_fatal_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGHUP, &sa, NULL);
        sigaction(SIGQUIT, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
        atexit(vm_cleanup);
}

/* Repository root: VMSIG_SOURCE_DIR, else derived from this file's path. */
static void source_dir(char *buf, size_t cap)
{
        const char *env = getenv("VMSIG_SOURCE_DIR");
        if (env && *env) {
                snprintf(buf, cap, "%s", env);
                return;
        }
        snprintf(buf, cap, "%s", __FILE__);
        char *p = strstr(buf, "/bench/memread.c");
        if (p)
                *p = 0;
        else
                snprintf(buf, cap, ".");
}

struct guest_files {
        char kernel[512];
        char initrd[512];
        char sysmap[512];
};

static int read_guest_env(const char *dir, struct guest_files *gf)
{
        char path[600], line[1024];
        snprintf(path, sizeof(path), "%s/guest.env", dir);
        FILE *f = fopen(path, "re");
        if (!f)
                return -errno;
        memset(gf, 0, sizeof(*gf));
        while (fgets(line, sizeof(line), f)) {
                line[strcspn(line, "\n")] = 0;
                if (!strncmp(line, "KERNEL=", 7))
                        snprintf(gf->kernel, sizeof(gf->kernel), "%s", line + 7);
                else if (!strncmp(line, "INITRD=", 7))
                        snprintf(gf->initrd, sizeof(gf->initrd), "%s", line + 7);
                else if (!strncmp(line, "SYSTEM_MAP=", 11))
                        snprintf(gf->sysmap, sizeof(gf->sysmap), "%s", line + 11);
        }
        fclose(f);
        return gf->kernel[0] && gf->initrd[0] && gf->sysmap[0] ? 0 : -EINVAL;
}

/* Runs build-guest.sh into the cache dir (a no-op when cached). */
static int build_guest(const char *srcdir, const char *outdir)
{
        char script[600];
        snprintf(script, sizeof(script), "%s/tests/vm/build-guest.sh", srcdir);
        if (access(script, R_OK) < 0) {
                printf("  %s not found (set VMSIG_SOURCE_DIR or VMSIG_GUEST_DIR)\n", script);
                return -ENOENT;
        }
        pid_t pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                dup2(2, 1); /* its chatter goes to stderr */
                execlp("bash", "bash", script, outdir, (char *)NULL);
                _exit(127);
        }
        int st;
        while (waitpid(pid, &st, 0) < 0)
                if (errno != EINTR)
                        return -errno;
        return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -ECHILD;
}

static bool in_path(const char *prog)
{
        if (strchr(prog, '/'))
                return access(prog, X_OK) == 0;
        const char *path = getenv("PATH");
        if (!path)
                return false;
        char *dup = strdup(path), *save = NULL;
        bool found = false;
        for (char *d = strtok_r(dup, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
                char p[1024];
                snprintf(p, sizeof(p), "%s/%s", d, prog);
                found = access(p, X_OK) == 0;
        }
        free(dup);
        return found;
}

static int vm_start(const char *qemu, const struct guest_files *gf, const char *mem)
{
        snprintf(g_vm.dir, sizeof(g_vm.dir), "%s/vmsig-bench-memread.XXXXXX",
                 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        if (!mkdtemp(g_vm.dir)) {
                int e = -errno;
                g_vm.dir[0] = 0;
                return e;
        }
        snprintf(g_vm.qmp, sizeof(g_vm.qmp), "%s/qmp.sock", g_vm.dir);
        snprintf(g_vm.serial, sizeof(g_vm.serial), "%s/serial.log", g_vm.dir);
        snprintf(g_vm.out, sizeof(g_vm.out), "%s/qemu.out", g_vm.dir);
        /* vmsig-test-<name>-<pid>-<n>: the test harness sweeps these when <pid> is dead */
        snprintf(g_vm.shm, sizeof(g_vm.shm), "/dev/shm/" SHM_PREFIX "benchmemread-%d-%s", (int)getpid(),
                 strrchr(g_vm.dir, '.') + 1);
        int fd = open(g_vm.serial, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd >= 0)
                close(fd);

        char a_obj[700], a_mach[64], a_serial[340], a_qmp[360];
        snprintf(a_obj, sizeof(a_obj), "memory-backend-file,id=ram0,size=%s,mem-path=%s,share=on", mem,
                 g_vm.shm);
        snprintf(a_mach, sizeof(a_mach), "q35,memory-backend=ram0");
        snprintf(a_serial, sizeof(a_serial), "file:%s", g_vm.serial);
        snprintf(a_qmp, sizeof(a_qmp), "unix:%s,server=on,wait=off", g_vm.qmp);
        const char *argv[] = {qemu,
                              "-accel",
                              "tcg",
                              "-m",
                              mem,
                              "-smp",
                              "1",
                              "-no-reboot",
                              "-display",
                              "none",
                              "-nodefaults",
                              "-monitor",
                              "none",
                              "-object",
                              a_obj,
                              "-machine",
                              a_mach,
                              "-kernel",
                              gf->kernel,
                              "-initrd",
                              gf->initrd,
                              "-append",
                              "console=ttyS0 nokaslr panic=-1",
                              "-serial",
                              a_serial,
                              "-qmp",
                              a_qmp,
                              NULL};

        /* No signal may slip in between fork and recording the pid. */
        sigset_t all, old;
        sigfillset(&all);
        sigprocmask(SIG_BLOCK, &all, &old);
        pid_t parent = getpid();
        pid_t pid = fork();
        if (pid == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the benchmark */
                if (getppid() != parent)
                        _exit(127);
                signal(SIGINT, SIG_DFL);
                signal(SIGTERM, SIG_DFL);
                signal(SIGHUP, SIG_DFL);
                signal(SIGQUIT, SIG_DFL);
                signal(SIGPIPE, SIG_DFL);
                sigprocmask(SIG_SETMASK, &old, NULL);
                int o = open(g_vm.out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
                if (o >= 0) {
                        dup2(o, 1);
                        dup2(o, 2);
                }
                int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
                if (nul >= 0)
                        dup2(nul, 0);
                execvp(qemu, (char *const *)argv);
                _exit(127);
        }
        int e = errno;
        if (pid > 0)
                g_vm.pid = pid;
        sigprocmask(SIG_SETMASK, &old, NULL);
        if (pid < 0)
                return -e;

        for (uint64_t t0 = now_ns(); secs_since(t0) < 15;) {
                struct stat st;
                if (stat(g_vm.qmp, &st) == 0 && S_ISSOCK(st.st_mode))
                        return 0;
                int status;
                if (waitpid(pid, &status, WNOHANG) == pid) {
                        g_vm.pid = 0;
                        char msg[512] = "";
                        FILE *f = fopen(g_vm.out, "re");
                        if (f) {
                                size_t k = fread(msg, 1, sizeof(msg) - 1, f);
                                msg[k] = 0;
                                fclose(f);
                        }
                        msg[strcspn(msg, "\n")] = 0;
                        printf("  QEMU exited at start: %s\n", msg);
                        return -ECHILD;
                }
                usleep(20000);
        }
        printf("  no QMP socket after 15 s\n");
        return -ETIMEDOUT;
}

/* Reads the serial log until marker; the /proc/version line after it goes to
 * ret_version. */
static int vm_wait_ready(int timeout_ms, char *ret_version, size_t cap)
{
        static char buf[1 << 20];
        for (uint64_t t0 = now_ns();;) {
                FILE *f = fopen(g_vm.serial, "re");
                size_t k = 0;
                if (f) {
                        k = fread(buf, 1, sizeof(buf) - 1, f);
                        fclose(f);
                }
                buf[k] = 0;
                char *m = memmem(buf, k, READY_MARKER, strlen(READY_MARKER));
                char *v = m ? strstr(m, BANNER_PREFIX) : NULL;
                if (v && strchr(v, '\n')) {
                        size_t n = strcspn(v, "\r\n");
                        snprintf(ret_version, cap, "%.*s", (int)n, v);
                        return 0;
                }
                int status;
                if (g_vm.pid > 0 && waitpid(g_vm.pid, &status, WNOHANG) == g_vm.pid) {
                        g_vm.pid = 0;
                        return -ECHILD;
                }
                if (secs_since(t0) * 1000 > timeout_ms)
                        return -ETIMEDOUT;
                usleep(50000);
        }
}

/* ---------------- QMP: one persistent connection ---------------- */

struct hmp_call {
        bool done;
        int error;
        char *text;
        char reason[256];
};

static void hmp_reply(struct qmp *q, const struct qmp_reply *r, void *ud)
{
        struct hmp_call *c = ud;
        c->done = true;
        c->error = r->error;
        free(c->text);
        c->text = r->error ? NULL : strndup(r->text ? r->text : "", r->text ? r->text_len : 0);
        snprintf(c->reason, sizeof(c->reason), "%s", r->reason ? r->reason : "");
}

static int pump_until(struct qmp *q, const bool *done, int timeout_ms)
{
        uint64_t t0 = now_ns();
        while (!*done) {
                double left = timeout_ms - secs_since(t0) * 1000;
                if (left <= 0)
                        return -ETIMEDOUT;
                int r = qmp_pump(q, (int)left + 1);
                if (r < 0 && r != -ETIMEDOUT && !*done)
                        return r;
        }
        return 0;
}

static void on_ready(struct qmp *q, struct json_object *greeting, void *ud)
{
        *(bool *)ud = true;
}

static int qmp_open(const char *path, struct qmp **ret, bool *ready)
{
        struct qmp_config cfg = {.on_ready = on_ready, .userdata = ready};
        int r = qmp_new(path, &cfg, ret);
        if (r < 0)
                return r;
        r = pump_until(*ret, ready, HMP_TIMEOUT_MS);
        if (r < 0)
                *ret = qmp_free(*ret);
        return r;
}

/* One HMP command, synchronously; *ret_text is malloc()ed. */
static int hmp(struct qmp *q, const char *cmd, char **ret_text)
{
        struct hmp_call c = {0};
        int r = qmp_hmp(q, cmd, hmp_reply, &c, NULL);
        if (r < 0)
                return r;
        r = pump_until(q, &c.done, HMP_TIMEOUT_MS);
        if (r == 0)
                r = c.error;
        if (r < 0) {
                fprintf(stderr, "memread: HMP '%s': %s (%s)\n", cmd, strerror(-r), c.reason);
                free(c.text);
                return r;
        }
        *ret_text = c.text;
        return 0;
}

/* "gpa: 0x..." (or "Unmapped") -> gpa */
static int parse_gva2gpa(const char *text, uint64_t *ret)
{
        const char *p = strstr(text, "gpa: ");
        if (!p)
                return -EFAULT;
        *ret = strtoull(p + 5, NULL, 16);
        return 0;
}

/* xp /Nxg output: "ADDR: 0xV 0xV\n" lines -> n little-endian quadwords. */
static size_t parse_xp(const char *text, uint8_t *out, size_t nq)
{
        size_t got = 0;
        for (const char *line = text; *line && got < nq;) {
                const char *colon = strchr(line, ':');
                const char *eol = strchr(line, '\n');
                if (!eol)
                        eol = line + strlen(line);
                if (colon && colon < eol) {
                        const char *p = colon + 1;
                        while (p < eol && got < nq) {
                                char *end;
                                uint64_t v = strtoull(p, &end, 16);
                                if (end == p)
                                        break;
                                memcpy(out + got * 8, &v, 8);
                                got++;
                                p = end;
                        }
                }
                line = *eol ? eol + 1 : eol;
        }
        return got;
}

/* ---------------- System.map ---------------- */

struct sym {
        uint64_t va;
        char type;
};

struct sysmap {
        struct sym *s;
        size_t n;
        uint64_t banner, text, end;
        uint64_t pgd; /* swapper_pg_dir (init_top_pgt on x86-64); 0 if absent */
};

static int load_sysmap(const char *path, struct sysmap *m)
{
        FILE *f = fopen(path, "re");
        if (!f)
                return -errno;
        size_t cap = 0;
        char line[512];
        memset(m, 0, sizeof(*m));
        while (fgets(line, sizeof(line), f)) {
                char type, name[400];
                unsigned long long va;
                if (sscanf(line, "%llx %c %399s", &va, &type, name) != 3)
                        continue;
                if (!strcmp(name, "linux_banner"))
                        m->banner = va;
                else if (!strcmp(name, "_text"))
                        m->text = va;
                else if (!strcmp(name, "_end"))
                        m->end = va;
                else if (!strcmp(name, "init_top_pgt") || (!m->pgd && !strcmp(name, "swapper_pg_dir")))
                        m->pgd = va;
                if (!strchr("TtDdBbRr", type))
                        continue;
                if (m->n == cap) {
                        cap = cap ? cap * 2 : 65536;
                        struct sym *s = realloc(m->s, cap * sizeof(*s));
                        if (!s) {
                                fclose(f);
                                return -ENOMEM;
                        }
                        m->s = s;
                }
                m->s[m->n++] = (struct sym){.va = va, .type = type};
        }
        fclose(f);
        return m->banner && m->text && m->end > m->text ? 0 : -ENOENT;
}

/* ---------------- measurements ---------------- */

static volatile uint64_t g_sink;

struct pvm; /* the process_vm_readv baseline, below */
static int pvm_read(const struct pvm *p, uint64_t gpa, void *buf, size_t len);

struct bw {
        const struct vmie_ram *ram;
        size_t nr;
        struct vmie_range r[VMIE_RAM_MAX_RANGES];
        uint64_t total;
        uint8_t *anon; /* baseline source, total bytes */
        uint8_t *dst;  /* CHUNK bytes */
        const struct pvm *pvm;
};

enum bw_mode { BW_MEMCPY, BW_READ, BW_PEEK, BW_PVM };

/* One sequential pass over all guest RAM (or the same number of bytes of
 * the anonymous buffer), CHUNK at a time into dst. Returns bytes/s. */
static double bw_pass(struct bw *b, enum bw_mode mode)
{
        uint64_t t0 = now_ns(), done = 0;
        for (size_t i = 0; i < b->nr; i++) {
                for (uint64_t off = 0; off < b->r[i].len;) {
                        size_t n = b->r[i].len - off < CHUNK ? (size_t)(b->r[i].len - off) : CHUNK;
                        uint64_t gpa = b->r[i].gpa + off;
                        if (mode == BW_MEMCPY) {
                                memcpy(b->dst, b->anon + done, n);
                        } else if (mode == BW_READ) {
                                if (vmie_ram_read(b->ram, gpa, b->dst, n) < 0)
                                        return -1;
                        } else if (mode == BW_PVM) {
                                if (pvm_read(b->pvm, gpa, b->dst, n) < 0)
                                        return -1;
                        } else {
                                const void *p;
                                if (vmie_ram_peek(b->ram, gpa, n, &p) < 0)
                                        return -1;
                                memcpy(b->dst, p, n);
                        }
                        g_sink += b->dst[n - 1];
                        off += n;
                        done += n;
                }
        }
        return (double)done / secs_since(t0);
}

static uint64_t cpu_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ops per CPU-second of this thread of fn over the working set, for about
 * `secs` of wall time; *ret_wall gets ops per wall-clock second. On a shared
 * box the wall rate mostly measures our share of a core; the CPU-time rate is
 * what the code costs. */
typedef int (*xlate_fn)(const struct vmie_as *, uint64_t, struct vmie_xlate *);

static bool xlate_same(const struct vmie_xlate *a, const struct vmie_xlate *b)
{
        return a->gpa == b->gpa && a->page_size == b->page_size && a->writable == b->writable &&
               a->user == b->user && a->nx == b->nx;
}

static double xlate_rate(const struct vmie_as *as, xlate_fn fn, const uint64_t *va, size_t n, double secs,
                         long *ret_errors, double *ret_wall)
{
        uint64_t t0 = now_ns(), c0 = cpu_ns(), ops = 0, acc = 0;
        long errs = 0;
        struct vmie_xlate x;
        do {
                for (size_t i = 0; i < n; i++) {
                        if (fn(as, va[i], &x) < 0)
                                errs++;
                        else
                                acc += x.gpa;
                }
                ops += n;
        } while (secs_since(t0) < secs);
        uint64_t cpu = cpu_ns() - c0;
        *ret_wall = (double)ops / secs_since(t0);
        g_sink += acc;
        *ret_errors = errs;
        return (double)ops / ((double)(cpu ? cpu : 1) / 1e9);
}

/* Random reads of len bytes at each gpa until secs pass, through rd(src,
 * ...): the same loop times vmie_ram_read and the process_vm_readv baseline. */
typedef int (*reader_fn)(const void *src, uint64_t gpa, uint8_t *buf, size_t len);

static double read_rate(reader_fn rd, const void *src, const uint64_t *gpa, size_t n, uint8_t *buf,
                        size_t len, double secs, long *ret_errors)
{
        uint64_t t0 = now_ns(), ops = 0;
        long errs = 0;
        do {
                for (size_t i = 0; i < n; i++) {
                        if (rd(src, gpa[i], buf, len) == 0)
                                g_sink += buf[0];
                        else
                                errs++;
                }
                ops += n;
        } while (secs_since(t0) < secs);
        *ret_errors = errs;
        return (double)ops / secs_since(t0);
}

static int vmie_reader(const void *ram, uint64_t gpa, uint8_t *buf, size_t len)
{
        return vmie_ram_read(ram, gpa, buf, len);
}

static void shuffle(uint64_t *v, size_t n)
{
        uint64_t s = 0x9e3779b97f4a7c15ull;
        for (size_t i = n; i > 1; i--) {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                size_t j = (size_t)(s % i);
                uint64_t t = v[i - 1];
                v[i - 1] = v[j];
                v[j] = t;
        }
}

/* ---------------- baseline: process_vm_readv on the QEMU process ---------------- */

/* How memflow's qemu connector and vmread read guest memory: find QEMU's
 * mapping of the guest RAM file in /proc/<pid>/maps, then read
 * guest-physical ranges through it with process_vm_readv. */
struct pvm {
        pid_t pid;
        size_t nr;
        struct {
                uint64_t gpa, len, hva;
        } r[VMIE_RAM_MAX_RANGES];
};

/* Map every RAM range to the address QEMU mapped its file bytes at. */
static int pvm_open(pid_t pid, const char *path, const struct vmie_range *r, size_t nr, struct pvm *p)
{
        char maps[64], line[PATH_MAX + 128];
        snprintf(maps, sizeof(maps), "/proc/%d/maps", (int)pid);
        FILE *f = fopen(maps, "re");
        if (!f)
                return -errno;
        memset(p, 0, sizeof(*p));
        p->pid = pid;
        p->nr = nr;
        while (fgets(line, sizeof(line), f)) {
                unsigned long long start, end, off;
                int pos = 0;
                line[strcspn(line, "\n")] = 0;
                if (sscanf(line, "%llx-%llx %*s %llx %*s %*s %n", &start, &end, &off, &pos) < 3 || !pos ||
                    strcmp(line + pos, path) != 0)
                        continue;
                for (size_t i = 0; i < nr; i++)
                        if (!p->r[i].hva && r[i].file_offset >= off &&
                            r[i].file_offset + r[i].len <= off + (end - start))
                                p->r[i] =
                                    (typeof(p->r[i])){r[i].gpa, r[i].len, start + (r[i].file_offset - off)};
        }
        fclose(f);
        for (size_t i = 0; i < nr; i++)
                if (!p->r[i].hva)
                        return -ENOENT;
        return 0;
}

static int pvm_read(const struct pvm *p, uint64_t gpa, void *buf, size_t len)
{
        for (size_t i = 0; i < p->nr; i++) {
                if (gpa < p->r[i].gpa || gpa - p->r[i].gpa > p->r[i].len ||
                    len > p->r[i].len - (gpa - p->r[i].gpa))
                        continue;
                struct iovec l = {buf, len}, rm = {(void *)(uintptr_t)(p->r[i].hva + gpa - p->r[i].gpa), len};
                ssize_t n = process_vm_readv(p->pid, &l, 1, &rm, 1, 0);
                return n == (ssize_t)len ? 0 : n < 0 ? -errno : -EIO;
        }
        return -EFAULT;
}

static int pvm_reader(const void *p, uint64_t gpa, uint8_t *buf, size_t len)
{
        return pvm_read(p, gpa, buf, len);
}

/* Compare [gpa, gpa+len) read both ways, 4 KiB page by page. The guest runs:
 * a page that differs between two vmie reads around the process_vm_readv one
 * is changing and not counted; a stable page must be identical both ways. */
struct pvm_cmp {
        size_t same, differ, changing, failed;
};

static void pvm_compare(const struct vmie_ram *ram, const struct pvm *p, uint64_t gpa, size_t len, uint8_t *a,
                        uint8_t *bb, uint8_t *c, struct pvm_cmp *st)
{
        if (vmie_ram_read(ram, gpa, a, len) < 0 || pvm_read(p, gpa, bb, len) < 0 ||
            vmie_ram_read(ram, gpa, c, len) < 0) {
                st->failed++;
                return;
        }
        for (size_t o = 0; o < len; o += 4096) {
                size_t n = len - o < 4096 ? len - o : 4096;
                if (memcmp(a + o, c + o, n) != 0)
                        st->changing++;
                else if (memcmp(a + o, bb + o, n) != 0)
                        st->differ++;
                else
                        st->same++;
        }
}

static const char *goal(bool met)
{
        return met ? "met" : "NOT met";
}

/* No guest: a skip for a measuring run, a failure for --smoke (ctest runs
 * it with the guest fixture, so a missing guest is a broken setup). */
static int unavailable(const char *why)
{
        if (g_smoke) {
                printf("INVALID: guest unavailable: %s\n", why);
                return 1;
        }
        printf("  guest unavailable: %s -- no figures\n", why);
        return 0;
}

int main(int argc, char **argv)
{
        if (argc > 1 && !strcmp(argv[1], "--smoke"))
                g_smoke = true;
        else if (argc > 1 && atof(argv[1]) > 0)
                g_scale = atof(argv[1]);
        setvbuf(stdout, NULL, _IOLBF, 0);
        install_cleanup();
        if (g_smoke)
                printf("memread --smoke: checks only, no figures\n");
        else
                printf(
                    "memread: perceiving a real QEMU guest (TCG): vmie over the RAM file vs memcpy vs QMP, "
                    "scale %.2g\n",
                    g_scale);

        /* ---- guest files and QEMU ---- */
        const char *qemu = getenv("VMSIG_QEMU") ? getenv("VMSIG_QEMU") : "qemu-system-x86_64";
        if (!in_path(qemu)) {
                char why[300];
                snprintf(why, sizeof(why), "%s not found (install the Debian package qemu-system-x86)", qemu);
                return unavailable(why);
        }
        char srcdir[512], gdir[600];
        source_dir(srcdir, sizeof(srcdir));
        if (getenv("VMSIG_GUEST_DIR") && *getenv("VMSIG_GUEST_DIR")) {
                snprintf(gdir, sizeof(gdir), "%s", getenv("VMSIG_GUEST_DIR"));
        } else {
                char exe[512];
                ssize_t k = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
                exe[k > 0 ? k : 0] = 0;
                char *slash = strrchr(exe, '/');
                if (slash)
                        *slash = 0;
                snprintf(gdir, sizeof(gdir), "%s/guest", k > 0 ? exe : ".");
        }
        struct guest_files gf;
        uint64_t t_build = now_ns();
        if (build_guest(srcdir, gdir) < 0 || read_guest_env(gdir, &gf) < 0) {
                return unavailable("tests/vm/build-guest.sh failed (see its message above)");
        }
        double build_s = secs_since(t_build);
        struct sysmap sm;
        if (load_sysmap(gf.sysmap, &sm) < 0) {
                return unavailable("System.map lacks linux_banner/_text/_end");
        }

        /* ---- boot ---- */
        long mem_mib = g_smoke ? 128 : (long)(256 * g_scale);
        mem_mib = mem_mib < 128 ? 128 : mem_mib > 4096 ? 4096 : mem_mib;
        char mem[32];
        snprintf(mem, sizeof(mem), "%ldM", mem_mib);
        uint64_t t_boot = now_ns();
        if (vm_start(qemu, &gf, mem) < 0) {
                return unavailable("QEMU did not start");
        }
        char version[256] = "";
        int r = vm_wait_ready(BOOT_TIMEOUT_MS, version, sizeof(version));
        if (r < 0) {
                return unavailable(r == -ECHILD ? "QEMU exited before the guest was ready"
                                                : "no " READY_MARKER " on the serial console within 60 s");
        }
        double boot_s = secs_since(t_boot);
        printf("  guest: %s RAM, ready in %.1f s (guest build/cache check %.1f s)\n  %s\n", mem, boot_s,
               build_s, version);

        struct qmp *q = NULL;
        bool ready = false;
        if (qmp_open(g_vm.qmp, &q, &ready) < 0) {
                return unavailable("QMP connection failed");
        }

        /* ---- layout from info mtree -f ---- */
        char *text = NULL, err[256] = "";
        struct mtree_layout lay;
        if (hmp(q, "info mtree -f", &text) < 0 ||
            mtree_ram_layout(text, strlen(text), &lay, err, sizeof(err)) < 0) {
                invalid("no RAM layout from info mtree -f: %s", err);
                free(text);
                qmp_free(q);
                return bench_report_invalid();
        }
        free(text);
        struct bw b = {.nr = lay.n_ranges};
        for (size_t i = 0; i < lay.n_ranges; i++) {
                b.r[i] = (struct vmie_range){lay.ranges[i].gpa, lay.ranges[i].len, lay.ranges[i].file_offset};
                b.total += lay.ranges[i].len;
        }
        struct vmie_ram *ram = NULL;
        r = vmie_ram_open_path(g_vm.shm, b.r, b.nr, 0, &ram);
        if (r < 0) {
                invalid("vmie_ram_open_path %s: %s", g_vm.shm, strerror(-r));
                qmp_free(q);
                return bench_report_invalid();
        }
        b.ram = ram;
        struct pvm pvm;
        r = pvm_open(g_vm.pid, g_vm.shm, b.r, b.nr, &pvm);
        if (r < 0) {
                invalid("no mapping of %s covering guest RAM in QEMU's /proc/%d/maps: %s", g_vm.shm,
                        (int)g_vm.pid, strerror(-r));
                qmp_free(q);
                return bench_report_invalid();
        }
        b.pvm = &pvm;
        printf("  layout (info mtree -f, backend %s): %zu range(s), %.1f MiB of guest RAM, %s\n", lay.backend,
               b.nr, b.total / 1048576.0,
               vmie_ram_is_mapped(ram) ? "mapped read-only" : "pread (not mapped)");

        /* ---- kernel root: the one memctx publishes, swapper_pg_dir ---- */
        uint64_t cr3 = 0, cr4 = 0;
        struct vmie_kroot kr, ks;
        struct vmie_linux_hint hint = {
            .check_va = sm.banner, .expect = BANNER_PREFIX, .expect_len = strlen(BANNER_PREFIX)};
        /* The vCPU's CR3 may belong to a process that exits right after the
         * sample (the guest runs one every second): sample again until one
         * validates. It only serves to find swapper_pg_dir. */
        r = -ENOENT;
        for (int tries = 0; tries < 5 && r < 0; tries++) {
                if (hmp(q, "info registers", &text) < 0) {
                        invalid("HMP info registers failed");
                        qmp_free(q);
                        return bench_report_invalid();
                }
                const char *p3 = strstr(text, "CR3="), *p4 = strstr(text, "CR4=");
                cr3 = p3 ? strtoull(p3 + 4, NULL, 16) : 0;
                cr4 = p4 ? strtoull(p4 + 4, NULL, 16) : 0;
                free(text);
                hint.cr3 = cr3;
                hint.levels = (uint8_t)(cr4 & (1u << 12) ? 5 : 4);
                r = vmie_linux_kernel_root(ram, &hint, &kr);
        }
        if (r < 0) {
                invalid("no vCPU CR3 maps linux_banner (%#" PRIx64 "), last CR3 %#" PRIx64 ": %s", sm.banner,
                        cr3, strerror(-r));
                qmp_free(q);
                return bench_report_invalid();
        }
        if (!sm.pgd) {
                invalid("System.map has no init_top_pgt / swapper_pg_dir");
                qmp_free(q);
                return bench_report_invalid();
        }
        /* any process's root maps the kernel image, swapper_pg_dir included */
        struct vmie_as pas = {.ram = ram, .root = kr.root, .levels = kr.levels};
        struct vmie_xlate px = {0};
        r = vmie_walk(&pas, sm.pgd, &px);
        if (r == 0) {
                hint.cr3 = px.gpa;
                hint.levels = kr.levels;
                r = vmie_linux_kernel_root(ram, &hint, &ks);
        }
        if (r < 0) {
                invalid("swapper_pg_dir (%#" PRIx64 ") is not a kernel root: %s", sm.pgd, strerror(-r));
                qmp_free(q);
                return bench_report_invalid();
        }
        struct vmie_as as = {.ram = ram, .root = ks.root, .levels = ks.levels};
        {
                /* QEMU's own translation says where swapper_pg_dir is */
                char rcmd[64];
                uint64_t qpgd = 0;
                snprintf(rcmd, sizeof(rcmd), "gva2gpa %#" PRIx64, sm.pgd);
                text = NULL;
                if (hmp(q, rcmd, &text) < 0 || parse_gva2gpa(text, &qpgd) < 0)
                        invalid("QEMU cannot translate swapper_pg_dir (%#" PRIx64 ")", sm.pgd);
                else if ((qpgd & ~4095ull) != as.root)
                        invalid("kernel root %#" PRIx64 " is not swapper_pg_dir (QEMU: %#" PRIx64 ")",
                                as.root, qpgd);
                free(text);
                text = NULL;
        }
        char banner[256];
        r = vmie_read_str(&as, sm.banner, banner, sizeof(banner), NULL);
        if ((r != 0 && r != -E2BIG) || memcmp(banner, BANNER_PREFIX, strlen(BANNER_PREFIX)) != 0)
                invalid("root %#" PRIx64 " does not map linux_banner: %s", as.root,
                        r < 0 ? strerror(-r) : "unexpected bytes");
        if (g_invalid[0]) {
                qmp_free(q);
                return bench_report_invalid();
        }
        banner[strcspn(banner, "\n")] = 0;
        printf("  kernel root %#" PRIx64
               " = swapper_pg_dir, as memctx publishes it and QEMU agrees (vCPU CR3 "
               "%#" PRIx64 ", %u-level);\n  linux_banner at %#" PRIx64 " reads \"%.40s...\"%s\n",
               as.root, cr3, as.levels, sm.banner, banner,
               strncmp(banner, version, strlen(banner) < strlen(version) ? strlen(banner) : strlen(version))
                   ? " (differs from /proc/version!)"
                   : " = /proc/version");

        /* ---- working set: kernel-image symbols that are mapped now ---- */
        size_t want = g_smoke ? 256 : (size_t)(4096 * g_scale);
        want = want < 256 ? 256 : want;
        uint64_t *ws = calloc(want, sizeof(*ws)), *ws_gpa = calloc(want, sizeof(*ws_gpa));
        size_t nws = 0, unmapped = 0;
        {
                /* distinct 4 KiB pages, evenly spread over the image */
                uint64_t *cand = malloc(sm.n * sizeof(*cand));
                size_t nc = 0;
                for (size_t i = 0; i < sm.n; i++)
                        if (sm.s[i].va >= sm.text && sm.s[i].va < sm.end)
                                cand[nc++] = sm.s[i].va;
                qsort(cand, nc, sizeof(*cand), cmp_u64);
                size_t nd = 0;
                for (size_t i = 0; i < nc; i++)
                        if (!nd || (cand[i] >> 12) != (cand[nd - 1] >> 12))
                                cand[nd++] = cand[i];
                double step = nd > want ? (double)nd / (double)want : 1.0;
                for (double x = 0; (size_t)x < nd && nws < want; x += step) {
                        struct vmie_xlate xl;
                        uint64_t va = cand[(size_t)x];
                        if (vmie_walk(&as, va, &xl) < 0) {
                                unmapped++; /* e.g. __init code freed after boot */
                                continue;
                        }
                        ws[nws++] = va;
                }
                free(cand);
        }
        shuffle(ws, nws);
        size_t n4k = 0, n2m = 0, n1g = 0;
        for (size_t i = 0; i < nws; i++) {
                struct vmie_xlate xl;
                vmie_walk(&as, ws[i], &xl);
                ws_gpa[i] = xl.gpa;
                n4k += xl.page_size == 4096;
                n2m += xl.page_size == (1u << 21);
                n1g += xl.page_size == (1u << 30);
        }
        printf(
            "  working set: %zu kernel addresses on distinct 4 KiB pages between _text and _end, shuffled\n"
            "    (%zu unmapped skipped; mapped by %zu 4 KiB, %zu 2 MiB, %zu 1 GiB leaves)\n",
            nws, unmapped, n4k, n2m, n1g);
        if (nws < 64) {
                invalid("only %zu kernel-image addresses map under root %#" PRIx64 " (%zu do not)", nws,
                        as.root, unmapped);
                qmp_free(q);
                return bench_report_invalid();
        }

        /* ---- 1. sequential guest-physical reads vs memcpy ---- */
        b.anon = mmap(NULL, b.total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        b.dst = aligned_alloc(4096, CHUNK);
        if (b.anon == MAP_FAILED || !b.dst) {
                invalid("out of memory");
                qmp_free(q);
                return bench_report_invalid();
        }
        memset(b.anon, 0x5a, b.total);
        memset(b.dst, 0, CHUNK);
        struct stat st0, st1;
        int st_ok = stat(g_vm.shm, &st0) == 0;
        double cold = bw_pass(&b, BW_READ); /* faults the read-only mapping in */
        st_ok = st_ok && stat(g_vm.shm, &st1) == 0;
        enum { PASSES_MAX = 21 }; /* a pass is ~15 ms: many, interleaved, median */
        const int passes = g_smoke ? 1 : PASSES_MAX;
        double v_cpy[PASSES_MAX], v_read[PASSES_MAX], v_peek[PASSES_MAX], v_pvm[PASSES_MAX];
        bool bw_failed = cold < 0, pvm_failed = false;
        for (int i = 0; i < passes; i++) {
                v_cpy[i] = bw_pass(&b, BW_MEMCPY);
                v_read[i] = bw_pass(&b, BW_READ);
                v_peek[i] = bw_pass(&b, BW_PEEK);
                v_pvm[i] = bw_pass(&b, BW_PVM);
                bw_failed = bw_failed || v_read[i] < 0 || v_peek[i] < 0;
                pvm_failed = pvm_failed || v_pvm[i] < 0;
        }
        double m_cpy = median(v_cpy, (size_t)passes), m_read = median(v_read, (size_t)passes),
               m_peek = median(v_peek, (size_t)passes), m_pvm = median(v_pvm, (size_t)passes);
        munmap(b.anon, b.total);
        if (bw_failed)
                invalid("a sequential vmie_ram_read/vmie_ram_peek of guest RAM failed");
        if (pvm_failed)
                invalid("a sequential process_vm_readv of QEMU's guest RAM mapping failed");

        /* ---- 2. translations ---- */
        struct vmie_tlb *tlb = NULL;
        size_t tlb_entries = 16;
        while (tlb_entries < 4 * nws && tlb_entries < VMIE_TLB_MAX_ENTRIES)
                tlb_entries *= 2;
        vmie_tlb_new(tlb_entries, 0, &tlb);
        struct vmie_as cas = as;
        cas.tlb = tlb;
        struct vmie_tlb *dtlb = NULL;
        vmie_tlb_new(0, 0, &dtlb);
        struct vmie_as das = as;
        das.tlb = dtlb;
        struct vmie_xlate xl;
        for (size_t i = 0; i < nws; i++) { /* warm both caches */
                vmie_translate(&cas, ws[i], &xl);
                vmie_translate(&das, ws[i], &xl);
        }
        /* interleaved rounds, median of each: the guest's vCPU thread and the
         * host share the cores, so single runs wobble */
        enum { XROUNDS_MAX = 11 };
        const int xrounds = g_smoke ? 1 : XROUNDS_MAX;
        double box = g_smoke ? 0.02 : 0.1 * g_scale, r_walk[XROUNDS_MAX], r_tlb[XROUNDS_MAX],
               r_dtlb[XROUNDS_MAX], w_walk[XROUNDS_MAX], w_tlb[XROUNDS_MAX], w_dtlb[XROUNDS_MAX];
        long e_walk = 0, e_tlb = 0, e_dtlb = 0, e;
        struct vmie_tlb_stats s0, s1, d0, d1;
        vmie_tlb_stats(tlb, &s0);
        vmie_tlb_stats(dtlb, &d0);
        for (int i = 0; i < xrounds; i++) {
                r_walk[i] = xlate_rate(&as, vmie_walk, ws, nws, box, &e, &w_walk[i]);
                e_walk += e;
                r_tlb[i] = xlate_rate(&cas, vmie_translate, ws, nws, box, &e, &w_tlb[i]);
                e_tlb += e;
                r_dtlb[i] = xlate_rate(&das, vmie_translate, ws, nws, box, &e, &w_dtlb[i]);
                e_dtlb += e;
        }
        vmie_tlb_stats(tlb, &s1);
        vmie_tlb_stats(dtlb, &d1);
        double walk = median(r_walk, (size_t)xrounds), cached = median(r_tlb, (size_t)xrounds),
               dcached = median(r_dtlb, (size_t)xrounds);
        double wwalk = median(w_walk, (size_t)xrounds), wcached = median(w_tlb, (size_t)xrounds),
               wdcached = median(w_dtlb, (size_t)xrounds);
        uint64_t lookups = s1.hits - s0.hits + s1.misses - s0.misses,
                 dlookups = d1.hits - d0.hits + d1.misses - d0.misses;
        double hit = lookups ? (double)(s1.hits - s0.hits) / (double)lookups : 0;
        double dhit = dlookups ? (double)(d1.hits - d0.hits) / (double)dlookups : 0;
        if (e_walk || e_tlb || e_dtlb)
                invalid("translation errors during the timed runs: walk %ld, cached %ld, default tlb %ld",
                        e_walk, e_tlb, e_dtlb);
        /* Direct-mapped and scanned in a fixed cyclic order: an address hits
         * only when no other one shares its slot. With a random slot per
         * address that is exp(-(n-1)/entries) of them (78% for the 4x-sized
         * cache); kernel-image pages are nearly consecutive, so the real
         * figure is higher. The 1 s entry lifetime costs one refill per
         * address per second. Well below the random case (a failing walk is
         * never cached: 0%), the cache or the root it is keyed by is broken. */
        double want_hit = exp(-(double)(nws - 1) / (double)tlb_entries),
               want_dhit = exp(-(double)(nws - 1) / (double)VMIE_TLB_DEFAULT_ENTRIES);
        if (hit < 0.75 * want_hit || hit > 1)
                invalid("hit rate %.2f%% of a %zu-entry tlb over %zu addresses (floor %.0f%%)", 100 * hit,
                        tlb_entries, nws, 75 * want_hit);
        if (dhit < 0.75 * want_dhit || dhit > 1)
                invalid("hit rate %.2f%% of the default tlb over %zu addresses (floor %.0f%%)", 100 * dhit,
                        nws, 75 * want_dhit);
        /* a cache hit must give what a walk gives: frame, page size and
         * flags, from both caches */
        size_t x_wrong = 0;
        for (size_t i = 0; i < nws; i++) {
                struct vmie_xlate xw, xc, xd;
                if (vmie_walk(&as, ws[i], &xw) < 0 || vmie_translate(&cas, ws[i], &xc) < 0 ||
                    vmie_translate(&das, ws[i], &xd) < 0 || xw.gpa != ws_gpa[i] || !xlate_same(&xw, &xc) ||
                    !xlate_same(&xw, &xd))
                        x_wrong++;
        }
        if (x_wrong)
                invalid(
                    "%zu of %zu cached translations differ from a fresh walk or from the start of the run",
                    x_wrong, nws);
        dtlb = vmie_tlb_free(dtlb);

        /* ---- 3. the same through QMP ---- */
        char cmd[128];
        size_t nq = g_smoke ? 20 : (size_t)(300 * g_scale);
        nq = nq < 20 ? 20 : nq;
        double qbox = g_smoke ? 0 : 1.5 * g_scale;
        size_t hmp_fail = 0;
        /* gva2gpa, checked against the walk */
        size_t q_done = 0, q_mismatch = 0, q_err = 0;
        uint64_t t0 = now_ns();
        for (size_t i = 0; i < nq && (i < 20 || secs_since(t0) < qbox); i++) {
                uint64_t va = ws[i % nws], gpa;
                snprintf(cmd, sizeof(cmd), "gva2gpa %#" PRIx64, va);
                if (hmp(q, cmd, &text) < 0) {
                        hmp_fail++;
                        break;
                }
                if (parse_gva2gpa(text, &gpa) < 0)
                        q_err++;
                else if (gpa != ws_gpa[i % nws])
                        q_mismatch++;
                free(text);
                q_done++;
        }
        double q_xlate = (double)q_done / secs_since(t0);

        /* xp of 8 bytes and of 4 KiB at the working set's GPAs */
        double q_rd[2] = {0, 0};
        size_t x_err = 0;
        const unsigned qwords[2] = {1, 512};
        uint8_t *xbuf = malloc(4096), *vbuf = malloc(4096);
        for (int k = 0; k < 2; k++) {
                size_t done = 0;
                t0 = now_ns();
                for (size_t i = 0; i < nq && (i < 20 || secs_since(t0) < qbox); i++) {
                        uint64_t gpa = ws_gpa[i % nws] & ~(uint64_t)(qwords[k] * 8 - 1);
                        snprintf(cmd, sizeof(cmd), "xp /%uxg %#" PRIx64, qwords[k], gpa);
                        if (hmp(q, cmd, &text) < 0) {
                                hmp_fail++;
                                break;
                        }
                        if (parse_xp(text, xbuf, qwords[k]) != qwords[k])
                                x_err++;
                        free(text);
                        done++;
                }
                q_rd[k] = (double)done / secs_since(t0);
        }
        /* one stable page (linux_banner's, read-only data): QMP and vmie agree? */
        bool same = false;
        {
                struct vmie_xlate bx;
                if (vmie_walk(&as, sm.banner, &bx) == 0) {
                        uint64_t pg = bx.gpa & ~4095ull;
                        snprintf(cmd, sizeof(cmd), "xp /512xg %#" PRIx64, pg);
                        if (hmp(q, cmd, &text) == 0) {
                                same = parse_xp(text, xbuf, 512) == 512 &&
                                       vmie_ram_read(ram, pg, vbuf, 4096) == 0 && !memcmp(xbuf, vbuf, 4096);
                                free(text);
                        }
                }
        }
        /* bulk: the largest xp a user would issue, 512 KiB per command */
        const unsigned bulk_q = 65536;
        size_t bulk_n = 0, bulk_short = 0;
        uint8_t *bulk_buf = malloc((size_t)bulk_q * 8);
        t0 = now_ns();
        for (size_t i = 0; i < (g_smoke ? 1u : 4u) || (i < 32 && secs_since(t0) < qbox); i++) {
                uint64_t gpa = b.r[0].gpa + (uint64_t)i * bulk_q * 8;
                if (gpa + bulk_q * 8 > b.r[0].gpa + b.r[0].len)
                        gpa = b.r[b.nr - 1].gpa;
                snprintf(cmd, sizeof(cmd), "xp /%uxg %#" PRIx64, bulk_q, gpa);
                if (hmp(q, cmd, &text) < 0) {
                        hmp_fail++;
                        break;
                }
                bulk_short += !bulk_buf || parse_xp(text, bulk_buf, bulk_q) != bulk_q;
                free(text);
                bulk_n++;
        }
        double q_bulk = (double)bulk_n * bulk_q * 8 / secs_since(t0);
        free(bulk_buf);
        /* a one-shot tool: connect, negotiate, one command, close. QEMU's QMP
         * socket serves one client at a time, so ours goes first. */
        q = qmp_free(q);
        size_t os_n = 0, os_tried = 0;
        t0 = now_ns();
        for (size_t i = 0; i < (g_smoke ? 2u : 10u) || (i < nq && secs_since(t0) < qbox / 2); i++) {
                snprintf(cmd, sizeof(cmd), "xp /1xg %#" PRIx64, (uint64_t)(ws_gpa[i % nws] & ~(uint64_t)7));
                char reason[128];
                os_tried++;
                if (qmp_sync_hmp(g_vm.qmp, cmd, HMP_TIMEOUT_MS, &text, reason, sizeof(reason)) < 0) {
                        hmp_fail++;
                        break;
                }
                free(text);
                os_n++;
        }
        double q_oneshot = (double)os_n / secs_since(t0);

        /* vmie reads at the same GPAs */
        uint64_t *gpa8 = malloc(nws * sizeof(*gpa8)), *gpa4k = malloc(nws * sizeof(*gpa4k));
        for (size_t i = 0; i < nws; i++) {
                gpa8[i] = ws_gpa[i] & ~7ull;
                gpa4k[i] = ws_gpa[i] & ~4095ull;
        }
        long rd_err8 = 0, rd_err4k = 0;
        double v_rd8 = read_rate(vmie_reader, ram, gpa8, nws, vbuf, 8, 2 * box, &rd_err8);
        double v_rd4k = read_rate(vmie_reader, ram, gpa4k, nws, vbuf, 4096, 2 * box, &rd_err4k);
        /* process_vm_readv at the same GPAs, then the bytes compared both ways */
        long p_err8 = 0, p_err4k = 0;
        double p_rd8 = read_rate(pvm_reader, &pvm, gpa8, nws, vbuf, 8, 2 * box, &p_err8);
        double p_rd4k = read_rate(pvm_reader, &pvm, gpa4k, nws, vbuf, 4096, 2 * box, &p_err4k);
        struct pvm_cmp pc = {0};
        {
                uint8_t *ca = malloc(CHUNK), *cb = malloc(CHUNK), *cc = malloc(CHUNK);
                if (ca && cb && cc) {
                        for (size_t i = 0; i < nws; i++)
                                pvm_compare(ram, &pvm, gpa4k[i], 4096, ca, cb, cc, &pc);
                        /* whole 1 MiB chunks: each range's first, and linux_banner's */
                        struct vmie_xlate bx;
                        for (size_t i = 0; i < b.nr; i++)
                                if (b.r[i].len >= CHUNK)
                                        pvm_compare(ram, &pvm, b.r[i].gpa, CHUNK, ca, cb, cc, &pc);
                        if (vmie_walk(&as, sm.banner, &bx) == 0 && bx.gpa >= CHUNK)
                                pvm_compare(ram, &pvm, (bx.gpa & ~(uint64_t)(CHUNK - 1)), CHUNK, ca, cb, cc,
                                            &pc);
                } else {
                        pc.failed++;
                }
                free(ca);
                free(cb);
                free(cc);
        }

        /* ---- every check, before any figure ---- */
        if (hmp_fail)
                invalid("%zu QMP command(s) failed during the run", hmp_fail);
        if (q_mismatch || q_err)
                invalid(
                    "QEMU gva2gpa disagreed with vmie_walk on %zu of %zu addresses (%zu unparsable replies)",
                    q_mismatch, q_done, q_err);
        if (x_err || bulk_short)
                invalid("%zu short xp replies, %zu short bulk xp replies", x_err, bulk_short);
        if (!same)
                invalid("linux_banner's page via QEMU xp != vmie_ram_read");
        if (rd_err8 || rd_err4k)
                invalid("vmie_ram_read failed during the timed runs: 8 B %ld, 4 KiB %ld", rd_err8, rd_err4k);
        if (p_err8 || p_err4k)
                invalid("process_vm_readv failed during the timed runs: 8 B %ld, 4 KiB %ld", p_err8, p_err4k);
        if (pc.failed || pc.differ)
                invalid("process_vm_readv vs vmie_ram_read: %zu of %zu stable 4 KiB pages differ, %zu reads "
                        "failed",
                        pc.differ, pc.same + pc.differ, pc.failed);
        else if (pc.same < nws / 2)
                invalid(
                    "process_vm_readv vs vmie_ram_read: only %zu stable 4 KiB pages to compare (%zu changed "
                    "while being read)",
                    pc.same, pc.changing);
        {
                /* still the same address space: a root that died mid-run
                 * (a process's PGD) no longer translates the working set */
                size_t moved = 0;
                for (size_t i = 0; i < nws; i++) {
                        struct vmie_xlate xw;
                        moved += vmie_walk(&as, ws[i], &xw) < 0 || xw.gpa != ws_gpa[i];
                }
                if (moved)
                        invalid("%zu of %zu working-set addresses no longer translate as at the start", moved,
                                nws);
        }
        int rc = bench_report_invalid();
        if (rc)
                goto out;
        if (g_smoke) {
                printf(
                    "  smoke: valid -- root is swapper_pg_dir per QEMU; %zu-address working set: no "
                    "translation or read errors, cached == walked, tlb hit rates above their floors; QEMU "
                    "gva2gpa "
                    "agreed on %zu/%zu, xp on linux_banner's page; no QMP failures; process_vm_readv on "
                    "QEMU == vmie_ram_read on %zu stable 4 KiB pages (%zu changing skipped), 8 B / 4 KiB / "
                    "1 MiB reads without errors (no figures in smoke mode)\n",
                    nws, q_done, q_done, pc.same, pc.changing);
                goto out;
        }

        const double GB = 1e9;
        printf(
            "\n1. sequential guest-physical reads, %.1f MiB per pass in %u KiB chunks, median of %d passes\n",
            b.total / 1048576.0, CHUNK / 1024, passes);
        printf("  baseline memcpy from an anonymous buffer:  %7.2f GB/s  (passes %.2f..%.2f)\n", m_cpy / GB,
               v_cpy[0] / GB, v_cpy[passes - 1] / GB);
        printf("  vmie_ram_read (RAM file mapping):          %7.2f GB/s  (passes %.2f..%.2f) = %5.1f%% of "
               "memcpy  "
               "(goal >= 90%%: %s)\n",
               m_read / GB, v_read[0] / GB, v_read[passes - 1] / GB, 100 * m_read / m_cpy,
               goal(m_read >= 0.9 * m_cpy));
        printf("  vmie_ram_peek + memcpy:                    %7.2f GB/s  (passes %.2f..%.2f) = %5.1f%% of "
               "memcpy\n",
               m_peek / GB, v_peek[0] / GB, v_peek[passes - 1] / GB, 100 * m_peek / m_cpy);
        printf("  first pass (faults the mapping in):        %7.2f GB/s  = %5.1f%% of memcpy\n", cold / GB,
               100 * cold / m_cpy);
        if (st_ok)
                printf("  RAM file allocated on the host: %.1f MiB before the first pass, %.1f MiB after\n",
                       st0.st_blocks * 512 / 1048576.0, st1.st_blocks * 512 / 1048576.0);

        printf("\n2. virtual-address translations over the %zu-address working set (kernel root above), "
               "median of %d interleaved rounds;\n  per CPU-second of the measuring thread (the box is "
               "shared: wall-clock "
               "rates in brackets)\n",
               nws, xrounds);
        printf("  uncached vmie_walk:                    %12.0f /s  [wall %12.0f /s]\n", walk, wwalk);
        printf(
            "  cached vmie_translate (tlb %zu entries, hit rate %.2f%%):\n"
            "                                        %12.0f /s  [wall %12.0f /s] = %.1fx uncached  (goal >= "
            "150 M/s and >= 5x: %s)\n",
            tlb_entries, 100 * hit, cached, wcached, cached / walk,
            goal(cached >= 150e6 && cached >= 5 * walk));
        printf("    (checked: hit rates >= %.0f%% and %.0f%%, 3/4 of a random-slot direct-mapped cache's)\n",
               75 * want_hit, 75 * want_dhit);
        printf("  cached, default tlb (%u entries, hit rate %.2f%%):\n"
               "                                        %12.0f /s  [wall %12.0f /s] = %.1fx uncached\n",
               VMIE_TLB_DEFAULT_ENTRIES, 100 * dhit, dcached, wdcached, dcached / walk);
        printf("  checks: no translation errors; every cached translation (both caches) equals a fresh walk: "
               "frame, page size, flags\n");

        printf("\n3. the same through QMP (one open connection, HMP via human-monitor-command)\n");
        printf(
            "  gva2gpa:           %10.0f /s   -> vmie cached %8.0fx, uncached %6.0fx faster  (goal >= 1000x: "
            "%s)\n",
            q_xlate, wcached / q_xlate, wwalk / q_xlate, goal(wcached / q_xlate >= 1000));
        printf("  xp /1xg (8 B):     %10.0f /s   -> vmie_ram_read 8 B    %12.0f /s = %8.0fx  (goal >= 1000x: "
               "%s)\n",
               q_rd[0], v_rd8, v_rd8 / q_rd[0], goal(v_rd8 / q_rd[0] >= 1000));
        printf("  xp /512xg (4 KiB): %10.0f /s   -> vmie_ram_read 4 KiB  %12.0f /s = %8.0fx  (goal >= 1000x: "
               "%s)\n",
               q_rd[1], v_rd4k, v_rd4k / q_rd[1], goal(v_rd4k / q_rd[1] >= 1000));
        printf("  xp /%uxg (512 KiB) bulk: %8.2f MB/s -> sequential vmie_ram_read %.2f GB/s = %.0fx\n",
               bulk_q, q_bulk / 1e6, m_read / GB, m_read / q_bulk);
        printf("  one-shot xp /1xg (connect + negotiate + command): %.0f /s -> vmie %.0fx\n", q_oneshot,
               v_rd8 / q_oneshot);
        printf("  checks: gva2gpa agreed with vmie_walk on %zu/%zu addresses; no short xp replies; "
               "linux_banner's page via xp == vmie_ram_read\n",
               q_done, q_done);

        printf(
            "\n4. process_vm_readv on the QEMU process (how memflow's qemu connector and vmread read guest\n"
            "   memory: QEMU's mapping of the RAM file from /proc/%d/maps), against vmie_ram_read (%s)\n",
            (int)g_vm.pid, vmie_ram_is_mapped(ram) ? "mapped" : "pread");
        printf("  8 B random (working-set GPAs):   process_vm_readv %12.0f /s, vmie_ram_read %12.0f /s = "
               "%6.1fx\n",
               p_rd8, v_rd8, v_rd8 / p_rd8);
        printf("  4 KiB random (working-set pages): process_vm_readv %11.0f /s, vmie_ram_read %12.0f /s = "
               "%6.1fx\n",
               p_rd4k, v_rd4k, v_rd4k / p_rd4k);
        printf("  1 MiB sequential (all RAM, median of %d passes): process_vm_readv %.2f GB/s, vmie_ram_read "
               "%.2f "
               "GB/s = %.2fx\n",
               passes, m_pvm / GB, m_read / GB, m_read / m_pvm);
        printf("  checks: identical bytes both ways on %zu stable 4 KiB pages (%zu changed between reads, "
               "skipped); no read errors\n",
               pc.same, pc.changing);

out:
        free(ws);
        free(ws_gpa);
        free(gpa8);
        free(gpa4k);
        free(xbuf);
        free(vbuf);
        free(b.dst);
        free(sm.s);
        vmie_tlb_free(tlb);
        vmie_ram_free(ram);
        qmp_free(q);
        vm_cleanup();
        return rc;
}
