/* SPDX-License-Identifier: MIT */
/* "key=value,key=value" adapter options: small enough to parse in place. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <vmsig/adapter.h>

int vmsig_option_get(const char *options, const char *key, char *buf, size_t buflen)
{
        size_t klen;

        if (!options || !key || !*key)
                return -ENOENT;
        klen = strlen(key);
        for (const char *p = options; *p;) {
                const char *end = strchrnul(p, ',');
                const char *eq = memchr(p, '=', (size_t)(end - p));
                size_t nlen = eq ? (size_t)(eq - p) : (size_t)(end - p);

                if (nlen == klen && memcmp(p, key, klen) == 0) {
                        const char *v = eq ? eq + 1 : end;
                        size_t vlen = (size_t)(end - v);
                        if (!buf)
                                return 0;
                        if (vlen + 1 > buflen)
                                return -ENAMETOOLONG;
                        memcpy(buf, v, vlen);
                        buf[vlen] = '\0';
                        return 0;
                }
                p = *end ? end + 1 : end;
        }
        return -ENOENT;
}

int vmsig_option_u64(const char *options, const char *key, uint64_t def, uint64_t *ret)
{
        char buf[32], *end;
        int r = vmsig_option_get(options, key, buf, sizeof(buf));

        if (r == -ENOENT) {
                *ret = def;
                return 0;
        }
        if (r < 0)
                return r;
        if (!buf[0] || buf[0] == '-')
                return -EINVAL;
        errno = 0;
        unsigned long long v = strtoull(buf, &end, 0);
        if (errno || *end)
                return -EINVAL;
        *ret = v;
        return 0;
}
