/* SPDX-License-Identifier: MIT */
#ifndef VMSIGD_DISCOVERY_H
#define VMSIGD_DISCOVERY_H

/* VM discovery: an inotify watch on the trigger directory, independent of
 * any event loop. The caller polls discovery_get_fd() for POLLIN/EPOLLIN and
 * calls discovery_process(); callbacks report what changed.
 *
 * Discovery keeps the set of files it knows and reconciles against it: on
 * events it re-reads just the files they name, on discovery_rescan() (call
 * it once after discovery_new, and it runs by itself on IN_Q_OVERFLOW) it
 * re-reads the whole directory. Within one batch, departures are held back
 * until arrivals are known, so a VM whose file is renamed, replaced or
 * whose name moves to another file comes out as changed(), never as a
 * removed()/added() pair or a leak. Callback order in a batch: every
 * removed, then changed, then added, then invalid.
 *
 * Callbacks run inside discovery_process()/discovery_rescan() and must not
 * call back into this discovery object (other than reading its fd). */

#include <stdbool.h>
#include <stddef.h>

#include "daemon/trigger.h"

struct discovery;

/* changed() flags: why a VM is reported changed. */
enum {
        DISCOVERY_CONTENT = 1u << 0,  /* some trigger field differs */
        DISCOVERY_RENAMED = 1u << 1,  /* the VM now lives in another file */
        DISCOVERY_REPLACED = 1u << 2, /* same content, but a new file (inode or mtime):
                                         the VM was probably restarted */
};

struct discovery_callbacks {
        void (*added)(const char *name, const struct trigger *t, const char *filename, void *userdata);
        void (*changed)(const char *name, const struct trigger *t, const char *filename, unsigned flags,
                        void *userdata);
        void (*removed)(const char *name, const char *filename, void *userdata);
        /* A file that is not (or no longer) a usable trigger: the message
         * names the file, line and field. The file is ignored until it
         * changes. If it previously provided a VM, removed() came first. */
        void (*invalid)(const char *filename, const char *error, void *userdata);
};

enum {
        DISCOVERY_CREATE_DIR = 1u << 0, /* mkdir the directory (0755) if missing */
};

/* Opens the directory and sets up the watch; reports nothing yet. Any
 * callback may be NULL. dir is the path to watch. */
int discovery_new(const char *dir, unsigned flags, const struct discovery_callbacks *cb, void *userdata,
                  struct discovery **ret);
/* Accepts NULL, returns NULL. Reports nothing. */
struct discovery *discovery_free(struct discovery *d);

/* The inotify fd (IN_NONBLOCK | IN_CLOEXEC): poll it for input. */
int discovery_get_fd(const struct discovery *d);

/* Read pending events (until EAGAIN or a bounded batch) and report. Returns
 * the number of callbacks made (>= 0), or negative errno. -ENOENT when the
 * watched directory was deleted or moved away: every known VM has then
 * been reported removed, and the object is finished (free it; make a new
 * one when the directory is back). */
int discovery_process(struct discovery *d);

/* Re-read the whole directory and reconcile. Returns callbacks made or
 * negative errno. */
int discovery_rescan(struct discovery *d);

/* Known VMs (valid trigger files). */
size_t discovery_count(const struct discovery *d);
/* Look a VM up by name; NULL if unknown. ret_filename (optional) gets the
 * file providing it. Pointers stay valid until the next process/rescan. */
const struct trigger *discovery_find(const struct discovery *d, const char *name, const char **ret_filename);

#endif
