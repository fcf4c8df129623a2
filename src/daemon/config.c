/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>

#include "daemon/config.h"
#include "daemon/trigger.h"

#define RULES_MAX        4096u
#define SECTION_NAME_MAX 48u /* inih keeps 49 characters of a section name */

static void set_defaults(struct config *c)
{
        memset(c, 0, sizeof(*c));
        snprintf(c->socket, sizeof(c->socket), "%s", CONFIG_DEFAULT_SOCKET);
        c->socket_mode = CONFIG_DEFAULT_SOCKET_MODE;
        snprintf(c->trigger_dir, sizeof(c->trigger_dir), "%s", CONFIG_DEFAULT_TRIGGER_DIR);
        snprintf(c->audit, sizeof(c->audit), "%s", CONFIG_DEFAULT_AUDIT);
        snprintf(c->libvirt_uri, sizeof(c->libvirt_uri), "%s", CONFIG_DEFAULT_LIBVIRT_URI);
        c->limits.queue_bytes = CONFIG_DEFAULT_QUEUE_BYTES;
        c->limits.queue_soft_bytes = CONFIG_DEFAULT_QUEUE_SOFT_BYTES;
        c->limits.queue_soft_seconds = CONFIG_DEFAULT_QUEUE_SOFT_SECONDS;
        c->limits.tail_max = CONFIG_DEFAULT_TAIL_MAX;
        c->limits.conns_per_uid = CONFIG_DEFAULT_CONNS_PER_UID;
        c->limits.max_endpoints = CONFIG_DEFAULT_MAX_ENDPOINTS;
}

int config_new_default(struct config **ret)
{
        struct config *c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        set_defaults(c);
        *ret = c;
        return 0;
}

struct config *config_free(struct config *c)
{
        if (c) {
                free(c->rules);
                free(c);
        }
        return NULL;
}

/* ---- value parsers: NULL when fine, else the reason ---- */

/* Decimal, optionally with K/M/G (binary) when sized. No sign, no blanks. */
static const char *parse_number(const char *v, bool sized, uint64_t min, uint64_t max, uint64_t *ret)
{
        uint64_t n = 0, mul = 1;
        const char *p = v;

        if (!*p)
                return "empty value";
        if (*p < '0' || *p > '9')
                return "not a decimal number";
        for (; *p >= '0' && *p <= '9'; p++) {
                if (n > (UINT64_MAX - 9) / 10)
                        return "number too large";
                n = n * 10 + (uint64_t)(*p - '0');
        }
        if (*p) {
                if (!sized)
                        return "not a decimal number";
                if (strcasecmp(p, "k") == 0 || strcasecmp(p, "kib") == 0)
                        mul = 1u << 10;
                else if (strcasecmp(p, "m") == 0 || strcasecmp(p, "mib") == 0)
                        mul = 1u << 20;
                else if (strcasecmp(p, "g") == 0 || strcasecmp(p, "gib") == 0)
                        mul = 1u << 30;
                else
                        return "bad unit (use K, M or G)";
                if (n > UINT64_MAX / mul)
                        return "number too large";
                n *= mul;
        }
        if (n < min || n > max)
                return "out of range";
        *ret = n;
        return NULL;
}

static const char *parse_mode(const char *v, mode_t *ret)
{
        unsigned m = 0;
        size_t n = strlen(v);

        if (n == 0 || n > 4)
                return "expected an octal mode such as 0660";
        for (size_t i = 0; i < n; i++) {
                if (v[i] < '0' || v[i] > '7')
                        return "expected an octal mode such as 0660";
                m = m * 8 + (unsigned)(v[i] - '0');
        }
        if (m > 0777)
                return "only permission bits (at most 0777)";
        *ret = (mode_t)m;
        return NULL;
}

static const char *check_abs(const char *v, size_t max)
{
        size_t n = strlen(v);

        if (!n)
                return "empty value";
        if (v[0] != '/')
                return "not an absolute path";
        if (n > max)
                return max == CONFIG_SOCKET_MAX ? "too long for a unix socket path (max 107 bytes)"
                                                : "path too long";
        for (size_t i = 0; i < n; i++)
                if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
                        return "control character in path";
        return NULL;
}

static bool all_digits(const char *s)
{
        if (!*s)
                return false;
        for (; *s; s++)
                if (*s < '0' || *s > '9')
                        return false;
        return true;
}

/* What a user or group name may look like before it reaches NSS. */
static bool plausible_name(const char *s)
{
        size_t n = strlen(s);

        if (n == 0 || n > 32 || s[0] == '-')
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '_' || c == '-' || (c == '$' && i == n - 1)))
                        return false;
        }
        return true;
}

/* uid or gid from a number or a name. -ENOENT unknown name, -EINVAL bad
 * syntax, other negative errno from NSS. */
static int resolve_id(const char *s, bool user, unsigned flags, uint32_t *ret)
{
        char *buf = NULL;
        size_t sz = 16384;
        int r;

        if (all_digits(s)) {
                uint64_t n;
                if (parse_number(s, false, 0, UINT32_MAX - 1, &n))
                        return -ERANGE;
                *ret = (uint32_t)n;
                return 0;
        }
        if (!plausible_name(s))
                return -EINVAL;
        if (flags & CONFIG_NO_NSS)
                return -ENOENT;

        for (;;) {
                char *nb = realloc(buf, sz);
                if (!nb) {
                        free(buf);
                        return -ENOMEM;
                }
                buf = nb;
                if (user) {
                        struct passwd pw, *res = NULL;
                        r = getpwnam_r(s, &pw, buf, sz, &res);
                        if (r == 0 && res)
                                *ret = (uint32_t)res->pw_uid;
                        else if (r == 0)
                                r = ENOENT;
                } else {
                        struct group gr, *res = NULL;
                        r = getgrnam_r(s, &gr, buf, sz, &res);
                        if (r == 0 && res)
                                *ret = (uint32_t)res->gr_gid;
                        else if (r == 0)
                                r = ENOENT;
                }
                if (r != ERANGE || sz >= (1u << 22))
                        break;
                sz *= 2;
        }
        free(buf);
        return -r;
}

/* ---- the parse ---- */

enum section {
        SEC_NONE,
        SEC_DAEMON,
        SEC_LIMITS,
        SEC_RULE,
};

enum {
        D_SOCKET,
        D_SOCKET_MODE,
        D_SOCKET_GROUP,
        D_TRIGGER_DIR,
        D_AUDIT,
        D_LIBVIRT_URI,
        D_LIBVIRT_ATTACH,
        D_COUNT
};
static const char *const daemon_keys[D_COUNT] = {"socket", "socket_mode", "socket_group",  "trigger_dir",
                                                 "audit",  "libvirt_uri", "libvirt_attach"};

enum {
        L_QUEUE_BYTES,
        L_QUEUE_SOFT_BYTES,
        L_QUEUE_SOFT_SECONDS,
        L_TAIL_MAX,
        L_CONNS,
        L_MAX_ENDPOINTS,
        L_COUNT
};
static const char *const limits_keys[L_COUNT] = {"queue_bytes", "queue_soft_bytes", "queue_soft_seconds",
                                                 "tail_max",    "conns_per_uid",    "max_endpoints"};

struct parse {
        const char *text;
        size_t len, pos;
        unsigned line;
        const char *filename;
        unsigned flags;
        struct config *c;
        size_t rules_cap;

        char *err;
        size_t errlen;
        int r;
        unsigned err_line;

        enum section sec;
        char sec_name[SECTION_NAME_MAX + 2];
        unsigned daemon_line, limits_line;
        unsigned daemon_seen[D_COUNT];
        unsigned limits_seen[L_COUNT];
};

__attribute__((format(printf, 5, 6))) static void perr(struct parse *p, int r, unsigned line,
                                                       const char *field, const char *fmt, ...)
{
        char msg[320];
        va_list ap;

        if (p->r < 0)
                return; /* the first error is the one that counts */
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        p->r = r;
        p->err_line = line;
        parse_fail(r, p->err, p->errlen, p->filename, line, field, "%s", msg);
}

static int add_rule(struct parse *p, enum config_rule_kind kind, uint32_t id, const char *name,
                    const char *field)
{
        struct config *c = p->c;

        for (size_t i = 0; i < c->n_rules; i++)
                if (c->rules[i].kind == kind && c->rules[i].id == id) {
                        perr(p, -EINVAL, p->line, field, "same %s %u as [%s] on line %u",
                             kind == CONFIG_RULE_UID ? "uid" : "gid", id, c->rules[i].section,
                             c->rules[i].line);
                        return -EINVAL;
                }
        if (c->n_rules >= RULES_MAX) {
                perr(p, -E2BIG, p->line, field, "too many admission sections (max %u)", RULES_MAX);
                return -E2BIG;
        }
        if (c->n_rules == p->rules_cap) {
                size_t cap = p->rules_cap ? p->rules_cap * 2 : 8;
                struct config_rule *nr = realloc(c->rules, cap * sizeof(*nr));
                if (!nr) {
                        perr(p, -ENOMEM, p->line, field, "out of memory");
                        return -ENOMEM;
                }
                c->rules = nr;
                p->rules_cap = cap;
        }
        c->rules[c->n_rules++] = (struct config_rule){
            .kind = kind,
            .id = id,
            .line = p->line,
        };
        snprintf(c->rules[c->n_rules - 1].section, sizeof(c->rules[0].section), "%s", name);
        return 0;
}

/* A section header, seen by the reader before inih handles the line (inih
 * does not report empty sections, and names must be resolved once). */
static void open_section(struct parse *p, const char *name, size_t n)
{
        char field[SECTION_NAME_MAX + 8];
        static const struct {
                const char *prefix;
                enum config_rule_kind kind;
                bool user;
        } prefixes[] = {
            {"uid:", CONFIG_RULE_UID, true},
            {"user:", CONFIG_RULE_UID, true},
            {"gid:", CONFIG_RULE_GID, false},
            {"group:", CONFIG_RULE_GID, false},
        };

        if (n > SECTION_NAME_MAX) {
                perr(p, -EINVAL, p->line, "[section]", "section name too long (max %u)", SECTION_NAME_MAX);
                return;
        }
        memcpy(p->sec_name, name, n);
        p->sec_name[n] = '\0';
        snprintf(field, sizeof(field), "[%s]", p->sec_name);

        if (strcmp(p->sec_name, "daemon") == 0 || strcmp(p->sec_name, "limits") == 0) {
                bool d = p->sec_name[0] == 'd';
                unsigned *first = d ? &p->daemon_line : &p->limits_line;
                if (*first) {
                        perr(p, -EINVAL, p->line, field, "duplicate section (first on line %u)", *first);
                        return;
                }
                *first = p->line;
                p->sec = d ? SEC_DAEMON : SEC_LIMITS;
                return;
        }
        for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
                size_t pl = strlen(prefixes[i].prefix);
                const char *who;
                uint32_t id;
                int r;

                if (strncmp(p->sec_name, prefixes[i].prefix, pl) != 0)
                        continue;
                who = p->sec_name + pl;
                r = resolve_id(who, prefixes[i].user, p->flags, &id);
                if (r == -ENOENT)
                        perr(p, -EINVAL, p->line, field, "unknown %s '%s'",
                             prefixes[i].user ? "user" : "group", who);
                else if (r == -EINVAL || r == -ERANGE)
                        perr(p, -EINVAL, p->line, field, "bad %s name or number '%s'",
                             prefixes[i].user ? "user" : "group", who);
                else if (r < 0)
                        perr(p, r, p->line, field, "%s lookup failed: %s",
                             prefixes[i].user ? "user" : "group", strerror(-r));
                else if (add_rule(p, prefixes[i].kind, id, p->sec_name, field) == 0)
                        p->sec = SEC_RULE;
                return;
        }
        perr(p, -EINVAL, p->line, field,
             "unknown section (expected daemon, limits, uid:, gid:, user: or group:)");
}

static bool blank(char c)
{
        return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* fgets-like reader over the buffer: one line per call, so its count is the
 * line inih is handling. It also catches what inih would let through: NUL
 * bytes, overlong lines (inih would split them), continuation lines. */
static char *reader(char *str, int num, void *stream)
{
        struct parse *p = stream;
        const char *line, *nl, *s, *e;
        size_t n;

        if (p->r < 0 || p->pos >= p->len)
                return NULL;
        line = p->text + p->pos;
        nl = memchr(line, '\n', p->len - p->pos);
        n = nl ? (size_t)(nl - line) + 1 : p->len - p->pos;
        p->line++;
        p->pos += n;

        if (memchr(line, '\0', n)) {
                perr(p, -EINVAL, p->line, "(line)", "NUL byte");
                return NULL;
        }
        if (num < 3 || n + 1 > (size_t)num) {
                perr(p, -EINVAL, p->line, "(line)", "too long (max %d bytes)", num > 3 ? num - 3 : 0);
                return NULL;
        }

        s = line;
        e = line + n;
        if (p->line == 1 && n >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
                s += 3; /* inih skips a UTF-8 BOM, so must we */
        if (s < e && (*s == ' ' || *s == '\t')) {
                const char *t = s;
                while (t < e && blank(*t))
                        t++;
                if (t < e && *t != ';' && *t != '#') {
                        perr(p, -EINVAL, p->line, "(line)",
                             "indented line (continuation lines are not allowed)");
                        return NULL;
                }
        } else if (s < e && *s == '[') {
                const char *close = memchr(s, ']', (size_t)(e - s));
                if (close)
                        open_section(p, s + 1, (size_t)(close - s - 1));
                else
                        p->sec = SEC_NONE; /* inih reports the syntax error */
                if (p->r < 0)
                        return NULL;
        }
        memcpy(str, line, n);
        str[n] = '\0';
        return str;
}

static int find_key(const char *const *keys, int n, const char *name)
{
        for (int i = 0; i < n; i++)
                if (strcmp(keys[i], name) == 0)
                        return i;
        return -1;
}

static void handle_daemon(struct parse *p, int k, const char *v)
{
        struct config *c = p->c;
        const char *why = NULL;

        switch (k) {
        case D_SOCKET:
                why = check_abs(v, CONFIG_SOCKET_MAX);
                if (!why)
                        snprintf(c->socket, sizeof(c->socket), "%s", v);
                break;
        case D_SOCKET_MODE:
                why = parse_mode(v, &c->socket_mode);
                break;
        case D_SOCKET_GROUP: {
                uint32_t gid;
                int r = resolve_id(v, false, p->flags, &gid);
                if (r == -ENOENT)
                        why = "unknown group";
                else if (r == -EINVAL || r == -ERANGE)
                        why = "bad group name or number";
                else if (r < 0)
                        why = "group lookup failed";
                else {
                        c->has_socket_group = true;
                        c->socket_gid = (gid_t)gid;
                }
                break;
        }
        case D_TRIGGER_DIR:
                why = check_abs(v, CONFIG_PATH_MAX);
                if (!why)
                        snprintf(c->trigger_dir, sizeof(c->trigger_dir), "%s", v);
                break;
        case D_AUDIT:
                if (strcmp(v, "journal") == 0 || strcmp(v, "stderr") == 0)
                        ;
                else if (strncmp(v, "file:", 5) == 0)
                        why = check_abs(v + 5, CONFIG_PATH_MAX);
                else
                        why = "expected journal, stderr or file:/absolute/path";
                if (!why)
                        snprintf(c->audit, sizeof(c->audit), "%s", v);
                break;
        case D_LIBVIRT_URI:
                if (!*v || strlen(v) > CONFIG_LIBVIRT_URI_MAX)
                        why = "expected a libvirt URI (at most 255 bytes) or none";
                else
                        for (const char *q = v; *q && !why; q++)
                                if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7f)
                                        why = "a libvirt URI has no blanks or control bytes";
                if (!why)
                        snprintf(c->libvirt_uri, sizeof(c->libvirt_uri), "%s", strcmp(v, "none") ? v : "");
                break;
        case D_LIBVIRT_ATTACH:
                if (!strcmp(v, "metadata"))
                        c->libvirt_attach = CONFIG_LIBVIRT_METADATA;
                else if (!strcmp(v, "shared-ram"))
                        c->libvirt_attach = CONFIG_LIBVIRT_SHARED_RAM;
                else
                        why = "expected metadata or shared-ram";
                break;
        }
        if (why)
                perr(p, -EINVAL, p->line, daemon_keys[k], "%s", why);
}

static void handle_limits(struct parse *p, int k, const char *v)
{
        struct config_limits *l = &p->c->limits;
        const char *why = NULL;
        uint64_t n = 0;

        switch (k) {
        case L_QUEUE_BYTES:
                why = parse_number(v, true, 4096, 1ull << 30, &n);
                l->queue_bytes = (size_t)n;
                break;
        case L_QUEUE_SOFT_BYTES:
                why = parse_number(v, true, 0, 1ull << 30, &n);
                l->queue_soft_bytes = (size_t)n;
                break;
        case L_QUEUE_SOFT_SECONDS:
                why = parse_number(v, false, 1, 3600, &n);
                l->queue_soft_seconds = (unsigned)n;
                break;
        case L_TAIL_MAX:
                why = parse_number(v, true, 4096, 64ull << 20, &n);
                l->tail_max = (size_t)n;
                break;
        case L_CONNS:
                why = parse_number(v, false, 1, 4096, &n);
                l->conns_per_uid = (unsigned)n;
                break;
        case L_MAX_ENDPOINTS:
                why = parse_number(v, false, 1, 65535, &n);
                l->max_endpoints = (unsigned)n;
                break;
        }
        if (why)
                perr(p, -EINVAL, p->line, limits_keys[k], "%s", why);
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
        struct parse *p = user;
        int k;

        if (p->r < 0)
                return 0;
        if (!value) {
                perr(p, -EINVAL, p->line, name, "missing value");
                return 0;
        }
        if (p->sec == SEC_NONE || strcmp(section, p->sec_name) != 0) {
                perr(p, -EINVAL, p->line, name, "key outside of a known section");
                return 0;
        }
        switch (p->sec) {
        case SEC_DAEMON:
        case SEC_LIMITS: {
                bool d = p->sec == SEC_DAEMON;
                unsigned *seen = d ? p->daemon_seen : p->limits_seen;
                k = d ? find_key(daemon_keys, D_COUNT, name) : find_key(limits_keys, L_COUNT, name);
                if (k < 0) {
                        perr(p, -EINVAL, p->line, name, "unknown key in [%s]", p->sec_name);
                        return 0;
                }
                if (seen[k]) {
                        perr(p, -EINVAL, p->line, name, "duplicate key (first on line %u)", seen[k]);
                        return 0;
                }
                seen[k] = p->line;
                if (d)
                        handle_daemon(p, k, value);
                else
                        handle_limits(p, k, value);
                break;
        }
        case SEC_RULE: {
                struct config_rule *rule = &p->c->rules[p->c->n_rules - 1];
                uint32_t caps;
                if (strcmp(name, "caps") != 0) {
                        perr(p, -EINVAL, p->line, name, "unknown key in [%s] (only caps)", p->sec_name);
                        return 0;
                }
                if (rule->has_caps) {
                        perr(p, -EINVAL, p->line, name, "duplicate key in [%s]", p->sec_name);
                        return 0;
                }
                if (!*value) {
                        perr(p, -EINVAL, p->line, name, "empty (write 'none' to grant nothing)");
                        return 0;
                }
                if (vmsig_caps_parse(value, &caps) < 0) {
                        perr(p, -EINVAL, p->line, name,
                             "bad capability list (words: roster memctx status input power memwrite all "
                             "none)");
                        return 0;
                }
                rule->caps = caps;
                rule->has_caps = true;
                break;
        }
        case SEC_NONE:
                break;
        }
        return p->r < 0 ? 0 : 1;
}

int config_parse_string(const char *text, size_t len, const char *filename, unsigned flags,
                        struct config **ret, char *err, size_t errlen)
{
        struct parse p = {
            .text = text,
            .len = len,
            .filename = filename ? filename : "(config)",
            .flags = flags,
            .err = err,
            .errlen = errlen,
        };
        int r, ir;

        if (err && errlen)
                err[0] = '\0';
        if (len > CONFIG_FILE_MAX)
                return parse_fail(-EFBIG, err, errlen, p.filename, 0, "file", "too large (max %u bytes)",
                                  CONFIG_FILE_MAX);
        if (!text && len)
                return -EINVAL;
        r = config_new_default(&p.c);
        if (r < 0)
                return r;

        ir = ini_parse_stream(reader, &p, handler, &p);
        if (ir == -2) {
                config_free(p.c);
                return parse_fail(-ENOMEM, err, errlen, p.filename, 0, "file", "out of memory");
        }
        if (ir > 0 && (p.r == 0 || (unsigned)ir < p.err_line)) {
                p.r = 0; /* an earlier syntax error takes precedence */
                perr(&p, -EINVAL, (unsigned)ir, "(line)",
                     "syntax error (expected [section], key = value or a comment)");
        }

        /* Whole-file checks, each naming the line that is to blame. */
        for (size_t i = 0; p.r == 0 && i < p.c->n_rules; i++) {
                char field[64];
                snprintf(field, sizeof(field), "[%s]", p.c->rules[i].section);
                if (!p.c->rules[i].has_caps)
                        perr(&p, -EINVAL, p.c->rules[i].line, field, "section without a caps key");
        }
        if (p.r == 0 && p.c->limits.queue_soft_bytes > p.c->limits.queue_bytes)
                perr(&p, -EINVAL, p.limits_seen[L_QUEUE_SOFT_BYTES], "queue_soft_bytes",
                     "larger than queue_bytes (%zu)", p.c->limits.queue_bytes);

        if (p.r < 0) {
                config_free(p.c);
                return p.r;
        }
        *ret = p.c;
        return 0;
}

int config_load(const char *path, unsigned flags, struct config **ret, char *err, size_t errlen)
{
        struct stat st;
        char *buf;
        size_t len = 0;
        int fd, r;

        if (!path)
                path = CONFIG_DEFAULT_PATH;
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0) {
                r = -errno;
                if (r == -ENOENT && (flags & CONFIG_MISSING_OK))
                        return config_new_default(ret);
                return parse_fail(r, err, errlen, path, 0, "file", "open: %s", strerror(-r));
        }
        if (fstat(fd, &st) < 0) {
                r = -errno;
                close(fd);
                return parse_fail(r, err, errlen, path, 0, "file", "fstat: %s", strerror(-r));
        }
        if (!S_ISREG(st.st_mode)) {
                close(fd);
                return parse_fail(-EINVAL, err, errlen, path, 0, "file", "not a regular file");
        }
        if (st.st_size > (off_t)CONFIG_FILE_MAX) {
                close(fd);
                return parse_fail(-EFBIG, err, errlen, path, 0, "file", "too large (max %u bytes)",
                                  CONFIG_FILE_MAX);
        }
        buf = malloc(CONFIG_FILE_MAX + 1);
        if (!buf) {
                close(fd);
                return -ENOMEM;
        }
        while (len < CONFIG_FILE_MAX + 1) {
                ssize_t n = read(fd, buf + len, CONFIG_FILE_MAX + 1 - len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        close(fd);
                        free(buf);
                        return parse_fail(r, err, errlen, path, 0, "file", "read: %s", strerror(-r));
                }
                if (n == 0)
                        break;
                len += (size_t)n;
        }
        close(fd);
        r = config_parse_string(buf, len, path, flags, ret, err, errlen);
        free(buf);
        return r;
}

int config_admit(const struct config *c, uid_t uid, gid_t gid, const gid_t *groups, size_t n_groups,
                 uint32_t *ret_caps)
{
        uint32_t caps = 0;
        bool root_rule = false;

        for (size_t i = 0; i < c->n_rules; i++) {
                const struct config_rule *r = &c->rules[i];
                if (r->kind != CONFIG_RULE_UID)
                        continue;
                if (r->id == 0)
                        root_rule = true;
                if (r->id == (uint32_t)uid) {
                        if (!r->caps)
                                return -EACCES;
                        *ret_caps = r->caps;
                        return 0;
                }
        }
        /* The host's root can do all of this anyway; denying it by default
         * would only get in the way. A rule for uid 0 replaces this. */
        if (uid == 0 && !root_rule) {
                *ret_caps = VMSIG_CAP_ALL;
                return 0;
        }
        for (size_t i = 0; i < c->n_rules; i++) {
                const struct config_rule *r = &c->rules[i];
                bool match;
                if (r->kind != CONFIG_RULE_GID)
                        continue;
                match = r->id == (uint32_t)gid;
                for (size_t j = 0; !match && j < n_groups; j++)
                        match = r->id == (uint32_t)groups[j];
                if (match)
                        caps |= r->caps;
        }
        if (!caps)
                return -EACCES;
        *ret_caps = caps;
        return 0;
}

void config_bus_limits(const struct config *c, struct vmsig_bus_limits *ret)
{
        vmsig_bus_limits_default(ret);
        ret->queue_bytes = c->limits.queue_bytes;
        ret->memwrite_max = c->limits.tail_max;
        ret->max_endpoints = c->limits.max_endpoints;
}
