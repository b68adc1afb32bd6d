# An outside client of a published port, for the net-layer tests.
#   stream HOST PORT SECONDS   one connection: sends 0,1,2,... and checks each answer
#   fresh HOST PORT SECONDS    a new connection for every number
#   burst HOST PORT COUNT      COUNT new connections, one after another
# Prints "answered N" every 10 answers, "fail N: why" for each failure, then "ok N failures F"
# (numbers answered) and exits (3 on a gap); SIGTERM ends it early with the same summary.
import signal, socket, sys, time

n, failures = 0, 0

def summary(*_):
    print('ok', n, 'failures', failures, flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, summary)  # stopped early: the summary all the same

host, port = sys.argv[2], int(sys.argv[3])
count = int(sys.argv[4]) if sys.argv[1] == 'burst' else None
end, n, failures = time.time() + (0 if count else float(sys.argv[4])), 0, 0
if sys.argv[1] == 'stream':
    s = socket.create_connection((host, port), timeout=30)
    f = s.makefile('rb')
    while time.time() < end:
        s.sendall(b'%d\n' % n)
        r = int(f.readline())
        if r != n:
            print('GAP client sent', n, 'got', r, flush=True)
            sys.exit(3)
        n += 1
        if n % 10 == 0:
            print('answered', n, flush=True)
        time.sleep(0.01)
else:
    while (n + failures < count) if count else time.time() < end:
        try:
            with socket.create_connection((host, port), timeout=20) as s:
                s.sendall(b'0\n')
                if s.makefile('rb').readline() != b'0\n':
                    raise OSError('wrong answer')
            n += 1
            if n % 10 == 0:
                print('answered', n, flush=True)
        except OSError as e:
            failures += 1
            print('fail', n, e, flush=True)
        if not count:
            time.sleep(0.05)
summary()
