/* SPDX-License-Identifier: MIT */
/* "key=value,key=value" adapter options: small enough to parse in place. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vmsig/adapter.h>

#include "adapters/registry.h"

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

void text_printable(const char *in, size_t len, char *out, size_t outlen)
{
        static const char hex[] = "0123456789abcdef";
        size_t o = 0;

        if (!outlen)
                return;
        for (size_t i = 0; in && i < len; i++) {
                unsigned char c = (unsigned char)in[i];
                /* Bytes >= 0x80 too: UTF-8 encoded C1 controls (CSI) act on
                 * some terminals. The backslash is doubled so that an
                 * escape in the output is never ambiguous. */
                if (c == '\\') {
                        if (o + 2 >= outlen)
                                break;
                        out[o++] = '\\';
                        out[o++] = '\\';
                } else if (c < 0x20 || c >= 0x7f) {
                        if (o + 4 >= outlen)
                                break;
                        out[o++] = '\\';
                        out[o++] = 'x';
                        out[o++] = hex[c >> 4];
                        out[o++] = hex[c & 15];
                } else {
                        if (o + 1 >= outlen)
                                break;
                        out[o++] = (char)c;
                }
        }
        out[o] = '\0';
}

static int opt_fail(char *why, size_t whylen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int opt_fail(char *why, size_t whylen, const char *fmt, ...)
{
        va_list ap;

        if (why && whylen) {
                va_start(ap, fmt);
                vsnprintf(why, whylen, fmt, ap);
                va_end(ap);
        }
        return -EINVAL;
}

static bool word_index(const char *v, size_t n, const char *words, uint64_t *ret)
{
        uint64_t i = 0;

        for (const char *p = words; *p; i++) {
                const char *e = strchrnul(p, '|');
                if ((size_t)(e - p) == n && memcmp(p, v, n) == 0) {
                        *ret = i;
                        return true;
                }
                p = *e ? e + 1 : e;
        }
        return false;
}

static size_t spec_index(const struct opt_spec *spec, size_t n, const char *key, size_t klen)
{
        size_t i;

        for (i = 0; i < n; i++)
                if (strlen(spec[i].key) == klen && memcmp(spec[i].key, key, klen) == 0)
                        break;
        return i;
}

/* One value against its spec; *val gets what adapter_options_parse reports. */
static int check_value(const struct opt_spec *o, const char *v, size_t vn, uint64_t *val, char *why,
                       size_t whylen)
{
        char pv[1024], num[32];

        text_printable(v, vn, pv, sizeof(pv));
        switch (o->type) {
        case OPT_U64:
                if (vn >= sizeof(num))
                        return opt_fail(why, whylen, "%s: '%s' is not a number", o->key, pv);
                memcpy(num, v, vn);
                num[vn] = '\0';
                if (vmsig_option_parse_u64(num, val) < 0)
                        return opt_fail(why, whylen, "%s: '%s' is not a number", o->key, pv);
                if (*val < o->min || *val > o->max)
                        return opt_fail(why, whylen, "%s: %s is out of range (%llu..%llu)", o->key, pv,
                                        (unsigned long long)o->min, (unsigned long long)o->max);
                if (o->multiple && *val % o->multiple)
                        return opt_fail(why, whylen, "%s: %s is not a multiple of %llu", o->key, pv,
                                        (unsigned long long)o->multiple);
                return 0;
        case OPT_WORD:
                if (!word_index(v, vn, o->words, val))
                        return opt_fail(why, whylen, "%s: '%s' is not one of %s", o->key, pv, o->words);
                return 0;
        case OPT_ABS_PATH:
        case OPT_STRING:
                if (o->type == OPT_ABS_PATH && (vn == 0 || v[0] != '/'))
                        return opt_fail(why, whylen, "%s: '%s' is not an absolute path", o->key, pv);
                if (vn < o->min || vn > o->max)
                        return opt_fail(why, whylen, "%s: length must be %llu..%llu bytes", o->key,
                                        (unsigned long long)o->min, (unsigned long long)o->max);
                *val = 1;
                return 0;
        }
        return opt_fail(why, whylen, "%s: unknown option type", o->key);
}

int adapter_options_parse(const char *opts, const struct opt_spec *spec, size_t n, const char *what,
                          uint64_t *vals, char *why, size_t whylen)
{
        uint64_t val[OPT_SPEC_MAX];
        bool seen[OPT_SPEC_MAX] = {false};

        if (n > OPT_SPEC_MAX || (n && !spec))
                return opt_fail(why, whylen, "(options): too many options declared");
        for (size_t i = 0; i < n; i++)
                val[i] = spec[i].type == OPT_U64 || spec[i].type == OPT_WORD ? spec[i].def : 0;
        for (const char *p = opts; p && *p;) {
                const char *end = strchrnul(p, ',');
                const char *eq = memchr(p, '=', (size_t)(end - p));
                char pk[1024];

                if (!eq || eq == p) {
                        text_printable(p, (size_t)(end - p), pk, sizeof(pk));
                        return opt_fail(why, whylen, "'%s': expected key=value[,key=value...]", pk);
                }
                size_t i = spec_index(spec, n, p, (size_t)(eq - p));
                if (i == n) {
                        char known[512] = "";
                        for (size_t k = 0, o = 0; k < n && o < sizeof(known); k++)
                                o += (size_t)snprintf(known + o, sizeof(known) - o, "%s%s", k ? ", " : "",
                                                      spec[k].key);
                        text_printable(p, (size_t)(eq - p), pk, sizeof(pk));
                        return opt_fail(why, whylen, "%s: unknown option%s%s%s (known: %s)", pk,
                                        what ? " for the " : "", what ? what : "", what ? " adapter" : "",
                                        n ? known : "none");
                }
                if (seen[i])
                        return opt_fail(why, whylen, "%s: given twice", spec[i].key);
                seen[i] = true;
                int r = check_value(&spec[i], eq + 1, (size_t)(end - eq - 1), &val[i], why, whylen);
                if (r < 0)
                        return r;
                if (!*end)
                        break;
                p = end + 1;
                if (!*p) /* a trailing ',' is an empty item */
                        return opt_fail(why, whylen, "'': expected key=value[,key=value...]");
        }
        for (size_t i = 0; i < n; i++) {
                if (!spec[i].at_least)
                        continue;
                size_t j = spec_index(spec, n, spec[i].at_least, strlen(spec[i].at_least));
                if (j < n && val[i] < val[j])
                        return opt_fail(why, whylen, "%s (%llu) is below %s (%llu)", spec[i].key,
                                        (unsigned long long)val[i], spec[j].key, (unsigned long long)val[j]);
        }
        if (vals)
                memcpy(vals, val, n * sizeof(val[0]));
        return 0;
}
