/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <vmsig/backoff.h>

int vmsig_backoff_init(struct vmsig_backoff *b, uint32_t min_ms, uint32_t max_ms)
{
        memset(b, 0, sizeof(*b));
        b->fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (b->fd < 0)
                return -errno;
        b->min_ms = min_ms ? min_ms : 1;
        b->max_ms = max_ms < b->min_ms ? b->min_ms : max_ms;
        b->cur_ms = b->min_ms;
        return 0;
}

void vmsig_backoff_done(struct vmsig_backoff *b)
{
        if (b->fd >= 0)
                close(b->fd);
        b->fd = -1;
}

static int arm(struct vmsig_backoff *b, uint32_t ms)
{
        struct itimerspec its = {0};

        its.it_value.tv_sec = ms / 1000;
        its.it_value.tv_nsec = (long)(ms % 1000) * 1000000L;
        return timerfd_settime(b->fd, 0, &its, NULL) < 0 ? -errno : 0;
}

int vmsig_backoff_failed(struct vmsig_backoff *b)
{
        int r = arm(b, b->cur_ms);

        if (r < 0)
                return r;
        b->cur_ms = b->cur_ms > b->max_ms / 2 ? b->max_ms : b->cur_ms * 2;
        return ++b->failures == 1;
}

void vmsig_backoff_succeeded(struct vmsig_backoff *b)
{
        struct itimerspec off = {0};

        timerfd_settime(b->fd, 0, &off, NULL);
        b->cur_ms = b->min_ms;
        b->failures = 0;
}
