/* SPDX-License-Identifier: MIT */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tools/keymap.h"

static const struct {
        const char *name;
        uint32_t code;
} names[] = {
    {"esc", 1},        {"1", 2},           {"2", 3},           {"3", 4},           {"4", 5},
    {"5", 6},          {"6", 7},           {"7", 8},           {"8", 9},           {"9", 10},
    {"0", 11},         {"minus", 12},      {"equal", 13},      {"backspace", 14},  {"tab", 15},
    {"q", 16},         {"w", 17},          {"e", 18},          {"r", 19},          {"t", 20},
    {"y", 21},         {"u", 22},          {"i", 23},          {"o", 24},          {"p", 25},
    {"leftbrace", 26}, {"rightbrace", 27}, {"enter", 28},      {"leftctrl", 29},   {"a", 30},
    {"s", 31},         {"d", 32},          {"f", 33},          {"g", 34},          {"h", 35},
    {"j", 36},         {"k", 37},          {"l", 38},          {"semicolon", 39},  {"apostrophe", 40},
    {"grave", 41},     {"leftshift", 42},  {"backslash", 43},  {"z", 44},          {"x", 45},
    {"c", 46},         {"v", 47},          {"b", 48},          {"n", 49},          {"m", 50},
    {"comma", 51},     {"dot", 52},        {"slash", 53},      {"rightshift", 54}, {"leftalt", 56},
    {"space", 57},     {"capslock", 58},   {"f1", 59},         {"f2", 60},         {"f3", 61},
    {"f4", 62},        {"f5", 63},         {"f6", 64},         {"f7", 65},         {"f8", 66},
    {"f9", 67},        {"f10", 68},        {"f11", 87},        {"f12", 88},        {"rightctrl", 97},
    {"rightalt", 100}, {"home", 102},      {"up", 103},        {"pageup", 104},    {"left", 105},
    {"right", 106},    {"end", 107},       {"down", 108},      {"pagedown", 109},  {"insert", 110},
    {"delete", 111},   {"leftmeta", 125},  {"rightmeta", 126}, {"ctrl", 29},       {"shift", 42},
    {"alt", 56},       {"meta", 125},      {"return", 28},     {"escape", 1},
};

uint32_t keymap_by_name(const char *name)
{
        char *end;

        if (!name || !*name)
                return 0;
        if (isdigit((unsigned char)name[0]) && name[1]) {
                unsigned long v = strtoul(name, &end, 0);
                return *end == '\0' && v > 0 && v < 768 ? (uint32_t)v : 0;
        }
        if (strncasecmp(name, "KEY_", 4) == 0)
                name += 4;
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
                if (strcasecmp(name, names[i].name) == 0)
                        return names[i].code;
        return 0;
}

bool keymap_by_char(char ch, uint32_t *ret_code, bool *ret_shift)
{
        static const char plain[] = "1234567890-=qwertyuiop[]asdfghjkl;'`\\zxcvbnm,./";
        static const char shifted[] = "!@#$%^&*()_+QWERTYUIOP{}ASDFGHJKL:\"~|ZXCVBNM<>?";
        static const uint8_t codes[] = {2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 16, 17, 18, 19,
                                        20, 21, 22, 23, 24, 25, 26, 27, 30, 31, 32, 33, 34, 35, 36, 37,
                                        38, 39, 40, 41, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53};
        const char *p;

        *ret_shift = false;
        if (ch == ' ') {
                *ret_code = 57;
                return true;
        }
        if (ch == '\n') {
                *ret_code = 28;
                return true;
        }
        if (ch == '\t') {
                *ret_code = 15;
                return true;
        }
        if (!ch)
                return false;
        if ((p = strchr(plain, ch))) {
                *ret_code = codes[p - plain];
                return true;
        }
        if ((p = strchr(shifted, ch))) {
                *ret_code = codes[p - shifted];
                *ret_shift = true;
                return true;
        }
        return false;
}
