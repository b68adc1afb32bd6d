// A job whose memory changes shape while it runs, as allocators and servers
// do: MIB MiB (argv[1]) of private memory in 4 MiB chunks, every page stamped
// with its number; then, round after round, it forks a child that checks a
// chunk it never touches itself, moves another chunk away and back with
// mremap and checks it, and drops the first pages of a third with
// MADV_DONTNEED and checks that they read zero before stamping them again.
// Prints "round N" every 50 rounds; on a wrong page prints "BAD ..." and exits 1.
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGE 4096ul
#define CHUNK (4ul << 20)
#define DROPPED 4

static uint8_t *base;
static size_t chunks;

static void stamp(uint8_t *at, size_t page) {
  memset(at, (int)(page % 251) + 1, PAGE);
  memcpy(at, &page, sizeof page);
}

static int stamped(const uint8_t *at, size_t page) {
  size_t got;
  memcpy(&got, at, sizeof got);
  return got == page && at[PAGE - 1] == (uint8_t)(page % 251 + 1);
}

// The first wrong page of chunk c found at `at`, or -1.
static long check(const uint8_t *at, size_t c) {
  for (size_t i = 0; i < CHUNK / PAGE; i++)
    if (!stamped(at + i * PAGE, c * (CHUNK / PAGE) + i)) return (long)i;
  return -1;
}

static void bad(const char *what, size_t c, long page) {
  printf("BAD %s: chunk %zu page %ld\n", what, c, page);
  fflush(stdout);
  exit(1);
}

int main(int argc, char **argv) {
  chunks = (argc > 1 ? strtoul(argv[1], NULL, 10) : 256) * (1 << 20) / CHUNK;
  if (chunks < 8) chunks = 8;
  base = mmap(NULL, chunks * CHUNK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  uint8_t *spare = mmap(NULL, CHUNK, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED || spare == MAP_FAILED) return perror("mmap"), 2;
  for (size_t p = 0; p < chunks * CHUNK / PAGE; p++) stamp(base + p * PAGE, p);
  printf("ready\n");
  fflush(stdout);

  for (unsigned long r = 1;; r++) {
    size_t forked = (r * 7) % chunks, moved = (r * 7 + 3) % chunks, dropped = (r * 7 + 5) % chunks;
    pid_t child = fork();
    if (child == 0) _exit(check(base + forked * CHUNK, forked) < 0 ? 0 : 1);
    int status;
    if (child < 0 || waitpid(child, &status, 0) != child) return perror("fork"), 2;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) bad("in a forked child", forked, -1);

    uint8_t *home = base + moved * CHUNK;
    if (mremap(home, CHUNK, CHUNK, MREMAP_MAYMOVE | MREMAP_FIXED, spare) != spare) return perror("mremap"), 2;
    long wrong = check(spare, moved);
    if (mremap(spare, CHUNK, CHUNK, MREMAP_MAYMOVE | MREMAP_FIXED, home) != home) return perror("mremap back"), 2;
    if (mmap(spare, CHUNK, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != spare) return perror("mmap spare"), 2;
    if (wrong >= 0) bad("after mremap", moved, wrong);

    uint8_t *gone = base + dropped * CHUNK;
    if (madvise(gone, DROPPED * PAGE, MADV_DONTNEED) != 0) return perror("madvise"), 2;
    for (size_t i = 0; i < DROPPED * PAGE; i++)
      if (gone[i] != 0) bad("not zero after MADV_DONTNEED", dropped, (long)(i / PAGE));
    for (size_t i = 0; i < DROPPED; i++) stamp(gone + i * PAGE, dropped * (CHUNK / PAGE) + i);

    if (r % 50 == 0) {
      printf("round %lu\n", r);
      fflush(stdout);
    }
  }
}
