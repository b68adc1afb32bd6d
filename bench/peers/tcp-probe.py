# TCP probe for the net benchmark, the same program for the direct baseline
# and for a job behind the proxy; prints one JSON line.
#   server ADDR PORT            sink for 'stream', echo for 'ping' and 'connect' (first byte says which)
#   stream ADDR PORT BYTES      sends BYTES, waits for the count back: MiB/s
#   ping ADDR PORT N            N round trips of 64 bytes: p50/p99 in µs
#   connect ADDR PORT N         N connections (connect, one byte each way, close): per second
import json, socket, sys, threading, time

def server(addr, port):
    l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind((addr, port)); l.listen(512)
    print(json.dumps({'listening': port}), flush=True)
    def handle(c):
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        kind = c.recv(1)
        if kind == b's':
            n = 0
            while True:
                b = c.recv(1 << 20)
                if not b: break
                n += len(b)
            c.sendall(str(n).encode())
        else:
            while True:
                b = c.recv(65536)
                if not b: break
                c.sendall(b)
        c.close()
    while True:
        c, _ = l.accept()
        threading.Thread(target=handle, args=(c,), daemon=True).start()

def conn(addr, port, kind):
    s = socket.create_connection((addr, port)); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1); s.sendall(kind)
    return s

mode, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if mode == 'server':
    server(addr, port)
elif mode == 'stream':
    total = int(sys.argv[4]); chunk = b'x' * (1 << 20)
    s = conn(addr, port, b's'); t0 = time.time(); sent = 0
    while sent < total:
        s.sendall(chunk); sent += len(chunk)
    s.shutdown(socket.SHUT_WR); got = int(s.recv(64)); dt = time.time() - t0
    print(json.dumps({'mibps': got / dt / 2**20, 'bytes': got}), flush=True)
elif mode == 'ping':
    n = int(sys.argv[4]); s = conn(addr, port, b'p'); msg = b'y' * 64; rtts = []
    for i in range(n + 200):
        t0 = time.perf_counter(); s.sendall(msg); got = 0
        while got < 64: got += len(s.recv(64 - got))
        if i >= 200: rtts.append((time.perf_counter() - t0) * 1e6)
    rtts.sort()
    print(json.dumps({'p50_us': rtts[len(rtts) // 2], 'p99_us': rtts[int(len(rtts) * 0.99)]}), flush=True)
else:
    n = int(sys.argv[4]); t0 = time.time()
    for _ in range(n):
        s = conn(addr, port, b'c'); s.sendall(b'z'); s.recv(1); s.close()
    print(json.dumps({'per_s': n / (time.time() - t0)}), flush=True)
