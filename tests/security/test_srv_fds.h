/* SPDX-License-Identifier: MIT */
#ifndef VMSIG_TESTS_SRV_FDS_H
#define VMSIG_TESTS_SRV_FDS_H

/* Helpers for the test_srv_* attacks that starve the running vmsigd of
 * file descriptors from outside (prlimit(2) on its pid, what `prlimit
 * --pid` does) and watch its CPU time in /proc. Include after the harness. */

#include <dirent.h>
#include <sys/resource.h>

/* The lowest fd number the process does not use: with the soft limit set
 * to it, every new fd (accept, dup, open) fails with EMFILE. -1 on error. */
static VH_UNUSED int srv_first_free_fd(pid_t pid)
{
        char path[64];
        bool used[4096] = {false};
        DIR *d;
        struct dirent *e;

        snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
        d = opendir(path);
        if (!d)
                return -1;
        while ((e = readdir(d))) {
                char *end;
                long n = strtol(e->d_name, &end, 10);
                if (*end == '\0' && e->d_name[0] != '.' && n >= 0 && n < 4096)
                        used[n] = true;
        }
        closedir(d);
        for (int i = 0; i < 4096; i++)
                if (!used[i])
                        return i;
        return -1;
}

/* Set the soft RLIMIT_NOFILE of pid (hard limit unchanged); the old one in
 * *old if given. 0 or -errno. */
static VH_UNUSED int srv_set_nofile(pid_t pid, rlim_t soft, struct rlimit *old)
{
        struct rlimit cur, nl;

        if (prlimit(pid, RLIMIT_NOFILE, NULL, &cur) < 0)
                return -errno;
        if (old)
                *old = cur;
        nl.rlim_cur = soft;
        nl.rlim_max = cur.rlim_max;
        return prlimit(pid, RLIMIT_NOFILE, &nl, NULL) < 0 ? -errno : 0;
}

/* utime + stime of pid in seconds, from /proc/PID/stat; < 0 on error. */
static VH_UNUSED double srv_cpu_seconds(pid_t pid)
{
        char path[64], buf[2048];
        unsigned long long ut = 0, st = 0;
        int fd;
        ssize_t n;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -1;
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0)
                return -1;
        buf[n] = '\0';
        /* comm may hold spaces: fields count from the last ')' (state is 3). */
        char *p = strrchr(buf, ')');
        if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
                return -1;
        return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* Wait ms without watching anything (a measurement window, not a sync). */
static VH_UNUSED void srv_idle_ms(int ms)
{
        uint64_t deadline = vh_now_ms() + (uint64_t)ms;

        while (vh_left(deadline))
                poll(NULL, 0, vh_left(deadline));
}

#endif
