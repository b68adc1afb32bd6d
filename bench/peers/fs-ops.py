#!/usr/bin/env python3
"""File-system workloads for the fs benchmark, run inside a host:
  fs-ops.py write DIR MIB        sequential 1 MiB writes + fsync -> {"bytes", "seconds"}
  fs-ops.py read DIR MIB         sequential 1 MiB reads (second pass)  -> {"bytes", "seconds"}
  fs-ops.py rand DIR MIB COUNT   random 4 KiB preads                    -> {"ops", "seconds"}
With PJ_BENCH_COLD_CLIENT=1 (remote paths), this host's page cache of the file
and its agent's data cache (`pj cache drop`) are dropped before each measured
pass, so that the data crosses the network (the owner's cache stays warm, as it
does for a local path's file).
  fs-ops.py meta DIR COUNT       create + stat + unlink small files     -> {"ops", "seconds"}
Each reads or writes DIR/bench-file (made by write)."""
import json, os, random, subprocess, sys, time

op, d = sys.argv[1], sys.argv[2]
path = os.path.join(d, "bench-file")
MiB = 1 << 20

def out(**kw): print(json.dumps(kw))

COLD = os.environ.get("PJ_BENCH_COLD_CLIENT") == "1"

def cold(fd):
    if COLD: os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)

def drop_agent_cache():
    if COLD: subprocess.run(["pj", "cache", "drop"], check=True, stdout=subprocess.DEVNULL)

if op == "write":
    n = int(sys.argv[3]); block = os.urandom(MiB)
    t = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    for _ in range(n): os.write(fd, block)
    os.fsync(fd); os.close(fd)
    out(bytes=n * MiB, seconds=time.perf_counter() - t)
elif op == "read":
    n = int(sys.argv[3])
    def once():
        fd = os.open(path, os.O_RDONLY); total = 0
        cold(fd)
        while True:
            b = os.read(fd, MiB)
            if not b: break
            total += len(b)
        os.close(fd); return total
    once()  # warm the caches each path can use
    drop_agent_cache()
    t = time.perf_counter(); total = once()
    out(bytes=total, seconds=time.perf_counter() - t)
elif op == "rand":
    n, count = int(sys.argv[3]), int(sys.argv[4])
    rng = random.Random(1); blocks = n * MiB // 4096
    fd = os.open(path, os.O_RDONLY)
    offs = [rng.randrange(blocks) * 4096 for _ in range(count)]
    for o in offs[: count // 10]: os.pread(fd, 4096, o)  # warm-up
    cold(fd); drop_agent_cache()
    t = time.perf_counter()
    for o in offs: os.pread(fd, 4096, o)
    out(ops=count, seconds=time.perf_counter() - t); os.close(fd)
elif op == "meta":
    count = int(sys.argv[3]); sub = os.path.join(d, f"meta-{os.getpid()}"); os.mkdir(sub)
    t = time.perf_counter()
    for i in range(count):
        p = os.path.join(sub, f"f{i}")
        with open(p, "wb") as f: f.write(b"x")
        os.stat(p); os.unlink(p)
    out(ops=count, seconds=time.perf_counter() - t); os.rmdir(sub)
