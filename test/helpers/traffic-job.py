# A job whose traffic goes where its phases say, for the policy's tests and benchmark.
#   traffic-job.py MIB_PER_S PHASE_S CYCLES TARGET [TARGET...]
# Moves at most MIB_PER_S MiB/s with each TARGET in turn, PHASE_S seconds each, CYCLES times
# through the list (0: for ever). A TARGET is a file (read over and over, its cached pages dropped
# after each pass so that every read reaches /pj) or tcp:ADDR:PORT (a data-server.py: asks for bytes).
# Prints "phase I TARGET EPOCH_MS" as each phase starts, "done BYTES" at the end.
import os, socket, sys, time

rate, phase_s, cycles, targets = float(sys.argv[1]) * 2**20, float(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
CHUNK = 128 * 1024
total = 0


class FileSource:
    def __init__(self, path):
        self.fd = os.open(path, os.O_RDONLY)

    def read(self):
        data = os.read(self.fd, CHUNK)
        if len(data) < CHUNK:  # end of a pass: from the start, with nothing cached
            os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.lseek(self.fd, 0, os.SEEK_SET)
        return len(data)


class TcpSource:
    def __init__(self, spec):
        _, addr, port = spec.split(':')
        self.s = socket.create_connection((addr, int(port)), timeout=30)

    def read(self):
        self.s.sendall(b'%d\n' % CHUNK)
        got = 0
        while got < CHUNK:
            d = self.s.recv(CHUNK - got)
            if not d:
                raise SystemExit('the data server closed the connection')
            got += len(d)
        return got


sources = [TcpSource(t) if t.startswith('tcp:') else FileSource(t) for t in targets]
cycle = 0
while cycles == 0 or cycle < cycles:
    for i, src in enumerate(sources):
        print('phase', i, targets[i], int(time.time() * 1000), flush=True)
        start, moved = time.time(), 0
        while time.time() - start < phase_s:
            moved += src.read()
            ahead = moved / rate - (time.time() - start)
            if ahead > 0:
                time.sleep(min(ahead, max(0.0, phase_s - (time.time() - start))))
        total += moved
    cycle += 1
print('done', total, flush=True)
