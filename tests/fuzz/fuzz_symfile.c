/* SPDX-License-Identifier: MIT */
/* Kernel symbol files (vmsigctl read --symbols: System.map, /proc/kallsyms
 * text) through the strict line parser, and SYMBOL+OFF specs through the
 * splitter.
 *
 * Checked on every input (abort() on a miss):
 *  - an accepted file has every wanted symbol either absent (line 0) or on
 *    a line that exists, and the error text is set whenever it is refused;
 *  - a refusal names the label;
 *  - a found symbol's address and line are those of an independent scan
 *    for "ADDR T NAME" at the start of that line (a small model). */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tools/symfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The model: the start of line number lineno (1-based), or NULL. */
static const char *line_start(const char *t, size_t n, unsigned lineno, size_t *ret_len)
{
        size_t pos = 0;
        for (unsigned l = 1; pos <= n; l++) {
                const char *nl = memchr(t + pos, '\n', n - pos);
                size_t len = nl ? (size_t)(nl - (t + pos)) : n - pos;
                if (l == lineno) {
                        *ret_len = len;
                        return t + pos;
                }
                if (!nl)
                        return NULL;
                pos += len + 1;
        }
        return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        const char *text = (const char *)data;
        struct symfile_want w[3] = {{.name = "_text"}, {.name = "linux_banner"}, {.name = "a"}};
        char err[512] = "";
        int r = symfile_parse(text, size, "fuzz.map", w, 3, err, sizeof(err));

        if (r < 0) {
                if (r != -EINVAL && r != -EFBIG)
                        abort();
                if (strncmp(err, "fuzz.map", 8) != 0)
                        abort();
        } else {
                for (size_t i = 0; i < 3; i++) {
                        if (!w[i].line)
                                continue;
                        size_t len;
                        const char *p = line_start(text, size, w[i].line, &len);
                        if (!p)
                                abort();
                        /* the line holds the name after "ADDR T " */
                        char *end;
                        char tmp[32] = "";
                        size_t k = 0;
                        while (k < len && k < sizeof(tmp) - 1 && p[k] != ' ' && p[k] != '\t') {
                                tmp[k] = p[k];
                                k++;
                        }
                        uint64_t a = strtoull(tmp, &end, 16);
                        if (a != w[i].addr || *end)
                                abort();
                        size_t nl = strlen(w[i].name);
                        if (k + 3 + nl > len || memcmp(p + k + 3, w[i].name, nl) != 0)
                                abort();
                        if (w[i].dups && (!w[i].line2 || w[i].line2 <= w[i].line))
                                abort();
                }
        }
        /* The same bytes as a SYMBOL+OFF spec (NUL-terminated copy). */
        char spec[600], name[SYMFILE_NAME_MAX + 1];
        size_t n = size < sizeof(spec) - 1 ? size : sizeof(spec) - 1;
        memcpy(spec, data, n);
        spec[n] = '\0';
        uint64_t off = 0;
        if (symfile_split(spec, name, sizeof(name), &off) == 0) {
                size_t nl = strlen(name);
                if (nl == 0 || strncmp(spec, name, nl) != 0 || (spec[nl] != '\0' && spec[nl] != '+'))
                        abort();
                if (spec[nl] == '\0' && off != 0)
                        abort();
        }
        return 0;
}
