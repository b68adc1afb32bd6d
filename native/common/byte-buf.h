// A growable byte buffer for the relays (native/init/relay.c, native/holder/pj-holder.c): bytes
// read from one socket and not yet written to the other.
#pragma once
#include <stdlib.h>
#include <string.h>

struct buf { char* data; size_t len, cap; };

// Room for `more` bytes after what it holds; -1 when memory is short.
static inline int buf_reserve(struct buf* b, size_t more) {
  if (b->len + more <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 65536;
  while (cap < b->len + more) cap *= 2;
  char* d = realloc(b->data, cap);
  if (!d) return -1;
  b->data = d;
  b->cap = cap;
  return 0;
}

// Drops the first n bytes (written out).
static inline void buf_consume(struct buf* b, size_t n) {
  memmove(b->data, b->data + n, b->len - n);
  b->len -= n;
}
