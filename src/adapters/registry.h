/* SPDX-License-Identifier: MIT */
#ifndef VMSIG_ADAPTERS_REGISTRY_H
#define VMSIG_ADAPTERS_REGISTRY_H

/* The seam registry: the one list of seams (memctx, input, vmhost) and VM
 * drivers (qemu, stub), and for each (driver, seam) the adapter with the
 * options it accepts. vmsigd attaches, the trigger parser validates and the
 * public factories answer from this table alone, so a new seam or driver is
 * rows here plus its adapter files.
 *
 * Internal to libvmsig and its static twin (no vmsig_ prefix: not exported,
 * see libvmsig.map). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <vmsig/adapter.h>

/* ---- adapter options ("key=value,key=value") ---- */

enum opt_type {
        OPT_U64,      /* vmsig_option_parse_u64; min..max */
        OPT_WORD,     /* one of words ("a|b|c"); the value is the word's index */
        OPT_ABS_PATH, /* starts with '/'; length min..max */
        OPT_STRING,   /* length min..max */
};

struct opt_spec {
        const char *key;
        enum opt_type type;
        uint64_t min, max;    /* OPT_U64: the value; strings: the length */
        uint64_t def;         /* OPT_U64: the value when absent; OPT_WORD: the index */
        uint64_t multiple;    /* OPT_U64: 0, or the value must be a multiple of it */
        const char *words;    /* OPT_WORD */
        const char *at_least; /* OPT_U64: key of this spec whose value this one must not be below */
};

#define OPT_SPEC_MAX    16 /* options per adapter */
#define OPT_COUNT(spec) (sizeof(spec) / sizeof((spec)[0]))

/* The one strict checker: every item of opts is key=value with a key of
 * spec[0..n), each key at most once, each value of its type and range, and
 * the at_least relations hold. NULL or "" is no options. vals (optional,
 * n entries) gets each option's value: the number, the word's index, for
 * strings 1 if given (read them with vmsig_option_get); defaults for absent
 * ones. 0, or -EINVAL with "KEY: reason" in why (optional). what (optional)
 * names the adapter in the unknown-key message. */
int adapter_options_parse(const char *opts, const struct opt_spec *spec, size_t n, const char *what,
                          uint64_t *vals, char *why, size_t whylen);

/* in[0..len) made printable for a message: control bytes, DEL and bytes >=
 * 0x80 as \xHH, a backslash as \\. Truncates to outlen - 1, never inside an
 * escape. */
void text_printable(const char *in, size_t len, char *out, size_t outlen);

/* ---- adapters, drivers, seams ---- */

/* What an adapter file declares about itself. */
struct adapter_desc {
        const struct vmsig_adapter_ops *ops;
        const struct opt_spec *opts;
        size_t n_opts;
};

/* Each adapter file defines its descriptor next to its ops. */
extern const struct adapter_desc memctx_stub_adapter, input_stub_adapter, vmhost_stub_adapter;
extern const struct adapter_desc memctx_qemu_adapter, input_qemu_adapter, vmhost_qemu_adapter;
/* The memctx of a libvirt domain: the QEMU one, plus the options saying who
 * runs QEMU (its QMP peer is vmsigd's own monitor proxy, daemon/libvirt_*). */
extern const struct adapter_desc memctx_libvirt_adapter;

/* libvirt: a domain vmsigd found through libvirt (daemon/libvirt_driver.h);
 * its qmp= is vmsigd's private monitor proxy for that domain. */
enum vm_driver { VM_DRIVER_QEMU = 0, VM_DRIVER_STUB = 1, VM_DRIVER_LIBVIRT = 2, VM_DRIVER_COUNT };

struct driver_def {
        const char *name; /* the trigger file's driver= value */
        bool needs_qmp;   /* the trigger file must give qmp= */
        bool needs_ram;   /* the trigger file must give ram= */
        /* vmsigd's own driver (libvirt): a trigger file may not name it, since
         * its adapters take options (qemu_pid, qemu_uid) that choose whose fd
         * table and files vmsigd trusts. */
        bool daemon_only;
};

struct seam_def {
        uint8_t seam;            /* enum vmsig_source */
        const char *name;        /* = vmsig_source_name(seam) */
        const char *options_key; /* the trigger file's key of its adapter options */
        uint32_t caps;           /* VMSIG_CAP_* of the commands and events it serves */
        /* The adapter per driver; NULL where this build has none (a
         * stub-only build has no QEMU adapters). */
        const struct adapter_desc *adapter[VM_DRIVER_COUNT];
};

/* Every seam with an adapter, in source order; *ret_n rows. */
const struct seam_def *seam_registry(size_t *ret_n);
/* The row of seam, NULL for one that is not in the registry (core, unknown). */
const struct seam_def *seam_find(uint8_t seam);
/* NULL for an unknown driver. */
const struct driver_def *driver_get(unsigned driver);
/* The driver called name[0..len), or -ENOENT. */
int driver_find(const char *name, size_t len);
/* The adapter of (driver, seam), NULL when there is none in this build. */
const struct adapter_desc *adapter_find(unsigned driver, uint8_t seam);

#endif
