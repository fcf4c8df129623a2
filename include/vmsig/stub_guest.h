/* SPDX-License-Identifier: MIT */
#ifndef VMSIG_STUB_GUEST_H
#define VMSIG_STUB_GUEST_H

/* What a control may rely on in the synthetic guest of the memctx stub
 * (vmsig_memctx_stub_ops): a NUL-terminated kernel banner, mapped at
 * VMSIG_STUB_BANNER_VA under the memctx's kernel_root and stored at
 * guest-physical VMSIG_STUB_BANNER_GPA. Demos and tests read and write it
 * to show the memctx and MEMWRITE paths without a VM. */

#include <stdint.h>

#define VMSIG_STUB_BANNER     "vmsig synthetic guest 1.0"
#define VMSIG_STUB_BANNER_VA  UINT64_C(0xffffffff80200100)
#define VMSIG_STUB_BANNER_GPA UINT64_C(0x200100)

#endif
