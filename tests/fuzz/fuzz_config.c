/* SPDX-License-Identifier: MIT */
/* config_parse_string on arbitrary bytes (no NSS lookups: names count as
 * unknown, so runs are deterministic and fast). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct config *c = NULL;
        char err[512];
        char *buf = malloc(size ? size : 1);
        int r;

        if (!buf)
                return 0;
        if (size)
                memcpy(buf, data, size);
        err[0] = '\0';
        r = config_parse_string(buf, size, "fuzz.conf", CONFIG_NO_NSS, &c, err, sizeof(err));
        if (r == 0) {
                uint32_t caps;
                gid_t g[2] = {1, 2};
                if (!c || c->socket[0] != '/' || c->trigger_dir[0] != '/' || c->socket_mode > 0777 ||
                    c->limits.queue_soft_bytes > c->limits.queue_bytes)
                        abort();
                (void)config_admit(c, 1000, 1000, g, 2, &caps);
                config_free(c);
        } else if (r > 0 || c || !err[0] || strchr(err, '\n')) {
                abort();
        }
        free(buf);
        return 0;
}
