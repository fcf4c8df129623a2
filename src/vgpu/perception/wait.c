/* SPDX-License-Identifier: MIT */
/* Waiting for the next frame without a busy loop: sleep until the frame is
 * due (the producer's frame_interval_us, else the cadence observed between
 * header reads; early by twice the observed jitter), then poll the header
 * with gaps that grow from 50 us up to a quarter of the interval (0.5 ms at
 * most), within the caller's budget. */
#include <errno.h>
#include <time.h>

#include "internal.h"

#define MIN_GAP_NS     50000ull
#define MAX_GAP_NS     500000ull
#define PAUSED_GAP_NS  20000000ull
#define DEFAULT_INT_NS 16666666ull

static void sleep_ns(uint64_t ns)
{
        struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000ull), .tv_nsec = (long)(ns % 1000000000ull)};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

int vgpu_perception_wait(struct vgpu_perception *p, uint64_t after_seq, uint32_t timeout_ms,
                         uint32_t poll_budget, uint32_t *ret_polls)
{
        uint64_t start = vgpup_now_ns(), deadline = start + (uint64_t)timeout_ms * 1000000ull;
        uint64_t gap = MIN_GAP_NS;
        uint32_t polls = 0;
        int r;

        if (!p)
                return -EINVAL;
        for (;;) {
                struct vgpu_header h;
                uint64_t now, interval, due, sleep_for;

                if (poll_budget && polls >= poll_budget) {
                        r = -EDQUOT;
                        break;
                }
                r = vgpup_ensure(p);
                if (r == 0) {
                        polls++;
                        r = vgpup_read_header(p, &h);
                }
                now = vgpup_now_ns();
                if (r == -ESTALE && now < deadline)
                        continue; /* rescans at once (forced) */
                if (r == -ESTALE)
                        r = -ENOENT;
                /* after_seq counts in the run of the last frame read; another
                 * run's first frame is new whatever its number. */
                if (r == 0 && (h.latest_seq > after_seq ||
                               (p->last_frame_nonce && h.nonce != p->last_frame_nonce && h.latest_seq)))
                        break;
                if (r < 0 && r != -ENOENT)
                        break;
                if (now >= deadline) {
                        r = r == -ENOENT ? -ENOENT : -ETIMEDOUT;
                        break;
                }
                if (r == -ENOENT) {
                        sleep_for = (uint64_t)p->opt.rescan_min_ms * 1000000ull;
                } else if (h.flags & VGPU_HF_PAUSED) {
                        sleep_for = PAUSED_GAP_NS;
                } else {
                        interval = h.frame_interval_us ? (uint64_t)h.frame_interval_us * 1000ull
                                   : p->cadence_ns     ? p->cadence_ns
                                                       : DEFAULT_INT_NS;
                        /* Wake before the frame is due by an eighth of the
                         * interval, or by twice the observed jitter of an
                         * irregular producer (a TCG guest, a loaded one),
                         * up to half the interval: a frame that comes early
                         * is then polled for, not slept through. */
                        uint64_t early = 2 * p->jitter_ns > interval / 8 ? 2 * p->jitter_ns : interval / 8;
                        if (early > interval / 2)
                                early = interval / 2;
                        due = p->seen_seq_ns + interval;
                        if (due > now + early) {
                                /* Not due yet: one sleep until just before. */
                                sleep_for = due - now - early;
                                gap = MIN_GAP_NS;
                        } else {
                                uint64_t cap = interval / 4 < MAX_GAP_NS ? interval / 4 : MAX_GAP_NS;
                                sleep_for = gap;
                                gap = gap * 2 < cap ? gap * 2 : (cap > MIN_GAP_NS ? cap : MIN_GAP_NS);
                        }
                }
                if (sleep_for > deadline - now)
                        sleep_for = deadline - now;
                sleep_ns(sleep_for);
        }
        if (ret_polls)
                *ret_polls = polls;
        return r;
}
