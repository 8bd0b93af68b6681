"""An exec worker that answers the first request on each connection with
an HTTP/1.1 keep-alive answer, then closes the connection when the next
request on it arrives, answering nothing: from lanes' side, the race
every keep-alive client has with a server that closes idle connections
(it closed this one as the request went out). /pid answers its pid."""

import os
import socket
import threading

listener = socket.socket(fileno=3)


def serve(conn):
    with conn:
        first = True
        buf = b""
        while True:
            data = conn.recv(65536)
            if not data:
                return
            buf += data
            if b"\r\n\r\n" not in buf:
                continue
            if not first:
                return  # close without a byte of an answer
            first = False
            line = buf.split(b"\r\n", 1)[0].decode("latin-1")
            buf = b""
            body = str(os.getpid()).encode() if " /pid " in line else b"ok"
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


while True:
    c, _ = listener.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
