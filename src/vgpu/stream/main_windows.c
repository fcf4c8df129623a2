/* SPDX-License-Identifier: MIT */
/* vgpu-stream for Windows guests: the pattern, DXGI desktop duplication and
 * GDI sources ("screen" = DXGI, falling back to GDI). */

#include <signal.h>
#include <windows.h>

#include <mmsystem.h>

#include "producer.h"
#include "source_win.h"

static volatile sig_atomic_t stop;

static BOOL WINAPI on_ctrl(DWORD type)
{
        stop = 1;
        return TRUE;
}

int main(int argc, char **argv)
{
        /* The first one is the default. */
        static const struct vgpu_source_kind kinds[] = {
            {"screen", "the desktop: DXGI desktop duplication, else GDI", vgpu_source_screen_open},
            {"dxgi", "the desktop through DXGI desktop duplication only", vgpu_source_dxgi_open},
            {"gdi", "the desktop through GDI BitBlt only", vgpu_source_gdi_open},
            {"pattern", "verifiable moving test pattern (--width x --height)", vgpu_source_pattern_open},
        };
        /* Physical pixels, not DPI-scaled ones. */
        SetProcessDPIAware();
        SetConsoleCtrlHandler(on_ctrl, TRUE);
        timeBeginPeriod(1);
        int rc = vgpu_producer_main(argc, argv, kinds, sizeof(kinds) / sizeof(kinds[0]), &stop);
        timeEndPeriod(1);
        return rc;
}
