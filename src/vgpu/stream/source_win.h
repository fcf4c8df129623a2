/* SPDX-License-Identifier: MIT */
#ifndef VGPU_STREAM_SOURCE_WIN_H
#define VGPU_STREAM_SOURCE_WIN_H

#include "source.h"

int vgpu_source_dxgi_open(struct vgpu_source *s, const struct vgpu_source_opts *o, char *err, size_t errlen);
int vgpu_source_gdi_open(struct vgpu_source *s, const struct vgpu_source_opts *o, char *err, size_t errlen);
/* DXGI, else GDI; s->detail says why DXGI was not used. */
int vgpu_source_screen_open(struct vgpu_source *s, const struct vgpu_source_opts *o, char *err,
                            size_t errlen);

#endif
