/* SPDX-License-Identifier: MIT */
/* vmsigctl frame: the screen of a VM whose guest runs vgpu-stream, read with
 * libvgpu-perception through the VM's read-only memory context:
 *   frame VM -o FILE.png      the newest complete frame as a PNG
 *   frame VM --watch          fps, dropped frames, latency once a second
 *   frame VM --request OP     a control request (CMD_MEMWRITE under the
 *                             memwrite lease), waiting for its acknowledgement */
#include <errno.h>
#include <inttypes.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <vgpu/perception.h>
#include <vmie/vmie.h>
#include <vmsig/bus.h>
#include <vmsig/memctx.h>

#include "tools/ctl_common.h"

struct frame_ctx {
        struct ctl *ctl;
        const char *vm;
        uint32_t ep;
        struct vmsig_memctx mc; /* fd -1 once consumed */
        bool got, changed;      /* a (new) memctx arrived */
        struct vmie_ram *ram;
        struct vgpu_perception *p;
        uint8_t *buf;
        size_t cap;
};

static void catch_memctx(const struct vmsig_event *ev, int fd, void *ud)
{
        struct frame_ctx *f = ud;
        struct vmsig_memctx mc;

        if (ev->hdr.kind == VMSIG_EV_MEMCTX && fd >= 0 && vmsig_memctx_from_event(ev, fd, &mc) == 0 &&
            mc.fd >= 0) {
                if (f->got && f->mc.fd >= 0)
                        close(f->mc.fd);
                f->mc = mc;
                f->got = f->changed = true;
                return;
        }
        if (fd >= 0)
                close(fd);
}

static uint64_t now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* (Re)open the guest RAM from the newest memctx; a new epoch is a guest
 * reset for the reader. */
static int use_memctx(struct frame_ctx *f)
{
        struct vmie_range ranges[VMSIG_MEMCTX_MAX_RANGES];
        struct vmie_ram *ram = NULL;
        int r;

        for (uint32_t i = 0; i < f->mc.nranges; i++)
                ranges[i] = (struct vmie_range){.gpa = f->mc.ranges[i].gpa,
                                                .len = f->mc.ranges[i].len,
                                                .file_offset = f->mc.ranges[i].file_offset};
        /* Safe mode: the QEMU user may shrink the file; a mapping would
         * then kill vmsigctl with SIGBUS. */
        r = vmie_ram_open_fd(f->mc.fd, ranges, f->mc.nranges, VMIE_RAM_NO_MMAP, &ram);
        close(f->mc.fd);
        f->mc.fd = -1;
        f->changed = false;
        if (r < 0)
                return ctl_fail(EXIT_FAILED, "cannot open guest RAM of '%s': %s", f->vm, strerror(-r));
        if (f->p) {
                vgpu_perception_reset(f->p, ram);
        } else {
                struct vgpu_perception_options o = {.flags = VGPU_PERCEPTION_VERIFY};
                if ((r = vgpu_perception_new(ram, &o, &f->p)) < 0) {
                        vmie_ram_free(ram);
                        return ctl_fail(EXIT_FAILED, "libvgpu-perception: %s", strerror(-r));
                }
        }
        vmie_ram_free(f->ram);
        f->ram = ram;
        return 0;
}

static int frame_open(struct frame_ctx *f)
{
        struct ctl_waiter w = {.each = catch_memctx, .ud = f};
        int r;

        if (!(vmsig_client_get_info(f->ctl->client)->caps & VMSIG_CAP_MEMCTX))
                return ctl_fail(EXIT_DENIED, "your uid lacks the memctx capability");
        if ((r = ctl_resolve_vm(f->ctl, f->vm, &f->ep)))
                return r;
        r = ctl_subscribe_sync(f->ctl, f->ep, VMSIG_KIND_BIT(VMSIG_EV_MEMCTX), &w);
        if (r < 0)
                return r == -ENOENT ? ctl_fail(EXIT_NOVM, "no endpoint %u", f->ep)
                                    : ctl_connection_lost(f->ctl, r);
        if (!f->got)
                return ctl_fail(EXIT_FAILED, "'%s' has no valid memory context yet (guest still booting?)",
                                f->vm);
        return use_memctx(f);
}

/* Take MEMCTX events that arrived meanwhile (non-blocking). */
static int frame_poll_events(struct frame_ctx *f)
{
        struct ctl_waiter w = {.each = catch_memctx, .ud = f};
        int r = ctl_wait_for(f->ctl, &w, 0);

        if (r < 0 && r != -ETIMEDOUT)
                return r == -EINTR ? -EINTR : ctl_connection_lost(f->ctl, r);
        return f->changed ? use_memctx(f) : 0;
}

static void frame_close(struct frame_ctx *f)
{
        if (f->got && f->mc.fd >= 0)
                close(f->mc.fd);
        vgpu_perception_free(f->p);
        vmie_ram_free(f->ram);
        free(f->buf);
}

static const char *why(int r)
{
        switch (r) {
        case -ENOENT:
                return "no vgpu-stream producer found in guest RAM (is vgpu-stream running in the guest?)";
        case -ENODATA:
                return "the producer has not published a frame yet";
        case -EAGAIN:
                return "every attempt found the frame being rewritten (torn)";
        default:
                return strerror(-r);
        }
}

/* Newest good frame into f->buf, growing it; retries until the deadline. */
static int grab(struct frame_ctx *f, struct vgpu_frame_info *fi, uint64_t deadline)
{
        int r;

        for (;;) {
                r = vgpu_perception_read(f->p, f->buf, f->cap, fi);
                if (r == -ENOSPC) {
                        uint8_t *nb = realloc(f->buf, fi->data_len);
                        if (!nb)
                                return -ENOMEM;
                        f->buf = nb;
                        f->cap = fi->data_len;
                        continue;
                }
                if (r == 0 || now_ns() >= deadline ||
                    (r != -ENOENT && r != -ENODATA && r != -EAGAIN && r != -ESTALE))
                        return r;
                r = vgpu_perception_wait(f->p, 0, 100, 0, NULL);
                if (r == -EINTR)
                        return r;
        }
}

static int write_png(const char *path, const uint8_t *px, const struct vgpu_frame_info *fi)
{
        FILE *out = fopen(path, "wbe");
        png_structp png;
        png_infop info;
        uint8_t *row = NULL;

        if (!out)
                return -errno;
        png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
        info = png ? png_create_info_struct(png) : NULL;
        row = malloc((size_t)fi->width * 3);
        if (!png || !info || !row || setjmp(png_jmpbuf(png))) {
                png_destroy_write_struct(&png, &info);
                free(row);
                fclose(out);
                unlink(path);
                return -EIO;
        }
        png_init_io(png, out);
        png_set_IHDR(png, info, fi->width, fi->height, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                     PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
        png_write_info(png, info);
        for (uint32_t y = 0; y < fi->height; y++) {
                const uint8_t *s = px + (size_t)y * fi->stride;
                for (uint32_t x = 0; x < fi->width; x++) { /* B G R A/X -> R G B */
                        row[3 * x] = s[4 * x + 2];
                        row[3 * x + 1] = s[4 * x + 1];
                        row[3 * x + 2] = s[4 * x];
                }
                png_write_row(png, row);
        }
        png_write_end(png, NULL);
        png_destroy_write_struct(&png, &info);
        free(row);
        return fclose(out) == 0 ? 0 : -errno;
}

static int cmd_save(struct frame_ctx *f, const char *path)
{
        struct vgpu_frame_info fi;
        int r = grab(f, &fi, now_ns() + (uint64_t)f->ctl->timeout_ms * 1000000ull);

        if (r < 0)
                return ctl_fail(EXIT_FAILED, "'%s': %s", f->vm, why(r));
        if ((r = write_png(path, f->buf, &fi)) < 0)
                return ctl_fail(EXIT_FAILED, "cannot write %s: %s", path, strerror(-r));
        printf("%s: frame %" PRIu64 " %ux%u -> %s\n", f->vm, fi.seq, fi.width, fi.height, path);
        return 0;
}

static int cmp_u64(const void *a, const void *b)
{
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
        return x < y ? -1 : x > y;
}

/* Latency: host time the frame is held minus its producer timestamp, less
 * the smallest such difference seen (the clocks' offset plus the fastest
 * delivery): what each frame took beyond the best one. */
static int cmd_watch(struct frame_ctx *f)
{
        uint64_t lat[4096], offset = UINT64_MAX, last_seq = 0, last_nonce = 0, frames = 0, dropped = 0;
        uint64_t tick = now_ns() + 1000000000ull;
        size_t nlat = 0;
        struct vgpu_perception_stats st0, st;
        int r;

        vgpu_perception_stats(f->p, &st0);
        for (;;) {
                struct vgpu_frame_info fi;
                r = vgpu_perception_wait(f->p, last_seq, 100, 0, NULL);
                if (r == 0) {
                        r = vgpu_perception_read(f->p, f->buf, f->cap, &fi);
                        if (r == -ENOSPC) {
                                uint8_t *nb = realloc(f->buf, fi.data_len);
                                if (!nb)
                                        return ctl_fail(EXIT_FAILED, "out of memory");
                                f->buf = nb;
                                f->cap = fi.data_len;
                                r = vgpu_perception_read(f->p, f->buf, f->cap, &fi);
                        }
                }
                if (r == 0 && (fi.seq > last_seq || fi.nonce != last_nonce)) {
                        uint64_t held = now_ns(), d = held - fi.timestamp_ns;
                        if (fi.nonce == last_nonce && fi.seq > last_seq + 1)
                                dropped += fi.seq - last_seq - 1;
                        if (fi.nonce != last_nonce)
                                offset = UINT64_MAX;
                        if (d < offset)
                                offset = d;
                        if (nlat < sizeof(lat) / sizeof(lat[0]))
                                lat[nlat++] = d;
                        last_seq = fi.seq;
                        last_nonce = fi.nonce;
                        frames++;
                }
                if (now_ns() >= tick) {
                        vgpu_perception_stats(f->p, &st);
                        qsort(lat, nlat, sizeof(lat[0]), cmp_u64);
                        if (vgpu_perception_state(f->p) != VGPU_PERCEPTION_READY)
                                printf("%s: no producer\n", f->vm);
                        else if (nlat)
                                printf("%s: %.1f fps, %" PRIu64 " dropped, %" PRIu64
                                       " torn, latency p50 %.2f ms p99 %.2f ms, %ux%u seq %" PRIu64 "\n",
                                       f->vm, (double)frames, dropped, st.torn - st0.torn,
                                       (double)(lat[nlat / 2] - offset) / 1e6,
                                       (double)(lat[nlat * 99 / 100] - offset) / 1e6, fi.width, fi.height,
                                       last_seq);
                        else
                                printf("%s: 0.0 fps (producer idle or paused), seq %" PRIu64 "\n", f->vm,
                                       last_seq);
                        fflush(stdout);
                        frames = dropped = 0;
                        nlat = 0;
                        st0 = st;
                        tick += 1000000000ull;
                }
                if ((r = frame_poll_events(f)) != 0)
                        return r == -EINTR ? 0 : r;
        }
}

/* OP: pause | resume | fps=N | full | region=X,Y,W,H */
static int parse_request(const char *s, uint32_t *op, uint32_t args[4])
{
        memset(args, 0, 4 * sizeof(args[0]));
        if (strcmp(s, "pause") == 0 || strcmp(s, "resume") == 0) {
                *op = VGPU_OP_PAUSE;
                args[0] = s[0] == 'p';
                return 0;
        }
        if (strcmp(s, "full") == 0) {
                *op = VGPU_OP_FULL_FRAME;
                return 0;
        }
        if (sscanf(s, "fps=%u", &args[0]) == 1) {
                *op = VGPU_OP_FPS_CAP;
                return 0;
        }
        if (sscanf(s, "region=%u,%u,%u,%u", &args[0], &args[1], &args[2], &args[3]) == 4) {
                *op = VGPU_OP_REGION;
                return 0;
        }
        return -EINVAL;
}

static int cmd_request(struct frame_ctx *f, const char *req)
{
        struct vgpu_control block;
        struct vmsig_memwrite_body b = {0};
        struct vmsig_event ev;
        struct vmsig_ack_body ack;
        uint32_t op, args[4], seq;
        uint64_t gpa, deadline = now_ns() + (uint64_t)f->ctl->timeout_ms * 1000000ull;
        int32_t result = 0;
        int r;

        if (parse_request(req, &op, args) < 0)
                return ctl_fail(EXIT_USAGE,
                                "--request: '%s' is not pause, resume, fps=N, full or region=X,Y,W,H", req);
        while ((r = vgpu_perception_control(f->p, op, args, &block, &gpa, &seq)) == -ENOENT &&
               now_ns() < deadline)
                vgpu_perception_wait(f->p, 0, 200, 0, NULL);
        if (r < 0)
                return ctl_fail(EXIT_FAILED, "'%s': %s", f->vm, why(r));
        if ((r = ctl_acquire(f->ctl, f->ep, VMSIG_LEASE_MEMWRITE)))
                return r;
        b.addr = gpa;
        b.len = sizeof(block);
        b.flags = VMSIG_MEMWRITE_PHYS;
        memcpy(b.data, &block, sizeof(block));
        vmsig_event_init(&ev, VMSIG_EV_CMD_MEMWRITE, f->ep, VMSIG_SRC_MEMCTX);
        vmsig_event_set_body(&ev, &b, offsetof(struct vmsig_memwrite_body, data) + sizeof(block));
        if ((r = ctl_send_and_wait(f->ctl, &ev, NULL, 0, &ack)))
                return r;
        if (ack.result < 0)
                return ctl_fail(ctl_exit_for(ack.result), "control block write to '%s' at 0x%" PRIx64 ": %s",
                                f->vm, gpa, ESC(ack.msg));
        while ((r = vgpu_perception_control_ack(f->p, seq, &result)) == 0 && now_ns() < deadline)
                usleep(2000);
        if (r < 0)
                return ctl_fail(EXIT_FAILED, "'%s': the producer went away before acknowledging request %u",
                                f->vm, seq);
        if (r == 0)
                return ctl_fail(EXIT_FAILED,
                                "'%s': request %u (%s) written at 0x%" PRIx64 ", not acknowledged in %d ms",
                                f->vm, seq, req, gpa, f->ctl->timeout_ms);
        printf("%s: request %u (%s) acknowledged, result %d%s%s\n", f->vm, seq, req, result,
               result ? " " : "", result ? strerror(-result) : "");
        return result ? EXIT_FAILED : 0;
}

int ctl_cmd_frame(struct ctl *ctl, int argc, char **argv)
{
        struct frame_ctx f = {.ctl = ctl};
        int modes, r;

        /* The spelling puts the options after VM ("frame VM -o
         * shot.png"); the global parser stops at VM, so take them here. */
        for (int i = 0; i < argc; i++) {
                bool has_next = i + 1 < argc;
                if ((!strcmp(argv[i], "-o") || !strcmp(argv[i], "--output")) && has_next)
                        ctl->output = argv[++i];
                else if (!strcmp(argv[i], "--watch"))
                        ctl->watch = true;
                else if (!strcmp(argv[i], "--request") && has_next)
                        ctl->request = argv[++i];
                else if (!f.vm && argv[i][0] != '-')
                        f.vm = argv[i];
                else
                        return ctl_usage_error(ctl);
        }
        modes = !!ctl->output + ctl->watch + !!ctl->request;
        if (!f.vm || modes != 1)
                return ctl_usage_error(ctl);
        f.mc.fd = -1;
        if ((r = frame_open(&f)) == 0) {
                if (ctl->output)
                        r = cmd_save(&f, ctl->output);
                else if (ctl->watch)
                        r = cmd_watch(&f);
                else
                        r = cmd_request(&f, ctl->request);
        }
        frame_close(&f);
        return r;
}
