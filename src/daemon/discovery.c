/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/discovery.h"

#define WATCH_MASK                                                                                           \
        (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF |          \
         IN_ONLYDIR)
#define READS_PER_PROCESS 64 /* bound one call; the fd stays readable for the rest */
#define ERR_MAX           512

struct sig {
        dev_t dev;
        ino_t ino;
        struct timespec mtim;
        off_t size;
};

/* One file of the directory that is not a temp file. */
struct entry {
        char filename[NAME_MAX + 1];
        bool valid;                        /* provides trig.name (its owner) */
        struct trigger trig;               /* meaningful when valid */
        struct sig sig;                    /* of the last load */
        char *error;                       /* last reported problem when !valid */
        char dup_of[TRIGGER_NAME_MAX + 1]; /* refused because this name is taken */
};

struct discovery {
        int ifd, dfd, wd;
        struct discovery_callbacks cb;
        void *userdata;
        struct entry **v;
        size_t n, cap;
        bool dead;
};

/* ---- one reconciliation batch ---- */

/* A name whose owner file went away or now says something else. It becomes
 * changed() if another file claims the name in the same batch, else removed(). */
struct release {
        char name[TRIGGER_NAME_MAX + 1];
        char filename[NAME_MAX + 1];
        struct trigger trig;
        struct sig sig;
        bool claimed;
};

enum act_type { ACT_REMOVED, ACT_CHANGED, ACT_ADDED, ACT_INVALID, ACT_TYPES };

struct action {
        enum act_type type;
        unsigned flags;
        char name[TRIGGER_NAME_MAX + 1];
        char filename[NAME_MAX + 1];
        const struct entry *e; /* changed/added: the entry stays put until the batch ends */
        char *msg;             /* invalid */
};

struct batch {
        bool rescan; /* a full rescan: don't repeat unchanged invalid reports */
        char **dirty;
        size_t n_dirty, cap_dirty;
        struct release *rel;
        size_t n_rel, cap_rel;
        struct action *act;
        size_t n_act, cap_act;
        int r;
};

static int grow(void **p, size_t *cap, size_t need, size_t size)
{
        size_t nc;
        void *np;

        if (need <= *cap)
                return 0;
        nc = *cap ? *cap * 2 : 16;
        while (nc < need)
                nc *= 2;
        np = realloc(*p, nc * size);
        if (!np)
                return -ENOMEM;
        *p = np;
        *cap = nc;
        return 0;
}

static void batch_dirty(struct batch *b, const char *filename)
{
        char *s;

        if (b->r < 0)
                return;
        for (size_t i = 0; i < b->n_dirty; i++)
                if (strcmp(b->dirty[i], filename) == 0)
                        return;
        if (grow((void **)&b->dirty, &b->cap_dirty, b->n_dirty + 1, sizeof(*b->dirty)) < 0 ||
            !(s = strdup(filename))) {
                b->r = -ENOMEM;
                return;
        }
        b->dirty[b->n_dirty++] = s;
}

static void batch_clear_dirty(struct batch *b)
{
        for (size_t i = 0; i < b->n_dirty; i++)
                free(b->dirty[i]);
        b->n_dirty = 0;
}

static void batch_free(struct batch *b)
{
        batch_clear_dirty(b);
        free(b->dirty);
        free(b->rel);
        for (size_t i = 0; i < b->n_act; i++)
                free(b->act[i].msg);
        free(b->act);
}

static struct action *batch_act(struct batch *b, enum act_type type, const char *name, const char *filename)
{
        struct action *a;

        if (grow((void **)&b->act, &b->cap_act, b->n_act + 1, sizeof(*b->act)) < 0) {
                b->r = -ENOMEM;
                return NULL;
        }
        a = &b->act[b->n_act++];
        memset(a, 0, sizeof(*a));
        a->type = type;
        snprintf(a->name, sizeof(a->name), "%s", name ? name : "");
        snprintf(a->filename, sizeof(a->filename), "%s", filename);
        return a;
}

/* ---- the known set ---- */

static struct entry *find_file(struct discovery *d, const char *filename, size_t *ret_idx)
{
        for (size_t i = 0; i < d->n; i++)
                if (strcmp(d->v[i]->filename, filename) == 0) {
                        if (ret_idx)
                                *ret_idx = i;
                        return d->v[i];
                }
        return NULL;
}

static struct entry *find_owner(const struct discovery *d, const char *name)
{
        for (size_t i = 0; i < d->n; i++)
                if (d->v[i]->valid && strcmp(d->v[i]->trig.name, name) == 0)
                        return d->v[i];
        return NULL;
}

static void entry_free(struct entry *e)
{
        if (e) {
                free(e->error);
                free(e);
        }
}

static void drop_entry(struct discovery *d, size_t idx)
{
        entry_free(d->v[idx]);
        d->v[idx] = d->v[--d->n];
}

static struct entry *add_entry(struct discovery *d, const char *filename)
{
        struct entry *e;

        if (grow((void **)&d->v, &d->cap, d->n + 1, sizeof(*d->v)) < 0)
                return NULL;
        e = calloc(1, sizeof(*e));
        if (!e)
                return NULL;
        snprintf(e->filename, sizeof(e->filename), "%s", filename);
        d->v[d->n++] = e;
        return e;
}

static void sig_from_stat(struct sig *s, const struct stat *st)
{
        s->dev = st->st_dev;
        s->ino = st->st_ino;
        s->mtim = st->st_mtim;
        s->size = st->st_size;
}

static bool sig_equal(const struct sig *a, const struct sig *b)
{
        return a->dev == b->dev && a->ino == b->ino && a->mtim.tv_sec == b->mtim.tv_sec &&
               a->mtim.tv_nsec == b->mtim.tv_nsec && a->size == b->size;
}

/* ---- reconciliation ---- */

enum result_kind { RES_ABSENT, RES_OK, RES_BAD };

struct result {
        enum result_kind kind;
        struct trigger trig;
        struct sig sig;
        char err[ERR_MAX];
};

static void load(struct discovery *d, const char *filename, struct result *res)
{
        struct stat st;
        int r;

        r = trigger_load(d->dfd, filename, &res->trig, &st, res->err, sizeof(res->err));
        sig_from_stat(&res->sig, &st);
        if (r == 0)
                res->kind = RES_OK;
        else if (r == -ENOENT)
                res->kind = RES_ABSENT;
        else
                res->kind = RES_BAD;
}

/* Mark e invalid with msg; report unless a rescan sees the same problem on
 * the same file again. */
static void set_invalid(struct batch *b, struct entry *e, const struct sig *sig, const char *msg)
{
        bool repeat = b->rescan && e->error && strcmp(e->error, msg) == 0 && sig_equal(&e->sig, sig);
        struct action *a;
        char *copy;

        e->valid = false;
        e->sig = *sig;
        if (repeat)
                return;
        copy = strdup(msg);
        if (!copy) {
                b->r = -ENOMEM;
                return;
        }
        free(e->error);
        e->error = copy;
        a = batch_act(b, ACT_INVALID, NULL, e->filename);
        if (a && !(a->msg = strdup(msg)))
                b->r = -ENOMEM;
}

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* One round over b->dirty: load every file, let go of names whose owner
 * changed, then hand names out (old owners first, releases become changes). */
static void reconcile_round(struct discovery *d, struct batch *b)
{
        struct result *res;

        if (b->r < 0 || !b->n_dirty)
                return;
        /* Sorted, so that two new files with the same name resolve the same
         * way every time (the first in byte order wins). */
        qsort(b->dirty, b->n_dirty, sizeof(*b->dirty), cmp_str);
        res = calloc(b->n_dirty, sizeof(*res));
        if (!res) {
                b->r = -ENOMEM;
                return;
        }
        for (size_t i = 0; i < b->n_dirty; i++)
                load(d, b->dirty[i], &res[i]);

        /* Departures. */
        for (size_t i = 0; i < b->n_dirty && b->r == 0; i++) {
                size_t idx;
                struct entry *e = find_file(d, b->dirty[i], &idx);
                if (!e)
                        continue;
                if (e->valid && !(res[i].kind == RES_OK && strcmp(res[i].trig.name, e->trig.name) == 0)) {
                        struct release *rl;
                        if (grow((void **)&b->rel, &b->cap_rel, b->n_rel + 1, sizeof(*b->rel)) < 0) {
                                b->r = -ENOMEM;
                                break;
                        }
                        rl = &b->rel[b->n_rel++];
                        memset(rl, 0, sizeof(*rl));
                        memcpy(rl->name, e->trig.name, sizeof(rl->name));
                        memcpy(rl->filename, e->filename, sizeof(rl->filename));
                        rl->trig = e->trig;
                        rl->sig = e->sig;
                        e->valid = false;
                }
                if (res[i].kind == RES_ABSENT)
                        drop_entry(d, idx);
        }

        /* Arrivals and refusals. */
        for (size_t i = 0; i < b->n_dirty && b->r == 0; i++) {
                struct result *rs = &res[i];
                struct entry *e, *owner;

                if (rs->kind == RES_ABSENT)
                        continue;
                e = find_file(d, b->dirty[i], NULL);
                if (!e && !(e = add_entry(d, b->dirty[i]))) {
                        b->r = -ENOMEM;
                        break;
                }
                if (rs->kind == RES_BAD) {
                        e->dup_of[0] = '\0';
                        set_invalid(b, e, &rs->sig, rs->err);
                        continue;
                }

                owner = find_owner(d, rs->trig.name);
                if (owner == e) {
                        /* Same file, same name: in place update or nothing. */
                        unsigned flags = 0;
                        if (!trigger_equal(&e->trig, &rs->trig))
                                flags |= DISCOVERY_CONTENT;
                        else if (!sig_equal(&e->sig, &rs->sig))
                                flags |= DISCOVERY_REPLACED;
                        e->trig = rs->trig;
                        e->sig = rs->sig;
                        if (flags) {
                                struct action *a = batch_act(b, ACT_CHANGED, e->trig.name, e->filename);
                                if (a) {
                                        a->flags = flags;
                                        a->e = e;
                                }
                        }
                        continue;
                }
                if (owner) {
                        char msg[ERR_MAX], f[NAME_MAX + 1], o[NAME_MAX + 1];
                        trigger_printable(e->filename, f, sizeof(f));
                        trigger_printable(owner->filename, o, sizeof(o));
                        snprintf(msg, sizeof(msg), "%s: name: VM name '%s' is already provided by %s", f,
                                 rs->trig.name, o);
                        memcpy(e->dup_of, rs->trig.name, sizeof(e->dup_of));
                        set_invalid(b, e, &rs->sig, msg);
                        continue;
                }

                /* The name is free: this file owns it now. */
                e->valid = true;
                e->trig = rs->trig;
                e->sig = rs->sig;
                e->dup_of[0] = '\0';
                free(e->error);
                e->error = NULL;
                {
                        struct release *rl = NULL;
                        struct action *a;
                        for (size_t k = 0; k < b->n_rel; k++)
                                if (!b->rel[k].claimed && strcmp(b->rel[k].name, e->trig.name) == 0)
                                        rl = &b->rel[k];
                        if (!rl) {
                                a = batch_act(b, ACT_ADDED, e->trig.name, e->filename);
                                if (a)
                                        a->e = e;
                                continue;
                        }
                        rl->claimed = true;
                        a = batch_act(b, ACT_CHANGED, e->trig.name, e->filename);
                        if (!a)
                                continue;
                        a->e = e;
                        if (!trigger_equal(&rl->trig, &e->trig))
                                a->flags |= DISCOVERY_CONTENT;
                        if (strcmp(rl->filename, e->filename) != 0)
                                a->flags |= DISCOVERY_RENAMED;
                        else if (!sig_equal(&rl->sig, &e->sig))
                                a->flags |= DISCOVERY_REPLACED;
                        if (!a->flags)
                                a->flags = DISCOVERY_REPLACED;
                }
        }
        free(res);
}

static void emit(struct discovery *d, struct batch *b, int *count)
{
        for (int t = 0; t < ACT_TYPES; t++)
                for (size_t i = 0; i < b->n_act; i++) {
                        const struct action *a = &b->act[i];
                        if ((int)a->type != t)
                                continue;
                        switch (a->type) {
                        case ACT_REMOVED:
                                if (d->cb.removed)
                                        d->cb.removed(a->name, a->filename, d->userdata);
                                break;
                        case ACT_CHANGED:
                                if (d->cb.changed)
                                        d->cb.changed(a->name, &a->e->trig, a->filename, a->flags,
                                                      d->userdata);
                                break;
                        case ACT_ADDED:
                                if (d->cb.added)
                                        d->cb.added(a->name, &a->e->trig, a->filename, d->userdata);
                                break;
                        case ACT_INVALID:
                                if (d->cb.invalid)
                                        d->cb.invalid(a->filename, a->msg, d->userdata);
                                break;
                        case ACT_TYPES:
                                break;
                        }
                        (*count)++;
                }
}

/* Two rounds: the dirty files, then files that were refused as duplicates
 * of a name released in round one (one of them may take the name over).
 * Names still released after that are gone. */
static int reconcile(struct discovery *d, struct batch *b)
{
        int count = 0, r;

        reconcile_round(d, b);
        batch_clear_dirty(b);
        for (size_t k = 0; k < b->n_rel && b->r == 0; k++) {
                if (b->rel[k].claimed)
                        continue;
                for (size_t i = 0; i < d->n; i++)
                        if (!d->v[i]->valid && strcmp(d->v[i]->dup_of, b->rel[k].name) == 0)
                                batch_dirty(b, d->v[i]->filename);
        }
        /* Promotion is news even during a rescan. */
        b->rescan = false;
        reconcile_round(d, b);
        for (size_t k = 0; k < b->n_rel && b->r == 0; k++)
                if (!b->rel[k].claimed)
                        batch_act(b, ACT_REMOVED, b->rel[k].name, b->rel[k].filename);

        /* On allocation failure the known set is still consistent (each
         * step completes or is skipped); report what was decided. */
        emit(d, b, &count);
        r = b->r;
        batch_free(b);
        return r < 0 ? r : count;
}

static int collect_dir(struct discovery *d, struct batch *b)
{
        DIR *dir;
        struct dirent *de;
        int fd;

        fd = openat(d->dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        dir = fdopendir(fd);
        if (!dir) {
                int r = -errno;
                close(fd);
                return r;
        }
        errno = 0;
        while ((de = readdir(dir))) {
                if (!trigger_filename_ignored(de->d_name))
                        batch_dirty(b, de->d_name);
                errno = 0;
        }
        if (errno) {
                int r = -errno;
                closedir(dir);
                return r;
        }
        closedir(dir);
        return b->r;
}

int discovery_rescan(struct discovery *d)
{
        struct batch b = {.rescan = true};
        int r;

        if (d->dead)
                return -ENOENT;
        for (size_t i = 0; i < d->n; i++)
                batch_dirty(&b, d->v[i]->filename);
        r = collect_dir(d, &b);
        if (r < 0) {
                batch_free(&b);
                return r;
        }
        return reconcile(d, &b);
}

static int lose_dir(struct discovery *d)
{
        struct batch b = {0};
        int count = 0;

        d->dead = true;
        for (size_t i = 0; i < d->n; i++)
                if (d->v[i]->valid)
                        batch_act(&b, ACT_REMOVED, d->v[i]->trig.name, d->v[i]->filename);
        for (size_t i = 0; i < d->n; i++)
                entry_free(d->v[i]);
        d->n = 0;
        emit(d, &b, &count);
        batch_free(&b);
        return -ENOENT;
}

int discovery_process(struct discovery *d)
{
        /* Aligned for struct inotify_event, as inotify(7) asks. */
        char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
        struct batch b = {0};
        bool overflow = false, lost = false;
        int reads;

        if (d->dead)
                return -ENOENT;
        for (reads = 0; reads < READS_PER_PROCESS; reads++) {
                ssize_t n = read(d->ifd, buf, sizeof(buf));
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                break;
                        batch_free(&b);
                        return -errno;
                }
                if (n == 0)
                        break;
                for (char *p = buf; p < buf + n;) {
                        const struct inotify_event *ev = (const struct inotify_event *)p;
                        p += sizeof(*ev) + ev->len;
                        if (ev->mask & IN_Q_OVERFLOW) {
                                overflow = true;
                                continue;
                        }
                        if (ev->wd != d->wd)
                                continue;
                        if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED | IN_UNMOUNT)) {
                                lost = true;
                                continue;
                        }
                        if (ev->len && ev->name[0] && !trigger_filename_ignored(ev->name))
                                batch_dirty(&b, ev->name);
                }
        }
        if (lost) {
                batch_free(&b);
                return lose_dir(d);
        }
        if (overflow) {
                /* Events were lost: only the directory itself is the truth. */
                batch_free(&b);
                return discovery_rescan(d);
        }
        if (b.r < 0) {
                batch_free(&b);
                return b.r;
        }
        if (!b.n_dirty) {
                batch_free(&b);
                return 0;
        }
        return reconcile(d, &b);
}

int discovery_new(const char *dir, unsigned flags, const struct discovery_callbacks *cb, void *userdata,
                  struct discovery **ret)
{
        struct discovery *d;
        struct stat a, b;
        int r;

        if (!dir || !*dir)
                return -EINVAL;
        if ((flags & DISCOVERY_CREATE_DIR) && mkdir(dir, 0755) < 0 && errno != EEXIST)
                return -errno;
        d = calloc(1, sizeof(*d));
        if (!d)
                return -ENOMEM;
        d->ifd = d->dfd = d->wd = -1;
        if (cb)
                d->cb = *cb;
        d->userdata = userdata;

        d->dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (d->dfd < 0)
                goto fail_errno;
        d->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (d->ifd < 0)
                goto fail_errno;
        d->wd = inotify_add_watch(d->ifd, dir, WATCH_MASK);
        if (d->wd < 0)
                goto fail_errno;
        /* The watch and the fd we read through must be the same directory. */
        if (fstat(d->dfd, &a) < 0 || stat(dir, &b) < 0)
                goto fail_errno;
        if (a.st_dev != b.st_dev || a.st_ino != b.st_ino) {
                r = -ESTALE;
                goto fail;
        }
        *ret = d;
        return 0;

fail_errno:
        r = -errno;
fail:
        discovery_free(d);
        return r;
}

struct discovery *discovery_free(struct discovery *d)
{
        if (!d)
                return NULL;
        for (size_t i = 0; i < d->n; i++)
                entry_free(d->v[i]);
        free(d->v);
        if (d->ifd >= 0)
                close(d->ifd);
        if (d->dfd >= 0)
                close(d->dfd);
        free(d);
        return NULL;
}

int discovery_get_fd(const struct discovery *d)
{
        return d->ifd;
}

size_t discovery_count(const struct discovery *d)
{
        size_t n = 0;

        for (size_t i = 0; i < d->n; i++)
                n += d->v[i]->valid;
        return n;
}

const struct trigger *discovery_find(const struct discovery *d, const char *name, const char **ret_filename)
{
        for (size_t i = 0; i < d->n; i++)
                if (d->v[i]->valid && strcmp(d->v[i]->trig.name, name) == 0) {
                        if (ret_filename)
                                *ret_filename = d->v[i]->filename;
                        return &d->v[i]->trig;
                }
        return NULL;
}
