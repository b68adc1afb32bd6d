# A job for the net-layer tests; every stream carries sequence numbers that the
# receiving end checks, so a byte lost, repeated or reordered ends it with GAP.
#   serve PORT          answers each client's lines 0,1,2,... with the same number
#   answer PORT         answers one line of each client and closes first (as HTTP/1.0 servers do)
#   incr HOST PORT      INCRs a redis key over one connection forever, printing each value
#   both PORT HOST RPORT  the two at once
import socket, sys, threading, time

def serve(port):
    l = socket.socket()
    l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind(('0.0.0.0', port))
    l.listen()
    def client(c):
        f, n = c.makefile('rb'), 0
        for line in f:
            if int(line) != n:
                print('GAP server expected', n, 'got', line, flush=True)
                sys.exit(3)
            c.sendall(b'%d\n' % n)
            n += 1
        print('client done', n, flush=True)
    while True:
        c, _ = l.accept()
        threading.Thread(target=client, args=(c,), daemon=True).start()

def incr(host, port):
    s = socket.create_connection((host, port))
    f, last = s.makefile('rb'), None
    while True:
        s.sendall(b'INCR pj-seq\r\n')
        v = int(f.readline()[1:])
        if last is not None and v != last + 1:
            print('GAP incr', last, v, flush=True)
            sys.exit(3)
        last = v
        print('incr', v, flush=True)
        time.sleep(0.01)

def answer(port):
    l = socket.create_server(('0.0.0.0', port))
    while True:
        c, _ = l.accept()
        with c:
            try:
                c.sendall(c.makefile('rb').readline())
            except OSError:  # a client that went away (reset): the next one is served, as any server would
                pass

if sys.argv[1] == 'serve':
    serve(int(sys.argv[2]))
elif sys.argv[1] == 'answer':
    answer(int(sys.argv[2]))
elif sys.argv[1] == 'incr':
    incr(sys.argv[2], int(sys.argv[3]))
else:
    threading.Thread(target=serve, args=(int(sys.argv[2]),), daemon=True).start()
    incr(sys.argv[3], int(sys.argv[4]))
