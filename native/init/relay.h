// The job's end of the net-layer (relay.c), run by pj-init's first process.
#pragma once
#include <sys/types.h>

// Listens for the job's redirected connections and DNS queries; `sock_path` is the
// manager's seqpacket socket, the same path on every host. 0, or -1 with errno.
int relay_setup(const char* sock_path);
// Relays until `program` ends; returns its wait status (-1 on a failure of the loop itself).
int relay_loop(pid_t program);
