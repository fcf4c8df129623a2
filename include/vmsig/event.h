/* SPDX-License-Identifier: MIT */
#ifndef VMSIG_EVENT_H
#define VMSIG_EVENT_H

/* The one unit of transfer on the bus: a fixed header plus a bounded inline
 * body. No pointer ever lives in an event, so the same bytes can cross a
 * thread, a queue or a socket unchanged. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VMSIG_BODY_MAX 456u /* header (56) + body = 512 bytes */

/* Event kinds. UP kinds flow adapter -> control; DOWN kinds flow control ->
 * one endpoint's adapter (or the core, for leases). Values are wire-stable. */
enum vmsig_kind {
        VMSIG_EV_NONE = 0,
        /* UP */
        VMSIG_EV_ROSTER = 1,       /* endpoint appeared / left / changed */
        VMSIG_EV_MEMCTX = 2,       /* address-space context published or invalidated */
        VMSIG_EV_STATUS = 3,       /* VM run state */
        VMSIG_EV_ACT_ACK = 4,      /* completion of a DOWN command, keyed by corr */
        VMSIG_EV_DIAG = 5,         /* diagnostic line from an adapter or the core */
        VMSIG_EV_LEASE_GRANT = 6,  /* a lease got an owner (broadcast) */
        VMSIG_EV_LEASE_DENY = 7,   /* addressed to a denied requester, names the holder */
        VMSIG_EV_LEASE_REVOKE = 8, /* a lease ended: released, holder gone, endpoint gone */
        VMSIG_EV_UP_MAX_ = 31,

        /* DOWN: input seam */
        VMSIG_EV_MOVE_ABS = 32, /* x and y in ONE event */
        VMSIG_EV_MOVE_REL = 33, /* dx and dy in ONE event */
        VMSIG_EV_BUTTON = 34,   /* code = VMSIG_BTN_*, value 1 press / 0 release */
        VMSIG_EV_KEY = 35,      /* code = Linux key code, value 1 press / 0 release */
        VMSIG_EV_WHEEL = 36,    /* y = vertical clicks, x = horizontal clicks */
        /* DOWN: vmhost seam */
        VMSIG_EV_CMD_POWER = 40,        /* body: struct vmsig_power_body */
        VMSIG_EV_CMD_STATUS_QUERY = 41, /* answered by a STATUS event and an ACT_ACK */
        /* DOWN: memctx seam */
        VMSIG_EV_CMD_MEMWRITE = 48, /* header cr3 = target root (0 = kernel root) */
        /* DOWN: the core itself */
        VMSIG_EV_LEASE_ACQUIRE = 56, /* body: struct vmsig_lease_body */
        VMSIG_EV_LEASE_RELEASE = 57,
        VMSIG_EV_KIND_MAX_ = 63,
};

/* The kinds of each direction, as masks of VMSIG_KIND_BIT (what
 * vmsig_control_subscribe takes). A new kind gets its bit here and its row
 * in the kind table (src/core/kinds.c), which checks both at build time. */
#define VMSIG_KIND_BIT(k) (UINT64_C(1) << (k))
#define VMSIG_KINDS_ALL_UP                                                                                   \
        (VMSIG_KIND_BIT(VMSIG_EV_ROSTER) | VMSIG_KIND_BIT(VMSIG_EV_MEMCTX) |                                 \
         VMSIG_KIND_BIT(VMSIG_EV_STATUS) | VMSIG_KIND_BIT(VMSIG_EV_ACT_ACK) |                                \
         VMSIG_KIND_BIT(VMSIG_EV_DIAG) | VMSIG_KIND_BIT(VMSIG_EV_LEASE_GRANT) |                              \
         VMSIG_KIND_BIT(VMSIG_EV_LEASE_DENY) | VMSIG_KIND_BIT(VMSIG_EV_LEASE_REVOKE))
#define VMSIG_KINDS_ALL_DOWN                                                                                 \
        (VMSIG_KIND_BIT(VMSIG_EV_MOVE_ABS) | VMSIG_KIND_BIT(VMSIG_EV_MOVE_REL) |                             \
         VMSIG_KIND_BIT(VMSIG_EV_BUTTON) | VMSIG_KIND_BIT(VMSIG_EV_KEY) | VMSIG_KIND_BIT(VMSIG_EV_WHEEL) |   \
         VMSIG_KIND_BIT(VMSIG_EV_CMD_POWER) | VMSIG_KIND_BIT(VMSIG_EV_CMD_STATUS_QUERY) |                    \
         VMSIG_KIND_BIT(VMSIG_EV_CMD_MEMWRITE) | VMSIG_KIND_BIT(VMSIG_EV_LEASE_ACQUIRE) |                    \
         VMSIG_KIND_BIT(VMSIG_EV_LEASE_RELEASE))

/* Seam roles: who an UP event comes from / which adapter a DOWN event is for. */
enum vmsig_source {
        VMSIG_SRC_CORE = 0,
        VMSIG_SRC_MEMCTX = 1,
        VMSIG_SRC_INPUT = 2,
        VMSIG_SRC_VMHOST = 3,
        VMSIG_SRC_MAX_ = 4,
};
#define VMSIG_SEAM_COUNT 3 /* memctx, input, vmhost */

/* Header flags. */
enum vmsig_flag {
        VMSIG_F_FF = 1u << 0,          /* fire-and-forget: no ACT_ACK on success */
        VMSIG_F_SRC_PAYLOAD = 1u << 1, /* MEMWRITE source travels as a tail (socket only) */
        VMSIG_F_DROPPABLE = 1u << 2,   /* may be dropped (and counted) under pressure */
        VMSIG_F_RETAINED = 1u << 3,    /* set on replayed retained events */
        VMSIG_F_HAS_FD = 1u << 4,      /* an fd travels with this event (MEMCTX; CMD_MEMWRITE source) */
};

/* Priorities: lower value dispatches first; FIFO within one value. */
enum {
        VMSIG_PRIO_URGENT = 32,  /* acknowledgements, leases */
        VMSIG_PRIO_HIGH = 64,    /* lifecycle, memctx */
        VMSIG_PRIO_NORMAL = 128, /* default */
        VMSIG_PRIO_BULK = 224,   /* high-rate droppable streams */
};

/* Wire-stable layout (little-endian on the wire, see docs/protocol.md). */
struct vmsig_event_hdr {
        uint16_t kind;    /* enum vmsig_kind */
        uint8_t source;   /* enum vmsig_source */
        uint8_t codec;    /* owned by the adapter; 0 = the structs below */
        uint8_t priority; /* lower first */
        uint8_t reserved0;
        uint16_t flags;    /* enum vmsig_flag */
        uint32_t endpoint; /* 0 = none/any */
        uint32_t peer;     /* DOWN: originating control (set by the core);
                              UP: addressed control, 0 = broadcast */
        uint64_t corr;     /* links a DOWN command to its ACT_ACK */
        uint64_t seq;      /* bus sequence, assigned at dispatch ingress */
        uint64_t ts_ns;    /* CLOCK_MONOTONIC at emit/send */
        uint64_t cr3;      /* CMD_MEMWRITE target root, 0 = kernel root */
        uint32_t body_len; /* <= VMSIG_BODY_MAX */
        uint32_t reserved1;
};

struct vmsig_event {
        struct vmsig_event_hdr hdr;
        uint8_t body[VMSIG_BODY_MAX];
};

_Static_assert(sizeof(struct vmsig_event_hdr) == 56, "header layout is wire-stable");
_Static_assert(sizeof(struct vmsig_event) == 512, "event size is fixed");

/* ---- typed bodies (codec 0) ---- */

#define VMSIG_NAME_MAX 64  /* including NUL */
#define VMSIG_MSG_MAX  160 /* including NUL */

enum vmsig_roster_change {
        VMSIG_ROSTER_APPEARED = 1,
        VMSIG_ROSTER_LEFT = 2,
        VMSIG_ROSTER_CHANGED = 3,
};

enum vmsig_run_state {
        VMSIG_RUN_UNKNOWN = 0,
        VMSIG_RUN_RUNNING = 1,
        VMSIG_RUN_PAUSED = 2,
        VMSIG_RUN_SHUTDOWN = 3, /* guest powered off, QEMU still there */
        VMSIG_RUN_GONE = 4,     /* QEMU not reachable */
        VMSIG_RUN_PANICKED = 5,
        VMSIG_RUN_BOOTING = 6,
        VMSIG_RUN_STARTING = 7, /* QEMU not reachable yet: not once since the VM appeared */
};

struct vmsig_roster_body {
        uint8_t change;    /* enum vmsig_roster_change */
        uint8_t seams;     /* bit (1 << source) per attached adapter */
        uint8_t run_state; /* enum vmsig_run_state, last known */
        uint8_t reserved;
        uint32_t reserved2;
        char name[VMSIG_NAME_MAX];
};

struct vmsig_status_body {
        uint8_t run_state; /* enum vmsig_run_state */
        uint8_t reserved[7];
        char reason[VMSIG_MSG_MAX]; /* e.g. "RESET (guest)" */
};

struct vmsig_ack_body {
        int32_t result;    /* 0 or a negative errno */
        uint16_t cmd_kind; /* the kind being acknowledged */
        uint16_t reserved;
        uint64_t value; /* command-specific, e.g. bytes written */
        char msg[VMSIG_MSG_MAX];
};

struct vmsig_diag_body {
        int32_t code; /* negative errno or 0 */
        uint32_t reserved;
        char msg[VMSIG_MSG_MAX];
};

/* Buttons are neutral, not Linux codes; vmctl maps them. */
enum vmsig_button {
        VMSIG_BTN_LEFT = 1,
        VMSIG_BTN_RIGHT = 2,
        VMSIG_BTN_MIDDLE = 3,
};

/* MOVE_ABS: x, y in 0..VMSIG_ABS_MAX. MOVE_REL: x, y deltas. BUTTON/KEY: code
 * and value. WHEEL: y (and x) clicks. */
#define VMSIG_ABS_MAX 32767
struct vmsig_input_body {
        int32_t x;
        int32_t y;
        uint32_t code;
        int32_t value;
        uint32_t flags; /* reserved for input-specific flags, 0 today */
};

enum vmsig_power_op {
        VMSIG_POWER_ON = 1,    /* start / continue a shut-down guest */
        VMSIG_POWER_OFF = 2,   /* hard off (QEMU quit) */
        VMSIG_POWER_RESET = 3, /* hard reset */
        VMSIG_POWER_PAUSE = 4,
        VMSIG_POWER_RESUME = 5,
        VMSIG_POWER_POWERDOWN = 6, /* ACPI request to the guest */
};

struct vmsig_power_body {
        uint32_t op; /* enum vmsig_power_op */
};

/* CMD_MEMWRITE body: gva (or gpa with PHYS), then len bytes. With
 * VMSIG_F_SRC_PAYLOAD the bytes arrive as a tail, not inline (socket). With
 * VMSIG_F_HAS_FD they are bytes [src_off, src_off + len) of a file the
 * sender passed (a memfd or tmpfs file): the body is the 16-byte head plus
 * a u64 src_off (struct vmsig_memwrite_fd_body), and the submit() payload
 * is a struct vmsig_memwrite_fd naming that fd. */
enum vmsig_memwrite_flag {
        VMSIG_MEMWRITE_PHYS = 1u << 0, /* addr is guest-physical; cr3 ignored */
};
#define VMSIG_MEMWRITE_INLINE_MAX (VMSIG_BODY_MAX - 16u)
struct vmsig_memwrite_body {
        uint64_t addr;
        uint32_t len;
        uint32_t flags; /* enum vmsig_memwrite_flag */
        uint8_t data[VMSIG_MEMWRITE_INLINE_MAX];
};
struct vmsig_memwrite_fd_body {
        uint64_t addr;
        uint32_t len;
        uint32_t flags;   /* enum vmsig_memwrite_flag */
        uint64_t src_off; /* where the source starts in the fd */
};
/* The payload a CMD_MEMWRITE with VMSIG_F_HAS_FD reaches submit() with.
 * The fd belongs to the bus and is valid only during submit: dup it to
 * keep it. */
struct vmsig_memwrite_fd {
        int fd;
};

enum vmsig_lease_class {
        VMSIG_LEASE_INPUT = 0,
        VMSIG_LEASE_POWER = 1,
        VMSIG_LEASE_MEMWRITE = 2,
        VMSIG_LEASE_CLASS_COUNT = 3,
};

enum vmsig_lease_reason {
        VMSIG_LEASE_R_NONE = 0,
        VMSIG_LEASE_R_RELEASED = 1,
        VMSIG_LEASE_R_DISCONNECTED = 2,
        VMSIG_LEASE_R_ENDPOINT_GONE = 3,
        VMSIG_LEASE_R_SHUTDOWN = 4,
};

/* LEASE_ACQUIRE/RELEASE: class. GRANT/DENY/REVOKE: class, holder identity,
 * reason (REVOKE). */
struct vmsig_lease_body {
        uint8_t class_; /* enum vmsig_lease_class */
        uint8_t reason; /* enum vmsig_lease_reason */
        uint16_t reserved;
        uint32_t holder_id; /* control id */
        uint32_t holder_uid;
        int32_t holder_pid;
        char holder_name[VMSIG_NAME_MAX];
};

/* ---- helpers ---- */

/* Zero an event and set kind, endpoint, source and the default priority. */
void vmsig_event_init(struct vmsig_event *ev, uint16_t kind, uint32_t endpoint, uint8_t source);

/* Copy a typed body in and set body_len; -EMSGSIZE if len > VMSIG_BODY_MAX. */
int vmsig_event_set_body(struct vmsig_event *ev, const void *body, size_t len);

/* Fill an ACT_ACK for cmd: endpoint, corr, peer (addressed to the sender),
 * kind being acked, result, value, printf-style message. */
void vmsig_ack_init(struct vmsig_event *ack, const struct vmsig_event *cmd, uint8_t source, int32_t result,
                    uint64_t value, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Bytes that actually matter: header + body_len (what queues copy). */
static inline size_t vmsig_event_size(const struct vmsig_event *ev)
{
        return sizeof(ev->hdr) + (ev->hdr.body_len <= VMSIG_BODY_MAX ? ev->hdr.body_len : VMSIG_BODY_MAX);
}

static inline int vmsig_kind_is_up(uint16_t kind)
{
        return kind < 64 && (int)((VMSIG_KINDS_ALL_UP >> kind) & 1);
}
static inline int vmsig_kind_is_down(uint16_t kind)
{
        return kind < 64 && (int)((VMSIG_KINDS_ALL_DOWN >> kind) & 1);
}

/* Facts from the kind table (docs/protocol.md §5.1). */

/* The seam a DOWN kind is for (VMSIG_SRC_CORE for lease commands), or -1. */
int vmsig_kind_seam(uint16_t kind);

/* The lease class a DOWN kind needs, or -1 when none. */
int vmsig_kind_lease_class(uint16_t kind);

/* Exact/maximum body size accepted for a DOWN kind (extent check), or -1. */
int vmsig_kind_body_max(uint16_t kind);

const char *vmsig_kind_name(uint16_t kind);     /* "ROSTER", "MOVE_ABS", ...; "?" if unknown */
const char *vmsig_source_name(uint8_t source);  /* "core", "memctx", "input", "vmhost" */
const char *vmsig_lease_class_name(uint8_t c);  /* "input", "power", "memwrite" */
int vmsig_lease_class_from_name(const char *s); /* or -EINVAL */
const char *vmsig_run_state_name(uint8_t s);
const char *vmsig_power_op_name(uint32_t op);

/* A CMD_MEMWRITE as an adapter's submit() sees it: where, how much, and the
 * source bytes, inline in ev or in the payload. src points into ev or
 * payload, so it is valid only during submit. With VMSIG_F_HAS_FD, src is
 * NULL and the source is bytes [src_off, src_off + len) of src_fd (valid
 * only during submit); src_fd is -1 otherwise. -EINVAL for a malformed
 * command (sizes that disagree, unknown flags, zero length). */
struct vmsig_memwrite_req {
        uint64_t addr;
        uint32_t len;
        uint32_t flags; /* enum vmsig_memwrite_flag */
        const void *src;
        int src_fd;
        uint64_t src_off;
};
int vmsig_memwrite_decode(const struct vmsig_event *ev, const void *payload, size_t payload_len,
                          struct vmsig_memwrite_req *ret);

/* One line describing ev for people ("STATUS vm 2 paused (reason)"), or a
 * JSON object with every header field and the decoded body. Both validate
 * what they decode (a body too short for its kind prints as such). Return
 * buf; output is truncated to len. */
char *vmsig_event_format(const struct vmsig_event *ev, char *buf, size_t len);
char *vmsig_event_format_json(const struct vmsig_event *ev, char *buf, size_t len);
/* An untrusted string made safe for a terminal or a log, the way the two
 * above print strings: at most max bytes of s (up to its NUL); control
 * bytes, DEL and bytes >= 0x80 become \xNN (json: \u00NN, and " and \
 * are escaped too). Returns buf; output is truncated to len. */
char *vmsig_str_escape(const char *s, size_t max, bool json, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif
