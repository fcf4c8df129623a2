/* SPDX-License-Identifier: MIT */
/* "key=value,key=value" adapter options: small enough to parse in place. */
#include <ctype.h>
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

int vmsig_option_parse_u64(const char *text, uint64_t *ret)
{
        const char *digits = text;
        int base = 10;
        char *end;

        if (!text || strlen(text) > 31)
                return -EINVAL;
        if (text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) {
                digits = text + 2;
                base = 16;
        }
        /* strtoull alone would take blanks, a sign, and 0-prefixed octal. */
        if (!(base == 16 ? isxdigit((unsigned char)digits[0]) : isdigit((unsigned char)digits[0])))
                return -EINVAL;
        errno = 0;
        unsigned long long v = strtoull(digits, &end, base);
        if (errno || *end)
                return -EINVAL;
        *ret = v;
        return 0;
}

int vmsig_option_u64(const char *options, const char *key, uint64_t def, uint64_t *ret)
{
        char buf[32];
        int r = vmsig_option_get(options, key, buf, sizeof(buf));

        if (r == -ENOENT) {
                *ret = def;
                return 0;
        }
        if (r < 0)
                return r;
        return vmsig_option_parse_u64(buf, ret);
}
