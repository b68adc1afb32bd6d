#!/usr/bin/env python3
"""fsx in the style of xfstests: random reads, writes, truncates, mmap writes
and fsyncs on FILE, the same on a local REFERENCE file, compared after every
operation. Usage: fsx.py FILE REFERENCE OPS SEED. Prints one JSON line."""
import json, mmap, os, random, sys

path, ref_path, ops, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
MAX = 256 * 1024
rng = random.Random(seed)
flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC
f, r = os.open(path, flags, 0o644), os.open(ref_path, flags, 0o644)
size = 0
counts = {}

def fail(i, op, detail):
    print(json.dumps({"seed": seed, "ok": False, "op_index": i, "op": op, "detail": detail, "counts": counts}))
    sys.exit(1)

for i in range(ops):
    op = rng.choices(["write", "read", "truncate", "mmap_write", "mmap_read", "fsync"], [30, 30, 10, 10, 10, 5])[0]
    counts[op] = counts.get(op, 0) + 1
    if op == "write":
        off, n = rng.randrange(0, MAX), rng.randrange(1, 64 * 1024)
        n = min(n, MAX - off) or 1
        data = rng.randbytes(n)
        os.pwrite(f, data, off); os.pwrite(r, data, off)
        size = max(size, off + n)
    elif op == "read":
        off, n = rng.randrange(0, MAX), rng.randrange(1, 64 * 1024)
        a, b = os.pread(f, n, off), os.pread(r, n, off)
        if a != b: fail(i, op, f"read {n}@{off}: {len(a)} vs {len(b)} bytes differ")
    elif op == "truncate":
        size = rng.randrange(0, MAX)
        os.ftruncate(f, size); os.ftruncate(r, size)
    elif op in ("mmap_write", "mmap_read") and size > 0:
        off = rng.randrange(0, size)
        n = min(rng.randrange(1, 16 * 1024), size - off)
        mf, mr = mmap.mmap(f, size), mmap.mmap(r, size)
        if op == "mmap_write":
            data = rng.randbytes(n)
            mf[off:off + n] = data; mr[off:off + n] = data
            mf.flush(); mr.flush()
        elif mf[off:off + n] != mr[off:off + n]:
            fail(i, op, f"mmap read {n}@{off} differs")
        mf.close(); mr.close()
    elif op == "fsync":
        os.fsync(f)
    if os.fstat(f).st_size != os.fstat(r).st_size:
        fail(i, op, f"size {os.fstat(f).st_size} vs {os.fstat(r).st_size}")
    if os.pread(f, MAX + 1, 0) != os.pread(r, MAX + 1, 0):
        fail(i, op, "contents differ")

os.close(f); os.close(r)
# A fresh open must see the same bytes (close-to-open).
if open(path, "rb").read() != open(ref_path, "rb").read(): fail(ops, "reopen", "contents differ after reopen")
print(json.dumps({"seed": seed, "ok": True, "ops": ops, "counts": counts}))
