/* SPDX-License-Identifier: MIT */
#ifndef VMSIG_CORE_KINDS_H
#define VMSIG_CORE_KINDS_H

/* The kind table: every fact about one event kind, in one row (kinds.c).
 * The bus, the controls, the formatter and the wire codec read it instead
 * of switching on the kind. Internal to libvmsig (core and transport):
 * nothing here is exported. Adding a kind: its enum value and its bit in
 * VMSIG_KINDS_ALL_UP/_DOWN (event.h), its row in kinds.c, its tests and its
 * docs/protocol.md entry; a new body also needs a layout and a formatter. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <vmsig/event.h>

enum kind_dir {
        KIND_UP = 1,   /* adapter or core -> controls */
        KIND_DOWN = 2, /* control -> one endpoint's adapter, or the core */
};

enum kind_flag {
        KIND_RETAINED = 1u << 0,  /* the bus keeps the latest per endpoint and replays it on subscribe */
        KIND_DROPPABLE = 1u << 1, /* vmsig_event_init marks it VMSIG_F_DROPPABLE */
        KIND_FF = 1u << 2,        /* the sender may waive the ACT_ACK (VMSIG_F_FF) */
        KIND_CR3 = 1u << 3,       /* the header's cr3 is a field (else it must be 0) */
        KIND_TAIL = 1u << 4, /* may carry its source as a tail (VMSIG_F_SRC_PAYLOAD): a CMD_MEMWRITE head */
        KIND_FD = 1u << 5,   /* may carry an fd (VMSIG_F_HAS_FD) */
};

/* What a body check found; the wire maps it to its violation. */
enum kind_fault {
        KIND_OK = 0,
        KIND_E_SIZE,     /* body_len wrong for the kind */
        KIND_E_RESERVED, /* a reserved ("send 0") field is not zero */
        KIND_E_STRING,   /* a fixed-size string lacks its NUL */
        KIND_E_FIELD,    /* a field out of its range */
};

/* How one field of a codec-0 body is checked. Reserved fields of an UP body
 * are checked only by the sender: a receiver ignores them, so a later daemon
 * can give them a meaning (docs/protocol.md §5.2). */
enum kind_check {
        KC_NONE = 0,
        KC_ZERO,   /* reserved: all bytes 0 */
        KC_STRING, /* char[size] holding its NUL */
        KC_BELOW,  /* u8 < arg */
        KC_ERRNO,  /* i32: 0 or a negative errno (-4095..-1) */
        KC_UNUSED, /* array of arg-byte entries: those from the u8 count at offset arg2 on are 0 */
};

struct kind_field {
        uint16_t off;  /* in the body */
        uint16_t size; /* bytes */
        uint8_t swap;  /* integer width (2, 4, 8) converted to little-endian, repeated over size; 0 bytes */
        uint8_t check; /* enum kind_check */
        uint8_t arg, arg2;
};

/* The output a formatter writes into (format.c). */
struct kind_fmt;
typedef void kind_format_fn(struct kind_fmt *f, const struct vmsig_event *ev);

/* One codec-0 body layout: docs/protocol.md §5.2 as data. */
struct kind_layout {
        const char *name; /* "roster", as in docs/protocol.md */
        uint16_t min;     /* body_len accepted: min..size (equal for a fixed body) */
        uint16_t size;
        uint8_t nfields;
        const struct kind_field *fields; /* in offset order: also the order of the checks */
        /* Checks beyond the fields (relations between them), or NULL. */
        enum kind_fault (*check)(const struct vmsig_event *ev);
        kind_format_fn *format; /* called only for body_len in min..size */
};

struct kind_info {
        const char *name; /* "ROSTER" */
        uint8_t dir;      /* enum kind_dir */
        int8_t seam;      /* DOWN: the source the command must name (VMSIG_SRC_CORE: the bus); UP: -1 */
        uint8_t priority; /* the default, vmsig_event_init */
        int8_t lease;     /* DOWN: the lease class the sender must hold, or -1 */
        uint32_t cap;     /* DOWN: needed to send; UP: needed to subscribe (0: addressed only) */
        uint32_t flags;   /* enum kind_flag */
        const struct kind_layout *body;
};

/* The row of a kind, or NULL for a value that is no kind. */
const struct kind_info *kind_info(uint16_t kind);

/* Check a body against its kind's layout (codec 0; other codecs are the
 * adapter's and pass). sending: the sender's side, which also checks the
 * reserved fields of UP bodies. The kind must have a row. */
enum kind_fault kind_check_body(const struct vmsig_event *ev, bool sending);

/* Convert a codec-0 body between host and wire (little-endian) order in
 * place; an involution. Fields beyond len are left alone. */
void kind_body_byteorder(uint16_t kind, uint8_t codec, uint8_t *body, size_t len);

/* ---- CMD_MEMWRITE: the one check of its body, source and bound ---- */

/* In the order they are checked: the first that applies is returned. */
enum memwrite_fault {
        MW_OK = 0,
        MW_E_BODY,  /* body shorter than its 16-byte head, or longer than an event body */
        MW_E_FLAGS, /* a body flag other than VMSIG_MEMWRITE_PHYS; HAS_FD with SRC_PAYLOAD */
        MW_E_BOUND, /* len over the bound */
        MW_E_SIZE,  /* len disagrees with the inline bytes, or with the tail */
        MW_E_ZERO,  /* len 0 */
        MW_E_TAIL,  /* SRC_PAYLOAD without its tail, or a tail without SRC_PAYLOAD; HAS_FD without its fd */
};

/* ev is a CMD_MEMWRITE. tail_known: false while a wire frame is checked
 * before its tail has arrived (tail and tail_len are then unused), true
 * once the source is here: tail is the SRC_PAYLOAD source (NULL if none).
 * bound: the largest len accepted. On MW_OK, ret (if not NULL) gets addr,
 * len, flags and src (NULL while the tail is unknown). */
enum memwrite_fault memwrite_check(const struct vmsig_event *ev, bool tail_known, const void *tail,
                                   size_t tail_len, uint64_t bound, struct vmsig_memwrite_req *ret);

/* ---- formatters of the layouts (format.c) ---- */

kind_format_fn kind_format_none, kind_format_roster, kind_format_memctx, kind_format_status, kind_format_ack,
    kind_format_diag, kind_format_lease, kind_format_input, kind_format_power, kind_format_memwrite;

#endif
