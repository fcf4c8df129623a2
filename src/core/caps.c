/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <vmsig/bus.h>

static const struct {
        uint32_t cap;
        const char *name;
} cap_names[] = {
    {VMSIG_CAP_ROSTER, "roster"}, {VMSIG_CAP_MEMCTX, "memctx"}, {VMSIG_CAP_STATUS, "status"},
    {VMSIG_CAP_INPUT, "input"},   {VMSIG_CAP_POWER, "power"},   {VMSIG_CAP_MEMWRITE, "memwrite"},
};
#define N_CAPS (sizeof(cap_names) / sizeof(cap_names[0]))

const char *vmsig_cap_name(uint32_t single_cap)
{
        for (size_t i = 0; i < N_CAPS; i++)
                if (cap_names[i].cap == single_cap)
                        return cap_names[i].name;
        return "?";
}

int vmsig_caps_parse(const char *s, uint32_t *ret)
{
        uint32_t caps = 0;

        if (!s)
                return -EINVAL;
        while (*s) {
                size_t n;
                while (*s == ' ' || *s == '\t' || *s == ',')
                        s++;
                n = strcspn(s, ", \t");
                if (n == 0)
                        break;
                if (n == 3 && strncasecmp(s, "all", 3) == 0) {
                        caps |= VMSIG_CAP_ALL;
                } else if (n == 4 && strncasecmp(s, "none", 4) == 0) {
                        /* explicit nothing */
                } else {
                        size_t i;
                        for (i = 0; i < N_CAPS; i++)
                                if (strlen(cap_names[i].name) == n &&
                                    strncasecmp(s, cap_names[i].name, n) == 0)
                                        break;
                        if (i == N_CAPS)
                                return -EINVAL;
                        caps |= cap_names[i].cap;
                }
                s += n;
        }
        *ret = caps;
        return 0;
}

char *vmsig_caps_format(uint32_t caps, char *buf, size_t len)
{
        size_t off = 0;

        if (!len)
                return buf;
        buf[0] = '\0';
        for (size_t i = 0; i < N_CAPS; i++) {
                if (!(caps & cap_names[i].cap))
                        continue;
                int n = snprintf(buf + off, len - off, "%s%s", off ? "," : "", cap_names[i].name);
                if (n < 0 || (size_t)n >= len - off)
                        break;
                off += (size_t)n;
        }
        if (!off)
                snprintf(buf, len, "none");
        return buf;
}
