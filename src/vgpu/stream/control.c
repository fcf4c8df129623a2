/* SPDX-License-Identifier: MIT */
/* Host requests: validation and the producer state they change. */

#include "control.h"

int vgpu_control_apply(struct vgpu_ctl_state *st, const struct vgpu_request *q, uint32_t source_w,
                       uint32_t source_h)
{
        switch (q->op) {
        case VGPU_OP_PAUSE:
                if (q->arg[0] > 1)
                        return VGPU_ACK_EINVAL;
                st->paused = (int)q->arg[0];
                return VGPU_ACK_OK;
        case VGPU_OP_FPS_CAP:
                if (q->arg[0] > VGPU_FPS_CAP_MAX)
                        return VGPU_ACK_EINVAL;
                st->fps_cap = q->arg[0];
                return VGPU_ACK_OK;
        case VGPU_OP_REGION: {
                uint32_t x = q->arg[0], y = q->arg[1], w = q->arg[2], h = q->arg[3];
                if (!x && !y && !w && !h) {
                        st->crop_x = st->crop_y = st->crop_w = st->crop_h = 0;
                        return VGPU_ACK_OK;
                }
                /* The pattern needs 8 pixels a row; so does any useful crop. */
                if (w < 8 || h < 1 || x >= source_w || y >= source_h || w > source_w - x || h > source_h - y)
                        return VGPU_ACK_EINVAL;
                st->crop_x = x;
                st->crop_y = y;
                st->crop_w = w;
                st->crop_h = h;
                return VGPU_ACK_OK;
        }
        case VGPU_OP_FULL_FRAME:
                st->full_frame_seq = q->seq;
                return 1;
        default:
                return VGPU_ACK_EOPNOTSUPP;
        }
}
