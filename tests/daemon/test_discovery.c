/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "daemon/discovery.h"

/* ---- a recorder for the callbacks ---- */

struct rec {
        char type; /* a(dded) c(hanged) r(emoved) i(nvalid) */
        char name[TRIGGER_NAME_MAX + 1];
        char file[256];
        unsigned flags;
        char msg[512];
        struct trigger trig;
};

struct log {
        struct rec *r;
        size_t n, cap;
};

static struct rec *log_add(struct log *l, char type, const char *name, const char *file)
{
        struct rec *r;

        if (l->n == l->cap) {
                l->cap = l->cap ? l->cap * 2 : 64;
                l->r = realloc(l->r, l->cap * sizeof(*l->r));
                assert_non_null(l->r);
        }
        r = &l->r[l->n++];
        memset(r, 0, sizeof(*r));
        r->type = type;
        snprintf(r->name, sizeof(r->name), "%s", name ? name : "");
        snprintf(r->file, sizeof(r->file), "%s", file ? file : "");
        return r;
}

static int on_added(const char *name, const struct trigger *t, const char *filename, char *why, size_t whylen,
                    void *userdata)
{
        (void)why;
        (void)whylen;
        log_add(userdata, 'a', name, filename)->trig = *t;
        return 0;
}

static void on_changed(const char *name, const struct trigger *t, const char *filename, unsigned flags,
                       void *userdata)
{
        struct rec *r = log_add(userdata, 'c', name, filename);
        r->trig = *t;
        r->flags = flags;
}

static void on_removed(const char *name, const char *filename, void *userdata)
{
        log_add(userdata, 'r', name, filename);
}

static void on_invalid(const char *filename, const char *error, unsigned flags, void *userdata)
{
        struct rec *r = log_add(userdata, (flags & DISCOVERY_TRANSIENT) ? 't' : 'i', NULL, filename);
        snprintf(r->msg, sizeof(r->msg), "%s", error);
}

static void on_dir(enum discovery_dir_state state, const char *why, const struct stat *st, void *userdata)
{
        (void)st;
        if (why[0]) /* not the first arming */
                log_add(userdata, state == DISCOVERY_DIR_LOST ? 'L' : 'A', why, NULL);
}

static const struct discovery_callbacks cbs = {
    .added = on_added,
    .changed = on_changed,
    .removed = on_removed,
    .invalid = on_invalid,
    .dir = on_dir,
};

static size_t count(const struct log *l, char type, const char *name)
{
        size_t n = 0;
        for (size_t i = 0; i < l->n; i++)
                if (l->r[i].type == type && (!name || strcmp(l->r[i].name, name) == 0))
                        n++;
        return n;
}

static const struct rec *find_rec(const struct log *l, char type, const char *name_or_file)
{
        for (size_t i = 0; i < l->n; i++)
                if (l->r[i].type == type &&
                    (strcmp(l->r[i].name, name_or_file) == 0 || strcmp(l->r[i].file, name_or_file) == 0))
                        return &l->r[i];
        return NULL;
}

static void log_reset(struct log *l)
{
        l->n = 0;
}

/* ---- fixture ---- */

struct fx {
        char dir[64];
        int dfd;
        struct log log;
        struct discovery *d;
};

static int setup(void **state)
{
        struct fx *f = calloc(1, sizeof(*f));

        assert_non_null(f);
        snprintf(f->dir, sizeof(f->dir), "/tmp/vmsig-disc-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        f->dfd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(f->dfd >= 0);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fx *f = *state;
        char cmd[128];

        discovery_free(f->d);
        close(f->dfd);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
        if (system(cmd) != 0)
                return -1;
        free(f->log.r);
        free(f);
        return 0;
}

static void start(struct fx *f)
{
        assert_int_equal(discovery_new(f->dir, 0, &cbs, &f->log, &f->d), 0);
        assert_true(discovery_rescan(f->d) >= 0);
}

/* Atomic write: temp file + rename, as a hook must do. */
static void put(struct fx *f, const char *name, const char *text)
{
        char tmp[300];
        int fd;

        snprintf(tmp, sizeof(tmp), ".%s.tmp", name);
        fd = openat(f->dfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
        assert_int_equal(fchmod(fd, 0644), 0);
        close(fd);
        assert_int_equal(renameat(f->dfd, tmp, f->dfd, name), 0);
}

static void put_vm(struct fx *f, const char *file, const char *vm, const char *extra)
{
        char text[512];
        snprintf(text, sizeof(text), "name=%s\ndriver=stub\n%s", vm, extra ? extra : "");
        put(f, file, text);
}

static void del(struct fx *f, const char *name)
{
        assert_int_equal(unlinkat(f->dfd, name, 0), 0);
}

/* Process until the fd has been quiet for quiet_ms. */
static void pump(struct fx *f, int quiet_ms)
{
        struct pollfd p = {.fd = discovery_get_fd(f->d), .events = POLLIN};

        while (poll(&p, 1, quiet_ms) > 0)
                assert_true(discovery_process(f->d) >= 0);
}

/* ---- tests ---- */

static void test_initial_scan(void **state)
{
        struct fx *f = *state;

        put_vm(f, "a.vm", "alpha", NULL);
        put_vm(f, "b.vm", "beta", NULL);
        put(f, ".c.vm.tmp", "name=gamma\ndriver=stub\n"); /* temp: never read */
        put(f, "d.vm~", "name=delta\ndriver=stub\n");
        start(f);
        assert_int_equal(f->log.n, 2);
        assert_int_equal(count(&f->log, 'a', "alpha"), 1);
        assert_int_equal(count(&f->log, 'a', "beta"), 1);
        assert_int_equal(discovery_count(f->d), 2);

        /* A second rescan over an unchanged directory reports nothing. */
        log_reset(&f->log);
        assert_int_equal(discovery_rescan(f->d), 0);
        assert_int_equal(f->log.n, 0);
        pump(f, 50); /* the events of the puts above: nothing new either */
        assert_int_equal(f->log.n, 0);
}

static void test_add_modify_remove(void **state)
{
        struct fx *f = *state;
        const struct rec *r;
        const char *fn = NULL;

        start(f);
        put_vm(f, "w.vm", "win10", NULL);
        pump(f, 50);
        assert_int_equal(f->log.n, 1);
        r = find_rec(&f->log, 'a', "win10");
        assert_non_null(r);
        assert_string_equal(r->file, "w.vm");
        assert_int_equal(r->trig.driver, TRIGGER_DRIVER_STUB);
        assert_non_null(discovery_find(f->d, "win10", &fn));
        assert_string_equal(fn, "w.vm");

        /* content change */
        log_reset(&f->log);
        put_vm(f, "w.vm", "win10", "memctx_options=fail_boots=3\n");
        pump(f, 50);
        assert_int_equal(f->log.n, 1);
        r = find_rec(&f->log, 'c', "win10");
        assert_non_null(r);
        assert_int_equal(r->flags, DISCOVERY_CONTENT);
        assert_string_equal(r->trig.memctx_options, "fail_boots=3");

        /* same content, new file: the VM was restarted */
        log_reset(&f->log);
        put_vm(f, "w.vm", "win10", "memctx_options=fail_boots=3\n");
        pump(f, 50);
        assert_int_equal(f->log.n, 1);
        assert_int_equal(find_rec(&f->log, 'c', "win10")->flags, DISCOVERY_REPLACED);

        /* the file now names another VM: one leaves, one arrives */
        log_reset(&f->log);
        put_vm(f, "w.vm", "win11", NULL);
        pump(f, 50);
        assert_int_equal(f->log.n, 2);
        assert_int_equal(f->log.r[0].type, 'r'); /* departures first */
        assert_string_equal(f->log.r[0].name, "win10");
        assert_int_equal(f->log.r[1].type, 'a');
        assert_string_equal(f->log.r[1].name, "win11");

        log_reset(&f->log);
        del(f, "w.vm");
        pump(f, 50);
        assert_int_equal(f->log.n, 1);
        assert_int_equal(count(&f->log, 'r', "win11"), 1);
        assert_int_equal(discovery_count(f->d), 0);
}

static void test_in_place_write(void **state)
{
        struct fx *f = *state;
        int fd;

        start(f);
        /* Not atomic, but the close is what we react to. */
        fd = openat(f->dfd, "p.vm", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, "name=p\ndriver=stub\n", 19), 19);
        close(fd);
        pump(f, 50);
        assert_int_equal(count(&f->log, 'a', "p"), 1);
        assert_int_equal(f->log.n, 1);
}

static void test_rename(void **state)
{
        struct fx *f = *state;
        const struct rec *r;
        const char *fn = NULL;

        put_vm(f, "a.vm", "vm1", NULL);
        put_vm(f, "other.vm", "vm2", NULL);
        start(f);
        log_reset(&f->log);

        assert_int_equal(renameat(f->dfd, "a.vm", f->dfd, "b.vm"), 0);
        pump(f, 50);
        assert_int_equal(f->log.n, 1);
        r = find_rec(&f->log, 'c', "vm1");
        assert_non_null(r);
        assert_int_equal(r->flags, DISCOVERY_RENAMED);
        assert_string_equal(r->file, "b.vm");
        assert_non_null(discovery_find(f->d, "vm1", &fn));
        assert_string_equal(fn, "b.vm");
        assert_int_equal(discovery_count(f->d), 2);

        /* Rename onto a file of another VM: vm1 moves, vm2 leaves. */
        log_reset(&f->log);
        assert_int_equal(renameat(f->dfd, "b.vm", f->dfd, "other.vm"), 0);
        pump(f, 50);
        assert_int_equal(f->log.n, 2);
        assert_int_equal(count(&f->log, 'r', "vm2"), 1);
        r = find_rec(&f->log, 'c', "vm1");
        assert_non_null(r);
        assert_true(r->flags & DISCOVERY_RENAMED);
        assert_int_equal(discovery_count(f->d), 1);

        /* Renamed to a temp name (ignored): the VM is gone. */
        log_reset(&f->log);
        assert_int_equal(renameat(f->dfd, "other.vm", f->dfd, "other.vm~"), 0);
        pump(f, 50);
        assert_int_equal(f->log.n, 1);
        assert_int_equal(count(&f->log, 'r', "vm1"), 1);
        assert_int_equal(discovery_count(f->d), 0);
}

static void test_burst_100(void **state)
{
        struct fx *f = *state;
        char file[32], vm[32];

        start(f);
        for (int i = 0; i < 100; i++) {
                snprintf(file, sizeof(file), "vm%03d.vm", i);
                snprintf(vm, sizeof(vm), "vm%03d", i);
                put_vm(f, file, vm, NULL);
        }
        pump(f, 100);
        assert_int_equal(discovery_count(f->d), 100);
        assert_int_equal(f->log.n, 100);
        for (int i = 0; i < 100; i++) {
                snprintf(vm, sizeof(vm), "vm%03d", i);
                assert_int_equal(count(&f->log, 'a', vm), 1);
        }

        log_reset(&f->log);
        for (int i = 0; i < 100; i++) {
                snprintf(file, sizeof(file), "vm%03d.vm", i);
                del(f, file);
        }
        pump(f, 100);
        assert_int_equal(discovery_count(f->d), 0);
        assert_int_equal(f->log.n, 100);
        for (int i = 0; i < 100; i++) {
                snprintf(vm, sizeof(vm), "vm%03d", i);
                assert_int_equal(count(&f->log, 'r', vm), 1);
        }
}

/* The rescan path directly: changes made while events are not read. */
static void test_rescan_reconciles(void **state)
{
        struct fx *f = *state;

        put_vm(f, "keep.vm", "keep", NULL);
        put_vm(f, "gone.vm", "gone", NULL);
        put_vm(f, "mod.vm", "mod", NULL);
        put_vm(f, "same.vm", "same", NULL);
        start(f);
        assert_int_equal(f->log.n, 4);
        log_reset(&f->log);

        del(f, "gone.vm");
        put_vm(f, "mod.vm", "mod", "input=qmp\n");
        put_vm(f, "same.vm", "same", NULL); /* new inode, same content */
        put_vm(f, "new.vm", "new", NULL);
        assert_true(discovery_rescan(f->d) >= 0);
        assert_int_equal(f->log.n, 4);
        assert_int_equal(count(&f->log, 'r', "gone"), 1);
        assert_int_equal(find_rec(&f->log, 'c', "mod")->flags, DISCOVERY_CONTENT);
        assert_int_equal(find_rec(&f->log, 'c', "same")->flags, DISCOVERY_REPLACED);
        assert_int_equal(count(&f->log, 'a', "new"), 1);

        /* The queued events of the same changes now find nothing new. */
        log_reset(&f->log);
        pump(f, 50);
        assert_int_equal(f->log.n, 0);
        assert_int_equal(discovery_count(f->d), 4);
}

static long read_long(const char *path)
{
        FILE *fp = fopen(path, "re");
        long v = -1;
        if (fp) {
                if (fscanf(fp, "%ld", &v) != 1)
                        v = -1;
                fclose(fp);
        }
        return v;
}

/* A real IN_Q_OVERFLOW: more events than the queue holds, with a VM file
 * arriving and another leaving among them. */
static void test_queue_overflow(void **state)
{
        struct fx *f = *state;
        long max = read_long("/proc/sys/fs/inotify/max_queued_events");

        if (max <= 0 || max > 200000)
                skip();
        put_vm(f, "old.vm", "old", NULL);
        start(f);
        log_reset(&f->log);

        put_vm(f, "new.vm", "new", NULL);
        del(f, "old.vm");
        /* Alternate two temp names so the kernel can't merge the events. */
        for (long i = 0; i < max + 100; i++) {
                int fd = openat(f->dfd, (i & 1) ? ".x.tmp" : ".y.tmp", O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
                assert_true(fd >= 0);
                close(fd);
        }
        pump(f, 100);
        assert_int_equal(count(&f->log, 'a', "new"), 1);
        assert_int_equal(count(&f->log, 'r', "old"), 1);
        assert_int_equal(f->log.n, 2);
        assert_int_equal(discovery_count(f->d), 1);
}

static void test_malformed(void **state)
{
        struct fx *f = *state;
        const struct rec *r;

        start(f);
        put(f, "bad.vm", "name=bad\ndriver=stub\ncolour=blue\n");
        put_vm(f, "good.vm", "good", NULL);
        pump(f, 50);
        assert_int_equal(f->log.n, 2);
        r = find_rec(&f->log, 'i', "bad.vm");
        assert_non_null(r);
        assert_non_null(strstr(r->msg, "bad.vm:3: colour: unknown key"));
        assert_int_equal(count(&f->log, 'a', "good"), 1);
        assert_int_equal(discovery_count(f->d), 1);

        /* Reported once: a rescan over the same bad file stays quiet. */
        log_reset(&f->log);
        assert_int_equal(discovery_rescan(f->d), 0);
        assert_int_equal(f->log.n, 0);

        /* Fixed: it arrives. */
        put_vm(f, "bad.vm", "bad", NULL);
        pump(f, 50);
        assert_int_equal(f->log.n, 1);
        assert_int_equal(count(&f->log, 'a', "bad"), 1);

        /* Broken again: the VM leaves, then the reason is reported. */
        log_reset(&f->log);
        put(f, "bad.vm", "name=bad\n");
        pump(f, 50);
        assert_int_equal(f->log.n, 2);
        assert_int_equal(f->log.r[0].type, 'r');
        assert_int_equal(f->log.r[1].type, 'i');
        assert_non_null(strstr(f->log.r[1].msg, "bad.vm: qmp: required"));

        /* Not a regular file, and a symlink: reported, never fatal. */
        log_reset(&f->log);
        assert_int_equal(mkdirat(f->dfd, "sub.vm", 0755), 0);
        assert_int_equal(symlinkat("good.vm", f->dfd, "ln.vm"), 0);
        assert_int_equal(renameat(f->dfd, "ln.vm", f->dfd, "ln2.vm"), 0);
        assert_true(discovery_rescan(f->d) >= 0);
        assert_non_null(find_rec(&f->log, 'i', "sub.vm"));
        assert_non_null(find_rec(&f->log, 'i', "ln2.vm"));
        pump(f, 50);
        assert_int_equal(discovery_count(f->d), 1);
}

static void test_duplicate_names(void **state)
{
        struct fx *f = *state;
        const struct rec *r;
        const char *fn = NULL;

        put_vm(f, "a.vm", "twin", NULL);
        put_vm(f, "b.vm", "twin", "input=x\n");
        start(f);
        assert_int_equal(f->log.n, 2);
        r = find_rec(&f->log, 'a', "twin");
        assert_non_null(r);
        assert_string_equal(r->file, "a.vm");
        r = find_rec(&f->log, 'i', "b.vm");
        assert_non_null(r);
        assert_non_null(strstr(r->msg, "b.vm"));
        assert_non_null(strstr(r->msg, "a.vm"));
        assert_non_null(strstr(r->msg, "twin"));

        /* A third file with the name, by event: refused, the owner stays. */
        log_reset(&f->log);
        put_vm(f, "0.vm", "twin", NULL);
        pump(f, 50);
        assert_int_equal(f->log.n, 1);
        assert_non_null(find_rec(&f->log, 'i', "0.vm"));
        assert_non_null(discovery_find(f->d, "twin", &fn));
        assert_string_equal(fn, "a.vm");

        /* The owner leaves: a refused file takes the name over (a change). */
        log_reset(&f->log);
        del(f, "a.vm");
        pump(f, 50);
        assert_int_equal(count(&f->log, 'r', NULL), 0);
        assert_int_equal(count(&f->log, 'a', NULL), 0);
        r = find_rec(&f->log, 'c', "twin");
        assert_non_null(r);
        assert_true(r->flags & DISCOVERY_RENAMED);
        assert_string_equal(r->file, "0.vm"); /* first in byte order */
        assert_non_null(discovery_find(f->d, "twin", &fn));
        assert_string_equal(fn, "0.vm");
        assert_int_equal(discovery_count(f->d), 1);

        /* And so on until the last one leaves. */
        del(f, "0.vm");
        pump(f, 50);
        assert_non_null(discovery_find(f->d, "twin", &fn));
        assert_string_equal(fn, "b.vm");
        log_reset(&f->log);
        del(f, "b.vm");
        pump(f, 50);
        assert_int_equal(f->log.n, 1);
        assert_int_equal(count(&f->log, 'r', "twin"), 1);
        assert_int_equal(discovery_count(f->d), 0);
}

static void test_dir_lost(void **state)
{
        struct fx *f = *state;
        char moved[96];

        put_vm(f, "a.vm", "a", NULL);
        start(f);
        log_reset(&f->log);
        snprintf(moved, sizeof(moved), "%s.moved", f->dir);
        assert_int_equal(rename(f->dir, moved), 0);
        pump(f, 100);
        /* A missing directory says nothing about the VMs: they stay. */
        assert_int_equal(count(&f->log, 'L', "moved away"), 1);
        assert_int_equal(count(&f->log, 'r', "a"), 0);
        assert_int_equal(discovery_count(f->d), 1);
        assert_int_equal(discovery_rescan(f->d), -ENOENT);

        /* A new directory at the path: re-armed, rescanned, reconciled. */
        assert_int_equal(mkdir(f->dir, 0755), 0);
        close(f->dfd);
        f->dfd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        put_vm(f, "b.vm", "b", NULL);
        pump(f, 200);
        assert_int_equal(count(&f->log, 'A', "re-armed"), 1);
        assert_int_equal(count(&f->log, 'r', "a"), 1);
        assert_int_equal(count(&f->log, 'a', "b"), 1);
        assert_int_equal(discovery_count(f->d), 1);

        /* Swapped for another directory holding the same VM: a change at
         * most, never a departure. */
        log_reset(&f->log);
        {
                char other[96], path[160];
                snprintf(other, sizeof(other), "%s.other", f->dir);
                assert_int_equal(mkdir(other, 0755), 0);
                snprintf(path, sizeof(path), "%s/b.vm", other);
                FILE *fp = fopen(path, "w");
                assert_non_null(fp);
                fprintf(fp, "name=b\ndriver=stub\n");
                fclose(fp);
                assert_int_equal(renameat2(AT_FDCWD, other, AT_FDCWD, f->dir, RENAME_EXCHANGE), 0);
                pump(f, 200);
                assert_int_equal(count(&f->log, 'L', "replaced by another directory"), 1);
                assert_int_equal(count(&f->log, 'r', NULL), 0);
                assert_int_equal(count(&f->log, 'a', NULL), 0);
                assert_int_equal(discovery_count(f->d), 1);
                snprintf(path, sizeof(path), "rm -rf '%s'", other);
                assert_int_equal(system(path), 0);
        }
        rmdir(moved);
        snprintf(moved, sizeof(moved), "rm -rf '%s.moved'", f->dir);
        assert_int_equal(system(moved), 0);
}

/* Out of fds when the file shows up: retried by itself once fds are back,
 * without touching the file; a parse error is not retried. */
static void test_transient_retry(void **state)
{
        struct fx *f = *state;
        struct rlimit old, low;
        int fill[64], nfill = 0, top;

        start(f);
        put_vm(f, ".x.tmp2", "x", NULL); /* ignored name, renamed into place below */
        assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
        top = dup(0);
        assert_true(top >= 0);
        close(top);
        low = old;
        low.rlim_cur = (rlim_t)top + 8;
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
        while (nfill < 64 && (fill[nfill] = dup(0)) >= 0)
                nfill++;
        assert_int_equal(errno, EMFILE);
        assert_int_equal(renameat(f->dfd, ".x.tmp2", f->dfd, "x.vm"), 0);
        pump(f, 100);
        assert_int_equal(count(&f->log, 't', NULL), 1);
        assert_int_equal(count(&f->log, 'a', "x"), 0);
        assert_non_null(strstr(find_rec(&f->log, 't', "x.vm")->msg, "transient"));
        pump(f, 300); /* still out of fds: retried quietly */
        assert_int_equal(count(&f->log, 't', NULL), 1);
        while (nfill > 0)
                close(fill[--nfill]);
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
        /* the retry delay doubled while fds were short: wait for it */
        for (int waited = 0; waited < 10000 && count(&f->log, 'a', "x") == 0; waited += 200)
                pump(f, 200);
        assert_int_equal(count(&f->log, 'a', "x"), 1);
        assert_int_equal(count(&f->log, 'i', NULL), 0);
        assert_int_equal(discovery_count(f->d), 1);
}

static void test_create_dir(void **state)
{
        struct fx *f = *state;
        char sub[96];
        struct discovery *d = NULL;

        snprintf(sub, sizeof(sub), "%s/vms", f->dir);
        assert_int_equal(discovery_new(sub, 0, &cbs, &f->log, &d), -ENOENT);
        assert_int_equal(discovery_new(sub, DISCOVERY_CREATE_DIR, &cbs, &f->log, &d), 0);
        assert_int_equal(discovery_rescan(d), 0);
        assert_true(discovery_get_fd(d) >= 0);
        assert_true(fcntl(discovery_get_fd(d), F_GETFD) & FD_CLOEXEC);
        assert_true(fcntl(discovery_get_fd(d), F_GETFL) & O_NONBLOCK);
        discovery_free(d);
        assert_int_equal(rmdir(sub), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_initial_scan, setup, teardown),
            cmocka_unit_test_setup_teardown(test_add_modify_remove, setup, teardown),
            cmocka_unit_test_setup_teardown(test_in_place_write, setup, teardown),
            cmocka_unit_test_setup_teardown(test_rename, setup, teardown),
            cmocka_unit_test_setup_teardown(test_burst_100, setup, teardown),
            cmocka_unit_test_setup_teardown(test_rescan_reconciles, setup, teardown),
            cmocka_unit_test_setup_teardown(test_queue_overflow, setup, teardown),
            cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
            cmocka_unit_test_setup_teardown(test_duplicate_names, setup, teardown),
            cmocka_unit_test_setup_teardown(test_dir_lost, setup, teardown),
            cmocka_unit_test_setup_teardown(test_transient_retry, setup, teardown),
            cmocka_unit_test_setup_teardown(test_create_dir, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
