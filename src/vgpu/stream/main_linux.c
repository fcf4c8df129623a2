/* SPDX-License-Identifier: MIT */
/* vgpu-stream for Linux guests: the pattern and /dev/fb0 sources. */

#include <signal.h>
#include <string.h>

#include "producer.h"
#include "source_fb.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
        stop = 1;
}

int main(int argc, char **argv)
{
        static const struct vgpu_source_kind kinds[] = {
            {"pattern", "verifiable moving test pattern (--width x --height)", vgpu_source_pattern_open},
            {"fb", "the Linux framebuffer (--device, default /dev/fb0), 32 bpp", vgpu_source_fb_open},
        };
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_signal;
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGHUP, &sa, NULL);
        return vgpu_producer_main(argc, argv, kinds, sizeof(kinds) / sizeof(kinds[0]), &stop);
}
