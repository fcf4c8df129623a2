/* SPDX-License-Identifier: MIT */
/* ram_proc: guest RAM that has no path, taken from the QEMU process itself.
 *
 * memfd backing, a hugetlbfs file QEMU unlinked right after creating it, or
 * a mem-path directory (QEMU's mkstemp + unlink) leave a file that only
 * QEMU's fd table names. ram_proc finds it in /proc/<pid>/fd, keeps only
 * regular files that QEMU has mapped (the fd's device and inode appear in
 * /proc/<pid>/maps), and reopens the best candidate read-only through the
 * magic link. Reading another process's fd table needs ptrace read access
 * to QEMU: root with CAP_SYS_PTRACE (or the same uid).
 *
 * Trust checks on the reopened fd: a regular file, owned by qemu_uid, at
 * least need bytes, not writable by group or others. A memfd is created
 * mode 0777 by the kernel, and anyone holding an fd of it could reopen
 * /proc/self/fd/N read-write; so for a memfd (and only for one) the group
 * and other bits are cleared with fchmod before the check. QEMU keeps its
 * own fds (already open), nobody else can open a memfd by name, so this
 * takes no access from anyone but those who would reopen a handed-out fd. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* hint (optional, "" or NULL for none): a mem-path directory; a candidate
 * whose target lies below it wins over the others. Without a hint, memfds
 * and deleted files are candidates; the largest one wins. Returns a
 * read-only O_CLOEXEC fd, or a negative errno with the reason in msg
 * (which names the pid and the fd). ret_desc (optional) gets a short name
 * for messages ("/proc/PID/fd/N (memfd:pc.ram)"). */
int ram_proc_open(pid_t pid, uid_t qemu_uid, uint64_t need, const char *hint, char *ret_desc, size_t desc_len,
                  char *msg, size_t len);

/* Parse one /proc/<pid>/maps line: the device (major:minor, hex) and inode
 * of a shared mapping. 0, or -EINVAL for a line that is not a shared file
 * mapping. Exposed for tests and the fuzzer. */
int ram_proc_maps_line(const char *line, unsigned *ret_major, unsigned *ret_minor, uint64_t *ret_ino);
