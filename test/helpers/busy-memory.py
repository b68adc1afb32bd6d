# A job for the migration tests whose memory changes while it moves: MIB MiB in
# 1 MiB blocks, each 4 KiB page stamped with (block, version), the versions
# kept in a table. `write RATE`: a thread rewrites blocks round-robin at RATE
# MiB/s; `touch`: a thread reads every page again and again. On SIGUSR1 it
# checks every page against the table: "ok PASSES WRITES" or "bad …".
import os, signal, struct, sys, threading, time

MiB, PAGE = 1 << 20, 4096
mib, mode = int(sys.argv[1]), sys.argv[2]
rate = float(sys.argv[3]) if mode == 'write' else 0
filler = os.urandom(PAGE - 16)

def block(i, version):
    return b''.join(struct.pack('<QQ', i * 256 + p, version) + filler for p in range(MiB // PAGE))

versions = [0] * mib
mem = [bytearray(block(i, 0)) for i in range(mib)]
lock = threading.Lock()
counts = {'passes': 0, 'writes': 0}

def check():
    for i, b in enumerate(mem):
        for p in range(MiB // PAGE):
            page, version = struct.unpack_from('<QQ', b, p * PAGE)
            if page != i * 256 + p or version != versions[i] or b[p * PAGE + 16:(p + 1) * PAGE] != filler:
                return f'bad block {i} page {p}: ({page}, {version}), table says version {versions[i]}'
    return None

def writer():
    i = 0
    while True:
        with lock:
            versions[i] += 1
            mem[i][:] = block(i, versions[i])
            counts['writes'] += 1
        i = (i + 1) % mib
        time.sleep(1 / rate)

def toucher():
    while True:
        with lock:
            bad = check()
        if bad:
            print(bad, flush=True)
            os._exit(1)
        counts['passes'] += 1

def on_usr1(*_):
    with lock:
        bad = check()
    print(bad or f"ok {counts['passes']} {counts['writes']}", flush=True)

signal.signal(signal.SIGUSR1, on_usr1)
threading.Thread(target=writer if mode == 'write' else toucher, daemon=True).start()
print('ready', flush=True)
while True:
    time.sleep(1)
