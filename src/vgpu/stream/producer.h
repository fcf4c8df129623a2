/* SPDX-License-Identifier: MIT */
#ifndef VGPU_STREAM_PRODUCER_H
#define VGPU_STREAM_PRODUCER_H

/* The portable vgpu-stream program: options, the publish loop, control
 * requests, the --dump / --control-file debug paths. Each OS main passes the
 * sources it has and a stop flag its signal handler sets. */

#include <signal.h>
#include <stddef.h>

#include "source.h"

int vgpu_producer_main(int argc, char **argv, const struct vgpu_source_kind *kinds, size_t nkinds,
                       volatile sig_atomic_t *stop);

#endif
