// pj-pager-keeper: keeps the userfaultfds of a job restored lazily while its
// pages still come, apart from the agent whose pager serves them. When the
// pager dies with its agent, the kernel would close the last descriptor of each
// userfaultfd and give the pages still missing as zeros: the job would run on
// wrong memory. Held here, a fault waits instead, until the next agent's pager
// takes the descriptors and the changes the job made to its memory (ADOPT,
// keep-msg.h) and serves it on, or the copy is ended.
//
//   pj-pager-keeper        (fd 3: a listening unix seqpacket socket)
//
// One pager is connected at a time: a new connection replaces the old one. It
// exits on DONE, or once every task it keeps has ended (its memory is gone), or
// when its pager leaves before sending any task. It logs to stderr.
#define _GNU_SOURCE
#include <errno.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "../common/fd-message.h"
#include "keep-msg.h"

#define LISTENER 3
#define CHECK_MS 2000

struct change { uint64_t from, len, to; };
struct task { uint32_t id; int32_t pid; int fd; struct change* changes; size_t n, cap; };

static struct task* tasks;
static size_t ntasks, captasks;
static int ever_kept;

static void say(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "pj-pager-keeper[%d]: ", getpid());
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

static struct task* find(uint32_t id) {
  for (size_t i = 0; i < ntasks; i++)
    if (tasks[i].id == id) return &tasks[i];
  return NULL;
}

static void add_change(struct task* t, struct change c) {
  if (t->n == t->cap) {
    t->cap = t->cap ? t->cap * 2 : 16;
    t->changes = realloc(t->changes, t->cap * sizeof *t->changes);
    if (!t->changes) { say("out of memory"); exit(1); }
  }
  t->changes[t->n++] = c;
}

static struct task* add_task(uint32_t id, int32_t pid, int fd) {
  if (ntasks == captasks) {
    captasks = captasks ? captasks * 2 : 8;
    tasks = realloc(tasks, captasks * sizeof *tasks);
    if (!tasks) { say("out of memory"); exit(1); }
  }
  tasks[ntasks] = (struct task){ .id = id, .pid = pid, .fd = fd };
  ever_kept = 1;
  return &tasks[ntasks++];
}

static void drop_task(size_t i) {
  close(tasks[i].fd);
  free(tasks[i].changes);
  tasks[i] = tasks[--ntasks];
}

// Whether the memory behind a userfaultfd is gone (its task ended or exec'd). UFFDIO_CONTINUE
// answers ESRCH for a dead address space before it looks at the range; for a live one it changes
// nothing here: no range of a job is registered for minor faults.
static int memory_gone(int fd) {
  struct uffdio_continue c = { .range = { .start = 1 << 20, .len = 4096 } };
  return ioctl(fd, UFFDIO_CONTINUE, &c) != 0 && errno == ESRCH;
}

static int send_msg(int conn, const struct pj_keep_msg* m, int fd) {
  return pj_send_fd(conn, m, sizeof *m, fd, 0) == (ssize_t)sizeof *m ? 0 : -1;
}

// ADOPT: every task, each followed by its changes, then END.
static void hand_over(int conn) {
  for (size_t i = 0; i < ntasks; i++) {
    struct task* t = &tasks[i];
    struct pj_keep_msg m = { .type = PJ_KEEP_TASK, .task = t->id, .pid = t->pid };
    if (send_msg(conn, &m, t->fd) != 0) goto failed;
    for (size_t k = 0; k < t->n; k++) {
      struct pj_keep_msg ch = { .type = PJ_KEEP_CHANGE, .task = t->id, .from = t->changes[k].from, .len = t->changes[k].len, .to = t->changes[k].to };
      if (send_msg(conn, &ch, -1) != 0) goto failed;
    }
  }
  struct pj_keep_msg end = { .type = PJ_KEEP_END };
  if (send_msg(conn, &end, -1) == 0) {
    say("handed %zu tasks to a new pager", ntasks);
    return;
  }
failed:
  say("could not hand the tasks over: %s", strerror(errno));
}

// One message from the pager: 1 when one was read, 0 when none is there now, -1 when the pager left.
static int on_message(int conn) {
  struct pj_keep_msg m;
  int fd;
  ssize_t n = pj_recv_fd(conn, &m, sizeof m, &fd, MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
  if (n <= 0) {
    if (fd >= 0) close(fd);
    return -1;
  }
  if (n != (ssize_t)sizeof m) {
    say("a message of %zd bytes, not %zu: ignored", n, sizeof m);
    if (fd >= 0) close(fd);
    return 1;
  }
  struct task* t = find(m.task);
  switch (m.type) {
    case PJ_KEEP_TASK:
    case PJ_KEEP_FORK: {
      if (fd < 0) break;
      // A forked task carries its ancestor's pid already; it starts with its parent's changes.
      struct task* child = add_task(m.task, m.pid, fd);
      struct task* parent = m.type == PJ_KEEP_FORK ? find(m.parent) : NULL;
      if (parent)
        for (size_t k = 0; k < parent->n; k++) add_change(child, parent->changes[k]);
      fd = -1;
      break;
    }
    case PJ_KEEP_CHANGE:
      if (t) add_change(t, (struct change){ m.from, m.len, m.to });
      break;
    case PJ_KEEP_GONE:
      if (t) drop_task((size_t)(t - tasks));
      break;
    case PJ_KEEP_DONE:
      exit(0);
    case PJ_KEEP_ADOPT:
      hand_over(conn);
      break;
    default:
      say("unknown message %u: ignored", m.type);
  }
  if (fd >= 0) close(fd);
  return 1;
}

static int64_t now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

int main(void) {
  int conn = -1;
  int64_t checked = now_ms();
  for (;;) {
    struct pollfd p[2] = { { LISTENER, POLLIN, 0 }, { conn, POLLIN, 0 } };
    if (poll(p, 2, CHECK_MS) < 0 && errno != EINTR) { say("poll: %s", strerror(errno)); return 1; }
    if (p[0].revents & POLLIN) {
      int c = accept4(LISTENER, NULL, NULL, SOCK_CLOEXEC);
      if (c >= 0 && conn >= 0) close(conn);
      if (c >= 0) conn = c;
    }
    int got = 0;
    while (conn >= 0 && (got = on_message(conn)) > 0) {}
    if (got < 0) {
      // The pager left without DONE: its agent died. Its tasks stay held for the next one.
      close(conn);
      conn = -1;
      if (!ever_kept) return 0;
      say("the pager is gone: holding %zu tasks' userfaultfds for the next", ntasks);
    }
    if (now_ms() - checked >= CHECK_MS) {
      checked = now_ms();
      for (size_t i = ntasks; i-- > 0;)
        if (memory_gone(tasks[i].fd)) drop_task(i);
      if (ever_kept && ntasks == 0) {
        say("every task it kept has ended");
        return 0;
      }
    }
  }
}
