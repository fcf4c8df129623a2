/* SPDX-License-Identifier: MIT */
#ifndef VMSIGD_AUDIT_H
#define VMSIGD_AUDIT_H

/* The audit sink: one line per struct vmsig_audit_record, written with one
 * write(2) so concurrent writers never interleave within a line.
 *
 * Destinations (config key [daemon] audit):
 *   journal     stderr with a syslog priority prefix ("<4>" for denials,
 *               "<5>" otherwise). vmsigd_core does not link libsystemd;
 *               journald parses that prefix on a service's stdout/stderr
 *               (SyslogLevelPrefix=yes, the default), so the records land
 *               in the journal with the right PRIORITY.
 *   stderr      the same line without the prefix.
 *   file:PATH   appended to PATH (O_APPEND, created 0640).
 *
 * Line format (key=value, strings quoted with \" \\ and \xNN escapes):
 *   vmsig-audit what=deny uid=1000 pid=42 control=3 name="vmsigctl"
 *   endpoint=1 kind=CMD_POWER corr=7 result=-1 err=EPERM reason="..." */

#include <stddef.h>

#include <vmsig/bus.h>

#define AUDIT_LINE_MAX 1024u

struct audit;

/* spec: "journal", "stderr" or "file:/absolute/path". -EINVAL for anything
 * else; open(2) errors for the file. */
int audit_open(const char *spec, struct audit **ret);
/* Accepts NULL, returns NULL. */
struct audit *audit_free(struct audit *a);

/* File mode: open the path again (after log rotation). No-op otherwise. */
int audit_reopen(struct audit *a);

/* Format rec as one line ending in '\n' (truncated to fit, keeping the
 * newline). Returns the length. No prefix. */
size_t audit_format(const struct vmsig_audit_record *rec, char *buf, size_t len);

/* Format and write one record. 0 or negative errno. */
int audit_write(struct audit *a, const struct vmsig_audit_record *rec);

/* Same, shaped as a vmsig_audit_fn for vmsig_bus_set_audit (userdata is
 * the struct audit). Write errors are counted, not reported. */
void audit_bus_fn(const struct vmsig_audit_record *rec, void *userdata);
unsigned long audit_errors(const struct audit *a);

const char *audit_what_name(enum vmsig_audit_what what);

#endif
