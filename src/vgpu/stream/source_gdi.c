/* SPDX-License-Identifier: MIT */
/* --source gdi: the primary screen through GDI, BitBlt into a top-down
 * 32-bit DIB section. Slower than DXGI but available everywhere (Wine,
 * Windows 7, sessions without a duplication-capable adapter). */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <windows.h>

#include "source_win.h"
#include "vgpu/stream.h"

struct gdi {
        HDC screen, mem;
        HBITMAP bmp, old;
        void *bits;
        int width, height;
};

static void dib_release(struct gdi *g)
{
        if (g->bmp) {
                SelectObject(g->mem, g->old);
                DeleteObject(g->bmp);
                g->bmp = NULL;
        }
}

static int dib_create(struct gdi *g, int width, int height, char *err, size_t errlen)
{
        if (width < 1 || height < 1 || width > (int)VGPU_MAX_DIM || height > (int)VGPU_MAX_DIM) {
                snprintf(err, errlen, "screen size %dx%d out of range", width, height);
                return -ERANGE;
        }
        BITMAPINFO bi = {.bmiHeader = {
                             .biSize = sizeof(BITMAPINFOHEADER),
                             .biWidth = width,
                             .biHeight = -height, /* top-down rows */
                             .biPlanes = 1,
                             .biBitCount = 32,
                             .biCompression = BI_RGB,
                         }};
        g->bmp = CreateDIBSection(g->mem, &bi, DIB_RGB_COLORS, &g->bits, NULL, 0);
        if (!g->bmp) {
                snprintf(err, errlen, "CreateDIBSection(%dx%d) failed, error %lu", width, height,
                         GetLastError());
                return -ENOMEM;
        }
        g->old = SelectObject(g->mem, g->bmp);
        g->width = width;
        g->height = height;
        return 0;
}

static int gdi_grab(struct vgpu_source *s, uint64_t n, struct vgpu_frame *f, char *err, size_t errlen)
{
        struct gdi *g = s->priv;
        int w = GetSystemMetrics(SM_CXSCREEN), h = GetSystemMetrics(SM_CYSCREEN);
        if (w != g->width || h != g->height) {
                dib_release(g);
                int rc = dib_create(g, w, h, err, errlen);
                if (rc < 0)
                        return rc;
        }
        if (!BitBlt(g->mem, 0, 0, g->width, g->height, g->screen, 0, 0, SRCCOPY | CAPTUREBLT)) {
                snprintf(err, errlen, "BitBlt failed, error %lu", GetLastError());
                return -EIO;
        }
        GdiFlush();
        f->pixels = g->bits;
        f->width = (uint32_t)g->width;
        f->height = (uint32_t)g->height;
        f->stride = (uint32_t)g->width * 4;
        f->format = VGPU_FMT_BGRX8888;
        return 0;
}

static void gdi_close(struct vgpu_source *s)
{
        struct gdi *g = s->priv;
        if (!g)
                return;
        dib_release(g);
        if (g->mem)
                DeleteDC(g->mem);
        if (g->screen)
                ReleaseDC(NULL, g->screen);
        free(g);
        s->priv = NULL;
}

int vgpu_source_gdi_open(struct vgpu_source *s, const struct vgpu_source_opts *o, char *err, size_t errlen)
{
        struct gdi *g = calloc(1, sizeof(*g));
        if (!g)
                return -ENOMEM;
        s->priv = g;
        g->screen = GetDC(NULL);
        g->mem = g->screen ? CreateCompatibleDC(g->screen) : NULL;
        if (!g->mem) {
                snprintf(err, errlen, "no screen device context (error %lu)", GetLastError());
                gdi_close(s);
                return -ENODEV;
        }
        int rc = dib_create(g, GetSystemMetrics(SM_CXSCREEN), GetSystemMetrics(SM_CYSCREEN), err, errlen);
        if (rc < 0) {
                gdi_close(s);
                return rc;
        }
        s->name = "gdi";
        s->width = (uint32_t)g->width;
        s->height = (uint32_t)g->height;
        s->format = VGPU_FMT_BGRX8888;
        s->grab = gdi_grab;
        s->done = NULL;
        s->close = gdi_close;
        return 0;
}
