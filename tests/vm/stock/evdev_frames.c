/* SPDX-License-Identifier: MIT */
/* vmsig-evdev-frames: reads evdev devices inside the stock test guest and
 * prints what a reader such as QEMU's input-linux sees, one line per
 * SYN_REPORT frame, so a shell script can compare event streams exactly.
 *
 *   vmsig-evdev-frames LABEL=/dev/input/eventN [LABEL=...]
 *
 * Each device is grabbed (EVIOCGRAB) like QEMU's input-linux does, so the
 * guest's own keyboard handler never acts on the keys (Ctrl-Alt-Del!).
 *
 * Output (stdout, line-buffered):
 *   DEV LABEL NODE name="..." phys="..." bus=0x.. vendor=0x.... product=0x....
 *   FRAME LABEL EV EV ...     the events of one frame, in order: KEY_30=1,
 *                             BTN_LEFT=0, ABS_X=123, REL_WHEEL=-1, T4C5=6
 *   FRAME LABEL SYN_DROPPED   the kernel dropped events (buffer overrun)
 *   GONE LABEL errno-text     the device went away (read failed)
 * It runs until killed or until every device is gone. */
#include <errno.h>
#include <fcntl.h>
#include <linux/input.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define MAX_DEVS  8
#define FRAME_MAX 4096

struct dev {
        const char *label;
        int fd;
        char frame[FRAME_MAX];
        size_t len;
};

static void add(struct dev *d, const struct input_event *ev)
{
        static const char *const btn[] = {"BTN_LEFT", "BTN_RIGHT", "BTN_MIDDLE"};
        static const char *const rel[] = {
            [REL_X] = "REL_X", [REL_Y] = "REL_Y", [REL_HWHEEL] = "REL_HWHEEL", [REL_WHEEL] = "REL_WHEEL"};
        char item[64];

        if (ev->type == EV_KEY && ev->code >= BTN_LEFT && ev->code <= BTN_MIDDLE)
                snprintf(item, sizeof(item), " %s=%d", btn[ev->code - BTN_LEFT], ev->value);
        else if (ev->type == EV_KEY)
                snprintf(item, sizeof(item), " KEY_%u=%d", ev->code, ev->value);
        else if (ev->type == EV_ABS && (ev->code == ABS_X || ev->code == ABS_Y))
                snprintf(item, sizeof(item), " %s=%d", ev->code == ABS_X ? "ABS_X" : "ABS_Y", ev->value);
        else if (ev->type == EV_REL && ev->code <= REL_WHEEL && rel[ev->code])
                snprintf(item, sizeof(item), " %s=%d", rel[ev->code], ev->value);
        else
                snprintf(item, sizeof(item), " T%uC%u=%d", ev->type, ev->code, ev->value);
        size_t n = strlen(item);
        if (d->len + n < sizeof(d->frame)) {
                memcpy(d->frame + d->len, item, n + 1);
                d->len += n;
        }
}

static int on_event(struct dev *d, const struct input_event *ev)
{
        if (ev->type == EV_SYN && ev->code == SYN_DROPPED) {
                printf("FRAME %s SYN_DROPPED\n", d->label);
                d->len = 0;
        } else if (ev->type == EV_SYN && ev->code == SYN_REPORT) {
                printf("FRAME %s%s\n", d->label, d->frame);
                d->len = 0;
                d->frame[0] = 0;
        } else if (ev->type != EV_SYN && ev->type != EV_MSC) {
                add(d, ev);
        }
        return 0;
}

static void describe(const struct dev *d, const char *node)
{
        char name[128] = "", phys[128] = "";
        struct input_id id = {0};

        (void)ioctl(d->fd, EVIOCGNAME(sizeof(name) - 1), name);
        (void)ioctl(d->fd, EVIOCGPHYS(sizeof(phys) - 1), phys);
        (void)ioctl(d->fd, EVIOCGID, &id);
        printf("DEV %s %s name=\"%s\" phys=\"%s\" bus=0x%02x vendor=0x%04x product=0x%04x\n", d->label, node,
               name, phys, id.bustype, id.vendor, id.product);
}

int main(int argc, char **argv)
{
        static struct dev devs[MAX_DEVS];
        struct pollfd pf[MAX_DEVS];
        int n = 0, live;

        if (argc < 2 || argc - 1 > MAX_DEVS || !strcmp(argv[1], "--help")) {
                fprintf(stderr, "usage: %s LABEL=/dev/input/eventN ... (at most %d)\n", argv[0], MAX_DEVS);
                return 2;
        }
        setvbuf(stdout, NULL, _IOLBF, 0);
        for (int i = 1; i < argc; i++, n++) {
                char *eq = strchr(argv[i], '=');
                if (!eq) {
                        fprintf(stderr, "vmsig-evdev-frames: %s: want LABEL=NODE\n", argv[i]);
                        return 2;
                }
                *eq = 0;
                devs[n].label = argv[i];
                devs[n].fd = open(eq + 1, O_RDONLY | O_CLOEXEC);
                if (devs[n].fd < 0) {
                        fprintf(stderr, "vmsig-evdev-frames: %s: %s\n", eq + 1, strerror(errno));
                        return 1;
                }
                if (ioctl(devs[n].fd, EVIOCGRAB, 1) < 0) {
                        fprintf(stderr, "vmsig-evdev-frames: grabbing %s: %s\n", eq + 1, strerror(errno));
                        return 1;
                }
                describe(&devs[n], eq + 1);
                pf[n] = (struct pollfd){.fd = devs[n].fd, .events = POLLIN};
        }
        printf("READING %d\n", n);
        for (live = n; live > 0;) {
                if (poll(pf, (nfds_t)n, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        perror("poll");
                        return 1;
                }
                for (int i = 0; i < n; i++) {
                        struct input_event ev[64];
                        if (pf[i].fd < 0 || !pf[i].revents)
                                continue;
                        ssize_t r = read(pf[i].fd, ev, sizeof(ev));
                        if (r <= 0) {
                                if (r < 0 && errno == EINTR)
                                        continue;
                                printf("GONE %s %s\n", devs[i].label, r < 0 ? strerror(errno) : "EOF");
                                close(pf[i].fd);
                                pf[i].fd = -1;
                                live--;
                                continue;
                        }
                        for (size_t k = 0; k < (size_t)r / sizeof(ev[0]); k++)
                                on_event(&devs[i], &ev[k]);
                }
        }
        return 0;
}
