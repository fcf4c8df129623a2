/* SPDX-License-Identifier: MIT */
/* Guest RAM from QEMU's fd table (ram_proc.h). */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "adapters/ram_proc.h"

#define MAPPED_MAX 256 /* shared file mappings remembered per scan */

struct mapped {
        dev_t dev;
        ino_t ino;
};

/* "START-END PERMS OFFSET MAJ:MIN INODE [PATH]", as the kernel writes it:
 * hex digits where it writes hex, one blank between the first fields. The
 * strict shape (not sscanf's skipping of blanks, signs and 0x) keeps a line
 * that merely resembles one from being read as a shared mapping. */
static const char *hex_field(const char *p, char end, unsigned long long *ret)
{
        char *e;

        if (!isxdigit((unsigned char)*p))
                return NULL;
        errno = 0;
        *ret = strtoull(p, &e, 16);
        return errno || *e != end ? NULL : e + 1;
}

int ram_proc_maps_line(const char *line, unsigned *ret_major, unsigned *ret_minor, uint64_t *ret_ino)
{
        unsigned long long start, end, off, maj, min, ino;
        const char *p = line;
        char *e;

        if (!p || !(p = hex_field(p, '-', &start)) || !(p = hex_field(p, ' ', &end)))
                return -EINVAL;
        if (strlen(p) < 5 || (p[0] != 'r' && p[0] != '-') || (p[1] != 'w' && p[1] != '-') ||
            (p[2] != 'x' && p[2] != '-') || p[3] != 's' || p[4] != ' ')
                return -EINVAL;
        p += 5;
        if (!(p = hex_field(p, ' ', &off)) || !(p = hex_field(p, ':', &maj)) ||
            !(p = hex_field(p, ' ', &min)))
                return -EINVAL;
        if (!isdigit((unsigned char)*p))
                return -EINVAL;
        errno = 0;
        ino = strtoull(p, &e, 10);
        if (errno || (*e && *e != ' ' && *e != '\n') || ino == 0 || end <= start || maj > 0xfff ||
            min > 0xfffff)
                return -EINVAL;
        (void)off;
        *ret_major = (unsigned)maj;
        *ret_minor = (unsigned)min;
        *ret_ino = ino;
        return 0;
}

static size_t read_mapped(pid_t pid, struct mapped *out, size_t cap)
{
        char path[64], line[1024];
        size_t n = 0;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
        f = fopen(path, "re");
        if (!f)
                return 0;
        while (n < cap && fgets(line, sizeof(line), f)) {
                unsigned maj, min;
                uint64_t ino;
                bool dup = false;

                if (!strchr(line, '\n') && !feof(f)) { /* a long path: skip the rest of the line */
                        int c;
                        while ((c = fgetc(f)) != EOF && c != '\n')
                                ;
                }
                if (ram_proc_maps_line(line, &maj, &min, &ino) < 0)
                        continue;
                for (size_t i = 0; i < n && !dup; i++)
                        dup = out[i].dev == makedev(maj, min) && out[i].ino == (ino_t)ino;
                if (!dup)
                        out[n++] = (struct mapped){makedev(maj, min), (ino_t)ino};
        }
        fclose(f);
        return n;
}

static bool is_mapped(const struct mapped *m, size_t n, const struct stat *st)
{
        for (size_t i = 0; i < n; i++)
                if (m[i].dev == st->st_dev && m[i].ino == st->st_ino)
                        return true;
        return false;
}

static bool below(const char *target, const char *dir)
{
        size_t n = strlen(dir);

        while (n > 1 && dir[n - 1] == '/')
                n--;
        return n && strncmp(target, dir, n) == 0 && target[n] == '/';
}

int ram_proc_open(pid_t pid, uid_t qemu_uid, uint64_t need, const char *hint, char *ret_desc, size_t desc_len,
                  char *msg, size_t len)
{
        struct mapped *mapped = calloc(MAPPED_MAX, sizeof(*mapped));
        char dirpath[64], best_target[256] = "";
        int best_fd = -1, best_num = -1, r;
        uint64_t best_size = 0;
        bool best_hinted = false, best_memfd = false;
        size_t n_mapped;
        struct dirent *de;
        DIR *dir;

        if (!mapped) {
                snprintf(msg, len, "QEMU pid %d: out of memory", (int)pid);
                return -ENOMEM;
        }
        if (pid <= 0) {
                free(mapped);
                snprintf(msg, len, "guest RAM has no path and QEMU's pid is unknown");
                return -ESRCH;
        }
        n_mapped = read_mapped(pid, mapped, MAPPED_MAX);
        snprintf(dirpath, sizeof(dirpath), "/proc/%d/fd", (int)pid);
        dir = opendir(dirpath);
        if (!dir) {
                r = -errno;
                free(mapped);
                snprintf(msg, len, "guest RAM from QEMU pid %d: %s: %s%s", (int)pid, dirpath, strerror(-r),
                         r == -EACCES || r == -EPERM ? " (vmsigd needs CAP_SYS_PTRACE)" : "");
                return r;
        }
        while ((de = readdir(dir))) {
                char link[96], target[256];
                struct stat st;
                ssize_t tl;
                int num = atoi(de->d_name);

                if (de->d_name[0] < '0' || de->d_name[0] > '9')
                        continue;
                snprintf(link, sizeof(link), "%s/%s", dirpath, de->d_name);
                tl = readlink(link, target, sizeof(target) - 1);
                if (tl <= 0)
                        continue;
                target[tl] = '\0';
                bool memfd = strncmp(target, "/memfd:", 7) == 0;
                bool hinted = hint && *hint && below(target, hint);
                bool deleted = tl > 10 && strcmp(target + tl - 10, " (deleted)") == 0;
                if (!memfd && !hinted && !deleted)
                        continue;
                /* cheap checks on the link before opening anything */
                if (stat(link, &st) < 0 || !S_ISREG(st.st_mode) || !is_mapped(mapped, n_mapped, &st))
                        continue;
                if ((uint64_t)st.st_size < need)
                        continue;
                if (best_fd >= 0 &&
                    (best_hinted > hinted || (best_hinted == hinted && best_size >= (uint64_t)st.st_size)))
                        continue;
                /* O_NONBLOCK: a FIFO swapped in cannot block us (checked again below) */
                int fd = open(link, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
                if (fd < 0)
                        continue;
                if (best_fd >= 0)
                        close(best_fd);
                best_fd = fd;
                best_num = num;
                best_size = (uint64_t)st.st_size;
                best_hinted = hinted;
                best_memfd = memfd;
                snprintf(best_target, sizeof(best_target), "%s", target);
        }
        closedir(dir);
        free(mapped);
        if (best_fd < 0) {
                snprintf(msg, len,
                         "guest RAM from QEMU pid %d: no mapped memfd or deleted file of at least %" PRIu64
                         " bytes in %s%s%s",
                         (int)pid, need, dirpath, hint && *hint ? " below " : "", hint ? hint : "");
                return -ENOENT;
        }
        char desc[400];
        struct stat st;
        for (char *p = best_target; *p; p++)
                if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f)
                        *p = '?';
        snprintf(desc, sizeof(desc), "%s/%d (%s)", dirpath, best_num, best_target);
        if (ret_desc && desc_len)
                snprintf(ret_desc, desc_len, "%s", desc);
        /* The checks on what was opened, not on the link. */
        if (fstat(best_fd, &st) < 0) {
                r = -errno;
                snprintf(msg, len, "guest RAM %s: %s", desc, strerror(-r));
                goto fail;
        }
        if (best_memfd && S_ISREG(st.st_mode) && st.st_uid == qemu_uid &&
            (st.st_mode & (S_IWGRP | S_IWOTH))) {
                /* memfd_create() makes it 0777: see ram_proc.h */
                if (fchmod(best_fd, st.st_mode & 07755 & ~(mode_t)(S_IWGRP | S_IWOTH)) < 0 ||
                    fstat(best_fd, &st) < 0) {
                        r = -errno;
                        snprintf(msg, len, "guest RAM %s: cannot drop group/other write: %s", desc,
                                 strerror(-r));
                        goto fail;
                }
        }
        if (!S_ISREG(st.st_mode)) {
                r = -EINVAL;
                snprintf(msg, len, "guest RAM %s: refused: not a regular file", desc);
                goto fail;
        }
        if (st.st_uid != qemu_uid) {
                r = -EPERM;
                snprintf(msg, len, "guest RAM %s: refused: owned by uid %u, QEMU runs as uid %u", desc,
                         (unsigned)st.st_uid, (unsigned)qemu_uid);
                goto fail;
        }
        if (st.st_mode & (S_IWGRP | S_IWOTH)) {
                r = -EPERM;
                snprintf(msg, len, "guest RAM %s: refused: writable by group/others (mode %04o)", desc,
                         (unsigned)(st.st_mode & 07777));
                goto fail;
        }
        if ((uint64_t)st.st_size < need) {
                r = -ERANGE;
                snprintf(msg, len, "guest RAM %s: %" PRIu64 " bytes, the layout needs %" PRIu64, desc,
                         (uint64_t)st.st_size, need);
                goto fail;
        }
        (void)fcntl(best_fd, F_SETFL, fcntl(best_fd, F_GETFL) & ~O_NONBLOCK);
        return best_fd;
fail:
        close(best_fd);
        return r;
}
