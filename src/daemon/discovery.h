/* SPDX-License-Identifier: MIT */
#ifndef VMSIGD_DISCOVERY_H
#define VMSIGD_DISCOVERY_H

/* VM discovery: an inotify watch on the trigger directory, independent of
 * any event loop. The caller polls discovery_get_fd() for POLLIN/EPOLLIN and
 * calls discovery_process(); callbacks report what changed.
 *
 * Discovery keeps the set of files it knows and reconciles against it: on
 * events it re-reads just the files they name, on a rescan it re-reads the
 * whole directory. Departures are held back until arrivals are known (for
 * the whole of a rescan), so a VM whose file is renamed, replaced or whose
 * name moves to another file comes out as changed(), never as a
 * removed()/added() pair or a leak. Callback order in a batch: every
 * removed, then changed, then added, then invalid.
 *
 * Work is bounded per discovery_process() call: a rescan of a large
 * directory runs in slices across calls (the fd stays readable until it is
 * done), so the caller's loop keeps serving everything else.
 *
 * The directory itself is watched too (through its parent): when it is
 * deleted, moved away or replaced, the known VMs stay (a missing directory
 * says nothing about them; deleting a file does) and discovery re-arms on
 * the directory at that path as soon as there is one, then rescans it.
 *
 * A file that cannot be read for a transient reason (out of fds or memory)
 * is retried with backoff (100 ms doubling to 5 s, 12 attempts), never
 * refused for good; the VM it provided, if any, stays meanwhile.
 *
 * Callbacks run inside discovery_process()/discovery_rescan() and must not
 * call back into this discovery object (other than reading its fd and
 * discovery_count/discovery_find). */

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>

#include "daemon/trigger.h"

struct discovery;

/* changed() flags: why a VM is reported changed. */
enum {
        DISCOVERY_CONTENT = 1u << 0,  /* some trigger field differs */
        DISCOVERY_RENAMED = 1u << 1,  /* the VM now lives in another file */
        DISCOVERY_REPLACED = 1u << 2, /* same content, but a new file (inode or mtime):
                                         the VM was probably restarted */
};

/* invalid() flags. */
enum {
        DISCOVERY_TRANSIENT = 1u << 0, /* could not be read for now: retried by itself */
        DISCOVERY_GAVE_UP = 1u << 1,   /* transient failures went on too long: retried
                                          when it changes or on a rescan */
        DISCOVERY_IN_SCAN = 1u << 2,   /* reported by a rescan (else by an event) */
};

enum discovery_dir_state {
        DISCOVERY_DIR_ARMED, /* watching (again); a rescan follows */
        DISCOVERY_DIR_LOST,  /* deleted, moved away or replaced: VMs stay */
};

/* What one rescan did. */
struct discovery_scan_stats {
        const char *reason; /* as given to discovery_rescan_start(), or "inotify overflow",
                               "directory re-armed" */
        size_t files;       /* files looked at */
        size_t added, changed, removed, refused, unchanged, retrying;
};

/* added() returns 0, or a negative errno when the VM could not be taken on
 * (nothing of it is left behind): a transient error (trigger_error_transient)
 * has the file retried like a failed read, another refuses the file with
 * why (set by the callee) as the message. */
struct discovery_callbacks {
        int (*added)(const char *name, const struct trigger *t, const char *filename, char *why,
                     size_t whylen, void *userdata);
        void (*changed)(const char *name, const struct trigger *t, const char *filename, unsigned flags,
                        void *userdata);
        void (*removed)(const char *name, const char *filename, void *userdata);
        /* A file that is not (or no longer, or not yet) a usable trigger: the
         * message names the file, line and field, with every untrusted byte
         * escaped. Without DISCOVERY_TRANSIENT the file is ignored until it
         * changes. If it previously provided a VM, removed() came first
         * (never for a transient problem: the VM stays). */
        void (*invalid)(const char *filename, const char *error, unsigned flags, void *userdata);
        /* The directory was lost or (re-)armed. why: "deleted", "moved away",
         * "replaced by another directory", "" for the first arming. st: the
         * armed directory (NULL when lost). */
        void (*dir)(enum discovery_dir_state state, const char *why, const struct stat *st, void *userdata);
        /* A rescan finished. */
        void (*scanned)(const struct discovery_scan_stats *stats, void *userdata);
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

/* An epoll fd (CLOEXEC) covering the inotify fd, retry timers and pending
 * rescan work: poll it for input. */
int discovery_get_fd(const struct discovery *d);

/* Do a bounded amount of pending work: inotify events, due retries, one
 * slice of a rescan, re-arming a lost directory. Returns the number of
 * callbacks made (>= 0), or negative errno. */
int discovery_process(struct discovery *d);

/* Start a rescan of the whole directory, done in slices by
 * discovery_process(); scanned() reports it. Also checks that the path still
 * names the watched directory (re-arms otherwise). If a rescan is running,
 * another one follows it. reason is kept for scanned() (a static string). */
void discovery_rescan_start(struct discovery *d, const char *reason);

/* Rescan the whole directory now, to the end (for tests and tools).
 * Returns callbacks made or negative errno (-ENOENT: the directory is lost). */
int discovery_rescan(struct discovery *d);

/* Known VMs (valid trigger files). */
size_t discovery_count(const struct discovery *d);
/* Look a VM up by name; NULL if unknown. ret_filename (optional) gets the
 * file providing it. Pointers stay valid until the next process/rescan. */
const struct trigger *discovery_find(const struct discovery *d, const char *name, const char **ret_filename);

#endif
