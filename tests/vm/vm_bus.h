/* SPDX-License-Identifier: MIT */
/* A bus with one endpoint and one recording control, for the real-adapter
 * tests under tests/vm/, plus a side QMP channel for cross-checks (QEMU
 * serves one client per monitor, and the adapters hold the main one: tests
 * give QEMU a second -qmp socket). Header-only. */
#ifndef VMSIG_TESTS_VM_VM_BUS_H
#define VMSIG_TESTS_VM_VM_BUS_H

#include <errno.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vmsig/adapter.h>
#include <vmsig/bus.h>
#include <vmsig/event.h>
#include <vmsig/memctx.h>

#include "host/qmp.h"
#include "vm/vm_guest.h"

#define VB_MAX 2048

struct vb {
        struct vmsig_bus *bus;
        struct vmsig_control *ctl;
        uint32_t ep;
        uint64_t corr;
        unsigned n;
        struct vmsig_event ev[VB_MAX];
        int fd[VB_MAX]; /* MEMCTX fds, kept */
        bool verbose;
};

static inline int vb_deliver(struct vmsig_control *ctl, const struct vmsig_event *ev, int *fd, void *ud)
{
        struct vb *b = ud;
        if (b->n >= VB_MAX)
                return 0;
        memcpy(&b->ev[b->n], ev, vmsig_event_size(ev));
        b->fd[b->n] = *fd;
        *fd = -1;
        if (b->verbose) {
                char line[512];
                printf("#   [%ld] %s\n", vm_guest_now_ms() % 100000,
                       vmsig_event_format(ev, line, sizeof(line)));
        }
        b->n++;
        return 0;
}

static inline void vb_closed(struct vmsig_control *ctl, int reason, const char *msg, void *ud)
{
        fprintf(stderr, "vb: control closed: %d %s\n", reason, msg);
}

static inline int vb_init(struct vb *b, const char *name)
{
        memset(b, 0, sizeof(*b));
        b->verbose = getenv("VB_VERBOSE") != NULL;
        int r = vmsig_bus_new(NULL, &b->bus);
        if (r < 0)
                return r;
        r = vmsig_bus_endpoint_add(b->bus, name, &b->ep);
        if (r < 0)
                return r;
        struct vmsig_control_info info = {
            .name = "vmtest", .uid = getuid(), .pid = getpid(), .caps = VMSIG_CAP_ALL};
        r = vmsig_control_new(b->bus, &info, vb_deliver, vb_closed, b, &b->ctl);
        if (r < 0)
                return r;
        return vmsig_control_subscribe(b->ctl, b->ep, VMSIG_KINDS_ALL_UP);
}

static inline void vb_free(struct vb *b)
{
        if (b->bus)
                vmsig_bus_free(b->bus);
        for (unsigned i = 0; i < b->n; i++)
                if (b->fd[i] >= 0)
                        close(b->fd[i]);
        b->bus = NULL;
        b->n = 0;
}

static inline void vb_pump(struct vb *b, int ms)
{
        long deadline = vm_guest_now_ms() + ms;
        do
                vmsig_bus_run_once(b->bus, 20);
        while (vm_guest_now_ms() < deadline);
}

typedef bool (*vb_pred)(const struct vmsig_event *ev, const void *arg);

/* Index of the first event at or after from matching pred, pumping the bus
 * up to timeout_ms; -1 on timeout. */
static inline int vb_wait(struct vb *b, unsigned from, vb_pred pred, const void *arg, int timeout_ms)
{
        long deadline = vm_guest_now_ms() + timeout_ms;
        for (;;) {
                for (unsigned i = from; i < b->n; i++)
                        if (pred(&b->ev[i], arg))
                                return (int)i;
                if (vm_guest_now_ms() >= deadline)
                        return -1;
                vmsig_bus_run_once(b->bus, 50);
        }
}

static inline const struct vmsig_status_body *vb_status(const struct vmsig_event *ev)
{
        return (const struct vmsig_status_body *)ev->body;
}
static inline const struct vmsig_ack_body *vb_ack(const struct vmsig_event *ev)
{
        return (const struct vmsig_ack_body *)ev->body;
}
static inline const struct vmsig_memctx_body *vb_memctx(const struct vmsig_event *ev)
{
        return (const struct vmsig_memctx_body *)ev->body;
}

static inline bool vb_is_status(const struct vmsig_event *ev, const void *arg)
{
        return ev->hdr.kind == VMSIG_EV_STATUS && vb_status(ev)->run_state == *(const uint8_t *)arg;
}
static inline bool vb_is_ack(const struct vmsig_event *ev, const void *arg)
{
        return ev->hdr.kind == VMSIG_EV_ACT_ACK && ev->hdr.corr == *(const uint64_t *)arg;
}
static inline bool vb_is_kind(const struct vmsig_event *ev, const void *arg)
{
        return ev->hdr.kind == *(const uint16_t *)arg;
}

static inline int vb_wait_status(struct vb *b, unsigned from, uint8_t state, int timeout_ms)
{
        return vb_wait(b, from, vb_is_status, &state, timeout_ms);
}
static inline int vb_wait_kind(struct vb *b, unsigned from, uint16_t kind, int timeout_ms)
{
        return vb_wait(b, from, vb_is_kind, &kind, timeout_ms);
}
static inline int vb_wait_ack(struct vb *b, uint64_t corr, int timeout_ms)
{
        return vb_wait(b, 0, vb_is_ack, &corr, timeout_ms);
}

/* Acquire a lease and wait for the grant. */
static inline int vb_lease(struct vb *b, uint8_t cls)
{
        unsigned from = b->n;
        int r = vmsig_control_lease_acquire(b->ctl, b->ep, cls, ++b->corr);
        if (r < 0)
                return r;
        return vb_wait_kind(b, from, VMSIG_EV_LEASE_GRANT, 5000) >= 0 ? 0 : -ETIMEDOUT;
}

/* Send a command (kind, body) and return its corr. */
static inline uint64_t vb_send(struct vb *b, uint16_t kind, uint8_t seam, const void *body, size_t len)
{
        struct vmsig_event ev;
        vmsig_event_init(&ev, kind, b->ep, seam);
        ev.hdr.corr = ++b->corr;
        if (len)
                vmsig_event_set_body(&ev, body, len);
        if (vmsig_control_send(b->ctl, &ev) < 0)
                return 0;
        return ev.hdr.corr;
}

static inline uint64_t vb_power(struct vb *b, uint32_t op)
{
        struct vmsig_power_body p = {.op = op};
        return vb_send(b, VMSIG_EV_CMD_POWER, VMSIG_SRC_VMHOST, &p, sizeof(p));
}

/* Sends and waits for the ACK; returns its index or -1. */
static inline int vb_power_wait(struct vb *b, uint32_t op, int timeout_ms)
{
        uint64_t corr = vb_power(b, op);
        return corr ? vb_wait_ack(b, corr, timeout_ms) : -1;
}

/* ---- the side QMP channel (blocking, one connection per call) ---- */

static inline char *side_hmp(const char *sock, const char *cmd)
{
        char *text = NULL, reason[256];
        int r = qmp_sync_hmp(sock, cmd, 10000, &text, reason, sizeof(reason));
        if (r < 0) {
                fprintf(stderr, "side HMP '%s': %s\n", cmd, reason);
                return NULL;
        }
        return text;
}

static inline int side_qmp(const char *sock, const char *cmd, struct json_object *args)
{
        struct json_object *v = NULL;
        char reason[256];
        int r = qmp_sync_execute(sock, cmd, args, 10000, &v, reason, sizeof(reason));
        if (r < 0)
                fprintf(stderr, "side QMP '%s': %s\n", cmd, reason);
        if (v)
                json_object_put(v);
        return r;
}

/* System.map lookup (VMSIG_GUEST_DIR/System.map); 0 if absent. */
static inline uint64_t vm_symbol(const char *name)
{
        const char *dir = getenv("VMSIG_GUEST_DIR");
        char path[512], line[256], sym[200];
        unsigned long long addr;
        char type;
        uint64_t found = 0;
        if (!dir)
                return 0;
        snprintf(path, sizeof(path), "%s/System.map", dir);
        FILE *f = fopen(path, "re");
        if (!f)
                return 0;
        while (fgets(line, sizeof(line), f)) {
                if (sscanf(line, "%llx %c %199s", &addr, &type, sym) == 3 && !strcmp(sym, name)) {
                        found = addr;
                        break;
                }
        }
        fclose(f);
        return found;
}

#endif
