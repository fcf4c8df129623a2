/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/audit.h"

enum audit_mode {
        AUDIT_JOURNAL,
        AUDIT_STDERR,
        AUDIT_FILE,
};

struct audit {
        enum audit_mode mode;
        int fd;     /* owned only in file mode */
        char *path; /* file mode */
        unsigned long errors;
};

static int open_file(const char *path)
{
        int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW, 0640);
        return fd < 0 ? -errno : fd;
}

int audit_open(const char *spec, struct audit **ret)
{
        struct audit *a;

        if (!spec)
                return -EINVAL;
        a = calloc(1, sizeof(*a));
        if (!a)
                return -ENOMEM;
        a->fd = STDERR_FILENO;
        if (strcmp(spec, "journal") == 0) {
                a->mode = AUDIT_JOURNAL;
        } else if (strcmp(spec, "stderr") == 0) {
                a->mode = AUDIT_STDERR;
        } else if (strncmp(spec, "file:", 5) == 0 && spec[5] == '/') {
                int fd;
                a->mode = AUDIT_FILE;
                a->path = strdup(spec + 5);
                if (!a->path) {
                        free(a);
                        return -ENOMEM;
                }
                fd = open_file(a->path);
                if (fd < 0) {
                        free(a->path);
                        free(a);
                        return fd;
                }
                a->fd = fd;
        } else {
                free(a);
                return -EINVAL;
        }
        *ret = a;
        return 0;
}

struct audit *audit_free(struct audit *a)
{
        if (a) {
                if (a->mode == AUDIT_FILE && a->fd >= 0)
                        close(a->fd);
                free(a->path);
                free(a);
        }
        return NULL;
}

int audit_reopen(struct audit *a)
{
        int fd;

        if (a->mode != AUDIT_FILE)
                return 0;
        fd = open_file(a->path);
        if (fd < 0)
                return fd; /* keep writing to the old file */
        if (a->fd >= 0)
                close(a->fd);
        a->fd = fd;
        return 0;
}

const char *audit_what_name(enum vmsig_audit_what what)
{
        switch (what) {
        case VMSIG_AUDIT_DENY:
                return "deny";
        case VMSIG_AUDIT_COMMAND:
                return "command";
        case VMSIG_AUDIT_RESULT:
                return "result";
        case VMSIG_AUDIT_LEASE:
                return "lease";
        }
        return "?";
}

struct out {
        char *buf;
        size_t len, off;
};

__attribute__((format(printf, 2, 3))) static void put(struct out *o, const char *fmt, ...)
{
        va_list ap;
        int n;

        if (o->off >= o->len)
                return;
        va_start(ap, fmt);
        n = vsnprintf(o->buf + o->off, o->len - o->off, fmt, ap);
        va_end(ap);
        if (n < 0)
                return;
        o->off += (size_t)n < o->len - o->off ? (size_t)n : o->len - o->off - 1;
}

/* Control names and reasons can carry client-chosen bytes: quote them so a
 * record stays one unambiguous line. */
static void put_quoted(struct out *o, const char *s)
{
        put(o, "\"");
        for (; s && *s; s++) {
                unsigned char c = (unsigned char)*s;
                if (c == '"' || c == '\\')
                        put(o, "\\%c", c);
                else if (c < 0x20 || c == 0x7f)
                        put(o, "\\x%02x", c);
                else
                        put(o, "%c", c);
        }
        put(o, "\"");
}

size_t audit_format(const struct vmsig_audit_record *rec, char *buf, size_t len)
{
        struct out o = {.buf = buf, .len = len};
        const char *ename = NULL;

        if (len < 2) {
                if (len)
                        buf[0] = '\0';
                return 0;
        }
        /* Keep the last byte for the newline, whatever happens above. */
        o.len = len - 1;
        buf[0] = '\0';
        if (rec->result < 0)
                ename = strerrorname_np(-rec->result);
        put(&o, "vmsig-audit what=%s uid=%u pid=%d control=%u name=", audit_what_name(rec->what),
            (unsigned)rec->uid, (int)rec->pid, (unsigned)rec->control_id);
        put_quoted(&o, rec->control_name ? rec->control_name : "");
        put(&o, " endpoint=%u kind=%s corr=%llu result=%d", (unsigned)rec->endpoint,
            vmsig_kind_name(rec->kind), (unsigned long long)rec->corr, (int)rec->result);
        if (rec->result < 0)
                put(&o, " err=%s", ename ? ename : "?");
        put(&o, " reason=");
        put_quoted(&o, rec->reason ? rec->reason : "");
        buf[o.off++] = '\n';
        buf[o.off] = '\0';
        return o.off;
}

static int write_all(int fd, const char *p, size_t n)
{
        while (n) {
                ssize_t w = write(fd, p, n);
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += w;
                n -= (size_t)w;
        }
        return 0;
}

int audit_write(struct audit *a, const struct vmsig_audit_record *rec)
{
        char line[AUDIT_LINE_MAX + 4];
        size_t off = 0, n;
        int r;

        if (a->mode == AUDIT_JOURNAL) {
                /* <4> warning for denials, <5> notice for the rest. */
                line[0] = '<';
                line[1] = rec->what == VMSIG_AUDIT_DENY ? '4' : '5';
                line[2] = '>';
                off = 3;
        }
        n = audit_format(rec, line + off, AUDIT_LINE_MAX);
        r = write_all(a->fd, line, off + n);
        if (r < 0)
                a->errors++;
        return r;
}

void audit_bus_fn(const struct vmsig_audit_record *rec, void *userdata)
{
        (void)audit_write(userdata, rec);
}

unsigned long audit_errors(const struct audit *a)
{
        return a->errors;
}
