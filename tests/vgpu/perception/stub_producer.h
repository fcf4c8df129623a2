/* SPDX-License-Identifier: MIT */
#ifndef VGPU_TEST_STUB_PRODUCER_H
#define VGPU_TEST_STUB_PRODUCER_H

/* A minimal vgpu-stream writer for tests and the bench: it lays a region out
 * over deliberately scattered pages of a "guest RAM" buffer (which a test
 * wraps as a vmie_ram or shares as a memfd) and publishes pattern frames the
 * way include/vgpu/stream.h says, seqlock and checksum included. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <vgpu/stream.h>

struct stub_producer {
        uint8_t *ram;
        size_t ram_size;
        uint64_t gpa_base; /* guest-physical address of ram[0] */
        uint64_t nonce;
        uint32_t npages;
        uint64_t *page_off; /* page index -> byte offset in ram */
        uint32_t width, height, stride, nslots, slot_size;
        uint32_t geometry_gen;
        uint64_t seq;
        uint64_t heartbeat;
        uint32_t last_ctrl;
        uint8_t *frame; /* scratch for one frame */
        /* A published frame that lies about its checksum (test of VERIFY). */
        bool corrupt_checksum;
        /* Render the pattern once (frame 1) and republish those pixels: a
         * producer as fast as memory allows (bench). */
        bool reuse_pixels;
        bool rendered;
        bool csum_valid;
        uint64_t csum;
        uint32_t csum_len;
};

/* Lay out a region for up to max_w x max_h, nslots slots. The pages are
 * taken from a pseudo-random permutation of the buffer's pages seeded by
 * seed (never page 0 of the buffer, so a zero page stays around). */
int stub_producer_init(struct stub_producer *s, void *ram, size_t ram_size, uint64_t gpa_base, uint64_t nonce,
                       uint32_t max_w, uint32_t max_h, uint32_t nslots, uint32_t seed);
void stub_producer_fini(struct stub_producer *s);
/* Change the geometry (w, h <= the init maxima). */
void stub_producer_resize(struct stub_producer *s, uint32_t w, uint32_t h);
/* Publish frame seq+1 with the test pattern. Returns its seq. */
uint64_t stub_producer_publish(struct stub_producer *s);
void stub_producer_beat(struct stub_producer *s);
/* Handle a pending control request, as a producer's loop would: 1 if one
 * was acknowledged. */
int stub_producer_poll_control(struct stub_producer *s);
/* Zero every page of the region (the process exited, its pages reused). */
void stub_producer_wipe(struct stub_producer *s);

/* Byte i of the pixel (x, y) of frame seq: B, G, R, A. */
static inline void stub_pattern_pixel(uint64_t seq, uint32_t x, uint32_t y, uint8_t px[4])
{
        px[0] = (uint8_t)(x + seq);
        px[1] = (uint8_t)(y * 3 + seq);
        px[2] = (uint8_t)(x ^ y);
        px[3] = 0xff;
}

/* Pointer to logical offset loff (inside one page's payload). */
uint8_t *stub_producer_at(struct stub_producer *s, uint64_t loff);

#endif
