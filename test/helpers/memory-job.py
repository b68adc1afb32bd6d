# A job for the migration tests: MIB MiB of random memory, held by the main
# thread and three more threads, plus a forked child with its own; a shared
# anonymous mapping both write into, and a private writable mapping of a file
# (the C library, the same on every host) with pages written over.
# On SIGUSR1 each process prints the md5 of all the memory it holds
# ("main …", "child …").
import ctypes, hashlib, mmap, os, signal, sys, threading, time

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

# Shared anonymous (Python's anonymous mmap is MAP_SHARED): the parent's half and the child's half.
shared = mmap.mmap(-1, 8 * MiB)
# A private writable file mapping, through libc so that no descriptor stays open (the fd would pin the file).
libc = ctypes.CDLL(None)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc_path = next(l.split()[-1] for l in open('/proc/self/maps') if '/libc.so' in l)
fd = os.open(libc_path, os.O_RDONLY)
PROT_RW, MAP_PRIVATE = 3, 2
file_map = (ctypes.c_char * MiB).from_address(libc.mmap(None, MiB, PROT_RW, MAP_PRIVATE, fd, 0))
os.close(fd)
for page in range(0, MiB, 8192):  # every other page copied on write, the others still the file's
    ctypes.memmove(ctypes.addressof(file_map) + page, os.urandom(4096), 4096)

def summer(role, held, half):
    def on_usr1(*_):
        h = hashlib.md5()
        for group in held:
            for b in group:
                h.update(b)
        h.update(shared[half * 4 * MiB:(half + 1) * 4 * MiB])
        h.update(bytes(file_map))
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
shared[0:4 * MiB] = os.urandom(4 * MiB)
if os.fork() == 0:
    own = [blocks(child_mib)]
    shared[4 * MiB:8 * MiB] = os.urandom(4 * MiB)
    signal.signal(signal.SIGUSR1, summer('child', own, 1))
    print('child ready', flush=True)
    while True:
        time.sleep(1)
signal.signal(signal.SIGUSR1, summer('main', held, 0))
print('main ready', flush=True)
while True:
    time.sleep(1)
