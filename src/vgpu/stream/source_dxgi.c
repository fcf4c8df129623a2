/* SPDX-License-Identifier: MIT */
/* --source dxgi: DXGI desktop duplication of the primary output (Windows 8
 * and later), through the C COM vtables. Each new desktop image is copied
 * to a CPU-readable staging texture; when nothing changed the staging
 * texture still holds the last image and is published again. */

#define COBJMACROS
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <windows.h>

#include <d3d11.h>
#include <dxgi1_2.h>

#include "source_win.h"
#include "vgpu/stream.h"

#define FIRST_FRAME_TIMEOUT_MS 50 /* short: the heartbeat must keep going */

struct dxgi {
        ID3D11Device *dev;
        ID3D11DeviceContext *ctx;
        IDXGIOutputDuplication *dup;
        ID3D11Texture2D *staging;
        UINT width, height;
        int have_image, mapped;
};

#define RELEASE(obj, type)                                                                                   \
        do {                                                                                                 \
                if (obj) {                                                                                   \
                        type##_Release(obj);                                                                 \
                        (obj) = NULL;                                                                        \
                }                                                                                            \
        } while (0)

static void dup_release(struct dxgi *d)
{
        RELEASE(d->staging, ID3D11Texture2D);
        RELEASE(d->dup, IDXGIOutputDuplication);
        d->have_image = 0;
}

/* Duplication of output 0 of the device's adapter, and a staging texture of
 * its size. */
static int dup_create(struct dxgi *d, char *err, size_t errlen)
{
        IDXGIDevice *xdev = NULL;
        IDXGIAdapter *adapter = NULL;
        IDXGIOutput *output = NULL;
        IDXGIOutput1 *output1 = NULL;
        const char *step = "QueryInterface(IDXGIDevice)";
        HRESULT hr = ID3D11Device_QueryInterface(d->dev, &IID_IDXGIDevice, (void **)&xdev);
        if (SUCCEEDED(hr)) {
                step = "GetAdapter";
                hr = IDXGIDevice_GetAdapter(xdev, &adapter);
        }
        if (SUCCEEDED(hr)) {
                step = "EnumOutputs(0)";
                hr = IDXGIAdapter_EnumOutputs(adapter, 0, &output);
        }
        if (SUCCEEDED(hr)) {
                step = "QueryInterface(IDXGIOutput1)";
                hr = IDXGIOutput_QueryInterface(output, &IID_IDXGIOutput1, (void **)&output1);
        }
        if (SUCCEEDED(hr)) {
                step = "DuplicateOutput";
                hr = IDXGIOutput1_DuplicateOutput(output1, (IUnknown *)d->dev, &d->dup);
        }
        RELEASE(output1, IDXGIOutput1);
        RELEASE(output, IDXGIOutput);
        RELEASE(adapter, IDXGIAdapter);
        RELEASE(xdev, IDXGIDevice);
        if (FAILED(hr)) {
                snprintf(err, errlen, "%s failed, hr=0x%08lx", step, (unsigned long)hr);
                return -ENODEV;
        }
        DXGI_OUTDUPL_DESC desc;
        IDXGIOutputDuplication_GetDesc(d->dup, &desc);
        if (desc.ModeDesc.Format != DXGI_FORMAT_B8G8R8A8_UNORM || desc.ModeDesc.Width < 1 ||
            desc.ModeDesc.Height < 1 || desc.ModeDesc.Width > VGPU_MAX_DIM ||
            desc.ModeDesc.Height > VGPU_MAX_DIM) {
                snprintf(err, errlen, "desktop %ux%u, DXGI format %d is not 8-bit BGRA", desc.ModeDesc.Width,
                         desc.ModeDesc.Height, (int)desc.ModeDesc.Format);
                dup_release(d);
                return -ENOTSUP;
        }
        d->width = desc.ModeDesc.Width;
        d->height = desc.ModeDesc.Height;
        D3D11_TEXTURE2D_DESC td = {
            .Width = d->width,
            .Height = d->height,
            .MipLevels = 1,
            .ArraySize = 1,
            .Format = DXGI_FORMAT_B8G8R8A8_UNORM,
            .SampleDesc = {.Count = 1},
            .Usage = D3D11_USAGE_STAGING,
            .CPUAccessFlags = D3D11_CPU_ACCESS_READ,
        };
        hr = ID3D11Device_CreateTexture2D(d->dev, &td, NULL, &d->staging);
        if (FAILED(hr)) {
                snprintf(err, errlen, "CreateTexture2D(staging %ux%u) failed, hr=0x%08lx", d->width,
                         d->height, (unsigned long)hr);
                dup_release(d);
                return -ENOMEM;
        }
        return 0;
}

/* Takes a new desktop image into the staging texture if there is one. */
static HRESULT acquire(struct dxgi *d, UINT timeout_ms)
{
        DXGI_OUTDUPL_FRAME_INFO info;
        IDXGIResource *res = NULL;
        HRESULT hr = IDXGIOutputDuplication_AcquireNextFrame(d->dup, timeout_ms, &info, &res);
        if (FAILED(hr))
                return hr;
        ID3D11Texture2D *tex = NULL;
        hr = IDXGIResource_QueryInterface(res, &IID_ID3D11Texture2D, (void **)&tex);
        if (SUCCEEDED(hr)) {
                ID3D11DeviceContext_CopyResource(d->ctx, (ID3D11Resource *)d->staging, (ID3D11Resource *)tex);
                ID3D11Texture2D_Release(tex);
                d->have_image = 1;
        }
        IDXGIResource_Release(res);
        IDXGIOutputDuplication_ReleaseFrame(d->dup);
        return hr;
}

static int dxgi_grab(struct vgpu_source *s, uint64_t n, struct vgpu_frame *f, char *err, size_t errlen)
{
        struct dxgi *d = s->priv;
        for (int attempt = 0; attempt < 2; attempt++) {
                if (!d->dup) {
                        int rc = dup_create(d, err, errlen);
                        if (rc < 0)
                                return rc;
                }
                HRESULT hr = acquire(d, d->have_image ? 0 : FIRST_FRAME_TIMEOUT_MS);
                if (hr == DXGI_ERROR_ACCESS_LOST) {
                        /* Mode change, desktop switch, UAC: start over. */
                        dup_release(d);
                        continue;
                }
                if (FAILED(hr) && hr != DXGI_ERROR_WAIT_TIMEOUT) {
                        snprintf(err, errlen, "AcquireNextFrame failed, hr=0x%08lx", (unsigned long)hr);
                        return -EIO;
                }
                if (!d->have_image) {
                        snprintf(err, errlen, "no desktop image within %d ms", FIRST_FRAME_TIMEOUT_MS);
                        return -EAGAIN;
                }
                D3D11_MAPPED_SUBRESOURCE map;
                hr =
                    ID3D11DeviceContext_Map(d->ctx, (ID3D11Resource *)d->staging, 0, D3D11_MAP_READ, 0, &map);
                if (FAILED(hr)) {
                        snprintf(err, errlen, "Map(staging) failed, hr=0x%08lx", (unsigned long)hr);
                        return -EIO;
                }
                d->mapped = 1;
                f->pixels = map.pData;
                f->width = d->width;
                f->height = d->height;
                f->stride = map.RowPitch;
                f->format = VGPU_FMT_BGRX8888;
                return 0;
        }
        snprintf(err, errlen, "desktop duplication lost twice in a row");
        return -EIO;
}

static void dxgi_done(struct vgpu_source *s)
{
        struct dxgi *d = s->priv;
        if (d->mapped) {
                ID3D11DeviceContext_Unmap(d->ctx, (ID3D11Resource *)d->staging, 0);
                d->mapped = 0;
        }
}

static void dxgi_close(struct vgpu_source *s)
{
        struct dxgi *d = s->priv;
        if (!d)
                return;
        dxgi_done(s);
        dup_release(d);
        RELEASE(d->ctx, ID3D11DeviceContext);
        RELEASE(d->dev, ID3D11Device);
        free(d);
        s->priv = NULL;
}

int vgpu_source_dxgi_open(struct vgpu_source *s, const struct vgpu_source_opts *o, char *err, size_t errlen)
{
        struct dxgi *d = calloc(1, sizeof(*d));
        if (!d)
                return -ENOMEM;
        HRESULT hr = D3D11CreateDevice(NULL, D3D_DRIVER_TYPE_HARDWARE, NULL, 0, NULL, 0, D3D11_SDK_VERSION,
                                       &d->dev, NULL, &d->ctx);
        if (FAILED(hr)) {
                snprintf(err, errlen, "D3D11CreateDevice failed, hr=0x%08lx", (unsigned long)hr);
                free(d);
                return -ENODEV;
        }
        s->priv = d;
        s->close = dxgi_close;
        int rc = dup_create(d, err, errlen);
        if (rc < 0) {
                dxgi_close(s);
                return rc;
        }
        s->name = "dxgi";
        s->width = d->width;
        s->height = d->height;
        s->format = VGPU_FMT_BGRX8888;
        s->grab = dxgi_grab;
        s->done = dxgi_done;
        return 0;
}
