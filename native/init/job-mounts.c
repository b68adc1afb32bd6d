// A job's own /tmp, /dev/shm and SysV IPC. Whatever the host had mounted at or
// under /tmp and /dev/shm is detached in the job's namespace first: hidden
// beneath the job's tmpfs it would be of no use to the job, and CRIU would
// have to find it again on every destination.
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>
#include "job-mounts.h"

static const char* const PRIVATE_DIRS[] = {"/tmp", "/dev/shm"};

static int at_or_under(const char* path, const char* dir) {
  size_t n = strlen(dir);
  return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

// The mount point of the last mount listed at or under `dir` (the top of a stack
// comes after what it covers), or 0 when there is none.
static int last_mount_under(const char* dir, char* out, size_t size) {
  FILE* f = fopen("/proc/self/mountinfo", "re");
  if (!f) return -1;
  char line[8192], mp[PATH_MAX];
  int found = 0;
  while (fgets(line, sizeof line, f)) {
    // id parent major:minor root mountpoint ...
    if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) == 1 && at_or_under(mp, dir) && strlen(mp) < size) {
      strcpy(out, mp);
      found = 1;
    }
  }
  fclose(f);
  return found;
}

static int detach_all_under(const char* dir) {
  char mp[PATH_MAX];
  for (int i = 0; i < 1000; i++) {
    int r = last_mount_under(dir, mp, sizeof mp);
    if (r <= 0) return r;
    if (umount2(mp, MNT_DETACH) != 0) {
      fprintf(stderr, "pj-init: cannot detach %s in the job's mount namespace: %s\n", mp, strerror(errno));
      return -1;
    }
  }
  fprintf(stderr, "pj-init: too many mounts under %s\n", dir);
  return -1;
}

int job_mounts_create(void) {
  if (unshare(CLONE_NEWNS | CLONE_NEWIPC) != 0) {
    fprintf(stderr, "pj-init: unshare(CLONE_NEWNS | CLONE_NEWIPC): %s\n", strerror(errno));
    return -1;
  }
  if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) != 0) {
    fprintf(stderr, "pj-init: cannot make the job's mounts slaves of the host's: %s\n", strerror(errno));
    return -1;
  }
  for (size_t i = 0; i < sizeof PRIVATE_DIRS / sizeof *PRIVATE_DIRS; i++) {
    if (detach_all_under(PRIVATE_DIRS[i]) != 0) return -1;
    if (mount("pj-job", PRIVATE_DIRS[i], "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") != 0) {
      fprintf(stderr, "pj-init: cannot mount the job's own %s: %s\n", PRIVATE_DIRS[i], strerror(errno));
      return -1;
    }
  }
  return 0;
}
