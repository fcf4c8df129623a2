/* SPDX-License-Identifier: MIT */
#ifndef VMIE_VMIE_H
#define VMIE_VMIE_H

/* libvmie: VM introspection primitives for QEMU/KVM guests. Depends on
 * nothing but libc. Conventions: negative errno returns, ret_ output
 * parameters (written only on success unless documented), destructors accept
 * NULL and return NULL, no logging, no global state. */

#include <vmie/kroot.h>
#include <vmie/paging.h>
#include <vmie/ram.h>

#define VMIE_VERSION_MAJOR 0

#endif
