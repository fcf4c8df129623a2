/* SPDX-License-Identifier: MIT */
#ifndef VMSIGD_TRIGGER_H
#define VMSIGD_TRIGGER_H

/* Trigger files: one small key=value file per VM in the trigger directory,
 * written by a libvirt hook or a launch script (see docs/trigger-file.md).
 * The bytes are untrusted: the parser is strict and fails closed, and every
 * error names the file, the line and the field. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include <vmsig/adapter.h>

#include "adapters/registry.h"

#define TRIGGER_FILE_MAX 4096u /* bytes per file */
#define TRIGGER_LINE_MAX 1024u /* bytes per line, without the newline */
#define TRIGGER_NAME_MAX 63u   /* VM name length */
#define TRIGGER_QMP_MAX  107u  /* fits sockaddr_un.sun_path with its NUL */
#define TRIGGER_PATH_MAX 1023u
#define TRIGGER_OPT_MAX  255u

/* The drivers are the seam registry's (adapters/registry.h). */
enum trigger_driver {
        TRIGGER_DRIVER_QEMU = VM_DRIVER_QEMU,
        TRIGGER_DRIVER_STUB = VM_DRIVER_STUB,
};

/* All strings are NUL terminated; an absent optional key is "". */
struct trigger {
        char name[TRIGGER_NAME_MAX + 1];
        enum trigger_driver driver;
        char qmp[TRIGGER_QMP_MAX + 1];
        char ram[TRIGGER_PATH_MAX + 1];
        char input[TRIGGER_OPT_MAX + 1];
        /* Adapter options per seam (the registry's options_key), indexed
         * by enum vmsig_source; [VMSIG_SRC_CORE] stays "". The names are
         * the same bytes for the seams that have them. */
        union {
                char options[VMSIG_SRC_MAX_][TRIGGER_OPT_MAX + 1];
                struct {
                        char core_options_[TRIGGER_OPT_MAX + 1];
                        char memctx_options[TRIGGER_OPT_MAX + 1];
                        char input_options[TRIGGER_OPT_MAX + 1];
                        char vmhost_options[TRIGGER_OPT_MAX + 1];
                };
        };
};

/* Parse len bytes of text (need not be NUL terminated). filename is only
 * used in messages. 0 on success, else -EINVAL (or -EFBIG for an oversized
 * file) with "FILE:LINE: FIELD: reason" (or "FILE: FIELD: reason" for a
 * whole-file problem such as a missing key) in err. Adapter options are
 * checked against what the driver's adapters accept (unknown key, bad value,
 * out of range: "FILE:LINE: memctx_options: KEY: reason"), so a file that
 * parses can be attached whole. ret is written only on
 * success. */
int trigger_parse(const char *text, size_t len, const char *filename, struct trigger *ret, char *err,
                  size_t errlen);

/* Temp files of an atomic writer that are never read: names starting with
 * '.' or ending in ".tmp" or '~'. Also true for names that can't be a file
 * in a directory ("", containing '/'). */
bool trigger_filename_ignored(const char *filename);

/* Open filename below dirfd (O_NOFOLLOW, O_NONBLOCK so a FIFO can't block,
 * O_CLOEXEC), refuse anything but a regular file owned by root or by us
 * and not writable by group or others, then parse it. ret_st (optional)
 * gets the fstat of the opened file whenever it could be taken (also when
 * the content is then refused; zeroed otherwise), for change detection.
 * Returns 0; -ENOENT when the file is gone (a normal race, err still set);
 * -EAGAIN for an ignored temp-file name; other negative errno with err. */
int trigger_load(int dirfd, const char *filename, struct trigger *ret, struct stat *ret_st, char *err,
                 size_t errlen);

/* Copy in to out for a log line: control characters, DEL and bytes >= 0x80
 * become \xHH, a backslash becomes \\ (for messages that carry untrusted
 * names). Truncates to outlen - 1, never inside an escape. */
void trigger_printable(const char *in, char *out, size_t outlen);

/* Is a trigger_load() error worth retrying (out of fds or memory, ...)? Parse
 * errors, refused ownership or type are not: only a change to the file
 * fixes them. */
bool trigger_error_transient(int r);

/* Shared by the trigger and config parsers: "FILE:LINE: FIELD: message" (or
 * "FILE: FIELD: message" with line 0) into err, names made printable.
 * Returns r, so callers write `return parse_fail(-EINVAL, ...)`. */
int parse_fail(int r, char *err, size_t errlen, const char *file, unsigned line, const char *field,
               const char *fmt, ...) __attribute__((format(printf, 7, 8)));

bool trigger_equal(const struct trigger *a, const struct trigger *b);
const char *trigger_driver_name(enum trigger_driver driver);

/* Adapter configuration for one seam (enum vmsig_source) of the VM. The
 * strings point into t; absent paths/options are NULL (options also for a
 * seam not in the registry). The `input` key is not part of it: it is the
 * input driver's business (vmctl). */
void trigger_adapter_cfg(const struct trigger *t, uint8_t seam, struct vmsig_adapter_cfg *ret);

#endif
