/* SPDX-License-Identifier: MIT */
/* The adapter option string ("k=v,k=v", from a trigger file the QEMU side may
 * write) through the strict checkers and every adapter's real open().
 *
 * Checked on every input (abort() on a miss):
 *  - adapter_options_parse, the one strict checker of every adapter, agrees
 *    on the shape with a small independent model of the documented rule:
 *    every item has a non-empty key from the known list and an '=', each
 *    key at most once; "" is fine;
 *  - vmsig_option_get() returns exactly the model's value for each key;
 *  - every adapter of the seam registry: its open() accepts exactly what
 *    its own spec does (typos fail), and its spec never passes a bad shape.
 * Adapters whose options name host paths (input uinput=, input stub record=)
 * are opened only without such a key: the fuzzer must not create or connect
 * to arbitrary files. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <vmsig/adapter.h>

#include "adapters/registry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_OPTS 4096
#define MAX_KEYS OPT_SPEC_MAX

struct known_set {
        const char *const *keys;
        unsigned n;
};

/* Edge cases of the checker itself (a key that is a prefix of another, an
 * empty key, no key at all); the adapters' own lists come from the seam
 * registry. */
static const char *const k_prefix[] = {"a", "ab", "abc", ""};
static const struct known_set sets[] = {{k_prefix, 4}, {NULL, 0}};

/* The shape alone: every key a string of any length. */
static void shape_spec(const struct known_set *k, struct opt_spec *spec)
{
        for (unsigned i = 0; i < k->n; i++)
                spec[i] = (struct opt_spec){.key = k->keys[i], .type = OPT_STRING, .max = UINT64_MAX};
}

struct item {
        const char *key, *val;
        size_t klen, vlen;
        bool has_eq;
};

/* Split on ',' with no cleverness: the reference the checkers must match. */
static size_t split(const char *s, struct item *it, size_t cap)
{
        size_t n = 0;

        if (!*s)
                return 0;
        for (const char *p = s;; n++) {
                const char *c = strchr(p, ',');
                size_t len = c ? (size_t)(c - p) : strlen(p);
                if (n < cap) {
                        const char *eq = memchr(p, '=', len);
                        it[n].key = p;
                        it[n].klen = eq ? (size_t)(eq - p) : len;
                        it[n].has_eq = eq != NULL;
                        it[n].val = eq ? eq + 1 : p + len;
                        it[n].vlen = eq ? len - it[n].klen - 1 : 0;
                }
                if (!c)
                        return n + 1;
                p = c + 1;
        }
}

static int key_index(const struct known_set *k, const char *key, size_t klen)
{
        for (unsigned i = 0; i < k->n; i++)
                if (strlen(k->keys[i]) == klen && !memcmp(k->keys[i], key, klen))
                        return (int)i;
        return -1;
}

static bool model_ok(const struct known_set *k, const struct item *it, size_t n)
{
        bool seen[MAX_KEYS] = {false};

        for (size_t i = 0; i < n; i++) {
                int x = it[i].has_eq && it[i].klen ? key_index(k, it[i].key, it[i].klen) : -1;
                if (x < 0 || seen[x])
                        return false;
                seen[x] = true;
        }
        return true;
}

static void check_get(const char *opts, const struct item *it, size_t n, const char *key)
{
        char buf[64];
        int r = vmsig_option_get(opts, key, buf, sizeof(buf));
        /* first item whose name (up to '=' or the item's end) is key */
        for (size_t i = 0; i < n; i++) {
                if (it[i].klen != strlen(key) || memcmp(it[i].key, key, it[i].klen))
                        continue;
                if (it[i].vlen + 1 > sizeof(buf)) {
                        if (r != -ENAMETOOLONG)
                                abort();
                } else if (r != 0 || strlen(buf) != it[i].vlen || memcmp(buf, it[i].val, it[i].vlen)) {
                        abort();
                }
                return;
        }
        if (r != -ENOENT)
                abort();
}

static bool shape_ok(const struct known_set *k, const char *opts, const struct item *it, size_t n)
{
        struct opt_spec spec[OPT_SPEC_MAX];
        char why[256];

        shape_spec(k, spec);
        int a = adapter_options_parse(opts, spec, k->n, NULL, NULL, why, sizeof(why));
        bool ok = model_ok(k, it, n);
        if ((a != 0 && a != -EINVAL) || (a == 0) != ok)
                abort();
        return ok;
}

/* Does opts give an option that names a host path (input uinput=, input
 * stub record=)? The fuzzer must not create or connect to arbitrary files. */
static bool names_a_path(const struct adapter_desc *ad, const char *opts)
{
        for (size_t i = 0; i < ad->n_opts; i++)
                if ((ad->opts[i].type == OPT_ABS_PATH || ad->opts[i].type == OPT_STRING) &&
                    vmsig_option_get(opts, ad->opts[i].key, NULL, 0) != -ENOENT)
                        return true;
        return false;
}

/* Every adapter of the registry: open() accepts exactly what its spec does
 * (a typo or a duplicate fails open()), and its spec never a bad shape. */
static void try_adapter(const struct adapter_desc *ad, const struct vmsig_adapter_cfg *cfg,
                        const struct item *it, size_t n)
{
        const char *keys[OPT_SPEC_MAX];
        struct known_set k = {keys, (unsigned)ad->n_opts};
        void *inst = NULL;

        for (size_t i = 0; i < ad->n_opts; i++)
                keys[i] = ad->opts[i].key;
        bool ok = shape_ok(&k, cfg->options, it, n);
        int p = adapter_options_parse(cfg->options, ad->opts, ad->n_opts, NULL, NULL, NULL, 0);
        if (p == 0 && !ok)
                abort();
        if (names_a_path(ad, cfg->options))
                return;
        int r = ad->ops->open(cfg, 7, &inst);
        if (r == 0) {
                if (p != 0)
                        abort();
                ad->ops->close(inst);
        } else if (r > 0 || inst) {
                abort();
        } else if (p == 0 && r != -ENOMEM && r != -EMFILE && r != -ENFILE) {
                abort();
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static struct item it[MAX_OPTS + 1];
        char opts[MAX_OPTS + 1];

        if (size > MAX_OPTS)
                return 0;
        memcpy(opts, data, size);
        opts[size] = '\0'; /* a trigger file's value is a C string: stop at NUL */
        size_t n = split(opts, it, MAX_OPTS + 1);

        for (size_t s = 0; s < sizeof(sets) / sizeof(sets[0]); s++)
                (void)shape_ok(&sets[s], opts, it, n);
        /* NULL means no options */
        if (adapter_options_parse(NULL, NULL, 0, NULL, NULL, NULL, 0))
                abort();

        static const char *const probe[] = {"retry_ms", "retry_max_ms", "cmd_timeout_ms", "os",     "uinput",
                                            "ram_mib",  "fail_boots",   "state",          "record", "a",
                                            "ab"};
        for (size_t i = 0; i < sizeof(probe) / sizeof(probe[0]); i++)
                check_get(opts, it, n, probe[i]);
        /* an empty key never matches, not even "=v" */
        if (vmsig_option_get(opts, "", NULL, 0) != -ENOENT)
                abort();
        {
                uint64_t v;
                int r = vmsig_option_u64(opts, "retry_ms", 5, &v);
                if (r == 0 && vmsig_option_get(opts, "retry_ms", NULL, 0) == -ENOENT && v != 5)
                        abort();
        }

        /* Nothing is connected at open(): the paths need not exist. */
        struct vmsig_adapter_cfg cfg = {.vm_name = "fuzz-no-such-vm",
                                        .qmp_path = "/nonexistent/vmsig-fuzz/qmp.sock",
                                        .ram_path = "/nonexistent/vmsig-fuzz/ram",
                                        .options = opts};
        size_t nseams;
        const struct seam_def *seams = seam_registry(&nseams);
        for (size_t i = 0; i < nseams; i++)
                for (unsigned d = 0; d < VM_DRIVER_COUNT; d++)
                        if (seams[i].adapter[d])
                                try_adapter(seams[i].adapter[d], &cfg, it, n);
        return 0;
}
