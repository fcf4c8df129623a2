/* SPDX-License-Identifier: MIT */
/* Guest RAM backing: layout validation, mapping (or pread), GPA reads. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

static int cmp_gpa(const void *a, const void *b)
{
        const struct vmie_range *x = a, *y = b;
        return x->gpa < y->gpa ? -1 : x->gpa > y->gpa;
}

static int cmp_file(const void *a, const void *b)
{
        const struct vmie_range *x = a, *y = b;
        return x->file_offset < y->file_offset ? -1 : x->file_offset > y->file_offset;
}

/* Sort a copy into ram->r and check it. Fail closed: anything odd is -EINVAL
 * (or -ERANGE for "does not fit the file"). */
static int layout_load(struct vmie_ram *ram, const struct vmie_range *ranges, size_t n, unsigned flags)
{
        memcpy(ram->r, ranges, n * sizeof(*ranges));
        ram->n = n;
        for (size_t i = 0; i < n; i++) {
                const struct vmie_range *r = &ram->r[i];
                /* "<=" also rejects a range ending exactly at 2^64, which
                 * keeps every end address representable. */
                if (r->len == 0 || r->gpa + r->len <= r->gpa || r->file_offset + r->len < r->file_offset)
                        return -EINVAL;
                if (r->file_offset + r->len > ram->file_size)
                        return -ERANGE;
        }
        if (!(flags & VMIE_RAM_ALLOW_ALIAS)) {
                qsort(ram->r, n, sizeof(*ram->r), cmp_file);
                for (size_t i = 1; i < n; i++)
                        if (ram->r[i].file_offset < ram->r[i - 1].file_offset + ram->r[i - 1].len)
                                return -EINVAL;
        }
        qsort(ram->r, n, sizeof(*ram->r), cmp_gpa);
        for (size_t i = 1; i < n; i++)
                if (ram->r[i].gpa < ram->r[i - 1].gpa + ram->r[i - 1].len)
                        return -EINVAL;
        return 0;
}

#define RAM_FLAGS_KNOWN (VMIE_RAM_NO_MMAP | VMIE_RAM_ALLOW_ALIAS)

static int ram_alloc(const struct vmie_range *ranges, size_t n, unsigned flags, struct vmie_ram **ret)
{
        /* Unknown flags are refused so a newer caller never silently gets
         * older semantics. */
        if (!ranges || n == 0 || n > VMIE_RAM_MAX_RANGES || (flags & ~RAM_FLAGS_KNOWN))
                return -EINVAL;
        struct vmie_ram *ram = calloc(1, sizeof(*ram) + n * sizeof(ram->r[0]));
        if (!ram)
                return -ENOMEM;
        ram->fd = -1;
        *ret = ram;
        return 0;
}

struct vmie_ram *vmie_ram_free(struct vmie_ram *ram)
{
        if (!ram)
                return NULL;
        if (ram->map_len)
                munmap((void *)ram->map, ram->map_len);
        if (ram->fd >= 0)
                close(ram->fd);
        free(ram);
        return NULL;
}

/* Takes ownership of fd (closed on failure too). */
static int open_owned_fd(int fd, const struct vmie_range *ranges, size_t n, unsigned flags,
                         struct vmie_ram **ret)
{
        struct vmie_ram *ram = NULL;
        struct stat st;
        int r = ram_alloc(ranges, n, flags, &ram);
        if (r < 0) {
                close(fd);
                return r;
        }
        ram->fd = fd;
        int acc = fcntl(fd, F_GETFL);
        if (acc < 0) {
                r = -errno;
                goto fail;
        }
        if ((acc & O_ACCMODE) == O_WRONLY || (acc & O_PATH)) {
                r = -EBADF;
                goto fail;
        }
        if (fstat(fd, &st) < 0) {
                r = -errno;
                goto fail;
        }
        /* tmpfs, hugetlbfs and memfds are all regular files; anything else has
         * no meaningful size to validate the layout against. */
        if (!S_ISREG(st.st_mode)) {
                r = -EINVAL;
                goto fail;
        }
        ram->file_size = (uint64_t)st.st_size;
        r = layout_load(ram, ranges, n, flags);
        if (r < 0)
                goto fail;
        if (!(flags & VMIE_RAM_NO_MMAP) && ram->file_size > 0 && ram->file_size <= SIZE_MAX) {
                void *p = mmap(NULL, (size_t)ram->file_size, PROT_READ, MAP_SHARED, fd, 0);
                if (p != MAP_FAILED) {
                        ram->map = p;
                        ram->map_len = (size_t)ram->file_size;
                }
                /* else: pread mode (e.g. hugetlbfs with an unaligned size) */
        }
        *ret = ram;
        return 0;
fail:
        vmie_ram_free(ram);
        return r;
}

int vmie_ram_open_fd(int fd, const struct vmie_range *ranges, size_t nranges, unsigned flags,
                     struct vmie_ram **ret)
{
        if (fd < 0 || !ret)
                return -EINVAL;
        int own = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (own < 0)
                return -errno;
        return open_owned_fd(own, ranges, nranges, flags, ret);
}

int vmie_ram_open_path(const char *path, const struct vmie_range *ranges, size_t nranges, unsigned flags,
                       struct vmie_ram **ret)
{
        if (!path || !ret)
                return -EINVAL;
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        return open_owned_fd(fd, ranges, nranges, flags, ret);
}

int vmie_ram_wrap(const void *base, size_t size, const struct vmie_range *ranges, size_t nranges,
                  unsigned flags, struct vmie_ram **ret)
{
        struct vmie_ram *ram = NULL;
        if (!base || !ret)
                return -EINVAL;
        int r = ram_alloc(ranges, nranges, flags, &ram);
        if (r < 0)
                return r;
        ram->map = base;
        ram->file_size = size;
        r = layout_load(ram, ranges, nranges, flags);
        if (r < 0)
                return (void)vmie_ram_free(ram), r;
        *ret = ram;
        return 0;
}

int vmie_ram_gpa_to_offset(const struct vmie_ram *ram, uint64_t gpa, uint64_t *ret_offset,
                           uint64_t *ret_avail)
{
        if (!ram)
                return -EINVAL;
        long i = vmiei_ram_find(ram, gpa);
        if (i < 0)
                return -EFAULT;
        const struct vmie_range *r = &ram->r[i];
        if (ret_offset)
                *ret_offset = r->file_offset + (gpa - r->gpa);
        if (ret_avail)
                *ret_avail = r->len - (gpa - r->gpa);
        return 0;
}

static int pread_full(int fd, void *buf, size_t len, uint64_t off)
{
        uint8_t *p = buf;
        while (len > 0) {
                ssize_t k = pread(fd, p, len, (off_t)off);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        return -EIO; /* file shrank since open */
                p += k;
                off += (uint64_t)k;
                len -= (size_t)k;
        }
        return 0;
}

int vmie_ram_read(const struct vmie_ram *ram, uint64_t gpa, void *buf, size_t len)
{
        if (!ram || (!buf && len))
                return -EINVAL;
        uint8_t *p = buf;
        while (len > 0) {
                long i = vmiei_ram_find(ram, gpa);
                if (i < 0)
                        return -EFAULT;
                const struct vmie_range *r = &ram->r[i];
                uint64_t in = gpa - r->gpa, avail = r->len - in;
                size_t n = avail < len ? (size_t)avail : len;
                uint64_t off = r->file_offset + in;
                if (ram->map) {
                        memcpy(p, ram->map + off, n);
                } else {
                        int e = pread_full(ram->fd, p, n, off);
                        if (e < 0)
                                return e;
                }
                p += n;
                len -= n;
                gpa += n; /* no range ends at 2^64, so this cannot wrap into one */
        }
        return 0;
}

int vmiei_ram_read_slow(const struct vmie_ram *ram, uint64_t gpa, void *buf, size_t len)
{
        return vmie_ram_read(ram, gpa, buf, len);
}

int vmie_ram_peek(const struct vmie_ram *ram, uint64_t gpa, size_t len, const void **ret_ptr)
{
        if (!ram || !ret_ptr)
                return -EINVAL;
        if (!ram->map)
                return -ENOTSUP;
        long i = vmiei_ram_find(ram, gpa);
        if (i < 0)
                return -EFAULT;
        const struct vmie_range *r = &ram->r[i];
        if (r->len - (gpa - r->gpa) < len)
                return -EFAULT;
        *ret_ptr = ram->map + r->file_offset + (gpa - r->gpa);
        return 0;
}

size_t vmie_ram_nranges(const struct vmie_ram *ram)
{
        return ram ? ram->n : 0;
}

int vmie_ram_range(const struct vmie_ram *ram, size_t idx, struct vmie_range *ret)
{
        if (!ram || !ret || idx >= ram->n)
                return -EINVAL;
        *ret = ram->r[idx];
        return 0;
}

int vmie_ram_is_mapped(const struct vmie_ram *ram)
{
        return ram && ram->map ? 1 : 0;
}
