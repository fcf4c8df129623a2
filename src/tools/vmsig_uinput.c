/* SPDX-License-Identifier: MIT */
/* vmsig-uinput: creates and holds a VM's uinput keyboard + pointer pair.
 *
 *   vmsig-uinput probe
 *   vmsig-uinput hold VM [--dir DIR] [--allow-uid UID]
 *
 * `hold` runs before QEMU starts (libvirt hook "prepare", or the
 * vmsig-uinput@VM.service template it starts) and until the VM is released:
 *   - creates "vmsig VM keyboard" and "vmsig VM pointer" (phys vmsig/VM/kbd,
 *     vmsig/VM/ptr), or takes them back from the systemd fd store after a
 *     restart of this service (FDNAME=kbd / ptr);
 *   - prints KEYBOARD=/dev/input/eventN, POINTER=..., and the QEMU arguments,
 *     and writes the same to DIR/VM.env (atomically);
 *   - serves DIR/VM.sock (SOCK_SEQPACKET): each connection gets the two
 *     uinput fds (SCM_RIGHTS), which is how vmsigd's input driver gets them;
 *   - READY=1 to systemd once all of that is in place.
 * The devices live as long as any holder of the fds: this process, and
 * vmsigd's dups. A vmsigd restart therefore never destroys them (QEMU's
 * input-linux would lose them for good). On SIGTERM the files are removed;
 * without systemd the devices are destroyed, under systemd (fds in the store)
 * they go when the last fd closes, so a restart of the service keeps them. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <linux/uinput.h>

#ifdef VMSIG_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "vmctl/vmctl.h"

static int usage(FILE *f, int code)
{
        fprintf(f,
                "usage: vmsig-uinput probe\n"
                "       vmsig-uinput hold VM [--dir DIR] [--allow-uid UID]\n"
                "  probe  say whether /dev/uinput is usable (exit 0) or why not (exit 1)\n"
                "  hold   create VM's uinput keyboard + pointer, print their /dev/input nodes,\n"
                "         serve their fds on DIR/VM.sock until SIGTERM (DIR: %s)\n",
                VMCTL_UINPUT_DIR);
        return code;
}

#ifdef VMSIG_HAVE_SYSTEMD
/* After a restart of this service the pair comes back from the fd store. */
static int from_fdstore(struct vmctl_uinput_pair *p)
{
        char **names = NULL;
        int n = sd_listen_fds_with_names(0, &names);

        for (int i = 0; i < n; i++) {
                int fd = SD_LISTEN_FDS_START + i;
                if (names && names[i] && !strcmp(names[i], "kbd"))
                        p->kbd_fd = fd;
                else if (names && names[i] && !strcmp(names[i], "ptr"))
                        p->ptr_fd = fd;
                if (names)
                        free(names[i]);
        }
        free(names);
        return p->kbd_fd >= 0 && p->ptr_fd >= 0 ? 0 : -ENOENT;
}

/* Needs FileDescriptorStoreMax=2 in the unit; harmless without systemd.
 * True when both fds went to systemd. */
static bool to_fdstore(const struct vmctl_uinput_pair *p)
{
        int fd = p->kbd_fd;
        int k = sd_pid_notify_with_fds(0, 0, "FDSTORE=1\nFDNAME=kbd", &fd, 1);
        fd = p->ptr_fd;
        return sd_pid_notify_with_fds(0, 0, "FDSTORE=1\nFDNAME=ptr", &fd, 1) > 0 && k > 0;
}

/* The event node of a device from the fd store: asked of the fd itself
 * (UI_GET_SYSNAME), not looked up by name, which anyone allowed to open
 * /dev/uinput can copy. */
static void node_of_fd(int fd, char *node, size_t len)
{
        char sys[64] = "", path[128];
        struct dirent *e;
        DIR *d;

        if (ioctl(fd, UI_GET_SYSNAME(sizeof(sys)), sys) < 0 || strchr(sys, '/'))
                return;
        snprintf(path, sizeof(path), "/sys/devices/virtual/input/%s", sys);
        if (!(d = opendir(path)))
                return;
        while ((e = readdir(d)))
                if (!strncmp(e->d_name, "event", 5)) {
                        snprintf(node, len, "/dev/input/%s", e->d_name);
                        break;
                }
        closedir(d);
}
#endif

static int write_env(const char *dir, const char *vm, const char *text)
{
        char tmp[256], dst[256];
        snprintf(dst, sizeof(dst), "%s/%s.env", dir, vm);
        snprintf(tmp, sizeof(tmp), "%s/.%s.env.tmp", dir, vm);
        FILE *f = fopen(tmp, "we");
        if (!f)
                return -errno;
        fputs(text, f);
        if (fclose(f) != 0 || rename(tmp, dst) < 0) {
                int r = -errno;
                unlink(tmp);
                return r;
        }
        return 0;
}

static int hold(const char *vm, const char *dir, long allow_uid)
{
        struct vmctl_uinput_pair p = {.kbd_fd = -1, .ptr_fd = -1};
        char msg[VMCTL_MSG_MAX], text[1024], sock_path[256], env_path[256];
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        sigset_t mask;
        int lfd, sfd, r;
        bool stored = false; /* systemd holds the fds across our restarts */

#ifdef VMSIG_HAVE_SYSTEMD
        if (from_fdstore(&p) == 0) {
                stored = true;
                snprintf(p.kbd_name, sizeof(p.kbd_name), "vmsig %s keyboard", vm);
                snprintf(p.ptr_name, sizeof(p.ptr_name), "vmsig %s pointer", vm);
                node_of_fd(p.kbd_fd, p.kbd_node, sizeof(p.kbd_node));
                node_of_fd(p.ptr_fd, p.ptr_node, sizeof(p.ptr_node));
        } else
#endif
        {
                r = vmctl_uinput_create(vm, &p, msg);
                if (r < 0) {
                        fprintf(stderr, "vmsig-uinput: %s\n", msg);
                        return 1;
                }
#ifdef VMSIG_HAVE_SYSTEMD
                stored = to_fdstore(&p);
#endif
        }
        if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
                fprintf(stderr, "vmsig-uinput: %s: %m\n", dir);
                return 1;
        }
        snprintf(sock_path, sizeof(sock_path), "%s/%s.sock", dir, vm);
        snprintf(env_path, sizeof(env_path), "%s/%s.env", dir, vm);
        if (strlen(sock_path) >= sizeof(sa.sun_path)) {
                fprintf(stderr, "vmsig-uinput: socket path too long: %s\n", sock_path);
                return 1;
        }
        strcpy(sa.sun_path, sock_path);
        lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        (void)unlink(sock_path);
        if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(sock_path, 0660) < 0 ||
            listen(lfd, 8) < 0) {
                fprintf(stderr, "vmsig-uinput: %s: %m\n", sock_path);
                return 1;
        }
        snprintf(text, sizeof(text),
                 "KEYBOARD=%s\nPOINTER=%s\n"
                 "QEMU_ARGS=\"-object input-linux,id=vmsig-kbd,evdev=%s,grab-toggle=ctrl-ctrl "
                 "-object input-linux,id=vmsig-ptr,evdev=%s\"\n",
                 p.kbd_node, p.ptr_node, p.kbd_node, p.ptr_node);
        if ((r = write_env(dir, vm, text)) < 0) {
                fprintf(stderr, "vmsig-uinput: %s: %s\n", env_path, strerror(-r));
                return 1;
        }
        fputs(text, stdout);
        fflush(stdout);

        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);
        sfd = signalfd(-1, &mask, SFD_CLOEXEC);
#ifdef VMSIG_HAVE_SYSTEMD
        (void)sd_notifyf(0, "READY=1\nSTATUS=holding %s and %s for %s", p.kbd_node, p.ptr_node, vm);
#endif
        for (;;) {
                struct pollfd pf[2] = {{lfd, POLLIN, 0}, {sfd, POLLIN, 0}};
                if (poll(pf, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        break;
                }
                if (pf[1].revents)
                        break;
                if (!(pf[0].revents & POLLIN))
                        continue;
                int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
                if (c < 0)
                        continue;
                struct ucred cr;
                socklen_t cl = sizeof(cr);
                /* root, our own uid, or the one uid we were told to serve */
                if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cr, &cl) == 0 &&
                    (cr.uid == 0 || cr.uid == getuid() || (allow_uid >= 0 && cr.uid == (uid_t)allow_uid)))
                        (void)vmctl_holder_send(c, &p);
                close(c);
        }
        unlink(sock_path);
        unlink(env_path);
        if (stored) {
                /* SIGTERM is also how `systemctl restart` begins: destroying
                 * the devices here would hand the next instance dead fds from
                 * the store. Close ours first, so the UI_DEV_DESTROY in
                 * vmctl_uinput_pair_close() fails (EBADF) and only frees the
                 * handles; the devices go when systemd flushes the store at
                 * stop and vmsigd lets go of the VM. */
                close(p.kbd_fd);
                close(p.ptr_fd);
                p.kbd_fd = p.ptr_fd = -1;
        }
        vmctl_uinput_pair_close(&p);
        return 0;
}

int main(int argc, char **argv)
{
        char msg[VMCTL_MSG_MAX];

        if (argc == 2 && !strcmp(argv[1], "probe")) {
                int r = vmctl_uinput_probe(msg);
                printf("%s\n", msg);
                return r < 0 ? 1 : 0;
        }
        if (argc >= 3 && !strcmp(argv[1], "hold")) {
                const char *dir = VMCTL_UINPUT_DIR;
                long allow_uid = -1;
                for (int i = 3; i < argc; i++) {
                        if (!strcmp(argv[i], "--dir") && i + 1 < argc)
                                dir = argv[++i];
                        else if (!strcmp(argv[i], "--allow-uid") && i + 1 < argc)
                                allow_uid = strtol(argv[++i], NULL, 10);
                        else
                                return usage(stderr, 2);
                }
                return hold(argv[2], dir, allow_uid);
        }
        if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")))
                return usage(stdout, 0);
        return usage(stderr, 2);
}
