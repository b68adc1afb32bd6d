// The job's network namespace. Every IPv4 address is local here ("local
// 0.0.0.0/0" in table local), so a connect to any address stays inside and
// reaches prerouting on lo, where tproxy gives it to the relay's listener with
// the original destination as its local address: no NAT, so nothing in
// conntrack that CRIU would have to restore (the restore hook puts the route
// back: CRIU does not save table local). DNS over UDP is redirected to the
// relay's resolver port; other UDP, ICMP and raw packets leaving loopback are
// dropped, which the job sees as EPERM, and counted for the manager's log.
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "job-net.h"
#include "net-msg.h"

#define STR2(x) #x
#define STR(x) STR2(x)

static const char* const RULES =
    "table ip pj {\n"
    "  counter refused { }\n"
    "  chain pre { type filter hook prerouting priority mangle; policy accept;\n"
    "    ip daddr 127.0.0.0/8 return\n"
    "    meta l4proto tcp tproxy to 127.0.0.1:" STR(PJ_RELAY_PORT) " accept\n"
    "  }\n"
    "  chain dns { type nat hook output priority -100; policy accept;\n"
    "    udp dport 53 redirect to :" STR(PJ_DNS_PORT) "\n"
    "  }\n"
    "  chain out { type filter hook output priority 0; policy accept;\n"
    "    ip daddr 127.0.0.0/8 accept\n"
    "    meta l4proto tcp accept\n"
    "    udp sport " STR(PJ_DNS_PORT) " accept\n"  // the relay's DNS answers
    "    counter name refused drop\n"
    "  }\n"
    "}\n";

// Runs argv, with `input` on its stdin when given; 0 when it exits 0.
static int run(char* const argv[], const char* input) {
  int p[2];
  if (input && pipe(p) != 0) return -1;
  pid_t c = fork();
  if (c < 0) return -1;
  if (c == 0) {
    if (input) { dup2(p[0], 0); close(p[0]); close(p[1]); }
    execvp(argv[0], argv);
    _exit(127);
  }
  if (input) {
    close(p[0]);
    size_t len = strlen(input);
    if (write(p[1], input, len) != (ssize_t)len) { close(p[1]); return -1; }
    close(p[1]);
  }
  int status;
  while (waitpid(c, &status, 0) < 0)
    if (errno != EINTR) return -1;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

int job_net_create(void) {
  if (unshare(CLONE_NEWNET) != 0) {
    fprintf(stderr, "pj-init: unshare(CLONE_NEWNET): %s\n", strerror(errno));
    return -1;
  }
  char* up[] = {"ip", "link", "set", "lo", "up", NULL};
  char* local[] = {"ip", "route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", "local", NULL};
  char* nft[] = {"nft", "-f", "-", NULL};
  if (run(up, NULL) || run(local, NULL) || run(nft, RULES)) {
    fprintf(stderr, "pj-init: cannot set up the job's network namespace (ip, nft)\n");
    return -1;
  }
  return 0;
}
