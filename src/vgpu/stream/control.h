/* SPDX-License-Identifier: MIT */
#ifndef VGPU_STREAM_CONTROL_H
#define VGPU_STREAM_CONTROL_H

/* What the producer does with host requests (enum vgpu_op): the state they
 * change and the result each one is acknowledged with. */

#include <stdint.h>

#include "region.h"

/* Ack results are Linux errno values on the wire, whatever the producer's
 * OS spells them as (mingw's EOPNOTSUPP is not 95). */
#define VGPU_ACK_OK         0
#define VGPU_ACK_EIO        (-5)
#define VGPU_ACK_EINVAL     (-22)
#define VGPU_ACK_EOPNOTSUPP (-95)

#define VGPU_FPS_CAP_MAX 1000u

struct vgpu_ctl_state {
        int paused;
        uint32_t fps_cap;                        /* 0 = none */
        uint32_t crop_x, crop_y, crop_w, crop_h; /* crop_w == 0: whole screen */
        uint32_t full_frame_seq;                 /* req_seq of a pending FULL_FRAME, 0 = none */
};

/* Applies q to st; source_w/h is the current screen size, for REGION.
 * Returns the ack result, or 1 for FULL_FRAME: the caller acknowledges that
 * one once the frame is published. */
int vgpu_control_apply(struct vgpu_ctl_state *st, const struct vgpu_request *q, uint32_t source_w,
                       uint32_t source_h);

#endif
