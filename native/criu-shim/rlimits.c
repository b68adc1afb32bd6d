// Preloaded into CRIU by the pj-criu wrapper (scripts/install-criu). CRIU reads
// each task's resource limits with prlimit64(pid, res, NULL, &old) (through
// syscall(2) when it dumps a task, through libc elsewhere); for a task
// of another uid the kernel wants CAP_SYS_RESOURCE, which some machines' bounding
// sets lack (this one's: FINDINGS 2026-12-05), and then no process that runs as a
// user of its own (PostgreSQL) can move. /proc/<pid>/limits tells root the same
// limits: on EPERM for a read, they come from there. Writes are left alone.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>

typedef int (*prlimit64_fn)(__pid_t, __rlimit_resource_t, const struct rlimit64*, struct rlimit64*);

// "unlimited" or a number.
static rlim64_t value(const char* s) {
  return strcmp(s, "unlimited") == 0 ? RLIM64_INFINITY : strtoull(s, NULL, 10);
}

// /proc/<pid>/limits: a header line, then one line per resource in the order of
// their numbers: a 26-character name column, the soft limit, the hard limit, units.
static int from_proc(__pid_t pid, int resource, struct rlimit64* out) {
  char path[64], line[256], soft[32], hard[32];
  snprintf(path, sizeof path, "/proc/%d/limits", (int)pid);
  FILE* f = fopen(path, "re");
  if (!f) return -1;
  int found = -1;
  for (int i = -1; fgets(line, sizeof line, f); i++) {
    if (i == resource && strlen(line) > 26 && sscanf(line + 26, "%31s %31s", soft, hard) == 2) {
      out->rlim_cur = value(soft);
      out->rlim_max = value(hard);
      found = 0;
      break;
    }
  }
  fclose(f);
  return found;
}

// A read of another task's limits that the kernel refused: from /proc instead.
static int read_instead(int r, __pid_t pid, int resource, const void* new_limit, struct rlimit64* old_limit) {
  if (r == 0 || errno != EPERM || new_limit || !old_limit || pid == 0) return r;
  if (from_proc(pid, resource, old_limit) != 0) {
    errno = EPERM;
    return -1;
  }
  return 0;
}

int prlimit64(__pid_t pid, __rlimit_resource_t resource, const struct rlimit64* new_limit, struct rlimit64* old_limit) {
  static prlimit64_fn real;
  if (!real) real = (prlimit64_fn)dlsym(RTLD_NEXT, "prlimit64");
  return read_instead(real(pid, resource, new_limit, old_limit), pid, (int)resource, new_limit, old_limit);
}

// syscall(2) takes up to six arguments whatever the call: they are passed on as they came.
long syscall(long number, ...) {
  static long (*real)(long, ...);
  if (!real) real = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
  va_list ap;
  va_start(ap, number);
  long a[6];
  for (int i = 0; i < 6; i++) a[i] = va_arg(ap, long);
  va_end(ap);
  long r = real(number, a[0], a[1], a[2], a[3], a[4], a[5]);
  if (number != SYS_prlimit64) return r;
  return read_instead((int)r, (__pid_t)a[0], (int)a[1], (const void*)a[2], (struct rlimit64*)a[3]);
}
