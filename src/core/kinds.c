/* SPDX-License-Identifier: MIT */
/* The kind table: one row per event kind, and the body layouts the rows
 * point to. Everything that differs from one kind to another is a column
 * here; the code that reads it (event.c, control.c, dispatch.c, format.c,
 * transport/wire.c) has no per-kind switch left. */
#include <endian.h>
#include <string.h>

#include <vmsig/bus.h>
#include <vmsig/memctx.h>

#include "core/kinds.h"

/* ---- body layouts (docs/protocol.md §5.2) ---- */

/* FIELD(struct, member, swap width, check[, arg[, arg2]]) */
#define FIELD(type, member, swap_, ...)                                                                      \
        {                                                                                                    \
                .off = offsetof(struct type, member), .size = sizeof(((struct type *)0)->member),            \
                .swap = (swap_), .check = __VA_ARGS__                                                        \
        }
#define NFIELDS(a) ((uint8_t)(sizeof(a) / sizeof((a)[0])))

static const struct kind_field roster_fields[] = {
    FIELD(vmsig_roster_body, change, 0, KC_NONE),    FIELD(vmsig_roster_body, seams, 0, KC_NONE),
    FIELD(vmsig_roster_body, run_state, 0, KC_NONE), FIELD(vmsig_roster_body, reserved, 0, KC_ZERO),
    FIELD(vmsig_roster_body, reserved2, 4, KC_ZERO), FIELD(vmsig_roster_body, name, 0, KC_STRING),
};

static const struct kind_field memctx_fields[] = {
    FIELD(vmsig_memctx_body, epoch, 8, KC_NONE),
    FIELD(vmsig_memctx_body, kernel_root, 8, KC_NONE),
    FIELD(vmsig_memctx_body, valid, 0, KC_NONE),
    FIELD(vmsig_memctx_body, paging, 0, KC_NONE),
    FIELD(vmsig_memctx_body, os_kind, 0, KC_NONE),
    FIELD(vmsig_memctx_body, nranges, 0, KC_BELOW, .arg = VMSIG_MEMCTX_MAX_RANGES + 1),
    FIELD(vmsig_memctx_body, kernel_base_pg, 4, KC_NONE),
    /* gpa, len, file_offset: u64s; entries from nranges on are reserved */
    FIELD(vmsig_memctx_body, ranges, 8, KC_UNUSED, .arg = sizeof(struct vmsig_ram_range),
          .arg2 = offsetof(struct vmsig_memctx_body, nranges)),
};

static const struct kind_field status_fields[] = {
    FIELD(vmsig_status_body, run_state, 0, KC_NONE),
    FIELD(vmsig_status_body, reserved, 0, KC_ZERO),
    FIELD(vmsig_status_body, reason, 0, KC_STRING),
};

static const struct kind_field ack_fields[] = {
    FIELD(vmsig_ack_body, result, 4, KC_ERRNO),  FIELD(vmsig_ack_body, cmd_kind, 2, KC_NONE),
    FIELD(vmsig_ack_body, reserved, 2, KC_ZERO), FIELD(vmsig_ack_body, value, 8, KC_NONE),
    FIELD(vmsig_ack_body, msg, 0, KC_STRING),
};

static const struct kind_field diag_fields[] = {
    FIELD(vmsig_diag_body, code, 4, KC_NONE),
    FIELD(vmsig_diag_body, reserved, 4, KC_ZERO),
    FIELD(vmsig_diag_body, msg, 0, KC_STRING),
};

/* GRANT, DENY, REVOKE: the daemon fills the holder. */
static const struct kind_field lease_event_fields[] = {
    FIELD(vmsig_lease_body, class_, 0, KC_BELOW, .arg = VMSIG_LEASE_CLASS_COUNT),
    FIELD(vmsig_lease_body, reason, 0, KC_NONE),
    FIELD(vmsig_lease_body, reserved, 2, KC_ZERO),
    FIELD(vmsig_lease_body, holder_id, 4, KC_NONE),
    FIELD(vmsig_lease_body, holder_uid, 4, KC_NONE),
    FIELD(vmsig_lease_body, holder_pid, 4, KC_NONE),
    FIELD(vmsig_lease_body, holder_name, 0, KC_STRING),
};

/* ACQUIRE, RELEASE: only the class is the client's; the rest is sent as 0. */
static const struct kind_field lease_cmd_fields[] = {
    FIELD(vmsig_lease_body, class_, 0, KC_BELOW, .arg = VMSIG_LEASE_CLASS_COUNT),
    FIELD(vmsig_lease_body, reason, 0, KC_ZERO),
    FIELD(vmsig_lease_body, reserved, 2, KC_ZERO),
    FIELD(vmsig_lease_body, holder_id, 4, KC_ZERO),
    FIELD(vmsig_lease_body, holder_uid, 4, KC_ZERO),
    FIELD(vmsig_lease_body, holder_pid, 4, KC_ZERO),
    FIELD(vmsig_lease_body, holder_name, 0, KC_ZERO),
};

static const struct kind_field input_fields[] = {
    FIELD(vmsig_input_body, x, 4, KC_NONE),     FIELD(vmsig_input_body, y, 4, KC_NONE),
    FIELD(vmsig_input_body, code, 4, KC_NONE),  FIELD(vmsig_input_body, value, 4, KC_NONE),
    FIELD(vmsig_input_body, flags, 4, KC_ZERO),
};

static const struct kind_field power_fields[] = {
    FIELD(vmsig_power_body, op, 4, KC_NONE),
};

static const struct kind_field memwrite_fields[] = {
    FIELD(vmsig_memwrite_body, addr, 8, KC_NONE),
    FIELD(vmsig_memwrite_body, len, 4, KC_NONE),
    FIELD(vmsig_memwrite_body, flags, 4, KC_NONE),
    FIELD(vmsig_memwrite_body, data, 0, KC_NONE),
};

/* What of memwrite_check a frame can fail: the sizes and the flags. A zero
 * length or one over the bound is well-formed: the bus refuses it with an
 * ACT_ACK (docs/protocol.md §8.2, check 3); a tail is checked as it comes. */
static enum kind_fault memwrite_frame_check(const struct vmsig_event *ev)
{
        switch (memwrite_check(ev, false, NULL, 0, UINT64_MAX, NULL)) {
        case MW_E_BODY:
        case MW_E_SIZE:
                return KIND_E_SIZE;
        case MW_E_FLAGS:
                return KIND_E_FIELD;
        case MW_OK:
        case MW_E_BOUND:
        case MW_E_ZERO:
        case MW_E_TAIL:
                break;
        }
        return KIND_OK;
}

/* LAYOUT(name, struct, smallest body_len, fields, check, formatter) */
#define LAYOUT(name_, type, min_, fields_, check_, format_)                                                  \
        static const struct kind_layout layout_##name_ = {.name = #name_,                                    \
                                                          .min = (min_),                                     \
                                                          .size = sizeof(type),                              \
                                                          .nfields = NFIELDS(fields_),                       \
                                                          .fields = fields_,                                 \
                                                          .check = check_,                                   \
                                                          .format = format_}

#define FIXED(type) sizeof(type)
LAYOUT(roster, struct vmsig_roster_body, FIXED(struct vmsig_roster_body), roster_fields, NULL,
       kind_format_roster);
LAYOUT(memctx, struct vmsig_memctx_body, FIXED(struct vmsig_memctx_body), memctx_fields, NULL,
       kind_format_memctx);
LAYOUT(status, struct vmsig_status_body, FIXED(struct vmsig_status_body), status_fields, NULL,
       kind_format_status);
LAYOUT(ack, struct vmsig_ack_body, FIXED(struct vmsig_ack_body), ack_fields, NULL, kind_format_ack);
LAYOUT(diag, struct vmsig_diag_body, FIXED(struct vmsig_diag_body), diag_fields, NULL, kind_format_diag);
LAYOUT(lease_event, struct vmsig_lease_body, FIXED(struct vmsig_lease_body), lease_event_fields, NULL,
       kind_format_lease);
LAYOUT(lease_cmd, struct vmsig_lease_body, FIXED(struct vmsig_lease_body), lease_cmd_fields, NULL,
       kind_format_lease);
LAYOUT(input, struct vmsig_input_body, FIXED(struct vmsig_input_body), input_fields, NULL, kind_format_input);
LAYOUT(power, struct vmsig_power_body, FIXED(struct vmsig_power_body), power_fields, NULL, kind_format_power);
/* 16-byte head, then 0..440 inline bytes (none with a tail) */
LAYOUT(memwrite, struct vmsig_memwrite_body, offsetof(struct vmsig_memwrite_body, data), memwrite_fields,
       memwrite_frame_check, kind_format_memwrite);
static const struct kind_layout layout_none = {.name = "none", .format = kind_format_none};

/* The sizes docs/protocol.md §5.2 gives. */
_Static_assert(sizeof(struct vmsig_input_body) == 20 && sizeof(struct vmsig_power_body) == 4 &&
                   sizeof(struct vmsig_lease_body) == 80 && sizeof(struct vmsig_roster_body) == 72 &&
                   sizeof(struct vmsig_status_body) == 168 && sizeof(struct vmsig_ack_body) == 176 &&
                   sizeof(struct vmsig_diag_body) == 168 && sizeof(struct vmsig_memctx_body) == 408 &&
                   sizeof(struct vmsig_memwrite_body) == VMSIG_BODY_MAX,
               "body sizes documented in docs/protocol.md");
_Static_assert(sizeof(struct vmsig_ram_range) == 24 && offsetof(struct vmsig_memctx_body, ranges) == 24,
               "memctx layout");

/* ---- the table ---- */

/* Columns:
 *   kind   VMSIG_EV_<kind>
 *   dir    UP: adapter or core -> controls; DOWN: control -> one endpoint
 *   seam   DOWN: the source the command names, i.e. the adapter it is for
 *          (CORE: the bus itself); UP: ANY
 *   prio   default priority, VMSIG_PRIO_<prio>
 *   cap    DOWN: needed to send; UP: needed to subscribe and receive
 *          (ADDRESSED: only ever addressed to one control; BY_CLASS: the
 *          lease class's capability, checked by lease.c)
 *   lease  DOWN: the lease class the sender must hold on the endpoint
 *   body   the codec-0 body layout above (size, wire fields, formatter)
 *   flags  enum kind_flag */
// clang-format off
#define KINDS(K)                                                                                             \
        /* kind             dir   seam    prio    cap            lease     body         flags */              \
        K(ROSTER,           UP,   ANY,    HIGH,   ROSTER,        NONE,     roster,      KIND_RETAINED)         \
        K(MEMCTX,           UP,   ANY,    HIGH,   MEMCTX,        NONE,     memctx,      KIND_RETAINED | KIND_FD) \
        K(STATUS,           UP,   ANY,    HIGH,   STATUS,        NONE,     status,      KIND_RETAINED)         \
        K(ACT_ACK,          UP,   ANY,    URGENT, ADDRESSED,     NONE,     ack,         0)                     \
        K(DIAG,             UP,   ANY,    NORMAL, STATUS,        NONE,     diag,        0)                     \
        K(LEASE_GRANT,      UP,   ANY,    URGENT, ROSTER_LEASES, NONE,     lease_event, KIND_RETAINED)         \
        K(LEASE_DENY,       UP,   ANY,    URGENT, ADDRESSED,     NONE,     lease_event, 0)                     \
        K(LEASE_REVOKE,     UP,   ANY,    URGENT, ROSTER_LEASES, NONE,     lease_event, 0)                     \
        K(MOVE_ABS,         DOWN, INPUT,  NORMAL, INPUT,         INPUT,    input,       KIND_FF)               \
        K(MOVE_REL,         DOWN, INPUT,  NORMAL, INPUT,         INPUT,    input,       KIND_FF)               \
        K(BUTTON,           DOWN, INPUT,  NORMAL, INPUT,         INPUT,    input,       KIND_FF)               \
        K(KEY,              DOWN, INPUT,  NORMAL, INPUT,         INPUT,    input,       KIND_FF)               \
        K(WHEEL,            DOWN, INPUT,  NORMAL, INPUT,         INPUT,    input,       KIND_FF)               \
        K(CMD_POWER,        DOWN, VMHOST, HIGH,   POWER,         POWER,    power,       0)                     \
        K(CMD_STATUS_QUERY, DOWN, VMHOST, NORMAL, STATUS,        NONE,     none,        0)                     \
        K(CMD_MEMWRITE,     DOWN, MEMCTX, NORMAL, MEMWRITE,      MEMWRITE, memwrite,    KIND_CR3 | KIND_TAIL)  \
        K(LEASE_ACQUIRE,    DOWN, CORE,   URGENT, BY_CLASS,      NONE,     lease_cmd,   0)                     \
        K(LEASE_RELEASE,    DOWN, CORE,   URGENT, BY_CLASS,      NONE,     lease_cmd,   0)
// clang-format on

#define K_SEAM_ANY    (-1)
#define K_SEAM_CORE   VMSIG_SRC_CORE
#define K_SEAM_MEMCTX VMSIG_SRC_MEMCTX
#define K_SEAM_INPUT  VMSIG_SRC_INPUT
#define K_SEAM_VMHOST VMSIG_SRC_VMHOST

#define K_CAP_ROSTER    VMSIG_CAP_ROSTER
#define K_CAP_MEMCTX    VMSIG_CAP_MEMCTX
#define K_CAP_STATUS    VMSIG_CAP_STATUS
#define K_CAP_INPUT     VMSIG_CAP_INPUT
#define K_CAP_POWER     VMSIG_CAP_POWER
#define K_CAP_MEMWRITE  VMSIG_CAP_MEMWRITE
#define K_CAP_ADDRESSED 0u
#define K_CAP_BY_CLASS  0u
/* Who may watch leases change hands: roster, or any lease capability. */
#define K_CAP_ROSTER_LEASES (VMSIG_CAP_ROSTER | VMSIG_CAP_INPUT | VMSIG_CAP_POWER | VMSIG_CAP_MEMWRITE)

#define K_LEASE_NONE     (-1)
#define K_LEASE_INPUT    VMSIG_LEASE_INPUT
#define K_LEASE_POWER    VMSIG_LEASE_POWER
#define K_LEASE_MEMWRITE VMSIG_LEASE_MEMWRITE

#define ROW(kind, dir_, seam_, prio_, cap_, lease_, body_, flags_)                                           \
        [VMSIG_EV_##kind] = {.name = #kind,                                                                  \
                             .dir = KIND_##dir_,                                                             \
                             .seam = K_SEAM_##seam_,                                                         \
                             .priority = VMSIG_PRIO_##prio_,                                                 \
                             .lease = K_LEASE_##lease_,                                                      \
                             .cap = K_CAP_##cap_,                                                            \
                             .flags = (flags_),                                                              \
                             .body = &layout_##body_},

static const struct kind_info table[VMSIG_EV_KIND_MAX_ + 1] = {KINDS(ROW)};

/* The public direction masks must say what the rows say. */
#define UP_BIT(kind, dir_, ...)   | (KIND_##dir_ == KIND_UP ? VMSIG_KIND_BIT(VMSIG_EV_##kind) : 0)
#define DOWN_BIT(kind, dir_, ...) | (KIND_##dir_ == KIND_DOWN ? VMSIG_KIND_BIT(VMSIG_EV_##kind) : 0)
_Static_assert((0 KINDS(UP_BIT)) == VMSIG_KINDS_ALL_UP, "VMSIG_KINDS_ALL_UP disagrees with the kind table");
_Static_assert((0 KINDS(DOWN_BIT)) == VMSIG_KINDS_ALL_DOWN,
               "VMSIG_KINDS_ALL_DOWN disagrees with the kind table");
_Static_assert(VMSIG_EV_KIND_MAX_ < 64, "kinds fit a VMSIG_KIND_BIT mask");

#define CASE(kind, ...) case VMSIG_EV_##kind:

const struct kind_info *kind_info(uint16_t kind)
{
        /* No default: with -Wall -Werror an enumerator of enum vmsig_kind
         * that has no row fails the build here. */
        switch ((enum vmsig_kind)kind) {
                KINDS(CASE)
                return &table[kind];
        case VMSIG_EV_NONE:
        case VMSIG_EV_UP_MAX_:
        case VMSIG_EV_KIND_MAX_:
                break;
        }
        return NULL;
}

/* ---- the public per-kind queries (event.h) ---- */

int vmsig_kind_seam(uint16_t kind)
{
        const struct kind_info *k = kind_info(kind);
        return k ? k->seam : -1;
}

int vmsig_kind_lease_class(uint16_t kind)
{
        const struct kind_info *k = kind_info(kind);
        return k ? k->lease : -1;
}

int vmsig_kind_body_max(uint16_t kind)
{
        const struct kind_info *k = kind_info(kind);
        return k ? k->body->size : -1;
}

const char *vmsig_kind_name(uint16_t kind)
{
        const struct kind_info *k = kind_info(kind);
        return k ? k->name : "?";
}

/* ---- body checks ---- */

static bool all_zero(const uint8_t *p, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (p[i])
                        return false;
        return true;
}

static enum kind_fault check_field(const struct kind_field *f, const uint8_t *body, bool reserved_too)
{
        const uint8_t *p = body + f->off;

        switch ((enum kind_check)f->check) {
        case KC_NONE:
                break;
        case KC_ZERO:
                if (reserved_too && !all_zero(p, f->size))
                        return KIND_E_RESERVED;
                break;
        case KC_STRING:
                if (!memchr(p, '\0', f->size))
                        return KIND_E_STRING;
                break;
        case KC_BELOW:
                if (p[0] >= f->arg)
                        return KIND_E_FIELD;
                break;
        case KC_ERRNO: {
                int32_t v;
                memcpy(&v, p, sizeof(v));
                if (v > 0 || v < -4095)
                        return KIND_E_FIELD;
                break;
        }
        case KC_UNUSED: {
                size_t used = (size_t)body[f->arg2] * f->arg;
                if (used > f->size)
                        return KIND_E_FIELD;
                if (reserved_too && !all_zero(p + used, f->size - used))
                        return KIND_E_RESERVED;
                break;
        }
        }
        return KIND_OK;
}

enum kind_fault kind_check_body(const struct vmsig_event *ev, bool sending)
{
        const struct kind_info *k = kind_info(ev->hdr.kind);
        const struct kind_layout *l;
        uint32_t bl = ev->hdr.body_len;
        enum kind_fault e;

        if (!k || ev->hdr.codec != 0)
                return KIND_OK; /* another codec: the adapter's layout, bounded by VMSIG_BODY_MAX only */
        l = k->body;
        if (bl < l->min || bl > l->size)
                return KIND_E_SIZE;
        for (unsigned i = 0; i < l->nfields; i++) {
                const struct kind_field *f = &l->fields[i];
                if ((size_t)f->off + f->size > bl)
                        continue; /* the absent part of a variable body */
                e = check_field(f, ev->body, k->dir == KIND_DOWN || sending);
                if (e != KIND_OK)
                        return e;
        }
        return l->check ? l->check(ev) : KIND_OK;
}

/* ---- byte order ---- */

void kind_body_byteorder(uint16_t kind, uint8_t codec, uint8_t *body, size_t len)
{
        const struct kind_info *k = kind_info(kind);

        if (!k || codec != 0)
                return; /* other codecs are opaque bytes owned by the adapter */
        for (unsigned i = 0; i < k->body->nfields; i++) {
                const struct kind_field *f = &k->body->fields[i];
                if (!f->swap)
                        continue;
                for (size_t o = f->off; o + f->swap <= (size_t)f->off + f->size && o + f->swap <= len;
                     o += f->swap) {
                        /* le*toh and htole* are the same permutation: one
                         * routine serves both directions. */
                        uint8_t *p = body + o;
                        if (f->swap == 2) {
                                uint16_t v;
                                memcpy(&v, p, 2);
                                v = htole16(v);
                                memcpy(p, &v, 2);
                        } else if (f->swap == 4) {
                                uint32_t v;
                                memcpy(&v, p, 4);
                                v = htole32(v);
                                memcpy(p, &v, 4);
                        } else if (f->swap == 8) {
                                uint64_t v;
                                memcpy(&v, p, 8);
                                v = htole64(v);
                                memcpy(p, &v, 8);
                        }
                }
        }
}

/* ---- CMD_MEMWRITE ---- */

enum memwrite_fault memwrite_check(const struct vmsig_event *ev, bool tail_known, const void *tail,
                                   size_t tail_len, uint64_t bound, struct vmsig_memwrite_req *ret)
{
        const size_t head = offsetof(struct vmsig_memwrite_body, data);
        const uint32_t bl = ev->hdr.body_len;
        const bool src_tail = ev->hdr.flags & VMSIG_F_SRC_PAYLOAD;
        /* The source in an fd: the body is the head plus a u64 src_off, and
         * the payload names the fd (struct vmsig_memwrite_fd). */
        const bool src_fd = ev->hdr.flags & VMSIG_F_HAS_FD;
        struct vmsig_memwrite_fd_body fb;
        struct vmsig_memwrite_body b;

        if (src_fd) {
                if (src_tail)
                        return MW_E_FLAGS; /* one source only */
                if (bl != sizeof(fb))
                        return MW_E_SIZE;
                memcpy(&fb, ev->body, sizeof(fb));
                if (fb.flags & ~(uint32_t)VMSIG_MEMWRITE_PHYS)
                        return MW_E_FLAGS;
                if (fb.len > bound)
                        return MW_E_BOUND;
                if (fb.len == 0)
                        return MW_E_ZERO;
                if (tail_known && (!tail || tail_len != sizeof(struct vmsig_memwrite_fd)))
                        return MW_E_TAIL;
                if (ret) {
                        struct vmsig_memwrite_fd f = {.fd = -1};
                        if (tail)
                                memcpy(&f, tail, sizeof(f));
                        ret->addr = fb.addr;
                        ret->len = fb.len;
                        ret->flags = fb.flags;
                        ret->src = NULL;
                        ret->src_fd = f.fd;
                        ret->src_off = fb.src_off;
                }
                return MW_OK;
        }
        if (bl < head || bl > sizeof(b))
                return MW_E_BODY;
        memcpy(&b, ev->body, head);
        if (b.flags & ~(uint32_t)VMSIG_MEMWRITE_PHYS)
                return MW_E_FLAGS;
        if (b.len > bound)
                return MW_E_BOUND;
        /* Sizes before the zero length: a frame whose sizes disagree is a
         * violation even when it says 0 bytes. */
        if (src_tail ? bl != head || (tail_known && tail_len != b.len) : bl != head + (size_t)b.len)
                return MW_E_SIZE;
        if (b.len == 0)
                return MW_E_ZERO;
        if (tail_known && (src_tail ? !tail : tail != NULL))
                return MW_E_TAIL;
        if (ret) {
                ret->addr = b.addr;
                ret->len = b.len;
                ret->flags = b.flags;
                ret->src = src_tail ? tail : ev->body + head;
                ret->src_fd = -1;
                ret->src_off = 0;
        }
        return MW_OK;
}
