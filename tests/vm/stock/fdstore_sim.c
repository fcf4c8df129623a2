/* SPDX-License-Identifier: MIT */
/* vmsig-fdstore-sim: plays systemd's part for one Type=notify service with a
 * file descriptor store, where the stock test guest has no systemd: the
 * notify socket (READY=1, FDSTORE=1 + FDNAME=, SCM_RIGHTS), and a restart
 * that hands the stored fds back (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES, fds
 * from 3), the way `systemctl restart` does.
 *
 *   vmsig-fdstore-sim DIR CMD [ARGS...]
 *
 * Starts CMD with NOTIFY_SOCKET=DIR/notify. On SIGUSR1: SIGTERM to CMD, wait,
 * start it again with the store. On SIGTERM: SIGTERM to CMD, wait, close the
 * store (systemd flushes it when the unit stops), exit. Status lines on
 * stdout: "SIM READY N" (the Nth start sent READY=1), "SIM STORED NAME",
 * "SIM EXITED N status=S", "SIM STOPPED". */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define STORE_MAX 8

static int store_fd[STORE_MAX];
static char store_name[STORE_MAX][32];
static int n_store;

static pid_t spawn(char **argv, const char *notify_path)
{
        pid_t pid = fork();
        if (pid != 0)
                return pid;
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        setenv("NOTIFY_SOCKET", notify_path, 1);
        if (n_store > 0) {
                char names[STORE_MAX * 33] = "", num[32];
                int hi[STORE_MAX];
                /* out of the way of 3.. first, then into place */
                for (int i = 0; i < n_store; i++)
                        hi[i] = fcntl(store_fd[i], F_DUPFD, 100);
                for (int i = 0; i < n_store; i++) {
                        dup2(hi[i], 3 + i);
                        close(hi[i]);
                        if (i)
                                strcat(names, ":");
                        strcat(names, store_name[i]);
                }
                snprintf(num, sizeof(num), "%d", n_store);
                setenv("LISTEN_FDS", num, 1);
                snprintf(num, sizeof(num), "%d", (int)getpid());
                setenv("LISTEN_PID", num, 1);
                setenv("LISTEN_FDNAMES", names, 1);
        }
        execvp(argv[0], argv);
        perror(argv[0]);
        _exit(127);
}

/* One notify datagram: READY=1 counts, FDSTORE=1 keeps its fds. */
static bool on_notify(int sock)
{
        char buf[1024], fdname[32] = "stored";
        union {
                /* room for the credentials SO_PASSCRED adds, too */
                char buf[CMSG_SPACE(STORE_MAX * sizeof(int)) + CMSG_SPACE(sizeof(struct ucred))];
                struct cmsghdr align;
        } u;
        struct iovec iov = {buf, sizeof(buf) - 1};
        struct msghdr mh = {
            .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
        ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
        bool ready = false, store = false;
        int fds[STORE_MAX], nfds = 0;

        if (n < 0)
                return false;
        if (mh.msg_flags & MSG_CTRUNC)
                printf("SIM TRUNCATED\n");
        buf[n] = 0;
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
                if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS)
                        for (size_t i = 0; i < (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int) && nfds < STORE_MAX;
                             i++)
                                memcpy(&fds[nfds++], CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
        for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
                if (!strcmp(line, "READY=1"))
                        ready = true;
                else if (!strcmp(line, "FDSTORE=1"))
                        store = true;
                else if (!strncmp(line, "FDNAME=", 7))
                        snprintf(fdname, sizeof(fdname), "%s", line + 7);
        }
        for (int i = 0; i < nfds; i++) {
                if (store && n_store < STORE_MAX) {
                        store_fd[n_store] = fds[i];
                        snprintf(store_name[n_store++], sizeof(store_name[0]), "%s", fdname);
                        printf("SIM STORED %s\n", fdname);
                } else {
                        close(fds[i]);
                }
        }
        return ready;
}

static int stop_child(pid_t pid)
{
        int st = 0;
        kill(pid, SIGTERM);
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
                ;
        return st;
}

int main(int argc, char **argv)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        sigset_t mask;
        int starts = 1;

        if (argc < 3) {
                fprintf(stderr, "usage: %s DIR CMD [ARGS...]\n", argv[0]);
                return 2;
        }
        setvbuf(stdout, NULL, _IOLBF, 0);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/notify", argv[1]);
        unlink(sa.sun_path);
        int sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        int one = 1;
        if (sock < 0 || bind(sock, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
            setsockopt(sock, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0) {
                perror(sa.sun_path);
                return 1;
        }
        sigemptyset(&mask);
        sigaddset(&mask, SIGUSR1);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGCHLD);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        int sfd = signalfd(-1, &mask, SFD_CLOEXEC);
        pid_t child = spawn(argv + 2, sa.sun_path);

        for (;;) {
                struct pollfd pf[2] = {{sock, POLLIN, 0}, {sfd, POLLIN, 0}};
                if (poll(pf, 2, -1) < 0)
                        continue;
                if (pf[0].revents & POLLIN && on_notify(sock))
                        printf("SIM READY %d\n", starts);
                if (!(pf[1].revents & POLLIN))
                        continue;
                struct signalfd_siginfo si;
                if (read(sfd, &si, sizeof(si)) != sizeof(si))
                        continue;
                if (si.ssi_signo == SIGUSR1 && child > 0) {
                        int st = stop_child(child);
                        printf("SIM EXITED %d status=%d\n", starts, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
                        starts++;
                        child = spawn(argv + 2, sa.sun_path);
                } else if (si.ssi_signo == SIGTERM) {
                        if (child > 0) {
                                int st = stop_child(child);
                                printf("SIM EXITED %d status=%d\n", starts,
                                       WIFEXITED(st) ? WEXITSTATUS(st) : -1);
                        }
                        for (int i = 0; i < n_store; i++)
                                close(store_fd[i]);
                        printf("SIM STOPPED\n");
                        return 0;
                } else if (si.ssi_signo == SIGCHLD && child > 0 && waitpid(child, NULL, WNOHANG) == child) {
                        printf("SIM EXITED %d status=unexpected\n", starts);
                        child = -1;
                }
        }
}
