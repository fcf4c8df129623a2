/* SPDX-License-Identifier: MIT */
/* vgpu-region-check: validates a region dump written by `vgpu-stream --dump`
 * (pages in index order) against docs/vgpu-stream.md: every tag, the header,
 * every written slot's seqlock state, geometry and checksum; optionally the
 * test-pattern pixels, the frame count and a control acknowledgement.
 * Prints one "key=value ..." summary line on success; exits 1 with the reason
 * on the first failed check, 2 on bad usage. */

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pattern.h"
#include "vgpu/region_reader.h"

struct expect {
        int pattern, full_ring;
        long long frames, min_seq, ack_seq, ack_result, flags, gen;
        uint32_t width, height;
};

static int fail(const char *path, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(const char *path, const char *fmt, ...)
{
        va_list ap;
        fprintf(stderr, "vgpu-region-check: %s: ", path);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return 1;
}

static unsigned char *load(const char *path, size_t *len)
{
        FILE *f = fopen(path, "rb");
        if (!f)
                return NULL;
        size_t cap = 1 << 20, n = 0;
        unsigned char *buf = malloc(cap);
        while (buf) {
                size_t got = fread(buf + n, 1, cap - n, f);
                n += got;
                if (n < cap)
                        break;
                unsigned char *nb =
                    cap > ((size_t)VGPU_MAX_PAGES * VGPU_PAGE_SIZE) ? NULL : realloc(buf, cap * 2);
                if (!nb) {
                        free(buf);
                        buf = NULL;
                        errno = EFBIG;
                        break;
                }
                buf = nb;
                cap *= 2;
        }
        fclose(f);
        *len = n;
        return buf;
}

static int check(const char *path, const struct expect *e)
{
        size_t len;
        unsigned char *buf = load(path, &len);
        if (!buf)
                return fail(path, "cannot read: %s", strerror(errno));
        if (len == 0 || len % VGPU_PAGE_SIZE) {
                free(buf);
                return fail(path, "%zu bytes is not a whole number of 4 KiB pages", len);
        }
        uint32_t np = (uint32_t)(len / VGPU_PAGE_SIZE);
        const unsigned char **pages = malloc(np * sizeof(*pages));
        for (uint32_t i = 0; i < np; i++)
                pages[i] = buf + (size_t)i * VGPU_PAGE_SIZE;
        struct rr_region g;
        char err[256];
        int rc = 0;
        unsigned char *data = NULL;
        if (rr_open(&g, pages, np, err, sizeof(err)) < 0) {
                rc = fail(path, "%s", err);
                goto out;
        }
        const struct vgpu_header *h = &g.hdr;
        data = malloc(h->slot_size);
        uint32_t valid = 0;
        int latest_found = h->latest_seq == 0;
        for (uint32_t i = 0; i < h->nslots; i++) {
                struct vgpu_slot sh;
                int v = rr_slot(&g, i, &sh, data, err, sizeof(err));
                if (v < 0) {
                        rc = fail(path, "%s", err);
                        goto out;
                }
                if (v == 0)
                        continue;
                valid++;
                if (sh.frame_seq == h->latest_seq) {
                        if (i != h->latest_slot) {
                                rc = fail(path, "latest frame %" PRIu64 " is in slot %u, header says %u",
                                          sh.frame_seq, i, h->latest_slot);
                                goto out;
                        }
                        latest_found = 1;
                }
                size_t bad;
                if (e->pattern && vgpu_pattern_verify(data, sh.width, sh.height, sh.frame_seq, &bad) < 0) {
                        rc = fail(path, "slot %u (frame %" PRIu64 ", %ux%u): pattern differs at byte %zu", i,
                                  sh.frame_seq, sh.width, sh.height, bad);
                        goto out;
                }
        }
        if (!latest_found) {
                rc = fail(path, "latest_seq %" PRIu64 " is in no slot", h->latest_seq);
                goto out;
        }
        if (e->full_ring && valid != h->nslots) {
                rc = fail(path, "ring not full: %u of %u slots hold a frame", valid, h->nslots);
                goto out;
        }
        if (e->frames >= 0 &&
            (h->latest_seq != (uint64_t)e->frames || h->frames_published != (uint64_t)e->frames)) {
                rc = fail(path, "latest_seq %" PRIu64 ", frames_published %" PRIu64 ", expected %lld",
                          h->latest_seq, h->frames_published, e->frames);
                goto out;
        }
        if (e->min_seq >= 0 && h->latest_seq < (uint64_t)e->min_seq) {
                rc = fail(path, "latest_seq %" PRIu64 " < %lld", h->latest_seq, e->min_seq);
                goto out;
        }
        if (e->ack_seq >= 0 && h->ctrl_ack_seq != (uint32_t)e->ack_seq) {
                rc = fail(path, "ctrl_ack_seq %u, expected %lld", h->ctrl_ack_seq, e->ack_seq);
                goto out;
        }
        if (e->ack_result != 1 && h->ctrl_ack_result != (int32_t)e->ack_result) {
                rc = fail(path, "ctrl_ack_result %d, expected %lld", h->ctrl_ack_result, e->ack_result);
                goto out;
        }
        if (e->flags >= 0 && h->flags != (uint32_t)e->flags) {
                rc = fail(path, "flags %#x, expected %#llx", h->flags, e->flags);
                goto out;
        }
        if (e->gen >= 0 && h->geometry_gen != (uint32_t)e->gen) {
                rc = fail(path, "geometry_gen %u, expected %lld", h->geometry_gen, e->gen);
                goto out;
        }
        if (e->width && (h->width != e->width || h->height != e->height)) {
                rc = fail(path, "geometry %ux%u, expected %ux%u", h->width, h->height, e->width, e->height);
                goto out;
        }
        printf("nonce=%016" PRIx64 " pid=%u pages=%u geometry=%ux%u stride=%u format=%u gen=%u slots=%u "
               "slot_size=%u valid=%u latest_seq=%" PRIu64 " published=%" PRIu64 " dropped=%" PRIu64
               " flags=%#x interval_us=%u ack_seq=%u ack_result=%d\n",
               h->nonce, h->producer_pid, np, h->width, h->height, h->stride, h->format, h->geometry_gen,
               h->nslots, h->slot_size, valid, h->latest_seq, h->frames_published, h->frames_dropped,
               h->flags, h->frame_interval_us, h->ctrl_ack_seq, h->ctrl_ack_result);
out:
        free(data);
        free(pages);
        free(buf);
        return rc;
}

static void usage(FILE *f)
{
        fprintf(f, "Usage: vgpu-region-check [OPTION]... DUMP\n"
                   "Validate a vgpu-stream region dump (vgpu-stream --dump).\n"
                   "  --pattern          every frame must be the test pattern of its frame_seq\n"
                   "  --full-ring        every slot must hold a frame\n"
                   "  --frames N         latest_seq and frames_published must be N\n"
                   "  --min-seq N        latest_seq must be at least N\n"
                   "  --ack SEQ          ctrl_ack_seq must be SEQ\n"
                   "  --ack-result R     ctrl_ack_result must be R\n"
                   "  --flags F          header flags must be F\n"
                   "  --gen G            geometry_gen must be G\n"
                   "  --size WxH         the header geometry must be W x H\n"
                   "  --help\n");
}

int main(int argc, char **argv)
{
        static const struct option longopts[] = {
            {"pattern", no_argument, NULL, 'p'},
            {"full-ring", no_argument, NULL, 'r'},
            {"frames", required_argument, NULL, 'f'},
            {"min-seq", required_argument, NULL, 'm'},
            {"ack", required_argument, NULL, 'a'},
            {"ack-result", required_argument, NULL, 'R'},
            {"flags", required_argument, NULL, 'F'},
            {"gen", required_argument, NULL, 'g'},
            {"size", required_argument, NULL, 's'},
            {"help", no_argument, NULL, 'h'},
            {NULL, 0, NULL, 0},
        };
        struct expect e = {
            .frames = -1, .min_seq = -1, .ack_seq = -1, .ack_result = 1, .flags = -1, .gen = -1};
        int c;
        while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
                switch (c) {
                case 'p':
                        e.pattern = 1;
                        break;
                case 'r':
                        e.full_ring = 1;
                        break;
                case 'f':
                        e.frames = strtoll(optarg, NULL, 0);
                        break;
                case 'm':
                        e.min_seq = strtoll(optarg, NULL, 0);
                        break;
                case 'a':
                        e.ack_seq = strtoll(optarg, NULL, 0);
                        break;
                case 'R':
                        e.ack_result = strtoll(optarg, NULL, 0);
                        break;
                case 'F':
                        e.flags = strtoll(optarg, NULL, 0);
                        break;
                case 'g':
                        e.gen = strtoll(optarg, NULL, 0);
                        break;
                case 's':
                        if (sscanf(optarg, "%ux%u", &e.width, &e.height) != 2 || !e.width || !e.height) {
                                fprintf(stderr, "vgpu-region-check: --size %s: expected WxH\n", optarg);
                                return 2;
                        }
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (optind != argc - 1) {
                usage(stderr);
                return 2;
        }
        return check(argv[optind], &e);
}
