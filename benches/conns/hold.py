"""Opens N connections to 127.0.0.1:PORT and holds them for SECONDS.

mode idle: each sends one `GET /v2/` and reads the whole response, then
stays open (an idle keep-alive connection); mode head: each sends half a
request head and stops (a client that never finishes its head).

Usage: hold.py PORT N idle|head SECONDS
"""
import socket, sys, time
port, n, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
socks = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    if mode == "idle":
        s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(4096)
        head, _, body = buf.partition(b"\r\n\r\n")
        cl = [l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")]
        need = int(cl[0].split(b":")[1]) if cl else 0
        while len(body) < need:
            body += s.recv(4096)
    else:
        s.sendall(b"GET /v2/ HTTP/1.1\r\nHo")
    socks.append(s)
print("open", len(socks), flush=True)
time.sleep(float(sys.argv[4]))
