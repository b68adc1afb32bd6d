// The messages between a pager (native/src/uffd-pager.cc) and the keeper of its
// userfaultfds (pj-pager-keeper.c): one per seqpacket; a descriptor rides along
// with TASK and FORK. The pager tells the keeper everything a pager that takes
// over would need: each task's userfaultfd and each change to its memory since
// the restore (the pages it must not fill from the images any more).
#pragma once
#include <stdint.h>

enum {
  // pager -> keeper
  PJ_KEEP_TASK = 1,    // `task`'s userfaultfd (descriptor): a task CRIU restored as `pid`
  PJ_KEEP_FORK = 2,    // `task` (descriptor) was forked by `parent`: it has its parent's changes so far
  PJ_KEEP_CHANGE = 3,  // [from, from + len) of `task` moved to `to` (mremap), or was dropped (to = PJ_KEEP_DROPPED)
  PJ_KEEP_GONE = 4,    // `task` ended: its descriptor is closed
  PJ_KEEP_DONE = 5,    // every page is installed (or the copy is ended): close everything and exit
  PJ_KEEP_ADOPT = 6,   // a pager takes over: answered with each task (TASK with its descriptor, then its CHANGEs), then END
  // keeper -> pager
  PJ_KEEP_END = 7,
};

#define PJ_KEEP_DROPPED UINT64_MAX

struct pj_keep_msg {
  uint32_t type;
  uint32_t task;
  uint32_t parent;
  int32_t pid;
  uint64_t from, len, to;
};

#ifdef __cplusplus
static_assert(sizeof(pj_keep_msg) == 40, "pj_keep_msg is 40 bytes");
#else
_Static_assert(sizeof(struct pj_keep_msg) == 40, "pj_keep_msg is 40 bytes");
#endif
