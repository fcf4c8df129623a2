/* SPDX-License-Identifier: MIT */
/* vmctl uinput backend: the device pair (created with libevdev), the event
 * frames one command becomes, and the holder protocol that hands the uinput
 * fds from `vmsig-uinput hold` to the daemon. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <libevdev/libevdev-uinput.h>
#include <libevdev/libevdev.h>
#include <linux/input.h>
#include <linux/uinput.h>

#include "vmctl/internal.h"

#define HOLDER_MAGIC "vmsig-uinput 1 "

/* ---- frames ---- */

static void put(struct input_event *ev, size_t *n, uint16_t type, uint16_t code, int32_t value)
{
        memset(&ev[*n], 0, sizeof(ev[*n])); /* the kernel stamps the time */
        ev[*n].type = type;
        ev[*n].code = code;
        ev[*n].value = value;
        (*n)++;
}

/* QEMU input-linux turns any non-zero REL_WHEEL of a frame into ONE click at
 * SYN time, so N clicks are N frames. */
static void clicks(struct input_event *ev, size_t *n, uint16_t axis, int32_t v)
{
        for (int32_t i = 0; i < (v > 0 ? v : -v); i++) {
                put(ev, n, EV_REL, axis, v > 0 ? 1 : -1);
                put(ev, n, EV_SYN, SYN_REPORT, 0);
        }
}

int vmctl_uinput_events(const struct vmctl_cmd *c, struct input_event *ev, size_t cap, int *ret_dev,
                        char *msg)
{
        static const uint16_t btn[] = {
            [VMCTL_BTN_LEFT] = BTN_LEFT, [VMCTL_BTN_RIGHT] = BTN_RIGHT, [VMCTL_BTN_MIDDLE] = BTN_MIDDLE};
        size_t n = 0;
        int r = vmctl_validate(c, msg);

        if (r < 0)
                return r;
        if (cap < (size_t)(c->op == VMCTL_WHEEL ? 4 * VMCTL_WHEEL_MAX : 3))
                return -ENOBUFS;
        *ret_dev = c->op == VMCTL_KEY ? 0 : 1;
        switch (c->op) {
        case VMCTL_MOVE_ABS:
                /* fuzz 0 on the axes: the kernel drops only exact repeats */
                put(ev, &n, EV_ABS, ABS_X, c->x);
                put(ev, &n, EV_ABS, ABS_Y, c->y);
                break;
        case VMCTL_MOVE_REL:
                if (c->x)
                        put(ev, &n, EV_REL, REL_X, c->x);
                if (c->y)
                        put(ev, &n, EV_REL, REL_Y, c->y);
                if (!n)
                        return 0;
                break;
        case VMCTL_BUTTON:
                put(ev, &n, EV_KEY, btn[c->code], c->value);
                break;
        case VMCTL_KEY:
                put(ev, &n, EV_KEY, (uint16_t)c->code, c->value);
                break;
        case VMCTL_WHEEL:
                clicks(ev, &n, REL_WHEEL, c->y);
                clicks(ev, &n, REL_HWHEEL, c->x);
                return (int)n;
        }
        put(ev, &n, EV_SYN, SYN_REPORT, 0);
        return (int)n;
}

/* One write(2) for the whole batch: uinput injects the frames in order and
 * the SYN_REPORT makes them one report for evdev readers (QEMU). */
static int write_frames(int fd, const struct input_event *ev, size_t n, char *msg)
{
        size_t len = n * sizeof(*ev);
        ssize_t w;

        do
                w = write(fd, ev, len);
        while (w < 0 && errno == EINTR);
        if (w < 0) {
                int r = -errno;
                vmctl_msg(msg, "uinput write: %s", strerror(errno));
                return r;
        }
        if ((size_t)w != len) {
                vmctl_msg(msg, "uinput write: short (%zd of %zu bytes)", w, len);
                return -EIO;
        }
        return 0;
}

int vmctl_uinput_submit(struct vmctl *vm, const struct vmctl_cmd *c, char *msg)
{
        struct input_event ev[4 * VMCTL_WHEEL_MAX + 4];
        int dev, n = vmctl_uinput_events(c, ev, sizeof(ev) / sizeof(ev[0]), &dev, msg);

        if (n <= 0)
                return n;
        return write_frames(dev == 0 ? vm->kbd_fd : vm->ptr_fd, ev, (size_t)n, msg);
}

static bool is_kbd_key(unsigned code)
{
        return (code >= 1 && code < BTN_MISC) || (code >= KEY_OK && code <= VMCTL_KEY_LAST);
}

int vmctl_uinput_reset(struct vmctl *vm)
{
        struct input_event ev[VMCTL_KEY_MAX + 2];
        size_t n = 0;
        int r;

        for (unsigned code = 1; code <= VMCTL_KEY_LAST; code++)
                if (is_kbd_key(code))
                        put(ev, &n, EV_KEY, (uint16_t)code, 0);
        put(ev, &n, EV_SYN, SYN_REPORT, 0);
        r = write_frames(vm->kbd_fd, ev, n, NULL);
        n = 0;
        put(ev, &n, EV_KEY, BTN_LEFT, 0);
        put(ev, &n, EV_KEY, BTN_RIGHT, 0);
        put(ev, &n, EV_KEY, BTN_MIDDLE, 0);
        put(ev, &n, EV_SYN, SYN_REPORT, 0);
        int k = write_frames(vm->ptr_fd, ev, n, NULL);
        return r < 0 ? r : k;
}

/* ---- creating the pair ---- */

int vmctl_uinput_probe(char *msg)
{
        int fd = open("/dev/uinput", O_WRONLY | O_NONBLOCK | O_CLOEXEC);

        if (fd < 0) {
                int r = -errno;
                if (errno == ENOENT)
                        vmctl_msg(msg, "/dev/uinput does not exist (modprobe uinput; containers and some "
                                       "build machines have none)");
                else
                        vmctl_msg(msg, "/dev/uinput: %s (a udev rule can give the daemon's group access)",
                                  strerror(errno));
                return r;
        }
        close(fd);
        vmctl_msg(msg, "/dev/uinput is usable");
        return 0;
}

static bool name_ok(const char *s)
{
        size_t n = strlen(s);

        if (!n || n > VMCTL_NAME_MAX)
                return false;
        for (; *s; s++)
                if ((unsigned char)*s <= ' ' || *s == '/' || (unsigned char)*s >= 0x7f)
                        return false;
        return true;
}

static int make_dev(const char *name, const char *phys, bool pointer, int *ret_fd, void **ret_ui, char *node,
                    size_t node_len, char *msg)
{
        struct libevdev *dev = libevdev_new();
        struct libevdev_uinput *ui = NULL;
        int fd, r;

        if (!dev)
                return -ENOMEM;
        libevdev_set_name(dev, name);
        libevdev_set_phys(dev, phys);
        libevdev_set_id_bustype(dev, BUS_VIRTUAL);
        libevdev_set_id_vendor(dev, 0x5653); /* "VS" */
        libevdev_set_id_product(dev, pointer ? 2 : 1);
        libevdev_set_id_version(dev, 1);
        if (pointer) {
                /* QEMU input-linux treats a device as a mouse only with
                 * REL_X/ABS_X AND a button; it rescales ABS by min/max. */
                struct input_absinfo abs = {.minimum = 0, .maximum = VMCTL_ABS_MAX, .fuzz = 0, .flat = 0};
                libevdev_enable_event_type(dev, EV_ABS);
                libevdev_enable_event_code(dev, EV_ABS, ABS_X, &abs);
                libevdev_enable_event_code(dev, EV_ABS, ABS_Y, &abs);
                libevdev_enable_event_type(dev, EV_REL);
                libevdev_enable_event_code(dev, EV_REL, REL_X, NULL);
                libevdev_enable_event_code(dev, EV_REL, REL_Y, NULL);
                libevdev_enable_event_code(dev, EV_REL, REL_WHEEL, NULL);
                libevdev_enable_event_code(dev, EV_REL, REL_HWHEEL, NULL);
                libevdev_enable_event_type(dev, EV_KEY);
                libevdev_enable_event_code(dev, EV_KEY, BTN_LEFT, NULL);
                libevdev_enable_event_code(dev, EV_KEY, BTN_RIGHT, NULL);
                libevdev_enable_event_code(dev, EV_KEY, BTN_MIDDLE, NULL);
        } else {
                /* Keys only, no buttons (else QEMU runs the mouse path too)
                 * and no EV_REP (else the kernel autorepeats held keys; the
                 * guest does its own repeat). */
                libevdev_enable_event_type(dev, EV_KEY);
                for (unsigned code = 1; code <= VMCTL_KEY_LAST; code++)
                        if (is_kbd_key(code))
                                libevdev_enable_event_code(dev, EV_KEY, code, NULL);
        }
        fd = open("/dev/uinput", O_RDWR | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) {
                r = -errno;
                vmctl_uinput_probe(msg);
                libevdev_free(dev);
                return r;
        }
        /* libevdev never passes the phys on to uinput (it has no
         * UI_SET_PHYS call): set it on the fd first, or the device has none
         * and the udev rule cannot tell it is ours. */
        if (ioctl(fd, UI_SET_PHYS, phys) < 0) {
                r = -errno;
                vmctl_msg(msg, "uinput device '%s': setting phys %s: %s", name, phys, strerror(errno));
                libevdev_free(dev);
                close(fd);
                return r;
        }
        r = libevdev_uinput_create_from_device(dev, fd, &ui);
        libevdev_free(dev);
        if (r < 0) {
                vmctl_msg(msg, "creating uinput device '%s': %s", name, strerror(-r));
                close(fd);
                return r;
        }
        snprintf(node, node_len, "%s",
                 libevdev_uinput_get_devnode(ui) ? libevdev_uinput_get_devnode(ui) : "");
        /* Writing needs only the fd (one write(2) per batch); the handle is
         * kept to destroy the device when the pair is closed. */
        *ret_ui = ui;
        *ret_fd = fd;
        return 0;
}

int vmctl_uinput_create(const char *vm_name, struct vmctl_uinput_pair *p, char *msg)
{
        int r;

        memset(p, 0, sizeof(*p));
        p->kbd_fd = p->ptr_fd = -1;
        if (!vm_name || !name_ok(vm_name)) {
                vmctl_msg(msg, "VM name must be 1..%d printable characters without '/' or spaces",
                          VMCTL_NAME_MAX);
                return -EINVAL;
        }
        snprintf(p->kbd_name, sizeof(p->kbd_name), "vmsig %s keyboard", vm_name);
        snprintf(p->ptr_name, sizeof(p->ptr_name), "vmsig %s pointer", vm_name);
        snprintf(p->kbd_phys, sizeof(p->kbd_phys), "vmsig/%s/kbd", vm_name);
        snprintf(p->ptr_phys, sizeof(p->ptr_phys), "vmsig/%s/ptr", vm_name);
        r = make_dev(p->kbd_name, p->kbd_phys, false, &p->kbd_fd, &p->kbd_ui_, p->kbd_node,
                     sizeof(p->kbd_node), msg);
        if (r == 0)
                r = make_dev(p->ptr_name, p->ptr_phys, true, &p->ptr_fd, &p->ptr_ui_, p->ptr_node,
                             sizeof(p->ptr_node), msg);
        if (r < 0)
                vmctl_uinput_pair_close(p);
        return r;
}

void vmctl_uinput_pair_close(struct vmctl_uinput_pair *p)
{
        /* libevdev_uinput_destroy() does not close an fd it did not open */
        if (p->kbd_ui_)
                libevdev_uinput_destroy(p->kbd_ui_);
        if (p->ptr_ui_)
                libevdev_uinput_destroy(p->ptr_ui_);
        p->kbd_ui_ = p->ptr_ui_ = NULL;
        if (p->kbd_fd >= 0)
                close(p->kbd_fd);
        if (p->ptr_fd >= 0)
                close(p->ptr_fd);
        p->kbd_fd = p->ptr_fd = -1;
}

/* ---- holder protocol ---- */

int vmctl_holder_send(int conn, const struct vmctl_uinput_pair *p)
{
        char buf[256];
        int fds[2] = {p->kbd_fd, p->ptr_fd};
        union {
                char buf[CMSG_SPACE(sizeof(fds))];
                struct cmsghdr align;
        } u;
        int len = snprintf(buf, sizeof(buf), HOLDER_MAGIC "kbd=%s ptr=%s", p->kbd_node, p->ptr_node);
        struct iovec iov = {buf, (size_t)len};
        struct msghdr mh = {
            .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
        struct cmsghdr *cm;

        memset(u.buf, 0, sizeof(u.buf));
        cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(fds));
        memcpy(CMSG_DATA(cm), fds, sizeof(fds));
        return sendmsg(conn, &mh, MSG_NOSIGNAL) == len ? 0 : -errno;
}

static int take_word(const char **p, const char *end, const char *key, char *out, size_t out_len)
{
        size_t kl = strlen(key);
        const char *s = *p, *e;

        if ((size_t)(end - s) < kl || memcmp(s, key, kl))
                return -EPROTO;
        s += kl;
        for (e = s; e < end && *e != ' '; e++)
                if ((unsigned char)*e < 0x21 || (unsigned char)*e > 0x7e)
                        return -EPROTO;
        if ((size_t)(e - s) >= out_len)
                return -EPROTO;
        memcpy(out, s, (size_t)(e - s));
        out[e - s] = 0;
        *p = e < end ? e + 1 : e;
        return 0;
}

int vmctl_holder_parse(const char *buf, size_t len, char *kbd_node, char *ptr_node, size_t node_len)
{
        const char *p = buf, *end = buf + len;
        size_t ml = strlen(HOLDER_MAGIC);

        if (len < ml || memcmp(buf, HOLDER_MAGIC, ml))
                return -EPROTO;
        p += ml;
        if (take_word(&p, end, "kbd=", kbd_node, node_len) < 0 ||
            take_word(&p, end, "ptr=", ptr_node, node_len) < 0)
                return -EPROTO;
        return p == end ? 0 : -EPROTO;
}

int vmctl_holder_fetch(const char *path, int *ret_kbd, int *ret_ptr, char *kbd_node, char *ptr_node,
                       size_t node_len, char *msg)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        struct timeval tv = {.tv_sec = 1};
        char buf[256];
        union {
                char buf[CMSG_SPACE(4 * sizeof(int))];
                struct cmsghdr align;
        } u;
        struct iovec iov = {buf, sizeof(buf) - 1};
        struct msghdr mh = {
            .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
        int fds[4], nfds = 0, fd, r;
        ssize_t n;

        if (strlen(path) >= sizeof(sa.sun_path)) {
                vmctl_msg(msg, "uinput holder socket path too long");
                return -ENAMETOOLONG;
        }
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                r = -errno;
                vmctl_msg(msg, "uinput holder %s: %s", path, strerror(errno));
                close(fd);
                return r;
        }
        do
                n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
        while (n < 0 && errno == EINTR);
        r = n < 0 ? -errno : 0;
        close(fd);
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); n >= 0 && cm; cm = CMSG_NXTHDR(&mh, cm)) {
                if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
                        continue;
                size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (size_t i = 0; i < k && nfds < 4; i++)
                        memcpy(&fds[nfds++], CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
        }
        if (r == 0 && (n <= 0 || (mh.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) || nfds != 2 ||
                       vmctl_holder_parse(buf, (size_t)n, kbd_node, ptr_node, node_len) < 0))
                r = -EPROTO;
        if (r < 0) {
                for (int i = 0; i < nfds; i++)
                        close(fds[i]);
                vmctl_msg(msg, "uinput holder %s: %s", path, r == -EPROTO ? "bad handshake" : strerror(-r));
                return r;
        }
        *ret_kbd = fds[0];
        *ret_ptr = fds[1];
        return 0;
}
