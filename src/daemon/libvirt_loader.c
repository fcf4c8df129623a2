/* SPDX-License-Identifier: MIT */
/* The libvirt driver's calls (libvirt_driver.h), forwarded to the module
 * (libvirt_module.h), which is loaded on the first lv_driver_new: with
 * libvirt_uri = none, libvirt is never mapped. */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "daemon/libvirt_module.h"

static const struct lv_module *g_mod;

/* Next to the running vmsigd first (a build tree), then the installed
 * module directory. Never a path from the environment: vmsigd runs as
 * root. The module stays loaded (libvirt keeps threads and handlers). */
static int module_load(char *why, size_t len)
{
        char exe[PATH_MAX], path[PATH_MAX + sizeof(LV_MODULE_FILE)];
        const char *dirs[2] = {NULL, VMSIGD_MODULE_DIR};
        ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        char *slash;

        if (n > 0) {
                exe[n] = '\0';
                slash = strrchr(exe, '/');
                if (slash) {
                        *slash = '\0';
                        dirs[0] = exe;
                }
        }
        snprintf(why, len, "no %s in %s%s%s (is the vmsig package complete?)", LV_MODULE_FILE,
                 VMSIGD_MODULE_DIR, dirs[0] ? " or " : "", dirs[0] ? dirs[0] : "");
        for (int i = 0; i < 2; i++) {
                if (!dirs[i] || (i == 1 && dirs[0] && !strcmp(dirs[0], dirs[1])))
                        continue;
                snprintf(path, sizeof(path), "%s/%s", dirs[i], LV_MODULE_FILE);
                if (access(path, F_OK) < 0)
                        continue;
                void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
                if (!h) {
                        snprintf(why, len, "%s", dlerror()); /* e.g. libvirt.so.0 not installed */
                        return -ELIBACC;
                }
                const struct lv_module *m = dlsym(h, LV_MODULE_SYMBOL);
                if (!m || !m->stamp || strcmp(m->stamp, LV_MODULE_STAMP) != 0) {
                        snprintf(why, len, "%s is from another build (%s, vmsigd is %s)", path,
                                 m && m->stamp ? m->stamp : "no stamp", LV_MODULE_STAMP);
                        dlclose(h);
                        return -ELIBBAD;
                }
                g_mod = m;
                return 0;
        }
        return -ENOENT;
}

int lv_driver_new(const char *uri, enum config_libvirt_attach attach, const char *proxy_dir,
                  const struct lv_driver_callbacks *cb, void *userdata, struct lv_driver **ret)
{
        char why[PATH_MAX + 128];
        int r;

        *ret = NULL;
        if (!g_mod) {
                r = module_load(why, sizeof(why));
                if (r < 0) {
                        if (cb && cb->log) {
                                char msg[sizeof(why) + 64];
                                snprintf(msg, sizeof(msg), "libvirt driver module not loaded: %s", why);
                                cb->log(LOG_ERR, msg, userdata);
                        }
                        return r;
                }
        }
        return g_mod->driver_new(uri, attach, proxy_dir, cb, userdata, ret);
}

int lv_driver_fd(const struct lv_driver *d)
{
        return g_mod->driver_fd(d);
}

void lv_driver_process(struct lv_driver *d)
{
        g_mod->driver_process(d);
}

struct lv_driver *lv_driver_free(struct lv_driver *d)
{
        return d && g_mod ? g_mod->driver_free(d) : NULL;
}
