/* SPDX-License-Identifier: MIT */
/* --source fb: the Linux framebuffer (/dev/fb0), 32 bits per pixel. The mode
 * is queried before every frame, so a resolution change or panning is
 * followed. */

#include "source_fb.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vgpu/stream.h"

struct fb {
        const char *path;
        int fd;
        unsigned char *map;
        size_t map_len;
};

static int fb_map(struct fb *fb, const struct fb_fix_screeninfo *fix, char *err, size_t errlen)
{
        if (fb->map && fb->map_len == fix->smem_len)
                return 0;
        if (fb->map)
                munmap(fb->map, fb->map_len);
        fb->map = NULL;
        void *m = mmap(NULL, fix->smem_len, PROT_READ, MAP_SHARED, fb->fd, 0);
        if (m == MAP_FAILED) {
                int rc = -errno;
                snprintf(err, errlen, "%s: mmap of %u bytes: %s", fb->path, fix->smem_len, strerror(errno));
                return rc;
        }
        fb->map = m;
        fb->map_len = fix->smem_len;
        return 0;
}

/* Reads the mode and checks it is one vgpu-stream can publish. */
static int fb_mode(struct fb *fb, struct fb_var_screeninfo *var, struct fb_fix_screeninfo *fix,
                   uint32_t *format, char *err, size_t errlen)
{
        if (ioctl(fb->fd, FBIOGET_VSCREENINFO, var) != 0 || ioctl(fb->fd, FBIOGET_FSCREENINFO, fix) != 0) {
                int rc = -errno;
                snprintf(err, errlen, "%s: FBIOGET_*SCREENINFO: %s", fb->path, strerror(errno));
                return rc;
        }
        if (var->bits_per_pixel != 32 || fix->type != FB_TYPE_PACKED_PIXELS || var->red.offset != 16 ||
            var->green.offset != 8 || var->blue.offset != 0 || var->red.length != 8 ||
            var->green.length != 8 || var->blue.length != 8) {
                snprintf(err, errlen,
                         "%s: unsupported mode: %u bpp, red %u@%u green %u@%u blue %u@%u (need 32 bpp "
                         "XRGB/ARGB8888)",
                         fb->path, var->bits_per_pixel, var->red.length, var->red.offset, var->green.length,
                         var->green.offset, var->blue.length, var->blue.offset);
                return -ENOTSUP;
        }
        uint64_t need = ((uint64_t)var->yoffset + var->yres) * fix->line_length;
        if (var->xres < 1 || var->yres < 1 || var->xres > VGPU_MAX_DIM || var->yres > VGPU_MAX_DIM ||
            ((uint64_t)var->xoffset + var->xres) * 4 > fix->line_length || need > fix->smem_len) {
                snprintf(err, errlen, "%s: mode %ux%u+%u+%u, line %u bytes, does not fit %u bytes of memory",
                         fb->path, var->xres, var->yres, var->xoffset, var->yoffset, fix->line_length,
                         fix->smem_len);
                return -ERANGE;
        }
        *format = var->transp.length == 8 && var->transp.offset == 24 ? VGPU_FMT_BGRA8888 : VGPU_FMT_BGRX8888;
        return 0;
}

static int fb_grab(struct vgpu_source *s, uint64_t n, struct vgpu_frame *f, char *err, size_t errlen)
{
        struct fb *fb = s->priv;
        struct fb_var_screeninfo var;
        struct fb_fix_screeninfo fix;
        uint32_t format;
        int rc = fb_mode(fb, &var, &fix, &format, err, errlen);
        if (rc < 0)
                return rc;
        rc = fb_map(fb, &fix, err, errlen);
        if (rc < 0)
                return rc;
        f->pixels = fb->map + (size_t)var.yoffset * fix.line_length + (size_t)var.xoffset * 4;
        f->width = var.xres;
        f->height = var.yres;
        f->stride = fix.line_length;
        f->format = format;
        return 0;
}

static void fb_close(struct vgpu_source *s)
{
        struct fb *fb = s->priv;
        if (!fb)
                return;
        if (fb->map)
                munmap(fb->map, fb->map_len);
        close(fb->fd);
        free(fb);
        s->priv = NULL;
}

int vgpu_source_fb_open(struct vgpu_source *s, const struct vgpu_source_opts *o, char *err, size_t errlen)
{
        struct fb *fb = calloc(1, sizeof(*fb));
        if (!fb)
                return -ENOMEM;
        fb->path = o->device ? o->device : "/dev/fb0";
        fb->fd = open(fb->path, O_RDONLY | O_CLOEXEC);
        if (fb->fd < 0) {
                int rc = -errno;
                snprintf(err, errlen, "%s: %s", fb->path, strerror(errno));
                free(fb);
                return rc;
        }
        s->priv = fb;
        struct fb_var_screeninfo var;
        struct fb_fix_screeninfo fix;
        uint32_t format;
        int rc = fb_mode(fb, &var, &fix, &format, err, errlen);
        if (rc == 0)
                rc = fb_map(fb, &fix, err, errlen);
        if (rc < 0) {
                fb_close(s);
                return rc;
        }
        s->name = "fb";
        snprintf(s->detail, sizeof(s->detail), "(%s, %.16s, line %u bytes)", fb->path, fix.id,
                 fix.line_length);
        s->width = var.xres;
        s->height = var.yres;
        s->format = format;
        s->grab = fb_grab;
        s->done = NULL;
        s->close = fb_close;
        return 0;
}
