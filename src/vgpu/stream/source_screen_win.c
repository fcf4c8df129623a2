/* SPDX-License-Identifier: MIT */
/* --source screen: DXGI desktop duplication when the adapter and session
 * support it, else GDI. The start-up message names the path that runs. */

#include <stdio.h>
#include <string.h>

#include "source_win.h"

int vgpu_source_screen_open(struct vgpu_source *s, const struct vgpu_source_opts *o, char *err, size_t errlen)
{
        char why[128] = "";
        if (vgpu_source_dxgi_open(s, o, why, sizeof(why)) == 0)
                return 0;
        int rc = vgpu_source_gdi_open(s, o, err, errlen);
        if (rc == 0)
                snprintf(s->detail, sizeof(s->detail), "(DXGI desktop duplication unavailable: %.100s)", why);
        else
                snprintf(err + strlen(err), errlen - strlen(err), "; DXGI: %.100s", why);
        return rc;
}
