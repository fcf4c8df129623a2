/* SPDX-License-Identifier: MIT */
#ifndef VMSIGD_LIBVIRT_MODULE_H
#define VMSIGD_LIBVIRT_MODULE_H

/* The libvirt driver is built as a module (vmsigd-libvirt.so) that vmsigd
 * loads only when libvirt_uri is set: libvirt brings about sixty shared
 * libraries (gnutls, glib, libxml2, ICU ...), 10 MiB of resident pages, that
 * a host driving plain QEMU through trigger files should neither map nor
 * need installed. The module exports one symbol, LV_MODULE_SYMBOL, and
 * libvirt_loader.c forwards the lv_driver_* calls of libvirt_driver.h to it.
 * Both sides are built from the same tree; the stamp refuses a module from
 * another build (an older package's, say). */

#include "daemon/libvirt_driver.h"

#define LV_MODULE_FILE   "vmsigd-libvirt.so"
#define LV_MODULE_SYMBOL "vmsigd_libvirt_module"

struct lv_module {
        const char *stamp; /* LV_MODULE_STAMP of the build */
        int (*driver_new)(const char *uri, enum config_libvirt_attach attach, const char *proxy_dir,
                          const struct lv_driver_callbacks *cb, void *userdata, struct lv_driver **ret);
        int (*driver_fd)(const struct lv_driver *d);
        void (*driver_process)(struct lv_driver *d);
        struct lv_driver *(*driver_free)(struct lv_driver *d);
};

#endif
