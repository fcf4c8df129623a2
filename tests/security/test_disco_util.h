/* SPDX-License-Identifier: MIT */
#ifndef VMSIG_TESTS_DISCO_UTIL_H
#define VMSIG_TESTS_DISCO_UTIL_H

/* Shared by the test_disco_*.c attacks on vmsigd's VM discovery: what
 * `vmsigctl list` shows, and waiting on the daemon's log, each with a
 * deadline. Include after "daemon/vmsigd_harness.h". */

/* Is VM name in `vmsigctl list` (a whole word in the NAME column)? */
static VH_UNUSED bool dz_listed(const struct vh *h, const char *name)
{
        char out[65536];

        if (vh_vmsigctl(h, -1, out, sizeof(out), "list", (char *)NULL) != 0)
                return false;
        for (const char *line = out; *line;) {
                const char *eol = strchrnul(line, '\n');
                char id[16], vm[128];
                if (sscanf(line, "%15s %127s", id, vm) == 2 && strcmp(vm, name) == 0)
                        return true;
                line = *eol ? eol + 1 : eol;
        }
        return false;
}

/* Poll `vmsigctl list` until name is (or is not) listed. */
static VH_UNUSED bool dz_wait_listed(const struct vh *h, const char *name, bool want, int timeout_ms)
{
        uint64_t deadline = vh_now_ms() + (uint64_t)timeout_ms;

        for (;;) {
                if (dz_listed(h, name) == want)
                        return true;
                if (!vh_left(deadline))
                        return false;
                struct timespec ts = {0, 20000000};
                nanosleep(&ts, NULL);
        }
}

/* Wait until one log line contains every string (NULL-terminated list). */
static VH_UNUSED bool dz_wait_log(const struct vh *h, int timeout_ms, const char *a, const char *b,
                                  const char *c)
{
        uint64_t deadline = vh_now_ms() + (uint64_t)timeout_ms;

        for (;;) {
                if (vh_file_has_line(h->log, a, b, c, (char *)NULL))
                        return true;
                if (!vh_left(deadline))
                        return false;
                struct timespec ts = {0, 10000000};
                nanosleep(&ts, NULL);
        }
}

static VH_UNUSED unsigned dz_log_count(const struct vh *h, const char *needle)
{
        char *log = vh_read_file(h->log);
        unsigned n = log ? vh_count_lines(log, needle) : 0;

        free(log);
        return n;
}

static VH_UNUSED int dz_write(const char *dir, const char *file, const char *text)
{
        char path[512];

        snprintf(path, sizeof(path), "%s/%s", dir, file);
        return vh_write_file(path, text, 0644);
}

/* Atomically, as a hook must: a temp name the daemon ignores, then rename. */
static VH_UNUSED int dz_put(const char *dir, const char *file, const char *text)
{
        char tmp[512], path[512];
        int r;

        snprintf(tmp, sizeof(tmp), "%s/.dz.tmp", dir);
        snprintf(path, sizeof(path), "%s/%s", dir, file);
        r = vh_write_file(tmp, text, 0644);
        if (r < 0)
                return r;
        return rename(tmp, path) < 0 ? -errno : 0;
}

#endif
