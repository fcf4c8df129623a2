/* SPDX-License-Identifier: MIT */
#ifndef VGPU_STREAM_REGION_OS_H
#define VGPU_STREAM_REGION_OS_H

/* What the producer core needs from the operating system. One
 * implementation per platform: os_posix.c (Linux), os_windows.c (mingw). */

#include <stddef.h>
#include <stdint.h>

/* Page-aligned, zeroed, resident and pinned memory: mlock on Linux,
 * VirtualLock (after growing the working set) on Windows. */
int vgpu_os_alloc_pinned(size_t len, void **ret);
void vgpu_os_free_pinned(void *mem, size_t len);

/* Cryptographic-quality random bytes (getrandom / BCryptGenRandom). */
int vgpu_os_random(void *buf, size_t len);

/* Monotonic clock, nanoseconds. */
uint64_t vgpu_os_now_ns(void);

uint32_t vgpu_os_pid(void);

void vgpu_os_sleep_ns(uint64_t ns);

/* Atomically replaces `path` with `tmp`. */
int vgpu_os_replace_file(const char *tmp, const char *path);

#endif
