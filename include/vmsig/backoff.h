/* SPDX-License-Identifier: MIT */
#ifndef VMSIG_BACKOFF_H
#define VMSIG_BACKOFF_H

/* Self-healing retry for adapter bootstraps: a one-shot timerfd whose delay
 * doubles on each failure and resets on success. Register b->fd with
 * VMSIG_RDY_TIMERFD; when it fires, try again. */

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct vmsig_backoff {
        int fd;
        uint32_t min_ms;
        uint32_t max_ms;
        uint32_t cur_ms;
        uint32_t failures; /* since the last success */
};

int vmsig_backoff_init(struct vmsig_backoff *b, uint32_t min_ms, uint32_t max_ms);
void vmsig_backoff_done(struct vmsig_backoff *b);
/* Arm the next retry. Returns 1 for the first failure since the last success
 * (report that one, and only that one), 0 for later ones, <0 on error. */
int vmsig_backoff_failed(struct vmsig_backoff *b);
/* Disarm and reset the delay. */
void vmsig_backoff_succeeded(struct vmsig_backoff *b);

#ifdef __cplusplus
}
#endif
#endif
