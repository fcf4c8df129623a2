/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/trigger.h"

void trigger_printable(const char *in, char *out, size_t outlen)
{
        static const char hex[] = "0123456789abcdef";
        size_t o = 0;

        if (!outlen)
                return;
        for (; in && *in; in++) {
                unsigned char c = (unsigned char)*in;
                /* Bytes >= 0x80 too: UTF-8 encoded C1 controls (CSI) act on
                 * some terminals. The backslash is doubled so that an
                 * escape in the output is never ambiguous. */
                if (c == '\\') {
                        if (o + 2 >= outlen)
                                break;
                        out[o++] = '\\';
                        out[o++] = '\\';
                } else if (c < 0x20 || c >= 0x7f) {
                        if (o + 4 >= outlen)
                                break;
                        out[o++] = '\\';
                        out[o++] = 'x';
                        out[o++] = hex[c >> 4];
                        out[o++] = hex[c & 15];
                } else {
                        if (o + 1 >= outlen)
                                break;
                        out[o++] = (char)c;
                }
        }
        out[o] = '\0';
}

bool trigger_error_transient(int r)
{
        switch (r) {
        case -EMFILE:
        case -ENFILE:
        case -ENOMEM:
        case -ENOBUFS:
        case -EAGAIN:
        case -EINTR:
        case -EBUSY:
        case -ETIMEDOUT:
                return true;
        default:
                return false;
        }
}

/* Messages carry names from untrusted files and directory entries: keep
 * control characters (newlines above all) out of the log line. */
int parse_fail(int r, char *err, size_t errlen, const char *file, unsigned line, const char *field,
               const char *fmt, ...)
{
        char f[1024], fld[288], msg[512];
        va_list ap;

        if (!err || !errlen)
                return r;
        trigger_printable(file, f, sizeof(f));
        trigger_printable(field, fld, sizeof(fld));
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        if (line)
                snprintf(err, errlen, "%s:%u: %s: %s", f, line, fld, msg);
        else
                snprintf(err, errlen, "%s: %s: %s", f, fld, msg);
        return r;
}

enum key_id { K_NAME, K_DRIVER, K_QMP, K_RAM, K_INPUT, K_MEMCTX_OPT, K_INPUT_OPT, K_VMHOST_OPT, K_COUNT };

static const char *const key_names[K_COUNT] = {
    [K_NAME] = "name",
    [K_DRIVER] = "driver",
    [K_QMP] = "qmp",
    [K_RAM] = "ram",
    [K_INPUT] = "input",
    [K_MEMCTX_OPT] = "memctx_options",
    [K_INPUT_OPT] = "input_options",
    [K_VMHOST_OPT] = "vmhost_options",
};

static bool is_name_char(char c)
{
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
               c == '_' || c == '-';
}

static bool is_blank(char c)
{
        return c == ' ' || c == '\t';
}

/* Returns NULL when fine, else the reason. */
static const char *check_name(const char *v, size_t n)
{
        if (n == 0)
                return "empty";
        if (n > TRIGGER_NAME_MAX)
                return "too long (max 63 characters)";
        for (size_t i = 0; i < n; i++)
                if (!is_name_char(v[i]))
                        return "invalid character (allowed: A-Z a-z 0-9 . _ -)";
        /* Names may end up in paths and on command lines. */
        if (v[0] == '.' || v[0] == '-')
                return "must not start with '.' or '-'";
        return NULL;
}

static const char *check_path(const char *v, size_t n, size_t max)
{
        if (n == 0)
                return "empty";
        if (v[0] != '/')
                return "not an absolute path";
        if (n > max)
                return max == TRIGGER_QMP_MAX ? "too long for a unix socket path (max 107 bytes)"
                                              : "too long (max 1023 bytes)";
        return NULL;
}

/* "k=v,k=v": keys [A-Za-z0-9_-]+, values without ',' or blanks. */
static const char *check_options(const char *v, size_t n)
{
        size_t i = 0;

        if (n > TRIGGER_OPT_MAX)
                return "too long (max 255 bytes)";
        while (i < n) {
                size_t k = i;
                while (i < n && (is_name_char(v[i]) && v[i] != '.'))
                        i++;
                if (i == k)
                        return "expected key=value[,key=value...]";
                if (i >= n || v[i] != '=')
                        return "expected key=value[,key=value...]";
                i++;
                while (i < n && v[i] != ',') {
                        if (is_blank(v[i]) || v[i] == '=')
                                return "blank or '=' in an option value";
                        i++;
                }
                if (i < n) {
                        i++; /* ',' */
                        if (i == n)
                                return "trailing ','";
                }
        }
        return NULL;
}

static const char *check_input(const char *v, size_t n)
{
        if (n > TRIGGER_OPT_MAX)
                return "too long (max 255 bytes)";
        return NULL;
}

static void store(char *dst, const char *v, size_t n)
{
        memcpy(dst, v, n);
        dst[n] = '\0';
}

/* ---- adapter options ----
 * What each adapter accepts, so that a bad option refuses the whole file
 * (naming FILE:LINE: KEY) before anything is attached. Mirrors the checks in
 * the adapters' open(); test_trigger cross-checks the two. */

enum opt_type { OPT_U64, OPT_WORD, OPT_ABS_PATH, OPT_STRING };

struct opt_spec {
        const char *key;
        enum opt_type type;
        uint64_t min, max, def; /* OPT_U64; max is also the length limit of strings */
        const char *words;      /* OPT_WORD: "a|b|c" */
};

struct seam_spec {
        const char *what; /* for messages */
        const struct opt_spec *opts;
        size_t n;
        bool retry_pair; /* retry_max_ms >= retry_ms */
};

static const struct opt_spec stub_memctx[] = {
    {"ram_mib", OPT_U64, 8, 1024, 8, NULL},
    {"fail_boots", OPT_U64, 0, 1000000, 0, NULL},
    {"retry_ms", OPT_U64, 1, 60000, 20, NULL},
};
static const struct opt_spec stub_input[] = {{"record", OPT_STRING, 1, 4095, 0, NULL}};
static const struct opt_spec stub_vmhost[] = {
    {"state", OPT_WORD, 0, 15, 0, "running|paused|shutdown"},
    {"powerdown_ms", OPT_U64, 1, 600000, 50, NULL},
};
/* For the retry pair check, retry_ms comes first, retry_max_ms second. */
static const struct opt_spec qemu_memctx[] = {
    {"retry_ms", OPT_U64, 1, 60000, 100, NULL},
    {"retry_max_ms", OPT_U64, 1, 600000, 2000, NULL},
    {"os", OPT_WORD, 0, 15, 0, "auto|linux|windows"},
};
static const struct opt_spec qemu_input[] = {
    {"retry_ms", OPT_U64, 1, 60000, 100, NULL},
    {"retry_max_ms", OPT_U64, 1, 600000, 2000, NULL},
    {"uinput", OPT_ABS_PATH, 1, 127, 0, NULL},
    {"cmd_timeout_ms", OPT_U64, 10, 600000, 3000, NULL},
};
static const struct opt_spec qemu_vmhost[] = {
    {"retry_ms", OPT_U64, 1, 60000, 100, NULL},
    {"retry_max_ms", OPT_U64, 1, 600000, 2000, NULL},
    {"cmd_timeout_ms", OPT_U64, 10, 600000, 3000, NULL},
};

#define N_OPTS(a) (sizeof(a) / sizeof((a)[0]))
static const struct seam_spec seam_specs[2][3] = {
    [TRIGGER_DRIVER_QEMU] = {{"qemu memctx", qemu_memctx, N_OPTS(qemu_memctx), true},
                             {"qemu input", qemu_input, N_OPTS(qemu_input), true},
                             {"qemu vmhost", qemu_vmhost, N_OPTS(qemu_vmhost), true}},
    [TRIGGER_DRIVER_STUB] = {{"stub memctx", stub_memctx, N_OPTS(stub_memctx), false},
                             {"stub input", stub_input, N_OPTS(stub_input), false},
                             {"stub vmhost", stub_vmhost, N_OPTS(stub_vmhost), false}},
};

static bool parse_u64(const char *v, uint64_t *ret)
{
        return vmsig_option_parse_u64(v, ret) == 0; /* what the adapters read */
}

static bool word_in(const char *v, const char *words)
{
        size_t n = strlen(v);

        for (const char *p = words; *p;) {
                const char *e = strchrnul(p, '|');
                if ((size_t)(e - p) == n && memcmp(p, v, n) == 0)
                        return true;
                p = *e ? e + 1 : e;
        }
        return false;
}

/* opts passed check_options() already. */
static int check_adapter_options(const char *opts, enum trigger_driver driver, int seam_idx,
                                 const char *field, const char *filename, unsigned line, char *err,
                                 size_t errlen)
{
        const struct seam_spec *sp = &seam_specs[driver][seam_idx];
        uint64_t val[8] = {0};
        bool seen[8] = {false};
        char known[160] = "";

        for (size_t i = 0; i < sp->n && i < 8; i++) {
                val[i] = sp->opts[i].def;
                snprintf(known + strlen(known), sizeof(known) - strlen(known), "%s%s", i ? ", " : "",
                         sp->opts[i].key);
        }
        for (const char *p = opts; *p;) {
                const char *end = strchrnul(p, ',');
                const char *eq = memchr(p, '=', (size_t)(end - p));
                char key[TRIGGER_OPT_MAX + 1], v[TRIGGER_OPT_MAX + 1], pv[4 * TRIGGER_OPT_MAX + 1];
                const struct opt_spec *o = NULL;
                size_t i;

                store(key, p, (size_t)(eq - p));
                store(v, eq + 1, (size_t)(end - eq - 1));
                p = *end ? end + 1 : end;
                trigger_printable(v, pv, sizeof(pv));
                for (i = 0; i < sp->n; i++)
                        if (strcmp(sp->opts[i].key, key) == 0) {
                                o = &sp->opts[i];
                                break;
                        }
                if (!o)
                        return parse_fail(-EINVAL, err, errlen, filename, line, field,
                                          "%s: unknown option for the %s adapter (known: %s)", key, sp->what,
                                          known);
                if (seen[i])
                        return parse_fail(-EINVAL, err, errlen, filename, line, field, "%s: given twice",
                                          key);
                seen[i] = true;
                switch (o->type) {
                case OPT_U64:
                        if (!parse_u64(v, &val[i]))
                                return parse_fail(-EINVAL, err, errlen, filename, line, field,
                                                  "%s: '%s' is not a number", key, pv);
                        if (val[i] < o->min || val[i] > o->max)
                                return parse_fail(-EINVAL, err, errlen, filename, line, field,
                                                  "%s: %s is out of range (%llu..%llu)", key, pv,
                                                  (unsigned long long)o->min, (unsigned long long)o->max);
                        if (strcmp(o->key, "ram_mib") == 0 && val[i] % 4)
                                return parse_fail(-EINVAL, err, errlen, filename, line, field,
                                                  "%s: %s is not a multiple of 4", key, pv);
                        break;
                case OPT_WORD:
                        if (!word_in(v, o->words))
                                return parse_fail(-EINVAL, err, errlen, filename, line, field,
                                                  "%s: '%s' is not one of %s", key, pv, o->words);
                        break;
                case OPT_ABS_PATH:
                case OPT_STRING:
                        if (o->type == OPT_ABS_PATH && v[0] != '/')
                                return parse_fail(-EINVAL, err, errlen, filename, line, field,
                                                  "%s: '%s' is not an absolute path", key, pv);
                        if (strlen(v) < o->min || strlen(v) > o->max)
                                return parse_fail(-EINVAL, err, errlen, filename, line, field,
                                                  "%s: length must be %llu..%llu bytes", key,
                                                  (unsigned long long)o->min, (unsigned long long)o->max);
                        break;
                }
        }
        if (sp->retry_pair && val[1] < val[0])
                return parse_fail(-EINVAL, err, errlen, filename, line, field,
                                  "retry_max_ms (%llu) is below retry_ms (%llu)", (unsigned long long)val[1],
                                  (unsigned long long)val[0]);
        return 0;
}

int trigger_parse(const char *text, size_t len, const char *filename, struct trigger *ret, char *err,
                  size_t errlen)
{
        struct trigger t;
        unsigned seen_line[K_COUNT] = {0};
        unsigned lineno = 0;
        size_t pos = 0;

        if (!filename)
                filename = "(trigger)";
        if (len > TRIGGER_FILE_MAX)
                return parse_fail(-EFBIG, err, errlen, filename, 0, "file", "too large (%zu bytes, max %u)", len,
                            TRIGGER_FILE_MAX);
        if (!text && len)
                return parse_fail(-EINVAL, err, errlen, filename, 0, "file", "no data");

        memset(&t, 0, sizeof(t));
        t.driver = TRIGGER_DRIVER_QEMU;

        while (pos < len) {
                const char *line = text + pos;
                const char *nl = memchr(line, '\n', len - pos);
                size_t n = nl ? (size_t)(nl - line) : len - pos;
                const char *k, *v, *eq;
                size_t kn, vn;
                const char *why = NULL;
                int id;

                pos += n + (nl ? 1 : 0);
                lineno++;
                if (n > TRIGGER_LINE_MAX)
                        return parse_fail(-EINVAL, err, errlen, filename, lineno, "(line)",
                                    "too long (%zu bytes, max %u)", n, TRIGGER_LINE_MAX);
                if (memchr(line, '\0', n))
                        return parse_fail(-EINVAL, err, errlen, filename, lineno, "(line)", "NUL byte");

                while (n && is_blank(*line))
                        line++, n--;
                while (n && is_blank(line[n - 1]))
                        n--;
                if (n == 0 || line[0] == '#')
                        continue;

                eq = memchr(line, '=', n);
                if (!eq)
                        return parse_fail(-EINVAL, err, errlen, filename, lineno, "(line)",
                                    "expected key=value or a '#' comment");
                k = line;
                kn = (size_t)(eq - line);
                while (kn && is_blank(k[kn - 1]))
                        kn--;
                v = eq + 1;
                vn = n - (size_t)(v - line);
                while (vn && is_blank(*v))
                        v++, vn--;

                for (id = 0; id < K_COUNT; id++)
                        if (strlen(key_names[id]) == kn && memcmp(key_names[id], k, kn) == 0)
                                break;
                if (id == K_COUNT) {
                        char key[64];
                        size_t cn = kn < sizeof(key) - 1 ? kn : sizeof(key) - 1;
                        if (kn == 0)
                                return parse_fail(-EINVAL, err, errlen, filename, lineno, "(line)", "empty key");
                        store(key, k, cn);
                        return parse_fail(-EINVAL, err, errlen, filename, lineno, key, "unknown key");
                }
                if (seen_line[id])
                        return parse_fail(-EINVAL, err, errlen, filename, lineno, key_names[id],
                                    "duplicate key (first set on line %u)", seen_line[id]);
                seen_line[id] = lineno;

                for (size_t i = 0; i < vn; i++)
                        if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
                                return parse_fail(-EINVAL, err, errlen, filename, lineno, key_names[id],
                                            "control character in value");

                switch (id) {
                case K_NAME:
                        why = check_name(v, vn);
                        if (!why)
                                store(t.name, v, vn);
                        break;
                case K_DRIVER:
                        if (vn == 4 && memcmp(v, "qemu", 4) == 0)
                                t.driver = TRIGGER_DRIVER_QEMU;
                        else if (vn == 4 && memcmp(v, "stub", 4) == 0)
                                t.driver = TRIGGER_DRIVER_STUB;
                        else
                                why = "unknown driver (expected qemu or stub)";
                        break;
                case K_QMP:
                        why = check_path(v, vn, TRIGGER_QMP_MAX);
                        if (!why)
                                store(t.qmp, v, vn);
                        break;
                case K_RAM:
                        why = check_path(v, vn, TRIGGER_PATH_MAX);
                        if (!why)
                                store(t.ram, v, vn);
                        break;
                case K_INPUT:
                        why = check_input(v, vn);
                        if (!why)
                                store(t.input, v, vn);
                        break;
                case K_MEMCTX_OPT:
                case K_INPUT_OPT:
                case K_VMHOST_OPT: {
                        char *dst = id == K_MEMCTX_OPT  ? t.memctx_options
                                    : id == K_INPUT_OPT ? t.input_options
                                                        : t.vmhost_options;
                        why = check_options(v, vn);
                        if (!why)
                                store(dst, v, vn);
                        break;
                }
                }
                if (why)
                        return parse_fail(-EINVAL, err, errlen, filename, lineno, key_names[id], "%s", why);
        }

        if (!seen_line[K_NAME])
                return parse_fail(-EINVAL, err, errlen, filename, 0, "name", "required key missing");
        if (t.driver == TRIGGER_DRIVER_QEMU) {
                if (!seen_line[K_QMP])
                        return parse_fail(-EINVAL, err, errlen, filename, 0, "qmp",
                                    "required key missing (driver=qemu)");
                if (!seen_line[K_RAM])
                        return parse_fail(-EINVAL, err, errlen, filename, 0, "ram",
                                    "required key missing (driver=qemu)");
        }
        {
                static const int opt_keys[3] = {K_MEMCTX_OPT, K_INPUT_OPT, K_VMHOST_OPT};
                for (int i = 0; i < 3; i++) {
                        const char *v = i == 0   ? t.memctx_options
                                        : i == 1 ? t.input_options
                                                 : t.vmhost_options;
                        int r;
                        if (!v[0])
                                continue;
                        r = check_adapter_options(v, t.driver, i, key_names[opt_keys[i]], filename,
                                                  seen_line[opt_keys[i]], err, errlen);
                        if (r < 0)
                                return r;
                }
        }
        *ret = t;
        return 0;
}

bool trigger_filename_ignored(const char *filename)
{
        size_t n;

        if (!filename || !*filename || strchr(filename, '/'))
                return true;
        n = strlen(filename);
        if (filename[0] == '.' || filename[n - 1] == '~')
                return true;
        return n >= 4 && strcmp(filename + n - 4, ".tmp") == 0;
}

int trigger_load(int dirfd, const char *filename, struct trigger *ret, struct stat *ret_st, char *err,
                 size_t errlen)
{
        char buf[TRIGGER_FILE_MAX + 1];
        struct stat st;
        size_t len = 0;
        int fd, r;

        if (ret_st)
                memset(ret_st, 0, sizeof(*ret_st));
        if (trigger_filename_ignored(filename))
                return parse_fail(-EAGAIN, err, errlen, filename ? filename : "", 0, "file",
                            "temporary or invalid file name, ignored");

        fd = openat(dirfd, filename, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                r = -errno;
                if (r == -ELOOP)
                        return parse_fail(-ELOOP, err, errlen, filename, 0, "file", "is a symbolic link");
                return parse_fail(r, err, errlen, filename, 0, "file", "open: %s", strerror(-r));
        }
        if (fstat(fd, &st) < 0) {
                r = -errno;
                close(fd);
                return parse_fail(r, err, errlen, filename, 0, "file", "fstat: %s", strerror(-r));
        }
        if (ret_st)
                *ret_st = st;
        /* Trigger files name sockets and RAM files the daemon opens with its
         * own privileges: only the daemon's user (or root) may write them. */
        if (!S_ISREG(st.st_mode))
                r = parse_fail(-EBADFD, err, errlen, filename, 0, "file", "not a regular file");
        else if (st.st_uid != 0 && st.st_uid != geteuid())
                r = parse_fail(-EPERM, err, errlen, filename, 0, "file",
                         "owned by uid %u, not by root or the daemon", (unsigned)st.st_uid);
        else if (st.st_mode & (S_IWGRP | S_IWOTH))
                r = parse_fail(-EPERM, err, errlen, filename, 0, "file", "writable by group or others (mode %04o)",
                         (unsigned)(st.st_mode & 07777));
        else if (st.st_size > (off_t)TRIGGER_FILE_MAX)
                r = parse_fail(-EFBIG, err, errlen, filename, 0, "file", "too large (%lld bytes, max %u)",
                         (long long)st.st_size, TRIGGER_FILE_MAX);
        else
                r = 0;
        if (r < 0) {
                close(fd);
                return r;
        }

        /* Read one byte more than allowed so growth after fstat is caught. */
        while (len < sizeof(buf)) {
                ssize_t n = read(fd, buf + len, sizeof(buf) - len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        close(fd);
                        return parse_fail(r, err, errlen, filename, 0, "file", "read: %s", strerror(-r));
                }
                if (n == 0)
                        break;
                len += (size_t)n;
        }
        close(fd);

        return trigger_parse(buf, len, filename, ret, err, errlen);
}

bool trigger_equal(const struct trigger *a, const struct trigger *b)
{
        return a->driver == b->driver && strcmp(a->name, b->name) == 0 && strcmp(a->qmp, b->qmp) == 0 &&
               strcmp(a->ram, b->ram) == 0 && strcmp(a->input, b->input) == 0 &&
               strcmp(a->memctx_options, b->memctx_options) == 0 &&
               strcmp(a->input_options, b->input_options) == 0 &&
               strcmp(a->vmhost_options, b->vmhost_options) == 0;
}

const char *trigger_driver_name(enum trigger_driver driver)
{
        switch (driver) {
        case TRIGGER_DRIVER_QEMU:
                return "qemu";
        case TRIGGER_DRIVER_STUB:
                return "stub";
        }
        return "?";
}

static const char *or_null(const char *s)
{
        return s[0] ? s : NULL;
}

void trigger_adapter_cfg(const struct trigger *t, uint8_t seam, struct vmsig_adapter_cfg *ret)
{
        memset(ret, 0, sizeof(*ret));
        ret->vm_name = t->name;
        ret->qmp_path = or_null(t->qmp);
        ret->ram_path = or_null(t->ram);
        switch (seam) {
        case VMSIG_SRC_MEMCTX:
                ret->options = or_null(t->memctx_options);
                break;
        case VMSIG_SRC_INPUT:
                ret->options = or_null(t->input_options);
                break;
        case VMSIG_SRC_VMHOST:
                ret->options = or_null(t->vmhost_options);
                break;
        default:
                break;
        }
}
