// A job whose state lives where daemons keep theirs: a SysV shared memory
// segment, a POSIX shared memory object (/dev/shm), a file in /tmp and a file
// in /tmp deleted while open. Each round it checks that all four still hold
// the count of the round before, then writes the new count and prints it; a
// move that lost any of them ends it with "lost: ..." and exit 3.
//   shared-memory [NAME]   (NAME: the /dev/shm object, default "pj-shm")
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <time.h>
#include <unistd.h>

#define SIZE (4 << 20)

static void fail(const char* what) {
  printf("failed: %s\n", what);
  exit(1);
}

int main(int argc, char** argv) {
  char name[256];
  snprintf(name, sizeof name, "/%s", argc > 1 ? argv[1] : "pj-shm");
  int id = shmget(0x504a, SIZE, IPC_CREAT | 0600);
  if (id < 0) fail("shmget");
  unsigned long* sysv = shmat(id, NULL, 0);
  if (sysv == (void*)-1) fail("shmat");
  int fd = shm_open(name, O_CREAT | O_RDWR, 0600);
  if (fd < 0 || ftruncate(fd, SIZE) != 0) fail("shm_open");
  unsigned long* posix = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (posix == MAP_FAILED) fail("mmap");
  int tmp = open("/tmp/pj-count", O_CREAT | O_RDWR | O_TRUNC, 0600);
  int gone = open("/tmp/pj-deleted", O_CREAT | O_RDWR | O_TRUNC, 0600);
  if (tmp < 0 || gone < 0 || unlink("/tmp/pj-deleted") != 0) fail("/tmp");
  const size_t words = SIZE / sizeof(unsigned long);
  for (unsigned long n = 1;; n++) {
    unsigned long in_tmp = 0, in_gone = 0;
    if (n > 1 && (pread(tmp, &in_tmp, sizeof in_tmp, 0) != sizeof in_tmp || pread(gone, &in_gone, sizeof in_gone, 0) != sizeof in_gone)) fail("read");
    // Every page of both segments carries the count: a page left behind shows.
    for (size_t w = 0; w < words; w += 512) {
      if (sysv[w] != n - 1 || posix[w] != n - 1) {
        printf("lost: round %lu found sysv %lu posix %lu at word %zu\n", n, sysv[w], posix[w], w);
        return 3;
      }
    }
    if (in_tmp != n - 1 || in_gone != n - 1) {
      printf("lost: round %lu found /tmp %lu, deleted file %lu\n", n, in_tmp, in_gone);
      return 3;
    }
    for (size_t w = 0; w < words; w += 512) sysv[w] = posix[w] = n;
    if (pwrite(tmp, &n, sizeof n, 0) != sizeof n || pwrite(gone, &n, sizeof n, 0) != sizeof n) fail("write");
    printf("%lu\n", n);
    fflush(stdout);
    nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
  }
}
