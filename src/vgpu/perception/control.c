/* SPDX-License-Identifier: MIT */
/* Control requests: the library only builds the block and names its
 * guest-physical address; the caller owns the memwrite lease and sends it. */
#include <errno.h>
#include <string.h>

#include "internal.h"

int vgpu_perception_control(struct vgpu_perception *p, uint32_t op, const uint32_t args[4],
                            struct vgpu_control *ret_block, uint64_t *ret_gpa, uint32_t *ret_req_seq)
{
        struct vgpu_header h;
        struct vgpu_control c;
        int r;

        if (!p || !ret_block || !ret_gpa || !ret_req_seq || op < VGPU_OP_PAUSE || op > VGPU_OP_FULL_FRAME)
                return -EINVAL;
        if ((r = vgpup_ensure(p)) < 0 || (r = vgpup_read_header(p, &h)) < 0)
                return r;
        /* New and never the one the producer handled last, never 0. */
        uint32_t seq = (p->last_req_seq > h.ctrl_ack_seq ? p->last_req_seq : h.ctrl_ack_seq) + 1;
        if (seq == 0)
                seq = 1;
        memset(&c, 0, sizeof(c));
        c.req_seq = seq;
        c.op = op;
        if (args)
                memcpy(c.arg, args, sizeof(c.arg));
        c.req_seq_check = ~seq;
        /* validated: control_offset + 64 <= VGPU_PAYLOAD, so the block lies
         * inside page 0 and one MEMWRITE covers it. */
        *ret_gpa = p->gpa[0] + VGPU_TAG_SIZE + h.control_offset;
        *ret_block = c;
        *ret_req_seq = seq;
        p->last_req_seq = seq;
        return 0;
}

int vgpu_perception_control_ack(struct vgpu_perception *p, uint32_t req_seq, int32_t *ret_result)
{
        struct vgpu_header h;
        uint64_t nonce;
        int r;

        if (!p || req_seq == 0)
                return -EINVAL;
        nonce = p->nonce;
        if (!p->ready)
                return -ESTALE;
        if ((r = vgpup_read_header(p, &h)) < 0)
                return r == -ENOENT ? -ESTALE : r;
        if (h.nonce != nonce)
                return -ESTALE;
        if (h.ctrl_ack_seq != req_seq)
                return 0;
        if (ret_result)
                *ret_result = h.ctrl_ack_result;
        return 1;
}
