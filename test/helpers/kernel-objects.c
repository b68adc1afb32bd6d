// A job that holds one of each kernel object the README says moves, and checks each on SIGUSR1:
// an eventfd holding 7, a pipe holding bytes nobody read, a memfd with contents, a periodic
// timerfd, an inotify watch on a folder in the job's own /tmp, and the epoll set and signalfd
// its loop runs on. Each SIGUSR1 prints
//   check N eventfd=7 pipe=unread-bytes memfd=memfd-contents inotify=fN ticks=yes
// (or what it found instead); a loop that stops waking prints nothing, which the test sees too.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

#define WATCHED "/tmp/watched"
static const char PIPED[] = "unread-bytes";
static const char KEPT[] = "memfd-contents";

static int fail(const char* what) {
  printf("setup failed: %s: %s\n", what, strerror(errno));
  return 1;
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  int ev = eventfd(7, 0);
  int p[2];
  if (ev < 0) return fail("eventfd");
  if (pipe(p) != 0 || write(p[1], PIPED, sizeof PIPED - 1) != sizeof PIPED - 1) return fail("pipe");
  int mem = memfd_create("kept", 0);
  if (mem < 0 || write(mem, KEPT, sizeof KEPT - 1) != sizeof KEPT - 1) return fail("memfd");
  int tick = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
  struct itimerspec every = {{0, 50000000}, {0, 50000000}};
  if (tick < 0 || timerfd_settime(tick, 0, &every, NULL) != 0) return fail("timerfd");
  mkdir(WATCHED, 0700);
  int in = inotify_init1(IN_NONBLOCK);
  if (in < 0 || inotify_add_watch(in, WATCHED, IN_CREATE) < 0) return fail("inotify");
  sigset_t usr1;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  sigprocmask(SIG_BLOCK, &usr1, NULL);
  int sig = signalfd(-1, &usr1, SFD_NONBLOCK);
  int ep = epoll_create1(0);
  if (sig < 0 || ep < 0) return fail("signalfd/epoll");
  struct epoll_event e = {.events = EPOLLIN, .data.fd = sig};
  epoll_ctl(ep, EPOLL_CTL_ADD, sig, &e);
  e.data.fd = tick;
  epoll_ctl(ep, EPOLL_CTL_ADD, tick, &e);
  printf("ready\n");

  uint64_t ticks = 0;
  for (int n = 1;;) {
    struct epoll_event got[2];
    int k = epoll_wait(ep, got, 2, -1);
    for (int i = 0; i < k; i++) {
      if (got[i].data.fd == tick) {
        uint64_t t;
        if (read(tick, &t, sizeof t) == sizeof t) ticks += t;
        continue;
      }
      struct signalfd_siginfo si;
      if (read(sig, &si, sizeof si) != sizeof si) continue;
      uint64_t count = 0;
      if (read(ev, &count, sizeof count) != sizeof count || write(ev, &count, sizeof count) != sizeof count) count = 0;
      char piped[64] = "";
      ssize_t r = read(p[0], piped, sizeof piped - 1);
      if (r > 0 && write(p[1], piped, (size_t)r) != r) r = 0;
      piped[r > 0 ? r : 0] = '\0';
      char kept[64] = "";
      ssize_t m = pread(mem, kept, sizeof kept - 1, 0);
      kept[m > 0 ? m : 0] = '\0';
      char name[64];
      snprintf(name, sizeof name, WATCHED "/f%d", n);
      close(open(name, O_CREAT | O_WRONLY, 0600));
      char events[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
      const char* seen = "none";
      ssize_t len = read(in, events, sizeof events);
      if (len >= (ssize_t)sizeof(struct inotify_event)) seen = ((struct inotify_event*)events)->name;
      printf("check %d eventfd=%llu pipe=%s memfd=%s inotify=%s ticks=%s\n", n, (unsigned long long)count, piped, kept, seen, ticks > 0 ? "yes" : "no");
      ticks = 0;
      n++;
    }
  }
}
