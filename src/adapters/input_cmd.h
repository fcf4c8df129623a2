/* SPDX-License-Identifier: MIT */
#ifndef VMSIG_ADAPTERS_INPUT_CMD_H
#define VMSIG_ADAPTERS_INPUT_CMD_H

/* A DOWN input event as a vmctl command, checked by vmctl's rules: the one
 * decoder the real input adapter and its stub share, so the stub accepts
 * exactly what a real VM would. */

#include <errno.h>
#include <string.h>

#include <vmsig/adapter.h>
#include <vmsig/event.h>

#include "vmctl/vmctl.h"

/* 0 with *c filled and valid; VMSIG_SUBMIT_NOT_MINE (not an input kind);
 * -EINVAL (malformed body, or a payload) or vmctl_validate's error, with
 * msg (VMCTL_MSG_MAX, optional) saying why. */
static inline int input_cmd_decode(const struct vmsig_event *ev, const void *payload, struct vmctl_cmd *c,
                                   char *msg)
{
        struct vmsig_input_body in;

        if (vmsig_kind_seam(ev->hdr.kind) != VMSIG_SRC_INPUT)
                return VMSIG_SUBMIT_NOT_MINE;
        if (ev->hdr.body_len != sizeof(in) || payload)
                return -EINVAL;
        memcpy(&in, ev->body, sizeof(in));
        if (in.flags)
                return -EINVAL;
        switch (ev->hdr.kind) {
        case VMSIG_EV_MOVE_ABS:
                c->op = VMCTL_MOVE_ABS;
                break;
        case VMSIG_EV_MOVE_REL:
                c->op = VMCTL_MOVE_REL;
                break;
        case VMSIG_EV_BUTTON:
                c->op = VMCTL_BUTTON; /* VMSIG_BTN_* == VMCTL_BTN_* */
                break;
        case VMSIG_EV_KEY:
                c->op = VMCTL_KEY;
                break;
        case VMSIG_EV_WHEEL:
                c->op = VMCTL_WHEEL;
                break;
        default:
                return VMSIG_SUBMIT_NOT_MINE;
        }
        c->x = in.x;
        c->y = in.y;
        c->code = in.code;
        c->value = in.value;
        return vmctl_validate(c, msg);
}

#endif
