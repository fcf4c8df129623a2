/* SPDX-License-Identifier: MIT */
#ifndef VMSIGD_DAEMON_H
#define VMSIGD_DAEMON_H

/* vmsigd as an object: the bus, the socket server, discovery and audit,
 * wired together. main.c adds the command line, signals and systemd. */

#include <stdarg.h>

#include <vmsig/bus.h>

#include "daemon/config.h"

struct vmsigd;

/* Log sink: priority is a syslog level. */
typedef void (*vmsigd_log_fn)(int priority, const char *msg);

/* Build everything and start listening and watching. config stays owned by
 * the caller and must outlive the daemon. config_path is for messages. On
 * error: negative errno and a message in err naming what failed. */
int vmsigd_new(const struct config *config, const char *config_path, vmsigd_log_fn log, struct vmsigd **ret,
               char *err, size_t errlen);
struct vmsig_bus *vmsigd_bus(struct vmsigd *d);
/* Run until vmsigd_stop(); returns 0 or a negative errno. */
int vmsigd_run(struct vmsigd *d);
void vmsigd_stop(struct vmsigd *d);
/* SIGHUP: reopen the audit file, rescan the trigger directory. */
void vmsigd_reload(struct vmsigd *d);
/* Tell every control, release leases, detach every VM, free. NULL-safe. */
struct vmsigd *vmsigd_free(struct vmsigd *d);

#endif
