/* SPDX-License-Identifier: MIT */
#ifndef VMIE_TEST_IMG_H
#define VMIE_TEST_IMG_H

/* Synthetic guest RAM for the vmie tests: a file image plus a layout, and a
 * builder that writes real x86-64 page tables into it. Everything is
 * addressed by GPA and translated through the layout, so split layouts
 * (high RAM at 4 GiB) work the same way. */

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <vmie/vmie.h>

#define P_P      (1ull << 0)
#define P_RW     (1ull << 1)
#define P_US     (1ull << 2)
#define P_PS     (1ull << 7)
#define P_PAT4K  (1ull << 7)
#define P_PATBIG (1ull << 12)
#define P_NX     (1ull << 63)

#define KIB 1024ull
#define MIB (1024ull * KIB)
#define GIB (1024ull * MIB)

struct img {
        uint8_t *buf; /* file contents */
        size_t size;
        struct vmie_range r[8];
        size_t n;
        uint64_t next; /* bump allocator for page-table pages (a GPA) */
        unsigned levels;
};

static inline void img_init(struct img *im, size_t size, unsigned levels)
{
        memset(im, 0, sizeof(*im));
        im->buf = calloc(1, size);
        im->size = size;
        im->levels = levels;
}

static inline void img_range(struct img *im, uint64_t gpa, uint64_t len, uint64_t off)
{
        im->r[im->n++] = (struct vmie_range){.gpa = gpa, .len = len, .file_offset = off};
}

static inline void img_fini(struct img *im)
{
        free(im->buf);
        im->buf = NULL;
}

/* Host pointer for a GPA; aborts the test run on a hole (a builder bug). */
static inline uint8_t *img_ptr(struct img *im, uint64_t gpa)
{
        for (size_t i = 0; i < im->n; i++)
                if (gpa >= im->r[i].gpa && gpa - im->r[i].gpa < im->r[i].len)
                        return im->buf + im->r[i].file_offset + (gpa - im->r[i].gpa);
        abort();
}

static inline uint64_t img_page(struct img *im)
{
        uint64_t g = im->next;
        im->next += 4096;
        memset(img_ptr(im, g), 0, 4096);
        return g;
}

static inline uint64_t img_get64(struct img *im, uint64_t gpa)
{
        uint64_t v;
        memcpy(&v, img_ptr(im, gpa), 8);
        return v;
}

static inline void img_put64(struct img *im, uint64_t gpa, uint64_t v)
{
        memcpy(img_ptr(im, gpa), &v, 8);
}

#define ADDR(e) ((e)&0x000ffffffffff000ull)

/* GPA of the entry for va at level lvl (levels..1), creating intermediate
 * tables (P|RW|US) on the way. */
static inline uint64_t img_entry(struct img *im, uint64_t root, uint64_t va, unsigned lvl)
{
        uint64_t table = root;
        for (unsigned l = im->levels;; l--) {
                uint64_t ea = table + ((va >> (12 + 9 * (l - 1))) & 0x1ff) * 8;
                if (l == lvl)
                        return ea;
                uint64_t e = img_get64(im, ea);
                if (!(e & P_P)) {
                        e = img_page(im) | P_P | P_RW | P_US;
                        img_put64(im, ea, e);
                }
                table = ADDR(e);
        }
}

/* Same, but intermediate tables are created supervisor-only (P|RW), as a
 * kernel builds its half. */
static inline uint64_t img_entry_k(struct img *im, uint64_t root, uint64_t va, unsigned lvl)
{
        uint64_t table = root;
        for (unsigned l = im->levels;; l--) {
                uint64_t ea = table + ((va >> (12 + 9 * (l - 1))) & 0x1ff) * 8;
                if (l == lvl)
                        return ea;
                uint64_t e = img_get64(im, ea);
                if (!(e & P_P)) {
                        e = img_page(im) | P_P | P_RW;
                        img_put64(im, ea, e);
                }
                table = ADDR(e);
        }
}

/* Kernel mapping: supervisor intermediates, leaf bits as given. */
static inline void img_map_k(struct img *im, uint64_t root, uint64_t va, uint64_t gpa, uint64_t size,
                             uint64_t bits)
{
        unsigned lvl = size == GIB ? 3 : size == 2 * MIB ? 2 : 1;
        uint64_t e = gpa | bits | P_P | (lvl > 1 ? P_PS : 0);
        img_put64(im, img_entry_k(im, root, va, lvl), e);
}

/* Map va -> gpa with a leaf of size 4K / 2M / 1G and the given leaf bits. */
static inline void img_map(struct img *im, uint64_t root, uint64_t va, uint64_t gpa, uint64_t size,
                           uint64_t bits)
{
        unsigned lvl = size == GIB ? 3 : size == 2 * MIB ? 2 : 1;
        uint64_t e = gpa | bits | P_P | (lvl > 1 ? P_PS : 0);
        img_put64(im, img_entry(im, root, va, lvl), e);
}

/* The image as a memfd; ret_ram opened from it (fd stays open for RW use). */
static inline int img_memfd(struct img *im)
{
        int fd = memfd_create("vmie-test", MFD_CLOEXEC);
        if (fd < 0)
                return -errno;
        size_t off = 0;
        while (off < im->size) {
                ssize_t k = write(fd, im->buf + off, im->size - off);
                if (k <= 0) {
                        close(fd);
                        return -EIO;
                }
                off += (size_t)k;
        }
        return fd;
}

static inline int img_open(struct img *im, unsigned flags, int *ret_fd, struct vmie_ram **ret)
{
        int fd = img_memfd(im);
        if (fd < 0)
                return fd;
        int r = vmie_ram_open_fd(fd, im->r, im->n, flags, ret);
        if (ret_fd && r == 0)
                *ret_fd = fd;
        else
                close(fd);
        return r;
}

#endif
