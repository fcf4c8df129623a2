/* SPDX-License-Identifier: MIT */
/* vmsigd wiring. Discovery turns trigger files into endpoints with their
 * adapter trio; the server turns connections into controls, admitted by the
 * config's uid/gid rules; the audit sink gets every decision. Bad input (a
 * malformed trigger file, a misbehaving client) is logged and ignored: the
 * daemon never exits on it. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <vmsig/server.h>

#include "daemon/audit.h"
#include "daemon/daemon.h"
#include "daemon/discovery.h"

struct vmsigd {
        const struct config *cfg;
        char config_path[CONFIG_PATH_MAX + 1];
        vmsigd_log_fn log;
        struct vmsig_bus *bus;
        struct vmsig_server *server;
        struct audit *audit;
        struct discovery *disc;
        struct vmsig_io *disc_io;
};

static void logf_(struct vmsigd *d, int prio, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void logf_(struct vmsigd *d, int prio, const char *fmt, ...)
{
        char msg[1024];
        va_list ap;

        if (!d->log)
                return;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        d->log(prio, msg);
}

/* ---- VMs ---- */

static const struct vmsig_adapter_ops *ops_for(enum trigger_driver driver, uint8_t seam)
{
        bool stub = driver == TRIGGER_DRIVER_STUB;

        switch (seam) {
        case VMSIG_SRC_MEMCTX:
                return stub ? vmsig_memctx_stub_ops() : vmsig_memctx_ops();
        case VMSIG_SRC_INPUT:
                return stub ? vmsig_input_stub_ops() : vmsig_input_ops();
        default:
                return stub ? vmsig_vmhost_stub_ops() : vmsig_vmhost_ops();
        }
}

static void attach_trio(struct vmsigd *d, uint32_t ep, const struct trigger *t, const char *filename)
{
        for (uint8_t seam = VMSIG_SRC_MEMCTX; seam <= VMSIG_SRC_VMHOST; seam++) {
                struct vmsig_adapter_cfg cfg;
                const struct vmsig_adapter_ops *ops = ops_for(t->driver, seam);
                if (!ops) {
                        logf_(d, LOG_WARNING, "VM '%s' (%s): no %s adapter for driver %s in this build", t->name,
                              filename, vmsig_source_name(seam), trigger_driver_name(t->driver));
                        continue;
                }
                trigger_adapter_cfg(t, seam, &cfg);
                int r = vmsig_bus_attach(d->bus, ep, ops, &cfg);
                if (r < 0)
                        logf_(d, LOG_ERR, "VM '%s' (%s): cannot attach %s: %s", t->name, filename, ops->name,
                              strerror(-r));
        }
}

static void vm_added(const char *name, const struct trigger *t, const char *filename, void *ud)
{
        struct vmsigd *d = ud;
        uint32_t ep;
        int r = vmsig_bus_endpoint_add(d->bus, name, &ep);

        if (r < 0) {
                logf_(d, LOG_ERR, "VM '%s' (%s): no endpoint: %s", name, filename,
                      r == -ENOSPC ? "all endpoint slots are in use (limits.max_endpoints)" : strerror(-r));
                return;
        }
        logf_(d, LOG_INFO, "VM '%s' appeared (%s): endpoint %u, driver %s", name, filename, ep,
              trigger_driver_name(t->driver));
        attach_trio(d, ep, t, filename);
}

static void vm_changed(const char *name, const struct trigger *t, const char *filename, unsigned flags, void *ud)
{
        struct vmsigd *d = ud;
        uint32_t ep;

        if (vmsig_bus_endpoint_find(d->bus, name, &ep) < 0) {
                vm_added(name, t, filename, ud);
                return;
        }
        if (!(flags & (DISCOVERY_CONTENT | DISCOVERY_REPLACED)))
                return; /* only the file's name moved */
        logf_(d, LOG_INFO, "VM '%s' changed (%s): re-attaching its adapters", name, filename);
        for (uint8_t seam = VMSIG_SRC_MEMCTX; seam <= VMSIG_SRC_VMHOST; seam++)
                vmsig_bus_detach(d->bus, ep, seam);
        attach_trio(d, ep, t, filename);
}

static void vm_removed(const char *name, const char *filename, void *ud)
{
        struct vmsigd *d = ud;
        uint32_t ep;

        if (vmsig_bus_endpoint_find(d->bus, name, &ep) < 0)
                return;
        logf_(d, LOG_INFO, "VM '%s' left (%s removed): endpoint %u detached", name, filename, ep);
        vmsig_bus_endpoint_remove(d->bus, ep);
}

static void vm_invalid(const char *filename, const char *error, void *ud)
{
        logf_(ud, LOG_WARNING, "ignoring trigger file: %s", error);
}

static void on_discovery(struct vmsig_io *io, int fd, uint32_t events, void *ud)
{
        struct vmsigd *d = ud;
        int r = discovery_process(d->disc);

        if (r == -ENOENT) {
                logf_(d, LOG_ERR, "trigger directory %s went away; restart vmsigd once it is back",
                      d->cfg->trigger_dir);
                d->disc_io = vmsig_io_free(d->disc_io);
                d->disc = discovery_free(d->disc);
        }
}

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
        struct vmsig_audit_record rec = {.what = VMSIG_AUDIT_DENY, .uid = p->uid, .pid = p->pid,
                                         .control_name = "", .result = code, .reason = why};

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

        static const struct discovery_callbacks cb = {
                .added = vm_added, .changed = vm_changed, .removed = vm_removed, .invalid = vm_invalid};
        r = discovery_new(config->trigger_dir, DISCOVERY_CREATE_DIR, &cb, d, &d->disc);
        if (r < 0) {
                snprintf(err, errlen, "cannot watch trigger directory %s: %s", config->trigger_dir, strerror(-r));
                goto fail;
        }
        r = vmsig_bus_add_io(d->bus, discovery_get_fd(d->disc), EPOLLIN, on_discovery, d, &d->disc_io);
        if (r < 0) {
                snprintf(err, errlen, "cannot watch trigger directory %s: %s", config->trigger_dir, strerror(-r));
                goto fail;
        }
        discovery_rescan(d->disc); /* VMs that started while we were down */
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
        if (d->disc)
                discovery_rescan(d->disc);
        logf_(d, LOG_INFO, "reloaded: audit reopened, %s rescanned", d->cfg->trigger_dir);
}

struct vmsigd *vmsigd_free(struct vmsigd *d)
{
        if (!d)
                return NULL;
        /* Controls first, with a reason; then the VMs. */
        vmsig_bus_shutdown_leases(d->bus);
        d->server = vmsig_server_shutdown(d->server, "vmsigd shutting down");
        d->disc_io = vmsig_io_free(d->disc_io);
        d->disc = discovery_free(d->disc);
        d->bus = vmsig_bus_free(d->bus);
        d->audit = audit_free(d->audit);
        free(d);
        return NULL;
}
