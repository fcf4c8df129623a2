/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/trigger.h"

void trigger_printable(const char *in, char *out, size_t outlen)
{
        text_printable(in, in ? strlen(in) : 0, out, outlen);
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

/* The file's own keys; then one options key per seam of the registry
 * (K_SEAM_OPT + seam). */
enum key_id { K_NAME, K_DRIVER, K_QMP, K_RAM, K_INPUT, K_SEAM_OPT, K_COUNT = K_SEAM_OPT + VMSIG_SRC_MAX_ };

static const char *const fixed_keys[K_SEAM_OPT] = {
    [K_NAME] = "name", [K_DRIVER] = "driver", [K_QMP] = "qmp", [K_RAM] = "ram", [K_INPUT] = "input",
};

_Static_assert(
    offsetof(struct trigger, memctx_options) == offsetof(struct trigger, options[VMSIG_SRC_MEMCTX]) &&
        offsetof(struct trigger, input_options) == offsetof(struct trigger, options[VMSIG_SRC_INPUT]) &&
        offsetof(struct trigger, vmhost_options) == offsetof(struct trigger, options[VMSIG_SRC_VMHOST]),
    "the named option fields alias options[seam]");

static const char *key_name(int id)
{
        const struct seam_def *sd;

        if (id < K_SEAM_OPT)
                return fixed_keys[id];
        sd = seam_find((uint8_t)(id - K_SEAM_OPT));
        return sd ? sd->options_key : NULL;
}

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

/* Adapter options are checked with the adapter's own spec (the registry's
 * adapter_desc) by the checker its open() uses, so a bad option refuses the
 * whole file (naming FILE:LINE: KEY) before anything is attached. An adapter
 * this build does not have never sees its options: they are not checked. */
static int check_adapter_options(const char *opts, enum trigger_driver driver, const struct seam_def *sd,
                                 const char *filename, unsigned line, char *err, size_t errlen)
{
        const struct adapter_desc *ad = sd->adapter[driver];
        const struct driver_def *dd = driver_get(driver);
        char what[64], why[1536];

        if (!ad)
                return 0;
        snprintf(what, sizeof(what), "%s %s", dd->name, sd->name);
        if (adapter_options_parse(opts, ad->opts, ad->n_opts, what, NULL, why, sizeof(why)) < 0)
                return parse_fail(-EINVAL, err, errlen, filename, line, sd->options_key, "%s", why);
        return 0;
}

/* "expected qemu or stub": the registry's drivers. */
static const char *drivers_expected(char *buf, size_t len)
{
        unsigned n = 0, k = 0;
        size_t o = 0;

        buf[0] = '\0';
        for (unsigned i = 0; i < VM_DRIVER_COUNT; i++)
                n += !driver_get(i)->daemon_only;
        for (unsigned i = 0; i < VM_DRIVER_COUNT && o < len; i++) {
                if (driver_get(i)->daemon_only)
                        continue;
                o += (size_t)snprintf(buf + o, len - o, "%s%s",
                                      !k           ? ""
                                      : k + 1 == n ? " or "
                                                   : ", ",
                                      driver_get(i)->name);
                k++;
        }
        return buf;
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
                return parse_fail(-EFBIG, err, errlen, filename, 0, "file", "too large (%zu bytes, max %u)",
                                  len, TRIGGER_FILE_MAX);
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
                        if (key_name(id) && strlen(key_name(id)) == kn && memcmp(key_name(id), k, kn) == 0)
                                break;
                if (id == K_COUNT) {
                        char key[64];
                        size_t cn = kn < sizeof(key) - 1 ? kn : sizeof(key) - 1;
                        if (kn == 0)
                                return parse_fail(-EINVAL, err, errlen, filename, lineno, "(line)",
                                                  "empty key");
                        store(key, k, cn);
                        return parse_fail(-EINVAL, err, errlen, filename, lineno, key, "unknown key");
                }
                if (seen_line[id])
                        return parse_fail(-EINVAL, err, errlen, filename, lineno, key_name(id),
                                          "duplicate key (first set on line %u)", seen_line[id]);
                seen_line[id] = lineno;

                for (size_t i = 0; i < vn; i++)
                        if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
                                return parse_fail(-EINVAL, err, errlen, filename, lineno, key_name(id),
                                                  "control character in value");

                switch (id) {
                case K_NAME:
                        why = check_name(v, vn);
                        if (!why)
                                store(t.name, v, vn);
                        break;
                case K_DRIVER: {
                        int d = driver_find(v, vn);
                        if (d >= 0 && !driver_get((unsigned)d)->daemon_only) {
                                t.driver = (enum trigger_driver)d;
                        } else {
                                char names[128];
                                return parse_fail(-EINVAL, err, errlen, filename, lineno, key_name(id),
                                                  "unknown driver (expected %s)",
                                                  drivers_expected(names, sizeof(names)));
                        }
                        break;
                }
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
                default: /* K_SEAM_OPT + seam */
                        why = check_options(v, vn);
                        if (!why)
                                store(t.options[id - K_SEAM_OPT], v, vn);
                        break;
                }
                if (why)
                        return parse_fail(-EINVAL, err, errlen, filename, lineno, key_name(id), "%s", why);
        }

        if (!seen_line[K_NAME])
                return parse_fail(-EINVAL, err, errlen, filename, 0, "name", "required key missing");
        const struct driver_def *dd = driver_get(t.driver);
        if (dd->needs_qmp && !seen_line[K_QMP])
                return parse_fail(-EINVAL, err, errlen, filename, 0, "qmp",
                                  "required key missing (driver=%s)", dd->name);
        if (dd->needs_ram && !seen_line[K_RAM])
                return parse_fail(-EINVAL, err, errlen, filename, 0, "ram",
                                  "required key missing (driver=%s)", dd->name);
        size_t nseams;
        const struct seam_def *seams = seam_registry(&nseams);
        for (size_t i = 0; i < nseams; i++) {
                int r;
                if (!t.options[seams[i].seam][0])
                        continue;
                r = check_adapter_options(t.options[seams[i].seam], t.driver, &seams[i], filename,
                                          seen_line[K_SEAM_OPT + seams[i].seam], err, errlen);
                if (r < 0)
                        return r;
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
                r = parse_fail(-EPERM, err, errlen, filename, 0, "file",
                               "writable by group or others (mode %04o)", (unsigned)(st.st_mode & 07777));
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
        if (a->driver != b->driver || strcmp(a->name, b->name) || strcmp(a->qmp, b->qmp) ||
            strcmp(a->ram, b->ram) || strcmp(a->input, b->input))
                return false;
        for (size_t i = 0; i < VMSIG_SRC_MAX_; i++)
                if (strcmp(a->options[i], b->options[i]))
                        return false;
        return true;
}

const char *trigger_driver_name(enum trigger_driver driver)
{
        const struct driver_def *dd = driver_get(driver);

        return dd ? dd->name : "?";
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
        if (seam_find(seam))
                ret->options = or_null(t->options[seam]);
}
