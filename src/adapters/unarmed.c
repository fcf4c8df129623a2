/* SPDX-License-Identifier: MIT */
/* Factories of the real adapters this build does not have (a stub-only
 * build, VMSIG_ARMED=OFF, or an adapter not written yet) answer NULL instead
 * of failing to link; callers report "not available in this build". */
#include <stddef.h>

#include <vmsig/adapter.h>

#ifndef VMSIG_HAVE_MEMCTX_ADAPTER
const struct vmsig_adapter_ops *vmsig_memctx_ops(void)
{
        return NULL;
}
#endif

#ifndef VMSIG_HAVE_INPUT_ADAPTER
const struct vmsig_adapter_ops *vmsig_input_ops(void)
{
        return NULL;
}
#endif

#ifndef VMSIG_HAVE_VMHOST_ADAPTER
const struct vmsig_adapter_ops *vmsig_vmhost_ops(void)
{
        return NULL;
}
#endif
