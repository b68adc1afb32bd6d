// A job's own mount and IPC namespaces (job-mounts.c).
#pragma once

// Moves the caller into new mount and IPC namespaces in which /tmp and /dev/shm
// are empty tmpfs mounts of the job's own (source "pj-job", which the manager
// looks for); every other mount is the host's, and later changes on the host
// reach the job (slave propagation) while the job's own never reach the host.
// CRIU carries the job's tmpfs contents and SysV IPC with it when it moves.
// 0, or -1 with a message on stderr.
int job_mounts_create(void);
