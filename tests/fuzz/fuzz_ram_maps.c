/* SPDX-License-Identifier: MIT */
/* One /proc/<pid>/maps line through ram_proc_maps_line (src/adapters/
 * ram_proc.c). The kernel writes the fields it parses, but the path at the
 * end is a name the QEMU user chose. Checked on every input (abort() on a
 * miss): a line is accepted only with a shared mapping ('s' as the fourth
 * permission character) of a non-zero inode, and parsing never reads past
 * the line. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/ram_proc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char *line = malloc(size + 1);
        unsigned maj = 0, min = 0;
        uint64_t ino = 0;

        if (!line)
                return 0;
        memcpy(line, data, size);
        line[size] = '\0';
        if (ram_proc_maps_line(line, &maj, &min, &ino) == 0) {
                const char *sp = strchr(line, ' ');
                while (sp && *sp == ' ')
                        sp++;
                if (!sp || strlen(sp) < 4 || sp[3] != 's' || ino == 0)
                        abort();
        }
        free(line);
        return 0;
}
