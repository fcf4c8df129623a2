/* SPDX-License-Identifier: MIT */
/* The vgpu-stream program loop, shared by the Linux and Windows builds. */

#include "producer.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"
#include "region.h"
#include "region_os.h"

#define MS                     1000000ull
#define IDLE_SLEEP_NS          (10 * MS) /* control-poll latency while idle or paused */
#define CONTROL_FILE_PERIOD_NS (20 * MS)
#define DUMP_PERIOD_NS         (250 * MS)

struct opts {
        const char *source;
        uint32_t fps, slots;
        struct vgpu_source_opts src;
        uint64_t frames;
        const char *dump, *control_file;
        int quiet;
};

static void usage(FILE *f, const struct vgpu_source_kind *kinds, size_t nkinds)
{
        fprintf(f, "Usage: vgpu-stream [OPTION]...\n"
                   "Publish the guest's screen (or a test pattern) into a pinned shared region in\n"
                   "guest RAM, for a vmsig host to read with libvgpu-perception (docs/vgpu-stream.md).\n"
                   "\n"
                   "  --source NAME        frame source (default pattern):\n");
        for (size_t i = 0; i < nkinds; i++)
                fprintf(f, "                         %-8s %s\n", kinds[i].name, kinds[i].help);
        fprintf(
            f,
            "  --fps N              frames per second, 0 = as fast as possible (default 30)\n"
            "  --slots N            frame slots in the ring, 1..%u (default 3)\n"
            "  --width W, --height H  pattern size (default 640x480)\n"
            "  --device PATH        framebuffer device for --source fb (default /dev/fb0)\n"
            "  --frames N           exit after publishing N frames (default: run until signalled)\n"
            "  --dump FILE          debug: write the region's pages to FILE every 250 ms and at exit\n"
            "  --control-file FILE  debug: read a control request from FILE every 20 ms, as if the\n"
            "                       host had written the control block: \"SEQ OP [A0 A1 A2 A3 [CHECK]]\"\n"
            "  --quiet              no start and exit messages\n"
            "  --help               this text\n"
            "\n"
            "Exit status: 0 on a clean stop (--frames reached or a signal), 1 on an error,\n"
            "2 on bad usage.\n",
            VGPU_MAX_SLOTS);
}

static int parse_u64(const char *opt, const char *s, uint64_t max, uint64_t *ret)
{
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 0);
        if (errno || end == s || *end || s[0] == '-' || v > max) {
                fprintf(stderr, "vgpu-stream: %s: '%s' is not a number in 0..%" PRIu64 "\n", opt, s, max);
                return -1;
        }
        *ret = v;
        return 0;
}

static int parse_u32(const char *opt, const char *s, uint32_t max, uint32_t *ret)
{
        uint64_t v;
        if (parse_u64(opt, s, max, &v) < 0)
                return -1;
        *ret = (uint32_t)v;
        return 0;
}

/* Returns 0, 1 for --help, or -1 on bad usage. */
static int parse_opts(int argc, char **argv, struct opts *o, const struct vgpu_source_kind *kinds,
                      size_t nkinds)
{
        enum {
                O_SOURCE = 256,
                O_FPS,
                O_SLOTS,
                O_WIDTH,
                O_HEIGHT,
                O_DEVICE,
                O_FRAMES,
                O_DUMP,
                O_CTL,
                O_QUIET
        };
        static const struct option longopts[] = {
            {"source", required_argument, NULL, O_SOURCE},
            {"fps", required_argument, NULL, O_FPS},
            {"slots", required_argument, NULL, O_SLOTS},
            {"width", required_argument, NULL, O_WIDTH},
            {"height", required_argument, NULL, O_HEIGHT},
            {"device", required_argument, NULL, O_DEVICE},
            {"frames", required_argument, NULL, O_FRAMES},
            {"dump", required_argument, NULL, O_DUMP},
            {"control-file", required_argument, NULL, O_CTL},
            {"quiet", no_argument, NULL, O_QUIET},
            {"help", no_argument, NULL, 'h'},
            {NULL, 0, NULL, 0},
        };
        *o = (struct opts){.source = "pattern", .fps = 30, .slots = 3, .src = {.width = 640, .height = 480}};
        int c, rc = 0;
        while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
                switch (c) {
                case O_SOURCE:
                        o->source = optarg;
                        break;
                case O_FPS:
                        rc = parse_u32("--fps", optarg, VGPU_FPS_CAP_MAX, &o->fps);
                        break;
                case O_SLOTS:
                        rc = parse_u32("--slots", optarg, VGPU_MAX_SLOTS, &o->slots);
                        if (rc == 0 && o->slots == 0) {
                                fprintf(stderr, "vgpu-stream: --slots: must be 1..%u\n", VGPU_MAX_SLOTS);
                                rc = -1;
                        }
                        break;
                case O_WIDTH:
                        rc = parse_u32("--width", optarg, VGPU_MAX_DIM, &o->src.width);
                        break;
                case O_HEIGHT:
                        rc = parse_u32("--height", optarg, VGPU_MAX_DIM, &o->src.height);
                        break;
                case O_DEVICE:
                        o->src.device = optarg;
                        break;
                case O_FRAMES:
                        rc = parse_u64("--frames", optarg, UINT64_MAX, &o->frames);
                        break;
                case O_DUMP:
                        o->dump = optarg;
                        break;
                case O_CTL:
                        o->control_file = optarg;
                        break;
                case O_QUIET:
                        o->quiet = 1;
                        break;
                case 'h':
                        usage(stdout, kinds, nkinds);
                        return 1;
                default:
                        rc = -1;
                }
                if (rc < 0)
                        break;
        }
        if (rc == 0 && optind < argc) {
                fprintf(stderr, "vgpu-stream: unexpected argument '%s'\n", argv[optind]);
                rc = -1;
        }
        if (rc < 0)
                fprintf(stderr, "Try 'vgpu-stream --help'.\n");
        return rc;
}

/* --control-file: "SEQ OP [A0 A1 A2 A3 [CHECK]]" becomes the control block,
 * written the way a host's CMD_MEMWRITE would. Rewritten only when the
 * file's text changes. */
struct control_file {
        const char *path;
        char last[256];
};

static void control_file_poll(struct control_file *cf, struct vgpu_region *r)
{
        char text[256];
        FILE *f = fopen(cf->path, "r");
        if (!f)
                return; /* not there (yet) */
        size_t n = fread(text, 1, sizeof(text) - 1, f);
        fclose(f);
        text[n] = 0;
        if (n == 0 || strcmp(text, cf->last) == 0)
                return;
        memcpy(cf->last, text, n + 1);
        unsigned long v[7] = {0};
        char *p = text, *end;
        int count = 0;
        for (; count < 7; count++) {
                errno = 0;
                v[count] = strtoul(p, &end, 0);
                if (end == p || errno)
                        break;
                p = end;
        }
        if (count < 2) {
                fprintf(stderr, "vgpu-stream: %s: expected \"SEQ OP [A0 A1 A2 A3 [CHECK]]\"\n", cf->path);
                return;
        }
        struct vgpu_control c = {
            .req_seq = (uint32_t)v[0],
            .op = (uint32_t)v[1],
            .arg = {(uint32_t)v[2], (uint32_t)v[3], (uint32_t)v[4], (uint32_t)v[5]},
            .req_seq_check = count == 7 ? (uint32_t)v[6] : ~(uint32_t)v[0],
        };
        memcpy(vgpu_region_control(r), &c, sizeof(c));
}

static uint64_t interval_ns(uint32_t fps, uint32_t cap)
{
        uint32_t eff = fps;
        if (cap && (eff == 0 || cap < eff))
                eff = cap;
        return eff ? 1000000000ull / eff : 0;
}

struct loop {
        struct opts o;
        struct vgpu_source src;
        struct vgpu_region *r;
        struct vgpu_ctl_state st;
        uint64_t published;
};

/* Grabs a frame, applies the crop, follows geometry changes, publishes. */
static int publish_one(struct loop *l)
{
        char err[256] = "";
        struct vgpu_frame f;
        int rc = l->src.grab(&l->src, vgpu_region_next_seq(l->r), &f, err, sizeof(err));
        if (rc < 0) {
                fprintf(stderr, "vgpu-stream: source %s: %s\n", l->src.name, err[0] ? err : strerror(-rc));
                return rc;
        }
        l->src.width = f.width;
        l->src.height = f.height;
        if (l->st.crop_w) {
                if (l->st.crop_x + l->st.crop_w <= f.width && l->st.crop_y + l->st.crop_h <= f.height) {
                        f.pixels += (size_t)l->st.crop_y * f.stride + (size_t)l->st.crop_x * 4;
                        f.width = l->st.crop_w;
                        f.height = l->st.crop_h;
                } else {
                        l->st.crop_w = 0; /* the screen shrank under the crop: whole screen again */
                }
        }
        int recreated = 0;
        rc = vgpu_region_set_geometry(l->r, f.width, f.height, f.format, &recreated);
        if (rc < 0) {
                fprintf(stderr, "vgpu-stream: geometry %ux%u: %s\n", f.width, f.height, strerror(-rc));
        } else {
                if (recreated && !l->o.quiet)
                        fprintf(stderr,
                                "vgpu-stream: geometry %ux%u does not fit the slots: new region, nonce "
                                "%016" PRIx64 "\n",
                                f.width, f.height, vgpu_region_nonce(l->r));
                int64_t seq =
                    vgpu_region_publish_frame(l->r, f.pixels, f.width, f.height, f.stride, vgpu_os_now_ns());
                if (seq < 0) {
                        rc = (int)seq;
                        fprintf(stderr, "vgpu-stream: publishing frame: %s\n", strerror(-rc));
                } else {
                        l->published++;
                }
        }
        if (l->src.done)
                l->src.done(&l->src);
        return rc;
}

static void handle_requests(struct loop *l)
{
        struct vgpu_request q;
        while (vgpu_region_poll_control(l->r, &q) == 1) {
                int res = vgpu_control_apply(&l->st, &q, l->src.width, l->src.height);
                if (res != 1)
                        vgpu_region_ack(l->r, q.seq, res);
                vgpu_region_set_flags(l->r, l->st.paused ? VGPU_HF_PAUSED : 0);
                vgpu_region_set_interval(l->r, (uint32_t)(interval_ns(l->o.fps, l->st.fps_cap) / 1000));
        }
}

static void dump(struct loop *l)
{
        int rc = vgpu_region_dump(l->r, l->o.dump);
        if (rc < 0)
                fprintf(stderr, "vgpu-stream: --dump %s: %s\n", l->o.dump, strerror(-rc));
}

static int run(struct loop *l, volatile sig_atomic_t *stop)
{
        struct control_file cf = {.path = l->o.control_file};
        uint64_t now = vgpu_os_now_ns(), next_due = now, next_cf = now, next_dump = now + DUMP_PERIOD_NS;
        while (!*stop) {
                now = vgpu_os_now_ns();
                if (cf.path && now >= next_cf) {
                        control_file_poll(&cf, l->r);
                        next_cf = now + CONTROL_FILE_PERIOD_NS;
                }
                handle_requests(l);
                uint64_t ival = interval_ns(l->o.fps, l->st.fps_cap);
                int full = l->st.full_frame_seq != 0;
                int due = !l->st.paused && now >= next_due;
                if (full || due) {
                        int rc = publish_one(l);
                        if (full) {
                                vgpu_region_ack(l->r, l->st.full_frame_seq,
                                                rc < 0 ? VGPU_ACK_EIO : VGPU_ACK_OK);
                                l->st.full_frame_seq = 0;
                        }
                        if (rc < 0)
                                return 1;
                        if (l->o.frames && l->published >= l->o.frames)
                                break;
                        if (due) {
                                next_due += ival;
                                /* Missed whole intervals count as dropped frames. */
                                if (ival && now > next_due + ival) {
                                        vgpu_region_count_dropped(l->r, (now - next_due) / ival);
                                        next_due = now + ival;
                                }
                        }
                } else {
                        vgpu_region_heartbeat(l->r, now);
                        if (l->st.paused)
                                next_due = now; /* a pause drops nothing; resume publishes at once */
                        uint64_t wait = IDLE_SLEEP_NS;
                        if (!l->st.paused && next_due - now < wait)
                                wait = next_due - now;
                        vgpu_os_sleep_ns(wait);
                }
                if (l->o.dump && now >= next_dump) {
                        dump(l);
                        next_dump = now + DUMP_PERIOD_NS;
                }
        }
        return 0;
}

int vgpu_producer_main(int argc, char **argv, const struct vgpu_source_kind *kinds, size_t nkinds,
                       volatile sig_atomic_t *stop)
{
        struct loop l = {0};
        int rc = parse_opts(argc, argv, &l.o, kinds, nkinds);
        if (rc != 0)
                return rc > 0 ? 0 : 2;
        const struct vgpu_source_kind *kind = NULL;
        for (size_t i = 0; i < nkinds; i++)
                if (strcmp(kinds[i].name, l.o.source) == 0)
                        kind = &kinds[i];
        if (!kind) {
                fprintf(stderr, "vgpu-stream: --source %s: unknown source (see --help)\n", l.o.source);
                return 2;
        }
        char err[256] = "";
        rc = kind->open(&l.src, &l.o.src, err, sizeof(err));
        if (rc < 0) {
                fprintf(stderr, "vgpu-stream: source %s: %s\n", kind->name, err[0] ? err : strerror(-rc));
                return 1;
        }
        struct vgpu_region_params rp = {
            .width = l.src.width,
            .height = l.src.height,
            .format = l.src.format,
            .nslots = l.o.slots,
            .frame_interval_us = (uint32_t)(interval_ns(l.o.fps, 0) / 1000),
        };
        rc = vgpu_region_create(&l.r, &rp);
        if (rc < 0) {
                fprintf(stderr, "vgpu-stream: cannot create the pinned %ux%u region: %s%s\n", rp.width,
                        rp.height, strerror(-rc),
                        rc == -EPERM || rc == -ENOMEM || rc == -EAGAIN
                            ? " (pinning needs root or a larger 'ulimit -l')"
                            : "");
                l.src.close(&l.src);
                return 1;
        }
        if (!l.o.quiet)
                fprintf(stderr,
                        "vgpu-stream: source %s%s%s, %ux%u, %u slots, %u pages, nonce %016" PRIx64
                        ", fps %u\n",
                        l.src.name, l.src.detail[0] ? " " : "", l.src.detail, l.src.width, l.src.height,
                        vgpu_region_header(l.r)->nslots, vgpu_region_npages(l.r), vgpu_region_nonce(l.r),
                        l.o.fps);
        int status = run(&l, stop);
        const struct vgpu_header *h = vgpu_region_header(l.r);
        if (l.o.dump)
                dump(&l);
        if (!l.o.quiet && h)
                fprintf(stderr,
                        "vgpu-stream: published %" PRIu64 " frames, dropped %" PRIu64
                        ", last control ack %u (%d)\n",
                        l.published, h->frames_dropped, h->ctrl_ack_seq, h->ctrl_ack_result);
        vgpu_region_destroy(l.r);
        l.src.close(&l.src);
        return status;
}
