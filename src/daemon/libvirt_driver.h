/* SPDX-License-Identifier: MIT */
#ifndef VMSIGD_LIBVIRT_DRIVER_H
#define VMSIGD_LIBVIRT_DRIVER_H

/* The libvirt driver: vmsigd finds the running libvirt domains that opt in
 * (the <vmsig:vm xmlns:vmsig="https://vmsig.dev/ns/1"/> metadata element,
 * or with libvirt_attach=shared-ram every domain whose RAM is shared file or
 * memfd backing) and serves each as a VM of driver "libvirt", through the
 * same attach path as trigger files (daemon.c). No hook, no
 * <qemu:commandline>, no trigger file.
 *
 * Each served domain gets a private QMP socket (0600, in a 0700 directory
 * next to vmsigd's socket) that the driver answers itself, so the QEMU
 * adapters (memctx, input, vmhost) run unchanged over it; that socket is the
 * monitor-transport seam. Behind it:
 *   - query-status and the power commands (stop, cont, system_reset,
 *     system_powerdown, system_wakeup, quit) are libvirt API calls
 *     (virDomainGetState/Suspend/Resume/Reset/Shutdown/PMWakeup/Destroy),
 *     and the QMP events the adapters follow (STOP, RESUME, RESET,
 *     SHUTDOWN, SUSPEND, GUEST_PANICKED) come from libvirt's domain events:
 *     libvirt and vmsig never disagree, and none of it taints the domain;
 *   - query-*, qom-get, qom-list, input-send-event and human-monitor-command
 *     "info ..." go to QEMU through virDomainQemuMonitorCommand (this taints
 *     the domain "custom-monitor", once per QEMU process);
 *   - anything else is refused.
 *
 * Threads: one libvirt thread runs libvirt's default event loop, the
 * connection, the domain events and the reconnect backoff; one thread per
 * served domain answers its socket (monitor commands are blocking RPCs).
 * The loop thread only sees lv_driver_fd() and the callbacks from
 * lv_driver_process(). */

#include <stddef.h>

#include "daemon/config.h"
#include "daemon/trigger.h"

#define LV_METADATA_NS "https://vmsig.dev/ns/1"

struct lv_driver;

struct lv_driver_callbacks {
        /* A domain to serve: t->driver is VM_DRIVER_LIBVIRT. 0, or a
         * negative errno with why (the driver logs it). */
        int (*added)(const struct trigger *t, const char *origin, char *why, size_t whylen, void *userdata);
        void (*removed)(const char *name, const char *origin, void *userdata);
        void (*log)(int priority, const char *msg, void *userdata);
};

/* Start the driver (it connects in its own thread, retrying with backoff
 * while libvirt is unreachable). proxy_dir: where the per-domain sockets
 * go (created 0700). */
int lv_driver_new(const char *uri, enum config_libvirt_attach attach, const char *proxy_dir,
                  const struct lv_driver_callbacks *cb, void *userdata, struct lv_driver **ret);
/* An eventfd: readable when lv_driver_process() has callbacks to make. */
int lv_driver_fd(const struct lv_driver *d);
/* Loop thread: make the pending callbacks. */
void lv_driver_process(struct lv_driver *d);
/* Stop the threads, close the sockets. Makes no callbacks. NULL-safe. */
struct lv_driver *lv_driver_free(struct lv_driver *d);

#endif
