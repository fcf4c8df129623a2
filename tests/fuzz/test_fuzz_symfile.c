/* SPDX-License-Identifier: MIT */
/* The symbol-file parser behind vmsigctl read --symbols (fuzz_symfile):
 * what it must refuse, with the file and line named, and what it takes. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "tools/symfile.h"

static int parse(const char *text, struct symfile_want *w, size_t nw, char *err, size_t errlen)
{
        return symfile_parse(text, strlen(text), "t.map", w, nw, err, errlen);
}

static void test_good_files(void **state)
{
        (void)state;
        char err[256] = "";
        struct symfile_want w[3] = {{.name = "_text"}, {.name = "linux_banner"}, {.name = "mod_fn"}};
        /* System.map */
        assert_int_equal(parse("ffffffff81000000 T _stext\n"
                               "ffffffff81000000 T _text\n"
                               "ffffffff82200100 D linux_banner\n",
                               w, 3, err, sizeof(err)),
                         0);
        assert_int_equal(w[0].addr, 0xffffffff81000000ull);
        assert_int_equal(w[0].line, 2);
        assert_int_equal(w[1].addr, 0xffffffff82200100ull);
        assert_int_equal(w[1].line, 3);
        assert_int_equal(w[2].line, 0); /* absent: not an error here */
        /* /proc/kallsyms text: CRLF, tabs, a module symbol (never the
         * image's), blank lines, no final newline, lowercase hex. */
        assert_int_equal(parse("ffffffff9a600000 T _text\r\n"
                               "\n"
                               "ffffffffc0a01000\tt\tmod_fn\t[vmsig_mod]\n"
                               "ffffffff9b800100 d linux_banner",
                               w, 3, err, sizeof(err)),
                         0);
        assert_int_equal(w[0].addr, 0xffffffff9a600000ull);
        assert_int_equal(w[1].line, 4);
        assert_int_equal(w[2].line, 0);
        /* The same symbol twice at one address (an alias) is one symbol;
         * at two addresses it is ambiguous. */
        assert_int_equal(parse("ffffffff81000000 T _text\nffffffff81000000 T _text\n"
                               "ffffffff81000010 t linux_banner\nffffffff81000020 t linux_banner\n"
                               "ffffffff81000030 t linux_banner\n",
                               w, 3, err, sizeof(err)),
                         0);
        assert_int_equal(w[0].dups, 0);
        assert_int_equal(w[1].dups, 2);
        assert_int_equal(w[1].line, 3);
        assert_int_equal(w[1].line2, 4);
}

static void test_bad_files(void **state)
{
        (void)state;
        static const struct {
                const char *text, *want;
        } rows[] = {
            {"", "t.map: no symbols in it"},
            {"\n\n", "t.map: no symbols in it"},
            {"0000000000000000 T _text\n0000000000000000 D linux_banner\n", "every address is 0"},
            {"ffffffff81000000 T _text\nzzzz T x\n", "t.map:2: expected 'ADDRESS TYPE NAME', no hex address"},
            {"ffffffff810000001 T _text\n", "t.map:1: address longer than 16 hex digits"},
            {"ffffffff81000000T _text\n", "t.map:1: no blank after the address"},
            {"ffffffff81000000  T _text\n", "t.map:1: bad symbol type"},
            {"ffffffff81000000 * _text\n", "t.map:1: bad symbol type"},
            {"ffffffff81000000 TT _text\n", "t.map:1: the symbol type must be one character"},
            {"ffffffff81000000 T\n", "t.map:1: the symbol type must be one character"},
            {"ffffffff81000000 T \n", "t.map:1: no symbol name"},
            {"ffffffff81000000 T _te\x01xt\n", "t.map:1: bad character 0x01 in the symbol name"},
            {"ffffffff81000000 T _text extra\n", "t.map:1: expected 'ADDRESS TYPE NAME' or"},
            {"ffffffff81000000 T _text [mod\n", "t.map:1: expected 'ADDRESS TYPE NAME' or"},
            {"ffffffff81000000 T _text []\n", "t.map:1: expected 'ADDRESS TYPE NAME' or"},
            {"ffffffff81000000 T _text [mod] x\n", "t.map:1: expected 'ADDRESS TYPE NAME' or"},
            {"ffffffffffffffff B The real System.map is in the linux-image-6.1.0-dbg package\n",
             "t.map:1: Debian's placeholder System.map"},
        };
        for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
                char err[256] = "";
                struct symfile_want w = {.name = "_text"};
                int r = parse(rows[i].text, &w, 1, err, sizeof(err));
                if (r != -EINVAL || !strstr(err, rows[i].want))
                        fail_msg("row %zu: %d '%s', want -EINVAL '%s'", i, r, err, rows[i].want);
        }
        /* A NUL byte, and a line too long: named by line. */
        char err[256];
        struct symfile_want w = {.name = "_text"};
        static const char nul[] = "ffffffff81000000 T _text\nffffffff81000000 T a\0b\n";
        assert_int_equal(symfile_parse(nul, sizeof(nul) - 1, "t.map", &w, 1, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "t.map:2: NUL byte"));
        char *longline = malloc(2100);
        memset(longline, 'a', 2099);
        memcpy(longline, "ffffffff81000000 T ", 19);
        longline[2099] = '\0';
        assert_int_equal(parse(longline, &w, 1, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "t.map:1: line longer than 1024 bytes"));
        /* A name of 512 bytes is over KSYM_NAME_LEN. */
        longline[19 + 512] = '\0';
        assert_int_equal(parse(longline, &w, 1, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "longer than 511 bytes"));
        free(longline);
        /* Too big to be a symbol file: refused before parsing. */
        assert_int_equal(symfile_parse("x", SYMFILE_MAX_BYTES + 1ul, "t.map", &w, 1, err, sizeof(err)),
                         -EFBIG);
}

static void test_load(void **state)
{
        (void)state;
        char path[] = "/tmp/vmsig-symfile-XXXXXX", err[256];
        struct symfile_want w = {.name = "linux_banner"};
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        static const char text[] = "ffffffff81000000 T _text\nffffffff82200100 D linux_banner\n";
        assert_int_equal(write(fd, text, sizeof(text) - 1), (ssize_t)sizeof(text) - 1);
        close(fd);
        assert_int_equal(symfile_load(path, &w, 1, err, sizeof(err)), 0);
        assert_int_equal(w.addr, 0xffffffff82200100ull);
        unlink(path);
        assert_int_equal(symfile_load(path, &w, 1, err, sizeof(err)), -ENOENT);
        assert_non_null(strstr(err, path));
        assert_int_equal(symfile_load("/", &w, 1, err, sizeof(err)), -EISDIR);
}

static void test_split(void **state)
{
        (void)state;
        char name[SYMFILE_NAME_MAX + 1];
        uint64_t off = 7;
        assert_int_equal(symfile_split("linux_banner", name, sizeof(name), &off), 0);
        assert_string_equal(name, "linux_banner");
        assert_int_equal(off, 0);
        assert_int_equal(symfile_split("init_uts_ns+0x10", name, sizeof(name), &off), 0);
        assert_string_equal(name, "init_uts_ns");
        assert_int_equal(off, 16);
        assert_int_equal(symfile_split("x+42", name, sizeof(name), &off), 0);
        assert_int_equal(off, 42);
        assert_int_equal(symfile_split("x+0xffffffffffffffff", name, sizeof(name), &off), 0);
        assert_int_equal(off, UINT64_MAX);
        static const char *const bad[] = {
            "",
            "+1",
            "x+",
            "x+0x",
            "x+1+2",
            "x+-1",
            "x+0x1g",
            "x+18446744073709551616",
            "x+0x10000000000000000",
            "a b",
            "a\tb",
            "a[1]",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                if (symfile_split(bad[i], name, sizeof(name), &off) != -EINVAL)
                        fail_msg("'%s' was accepted", bad[i]);
        assert_int_equal(symfile_split("abcdef", name, 4, &off), -EINVAL); /* does not fit */
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_good_files),
            cmocka_unit_test(test_bad_files),
            cmocka_unit_test(test_load),
            cmocka_unit_test(test_split),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
