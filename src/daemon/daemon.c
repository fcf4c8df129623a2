/* SPDX-License-Identifier: MIT */
/* vmsigd wiring. Discovery turns trigger files into endpoints with the
 * adapters the seam registry names for their driver; the server turns connections into controls, admitted by
 * the config's uid/gid rules; the audit sink gets every decision. Bad input (a malformed trigger file, a
 * misbehaving client) is logged and ignored: the daemon never exits on it. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <vmsig/server.h>

#include "daemon/audit.h"
#include "daemon/daemon.h"
#include "daemon/discovery.h"
#ifdef VMSIG_LIBVIRT
#include "daemon/libvirt_driver.h"
#endif
#include "util/clock.h"

struct vmsigd {
        const struct config *cfg;
        char config_path[CONFIG_PATH_MAX + 1];
        vmsigd_log_fn log;
        struct vmsig_bus *bus;
        struct vmsig_server *server;
        struct audit *audit;
        struct discovery *disc;
        struct vmsig_io *disc_io;
        char dir_esc[4 * CONFIG_PATH_MAX + 1]; /* trigger_dir, escaped for the log */
        /* Refused trigger files are logged one by one only up to a few per
         * rescan, and per window outside rescans; the rest are counted. */
        unsigned scan_refused_logged, scan_refused_quiet;
        unsigned ev_refused_logged, ev_refused_quiet;
        uint64_t ev_window_end;
        int quiet_tfd;
        struct vmsig_io *quiet_io;
        struct vmsig_control *diag_log; /* adapters' DIAGs into the log */
        bool dir_warned;                /* about the directory's current mode and owner */
        mode_t warned_mode;
        uid_t warned_uid;
        ino_t warned_ino;
#ifdef VMSIG_LIBVIRT
        struct lv_driver *lv;
        struct vmsig_io *lv_io;
#endif
};

#define REFUSED_LOGGED    5 /* per rescan, and per window */
#define REFUSED_WINDOW_MS 10000u

static void logf_(struct vmsigd *d, int prio, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void logf_(struct vmsigd *d, int prio, const char *fmt, ...)
{
        char msg[4096];
        va_list ap;

        if (!d->log)
                return;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        d->log(prio, msg);
}

/* Trigger file names are untrusted bytes: escape them for the log. */
struct esc {
        char s[4 * 256 + 1];
};

static const char *esc(struct esc *buf, const char *in)
{
        trigger_printable(in, buf->s, sizeof(buf->s));
        return buf->s;
}

/* ---- VMs ---- */

/* Attach every seam of the registry with the VM driver's adapter. On the
 * first failure, return it (the caller decides what to undo) with the
 * adapter's name in ret_failed. */
static int attach_seams(struct vmsigd *d, uint32_t ep, const struct trigger *t, const char *filename,
                        const char **ret_failed)
{
        const struct seam_def *seams;
        size_t n;
        struct esc f;

        seams = seam_registry(&n);
        for (size_t i = 0; i < n; i++) {
                struct vmsig_adapter_cfg cfg;
                const struct adapter_desc *ad = seams[i].adapter[t->driver];
                if (!ad) {
                        logf_(d, LOG_WARNING, "VM '%s' (%s): no %s adapter for driver %s in this build",
                              t->name, esc(&f, filename), seams[i].name, trigger_driver_name(t->driver));
                        continue;
                }
                const struct vmsig_adapter_ops *ops = ad->ops;
                trigger_adapter_cfg(t, seams[i].seam, &cfg);
                int r = vmsig_bus_attach(d->bus, ep, ops, &cfg);
                if (r < 0) {
                        if (ret_failed)
                                *ret_failed = ops->name;
                        return r;
                }
        }
        return 0;
}

static int vm_added(const char *name, const struct trigger *t, const char *filename, char *why, size_t whylen,
                    void *ud)
{
        struct vmsigd *d = ud;
        const char *failed = "?";
        struct esc f;
        uint32_t ep;
        int r = vmsig_bus_endpoint_add(d->bus, name, &ep);

        if (r < 0) {
                snprintf(why, whylen, "%s: VM '%s' not served: no endpoint: %s", esc(&f, filename), name,
                         r == -ENOSPC ? "all endpoint slots are in use (limits.max_endpoints)"
                                      : strerror(-r));
                return r;
        }
        r = attach_seams(d, ep, t, filename, &failed);
        if (r < 0) {
                /* All or nothing: a VM is never served half-attached. */
                vmsig_bus_endpoint_remove(d->bus, ep);
                snprintf(why, whylen, "%s: VM '%s' not served: cannot attach %s: %s", esc(&f, filename), name,
                         failed, strerror(-r));
                return r;
        }
        logf_(d, LOG_INFO, "VM '%s' appeared (%s): endpoint %u, driver %s", name, esc(&f, filename), ep,
              trigger_driver_name(t->driver));
        return 0;
}

static void vm_changed(const char *name, const struct trigger *t, const char *filename, unsigned flags,
                       void *ud)
{
        struct vmsigd *d = ud;
        const char *failed = "?";
        char why[1024];
        struct esc f;
        uint32_t ep;
        int r;

        if (vmsig_bus_endpoint_find(d->bus, name, &ep) < 0) {
                if (vm_added(name, t, filename, why, sizeof(why), ud) < 0)
                        logf_(d, LOG_ERR, "%s", why);
                return;
        }
        if (!(flags & (DISCOVERY_CONTENT | DISCOVERY_REPLACED)))
                return; /* only the file's name moved */
        logf_(d, LOG_INFO, "VM '%s' changed (%s): re-attaching its adapters", name, esc(&f, filename));
        size_t n;
        const struct seam_def *seams = seam_registry(&n);
        for (size_t i = 0; i < n; i++)
                vmsig_bus_detach(d->bus, ep, seams[i].seam);
        r = attach_seams(d, ep, t, filename, &failed);
        if (r < 0)
                logf_(d, LOG_ERR, "VM '%s' (%s): cannot attach %s: %s", name, esc(&f, filename), failed,
                      strerror(-r));
}

static void vm_removed(const char *name, const char *filename, void *ud)
{
        struct vmsigd *d = ud;
        uint32_t ep;

        if (vmsig_bus_endpoint_find(d->bus, name, &ep) < 0)
                return;
        struct esc f;
        logf_(d, LOG_INFO, "VM '%s' left (%s removed): endpoint %u detached", name, esc(&f, filename), ep);
        vmsig_bus_endpoint_remove(d->bus, ep);
}

static void quiet_flush(struct vmsigd *d)
{
        if (d->ev_refused_quiet)
                logf_(d, LOG_WARNING,
                      "%u more trigger files in %s refused in the last %u s (not logged one by one)",
                      d->ev_refused_quiet, d->dir_esc, REFUSED_WINDOW_MS / 1000);
        d->ev_refused_quiet = d->ev_refused_logged = 0;
        d->ev_window_end = 0;
}

static void on_quiet_timer(struct vmsig_io *io, int fd, uint32_t events, void *ud)
{
        uint64_t ticks;

        (void)io;
        (void)events;
        while (read(fd, &ticks, sizeof(ticks)) < 0 && errno == EINTR)
                ;
        quiet_flush(ud);
}

static void vm_invalid(const char *filename, const char *error, unsigned flags, void *ud)
{
        struct vmsigd *d = ud;
        const char *what = (flags & DISCOVERY_TRANSIENT) ? "retrying trigger file (transient error)"
                           : (flags & DISCOVERY_GAVE_UP) ? "giving up on trigger file"
                                                         : "ignoring trigger file (until it changes)";

        (void)filename; /* error names it, escaped */
        if (flags & DISCOVERY_IN_SCAN) {
                if (d->scan_refused_logged >= REFUSED_LOGGED) {
                        d->scan_refused_quiet++;
                        return;
                }
                d->scan_refused_logged++;
        } else {
                uint64_t now = vmsig_now_ms();
                if (d->ev_window_end && now >= d->ev_window_end)
                        quiet_flush(d);
                if (!d->ev_window_end) {
                        struct itimerspec its = {.it_value = {REFUSED_WINDOW_MS / 1000, 0}};
                        d->ev_window_end = now + REFUSED_WINDOW_MS;
                        if (d->quiet_tfd >= 0)
                                timerfd_settime(d->quiet_tfd, 0, &its, NULL);
                }
                if (d->ev_refused_logged >= REFUSED_LOGGED) {
                        d->ev_refused_quiet++;
                        return;
                }
                d->ev_refused_logged++;
        }
        logf_(d, LOG_WARNING, "%s: %s", what, error);
}

/* Whoever can write to the trigger directory can remove any VM (and add
 * VMs, within the file checks): say so once per directory, mode and owner. */
static void check_dir_perms(struct vmsigd *d, const struct stat *st)
{
        bool bad = (st->st_mode & (S_IWGRP | S_IWOTH)) || (st->st_uid != 0 && st->st_uid != geteuid());

        if (!bad) {
                d->dir_warned = false;
                return;
        }
        if (d->dir_warned && d->warned_mode == st->st_mode && d->warned_uid == st->st_uid &&
            d->warned_ino == st->st_ino)
                return;
        d->dir_warned = true;
        d->warned_mode = st->st_mode;
        d->warned_uid = st->st_uid;
        d->warned_ino = st->st_ino;
        logf_(d, LOG_WARNING,
              "trigger directory %s is mode %04o, owner uid %u: writable by group or others, or not owned by "
              "root or the daemon (whoever can write there can add and remove VMs)",
              d->dir_esc, (unsigned)(st->st_mode & 07777), (unsigned)st->st_uid);
}

static void on_dir(enum discovery_dir_state state, const char *why, const struct stat *st, void *ud)
{
        struct vmsigd *d = ud;

        if (state == DISCOVERY_DIR_LOST) {
                logf_(d, LOG_ERR,
                      "trigger directory %s was %s: its %zu VMs stay until it is back; watching for it",
                      d->dir_esc, why, d->disc ? discovery_count(d->disc) : (size_t)0);
                return;
        }
        if (why[0])
                logf_(d, LOG_WARNING, "trigger directory %s is back: watching it again, rescanning",
                      d->dir_esc);
        if (st)
                check_dir_perms(d, st);
}

static void on_scanned(const struct discovery_scan_stats *st, void *ud)
{
        struct vmsigd *d = ud;

        if (d->scan_refused_quiet)
                logf_(d, LOG_WARNING, "%u more trigger files refused in %s (not logged one by one)",
                      d->scan_refused_quiet, d->dir_esc);
        d->scan_refused_quiet = d->scan_refused_logged = 0;
        logf_(
            d, LOG_INFO,
            "rescanned %s (%s): %zu files: %zu added, %zu changed, %zu removed, %zu refused, %zu unchanged, "
            "%zu retrying",
            d->dir_esc, st->reason, st->files, st->added, st->changed, st->removed, st->refused,
            st->unchanged, st->retrying);
}

static void on_discovery(struct vmsig_io *io, int fd, uint32_t events, void *ud)
{
        struct vmsigd *d = ud;
        int r = discovery_process(d->disc);

        (void)io;
        (void)fd;
        (void)events;
        if (r < 0)
                logf_(d, LOG_ERR, "trigger directory %s: %s", d->dir_esc, strerror(-r));
}

/* Adapters' DIAGs (a RAM file that cannot be opened, QEMU not answering
 * QMP...) go to the log too: each adapter sends one per failure streak or
 * per new reason, not one per retry. */
static int diag_deliver(struct vmsig_control *ctl, const struct vmsig_event *ev, int *fd, void *ud)
{
        struct vmsigd *d = ud;
        struct vmsig_diag_body b;
        char msg[4 * VMSIG_MSG_MAX + 1];
        const char *vm;

        (void)ctl;
        (void)fd;
        if (ev->hdr.kind != VMSIG_EV_DIAG || ev->hdr.body_len != sizeof(b) ||
            (ev->hdr.flags & VMSIG_F_RETAINED))
                return 0;
        memcpy(&b, ev->body, sizeof(b));
        b.msg[sizeof(b.msg) - 1] = '\0';
        trigger_printable(b.msg, msg, sizeof(msg));
        vm = vmsig_bus_endpoint_name(d->bus, ev->hdr.endpoint);
        logf_(d, b.code < 0 ? LOG_WARNING : LOG_INFO, "VM '%s': %s", vm ? vm : "?", msg);
        return 0;
}

/* ---- libvirt domains: the same attach path as trigger files ---- */

#ifdef VMSIG_LIBVIRT
static int lv_added(const struct trigger *t, const char *origin, char *why, size_t whylen, void *ud)
{
        return vm_added(t->name, t, origin, why, whylen, ud);
}

static void lv_removed(const char *name, const char *origin, void *ud)
{
        struct vmsigd *d = ud;
        uint32_t ep;

        if (vmsig_bus_endpoint_find(d->bus, name, &ep) < 0)
                return;
        logf_(d, LOG_INFO, "VM '%s' left (%s): endpoint %u detached", name, origin, ep);
        vmsig_bus_endpoint_remove(d->bus, ep);
}

static void lv_log(int prio, const char *msg, void *ud)
{
        logf_(ud, prio, "%s", msg);
}

static void on_libvirt(struct vmsig_io *io, int fd, uint32_t events, void *ud)
{
        struct vmsigd *d = ud;

        (void)io;
        (void)fd;
        (void)events;
        lv_driver_process(d->lv);
}

/* Off with libvirt_uri = none. A failure here is logged, never fatal:
 * trigger files keep working. */
static void libvirt_start(struct vmsigd *d)
{
        static const struct lv_driver_callbacks cb = {
            .added = lv_added, .removed = lv_removed, .log = lv_log};
        char dir[CONFIG_PATH_MAX + 1];
        char *slash;
        int r;

        if (!d->cfg->libvirt_uri[0])
                return;
        snprintf(dir, sizeof(dir), "%s", d->cfg->socket);
        slash = strrchr(dir, '/');
        if (slash)
                *slash = '\0';
        if (strlen(dir) + sizeof("/libvirt") > sizeof(dir))
                r = -ENAMETOOLONG;
        else {
                strcat(dir, "/libvirt");
                r = lv_driver_new(d->cfg->libvirt_uri, d->cfg->libvirt_attach, dir, &cb, d, &d->lv);
        }
        if (r >= 0)
                r = vmsig_bus_add_io(d->bus, lv_driver_fd(d->lv), EPOLLIN, on_libvirt, d, &d->lv_io);
        if (r < 0) {
                logf_(d, LOG_ERR, "libvirt driver not started (%s, proxy directory %s): %s",
                      d->cfg->libvirt_uri, dir, strerror(-r));
                d->lv = lv_driver_free(d->lv);
        }
}
#endif

/* ---- admission ---- */

static int admit(void *ud, const struct vmsig_peer *p, uint32_t *ret_caps, char *why, size_t len)
{
        struct vmsigd *d = ud;
        int r = config_admit(d->cfg, p->uid, p->gid, p->groups, p->n_groups, ret_caps);

        if (r < 0)
                snprintf(why, len, "uid %u (gid %u) is not admitted by %s", p->uid, p->gid, d->config_path);
        return r;
}

/* Refused connections, rate-limited by the server (a flood ends in one
 * summary record per uid and window). */
static void refused(void *ud, const struct vmsig_peer *p, int code, const char *why)
{
        struct vmsigd *d = ud;
        struct vmsig_audit_record rec = {.what = VMSIG_AUDIT_DENY,
                                         .uid = p->uid,
                                         .pid = p->pid,
                                         .control_name = "",
                                         .result = code,
                                         .reason = why};

        audit_write(d->audit, &rec);
}

static void server_log(void *ud, int prio, const char *msg)
{
        logf_(ud, prio, "%s", msg);
}

/* ---- lifecycle ---- */

static int mkdir_parent(const char *path)
{
        char dir[CONFIG_PATH_MAX + 1];
        char *slash;

        snprintf(dir, sizeof(dir), "%s", path);
        slash = strrchr(dir, '/');
        if (!slash || slash == dir)
                return 0;
        *slash = '\0';
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

int vmsigd_new(const struct config *config, const char *config_path, vmsigd_log_fn log, struct vmsigd **ret,
               char *err, size_t errlen)
{
        struct vmsig_bus_limits lim;
        struct vmsigd *d = calloc(1, sizeof(*d));
        int r;

        if (!d)
                return -ENOMEM;
        d->cfg = config;
        d->log = log;
        d->quiet_tfd = -1;
        snprintf(d->config_path, sizeof(d->config_path), "%s", config_path ? config_path : "(defaults)");
        config_bus_limits(config, &lim);
        r = vmsig_bus_new(&lim, &d->bus);
        if (r < 0) {
                snprintf(err, errlen, "cannot create the bus: %s", strerror(-r));
                goto fail;
        }
        r = audit_open(config->audit, &d->audit);
        if (r < 0) {
                snprintf(err, errlen, "cannot open audit destination '%s': %s", config->audit, strerror(-r));
                goto fail;
        }
        vmsig_bus_set_audit(d->bus, audit_bus_fn, d->audit);

        struct vmsig_server_config sc = {
            .path = config->socket,
            .mode = config->socket_mode,
            .group = config->has_socket_group ? config->socket_gid : (gid_t)-1,
            .tail_max = (uint32_t)config->limits.tail_max,
            .soft_bytes = config->limits.queue_soft_bytes,
            .soft_seconds = config->limits.queue_soft_bytes ? config->limits.queue_soft_seconds : 0,
            .conns_per_uid = config->limits.conns_per_uid,
            .queue_bytes = lim.queue_bytes,
            .admit = admit,
            .admit_userdata = d,
            .log = server_log,
            .log_userdata = d,
            .refused = refused,
        };
        r = mkdir_parent(config->socket);
        if (r >= 0)
                r = vmsig_server_new(d->bus, &sc, &d->server);
        if (r < 0) {
                snprintf(err, errlen, "cannot listen on %s: %s%s", config->socket, strerror(-r),
                         r == -EADDRINUSE ? " (another vmsigd is running there)" : "");
                goto fail;
        }

        static const struct discovery_callbacks cb = {.added = vm_added,
                                                      .changed = vm_changed,
                                                      .removed = vm_removed,
                                                      .invalid = vm_invalid,
                                                      .dir = on_dir,
                                                      .scanned = on_scanned};
        trigger_printable(config->trigger_dir, d->dir_esc, sizeof(d->dir_esc));
        d->quiet_tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (d->quiet_tfd < 0 ||
            (r = vmsig_bus_add_io(d->bus, d->quiet_tfd, EPOLLIN, on_quiet_timer, d, &d->quiet_io)) < 0) {
                r = d->quiet_tfd < 0 ? -errno : r;
                snprintf(err, errlen, "cannot create a timer: %s", strerror(-r));
                goto fail;
        }
        r = discovery_new(config->trigger_dir, DISCOVERY_CREATE_DIR, &cb, d, &d->disc);
        if (r < 0) {
                snprintf(err, errlen, "cannot watch trigger directory %s: %s", config->trigger_dir,
                         strerror(-r));
                goto fail;
        }
        r = vmsig_bus_add_io(d->bus, discovery_get_fd(d->disc), EPOLLIN, on_discovery, d, &d->disc_io);
        if (r < 0) {
                snprintf(err, errlen, "cannot watch trigger directory %s: %s", config->trigger_dir,
                         strerror(-r));
                goto fail;
        }
        static const struct vmsig_control_info diag_info = {.name = "vmsigd-log", .caps = VMSIG_CAP_STATUS};
        r = vmsig_control_new(d->bus, &diag_info, diag_deliver, NULL, d, &d->diag_log);
        if (r >= 0)
                r = vmsig_control_subscribe(d->diag_log, 0, VMSIG_KIND_BIT(VMSIG_EV_DIAG));
        if (r < 0) {
                snprintf(err, errlen, "cannot subscribe the log to DIAG events: %s", strerror(-r));
                goto fail;
        }
        discovery_rescan_start(d->disc, "startup"); /* VMs that started while we were down */
#ifdef VMSIG_LIBVIRT
        libvirt_start(d);
#endif
        *ret = d;
        return 0;
fail:
        vmsigd_free(d);
        return r;
}

struct vmsig_bus *vmsigd_bus(struct vmsigd *d)
{
        return d->bus;
}

int vmsigd_run(struct vmsigd *d)
{
        return vmsig_bus_run(d->bus);
}

void vmsigd_stop(struct vmsigd *d)
{
        vmsig_bus_exit(d->bus, 0);
}

void vmsigd_reload(struct vmsigd *d)
{
        int r = audit_reopen(d->audit);

        if (r < 0)
                logf_(d, LOG_ERR, "cannot reopen audit destination '%s': %s", d->cfg->audit, strerror(-r));
        struct stat st;

        logf_(d, LOG_INFO, "reloaded: audit reopened; rescanning %s", d->dir_esc);
        if (stat(d->cfg->trigger_dir, &st) == 0)
                check_dir_perms(d, &st);
        if (d->disc)
                discovery_rescan_start(d->disc, "SIGHUP");
}

struct vmsigd *vmsigd_free(struct vmsigd *d)
{
        if (!d)
                return NULL;
        /* Controls first, with a reason; then the VMs. */
        vmsig_bus_shutdown_leases(d->bus);
        d->server = vmsig_server_shutdown(d->server, "vmsigd shutting down");
        d->diag_log = vmsig_control_close(d->diag_log);
        d->disc_io = vmsig_io_free(d->disc_io);
        d->disc = discovery_free(d->disc);
        d->quiet_io = vmsig_io_free(d->quiet_io);
        if (d->quiet_tfd >= 0)
                close(d->quiet_tfd);
#ifdef VMSIG_LIBVIRT
        d->lv_io = vmsig_io_free(d->lv_io);
#endif
        d->bus = vmsig_bus_free(d->bus);
#ifdef VMSIG_LIBVIRT
        d->lv = lv_driver_free(d->lv); /* after the VMs: their adapters use its sockets */
#endif
        d->audit = audit_free(d->audit);
        free(d);
        return NULL;
}
