/* SPDX-License-Identifier: MIT */
#ifndef VGPU_STREAM_SOURCE_H
#define VGPU_STREAM_SOURCE_H

/* A frame source of vgpu-stream: the test pattern, /dev/fb0, DXGI desktop
 * duplication or GDI. The producer loop grabs, publishes, then calls done. */

#include <stddef.h>
#include <stdint.h>

struct vgpu_frame {
        const unsigned char *pixels; /* valid until done() or the next grab */
        uint32_t width, height, stride, format;
};

struct vgpu_source {
        const char *name;               /* what really runs, e.g. "gdi" after a DXGI fallback */
        char detail[160];               /* one line for the start-up message, may be empty */
        uint32_t width, height, format; /* known after open */
        /* n: the frame_seq this frame will carry (the pattern embeds it). */
        int (*grab)(struct vgpu_source *s, uint64_t n, struct vgpu_frame *f, char *err, size_t errlen);
        void (*done)(struct vgpu_source *s); /* may be NULL */
        void (*close)(struct vgpu_source *s);
        void *priv;
};

struct vgpu_source_opts {
        uint32_t width, height; /* pattern size */
        const char *device;     /* fb device, NULL = /dev/fb0 */
};

struct vgpu_source_kind {
        const char *name;
        const char *help;
        int (*open)(struct vgpu_source *s, const struct vgpu_source_opts *o, char *err, size_t errlen);
};

int vgpu_source_pattern_open(struct vgpu_source *s, const struct vgpu_source_opts *o, char *err,
                             size_t errlen);

#endif
