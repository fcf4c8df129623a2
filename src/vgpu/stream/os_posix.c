/* SPDX-License-Identifier: MIT */
/* Linux (POSIX) side of the producer core: pinned memory, random nonce,
 * clock. */

#include "region_os.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* Lets a privileged producer lock more than the default RLIMIT_MEMLOCK;
 * failure is fine, mlock then reports the real limit. */
static void raise_memlock(size_t len)
{
        struct rlimit rl;
        if (getrlimit(RLIMIT_MEMLOCK, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
                return;
        rlim_t want = rl.rlim_cur + len;
        if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want)
                rl.rlim_max = want; /* needs CAP_SYS_RESOURCE */
        rl.rlim_cur = want;
        (void)setrlimit(RLIMIT_MEMLOCK, &rl);
}

int vgpu_os_alloc_pinned(size_t len, void **ret)
{
        void *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (mem == MAP_FAILED)
                return -errno;
                /* Keep every page a separate 4 KiB page at a fixed physical address
                 * as far as the kernel allows: no THP collapse (khugepaged would copy
                 * the pages), no copy-on-write after a fork. */
#ifdef MADV_NOHUGEPAGE
        (void)madvise(mem, len, MADV_NOHUGEPAGE);
#endif
#ifdef MADV_DONTFORK
        (void)madvise(mem, len, MADV_DONTFORK);
#endif
        if (mlock(mem, len) != 0) {
                raise_memlock(len);
                if (mlock(mem, len) != 0) {
                        int err = -errno;
                        munmap(mem, len);
                        return err;
                }
        }
        *ret = mem;
        return 0;
}

void vgpu_os_free_pinned(void *mem, size_t len)
{
        if (!mem)
                return;
        munlock(mem, len);
        munmap(mem, len);
}

int vgpu_os_random(void *buf, size_t len)
{
        unsigned char *p = buf;
        while (len) {
                ssize_t n = getrandom(p, len, 0);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == ENOSYS)
                                break; /* old kernel: /dev/urandom below */
                        return -errno;
                }
                p += n;
                len -= (size_t)n;
        }
        if (!len)
                return 0;
        int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        while (len) {
                ssize_t n = read(fd, p, len);
                if (n <= 0) {
                        int err = n < 0 ? -errno : -EIO;
                        if (err == -EINTR)
                                continue;
                        close(fd);
                        return err;
                }
                p += n;
                len -= (size_t)n;
        }
        close(fd);
        return 0;
}

uint64_t vgpu_os_now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint32_t vgpu_os_pid(void)
{
        return (uint32_t)getpid();
}

void vgpu_os_sleep_ns(uint64_t ns)
{
        struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000ull), .tv_nsec = (long)(ns % 1000000000ull)};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
                ;
}

int vgpu_os_replace_file(const char *tmp, const char *path)
{
        return rename(tmp, path) == 0 ? 0 : -errno;
}
