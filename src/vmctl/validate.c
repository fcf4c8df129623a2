/* SPDX-License-Identifier: MIT */
/* vmctl's input rules, apart from the driver: no libevdev, no json-c, so the
 * input stub (built into every libvmsig) checks commands with the very rules
 * the real input path applies. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

#include <linux/input-event-codes.h>

#include "vmctl/internal.h"

void vmctl_msg(char *msg, const char *fmt, ...)
{
        va_list ap;

        if (!msg)
                return;
        va_start(ap, fmt);
        vsnprintf(msg, VMCTL_MSG_MAX, fmt, ap);
        va_end(ap);
}

int vmctl_validate(const struct vmctl_cmd *c, char *msg)
{
        switch (c->op) {
        case VMCTL_MOVE_ABS:
                if (c->x < 0 || c->x > VMCTL_ABS_MAX || c->y < 0 || c->y > VMCTL_ABS_MAX) {
                        vmctl_msg(msg, "absolute position (%d, %d) outside 0..%d", c->x, c->y, VMCTL_ABS_MAX);
                        return -ERANGE;
                }
                return 0;
        case VMCTL_MOVE_REL:
                return 0;
        case VMCTL_WHEEL:
                if (c->x < -VMCTL_WHEEL_MAX || c->x > VMCTL_WHEEL_MAX || c->y < -VMCTL_WHEEL_MAX ||
                    c->y > VMCTL_WHEEL_MAX) {
                        vmctl_msg(msg, "wheel (%d, %d) exceeds %d clicks per command", c->x, c->y,
                                  VMCTL_WHEEL_MAX);
                        return -ERANGE;
                }
                return 0;
        case VMCTL_BUTTON:
                if (c->code < VMCTL_BTN_LEFT || c->code > VMCTL_BTN_MIDDLE) {
                        vmctl_msg(msg, "button %u is not left (1), right (2) or middle (3)", c->code);
                        return -EINVAL;
                }
                break;
        case VMCTL_KEY:
                if (c->code < 1 || c->code > VMCTL_KEY_MAX) {
                        vmctl_msg(msg, "key code %u outside 1..%d", c->code, VMCTL_KEY_MAX);
                        return -EINVAL;
                }
                /* QEMU input-linux takes codes < 0x100 and 0x160..0x2bf as keys;
                 * 0x100..0x15f are buttons (BTN_*), the rest it ignores. */
                if (c->code >= BTN_MISC && c->code < KEY_OK) {
                        vmctl_msg(msg, "code 0x%x is a button, not a key: use BUTTON", c->code);
                        return -EOPNOTSUPP;
                }
                if (c->code > VMCTL_KEY_LAST) {
                        vmctl_msg(msg, "key code 0x%x is beyond what QEMU forwards (0x%x)", c->code,
                                  VMCTL_KEY_LAST);
                        return -EOPNOTSUPP;
                }
                break;
        default:
                vmctl_msg(msg, "unknown input op %u", c->op);
                return -EINVAL;
        }
        if (c->value != 0 && c->value != 1) {
                vmctl_msg(msg, "value %d: 1 press, 0 release", c->value);
                return -EINVAL;
        }
        return 0;
}
