// For tunnel-frame.test.ts: reads a framed stream from stdin with tunnel-frame.h (as the relay
// does), prints the length of each data frame and whether an EOF frame came, then writes the data
// back framed as the relay frames it (pieces of at most PJ_FRAME_MAX, then EOF).
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include "../../native/init/tunnel-frame.h"

static char* all;
static size_t len, cap;

static int read_exactly(char* to, size_t n) {
  for (size_t got = 0; got < n;) {
    ssize_t r = read(0, to + got, n - got);
    if (r <= 0) return -1;
    got += (size_t)r;
  }
  return 0;
}

static void write_all(const char* from, size_t n) {
  for (size_t done = 0; done < n;) {
    ssize_t w = write(1, from + done, n - done);
    if (w <= 0) exit(1);
    done += (size_t)w;
  }
}

int main(void) {
  char h[PJ_FRAME_HEADER];
  int eof = 0;
  fprintf(stderr, "{\"header\":%d,\"max\":%d,\"frames\":[", PJ_FRAME_HEADER, PJ_FRAME_MAX);
  for (int first = 1; !eof && read_exactly(h, sizeof h) == 0; first = 0) {
    uint32_t n = pj_frame_length(h);
    if (n == 0) { eof = 1; break; }
    if (len + n > cap && !(all = realloc(all, cap = (len + n) * 2))) return 1;
    if (read_exactly(all + len, n) != 0) return 1;
    len += n;
    fprintf(stderr, "%s%u", first ? "" : ",", n);
  }
  fprintf(stderr, "],\"eof\":%s}\n", eof ? "true" : "false");
  for (size_t at = 0; at < len;) {
    uint32_t n = len - at < PJ_FRAME_MAX ? (uint32_t)(len - at) : PJ_FRAME_MAX;
    pj_frame_header(h, n);
    write_all(h, sizeof h);
    write_all(all + at, n);
    at += n;
  }
  pj_frame_header(h, 0);
  write_all(h, sizeof h);
  return 0;
}
