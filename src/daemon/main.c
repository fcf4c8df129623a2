/* SPDX-License-Identifier: MIT */
/* vmsigd: command line, signals, systemd readiness. The daemon itself is
 * daemon.c. */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <syslog.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "daemon/daemon.h"

#ifndef VMSIG_VERSION
#define VMSIG_VERSION "0.1.0"
#endif

static bool to_journal; /* stderr goes to the journal: prefix <prio> */

static void log_line(int prio, const char *msg)
{
        if (to_journal)
                fprintf(stderr, "<%d>%s\n", prio, msg);
        else
                fprintf(stderr, "vmsigd: %s\n", msg);
}

static void usage(FILE *f)
{
        fprintf(f,
                "Usage: vmsigd [OPTIONS]\n"
                "\n"
                "The vmsig daemon: discovers VMs from trigger files, attaches their adapters, and\n"
                "serves controls (vmsigctl, the client API) on a unix socket.\n"
                "\n"
                "  -c, --config PATH       configuration file (default %s;\n"
                "                          a missing default file means built-in defaults)\n"
                "  -s, --socket PATH       override [daemon] socket\n"
                "  -t, --trigger-dir DIR   override [daemon] trigger_dir\n"
                "  -a, --audit DEST        override [daemon] audit (journal, stderr, file:PATH)\n"
                "      --check-config      load the configuration, print the result, exit\n"
                "  -h, --help              this help\n"
                "  -V, --version           print the version\n"
                "\n"
                "Signals: SIGTERM/SIGINT shut down cleanly (controls are told, leases released);\n"
                "SIGHUP reopens the audit file and rescans the trigger directory.\n"
                "See vmsigd(8), vmsigd.conf(5) and vmsig-trigger(5).\n",
                CONFIG_DEFAULT_PATH);
}

static void print_config(const struct config *c)
{
        char caps[128];

        printf("socket       %s (mode %04o)\n", c->socket, (unsigned)c->socket_mode);
        printf("trigger_dir  %s\n", c->trigger_dir);
        printf("audit        %s\n", c->audit);
        printf("limits       queue_bytes=%zu tail_max=%zu conns_per_uid=%u max_endpoints=%u\n",
               c->limits.queue_bytes, c->limits.tail_max, c->limits.conns_per_uid, c->limits.max_endpoints);
        if (!c->n_rules)
                printf("admission    uid 0 only (no rules)\n");
        for (size_t i = 0; i < c->n_rules; i++)
                printf("admission    [%s] %s\n", c->rules[i].section,
                       vmsig_caps_format(c->rules[i].caps, caps, sizeof(caps)));
}

/* fds one VM costs (RAM file, QMP socket, input, worker wakeups), and what
 * the daemon holds besides VMs and connections. */
#define FDS_PER_VM 5u
#define FDS_BASE   32u

/* The soft fd limit is often 1024, far below what max_endpoints VMs need:
 * take the hard limit, and say if even that cannot hold the configured
 * limits (a connection costs one fd; each admission rule may bring a uid
 * with conns_per_uid of them, and uid 0 is always admitted). */
static void raise_nofile(const struct config *c)
{
        struct rlimit rl;
        char line[512];

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return;
        if (rl.rlim_cur < rl.rlim_max) {
                rlim_t old = rl.rlim_cur;
                rl.rlim_cur = rl.rlim_max;
                if (setrlimit(RLIMIT_NOFILE, &rl) == 0) {
                        snprintf(line, sizeof(line),
                                 "raised the open file limit (RLIMIT_NOFILE) from %llu to %llu",
                                 (unsigned long long)old, (unsigned long long)rl.rlim_cur);
                        log_line(LOG_DEBUG, line);
                } else {
                        snprintf(line, sizeof(line), "cannot raise RLIMIT_NOFILE from %llu to %llu: %s",
                                 (unsigned long long)old, (unsigned long long)rl.rlim_max, strerror(errno));
                        log_line(LOG_WARNING, line);
                        rl.rlim_cur = old;
                }
        }
        unsigned long long vms = (unsigned long long)c->limits.max_endpoints * FDS_PER_VM;
        unsigned long long conns = (unsigned long long)c->limits.conns_per_uid * (c->n_rules + 1);
        unsigned long long need = FDS_BASE + vms + conns;
        if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
                snprintf(
                    line, sizeof(line),
                    "open file limit %llu is below what the configured limits can use: %llu (%u VMs "
                    "(limits.max_endpoints) x %u fds + %u connections (limits.conns_per_uid) x %zu admitted "
                    "uids or groups + %u); raise LimitNOFILE or lower the limits",
                    (unsigned long long)rl.rlim_cur, need, c->limits.max_endpoints, FDS_PER_VM,
                    c->limits.conns_per_uid, c->n_rules + 1, FDS_BASE);
                log_line(LOG_WARNING, line);
        }
}

struct sigctx {
        struct vmsigd *d;
        int fd;
};

static void on_signal(struct vmsig_io *io, int fd, uint32_t events, void *ud)
{
        struct sigctx *s = ud;
        struct signalfd_siginfo si;

        while (read(fd, &si, sizeof(si)) == sizeof(si)) {
                if (si.ssi_signo == SIGHUP) {
                        vmsigd_reload(s->d);
                } else {
                        log_line(LOG_INFO, si.ssi_signo == SIGTERM ? "SIGTERM: shutting down"
                                                                   : "SIGINT: shutting down");
                        sd_notify(0, "STOPPING=1");
                        vmsigd_stop(s->d);
                }
        }
}

/* A MEMWRITE source (up to tail_max, 1 MiB by default) is copied into
 * fresh heap memory per command. Left to glibc, a block that size is
 * mmap'ed, or trimmed back once freed, so every write faults its pages in
 * again: 1 MiB tail writes ran 14x slower than with the memory kept. Keep
 * blocks below 32 MiB on the heap and freed memory for reuse (the daemon's
 * RSS then stays at its high-water mark, a few MiB). */
static void malloc_keep_memory(void)
{
        (void)mallopt(M_MMAP_THRESHOLD, 32 << 20);
        (void)mallopt(M_TRIM_THRESHOLD, 64 << 20);
}

int main(int argc, char **argv)
{
        enum { OPT_CHECK = 0x100 };
        static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                             {"socket", required_argument, NULL, 's'},
                                             {"trigger-dir", required_argument, NULL, 't'},
                                             {"audit", required_argument, NULL, 'a'},
                                             {"check-config", no_argument, NULL, OPT_CHECK},
                                             {"help", no_argument, NULL, 'h'},
                                             {"version", no_argument, NULL, 'V'},
                                             {0}};
        const char *config_path = NULL, *socket_path = NULL, *trigger_dir = NULL, *audit = NULL;
        bool check = false;
        struct config *cfg = NULL;
        struct vmsigd *d = NULL;
        char err[1024] = "";
        int c, r;

        malloc_keep_memory();
        while ((c = getopt_long(argc, argv, "c:s:t:a:hV", opts, NULL)) != -1) {
                switch (c) {
                case 'c':
                        config_path = optarg;
                        break;
                case 's':
                        socket_path = optarg;
                        break;
                case 't':
                        trigger_dir = optarg;
                        break;
                case 'a':
                        audit = optarg;
                        break;
                case OPT_CHECK:
                        check = true;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                case 'V':
                        printf("vmsigd %s\n", VMSIG_VERSION);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "vmsigd: unexpected argument '%s'\n", argv[optind]);
                usage(stderr);
                return 2;
        }
        to_journal = getenv("JOURNAL_STREAM") != NULL;

        /* An explicit --config must exist; the default path may be absent. */
        r = config_load(config_path, config_path ? 0 : CONFIG_MISSING_OK, &cfg, err, sizeof(err));
        if (r < 0) {
                log_line(LOG_ERR, err[0] ? err : strerror(-r));
                return 1;
        }
        if ((socket_path && strlen(socket_path) > CONFIG_SOCKET_MAX) ||
            (trigger_dir && strlen(trigger_dir) > CONFIG_PATH_MAX) ||
            (audit && strlen(audit) >= sizeof(cfg->audit))) {
                log_line(LOG_ERR, "a command-line path is too long");
                config_free(cfg);
                return 2;
        }
        if (socket_path)
                snprintf(cfg->socket, sizeof(cfg->socket), "%s", socket_path);
        if (trigger_dir)
                snprintf(cfg->trigger_dir, sizeof(cfg->trigger_dir), "%s", trigger_dir);
        if (audit)
                snprintf(cfg->audit, sizeof(cfg->audit), "%s", audit);
        if (check) {
                print_config(cfg);
                config_free(cfg);
                return 0;
        }

        raise_nofile(cfg);

        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);

        r = vmsigd_new(cfg, config_path ? config_path : CONFIG_DEFAULT_PATH, log_line, &d, err, sizeof(err));
        if (r < 0) {
                log_line(LOG_ERR, err);
                config_free(cfg);
                return 1;
        }
        struct sigctx sc = {.d = d, .fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC)};
        if (sc.fd < 0 || vmsig_bus_add_io(vmsigd_bus(d), sc.fd, EPOLLIN, on_signal, &sc, NULL) < 0) {
                log_line(LOG_ERR, "cannot watch signals");
                vmsigd_free(d);
                config_free(cfg);
                return 1;
        }
        /* Ready only now: the socket listens and the trigger directory is watched. */
        sd_notifyf(0, "READY=1\nSTATUS=serving %s, watching %s", cfg->socket, cfg->trigger_dir);
        {
                char line[1200];
                snprintf(line, sizeof(line), "ready: socket %s, trigger directory %s, audit %s", cfg->socket,
                         cfg->trigger_dir, cfg->audit);
                log_line(LOG_INFO, line);
        }
        r = vmsigd_run(d);
        vmsigd_free(d);
        close(sc.fd);
        config_free(cfg);
        log_line(LOG_INFO, "stopped");
        return r < 0 ? 1 : 0;
}
