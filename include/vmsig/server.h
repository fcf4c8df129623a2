/* SPDX-License-Identifier: MIT */
#ifndef VMSIG_SERVER_H
#define VMSIG_SERVER_H

/* The unix-socket side of the bus: every accepted connection becomes a
 * control. Admission (uid/gid -> capabilities) is the embedder's decision,
 * taken once at accept from SO_PEERCRED. Loop thread only. */

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <vmsig/bus.h>

#ifdef __cplusplus
extern "C" {
#endif

struct vmsig_server;

struct vmsig_peer {
        uid_t uid;
        gid_t gid;
        pid_t pid;
        const gid_t *groups; /* supplementary groups (SO_PEERGROUPS) */
        size_t n_groups;
};

/* Return 0 and the capabilities, or a negative errno and a reason that is
 * sent to the client in an ERROR frame (e.g. "uid 1234 is not admitted"). */
typedef int (*vmsig_admit_fn)(void *userdata, const struct vmsig_peer *peer, uint32_t *ret_caps, char *why,
                              size_t whylen);
/* Called for each connection-level event worth a log line (refusals,
 * violations, slow controls). Optional. */
typedef void (*vmsig_server_log_fn)(void *userdata, int priority, const char *msg);
/* A refused connection (admission, per-uid limit), for the audit. Refusals
 * are rate-limited per uid: the first few in a window come one by one; the
 * rest are counted and reported once, as a summary in why with pid 0. */
typedef void (*vmsig_server_refused_fn)(void *userdata, const struct vmsig_peer *peer, int code,
                                        const char *why);

struct vmsig_server_config {
        const char *path;       /* socket path; ignored by vmsig_server_new_fd */
        mode_t mode;            /* socket file mode, e.g. 0660; 0 = leave */
        gid_t group;            /* (gid_t)-1 = leave */
        uint32_t tail_max;      /* MEMWRITE source tail bound; default 1 MiB */
        size_t out_bytes;       /* per-connection socket output buffer; default 256 KiB */
        size_t queue_bytes;     /* the bus queue bound (vmsig_bus_limits), told in WELCOME; default 1 MiB */
        size_t soft_bytes;      /* queued beyond this for soft_seconds -> disconnect */
        unsigned soft_seconds;  /* 0 (default) disables the soft limit */
        unsigned conns_per_uid; /* default 16 */
        vmsig_admit_fn admit;
        void *admit_userdata;
        vmsig_server_log_fn log;
        void *log_userdata;
        vmsig_server_refused_fn refused; /* optional; userdata is log_userdata */
};

/* Bind and listen on cfg->path (a stale socket file nobody answers on is
 * replaced; a live one is -EADDRINUSE). */
int vmsig_server_new(struct vmsig_bus *bus, const struct vmsig_server_config *cfg, struct vmsig_server **ret);
/* Use an already listening socket (systemd socket activation). */
int vmsig_server_new_fd(struct vmsig_bus *bus, int listen_fd, const struct vmsig_server_config *cfg,
                        struct vmsig_server **ret);
/* Tell every client (ERROR -ESHUTDOWN with msg), flush, close them, stop
 * listening, unlink the socket. Accepts NULL, returns NULL. */
struct vmsig_server *vmsig_server_shutdown(struct vmsig_server *srv, const char *msg);
unsigned vmsig_server_connections(const struct vmsig_server *srv);

#ifdef __cplusplus
}
#endif
#endif
