/* SPDX-License-Identifier: MIT */
#ifndef VGPU_STREAM_SOURCE_FB_H
#define VGPU_STREAM_SOURCE_FB_H

#include "source.h"

int vgpu_source_fb_open(struct vgpu_source *s, const struct vgpu_source_opts *o, char *err, size_t errlen);

#endif
