# A job for the migration tests: MIB MiB of random memory, held by the main
# thread and three more threads, plus a forked child with its own. On SIGUSR1
# each process prints the md5 of all the memory it holds ("main …", "child …").
import hashlib, os, signal, sys, threading, time

MiB = 1 << 20
total = int(sys.argv[1])
child_mib = max(1, total // 8)
thread_mib = max(1, total // 8)
main_mib = total - child_mib - 3 * thread_mib

def blocks(n):
    return [os.urandom(MiB) for _ in range(n)]

def idle():
    while True:
        time.sleep(0.1)

def summer(role, held):
    def on_usr1(*_):
        h = hashlib.md5()
        for group in held:
            for b in group:
                h.update(b)
        print(role, h.hexdigest(), flush=True)
    return on_usr1

held = [blocks(main_mib)]
threads = []
for _ in range(3):
    mine = blocks(thread_mib)
    held.append(mine)
    t = threading.Thread(target=idle, daemon=True)
    t.start()
    threads.append(t)
if os.fork() == 0:
    own = [blocks(child_mib)]
    signal.signal(signal.SIGUSR1, summer('child', own))
    print('child ready', flush=True)
    while True:
        time.sleep(1)
signal.signal(signal.SIGUSR1, summer('main', held))
print('main ready', flush=True)
while True:
    time.sleep(1)
