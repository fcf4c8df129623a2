/* SPDX-License-Identifier: MIT */
#ifndef VMSIG_TOOLS_SYMFILE_H
#define VMSIG_TOOLS_SYMFILE_H

/* Kernel symbol files for vmsigctl read --symbols: System.map, or the text
 * of /proc/kallsyms (same "ADDRESS TYPE NAME" lines, module symbols with a
 * trailing "[module]"). The file is untrusted input and is checked whole:
 * any malformed line is an error naming the file and the line, nothing is
 * guessed. */

#include <stddef.h>
#include <stdint.h>

#define SYMFILE_MAX_BYTES (64u << 20) /* a System.map is ~6 MB, kallsyms ~12 MB */
#define SYMFILE_NAME_MAX  511u        /* KSYM_NAME_LEN - 1 */

/* What to look up: name in, address and line out. */
struct symfile_want {
        const char *name;
        uint64_t addr;  /* set when found */
        unsigned line;  /* 1-based line of the definition; 0 = not found */
        unsigned dups;  /* further definitions (an ambiguous name if > 0) */
        unsigned line2; /* line of the second definition */
};

/* Parse text (len bytes; label names it in messages, e.g. the path) and
 * fill each want. 0 on success, even if a want was not found (line 0); a
 * malformed file is -EINVAL with "LABEL:LINE: reason" in err. Also -EINVAL
 * for a file without one symbol line, or whose addresses are all zero (an
 * unprivileged reader's /proc/kallsyms), -EFBIG above SYMFILE_MAX_BYTES. */
int symfile_parse(const char *text, size_t len, const char *label, struct symfile_want *wants, size_t nwants,
                  char *err, size_t errlen);

/* Read path (at most SYMFILE_MAX_BYTES, O_CLOEXEC) and symfile_parse it;
 * errors name the path. */
int symfile_load(const char *path, struct symfile_want *wants, size_t nwants, char *err, size_t errlen);

/* "NAME" or "NAME+OFF" (OFF decimal or 0x-hex): the name into name (cap
 * bytes), the offset into *ret_off. -EINVAL if malformed (empty name, bad
 * characters, bad or overflowing offset, name too long). */
int symfile_split(const char *spec, char *name, size_t cap, uint64_t *ret_off);

#endif
