/* SPDX-License-Identifier: MIT */
/* libFuzzer harness for the `info mtree -f` parser: arbitrary bytes into both
 * entry points, and the results must agree with each other. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "host/mtree.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        /* An exact-size copy so ASan flags any read past `size`. */
        char *text = malloc(size ? size : 1);
        if (!text)
                return 0;
        if (size)
                memcpy(text, data, size);

        struct mtree_layout l;
        uint64_t low = 0;
        char err[96];
        int rl = mtree_ram_layout(text, size, &l, err, sizeof(err));
        if (rl < 0 && (err[0] == '\0' || strnlen(err, sizeof(err)) == sizeof(err)))
                abort(); /* a failure must say why, NUL-terminated */
        int rs = mtree_low_split(text, size, &low, NULL, 0);

        /* The split fails only where the layout does, bar the piece limit. */
        if (rl == 0 && (rs != 0 || low != l.low))
                abort();
        if (rl < 0 && rl != -E2BIG && rs != rl)
                abort();
        if (rl == 0) {
                if (l.n_ranges == 0 || l.n_ranges > MTREE_MAX_RANGES || l.backend[0] == '\0')
                        abort();
                for (size_t i = 0; i < l.n_ranges; i++) {
                        const struct mtree_range *r = &l.ranges[i];
                        if (r->len == 0 || r->file_offset + r->len > l.file_end)
                                abort();
                        if (i && r->gpa < l.ranges[i - 1].gpa + l.ranges[i - 1].len)
                                abort();
                        /* below 4 GiB RAM is identity-mapped and under the split */
                        if (r->gpa < UINT64_C(0x100000000) &&
                            (r->file_offset != r->gpa || r->gpa + r->len > l.low))
                                abort();
                }
        }
        free(text);
        return 0;
}
