/* SPDX-License-Identifier: MIT */
/* The seam registry (registry.h) and the public adapter factories, which
 * answer from it. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <vmsig/bus.h>

#include "adapters/registry.h"

#ifdef VMSIG_ARMED
#define QEMU(desc) (&(desc))
#else
#define QEMU(desc) NULL /* a stub-only build (VMSIG_ARMED=OFF) */
#endif

static const struct driver_def drivers[VM_DRIVER_COUNT] = {
    /* ram= may be absent: memctx asks QEMU (qom-get mem-path), and RAM with
     * no path comes from QEMU's fd table (ram_proc.h) */
    [VM_DRIVER_QEMU] = {.name = "qemu", .needs_qmp = true},
    [VM_DRIVER_STUB] = {.name = "stub"},
    [VM_DRIVER_LIBVIRT] = {.name = "libvirt", .needs_qmp = true, .daemon_only = true},
};

static const struct seam_def seams[] = {
    {.seam = VMSIG_SRC_MEMCTX,
     .name = "memctx",
     .options_key = "memctx_options",
     .caps = VMSIG_CAP_MEMCTX | VMSIG_CAP_MEMWRITE,
     .adapter = {[VM_DRIVER_QEMU] = QEMU(memctx_qemu_adapter),
                 [VM_DRIVER_STUB] = &memctx_stub_adapter,
                 [VM_DRIVER_LIBVIRT] = QEMU(memctx_libvirt_adapter)}},
    {.seam = VMSIG_SRC_INPUT,
     .name = "input",
     .options_key = "input_options",
     .caps = VMSIG_CAP_INPUT,
     .adapter = {[VM_DRIVER_QEMU] = QEMU(input_qemu_adapter),
                 [VM_DRIVER_STUB] = &input_stub_adapter,
                 [VM_DRIVER_LIBVIRT] = QEMU(input_qemu_adapter)}},
    {.seam = VMSIG_SRC_VMHOST,
     .name = "vmhost",
     .options_key = "vmhost_options",
     .caps = VMSIG_CAP_STATUS | VMSIG_CAP_POWER,
     .adapter = {[VM_DRIVER_QEMU] = QEMU(vmhost_qemu_adapter),
                 [VM_DRIVER_STUB] = &vmhost_stub_adapter,
                 [VM_DRIVER_LIBVIRT] = QEMU(vmhost_qemu_adapter)}},
};

#define N_SEAMS (sizeof(seams) / sizeof(seams[0]))

const struct seam_def *seam_registry(size_t *ret_n)
{
        *ret_n = N_SEAMS;
        return seams;
}

const struct seam_def *seam_find(uint8_t seam)
{
        for (size_t i = 0; i < N_SEAMS; i++)
                if (seams[i].seam == seam)
                        return &seams[i];
        return NULL;
}

const struct driver_def *driver_get(unsigned driver)
{
        return driver < VM_DRIVER_COUNT ? &drivers[driver] : NULL;
}

int driver_find(const char *name, size_t len)
{
        for (unsigned i = 0; i < VM_DRIVER_COUNT; i++)
                if (strlen(drivers[i].name) == len && memcmp(drivers[i].name, name, len) == 0)
                        return (int)i;
        return -ENOENT;
}

const struct adapter_desc *adapter_find(unsigned driver, uint8_t seam)
{
        const struct seam_def *s = seam_find(seam);

        return s && driver < VM_DRIVER_COUNT ? s->adapter[driver] : NULL;
}

static const struct vmsig_adapter_ops *ops_of(unsigned driver, uint8_t seam)
{
        const struct adapter_desc *a = adapter_find(driver, seam);

        return a ? a->ops : NULL;
}

const struct vmsig_adapter_ops *vmsig_memctx_ops(void)
{
        return ops_of(VM_DRIVER_QEMU, VMSIG_SRC_MEMCTX);
}

const struct vmsig_adapter_ops *vmsig_input_ops(void)
{
        return ops_of(VM_DRIVER_QEMU, VMSIG_SRC_INPUT);
}

const struct vmsig_adapter_ops *vmsig_vmhost_ops(void)
{
        return ops_of(VM_DRIVER_QEMU, VMSIG_SRC_VMHOST);
}

const struct vmsig_adapter_ops *vmsig_memctx_stub_ops(void)
{
        return ops_of(VM_DRIVER_STUB, VMSIG_SRC_MEMCTX);
}

const struct vmsig_adapter_ops *vmsig_input_stub_ops(void)
{
        return ops_of(VM_DRIVER_STUB, VMSIG_SRC_INPUT);
}

const struct vmsig_adapter_ops *vmsig_vmhost_stub_ops(void)
{
        return ops_of(VM_DRIVER_STUB, VMSIG_SRC_VMHOST);
}

const char *vmsig_seams_format(uint8_t mask, const char *sep, const char *none, char *buf, size_t len)
{
        size_t o = 0;

        if (!buf || !len)
                return buf;
        buf[0] = '\0';
        if (!mask) {
                snprintf(buf, len, "%s", none ? none : "");
                return buf;
        }
        for (size_t i = 0; i < N_SEAMS; i++) {
                if (!(mask & (1u << seams[i].seam)))
                        continue;
                int n = snprintf(buf + o, len - o, "%s%s", o ? (sep ? sep : "") : "", seams[i].name);
                if (n < 0 || (size_t)n >= len - o)
                        break;
                o += (size_t)n;
        }
        return buf;
}
