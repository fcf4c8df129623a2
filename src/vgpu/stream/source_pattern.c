/* SPDX-License-Identifier: MIT */
/* --source pattern: the verifiable moving test pattern. */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "pattern.h"
#include "source.h"
#include "vgpu/stream.h"

static int pattern_grab(struct vgpu_source *s, uint64_t n, struct vgpu_frame *f, char *err, size_t errlen)
{
        unsigned char *buf = s->priv;
        vgpu_pattern_fill(buf, s->width, s->height, n);
        f->pixels = buf;
        f->width = s->width;
        f->height = s->height;
        f->stride = s->width * 4;
        f->format = VGPU_FMT_BGRA8888;
        return 0;
}

static void pattern_close(struct vgpu_source *s)
{
        free(s->priv);
        s->priv = NULL;
}

int vgpu_source_pattern_open(struct vgpu_source *s, const struct vgpu_source_opts *o, char *err,
                             size_t errlen)
{
        if (o->width < VGPU_PATTERN_MIN_WIDTH || o->width > VGPU_MAX_DIM || o->height < 1 ||
            o->height > VGPU_MAX_DIM) {
                snprintf(err, errlen, "pattern size %ux%u: width must be %u..%u, height 1..%u", o->width,
                         o->height, VGPU_PATTERN_MIN_WIDTH, VGPU_MAX_DIM, VGPU_MAX_DIM);
                return -EINVAL;
        }
        s->priv = malloc((size_t)o->width * 4 * o->height);
        if (!s->priv) {
                snprintf(err, errlen, "pattern %ux%u: out of memory", o->width, o->height);
                return -ENOMEM;
        }
        s->name = "pattern";
        s->width = o->width;
        s->height = o->height;
        s->format = VGPU_FMT_BGRA8888;
        s->grab = pattern_grab;
        s->done = NULL;
        s->close = pattern_close;
        return 0;
}
