/*
 * The spawn child's entry point (spawn.c), for the parent's side of a spawn
 * (spawnparent.c: clone3, the stack, the wait for the exec or the report).
 * Internal: not seen by cffi, not exported from the extension.
 */
#ifndef NSBIND_SPAWNCHILD_H
#define NSBIND_SPAWNCHILD_H

#include "spawn.h"

#pragma GCC visibility push(hidden)

/* Run the plan's steps (arg: a const struct nsb_spawn_plan *) and exec; returns
 * never: a failed step reports and exits (spawn.h). */
int nsb_child_main(void *arg);

#pragma GCC visibility pop

#endif /* NSBIND_SPAWNCHILD_H */
