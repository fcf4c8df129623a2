/* SPDX-License-Identifier: MIT */
#ifndef VMSIG_TOOLS_KEYMAP_H
#define VMSIG_TOOLS_KEYMAP_H

/* Key names and US-layout characters -> Linux key codes (linux/input-event-codes.h
 * values), for `vmsigctl input`. */

#include <stdbool.h>
#include <stdint.h>

#define KEYMAP_LEFTSHIFT 42
#define KEYMAP_LEFTCTRL  29
#define KEYMAP_LEFTALT   56

/* "a", "KEY_A", "enter", "f5", "leftctrl", or a number. 0 if unknown. */
uint32_t keymap_by_name(const char *name);
/* One printable ASCII character (plus \n, \t): its key and whether it needs
 * shift. false if the character has no key on a US layout. */
bool keymap_by_char(char ch, uint32_t *ret_code, bool *ret_shift);

#endif
