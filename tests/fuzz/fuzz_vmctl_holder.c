/* SPDX-License-Identifier: MIT */
/* vmctl_holder_parse on arbitrary bytes: the uinput holder's handshake line
 * arrives over a socket, so it is untrusted. 0 or -EPROTO, NUL-terminated
 * printable node names that fit, never a read past len. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#ifdef VMCTL_ABSENT
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        return 0;
}
#else
#include "vmctl/vmctl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char kbd[64], ptr[64];
        /* An exact-size heap copy so ASan sees any overread. */
        char *buf = malloc(size ? size : 1);
        int r;

        if (!buf)
                return 0;
        if (size)
                memcpy(buf, data, size);
        r = vmctl_holder_parse(buf, size, kbd, ptr, sizeof(kbd));
        if (r == 0) {
                if (strnlen(kbd, sizeof(kbd)) == sizeof(kbd) || strnlen(ptr, sizeof(ptr)) == sizeof(ptr))
                        abort();
                for (const char *p = kbd; *p; p++)
                        if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e)
                                abort();
        } else if (r != -EPROTO) {
                abort();
        }
        free(buf);
        return 0;
}
#endif
