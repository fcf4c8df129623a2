/* SPDX-License-Identifier: MIT */
#ifndef VMSIG_TESTS_TEST_RAM_COMMON_H
#define VMSIG_TESTS_TEST_RAM_COMMON_H

/* Shared by the test_ram_* attacks on the RAM file: a control (root, or
 * uid 65534 connecting on its own) takes the read-only fd of a MEMCTX and
 * tries every route to write access. Include after vmsigd_harness.h. */

#include <sys/mman.h>

#include <vmsig/bus.h>

#define RAM_OTHER_UID 65534
/* the admission the tests give uid 65534: read-only perception */
#define RAM_OTHER_CONF "[uid:65534]\ncaps = roster,memctx\n"

/* A MEMCTX of endpoint ep: subscribe and wait for a valid one; its fd (the
 * caller closes it) or a negative errno. */
static VH_UNUSED int ram_memctx_fd(struct vmsig_client *c, uint32_t ep, struct vmsig_memctx *ctx,
                                   int timeout_ms)
{
        uint64_t deadline = vh_now_ms() + (uint64_t)timeout_ms;
        uint64_t corr = 0;
        int r = vmsig_client_subscribe(c, ep, VMSIG_KIND_BIT(VMSIG_EV_MEMCTX), &corr);

        if (r < 0)
                return r;
        for (;;) {
                struct vmsig_event ev;
                int fd = -1;
                r = vmsig_client_recv_wait(c, &ev, &fd, NULL, vh_left(deadline));
                if (r == -EINTR)
                        continue;
                if (r < 0)
                        return r;
                if (r == VMSIG_CLIENT_EVENT && ev.hdr.kind == VMSIG_EV_MEMCTX && ev.hdr.endpoint == ep &&
                    fd >= 0 && vmsig_memctx_from_event(&ev, fd, ctx) == 0 && ctx->fd >= 0)
                        return fd;
                if (fd >= 0)
                        close(fd);
        }
}

enum { RAM_MAX_ROUTES = 32 };

/* What each route did: err 0 means it worked (a hole if it is a write). */
struct ram_routes {
        int n;
        int got_fd; /* the child got its MEMCTX fd */
        struct {
                char what[40];
                int err;
                int is_write; /* 0: a door (reopen) that may open for root */
        } r[RAM_MAX_ROUTES];
};

static VH_UNUSED void ram_note(struct ram_routes *o, const char *what, int ok, int is_write)
{
        if (o->n >= RAM_MAX_ROUTES)
                return;
        snprintf(o->r[o->n].what, sizeof(o->r[o->n].what), "%s", what);
        o->r[o->n].err = ok ? 0 : errno ? errno : -1;
        o->r[o->n].is_write = is_write;
        o->n++;
}

/* Every way to change the file through fd itself. The bytes written are
 * the ones already there, so a hole shows without wrecking the guest. */
static VH_UNUSED void ram_try_writes(int fd, const char *tag, struct ram_routes *o)
{
        char what[40];
        struct stat st;
        uint8_t b[8] = {0};

        if (fstat(fd, &st) < 0)
                return;
        (void)!pread(fd, b, sizeof(b), 0);
        errno = 0;
        snprintf(what, sizeof(what), "%s pwrite", tag);
        ram_note(o, what, pwrite(fd, b, sizeof(b), 0) == (ssize_t)sizeof(b), 1);
        errno = 0;
        snprintf(what, sizeof(what), "%s ftruncate grow", tag);
        bool grew = ftruncate(fd, st.st_size + 4096) == 0;
        ram_note(o, what, grew, 1);
        errno = 0;
        /* after a grow, shrinking back proves the hole without a loss */
        snprintf(what, sizeof(what), "%s ftruncate shrink", tag);
        ram_note(o, what, ftruncate(fd, grew ? st.st_size : st.st_size - 4096) == 0, 1);
        errno = 0;
        snprintf(what, sizeof(what), "%s fallocate punch", tag);
        ram_note(o, what,
                 fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, st.st_size - 4096, 4096) == 0, 1);
        errno = 0;
        snprintf(what, sizeof(what), "%s fallocate grow", tag);
        ram_note(o, what, fallocate(fd, 0, st.st_size, 4096) == 0, 1);
        errno = 0;
        snprintf(what, sizeof(what), "%s mmap write", tag);
        void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        ram_note(o, what, p != MAP_FAILED, 1);
        if (p != MAP_FAILED)
                munmap(p, 4096);
        errno = 0;
        snprintf(what, sizeof(what), "%s mprotect write", tag);
        p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
        if (p != MAP_FAILED) {
                ram_note(o, what, mprotect(p, 4096, PROT_READ | PROT_WRITE) == 0, 1);
                munmap(p, 4096);
        }
}

/* The routes from the received fd: itself, reopened through /proc (both
 * write modes), and fchmod (for a non-owner). */
static VH_UNUSED void ram_try_routes(int fd, bool try_fchmod, struct ram_routes *o)
{
        char path[64];

        ram_try_writes(fd, "fd", o);
        if (try_fchmod) {
                errno = 0;
                ram_note(o, "fchmod 0666", fchmod(fd, 0666) == 0, 1);
        }
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        const int modes[] = {O_RDWR, O_WRONLY};
        for (size_t i = 0; i < 2; i++) {
                errno = 0;
                int rw = open(path, modes[i] | O_CLOEXEC);
                ram_note(o, i ? "reopen O_WRONLY" : "reopen O_RDWR", rw >= 0, 0);
                if (rw >= 0) {
                        ram_try_writes(rw, i ? "reopened-wo" : "reopened-rw", o);
                        close(rw);
                }
        }
}

/* Print and count the holes: writes that worked, and doors that opened
 * when doors_count (a non-root control must not even get a writable fd). */
static VH_UNUSED int ram_holes(const struct ram_routes *o, bool doors_count, const char *who)
{
        int holes = 0;

        for (int i = 0; i < o->n; i++) {
                bool hole = o->r[i].err == 0 && (o->r[i].is_write || doors_count);
                printf("# %s: %-28s %s\n", who, o->r[i].what,
                       o->r[i].err == 0 ? (hole ? "WORKED (hole)" : "opened") : strerror(o->r[i].err));
                holes += hole;
        }
        return holes;
}

struct ram_child {
        const char *sock;
        uint32_t ep;
};

/* In a child already running as another uid: connect as a control of its
 * own, take the MEMCTX fd and try everything. */
static VH_UNUSED void ram_child_routes(void *ud, void *out, size_t outlen)
{
        const struct ram_child *rc = ud;
        struct ram_routes *o = out;
        struct vmsig_client *c = NULL;
        struct vmsig_memctx ctx;

        (void)outlen;
        if (vmsig_client_new(&c) < 0 || vmsig_client_connect(c, rc->sock, "ram-attacker", VH_TIMEOUT_MS) < 0)
                return;
        int fd = ram_memctx_fd(c, rc->ep, &ctx, VH_TIMEOUT_MS);
        if (fd >= 0) {
                o->got_fd = 1;
                ram_try_routes(fd, true, o);
                close(fd);
        }
        vmsig_client_free(c);
}

/* Wait for a DIAG of ep whose text holds needle. *saw_memctx (if given) is
 * set when a valid MEMCTX of ep arrives first (then the wait stops too).
 * 0 found, -ETIMEDOUT, -EEXIST (MEMCTX first) or a connection error. The
 * text lands in msg. */
static VH_UNUSED int ram_wait_diag(struct vmsig_client *c, uint32_t ep, const char *needle, char *msg,
                                   size_t msglen, int timeout_ms)
{
        uint64_t deadline = vh_now_ms() + (uint64_t)timeout_ms;

        for (;;) {
                struct vmsig_event ev;
                int fd = -1;
                int r = vmsig_client_recv_wait(c, &ev, &fd, NULL, vh_left(deadline));
                if (r == -EINTR)
                        continue;
                if (r < 0)
                        return r;
                if (fd >= 0)
                        close(fd);
                if (r != VMSIG_CLIENT_EVENT || ev.hdr.endpoint != ep)
                        continue;
                if (ev.hdr.kind == VMSIG_EV_MEMCTX && ev.body[offsetof(struct vmsig_memctx_body, valid)])
                        return -EEXIST;
                if (ev.hdr.kind != VMSIG_EV_DIAG)
                        continue;
                struct vmsig_diag_body d;
                memcpy(&d, ev.body, sizeof(d));
                d.msg[sizeof(d.msg) - 1] = '\0';
                printf("# DIAG %s\n", d.msg);
                if (strstr(d.msg, needle)) {
                        snprintf(msg, msglen, "%s", d.msg);
                        return 0;
                }
        }
}

#endif
