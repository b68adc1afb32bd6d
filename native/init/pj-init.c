// pj-init: the first process of every job, checkpointed with it, so kept tiny.
//
//   pj-init DIR [--net SOCKET] [--user UID:GID[:GROUP,...]] -- CMD [ARG]...
//
// The launcher (this binary as the agent starts it) closes every inherited
// descriptor, makes a new PID namespace and forks its first process, prints
// that process's pid (as the host sees it) on stdout and exits. The first
// process (pid 1 inside) becomes a session leader, takes /dev/null as stdin
// and DIR/stdout, DIR/stderr (appended) as its output, and starts CMD as a
// session leader of its own. It reaps every orphan, forwards the usual
// signals to CMD's process group, and when CMD ends writes DIR/status
// ("exit N" or "signal N") and exits, which ends the namespace.
// DIR is a /pj path: the same on every host, so the files follow the job.
// With --net the job gets a network namespace of its own (job-net.c): its TCP
// connections and DNS queries are relayed by the first process (relay.c) through
// the manager listening on SOCKET, a path that is the same on every host.
// Every job has mount and IPC namespaces of its own (job-mounts.c): its /tmp,
// /dev/shm and SysV IPC are the job's, and move with it. With --user, CMD runs
// as that user with those groups and no capabilities (the first process stays
// root inside the job's namespaces: it relays and records).
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <grp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include "job-mounts.h"
#include "job-net.h"
#include "relay.h"

/** Set while pj-init runs itself again inside the job's namespaces. */
#define IN_NAMESPACES "PJ_INIT_IN_NAMESPACES"

static pid_t program = -1;

// --user UID:GID[:GROUP,...]: who CMD runs as.
struct user { int set; uid_t uid; gid_t gid; gid_t groups[64]; size_t ngroups; };

static int parse_user(const char* spec, struct user* u) {
  char* end;
  u->uid = (uid_t)strtoul(spec, &end, 10);
  if (end == spec || *end != ':') return -1;
  spec = end + 1;
  u->gid = (gid_t)strtoul(spec, &end, 10);
  if (end == spec || (*end != ':' && *end)) return -1;
  u->ngroups = 0;
  while (*end == ':' || *end == ',') {
    spec = end + 1;
    if (u->ngroups == sizeof u->groups / sizeof *u->groups) return -1;
    u->groups[u->ngroups++] = (gid_t)strtoul(spec, &end, 10);
    if (end == spec) return -1;
  }
  if (*end) return -1;
  u->set = 1;
  return 0;
}

// Becomes the user: groups, then gid, then uid (which ends every capability).
static int become(const struct user* u) {
  if (!u->set) return 0;
  if (setgroups(u->ngroups, u->groups) != 0 || setgid(u->gid) != 0 || setuid(u->uid) != 0) return -1;
  return 0;
}

static void forward(int sig) {
  if (program > 0) kill(-program, sig);
}

static int open_at(const char* dir, const char* name, int flags) {
  char path[4096];
  if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path) return -1;
  return open(path, flags | O_CLOEXEC, 0644);
}

// Puts `fd` at `target` (0, 1, 2) without the close-on-exec flag.
static int place(int fd, int target) {
  if (fd < 0) return -1;
  if (fd == target) return fcntl(fd, F_SETFD, 0);
  int r = dup2(fd, target);
  close(fd);
  return r < 0 ? -1 : 0;
}

static int first_process(const char* dir, const char* net, const struct user* user, char** cmd) {
  setsid();
  if (place(open("/dev/null", O_RDONLY | O_CLOEXEC), 0) < 0 || place(open_at(dir, "stdout", O_WRONLY | O_CREAT | O_APPEND), 1) < 0 ||
      place(open_at(dir, "stderr", O_WRONLY | O_CREAT | O_APPEND), 2) < 0)
    return 127;
  // Not SIGCONT: the manager continues a job's processes itself, and a move continues this one alone when
  // the job was stopped by its user (pj kill -s STOP), which must stay stopped.
  int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};
  struct sigaction sa = {0};
  sa.sa_handler = forward;
  sa.sa_flags = SA_RESTART;
  for (size_t i = 0; i < sizeof forwarded / sizeof *forwarded; i++) sigaction(forwarded[i], &sa, NULL);

  if (net && relay_setup(net) != 0) {
    dprintf(2, "pj-init: cannot listen for the job's connections: %s\n", strerror(errno));
    return 127;
  }
  program = fork();
  if (program < 0) return 127;
  if (program == 0) {
    sa.sa_handler = SIG_DFL;
    for (size_t i = 0; i < sizeof forwarded / sizeof *forwarded; i++) sigaction(forwarded[i], &sa, NULL);
    setsid();
    if (become(user) != 0) {
      dprintf(2, "pj-init: cannot become uid %u gid %u: %s\n", (unsigned)user->uid, (unsigned)user->gid, strerror(errno));
      _exit(127);
    }
    execvp(cmd[0], cmd);
    dprintf(2, "pj-init: cannot run %s: %s\n", cmd[0], strerror(errno));
    _exit(127);
  }
  for (;;) {
    int status;
    if (net) {
      status = relay_loop(program);
      if (status < 0) return 127;
    } else {
      pid_t p = waitpid(-1, &status, 0);
      if (p < 0 && errno == EINTR) continue;
      if (p < 0) return 127;
      if (p != program) continue;  // an orphan, reaped
    }
    char line[32];
    int n = WIFEXITED(status) ? snprintf(line, sizeof line, "exit %d\n", WEXITSTATUS(status))
                              : snprintf(line, sizeof line, "signal %d\n", WTERMSIG(status));
    int fd = open_at(dir, "status.tmp", O_WRONLY | O_CREAT | O_TRUNC);
    if (fd >= 0) {
      if (write(fd, line, (size_t)n) == n && fsync(fd) == 0) {
        char from[4096], to[4096];
        snprintf(from, sizeof from, "%s/status.tmp", dir);
        snprintf(to, sizeof to, "%s/status", dir);
        rename(from, to);
      }
      close(fd);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
}

int main(int argc, char** argv) {
  const char* net = NULL;
  struct user user = {0};
  int cmd = 2;
  if (argc > cmd + 1 && strcmp(argv[cmd], "--net") == 0) {
    net = argv[cmd + 1];
    cmd += 2;
  }
  if (argc > cmd + 1 && strcmp(argv[cmd], "--user") == 0) {
    if (parse_user(argv[cmd + 1], &user) != 0) {
      fprintf(stderr, "pj-init: --user wants UID:GID[:GROUP,...], not %s\n", argv[cmd + 1]);
      return 2;
    }
    cmd += 2;
  }
  if (argc < cmd + 2 || strcmp(argv[cmd], "--") != 0) {
    fprintf(stderr, "usage: pj-init DIR [--net SOCKET] [--user UID:GID[:GROUP,...]] -- CMD [ARG]...\n");
    return 2;
  }
  // Run twice: first to make the job's network, mount and IPC namespaces, then again by path inside
  // them, so that this program and its libraries are mapped from the job's own mounts (CRIU finds a
  // mapping's mount in the namespace it dumps, and the host's copies are not in it).
  if (!getenv(IN_NAMESPACES)) {
    syscall(SYS_close_range, 3, ~0U, 0);  // nothing of the caller's reaches the job
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n < 0) {
      fprintf(stderr, "pj-init: readlink /proc/self/exe: %s\n", strerror(errno));
      return 1;
    }
    self[n] = '\0';
    if (net && job_net_create() != 0) return 1;
    // The working directory is found again by its path once the job's own /tmp covers the host's.
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) {
      fprintf(stderr, "pj-init: getcwd: %s\n", strerror(errno));
      return 1;
    }
    if (job_mounts_create() != 0) return 1;
    if (chdir(cwd) != 0) {
      fprintf(stderr, "pj-init: the working directory %s is not there for the job (a job's /tmp and /dev/shm are its own): %s\n", cwd, strerror(errno));
      return 1;
    }
    setenv(IN_NAMESPACES, "1", 1);
    execv(self, argv);
    fprintf(stderr, "pj-init: cannot run %s again in the job's namespaces: %s\n", self, strerror(errno));
    return 1;
  }
  unsetenv(IN_NAMESPACES);
  if (unshare(CLONE_NEWPID) != 0) {
    fprintf(stderr, "pj-init: unshare(CLONE_NEWPID): %s\n", strerror(errno));
    return 1;
  }
  pid_t child = fork();
  if (child < 0) {
    fprintf(stderr, "pj-init: fork: %s\n", strerror(errno));
    return 1;
  }
  if (child == 0) return first_process(argv[1], net, &user, argv + cmd + 1);
  printf("%d\n", child);
  return 0;
}
