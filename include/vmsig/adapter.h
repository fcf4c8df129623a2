/* SPDX-License-Identifier: MIT */
#ifndef VMSIG_ADAPTER_H
#define VMSIG_ADAPTER_H

/* The adapter seam. One adapter instance per (endpoint, seam). The core
 * drives it from the loop thread only; adapter worker threads reach the core
 * through sink->emit alone. */

#include <stddef.h>
#include <stdint.h>
#include <vmsig/event.h>
#include <vmsig/memctx.h>

#ifdef __cplusplus
extern "C" {
#endif

/* How the core treats a registered fd's readiness before calling on_readiness. */
enum vmsig_rdy_shape {
        VMSIG_RDY_FD = 0,      /* native fd: the adapter does its own I/O */
        VMSIG_RDY_TIMERFD = 1, /* the core reads the expiry count first */
        VMSIG_RDY_EVENTFD = 2, /* the core reads (resets) the counter first:
                                  the bridge from an adapter's worker thread */
};

struct vmsig_fd_reg {
        int fd;                /* owned by the adapter; closed in close() */
        uint32_t epoll_events; /* EPOLLIN, ... (level-triggered) */
        enum vmsig_rdy_shape shape;
        uint64_t cookie; /* passed back to on_readiness for demux */
};

#define VMSIG_FD_REG_MAX 8 /* per adapter instance */

/* What the core hands an adapter at attach. */
struct vmsig_emit_sink {
        /* Thread-safe. The core stamps endpoint and source, so an adapter can
         * only speak for its own seam. 0 or negative errno (-ESHUTDOWN once
         * the adapter is being detached). May block briefly while the
         * hand-off ring is full: backpressure, never loss. */
        int (*emit)(const struct vmsig_emit_sink *sink, const struct vmsig_event *ev);

        /* Loop thread only. NULL for adapters that are not memctx adapters.
         * register: the core dups ctx->fd (which must be O_RDONLY, else
         * -EPERM), bumps the endpoint's epoch, retains the datum and
         * publishes it. unregister: publishes an invalidation. */
        int (*register_memctx)(const struct vmsig_emit_sink *sink, const struct vmsig_memctx *ctx,
                               uint64_t *ret_epoch);
        int (*unregister_memctx)(const struct vmsig_emit_sink *sink);

        /* Loop thread only: add/remove fds after attach (e.g. a reconnecting
         * QMP socket). Same rules as attach registration. */
        int (*watch_fd)(const struct vmsig_emit_sink *sink, const struct vmsig_fd_reg *reg);
        int (*unwatch_fd)(const struct vmsig_emit_sink *sink, int fd);

        void *core_; /* private to the core */

        /* Members below were appended after core_, so adapters built
         * against the older layout keep working. NULL if not offered.
         *
         * Loop thread only. Is the issuer of a command still entitled to it?
         * peer: the command's hdr.peer; lease_class: enum vmsig_lease_class,
         * or -1 for "still connected" only. 0 yes; -ESRCH the control is
         * gone; -EPERM it no longer holds that lease on this endpoint (or
         * the adapter is detached). Adapters ask right before a queued
         * command takes effect, so a command never outlives its lease. */
        int (*check_issuer)(const struct vmsig_emit_sink *sink, uint32_t peer, int lease_class);
        /* Any thread. A number that changes whenever a lease of lease_class
         * on this endpoint ends (release, disconnect, shutdown). An adapter
         * that queues work for a worker records it when it accepts the
         * command (the core has just checked the lease) and compares before
         * the work takes effect: if it changed, the sender's lease ended
         * meanwhile and the work must not run. NULL from older cores. */
        uint32_t (*lease_generation)(const struct vmsig_emit_sink *sink, int lease_class);
};

/* Per-attachment configuration (from a trigger file or a test). Driver
 * neutral: vm_name and options are every adapter's; qmp_path and ram_path
 * are the QEMU driver's two locations (kept here for the ABI), NULL for
 * other drivers. Anything else a driver needs (a libvirt URI, ...) is one
 * of its adapters' options, declared and checked like the others. */
struct vmsig_adapter_cfg {
        const char *vm_name;
        const char *qmp_path; /* QEMU driver: the QMP socket; else NULL */
        const char *ram_path; /* QEMU driver: the guest RAM file; else NULL */
        const char *options;  /* "key=value,key=value", adapter-specific */
};

/* submit() results. */
enum {
        VMSIG_SUBMIT_ACCEPTED = 0, /* taken: the adapter emits the ACT_ACK (unless FF) */
        VMSIG_SUBMIT_NOT_MINE = 1, /* not for this seam: the core answers -EOPNOTSUPP */
        /* < 0: error; the core answers with an ACT_ACK carrying it */
};

struct vmsig_adapter_ops {
        const char *name; /* "memctx-stub", "vmhost-qmp", ... */
        uint8_t seam;     /* enum vmsig_source */
        int (*open)(const struct vmsig_adapter_cfg *cfg, uint32_t endpoint, void **ret_instance);
        /* Bring up workers and fill reg[0..cap) with fds to watch. */
        int (*attach)(void *instance, const struct vmsig_emit_sink *sink, struct vmsig_fd_reg *reg,
                      size_t cap, size_t *ret_n);
        /* Loop thread, non-blocking. */
        void (*on_readiness)(void *instance, uint64_t cookie, uint32_t events);
        /* Loop thread, non-blocking: hand blocking work to a worker.
         * payload/payload_len: a CMD_MEMWRITE source that did not fit inline
         * (VMSIG_F_SRC_PAYLOAD), valid only during this call; NULL/0 when the
         * bytes are inline in the body. With VMSIG_F_HAS_FD the payload is a
         * struct vmsig_memwrite_fd naming the source fd (the bus's; dup it
         * to keep it); vmsig_memwrite_decode() returns it as src_fd. */
        int (*submit)(void *instance, const struct vmsig_event *ev, const void *payload, size_t payload_len);
        /* Stop and join workers, close fds, free. Never called from inside
         * one of this instance's own callbacks. */
        void (*close)(void *instance);
        /* Optional. Loop thread, non-blocking: a lease of class lease_class
         * (enum vmsig_lease_class) on this endpoint just ended (released,
         * holder gone, revoked), after its LEASE_REVOKE. Lets an adapter undo
         * state the holder left behind, e.g. keys still held in the guest.
         * Must not attach, detach or remove endpoints. */
        void (*lease_ended)(void *instance, uint8_t lease_class);
};

/* Option helper: find key in "k=v,k=v". Copies the value into buf (NUL
 * terminated). 0 found, -ENOENT absent, -ENAMETOOLONG value too long. */
int vmsig_option_get(const char *options, const char *key, char *buf, size_t buflen);
/* Same, as an unsigned number (vmsig_option_parse_u64); -EINVAL if not a
 * number. def if absent. */
int vmsig_option_u64(const char *options, const char *key, uint64_t def, uint64_t *ret);
/* An option value as an unsigned number: decimal digits, or 0x and hex
 * digits; no sign, no blanks, at most 31 bytes, no overflow. A leading zero
 * is decimal ("010" is 10), never octal. 0 or -EINVAL. */
int vmsig_option_parse_u64(const char *text, uint64_t *ret);

/* The real adapters for a QEMU VM (cfg->qmp_path, cfg->ram_path). NULL in a
 * stub-only build (VMSIG_ARMED=OFF). The adapters of one VM share a single
 * QMP connection, since a QEMU monitor socket serves one client at a time. */
const struct vmsig_adapter_ops *vmsig_memctx_ops(void);
const struct vmsig_adapter_ops *vmsig_input_ops(void);
const struct vmsig_adapter_ops *vmsig_vmhost_ops(void);

/* Stub adapters: the seam without a VM. */
const struct vmsig_adapter_ops *vmsig_memctx_stub_ops(void);
const struct vmsig_adapter_ops *vmsig_input_stub_ops(void);
const struct vmsig_adapter_ops *vmsig_vmhost_stub_ops(void);

/* Emit helpers: build one UP event and hand it to sink->emit. Same threads
 * as emit (any thread; -ESHUTDOWN once detached); the result is emit's.
 * Messages are printf-style, truncated to VMSIG_MSG_MAX. The core stamps
 * endpoint and source anyway; they are set here too, for test sinks.
 *
 * ack: the ACT_ACK for the command whose header is cmd (addressed to its
 * sender, same corr). The caller decides whether to acknowledge: a
 * successful fire-and-forget input command is not. */
int vmsig_sink_ack(const struct vmsig_emit_sink *sink, uint8_t source, const struct vmsig_event_hdr *cmd,
                   int32_t result, uint64_t value, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* A DIAG line: code 0 or a negative errno. */
int vmsig_sink_diag(const struct vmsig_emit_sink *sink, uint32_t endpoint, uint8_t source, int32_t code,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* A STATUS (vmhost seam). asker: the CMD_STATUS_QUERY being answered (the
 * STATUS goes to its sender, same corr), or NULL for a broadcast. */
int vmsig_sink_status(const struct vmsig_emit_sink *sink, uint32_t endpoint, uint8_t run_state,
                      const struct vmsig_event_hdr *asker, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* The names of the seams whose bit (1 << enum vmsig_source) is set in mask
 * (as in a ROSTER body), in source order, separated by sep ("memctx input
 * vmhost" with " "); none if mask is 0. Unknown bits are skipped. Truncates
 * to len - 1 bytes. Returns buf. */
const char *vmsig_seams_format(uint8_t mask, const char *sep, const char *none, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif
