# A task for the pager tests, handed over as CRIU's restore hands a restored
# task to its lazy-pages daemon: MIB MiB of private anonymous memory registered
# with a userfaultfd (missing-page faults), then its pid as an int and the
# userfaultfd by SCM_RIGHTS over the unix socket SOCKET. Prints {"pid","addr"};
# on a line "go" on stdin touches every page in order, timing each touch, and
# prints {"p50_us","p99_us","bad"} (bad: pages whose first byte is not page % 251).
# A third argument pins the task to that CPU. With UFFD_TASK_CLOSE=1 it closes
# its userfaultfd once sent, as CRIU's restored tasks do (the pager's copy is then
# the only one); a line "drop N" on stdin drops its first N pages (MADV_DONTNEED),
# which then read zero, and prints "dropped".
import ctypes, json, os, socket, struct, sys, time
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
SYS_userfaultfd, UFFDIO_API, UFFDIO_REGISTER, UFFD_API = 323, 0xC018AA3F, 0xC020AA00, 0xAA
PAGE = 4096
path, mib = sys.argv[1], int(sys.argv[2])
if len(sys.argv) > 3:
    os.sched_setaffinity(0, {int(sys.argv[3])})
n = mib << 20

uffd = libc.syscall(SYS_userfaultfd, os.O_CLOEXEC | os.O_NONBLOCK)
assert uffd >= 0, os.strerror(ctypes.get_errno())
UFFD_FEATURE_EVENT_REMOVE, MADV_DONTNEED = 8, 4
api = ctypes.create_string_buffer(struct.pack('QQQ', UFFD_API, UFFD_FEATURE_EVENT_REMOVE, 0), 24)
assert libc.ioctl(uffd, UFFDIO_API, api) == 0, os.strerror(ctypes.get_errno())
addr = libc.mmap(None, n, 3, 0x22, -1, 0)  # PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS
reg = ctypes.create_string_buffer(struct.pack('QQQQ', addr, n, 1, 0), 32)  # UFFDIO_REGISTER_MODE_MISSING
assert libc.ioctl(uffd, UFFDIO_REGISTER, reg) == 0, os.strerror(ctypes.get_errno())

s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(path)
s.sendall(struct.pack('i', os.getpid()))
socket.send_fds(s, [b'u'], [uffd])
if os.environ.get('UFFD_TASK_CLOSE') == '1':
    os.close(uffd)
print(json.dumps({"pid": os.getpid(), "addr": addr}), flush=True)

dropped = 0
while (line := sys.stdin.readline().split()) and line[0] == 'drop':
    dropped = int(line[1])
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    assert libc.madvise(addr, dropped * PAGE, MADV_DONTNEED) == 0, os.strerror(ctypes.get_errno())
    print('dropped', flush=True)
times, bad = [], 0
for i in range(n // PAGE):
    t0 = time.perf_counter_ns()
    v = ctypes.c_uint8.from_address(addr + i * PAGE).value
    times.append(time.perf_counter_ns() - t0)
    bad += v != (0 if i < dropped else i % 251)
times.sort()
print(json.dumps({"p50_us": times[len(times) // 2] / 1000, "p99_us": times[len(times) * 99 // 100] / 1000, "bad": bad}), flush=True)
