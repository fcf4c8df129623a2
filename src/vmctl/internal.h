/* SPDX-License-Identifier: MIT */
/* Private to src/vmctl. */
#ifndef VMSIG_VMCTL_INTERNAL_H
#define VMSIG_VMCTL_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "vmctl/vmctl.h"

#define VMCTL_PATH_MAX 108   /* sun_path */
#define VMCTL_KEY_LAST 0x2bf /* highest code QEMU input-linux treats as a key */

struct vmctl {
        enum vmctl_backend backend;
        vmctl_done_fn done;
        void *userdata;
        struct vmctl_qmp_transport qmp;
        int kbd_fd, ptr_fd; /* uinput */
        char kbd_node[64], ptr_node[64];
        uint64_t held[(VMCTL_KEY_MAX + 64) / 64]; /* keys and buttons believed down */
};

void vmctl_msg(char *msg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int vmctl_uinput_submit(struct vmctl *vm, const struct vmctl_cmd *c, char *msg);
int vmctl_uinput_reset(struct vmctl *vm);

#endif
