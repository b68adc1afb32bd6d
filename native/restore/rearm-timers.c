// pj-rearm-timers ROOT_PID: run by the restore hook before CRIU resumes a job. A periodic timerfd
// that expired while the job was frozen shows its next expiry as 0 in fdinfo until someone reads
// it; CRIU dumps that 0 and restores the timer disarmed, so a program's periodic timer never fires
// again after a move. Each such timer of the restored tree (value 0, interval not 0) is armed
// again to fire at once, then every interval, through a duplicate of its descriptor.
#define _GNU_SOURCE
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <unistd.h>

static int rearmed;

static int timer_of(int pid, const char* fd, struct itimerspec* t) {
  char path[300], line[128];
  snprintf(path, sizeof path, "/proc/%d/fdinfo/%s", pid, fd);
  FILE* f = fopen(path, "r");
  if (!f) return -1;
  int found = 0;
  long long s, ns;
  while (fgets(line, sizeof line, f)) {
    if (sscanf(line, "it_value: (%lld, %lld)", &s, &ns) == 2) { t->it_value.tv_sec = s; t->it_value.tv_nsec = ns; found |= 1; }
    if (sscanf(line, "it_interval: (%lld, %lld)", &s, &ns) == 2) { t->it_interval.tv_sec = s; t->it_interval.tv_nsec = ns; found |= 2; }
  }
  fclose(f);
  return found == 3 ? 0 : -1;
}

static void rearm(int pid) {
  char path[300], link[64];
  snprintf(path, sizeof path, "/proc/%d/fd", pid);
  DIR* d = opendir(path);
  if (!d) return;
  int pidfd = -1;
  for (struct dirent* e; (e = readdir(d));) {
    if (e->d_name[0] == '.') continue;
    snprintf(path, sizeof path, "/proc/%d/fd/%s", pid, e->d_name);
    ssize_t n = readlink(path, link, sizeof link - 1);
    if (n < 0) continue;
    link[n] = '\0';
    struct itimerspec t;
    if (strcmp(link, "anon_inode:[timerfd]") != 0 || timer_of(pid, e->d_name, &t) != 0) continue;
    if (t.it_value.tv_sec || t.it_value.tv_nsec || (!t.it_interval.tv_sec && !t.it_interval.tv_nsec)) continue;
    if (pidfd < 0) pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    int fd = pidfd < 0 ? -1 : (int)syscall(SYS_pidfd_getfd, pidfd, atoi(e->d_name), 0);
    if (fd < 0) continue;
    t.it_value.tv_nsec = 1;
    if (timerfd_settime(fd, 0, &t, NULL) == 0) rearmed++;
    close(fd);
  }
  if (pidfd >= 0) close(pidfd);
  closedir(d);
}

// The process and its descendants, through each thread's children.
static void walk(int pid) {
  rearm(pid);
  char path[300];
  snprintf(path, sizeof path, "/proc/%d/task", pid);
  DIR* d = opendir(path);
  if (!d) return;
  for (struct dirent* e; (e = readdir(d));) {
    if (e->d_name[0] == '.') continue;
    snprintf(path, sizeof path, "/proc/%d/task/%s/children", pid, e->d_name);
    FILE* f = fopen(path, "r");
    if (!f) continue;
    int child;
    while (fscanf(f, "%d", &child) == 1) walk(child);
    fclose(f);
  }
  closedir(d);
}

int main(int argc, char** argv) {
  if (argc != 2 || atoi(argv[1]) <= 0) {
    fprintf(stderr, "usage: pj-rearm-timers ROOT_PID\n");
    return 2;
  }
  walk(atoi(argv[1]));
  if (rearmed) fprintf(stderr, "pj-rearm-timers: %d periodic timer(s) CRIU restored disarmed were armed again\n", rearmed);
  return 0;
}
