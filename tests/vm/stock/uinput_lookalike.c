/* SPDX-License-Identifier: MIT */
/* vmsig-uinput-lookalike: creates one uinput key device with a name, phys and
 * id of the caller's choosing, prints its event node and holds it until it
 * is killed (the device goes with its fd). The stock-guest checks use it to
 * show that packaging/60-vmsig-uinput.rules ignores devices that only look
 * like vmsig's (hostile names, wrong ids).
 *
 *   vmsig-uinput-lookalike NAME PHYS VENDOR PRODUCT     (ids in hex) */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/uinput.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

int main(int argc, char **argv)
{
        struct uinput_setup us = {0};
        char sys[64] = "", path[160];

        if (argc != 5) {
                fprintf(stderr, "usage: %s NAME PHYS VENDOR PRODUCT\n", argv[0]);
                return 2;
        }
        int fd = open("/dev/uinput", O_RDWR | O_CLOEXEC);
        if (fd < 0) {
                perror("/dev/uinput");
                return 1;
        }
        snprintf(us.name, sizeof(us.name), "%s", argv[1]);
        us.id.bustype = BUS_VIRTUAL;
        us.id.vendor = (unsigned short)strtoul(argv[3], NULL, 16);
        us.id.product = (unsigned short)strtoul(argv[4], NULL, 16);
        if (ioctl(fd, UI_SET_EVBIT, EV_KEY) < 0 || ioctl(fd, UI_SET_KEYBIT, KEY_A) < 0 ||
            ioctl(fd, UI_SET_PHYS, argv[2]) < 0 || ioctl(fd, UI_DEV_SETUP, &us) < 0 ||
            ioctl(fd, UI_DEV_CREATE) < 0 || ioctl(fd, UI_GET_SYSNAME(sizeof(sys)), sys) < 0) {
                perror("uinput");
                return 1;
        }
        /* the event node is the one eventN entry below the input device */
        snprintf(path, sizeof(path), "/sys/devices/virtual/input/%s", sys);
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d)))
                if (!strncmp(e->d_name, "event", 5))
                        printf("/dev/input/%s\n", e->d_name);
        if (d)
                closedir(d);
        fflush(stdout);
        for (;;)
                pause();
}
