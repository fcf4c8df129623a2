/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "daemon/discovery.h"
#include "util/clock.h"

#define WATCH_MASK                                                                                           \
        (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF |          \
         IN_ONLYDIR)
/* The parent: only to see our directory come and go. */
#define PARENT_MASK                                                                                          \
        (IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)
#define ERR_MAX     1536
#define SLICE_MS    5u    /* one slice of a rescan, then back to the loop */
#define ROUND_FILES 32u   /* files per reconciliation round within a slice */
#define RETRIES_PER 256u  /* due retries handled per process() call */
#define BACKOFF_MIN 100u  /* ms */
#define BACKOFF_MAX 5000u /* ms */
#define RETRY_LIMIT 12u   /* transient failures in a row before giving up */

/* ---- a small chained hash table of strings ---- */

struct hnode {
        struct hnode *next;
        const char *key;
        size_t h;
};

struct htab {
        struct hnode **b;
        size_t nb, n;
};

static size_t hash_str(const char *s)
{
        uint64_t h = 1469598103934665603ull; /* FNV-1a */

        for (; *s; s++)
                h = (h ^ (unsigned char)*s) * 1099511628211ull;
        return (size_t)(h ^ (h >> 29));
}

static int htab_add(struct htab *t, struct hnode *n, const char *key)
{
        if (t->n + 1 > t->nb) {
                size_t nb = t->nb ? t->nb * 2 : 64;
                struct hnode **b = calloc(nb, sizeof(*b));
                if (!b)
                        return -ENOMEM;
                for (size_t i = 0; i < t->nb; i++)
                        for (struct hnode *x = t->b[i], *next; x; x = next) {
                                next = x->next;
                                x->next = b[x->h & (nb - 1)];
                                b[x->h & (nb - 1)] = x;
                        }
                free(t->b);
                t->b = b;
                t->nb = nb;
        }
        n->key = key;
        n->h = hash_str(key);
        n->next = t->b[n->h & (t->nb - 1)];
        t->b[n->h & (t->nb - 1)] = n;
        t->n++;
        return 0;
}

static struct hnode *htab_get(const struct htab *t, const char *key)
{
        size_t h;

        if (!t->nb)
                return NULL;
        h = hash_str(key);
        for (struct hnode *x = t->b[h & (t->nb - 1)]; x; x = x->next)
                if (x->h == h && strcmp(x->key, key) == 0)
                        return x;
        return NULL;
}

static void htab_del(struct htab *t, struct hnode *n)
{
        for (struct hnode **p = &t->b[n->h & (t->nb - 1)]; *p; p = &(*p)->next)
                if (*p == n) {
                        *p = n->next;
                        t->n--;
                        return;
                }
}

#define container_of(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))

/* ---- state ---- */

struct sig {
        dev_t dev;
        ino_t ino;
        struct timespec mtim;
        off_t size;
};

/* One file of the directory that is not a temp file. */
struct entry {
        struct hnode fnode;                /* d->files, by filename */
        struct hnode nnode;                /* d->names, by trig->name while valid */
        size_t idx;                        /* in d->v */
        bool valid;                        /* provides trig->name (its owner) */
        struct trigger *trig;              /* set while valid */
        struct sig sig;                    /* of the last load */
        char *error;                       /* last reported problem when !valid */
        char dup_of[TRIGGER_NAME_MAX + 1]; /* refused because this name is taken */
        unsigned attempts;                 /* transient failures in a row (0: none) */
        char filename[];
};

/* A name whose owner file went away or now says something else. Held until
 * the batch (or the whole rescan) ends: another file claiming the name makes
 * it changed(), else it becomes removed(). */
struct release {
        struct hnode node; /* d->rels, by name */
        size_t idx;        /* in d->rel */
        char name[TRIGGER_NAME_MAX + 1];
        char filename[NAME_MAX + 1];
        struct trigger trig;
        struct sig sig;
};

struct retry {
        char *filename;
        uint64_t due;
};

struct discovery {
        char path[PATH_MAX], parent[PATH_MAX], base[NAME_MAX + 1];
        int efd, ifd, tfd, kfd; /* epoll, inotify, timerfd, eventfd (work pending) */
        int dfd, wd, pwd;
        dev_t dev;
        ino_t ino;
        bool lost;
        unsigned rearm_attempts;
        uint64_t rearm_due;
        bool kicked;
        struct discovery_callbacks cb;
        void *userdata;

        struct entry **v;
        size_t n, cap;
        struct htab files, names, rels;
        struct release **rel;
        size_t n_rel, cap_rel;
        struct retry *retry;
        size_t n_retry, cap_retry;

        struct {
                bool active, pending, new_dir;
                bool again, again_new_dir;
                const char *reason, *again_reason;
                unsigned start_attempts;
                uint64_t start_due;
                char **files;
                size_t n, pos;
                struct discovery_scan_stats st;
        } scan;
};

static uint64_t backoff_ms(unsigned attempt)
{
        uint64_t ms = BACKOFF_MIN;

        while (attempt-- > 1 && ms < BACKOFF_MAX)
                ms *= 2;
        return ms > BACKOFF_MAX ? BACKOFF_MAX : ms;
}

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

/* ---- one reconciliation batch ---- */

enum act_type { ACT_REMOVED, ACT_CHANGED, ACT_ADDED, ACT_INVALID, ACT_TYPES };

struct action {
        enum act_type type;
        unsigned flags;
        char name[TRIGGER_NAME_MAX + 1];
        char filename[NAME_MAX + 1];
        struct entry *e; /* changed/added: the entry stays put until the batch ends */
        char *msg;       /* invalid */
};

struct batch {
        bool new_dir; /* first scan of a new directory: a new inode alone is no news */
        struct discovery_scan_stats *st;
        char **dirty;
        size_t n_dirty, cap_dirty;
        struct action *act;
        size_t n_act, cap_act;
        int r;
};

static void batch_dirty(struct batch *b, const char *filename)
{
        char *s;

        if (b->r < 0)
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
        for (size_t i = 0; i < b->n_act; i++)
                free(b->act[i].msg);
        free(b->act);
        b->dirty = NULL;
        b->act = NULL;
        b->n_act = b->cap_act = b->cap_dirty = 0;
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
        if (b->st) {
                if (type == ACT_ADDED)
                        b->st->added++;
                else if (type == ACT_CHANGED)
                        b->st->changed++;
                else if (type == ACT_REMOVED)
                        b->st->removed++;
        }
        return a;
}

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sort and drop duplicates: O(n log n). */
static size_t sort_unique(char **v, size_t n)
{
        size_t o = 0;

        if (!n)
                return 0;
        qsort(v, n, sizeof(*v), cmp_str);
        for (size_t i = 0; i < n; i++) {
                if (o && strcmp(v[o - 1], v[i]) == 0) {
                        free(v[i]);
                        continue;
                }
                v[o++] = v[i];
        }
        return o;
}

/* ---- the known set ---- */

static struct entry *find_file(const struct discovery *d, const char *filename)
{
        struct hnode *n = htab_get(&d->files, filename);
        return n ? container_of(n, struct entry, fnode) : NULL;
}

static struct entry *find_owner(const struct discovery *d, const char *name)
{
        struct hnode *n = htab_get(&d->names, name);
        return n ? container_of(n, struct entry, nnode) : NULL;
}

static void entry_free(struct entry *e)
{
        if (e) {
                free(e->trig);
                free(e->error);
                free(e);
        }
}

/* Give up ownership of the name (the trigger stays for the caller). */
static void entry_unown(struct discovery *d, struct entry *e)
{
        if (e->valid) {
                htab_del(&d->names, &e->nnode);
                e->valid = false;
        }
}

static int entry_own(struct discovery *d, struct entry *e, const struct trigger *t)
{
        if (!e->trig && !(e->trig = malloc(sizeof(*e->trig))))
                return -ENOMEM;
        *e->trig = *t;
        if (htab_add(&d->names, &e->nnode, e->trig->name) < 0)
                return -ENOMEM;
        e->valid = true;
        return 0;
}

static void drop_entry(struct discovery *d, struct entry *e)
{
        size_t idx = e->idx;

        entry_unown(d, e);
        htab_del(&d->files, &e->fnode);
        d->v[idx] = d->v[--d->n];
        d->v[idx]->idx = idx;
        entry_free(e);
}

static struct entry *add_entry(struct discovery *d, const char *filename)
{
        size_t len = strlen(filename);
        struct entry *e;

        if (grow((void **)&d->v, &d->cap, d->n + 1, sizeof(*d->v)) < 0)
                return NULL;
        e = calloc(1, sizeof(*e) + len + 1);
        if (!e)
                return NULL;
        memcpy(e->filename, filename, len + 1);
        if (htab_add(&d->files, &e->fnode, e->filename) < 0) {
                free(e);
                return NULL;
        }
        e->idx = d->n;
        d->v[d->n++] = e;
        return e;
}

static struct release *find_release(const struct discovery *d, const char *name)
{
        struct hnode *n = htab_get(&d->rels, name);
        return n ? container_of(n, struct release, node) : NULL;
}

static void release_free(struct discovery *d, struct release *rl)
{
        size_t idx = rl->idx;

        htab_del(&d->rels, &rl->node);
        d->rel[idx] = d->rel[--d->n_rel];
        d->rel[idx]->idx = idx;
        free(rl);
}

static int release_add(struct discovery *d, const struct entry *e)
{
        struct release *rl;

        if (find_release(d, e->trig->name))
                return 0; /* already held: the older record has the first file */
        if (grow((void **)&d->rel, &d->cap_rel, d->n_rel + 1, sizeof(*d->rel)) < 0 ||
            !(rl = calloc(1, sizeof(*rl))))
                return -ENOMEM;
        memcpy(rl->name, e->trig->name, sizeof(rl->name));
        snprintf(rl->filename, sizeof(rl->filename), "%s", e->filename);
        rl->trig = *e->trig;
        rl->sig = e->sig;
        if (htab_add(&d->rels, &rl->node, rl->name) < 0) {
                free(rl);
                return -ENOMEM;
        }
        rl->idx = d->n_rel;
        d->rel[d->n_rel++] = rl;
        return 0;
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

/* ---- retries ---- */

static void schedule_retry(struct discovery *d, struct batch *b, struct entry *e, const char *msg)
{
        struct action *a;
        char *s;

        e->attempts++;
        if (b->st)
                b->st->retrying++;
        if (e->attempts > RETRY_LIMIT) {
                char m[ERR_MAX + 64];
                snprintf(m, sizeof(m),
                         "%s (still failing after %u attempts; retried when it changes or on a rescan)", msg,
                         RETRY_LIMIT);
                e->attempts = 0;
                a = batch_act(b, ACT_INVALID, NULL, e->filename);
                if (a) {
                        a->flags = DISCOVERY_GAVE_UP;
                        if (!(a->msg = strdup(m)))
                                b->r = -ENOMEM;
                }
                return;
        }
        if (grow((void **)&d->retry, &d->cap_retry, d->n_retry + 1, sizeof(*d->retry)) < 0 ||
            !(s = strdup(e->filename))) {
                b->r = -ENOMEM;
                return;
        }
        d->retry[d->n_retry++] = (struct retry){s, vmsig_now_ms() + backoff_ms(e->attempts)};
        if (e->attempts == 1) {
                char m[ERR_MAX + 64];
                snprintf(m, sizeof(m), "%s (transient: retrying in %llu ms)", msg,
                         (unsigned long long)backoff_ms(1));
                a = batch_act(b, ACT_INVALID, NULL, e->filename);
                if (a) {
                        a->flags = DISCOVERY_TRANSIENT;
                        if (!(a->msg = strdup(m)))
                                b->r = -ENOMEM;
                }
        }
}

/* ---- reconciliation ---- */

enum result_kind { RES_ABSENT, RES_OK, RES_BAD, RES_TRANSIENT };

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
        else if (trigger_error_transient(r))
                res->kind = RES_TRANSIENT;
        else
                res->kind = RES_BAD;
}

/* Mark e invalid with msg; report unless this is the same problem on the
 * same, untouched file again (a rescan, or an event racing one). */
static void set_invalid(struct batch *b, struct entry *e, const struct sig *sig, const char *msg)
{
        bool repeat = e->error && strcmp(e->error, msg) == 0 && sig_equal(&e->sig, sig);
        struct action *a;
        char *copy;

        e->sig = *sig;
        if (b->st)
                b->st->refused++;
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

/* One round over b->dirty: load every file, let go of names whose owner
 * changed (into d->rel), then hand names out (old owners first; a held
 * release becomes a change). */
static void reconcile_round(struct discovery *d, struct batch *b)
{
        struct result *res;

        if (b->r < 0 || !b->n_dirty)
                return;
        /* Sorted, so that two new files with the same name resolve the same
         * way every time (the first in byte order wins). */
        b->n_dirty = sort_unique(b->dirty, b->n_dirty);
        res = malloc(b->n_dirty * sizeof(*res));
        if (!res) {
                b->r = -ENOMEM;
                return;
        }
        for (size_t i = 0; i < b->n_dirty; i++) {
                res[i].err[0] = '\0';
                load(d, b->dirty[i], &res[i]);
        }

        /* Departures. A transient failure says nothing about the file. */
        for (size_t i = 0; i < b->n_dirty && b->r == 0; i++) {
                struct entry *e = find_file(d, b->dirty[i]);
                if (!e || res[i].kind == RES_TRANSIENT)
                        continue;
                if (e->valid && !(res[i].kind == RES_OK && strcmp(res[i].trig.name, e->trig->name) == 0)) {
                        if (release_add(d, e) < 0) {
                                b->r = -ENOMEM;
                                break;
                        }
                        entry_unown(d, e);
                }
                if (res[i].kind == RES_ABSENT)
                        drop_entry(d, e);
        }

        /* Arrivals and refusals. */
        for (size_t i = 0; i < b->n_dirty && b->r == 0; i++) {
                struct result *rs = &res[i];
                struct entry *e, *owner;
                struct release *rl;
                struct action *a;

                if (rs->kind == RES_ABSENT)
                        continue;
                e = find_file(d, b->dirty[i]);
                if (!e && !(e = add_entry(d, b->dirty[i]))) {
                        b->r = -ENOMEM;
                        break;
                }
                if (rs->kind == RES_TRANSIENT) {
                        schedule_retry(d, b, e, rs->err);
                        continue;
                }
                e->attempts = 0;
                if (rs->kind == RES_BAD) {
                        e->dup_of[0] = '\0';
                        set_invalid(b, e, &rs->sig, rs->err);
                        continue;
                }

                owner = find_owner(d, rs->trig.name);
                if (owner == e) {
                        /* Same file, same name: in place update or nothing. */
                        unsigned flags = 0;
                        if (!trigger_equal(e->trig, &rs->trig))
                                flags |= DISCOVERY_CONTENT;
                        else if (!b->new_dir && !sig_equal(&e->sig, &rs->sig))
                                flags |= DISCOVERY_REPLACED;
                        *e->trig = rs->trig;
                        e->sig = rs->sig;
                        if (flags) {
                                a = batch_act(b, ACT_CHANGED, e->trig->name, e->filename);
                                if (a) {
                                        a->flags = flags;
                                        a->e = e;
                                }
                        } else if (b->st) {
                                b->st->unchanged++;
                        }
                        continue;
                }
                if (owner) {
                        char msg[ERR_MAX], f[4 * NAME_MAX + 1], o[4 * NAME_MAX + 1];
                        trigger_printable(e->filename, f, sizeof(f));
                        trigger_printable(owner->filename, o, sizeof(o));
                        snprintf(msg, sizeof(msg), "%s: name: VM name '%s' is already provided by %s", f,
                                 rs->trig.name, o);
                        memcpy(e->dup_of, rs->trig.name, sizeof(e->dup_of));
                        set_invalid(b, e, &rs->sig, msg);
                        continue;
                }

                /* The name is free: this file owns it now. */
                if (entry_own(d, e, &rs->trig) < 0) {
                        b->r = -ENOMEM;
                        break;
                }
                e->sig = rs->sig;
                e->dup_of[0] = '\0';
                free(e->error);
                e->error = NULL;
                rl = find_release(d, e->trig->name);
                if (!rl) {
                        a = batch_act(b, ACT_ADDED, e->trig->name, e->filename);
                        if (a)
                                a->e = e;
                        continue;
                }
                a = batch_act(b, ACT_CHANGED, e->trig->name, e->filename);
                if (a) {
                        a->e = e;
                        if (!trigger_equal(&rl->trig, e->trig))
                                a->flags |= DISCOVERY_CONTENT;
                        if (strcmp(rl->filename, e->filename) != 0)
                                a->flags |= DISCOVERY_RENAMED;
                        else if (!b->new_dir && !sig_equal(&rl->sig, &e->sig))
                                a->flags |= DISCOVERY_REPLACED;
                        if (!a->flags && !b->new_dir)
                                a->flags = DISCOVERY_REPLACED;
                }
                release_free(d, rl);
        }
        free(res);
        batch_clear_dirty(b);
}

/* added() said no: the file does not provide the VM after all. */
static void add_refused(struct discovery *d, struct batch *b, struct entry *e, int r, const char *why)
{
        struct batch nb = {.st = b->st};

        entry_unown(d, e);
        if (b->st && b->st->added)
                b->st->added--;
        if (trigger_error_transient(r)) {
                schedule_retry(d, &nb, e, why);
        } else {
                struct sig s = e->sig;
                set_invalid(&nb, e, &s, why);
        }
        for (size_t i = 0; i < nb.n_act; i++)
                if (d->cb.invalid)
                        d->cb.invalid(nb.act[i].filename, nb.act[i].msg,
                                      nb.act[i].flags | (b->st ? DISCOVERY_IN_SCAN : 0), d->userdata);
        batch_free(&nb);
}

static int emit(struct discovery *d, struct batch *b)
{
        int count = 0;
        unsigned scan_flag = b->st ? DISCOVERY_IN_SCAN : 0;

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
                                if (d->cb.changed && a->e->valid)
                                        d->cb.changed(a->name, a->e->trig, a->filename, a->flags,
                                                      d->userdata);
                                break;
                        case ACT_ADDED:
                                if (d->cb.added && a->e->valid) {
                                        char why[ERR_MAX] = "";
                                        int r = d->cb.added(a->name, a->e->trig, a->filename, why,
                                                            sizeof(why), d->userdata);
                                        if (r < 0) {
                                                if (!why[0]) {
                                                        char f[4 * NAME_MAX + 1];
                                                        trigger_printable(a->filename, f, sizeof(f));
                                                        snprintf(why, sizeof(why),
                                                                 "%s: VM '%s' not taken on: %s", f, a->name,
                                                                 strerror(-r));
                                                }
                                                add_refused(d, b, a->e, r, why);
                                        }
                                }
                                break;
                        case ACT_INVALID:
                                if (d->cb.invalid)
                                        d->cb.invalid(a->filename, a->msg, a->flags | scan_flag, d->userdata);
                                break;
                        case ACT_TYPES:
                                break;
                        }
                        count++;
                }
        for (size_t i = 0; i < b->n_act; i++)
                free(b->act[i].msg);
        b->n_act = 0;
        return count;
}

/* End of a batch (or of a whole rescan): files refused as duplicates of a
 * held name get a chance to take it over; names nobody claimed are gone. */
static void settle(struct discovery *d, struct batch *b)
{
        if (!d->n_rel || b->r < 0)
                return;
        for (size_t i = 0; i < d->n; i++) {
                struct entry *e = d->v[i];
                if (!e->valid && e->dup_of[0] && find_release(d, e->dup_of))
                        batch_dirty(b, e->filename);
        }
        reconcile_round(d, b);
        while (d->n_rel && b->r == 0) {
                struct release *rl = d->rel[d->n_rel - 1];
                batch_act(b, ACT_REMOVED, rl->name, rl->filename);
                release_free(d, rl);
        }
}

/* ---- the directory ---- */

static void disarm(struct discovery *d)
{
        if (d->wd >= 0)
                inotify_rm_watch(d->ifd, d->wd);
        if (d->dfd >= 0)
                close(d->dfd);
        d->wd = d->dfd = -1;
}

static void watch_parent(struct discovery *d)
{
        struct stat st;

        if (d->pwd >= 0)
                return;
        /* Never the directory itself ("/"): that would replace its mask. */
        if (stat(d->parent, &st) < 0 || (d->dfd >= 0 && st.st_dev == d->dev && st.st_ino == d->ino))
                return;
        d->pwd = inotify_add_watch(d->ifd, d->parent, PARENT_MASK);
}

static int arm(struct discovery *d, struct stat *ret_st)
{
        struct stat a, b;
        int r;

        d->dfd = open(d->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (d->dfd < 0)
                return -errno;
        d->wd = inotify_add_watch(d->ifd, d->path, WATCH_MASK);
        if (d->wd < 0)
                goto fail_errno;
        /* The watch and the fd we read through must be the same directory. */
        if (fstat(d->dfd, &a) < 0 || stat(d->path, &b) < 0)
                goto fail_errno;
        if (a.st_dev != b.st_dev || a.st_ino != b.st_ino) {
                r = -ESTALE;
                goto fail;
        }
        d->dev = a.st_dev;
        d->ino = a.st_ino;
        if (ret_st)
                *ret_st = a;
        return 0;
fail_errno:
        r = -errno;
fail:
        disarm(d);
        return r;
}

static void kick(struct discovery *d, bool on)
{
        uint64_t v = 1;

        if (on == d->kicked)
                return;
        if (on)
                (void)!write(d->kfd, &v, sizeof(v));
        else
                (void)!read(d->kfd, &v, sizeof(v));
        d->kicked = on;
}

static void scan_request(struct discovery *d, const char *reason, bool new_dir)
{
        if (d->scan.active) {
                if (!d->scan.again)
                        d->scan.again_reason = reason;
                d->scan.again = true;
                d->scan.again_new_dir |= new_dir;
                return;
        }
        if (!d->scan.pending) {
                d->scan.reason = reason;
                d->scan.start_attempts = 0;
        }
        d->scan.pending = true;
        d->scan.new_dir |= new_dir;
        d->scan.start_due = 0;
}

static void scan_abort(struct discovery *d)
{
        for (size_t i = d->scan.pos; i < d->scan.n; i++)
                free(d->scan.files[i]);
        free(d->scan.files);
        d->scan.files = NULL;
        d->scan.n = d->scan.pos = 0;
        d->scan.active = false;
}

/* Is the path still the directory we watch? If not, let it go (its VMs
 * stay); when lost, try to arm on whatever is there now. */
static void dir_check(struct discovery *d)
{
        struct stat a, b;

        if (d->dfd >= 0) {
                int r = stat(d->path, &b);
                const char *why;
                if (fstat(d->dfd, &a) == 0 && r == 0 && S_ISDIR(b.st_mode) && b.st_dev == d->dev &&
                    b.st_ino == d->ino && a.st_nlink > 0) {
                        watch_parent(d);
                        return;
                }
                if (r == 0)
                        why = "replaced by another directory";
                else if (fstat(d->dfd, &a) == 0 && a.st_nlink == 0)
                        why = "deleted";
                else
                        why = "moved away";
                disarm(d);
                scan_abort(d);
                d->scan.again = false;
                d->lost = true;
                d->rearm_attempts = 0;
                d->rearm_due = 0;
                if (d->cb.dir)
                        d->cb.dir(DISCOVERY_DIR_LOST, why, NULL, d->userdata);
        }
        if (!d->lost)
                return;
        watch_parent(d);
        if (arm(d, &a) < 0) {
                d->rearm_attempts++;
                d->rearm_due = vmsig_now_ms() + backoff_ms(d->rearm_attempts);
                return;
        }
        d->lost = false;
        /* Re-watch the parent: it may be a new one too. */
        if (d->pwd >= 0)
                inotify_rm_watch(d->ifd, d->pwd);
        d->pwd = -1;
        watch_parent(d);
        if (d->cb.dir)
                d->cb.dir(DISCOVERY_DIR_ARMED, "re-armed", &a, d->userdata);
        scan_request(d, "directory re-armed", true);
}

static int collect_dir(struct discovery *d, char ***ret, size_t *ret_n)
{
        char **v = NULL;
        size_t n = 0, cap = 0;
        DIR *dir;
        struct dirent *de;
        int fd, r = 0;

        fd = openat(d->dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        dir = fdopendir(fd);
        if (!dir) {
                r = -errno;
                close(fd);
                return r;
        }
        /* The files we know are looked at too: they may be gone. */
        for (size_t i = 0; i < d->n && r == 0; i++) {
                if (grow((void **)&v, &cap, n + 1, sizeof(*v)) < 0 || !(v[n] = strdup(d->v[i]->filename)))
                        r = -ENOMEM;
                else
                        n++;
        }
        errno = 0;
        while (r == 0 && (de = readdir(dir))) {
                if (!trigger_filename_ignored(de->d_name)) {
                        if (grow((void **)&v, &cap, n + 1, sizeof(*v)) < 0 || !(v[n] = strdup(de->d_name)))
                                r = -ENOMEM;
                        else
                                n++;
                }
                errno = 0;
        }
        if (r == 0 && errno)
                r = -errno;
        closedir(dir);
        if (r < 0) {
                for (size_t i = 0; i < n; i++)
                        free(v[i]);
                free(v);
                return r;
        }
        *ret_n = sort_unique(v, n);
        *ret = v;
        return 0;
}

static int scan_begin(struct discovery *d)
{
        int r;

        if (d->dfd < 0)
                return -ENOENT;
        r = collect_dir(d, &d->scan.files, &d->scan.n);
        if (r < 0)
                return r;
        d->scan.pending = false;
        d->scan.active = true;
        d->scan.pos = 0;
        memset(&d->scan.st, 0, sizeof(d->scan.st));
        d->scan.st.reason = d->scan.reason ? d->scan.reason : "requested";
        return 0;
}

/* One slice of the running rescan (everything when budget_ms is 0).
 * Returns callbacks made or negative errno. */
static int scan_slice(struct discovery *d, unsigned budget_ms)
{
        struct batch b = {.new_dir = d->scan.new_dir, .st = &d->scan.st};
        uint64_t t0 = vmsig_now_ms();
        int count = 0, r;

        while (d->scan.pos < d->scan.n && b.r == 0) {
                size_t take = d->scan.n - d->scan.pos;
                if (take > ROUND_FILES)
                        take = ROUND_FILES;
                /* Hand the strings over to the batch. */
                for (size_t i = 0; i < take; i++) {
                        if (grow((void **)&b.dirty, &b.cap_dirty, b.n_dirty + 1, sizeof(*b.dirty)) < 0) {
                                b.r = -ENOMEM;
                                break;
                        }
                        b.dirty[b.n_dirty++] = d->scan.files[d->scan.pos];
                        d->scan.files[d->scan.pos++] = NULL;
                }
                d->scan.st.files += b.n_dirty;
                reconcile_round(d, &b);
                count += emit(d, &b);
                if (budget_ms && vmsig_now_ms() - t0 >= budget_ms)
                        break;
        }
        if (b.r == 0 && d->scan.pos >= d->scan.n) {
                struct discovery_scan_stats st;
                settle(d, &b);
                count += emit(d, &b);
                scan_abort(d);
                st = d->scan.st;
                d->scan.new_dir = false;
                if (d->cb.scanned)
                        d->cb.scanned(&st, d->userdata);
                if (d->scan.again) {
                        d->scan.again = false;
                        scan_request(d, d->scan.again_reason, d->scan.again_new_dir);
                        d->scan.again_new_dir = false;
                }
        }
        r = b.r;
        batch_free(&b);
        return r < 0 ? r : count;
}

/* ---- driving ---- */

static void update_timer(struct discovery *d)
{
        uint64_t due = UINT64_MAX, now = vmsig_now_ms();
        struct itimerspec its = {0};

        if (d->lost)
                due = d->rearm_due;
        else {
                for (size_t i = 0; i < d->n_retry; i++)
                        if (d->retry[i].due < due)
                                due = d->retry[i].due;
                if (d->scan.pending && d->scan.start_due > now && d->scan.start_due < due)
                        due = d->scan.start_due;
        }
        /* Work to do now: keep the fd readable. */
        kick(d, d->scan.active || (!d->lost && d->scan.pending && d->scan.start_due <= now) ||
                    (due != UINT64_MAX && due <= now));
        if (due != UINT64_MAX && due > now) {
                its.it_value.tv_sec = (time_t)(due / 1000);
                its.it_value.tv_nsec = (long)(due % 1000) * 1000000L;
        }
        timerfd_settime(d->tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

/* Events naming files: one batch. */
static int process_events(struct discovery *d, bool *overflow, bool *check)
{
        /* Aligned for struct inotify_event, as inotify(7) asks. */
        char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
        struct batch b = {0};
        int count = 0, r;

        for (;;) {
                ssize_t n = read(d->ifd, buf, sizeof(buf));
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                break;
                        batch_free(&b);
                        return -errno;
                }
                for (char *p = buf; p < buf + n;) {
                        const struct inotify_event *ev = (const struct inotify_event *)p;
                        p += sizeof(*ev) + ev->len;
                        if (ev->mask & IN_Q_OVERFLOW) {
                                *overflow = true;
                                continue;
                        }
                        if (ev->wd >= 0 && ev->wd == d->pwd) {
                                if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED | IN_UNMOUNT)) {
                                        if (!(ev->mask & IN_IGNORED))
                                                inotify_rm_watch(d->ifd, d->pwd);
                                        d->pwd = -1;
                                        *check = true;
                                } else if (ev->len && strcmp(ev->name, d->base) == 0) {
                                        *check = true;
                                }
                                continue;
                        }
                        if (ev->wd < 0 || ev->wd != d->wd)
                                continue;
                        if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED | IN_UNMOUNT)) {
                                *check = true;
                                continue;
                        }
                        if (ev->len && ev->name[0] && !trigger_filename_ignored(ev->name))
                                batch_dirty(&b, ev->name);
                }
                break; /* one buffer per call: bounded work; the fd stays readable */
        }
        if (b.n_dirty && d->dfd >= 0) {
                reconcile_round(d, &b);
                if (!d->scan.active)
                        settle(d, &b);
                count = emit(d, &b);
        }
        r = b.r;
        batch_free(&b);
        return r < 0 ? r : count;
}

static int process_retries(struct discovery *d)
{
        struct batch b = {0};
        uint64_t now = vmsig_now_ms();
        unsigned taken = 0;
        int count = 0, r;

        if (d->dfd < 0)
                return 0;
        for (size_t i = 0; i < d->n_retry && taken < RETRIES_PER && b.r == 0;) {
                struct entry *e;
                if (d->retry[i].due > now) {
                        i++;
                        continue;
                }
                e = find_file(d, d->retry[i].filename);
                if (e && e->attempts > 0) {
                        batch_dirty(&b, e->filename);
                        taken++;
                }
                free(d->retry[i].filename);
                d->retry[i] = d->retry[--d->n_retry];
        }
        if (b.n_dirty) {
                reconcile_round(d, &b);
                if (!d->scan.active)
                        settle(d, &b);
                count = emit(d, &b);
        }
        r = b.r;
        batch_free(&b);
        return r < 0 ? r : count;
}

int discovery_process(struct discovery *d)
{
        bool overflow = false, check = false;
        uint64_t tick;
        int count = 0, r;

        while (read(d->tfd, &tick, sizeof(tick)) < 0 && errno == EINTR)
                ;
        /* File events first: after `rm -rf` they say the files are gone,
         * read through the old directory fd. */
        r = process_events(d, &overflow, &check);
        if (r < 0)
                return r;
        count += r;
        if (check || (d->lost && d->rearm_due <= vmsig_now_ms()))
                dir_check(d);
        if (overflow) /* events were lost: only the directory itself is the truth */
                scan_request(d, "inotify overflow", false);
        r = process_retries(d);
        if (r < 0)
                return r;
        count += r;
        if (!d->lost && d->scan.pending && d->scan.start_due <= vmsig_now_ms()) {
                r = scan_begin(d);
                if (r < 0) {
                        /* Out of fds, say: try again later. */
                        d->scan.start_attempts++;
                        d->scan.start_due = vmsig_now_ms() + backoff_ms(d->scan.start_attempts);
                        if (r == -ENOENT)
                                dir_check(d);
                }
        }
        if (d->scan.active) {
                r = scan_slice(d, SLICE_MS);
                if (r < 0)
                        return r;
                count += r;
        }
        update_timer(d);
        return count;
}

void discovery_rescan_start(struct discovery *d, const char *reason)
{
        dir_check(d);
        if (!d->lost)
                scan_request(d, reason, false);
        update_timer(d);
}

int discovery_rescan(struct discovery *d)
{
        int count = 0, r;

        dir_check(d);
        if (d->lost)
                return -ENOENT;
        scan_request(d, "requested", false);
        while (d->scan.pending || d->scan.active) {
                if (!d->scan.active) {
                        r = scan_begin(d);
                        if (r < 0) {
                                update_timer(d);
                                return r;
                        }
                }
                r = scan_slice(d, 0);
                if (r < 0) {
                        update_timer(d);
                        return r;
                }
                count += r;
        }
        update_timer(d);
        return count;
}

static int split_path(struct discovery *d, const char *dir)
{
        size_t n = strlen(dir);
        const char *slash;

        while (n > 1 && dir[n - 1] == '/')
                n--;
        if (n >= sizeof(d->path))
                return -ENAMETOOLONG;
        memcpy(d->path, dir, n);
        d->path[n] = '\0';
        slash = strrchr(d->path, '/');
        if (!slash) {
                snprintf(d->parent, sizeof(d->parent), ".");
                snprintf(d->base, sizeof(d->base), "%s", d->path);
        } else {
                if (strlen(slash + 1) >= sizeof(d->base))
                        return -ENAMETOOLONG;
                snprintf(d->base, sizeof(d->base), "%s", slash + 1);
                if (slash == d->path)
                        snprintf(d->parent, sizeof(d->parent), "/");
                else
                        snprintf(d->parent, sizeof(d->parent), "%.*s", (int)(slash - d->path), d->path);
        }
        return 0;
}

static int epoll_add(int efd, int fd)
{
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        return epoll_ctl(efd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

int discovery_new(const char *dir, unsigned flags, const struct discovery_callbacks *cb, void *userdata,
                  struct discovery **ret)
{
        struct discovery *d;
        struct stat st;
        int r;

        if (!dir || !*dir)
                return -EINVAL;
        if ((flags & DISCOVERY_CREATE_DIR) && mkdir(dir, 0755) < 0 && errno != EEXIST)
                return -errno;
        d = calloc(1, sizeof(*d));
        if (!d)
                return -ENOMEM;
        d->efd = d->ifd = d->tfd = d->kfd = d->dfd = d->wd = d->pwd = -1;
        if (cb)
                d->cb = *cb;
        d->userdata = userdata;
        r = split_path(d, dir);
        if (r < 0)
                goto fail;

        d->efd = epoll_create1(EPOLL_CLOEXEC);
        if (d->efd >= 0)
                (void)fcntl(d->efd, F_SETFL, O_NONBLOCK);
        d->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        d->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        d->kfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (d->efd < 0 || d->ifd < 0 || d->tfd < 0 || d->kfd < 0)
                goto fail_errno;
        if ((r = epoll_add(d->efd, d->ifd)) < 0 || (r = epoll_add(d->efd, d->tfd)) < 0 ||
            (r = epoll_add(d->efd, d->kfd)) < 0)
                goto fail;
        r = arm(d, &st);
        if (r < 0)
                goto fail;
        watch_parent(d);
        if (d->cb.dir)
                d->cb.dir(DISCOVERY_DIR_ARMED, "", &st, d->userdata);
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
        scan_abort(d);
        for (size_t i = 0; i < d->n; i++)
                entry_free(d->v[i]);
        free(d->v);
        for (size_t i = 0; i < d->n_rel; i++)
                free(d->rel[i]);
        free(d->rel);
        for (size_t i = 0; i < d->n_retry; i++)
                free(d->retry[i].filename);
        free(d->retry);
        free(d->files.b);
        free(d->names.b);
        free(d->rels.b);
        if (d->dfd >= 0)
                close(d->dfd);
        if (d->efd >= 0)
                close(d->efd);
        if (d->ifd >= 0)
                close(d->ifd);
        if (d->tfd >= 0)
                close(d->tfd);
        if (d->kfd >= 0)
                close(d->kfd);
        free(d);
        return NULL;
}

int discovery_get_fd(const struct discovery *d)
{
        return d->efd;
}

size_t discovery_count(const struct discovery *d)
{
        return d->names.n;
}

const struct trigger *discovery_find(const struct discovery *d, const char *name, const char **ret_filename)
{
        struct entry *e = find_owner(d, name);

        if (!e)
                return NULL;
        if (ret_filename)
                *ret_filename = e->filename;
        return e->trig;
}
