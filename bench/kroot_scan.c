/* SPDX-License-Identifier: MIT */
/* kroot_scan: how fast libvmie's Windows kernel-root discovery scans guest
 * RAM when there is no low stub (every page is looked at, candidates ranked
 * and validated), against reading the same bytes the cheapest way in the
 * same run:
 *   - mapped (the read-only mapping a control may use): scan vs memcpy of
 *     the same bytes out of the mapping, 1 MiB at a time;
 *   - safe mode (pread, what vmsigd uses): scan vs pread of the same bytes
 *     in 1 MiB reads.
 * Two images, each a memfd whose only kernel root sits near its end (a
 * PML4 with a self-reference, filler kernel entries, KUSER_SHARED_DATA and
 * a minimal ntoskrnl PE), all else zeros:
 *   - dense: --dense-mib (default 1024) MiB, every page allocated; both
 *     modes, best of 3;
 *   - sparse: --sparse-gib (default 16) GiB of holes, pread mode only (a
 *     pread of a tmpfs hole copies the zero page and allocates nothing; a
 *     mapping would allocate every page it touches), once: the scan of 16
 *     GiB end to end, at the cost of real copies but from a cache-hot
 *     source. The dense figures say what populated RAM costs.
 * Checks (INVALID otherwise): the root found is the one planted, by the
 * RAM scan (not a low stub), with ntoskrnl's base as its hint; the
 * baselines' checksums match the image's.
 *
 *   kroot_scan [--dense-mib N] [--sparse-gib N]
 *   kroot_scan --smoke   checks only, 64 MiB images, no figures */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <vmie/vmie.h>

#include "bench_check.h"

#define MIB      (UINT64_C(1) << 20)
#define GIB      (UINT64_C(1) << 30)
#define CHUNK    (1u << 20)
#define P        0x1ull
#define RW       0x2ull
#define NX       (1ull << 63)
#define SELF_IDX 0x1a3u
#define NT_BASE  0xfffff80654200000ull
#define KUSER_VA 0xfffff78000000000ull
#define ROUNDS   3

static bool g_smoke;

static double now_s(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- the planted kernel: written with pwrite into the file ---- */

struct plant {
        int fd;
        uint64_t next; /* bump allocator for pages (a GPA == file offset) */
};

static int put64(struct plant *p, uint64_t gpa, uint64_t v)
{
        return pwrite(p->fd, &v, 8, (off_t)gpa) == 8 ? 0 : -EIO;
}

static uint64_t get64(struct plant *p, uint64_t gpa)
{
        uint64_t v = 0;
        if (pread(p->fd, &v, 8, (off_t)gpa) != 8)
                return 0;
        return v;
}

static uint64_t page(struct plant *p)
{
        uint64_t g = p->next;
        p->next += 4096;
        return g; /* the file is zeros there */
}

/* Map one 4 KiB kernel page (supervisor tables). */
static int map4k(struct plant *p, uint64_t root, uint64_t va, uint64_t gpa, uint64_t bits)
{
        uint64_t table = root;
        for (int l = 4; l > 1; l--) {
                uint64_t ea = table + ((va >> (12 + 9 * (l - 1))) & 0x1ff) * 8, e = get64(p, ea);
                if (!(e & P)) {
                        e = page(p) | P | RW;
                        if (put64(p, ea, e) < 0)
                                return -EIO;
                }
                table = e & 0x000ffffffffff000ull;
        }
        return put64(p, table + ((va >> 12) & 0x1ff) * 8, gpa | bits | P);
}

/* Returns the root's GPA, or 0. */
static uint64_t plant_kernel(int fd, uint64_t size)
{
        struct plant p = {.fd = fd, .next = size - 256 * 1024};
        uint64_t root = page(&p);
        uint8_t h[4096] = {0}, e[4096] = {0};
        uint16_t u16;
        uint32_t u32;

        if (put64(&p, root + SELF_IDX * 8, root | 0x63 | NX) < 0)
                return 0;
        for (unsigned i = 0; i < 8; i++) /* filler kernel entries: empty tables */
                if (put64(&p, root + (256 + i) * 8, page(&p) | 0x63) < 0)
                        return 0;
        /* ntoskrnl: MZ, PE32+ AMD64 native, export name */
        uint64_t hdr = page(&p), exp = page(&p);
        h[0] = 'M', h[1] = 'Z';
        u32 = 0x80, memcpy(h + 0x3c, &u32, 4);
        memcpy(h + 0x80, "PE\0\0", 4);
        u16 = 0x8664, memcpy(h + 0x84, &u16, 2);
        u16 = 0xf0, memcpy(h + 0x84 + 16, &u16, 2);
        u16 = 0x22, memcpy(h + 0x84 + 18, &u16, 2);
        uint8_t *opt = h + 0x98;
        u16 = 0x20b, memcpy(opt, &u16, 2);
        u32 = 0x1000000, memcpy(opt + 56, &u32, 4);
        u16 = 1, memcpy(opt + 68, &u16, 2);
        u32 = 16, memcpy(opt + 108, &u32, 4);
        u32 = 0x1000, memcpy(opt + 112, &u32, 4);
        u32 = 0x1100, memcpy(e + 12, &u32, 4);
        strcpy((char *)e + 0x100, "ntoskrnl.exe");
        if (pwrite(fd, h, sizeof(h), (off_t)hdr) != sizeof(h) ||
            pwrite(fd, e, sizeof(e), (off_t)exp) != sizeof(e))
                return 0;
        if (map4k(&p, root, NT_BASE, hdr, RW | NX) < 0 || map4k(&p, root, NT_BASE + 0x1000, exp, NX) < 0 ||
            map4k(&p, root, KUSER_VA, page(&p), RW | NX) < 0)
                return 0;
        return root;
}

/* ---- measurements ---- */

struct img {
        const char *what;
        int fd;
        uint64_t size, root;
};

static int open_ram(const struct img *im, unsigned flags, struct vmie_ram **ret)
{
        struct vmie_range r = {.gpa = 0, .len = im->size, .file_offset = 0};
        return vmie_ram_open_fd(im->fd, &r, 1, flags, ret);
}

static int g_rounds = ROUNDS;

static double time_scan(const struct img *im, unsigned flags)
{
        struct vmie_ram *ram = NULL;
        struct vmie_kroot k;
        double best = 1e30;
        int r = open_ram(im, flags, &ram);

        if (r < 0) {
                invalid("%s: vmie_ram_open_fd: %s", im->what, strerror(-r));
                return 0;
        }
        if (!!(flags & VMIE_RAM_NO_MMAP) == !!vmie_ram_is_mapped(ram))
                invalid("%s: wanted %s, got the other", im->what, flags ? "pread" : "a mapping");
        for (int i = 0; i < g_rounds; i++) {
                double t0 = now_s();
                r = vmie_windows_kernel_root(ram, 0, &k);
                double t = now_s() - t0;
                if (r < 0) {
                        invalid("%s: no root found: %s", im->what, strerror(-r));
                        break;
                }
                if (k.root != im->root || k.method != VMIE_KROOT_SELFREF || k.kernel_hint != NT_BASE ||
                    k.selfref_index != SELF_IDX)
                        invalid("%s: found root 0x%" PRIx64 " method %u hint 0x%" PRIx64
                                ", planted 0x%" PRIx64,
                                im->what, k.root, k.method, k.kernel_hint, im->root);
                if (t < best)
                        best = t;
        }
        vmie_ram_free(ram);
        return best;
}

/* The baseline: the same bytes, memcpy'd out of a mapping or pread, 1 MiB
 * at a time; checksummed so neither is optimised away. */
static double time_read(const struct img *im, bool mapped, uint64_t *ret_sum)
{
        uint8_t *buf = malloc(CHUNK);
        const uint8_t *map = NULL;
        double best = 1e30;

        if (mapped) {
                map = mmap(NULL, im->size, PROT_READ, MAP_SHARED, im->fd, 0);
                if (map == MAP_FAILED) {
                        invalid("%s: mmap: %s", im->what, strerror(errno));
                        free(buf);
                        return 0;
                }
        }
        for (int i = 0; buf && i < g_rounds; i++) {
                uint64_t sum = 0;
                double t0 = now_s();
                for (uint64_t off = 0; off < im->size; off += CHUNK) {
                        if (mapped)
                                memcpy(buf, map + off, CHUNK);
                        else if (pread(im->fd, buf, CHUNK, (off_t)off) != CHUNK)
                                invalid("%s: short pread at %" PRIu64, im->what, off);
                        for (unsigned k = 0; k < CHUNK; k += 4096)
                                sum += buf[k + 0xd18]; /* one byte per page: the self-ref slot */
                }
                double t = now_s() - t0;
                *ret_sum = sum;
                if (t < best)
                        best = t;
        }
        if (map)
                munmap((void *)map, im->size);
        free(buf);
        return best;
}

static int make_image(struct img *im, const char *what, uint64_t size, bool sparse)
{
        memset(im, 0, sizeof(*im));
        im->what = what;
        im->size = size;
        im->fd = memfd_create("kroot-scan", MFD_CLOEXEC);
        if (im->fd < 0 || ftruncate(im->fd, (off_t)size) < 0) {
                invalid("%s: cannot create a %" PRIu64 " MiB file: %s", what, size / MIB, strerror(errno));
                return -1;
        }
        if (!sparse) {
                /* populate every page so the dense figure is real memory */
                int r = posix_fallocate(im->fd, 0, (off_t)size);
                if (r) {
                        invalid("%s: fallocate: %s", what, strerror(r));
                        return -1;
                }
        }
        im->root = plant_kernel(im->fd, size);
        if (!im->root) {
                invalid("%s: could not plant the kernel", what);
                return -1;
        }
        return 0;
}

static void report(const struct img *im, double scan_map, double copy, double scan_pread, double pread_t)
{
        double gb = (double)im->size / 1e9;
        printf("%s, %" PRIu64 " MiB:\n", im->what, im->size / MIB);
        if (scan_map > 0)
                printf("  mapped: scan %.3f s = %.2f GB/s; memcpy of the same bytes %.3f s = %.2f GB/s; "
                       "scan/memcpy "
                       "time %.2fx\n",
                       scan_map, gb / scan_map, copy, gb / copy, scan_map / copy);
        printf("  pread:  scan %.3f s = %.2f GB/s; pread of the same bytes %.3f s = %.2f GB/s; scan/pread "
               "time %.2fx\n",
               scan_pread, gb / scan_pread, pread_t, gb / pread_t, scan_pread / pread_t);
        if (scan_map > 0)
                printf("  16 GiB at these rates: mapped %.2f s, pread %.2f s\n",
                       scan_map * 16 * GIB / (double)im->size, scan_pread * 16 * GIB / (double)im->size);
        else if (im->size != 16 * GIB)
                printf("  16 GiB at this rate: pread %.2f s\n", scan_pread * 16 * GIB / (double)im->size);
}

int main(int argc, char **argv)
{
        uint64_t dense_mib = 1024, sparse_gib = 16;

        for (int i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "--smoke")) {
                        g_smoke = true;
                } else if (!strcmp(argv[i], "--dense-mib") && i + 1 < argc) {
                        dense_mib = strtoull(argv[++i], NULL, 0);
                } else if (!strcmp(argv[i], "--sparse-gib") && i + 1 < argc) {
                        sparse_gib = strtoull(argv[++i], NULL, 0);
                } else {
                        fprintf(stderr, "usage: kroot_scan [--smoke] [--dense-mib N] [--sparse-gib N]\n");
                        return 2;
                }
        }
        if (g_smoke) {
                dense_mib = 64;
                printf("kroot_scan --smoke: checks only, no figures\n");
        }
        if (dense_mib < 4 || sparse_gib < 1) {
                fprintf(stderr, "kroot_scan: sizes too small\n");
                return 2;
        }
        struct img im[2];
        double f[2][4] = {{0}};
        uint64_t sums[2][2] = {{0}};
        int n = 0;
        if (make_image(&im[0], "dense (memfd, every page allocated)", dense_mib * MIB, false) == 0)
                n = 1;
        if (n == 1 && make_image(&im[1], "sparse (memfd of holes, pread only, one run)",
                                 g_smoke ? 64 * MIB : sparse_gib * GIB, true) == 0)
                n = 2;
        for (int i = 0; i < n; i++) {
                bool sparse = i == 1;
                g_rounds = g_smoke || sparse ? 1 : ROUNDS;
                /* the sparse image is never mapped: touching it would allocate it */
                if (!sparse) {
                        f[i][0] = time_scan(&im[i], 0);
                        f[i][1] = time_read(&im[i], true, &sums[i][0]);
                }
                f[i][2] = time_scan(&im[i], VMIE_RAM_NO_MMAP);
                f[i][3] = time_read(&im[i], false, &sums[i][1]);
                if (!sparse && sums[i][0] != sums[i][1])
                        invalid("%s: memcpy and pread read different bytes", im[i].what);
        }
        for (int i = 0; i < 2; i++)
                if (im[i].fd > 0)
                        close(im[i].fd);
        if (bench_report_invalid())
                return 1;
        if (g_smoke) {
                printf(
                    "  smoke: valid -- the planted root was found by the RAM scan (dense: mapped and pread; "
                    "sparse: pread)\n");
                return 0;
        }
        printf("Windows kernel-root discovery without a low stub (vmie_windows_kernel_root):\n");
        for (int i = 0; i < n; i++)
                report(&im[i], f[i][0], f[i][1], f[i][2], f[i][3]);
        return 0;
}
