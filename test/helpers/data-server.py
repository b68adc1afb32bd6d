# A data service for the policy's tests: listens on ADDR:PORT; each line "N" a client sends
# is answered with N bytes.
import socket, sys, threading

BLOCK = b'x' * (1 << 20)


def serve(conn):
    with conn, conn.makefile('rb') as f:
        for line in f:
            n = int(line)
            while n > 0:
                conn.sendall(BLOCK[:min(n, len(BLOCK))])
                n -= len(BLOCK)


srv = socket.create_server((sys.argv[1], int(sys.argv[2])), reuse_port=True)
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
