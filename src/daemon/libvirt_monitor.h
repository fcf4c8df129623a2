/* SPDX-License-Identifier: MIT */
#ifndef VMSIGD_LIBVIRT_MONITOR_H
#define VMSIGD_LIBVIRT_MONITOR_H

/* The per-domain QMP proxy of the libvirt driver (libvirt_driver.h says
 * what it answers and how). One listening unix socket (0600) and one thread
 * per served domain; one client at a time (vmconn), which must be vmsigd's
 * own uid. Everything but lv_mon_event and lv_mon_set_domain is for the
 * libvirt thread only. */

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <libvirt/libvirt.h>

#include "daemon/trigger.h"

struct lv_mon;

/* What the driver asks QEMU once, before serving a domain. */
struct lv_mon_info {
        pid_t pid; /* QEMU's: the thread group of a vCPU thread (query-cpus-fast) */
        uid_t uid; /* who QEMU runs as (the owner of /proc/<pid>) */
        /* the RAM backend's mem-path (qom-get): a file or a directory; ""
         * for memfd or when there is no memory backend object */
        char ram_path[TRIGGER_PATH_MAX + 1];
};

/* Three monitor queries (this taints the domain custom-monitor). The pid
 * must be a process started with "-uuid UUID". 0, or a negative errno with
 * the reason in err. */
int lv_mon_probe(virDomainPtr dom, const char *uuid, struct lv_mon_info *ret, char *err, size_t errlen);

/* Listen on path (replacing a stale socket) and start the thread. dom is
 * referenced. */
int lv_mon_new(virDomainPtr dom, const char *uuid, const char *name, const char *path, struct lv_mon **ret,
               char *err, size_t errlen);
/* Stop the thread, close and unlink the socket. NULL-safe. */
void lv_mon_free(struct lv_mon *m);

/* The domain handle to use from now on (a new connection); NULL while
 * libvirtd is away (commands then fail: "libvirt is not connected"). */
void lv_mon_set_domain(struct lv_mon *m, virDomainPtr dom);
/* Send a QMP event (no data) to the client, if one is connected. */
void lv_mon_event(struct lv_mon *m, const char *name);

const char *lv_mon_uuid(const struct lv_mon *m);
const char *lv_mon_name(const struct lv_mon *m);
bool lv_mon_seen(const struct lv_mon *m);
void lv_mon_set_seen(struct lv_mon *m, bool seen);
struct lv_mon *lv_mon_next(const struct lv_mon *m);
struct lv_mon **lv_mon_next_ptr(struct lv_mon *m);

#endif
