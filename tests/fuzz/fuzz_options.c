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
 *  - no adapter's open() accepts a string the checker refuses (typos fail),
 *    and each adapter's open() accepts exactly what its registry spec does
 *    (where open() has nothing else that can fail).
 * Adapters whose options name host paths (input uinput=, input stub record=)
 * are opened only without that key: the fuzzer must not create or connect to
 * arbitrary files. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <vmsig/adapter.h>

#include "adapters/registry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_OPTS 4096
#define MAX_KEYS 8

struct known_set {
        const char *const *keys;
        unsigned n;
};

/* The known lists of the adapters (src/adapters/), plus edge cases of
 * the checker itself (empty list, a key that is a prefix of another). */
static const char *const k_vmhost[] = {"retry_ms", "retry_max_ms", "cmd_timeout_ms"};
static const char *const k_memctx[] = {"retry_ms", "retry_max_ms", "os"};
static const char *const k_input[] = {"uinput", "retry_ms", "retry_max_ms", "cmd_timeout_ms"};
static const char *const k_memctx_stub[] = {"ram_mib", "fail_boots", "retry_ms"};
static const char *const k_vmhost_stub[] = {"state", "powerdown_ms"};
static const char *const k_input_stub[] = {"record"};
static const char *const k_prefix[] = {"a", "ab", "abc", ""};
/* The shape alone: every key a string of any length. */
static void shape_spec(const struct known_set *k, struct opt_spec *spec)
{
        for (unsigned i = 0; i < k->n; i++)
                spec[i] = (struct opt_spec){.key = k->keys[i], .type = OPT_STRING, .max = UINT64_MAX};
}

static const struct known_set sets[] = {
    {k_vmhost, 3},      {k_memctx, 3},     {k_input, 4},  {k_memctx_stub, 3},
    {k_vmhost_stub, 2}, {k_input_stub, 1}, {k_prefix, 4}, {NULL, 0},
};

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

static void try_open(const struct vmsig_adapter_ops *ops, const struct vmsig_adapter_cfg *cfg,
                     bool checked_ok)
{
        void *inst = NULL;

        if (!ops)
                return;
        int r = ops->open(cfg, 7, &inst);
        if (r == 0) {
                if (!checked_ok) /* a typo or duplicate must fail open() */
                        abort();
                ops->close(inst);
        } else if (r > 0 || inst) {
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

        bool ok[sizeof(sets) / sizeof(sets[0])];
        for (size_t s = 0; s < sizeof(sets) / sizeof(sets[0]); s++) {
                const struct known_set *k = &sets[s];
                struct opt_spec spec[MAX_KEYS];
                char why[256];
                shape_spec(k, spec);
                int a = adapter_options_parse(opts, spec, k->n, NULL, NULL, why, sizeof(why));
                ok[s] = model_ok(k, it, n);
                if ((a != 0 && a != -EINVAL) || (a == 0) != ok[s])
                        abort();
        }
        /* NULL means no options */
        if (adapter_options_parse(NULL, NULL, 0, NULL, NULL, NULL, 0))
                abort();

        static const char *const probe[] = {"retry_ms", "retry_max_ms", "cmd_timeout_ms", "os", "uinput", "ram_mib",
                                            "fail_boots", "state",        "record", "a",      "ab"};
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
        /* open() of these fails on nothing but its options (and ENOMEM) */
        static const struct {
                unsigned driver;
                uint8_t seam;
        } exact[] = {{VM_DRIVER_QEMU, VMSIG_SRC_VMHOST}, {VM_DRIVER_QEMU, VMSIG_SRC_MEMCTX},
                     {VM_DRIVER_STUB, VMSIG_SRC_VMHOST}};
        for (size_t i = 0; i < sizeof(exact) / sizeof(exact[0]); i++) {
                const struct adapter_desc *ad = adapter_find(exact[i].driver, exact[i].seam);
                void *inst = NULL;
                if (!ad)
                        continue;
                int p = adapter_options_parse(opts, ad->opts, ad->n_opts, NULL, NULL, NULL, 0);
                int r = ad->ops->open(&cfg, 7, &inst);
                if ((p == 0) != (r == 0))
                        abort();
                if (r == 0)
                        ad->ops->close(inst);
        }
        try_open(vmsig_vmhost_ops(), &cfg, ok[0]);
        try_open(vmsig_memctx_ops(), &cfg, ok[1]);
        if (vmsig_option_get(opts, "uinput", NULL, 0) == -ENOENT)
                try_open(vmsig_input_ops(), &cfg, ok[2]);
        try_open(vmsig_memctx_stub_ops(), &cfg, ok[3]);
        try_open(vmsig_vmhost_stub_ops(), &cfg, ok[4]);
        if (vmsig_option_get(opts, "record", NULL, 0) == -ENOENT)
                try_open(vmsig_input_stub_ops(), &cfg, ok[5]);
        return 0;
}
