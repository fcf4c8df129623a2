/* SPDX-License-Identifier: MIT */
#ifndef VMSIGD_CONFIG_H
#define VMSIGD_CONFIG_H

/* vmsigd configuration (INI, parsed with libinih). Every key has a default,
 * so the daemon runs without a file; a file that is present is checked
 * strictly and any error (unknown section or key, bad number, bad caps
 * word, unknown user or group) is fatal, with "FILE:LINE: KEY: reason".
 * User and group names are resolved here, at load time, never at connect.
 * The shipped, commented default file is packaging/vmsigd.conf. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <vmsig/bus.h>

#define CONFIG_DEFAULT_PATH               "/etc/vmsig/vmsigd.conf"
#define CONFIG_DEFAULT_SOCKET             "/run/vmsig/vmsigd.sock"
#define CONFIG_DEFAULT_SOCKET_MODE        0660
#define CONFIG_DEFAULT_TRIGGER_DIR        "/run/vmsig/vms"
#define CONFIG_DEFAULT_AUDIT              "journal"
#define CONFIG_DEFAULT_QUEUE_BYTES        (1u << 20)
#define CONFIG_DEFAULT_QUEUE_SOFT_BYTES   0u /* 0: no soft limit */
#define CONFIG_DEFAULT_QUEUE_SOFT_SECONDS 10u
#define CONFIG_DEFAULT_TAIL_MAX           (1u << 20)
#define CONFIG_DEFAULT_CONNS_PER_UID      16u
#define CONFIG_DEFAULT_MAX_ENDPOINTS      1024u
#define CONFIG_DEFAULT_LIBVIRT_URI        "qemu:///system"
#define CONFIG_LIBVIRT_URI_MAX            255u

#define CONFIG_FILE_MAX   (1u << 20)
#define CONFIG_SOCKET_MAX 107u /* sockaddr_un.sun_path minus the NUL */
#define CONFIG_PATH_MAX   1023u

struct config_limits {
        size_t queue_bytes;          /* hard bound of one control's queue */
        size_t queue_soft_bytes;     /* 0 = off; else <= queue_bytes */
        unsigned queue_soft_seconds; /* how long a queue may stay above the soft bound */
        size_t tail_max;             /* CMD_MEMWRITE source (socket tail) bound */
        unsigned conns_per_uid;
        unsigned max_endpoints;
};

enum config_rule_kind {
        CONFIG_RULE_UID = 1,
        CONFIG_RULE_GID = 2,
};

struct config_rule {
        enum config_rule_kind kind;
        uint32_t id;   /* uid or gid, resolved at load */
        uint32_t caps; /* enum vmsig_cap */
        unsigned line; /* of the section header, for messages */
        bool has_caps;
        char section[52]; /* as written, e.g. "group:kvm", for log lines */
};

struct config {
        char socket[CONFIG_SOCKET_MAX + 1];
        mode_t socket_mode;
        bool has_socket_group;
        gid_t socket_gid;
        char trigger_dir[CONFIG_PATH_MAX + 1];
        char audit[CONFIG_PATH_MAX + 8]; /* "journal", "stderr" or "file:/path" */
        /* The libvirt driver (daemon/libvirt_driver.h): the URI, "" = off
         * (written "none"); which domains it attaches. */
        char libvirt_uri[CONFIG_LIBVIRT_URI_MAX + 1];
        enum config_libvirt_attach {
                CONFIG_LIBVIRT_METADATA,   /* domains with the <vmsig:vm> metadata element */
                CONFIG_LIBVIRT_SHARED_RAM, /* those, and every domain with shared file or memfd RAM */
        } libvirt_attach;
        struct config_limits limits;
        struct config_rule *rules;
        size_t n_rules;
};

enum {
        CONFIG_MISSING_OK = 1u << 0, /* config_load: a missing file means defaults */
        CONFIG_NO_NSS = 1u << 1,     /* never look names up (fuzzing): names are errors */
};

/* A config with every default and no rules (only uid 0 is admitted). */
int config_new_default(struct config **ret);

/* Load path (NULL: CONFIG_DEFAULT_PATH). With CONFIG_MISSING_OK a file that
 * does not exist yields the defaults. On error: negative errno and a message
 * in err naming the file, the line and the key. */
int config_load(const char *path, unsigned flags, struct config **ret, char *err, size_t errlen);

/* Parse len bytes of INI text (need not be NUL terminated); filename is for
 * messages. Same rules and results as config_load. */
int config_parse_string(const char *text, size_t len, const char *filename, unsigned flags,
                        struct config **ret, char *err, size_t errlen);

/* Accepts NULL, returns NULL. */
struct config *config_free(struct config *c);

/* Admission for a peer (SO_PEERCRED uid/gid plus its supplementary groups).
 * A uid rule wins outright (so [uid:N] caps = none can shut a user out that
 * a group would admit); otherwise the union of every matching gid rule.
 * uid 0 gets all caps unless a rule names uid 0. 0 with *ret_caps != 0, or
 * -EACCES when nothing is granted. */
int config_admit(const struct config *c, uid_t uid, gid_t gid, const gid_t *groups, size_t n_groups,
                 uint32_t *ret_caps);

/* Bus limits from the config (the rest stays at the bus defaults). */
void config_bus_limits(const struct config *c, struct vmsig_bus_limits *ret);

#endif
