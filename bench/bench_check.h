/* SPDX-License-Identifier: MIT */
#ifndef VMSIG_BENCH_CHECK_H
#define VMSIG_BENCH_CHECK_H

/* A bench's own checks: invalid() collects every failed check, and
 * bench_report_invalid() prints them as one "INVALID: <reasons>" line
 * before any figure is printed. Header-only: each bench is one file. */

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static char g_invalid[2048];

static void invalid(const char *fmt, ...) __attribute__((format(printf, 1, 2), unused));
static void invalid(const char *fmt, ...)
{
        size_t n = strlen(g_invalid);
        va_list ap;

        if (n && n + 3 < sizeof(g_invalid)) {
                memcpy(g_invalid + n, "; ", 3);
                n += 2;
        }
        va_start(ap, fmt);
        vsnprintf(g_invalid + n, sizeof(g_invalid) - n, fmt, ap);
        va_end(ap);
}

/* 1 (after printing the reasons) if any check failed, else 0. */
static __attribute__((unused)) int bench_report_invalid(void)
{
        if (!g_invalid[0])
                return 0;
        printf("INVALID: %s\n", g_invalid);
        return 1;
}

#endif
