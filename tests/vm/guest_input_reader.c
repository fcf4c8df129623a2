/* SPDX-License-Identifier: MIT */
/* Runs inside the test guest (static, built by build-guest.sh with the host
 * gcc): prints every input event the guest kernel delivers, so tests can
 * check what injected input the guest saw, in order. Lines on stdout (the
 * serial console):
 *
 *   VMSIG-INPUT-DEV ev=N name=NAME     a device appeared (/dev/input/eventN)
 *   VMSIG-INPUT-READY                  first scan done
 *   VMSIG-INPUT ev=N type=T code=C value=V
 *
 * EV_MSC (scan codes) is left out; EV_SYN is printed, so frames are visible.
 * /dev/input is rescanned every 250 ms: modules load in the background. */
#include <dirent.h>
#include <fcntl.h>
#include <linux/input.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define MAXDEV 32

static struct pollfd pfd[MAXDEV];
static int num[MAXDEV];
static int ndev;

static int known(int n)
{
        for (int i = 0; i < ndev; i++)
                if (num[i] == n)
                        return 1;
        return 0;
}

static void scan(void)
{
        DIR *d = opendir("/dev/input");
        struct dirent *de;

        if (!d)
                return;
        while ((de = readdir(d)) && ndev < MAXDEV) {
                int n;
                char path[64], name[128] = "?";
                if (sscanf(de->d_name, "event%d", &n) != 1 || known(n))
                        continue;
                snprintf(path, sizeof(path), "/dev/input/%s", de->d_name);
                int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
                if (fd < 0)
                        continue;
                ioctl(fd, EVIOCGNAME(sizeof(name) - 1), name);
                pfd[ndev].fd = fd;
                pfd[ndev].events = POLLIN;
                num[ndev++] = n;
                printf("VMSIG-INPUT-DEV ev=%d name=%s\n", n, name);
        }
        closedir(d);
}

int main(void)
{
        setvbuf(stdout, NULL, _IOLBF, 0);
        scan();
        printf("VMSIG-INPUT-READY\n");
        for (;;) {
                int r = poll(pfd, (nfds_t)ndev, 250);
                if (r <= 0) {
                        scan();
                        continue;
                }
                for (int i = 0; i < ndev; i++) {
                        struct input_event ev[64];
                        if (!(pfd[i].revents & POLLIN))
                                continue;
                        ssize_t k = read(pfd[i].fd, ev, sizeof(ev));
                        for (ssize_t j = 0; j < k / (ssize_t)sizeof(ev[0]); j++) {
                                if (ev[j].type == EV_MSC)
                                        continue;
                                printf("VMSIG-INPUT ev=%d type=%u code=%u value=%d\n", num[i], ev[j].type,
                                       ev[j].code, ev[j].value);
                        }
                }
        }
}
