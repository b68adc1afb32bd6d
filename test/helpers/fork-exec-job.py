#!/usr/bin/env python3
# A job that forks and execs in a loop, as a shell loop does: each child opens a
# /pj file close-on-exec (closed, with a FLUSH, inside its execve) and execs a
# shell that prints the round to the job's output (a /pj file, closed with a
# FLUSH at its exit). Prints "done N" at the end.
#   fork-exec-job.py ROUNDS PJ_FILE
import os
import sys

rounds, path = int(sys.argv[1]), sys.argv[2]
for i in range(rounds):
    pid = os.fork()
    if pid == 0:
        os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        os.execv('/bin/sh', ['sh', '-c', f'echo round {i}'])
    _, status = os.waitpid(pid, 0)
    if status != 0:
        print(f'round {i} failed: {status}', flush=True)
        sys.exit(1)
print(f'done {rounds}', flush=True)
