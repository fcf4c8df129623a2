/* SPDX-License-Identifier: MIT */
/* trigger_parse on arbitrary bytes: it must return 0 or a negative errno
 * with a one-line message, and never read past len. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/trigger.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct trigger t;
        char err[512];
        /* An exact-size heap copy so ASan sees any overread. */
        char *buf = malloc(size ? size : 1);
        int r;

        if (!buf)
                return 0;
        if (size)
                memcpy(buf, data, size);
        err[0] = '\0';
        r = trigger_parse(buf, size, "fuzz.vm", &t, err, sizeof(err));
        if (r == 0) {
                if (strnlen(t.name, sizeof(t.name)) == 0 ||
                    strnlen(t.name, sizeof(t.name)) > TRIGGER_NAME_MAX)
                        abort();
                if (t.driver != TRIGGER_DRIVER_QEMU && t.driver != TRIGGER_DRIVER_STUB)
                        abort(); /* the libvirt driver is vmsigd's own */
                if (t.driver == TRIGGER_DRIVER_QEMU && (t.qmp[0] != '/' || (t.ram[0] && t.ram[0] != '/')))
                        abort();
        } else if (r > 0 || !err[0] || strchr(err, '\n')) {
                abort();
        }
        free(buf);
        return 0;
}
