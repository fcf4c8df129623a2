/* SPDX-License-Identifier: MIT */
/* Kernel symbol files (System.map, /proc/kallsyms text): a strict line
 * parser. See symfile.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/symfile.h"

#define LINE_MAX_BYTES 1024u

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
        va_list ap;
        if (errlen) {
                va_start(ap, fmt);
                vsnprintf(err, errlen, fmt, ap);
                va_end(ap);
        }
        return -EINVAL;
}

static int hexval(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* Symbol names: what the kernel's kallsyms can hold, no spaces or controls. */
static bool name_char(char c)
{
        return c > ' ' && c < 0x7f && c != '[' && c != ']';
}

static bool type_char(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '?' || c == '-';
}

/* One line, without its '\n' (a final '\r' already dropped). */
static int parse_line(const char *p, size_t n, const char *label, unsigned lineno, struct symfile_want *wants,
                      size_t nwants, bool *ret_nonzero, char *err, size_t errlen)
{
        size_t i = 0;
        uint64_t addr = 0;
        unsigned digits = 0;

        while (i < n && hexval(p[i]) >= 0) {
                if (++digits > 16)
                        return fail(err, errlen, "%s:%u: address longer than 16 hex digits", label, lineno);
                addr = addr << 4 | (uint64_t)hexval(p[i++]);
        }
        if (!digits)
                return fail(err, errlen, "%s:%u: expected 'ADDRESS TYPE NAME', no hex address", label,
                            lineno);
        if (i >= n || (p[i] != ' ' && p[i] != '\t'))
                return fail(err, errlen, "%s:%u: no blank after the address", label, lineno);
        i++;
        if (i >= n || !type_char(p[i]))
                return fail(err, errlen, "%s:%u: bad symbol type", label, lineno);
        i++;
        if (i >= n || (p[i] != ' ' && p[i] != '\t'))
                return fail(err, errlen, "%s:%u: the symbol type must be one character", label, lineno);
        i++;
        size_t name = i;
        while (i < n && name_char(p[i]))
                i++;
        size_t nlen = i - name;
        if (nlen == 0)
                return fail(err, errlen, "%s:%u: no symbol name", label, lineno);
        if (nlen > SYMFILE_NAME_MAX)
                return fail(err, errlen, "%s:%u: symbol name longer than %u bytes", label, lineno,
                            SYMFILE_NAME_MAX);
        if (i < n) {
                /* kallsyms: "\t[module]" after a module's symbol */
                if (p[i] != ' ' && p[i] != '\t')
                        return fail(err, errlen, "%s:%u: bad character 0x%02x in the symbol name", label,
                                    lineno, (unsigned)(unsigned char)p[i]);
                while (i < n && (p[i] == ' ' || p[i] == '\t'))
                        i++;
                size_t mod = i;
                if (i < n && p[i] == '[') {
                        i++;
                        while (i < n && name_char(p[i]))
                                i++;
                }
                if (i == mod || i >= n || p[i] != ']' || i == mod + 1 || i + 1 != n) {
                        if (memmem(p, n, "The real System.map", 19))
                                return fail(err, errlen,
                                            "%s:%u: Debian's placeholder System.map: the real one is in "
                                            "the linux-image-VERSION-dbg package",
                                            label, lineno);
                        return fail(err, errlen,
                                    "%s:%u: expected 'ADDRESS TYPE NAME' or 'ADDRESS TYPE NAME [MODULE]'",
                                    label, lineno);
                }
                return 0; /* a module symbol: never the kernel image's */
        }
        if (addr)
                *ret_nonzero = true;
        for (size_t w = 0; w < nwants; w++) {
                if (strlen(wants[w].name) != nlen || memcmp(wants[w].name, p + name, nlen) != 0)
                        continue;
                if (!wants[w].line) {
                        wants[w].line = lineno;
                        wants[w].addr = addr;
                } else if (wants[w].addr != addr) {
                        /* aliases at one address are the same symbol */
                        if (!wants[w].dups++)
                                wants[w].line2 = lineno;
                }
        }
        return 0;
}

int symfile_parse(const char *text, size_t len, const char *label, struct symfile_want *wants, size_t nwants,
                  char *err, size_t errlen)
{
        unsigned lineno = 0, symbols = 0;
        bool nonzero = false;

        if (!text && len)
                return -EINVAL;
        if (!label)
                label = "(symbols)";
        if (len > SYMFILE_MAX_BYTES) {
                fail(err, errlen, "%s: larger than %u MiB: not a symbol file", label,
                     SYMFILE_MAX_BYTES >> 20);
                return -EFBIG;
        }
        for (size_t w = 0; w < nwants; w++)
                wants[w].addr = wants[w].line = wants[w].dups = wants[w].line2 = 0;
        for (size_t pos = 0; pos < len;) {
                const char *nl = memchr(text + pos, '\n', len - pos);
                size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
                const char *p = text + pos;
                pos += n + (nl ? 1 : 0);
                if (++lineno == 0)
                        return fail(err, errlen, "%s: too many lines", label);
                if (n > LINE_MAX_BYTES)
                        return fail(err, errlen, "%s:%u: line longer than %u bytes", label, lineno,
                                    LINE_MAX_BYTES);
                if (memchr(p, '\0', n))
                        return fail(err, errlen, "%s:%u: NUL byte: not a text file", label, lineno);
                if (n && p[n - 1] == '\r')
                        n--;
                if (n == 0)
                        continue; /* blank lines carry nothing */
                int r = parse_line(p, n, label, lineno, wants, nwants, &nonzero, err, errlen);
                if (r < 0)
                        return r;
                symbols++;
        }
        if (!symbols)
                return fail(err, errlen, "%s: no symbols in it", label);
        if (!nonzero)
                return fail(
                    err, errlen,
                    "%s: every address is 0 (a /proc/kallsyms read without privilege: read it as root)",
                    label);
        return 0;
}

int symfile_load(const char *path, struct symfile_want *wants, size_t nwants, char *err, size_t errlen)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        size_t cap = 1u << 20, n = 0;
        char *buf;
        int r;

        if (fd < 0) {
                r = -errno;
                fail(err, errlen, "%s: %s", path, strerror(-r));
                return r;
        }
        buf = malloc(cap);
        for (;;) {
                if (!buf) {
                        close(fd);
                        fail(err, errlen, "%s: out of memory", path);
                        return -ENOMEM;
                }
                if (n == cap) {
                        if (cap > SYMFILE_MAX_BYTES) {
                                free(buf);
                                close(fd);
                                fail(err, errlen, "%s: larger than %u MiB: not a symbol file", path,
                                     SYMFILE_MAX_BYTES >> 20);
                                return -EFBIG;
                        }
                        char *nb = realloc(buf, cap * 2);
                        if (!nb)
                                free(buf);
                        buf = nb;
                        cap *= 2;
                        continue;
                }
                /* /proc/kallsyms has size 0 and must be read to the end */
                ssize_t k = read(fd, buf + n, cap - n);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0) {
                        r = -errno;
                        free(buf);
                        close(fd);
                        fail(err, errlen, "%s: %s", path, strerror(-r));
                        return r;
                }
                if (k == 0)
                        break;
                n += (size_t)k;
        }
        close(fd);
        r = symfile_parse(buf, n, path, wants, nwants, err, errlen);
        free(buf);
        return r;
}

int symfile_split(const char *spec, char *name, size_t cap, uint64_t *ret_off)
{
        const char *plus = strchr(spec, '+');
        size_t nlen = plus ? (size_t)(plus - spec) : strlen(spec);
        uint64_t off = 0;

        if (nlen == 0 || nlen >= cap || nlen > SYMFILE_NAME_MAX)
                return -EINVAL;
        for (size_t i = 0; i < nlen; i++)
                if (!name_char(spec[i]))
                        return -EINVAL;
        if (plus) {
                const char *s = plus + 1;
                unsigned base = 10;
                if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
                        base = 16;
                        s += 2;
                }
                if (!*s)
                        return -EINVAL;
                for (; *s; s++) {
                        int v = base == 16 ? hexval(*s) : (*s >= '0' && *s <= '9' ? *s - '0' : -1);
                        if (v < 0 || off > (UINT64_MAX - (uint64_t)v) / base)
                                return -EINVAL;
                        off = off * base + (uint64_t)v;
                }
        }
        memcpy(name, spec, nlen);
        name[nlen] = '\0';
        *ret_off = off;
        return 0;
}
