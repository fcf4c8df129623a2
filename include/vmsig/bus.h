/* SPDX-License-Identifier: MIT */
#ifndef VMSIG_BUS_H
#define VMSIG_BUS_H

/* The bus: one epoll loop thread owns endpoints, adapters, controls,
 * subscriptions, retained state and leases. Every function here is
 * loop-thread only, except the adapter sink's emit (see adapter.h).
 * Errors are negative errno values. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <vmsig/adapter.h>
#include <vmsig/event.h>

#ifdef __cplusplus
extern "C" {
#endif

struct vmsig_bus;
struct vmsig_control;
struct vmsig_io;

/* Capabilities: default deny. */
enum vmsig_cap {
        VMSIG_CAP_ROSTER = 1u << 0,   /* see ROSTER and lease announcements */
        VMSIG_CAP_MEMCTX = 1u << 1,   /* receive MEMCTX (+ read-only RAM fd) */
        VMSIG_CAP_STATUS = 1u << 2,   /* see STATUS and DIAG, send STATUS_QUERY */
        VMSIG_CAP_INPUT = 1u << 3,    /* input lease + input commands */
        VMSIG_CAP_POWER = 1u << 4,    /* power lease + power commands */
        VMSIG_CAP_MEMWRITE = 1u << 5, /* memwrite lease + CMD_MEMWRITE */
        VMSIG_CAP_ALL = 0x3fu,
};
const char *vmsig_cap_name(uint32_t single_cap);
/* Parse "roster,memctx,input" or "all" or "none"; -EINVAL naming nothing (the
 * caller knows the string). */
int vmsig_caps_parse(const char *s, uint32_t *ret);
/* Format caps as "roster,memctx" into buf; returns buf. */
char *vmsig_caps_format(uint32_t caps, char *buf, size_t len);

/* VMSIG_KIND_BIT and VMSIG_KINDS_ALL_UP (subscription masks): event.h. */

struct vmsig_bus_limits {
        size_t queue_bytes;     /* per control; default 1 MiB */
        unsigned queue_fds;     /* fds queued per control; default 16 */
        unsigned handoff_slots; /* worker -> loop ring; default 4096 */
        size_t memwrite_max;    /* extent bound for CMD_MEMWRITE; default 1 MiB */
        unsigned max_endpoints; /* default 1024 */
};
void vmsig_bus_limits_default(struct vmsig_bus_limits *ret);

/* The calling thread becomes the loop thread: create the bus on the thread
 * that will run it. */
int vmsig_bus_new(const struct vmsig_bus_limits *limits, struct vmsig_bus **ret);
/* Closes every control (closed callback, reason -ESHUTDOWN), revokes leases,
 * detaches and reaps every adapter. Accepts NULL, returns NULL. */
struct vmsig_bus *vmsig_bus_free(struct vmsig_bus *bus);

/* The epoll fd, to nest the bus in another loop (poll it for EPOLLIN; then
 * call vmsig_bus_run_once(bus, 0)). Once it was asked for, it also turns
 * readable when a control queues work between iterations
 * (vmsig_control_send and the like). */
int vmsig_bus_get_fd(struct vmsig_bus *bus);
/* One iteration: wait up to timeout_ms (-1 forever; 0 if work is pending),
 * handle readiness, dispatch, deliver, reap. Returns the number of events
 * dispatched (>= 0) or a negative errno. */
int vmsig_bus_run_once(struct vmsig_bus *bus, int timeout_ms);
/* Iterate until vmsig_bus_exit(); returns the exit code. */
int vmsig_bus_run(struct vmsig_bus *bus);
void vmsig_bus_exit(struct vmsig_bus *bus, int code);
/* Before closing the controls at shutdown: end every lease with
 * LEASE_REVOKE reason 4 (shutdown; audited as such) and run one pass of the
 * loop without waiting, so controls still connected receive the REVOKEs. */
void vmsig_bus_shutdown_leases(struct vmsig_bus *bus);

/* ---- audit ---- */

enum vmsig_audit_what {
        VMSIG_AUDIT_DENY = 1,    /* capability, lease, source or extent refused */
        VMSIG_AUDIT_COMMAND = 2, /* destructive command accepted for an adapter */
        VMSIG_AUDIT_RESULT = 3,  /* destructive command finished (its ACT_ACK) */
        VMSIG_AUDIT_LEASE = 4,   /* lease granted / released / revoked */
};
struct vmsig_audit_record {
        enum vmsig_audit_what what;
        uint32_t control_id;
        const char *control_name;
        uint32_t uid;
        int32_t pid;
        uint32_t endpoint;
        uint16_t kind; /* command kind */
        uint64_t corr;
        int32_t result;     /* 0 or negative errno */
        const char *reason; /* human-readable, never NULL */
};
typedef void (*vmsig_audit_fn)(const struct vmsig_audit_record *rec, void *userdata);
void vmsig_bus_set_audit(struct vmsig_bus *bus, vmsig_audit_fn fn, void *userdata);

/* ---- foreign fds (daemon listeners, inotify, timers) ---- */

typedef void (*vmsig_io_fn)(struct vmsig_io *io, int fd, uint32_t events, void *userdata);
int vmsig_bus_add_io(struct vmsig_bus *bus, int fd, uint32_t events, vmsig_io_fn fn, void *userdata,
                     struct vmsig_io **ret);
int vmsig_io_set_events(struct vmsig_io *io, uint32_t events);
/* Stops watching (the fd stays open: the caller owns it). Safe inside the
 * io's own callback. Accepts NULL, returns NULL. vmsig_bus_free frees any io
 * still registered. */
struct vmsig_io *vmsig_io_free(struct vmsig_io *io);

/* ---- post hooks ---- */

/* Runs once at the end of every loop iteration, after dispatch and delivery:
 * the place to batch output (one write per connection per iteration instead
 * of one per event). */
struct vmsig_post;
typedef void (*vmsig_post_fn)(struct vmsig_post *post, void *userdata);
int vmsig_bus_add_post(struct vmsig_bus *bus, vmsig_post_fn fn, void *userdata, struct vmsig_post **ret);
/* Safe inside the hook itself. Accepts NULL, returns NULL. */
struct vmsig_post *vmsig_post_free(struct vmsig_post *post);

/* ---- endpoints and adapters ---- */

/* Allocate an endpoint slot (lowest free id >= 1) and publish ROSTER
 * APPEARED. -EEXIST if the name is taken, -ENOSPC if no slot is free. */
int vmsig_bus_endpoint_add(struct vmsig_bus *bus, const char *name, uint32_t *ret_id);
/* Detach all adapters, revoke leases, publish ROSTER LEFT. The id is reused
 * only after the departure has been dispatched. */
int vmsig_bus_endpoint_remove(struct vmsig_bus *bus, uint32_t endpoint);
int vmsig_bus_endpoint_find(struct vmsig_bus *bus, const char *name, uint32_t *ret_id);
/* Name of a live endpoint, or NULL. */
const char *vmsig_bus_endpoint_name(struct vmsig_bus *bus, uint32_t endpoint);

/* Open + attach an adapter for ops->seam on the endpoint (runtime, while
 * events flow). -EBUSY if that seam already has one. Publishes ROSTER CHANGED. */
int vmsig_bus_attach(struct vmsig_bus *bus, uint32_t endpoint, const struct vmsig_adapter_ops *ops,
                     const struct vmsig_adapter_cfg *cfg);
/* Disconnect now (fds leave epoll, sink stops accepting), close and free
 * after the current batch: safe from inside the adapter's own callback. */
int vmsig_bus_detach(struct vmsig_bus *bus, uint32_t endpoint, uint8_t seam);

/* ---- controls (in-process; the socket transport builds on the same) ---- */

struct vmsig_control_info {
        const char *name; /* for audit and lease holder info */
        uint32_t uid;
        int32_t pid;
        uint32_t caps; /* enum vmsig_cap */
};

/* Deliver one event. *fd is -1, or for MEMCTX a read-only dup that belongs
 * to the control: set *fd = -1 to keep it, else the bus closes it after the
 * return. Return 0 when consumed, -EAGAIN when the control cannot take it
 * now: the event stays queued (bounded) until vmsig_control_resume(). */
typedef int (*vmsig_deliver_fn)(struct vmsig_control *ctl, const struct vmsig_event *ev, int *fd,
                                void *userdata);
/* The bus disconnected the control (queue overflow, shutdown). Called once;
 * the control is freed after the current batch: drop the pointer. */
typedef void (*vmsig_closed_fn)(struct vmsig_control *ctl, int reason, const char *msg, void *userdata);

int vmsig_control_new(struct vmsig_bus *bus, const struct vmsig_control_info *info, vmsig_deliver_fn deliver,
                      vmsig_closed_fn closed, void *userdata, struct vmsig_control **ret);
/* Revoke its leases, drop its queue; freed after the batch. No closed
 * callback (the owner asked). Accepts NULL, returns NULL. */
struct vmsig_control *vmsig_control_close(struct vmsig_control *ctl);

uint32_t vmsig_control_id(const struct vmsig_control *ctl);
uint32_t vmsig_control_caps(const struct vmsig_control *ctl);

/* Subscribe to UP kinds (mask of VMSIG_KIND_BIT) on one endpoint or all
 * (endpoint 0). Retained state (ROSTER, MEMCTX, STATUS, lease holders)
 * matching the new subscription is queued first, before any live event.
 * -EPERM (audited) if a requested kind needs a capability the control lacks.
 * ACT_ACK and LEASE_DENY addressed to the control arrive without subscribing. */
int vmsig_control_subscribe(struct vmsig_control *ctl, uint32_t endpoint, uint64_t kinds);
int vmsig_control_unsubscribe(struct vmsig_control *ctl, uint32_t endpoint);

/* Queue a DOWN command. The bus stamps peer, seq and ts; checks of
 * capability, lease, source and extent happen at dispatch and any refusal
 * comes back as an ACT_ACK with the reason. Returns 0, or -EINVAL for a
 * kind that is not a command. */
int vmsig_control_send(struct vmsig_control *ctl, const struct vmsig_event *ev);
/* CMD_MEMWRITE with a source larger than the inline body: the bus copies
 * src (len <= limits.memwrite_max, else -EMSGSIZE) and sets
 * VMSIG_F_SRC_PAYLOAD; body.len must equal len. */
int vmsig_control_send_payload(struct vmsig_control *ctl, const struct vmsig_event *ev, const void *src,
                               size_t len);
/* CMD_MEMWRITE whose source is bytes [src_off, src_off + len) of fd (the
 * body is a struct vmsig_memwrite_fd_body). Takes fd: it is closed on every
 * path, once the command has been refused or submitted. The bus sets
 * VMSIG_F_HAS_FD; capability, lease and extent are checked as for any
 * CMD_MEMWRITE. The caller vouches for the fd's type (the socket server
 * accepts only regular tmpfs files). */
int vmsig_control_send_fd(struct vmsig_control *ctl, const struct vmsig_event *ev, int fd);
int vmsig_control_lease_acquire(struct vmsig_control *ctl, uint32_t endpoint, uint8_t lease_class,
                                uint64_t corr);
int vmsig_control_lease_release(struct vmsig_control *ctl, uint32_t endpoint, uint8_t lease_class,
                                uint64_t corr);

/* Delivery may continue after the deliver callback returned -EAGAIN. */
void vmsig_control_resume(struct vmsig_control *ctl);
/* Deliver what is queued for this control now (e.g. a retained replay right
 * after subscribe) instead of at the end of the loop iteration. Returns the
 * number of events still queued (the control stalled), or -ENOTCONN. */
int vmsig_control_flush(struct vmsig_control *ctl);

struct vmsig_control_stats {
        uint64_t delivered;
        uint64_t dropped; /* droppable events dropped under pressure */
        uint64_t queued;  /* waiting now */
        uint64_t queued_bytes;
};
int vmsig_control_get_stats(const struct vmsig_control *ctl, struct vmsig_control_stats *ret);

struct vmsig_bus_stats {
        uint64_t dispatched;
        uint64_t delivered;
        uint64_t dropped;
        uint64_t disconnects; /* controls dropped for not keeping up */
        uint32_t controls;
        uint32_t endpoints;
};
void vmsig_bus_get_stats(const struct vmsig_bus *bus, struct vmsig_bus_stats *ret);

#ifdef __cplusplus
}
#endif
#endif
