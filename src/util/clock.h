/* SPDX-License-Identifier: MIT */
#ifndef VMSIG_UTIL_CLOCK_H
#define VMSIG_UTIL_CLOCK_H

/* The one monotonic clock of every part (header-only, no dependencies, so
 * that src/host and the daemon can use it as well as libvmsig). libvmie
 * keeps its own coarse clock: it depends on nothing of vmsig. */

#include <stdint.h>
#include <time.h>

static inline uint64_t vmsig_now_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline uint64_t vmsig_now_ms(void)
{
        return vmsig_now_ns() / 1000000u;
}

#endif
