/* SPDX-License-Identifier: MIT */
/* vmsigctl input: pointer, buttons, keys and text, under the input lease. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tools/ctl_common.h"
#include "tools/keymap.h"

static int input_send(struct ctl *ctl, uint32_t ep, uint16_t kind, int32_t x, int32_t y, uint32_t code,
                      int32_t value, const char *vmname)
{
        struct vmsig_input_body b = {.x = x, .y = y, .code = code, .value = value};
        struct vmsig_event ev;
        struct vmsig_ack_body ack;
        int r;

        vmsig_event_init(&ev, kind, ep, VMSIG_SRC_INPUT);
        vmsig_event_set_body(&ev, &b, sizeof(b));
        if (ctl->ff)
                ev.hdr.flags |= VMSIG_F_FF;
        if ((r = ctl_send_and_wait(ctl, &ev, NULL, 0, &ack)))
                return r;
        if (!ctl->ff && ack.result < 0)
                return ctl_fail(ctl_exit_for(ack.result), "%s on '%s': %s", vmsig_kind_name(kind), vmname,
                                ESC(ack.msg));
        return 0;
}

static int parse_i32(const char *s, int32_t *ret)
{
        char *end;
        errno = 0;
        long v = strtol(s, &end, 0);
        if (errno || !*s || *end || v < INT32_MIN || v > INT32_MAX)
                return -EINVAL;
        *ret = (int32_t)v;
        return 0;
}

int ctl_cmd_input(struct ctl *ctl, int argc, char **argv)
{
        uint32_t ep;
        int32_t x, y;
        int r;

        if (argc < 2)
                return ctl_usage_error(ctl);
        const char *vm = argv[0], *what = argv[1];
        if ((r = ctl_resolve_vm(ctl, vm, &ep)) || (r = ctl_acquire(ctl, ep, VMSIG_LEASE_INPUT)))
                return r;
        if (!strcmp(what, "move") || !strcmp(what, "rel")) {
                if (argc != 4 || parse_i32(argv[2], &x) < 0 || parse_i32(argv[3], &y) < 0)
                        return ctl_usage_error(ctl);
                return input_send(ctl, ep, what[0] == 'm' ? VMSIG_EV_MOVE_ABS : VMSIG_EV_MOVE_REL, x, y, 0, 0,
                                  vm);
        }
        if (!strcmp(what, "click")) {
                uint32_t btn = VMSIG_BTN_LEFT;
                if (argc == 3)
                        btn = !strcmp(argv[2], "right")    ? VMSIG_BTN_RIGHT
                              : !strcmp(argv[2], "middle") ? VMSIG_BTN_MIDDLE
                              : !strcmp(argv[2], "left")   ? VMSIG_BTN_LEFT
                                                           : 0;
                if (!btn || argc > 3)
                        return ctl_fail(EXIT_USAGE, "click takes left, right or middle");
                if ((r = input_send(ctl, ep, VMSIG_EV_BUTTON, 0, 0, btn, 1, vm)))
                        return r;
                return input_send(ctl, ep, VMSIG_EV_BUTTON, 0, 0, btn, 0, vm);
        }
        if (!strcmp(what, "wheel")) {
                if (argc != 3 || parse_i32(argv[2], &y) < 0)
                        return ctl_usage_error(ctl);
                return input_send(ctl, ep, VMSIG_EV_WHEEL, 0, y, 0, 0, vm);
        }
        if (!strcmp(what, "key")) {
                /* key ctrl alt delete: press all in order, release in reverse */
                uint32_t codes[16];
                int n = argc - 2;
                if (n < 1 || n > 16)
                        return ctl_fail(EXIT_USAGE, "key takes 1..16 key names");
                for (int i = 0; i < n; i++)
                        if (!(codes[i] = keymap_by_name(argv[2 + i])))
                                return ctl_fail(EXIT_USAGE,
                                                "unknown key '%s' (e.g. a, enter, f5, leftctrl, KEY_A, 30)",
                                                argv[2 + i]);
                for (int i = 0; i < n; i++)
                        if ((r = input_send(ctl, ep, VMSIG_EV_KEY, 0, 0, codes[i], 1, vm))) {
                                /* a refused press (the grab toggle) must not
                                 * leave the keys before it held in the guest */
                                while (i-- > 0)
                                        (void)input_send(ctl, ep, VMSIG_EV_KEY, 0, 0, codes[i], 0, vm);
                                return r;
                        }
                for (int i = n - 1; i >= 0; i--)
                        if ((r = input_send(ctl, ep, VMSIG_EV_KEY, 0, 0, codes[i], 0, vm)))
                                return r;
                return 0;
        }
        if (!strcmp(what, "type")) {
                if (argc != 3)
                        return ctl_fail(EXIT_USAGE, "type takes one TEXT argument");
                for (const char *p = argv[2]; *p; p++) {
                        uint32_t code;
                        bool shift;
                        if (!keymap_by_char(*p, &code, &shift))
                                return ctl_fail(EXIT_USAGE, "cannot type character 0x%02x on a US layout",
                                                (unsigned char)*p);
                        if ((shift &&
                             (r = input_send(ctl, ep, VMSIG_EV_KEY, 0, 0, KEYMAP_LEFTSHIFT, 1, vm))) ||
                            (r = input_send(ctl, ep, VMSIG_EV_KEY, 0, 0, code, 1, vm)) ||
                            (r = input_send(ctl, ep, VMSIG_EV_KEY, 0, 0, code, 0, vm)) ||
                            (shift && (r = input_send(ctl, ep, VMSIG_EV_KEY, 0, 0, KEYMAP_LEFTSHIFT, 0, vm))))
                                return r;
                }
                return 0;
        }
        return ctl_fail(EXIT_USAGE, "unknown input action '%s'\nusage: vmsigctl %s %s", what, ctl->cmd->name,
                        ctl->cmd->usage);
}
