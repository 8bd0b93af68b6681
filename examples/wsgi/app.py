#!/usr/bin/env python3
"""A WSGI app, standard library only, that runs as the workers of a lanes
exec lane:

    lane "default" {
      exec        = ["python3", "app.py"]
      health_path = "/healthz"
    }

lanes hands each worker a listening unix socket as fd 3 (systemd socket
activation: LISTEN_FDS=1, LISTEN_PID=<this process>). Run alone, it serves
http://127.0.0.1:8000/ (or --port N, or $PORT). gunicorn runs it as app:app.

Endpoints, most of them misbehaving on purpose so that lanes' containment
can be seen (and tested): / /fast /sleep?ms=N /hang /crash /leak?mb=N
/healthz /sick /pid /lane /env /garbage /chunked /cut.
"""

import argparse
import json
import os
import socket
import sys
import threading
import time
from socketserver import ThreadingMixIn
from urllib.parse import parse_qs
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

hoard = []  # what /leak keeps
sick = False  # set by /sick


def rss():
    """This process's resident size in bytes (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    query = parse_qs(environ.get("QUERY_STRING", ""))

    def answer(body, status="200 OK", ctype="text/plain; charset=utf-8"):
        body = body.encode() if isinstance(body, str) else body
        start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))])
        return [body]

    def number(name, default):
        try:
            return int(query.get(name, [default])[0])
        except ValueError:
            return default

    if path == "/":
        return answer(
            "<!doctype html><title>lanes: Python</title>\n<h1>Hello from Python</h1>\n"
            f"<p>pid {os.getpid()}, lane {os.environ.get('LANES_LANE', '-')}.</p>\n",
            ctype="text/html; charset=utf-8",
        )
    if path == "/healthz":
        return answer("sick\n", status="503 Service Unavailable") if sick else answer("ok\n")
    if path == "/sick":  # from now on /healthz fails: lanes replaces this worker
        globals()["sick"] = True
        return answer("sick from now on\n")
    if path == "/fast":
        return answer("ok\n")
    if path == "/sleep":
        time.sleep(number("ms", 100) / 1000)
        return answer("slept\n")
    if path == "/hang":
        threading.Event().wait()  # never answers: lanes' request_timeout ends it
    if path == "/crash":
        os._exit(3)
    if path == "/leak":
        hoard.append(b"x" * (number("mb", 10) << 20))  # touched, so resident
        return answer(f"{rss()}\n")
    if path == "/pid":
        return answer(f"{os.getpid()}\n")
    if path == "/lane":
        return answer(os.environ.get("LANES_LANE", "") + "\n")
    if path == "/env":
        env = {k: v for k, v in os.environ.items()
               if k.startswith(("LISTEN_", "LANES_", "APP_")) or k in ("PORT", "NOTIFY_SOCKET")}
        return answer(json.dumps(env, sort_keys=True) + "\n", ctype="application/json")
    if path == "/garbage":
        # Not HTTP at all, straight onto the connection, which then closes.
        sock = environ.get("lanes.socket") or environ.get("gunicorn.socket")
        sock.sendall(b"\x00\x01 this is not HTTP \xff\r\n\r\n")
        sock.shutdown(socket.SHUT_RDWR)
        environ["lanes.hijacked"] = True  # the server writes nothing more
        start_response("200 OK", [])
        return []
    if path in ("/chunked", "/cut"):
        # No Content-Length: the server sends it chunked (HTTP/1.1).
        start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
        return parts(path == "/cut")
    return answer("not found\n", status="404 Not Found")


def parts(cut):
    for i in range(5):
        yield f"part {i}\n".encode()
        time.sleep(0.02)
        if cut and i == 1:
            os._exit(3)  # dies mid-body


# --- the server, for running without gunicorn ---


class Handler(ServerHandler):
    """wsgiref's handler speaking HTTP/1.1: one request per connection
    (Connection: close), and chunked bodies when there is no Content-Length,
    so that a body cut short cannot pass for a whole one."""

    http_version = "1.1"
    chunked = False

    def cleanup_headers(self):
        super().cleanup_headers()
        self.headers["Connection"] = "close"
        if ("Content-Length" not in self.headers
                and self.environ.get("SERVER_PROTOCOL") == "HTTP/1.1"
                and self.environ.get("REQUEST_METHOD") != "HEAD"
                and self.status[:3] not in ("204", "304")):
            self.headers["Transfer-Encoding"] = "chunked"
            self.chunked = True

    def write(self, data):
        if self.status and not self.headers_sent:
            self.bytes_sent = len(data)  # for a one-block body's Content-Length
            self.send_headers()
            self.bytes_sent = 0
        if self.chunked:
            if not data:
                return
            data = b"%x\r\n%s\r\n" % (len(data), data)
        super().write(data)

    def finish_content(self):
        super().finish_content()
        if self.chunked:
            self._write(b"0\r\n\r\n")
            self._flush()

    def _write(self, data):
        if not self.environ.get("lanes.hijacked"):
            super()._write(data)


class RequestHandler(WSGIRequestHandler):
    def get_environ(self):
        env = super().get_environ()
        env["lanes.socket"] = self.connection  # for /garbage
        return env

    def handle(self):  # WSGIRequestHandler.handle with Handler
        self.raw_requestline = self.rfile.readline(65537)
        if len(self.raw_requestline) > 65536:
            self.send_error(414)
            return
        if not self.parse_request():
            return
        handler = Handler(self.rfile, self.wfile, self.get_stderr(), self.get_environ(),
                          multithread=True)
        handler.request_handler = self
        handler.run(self.server.get_app())


class Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a hung request does not hold up an exit

    def get_request(self):
        conn, addr = self.socket.accept()
        # A unix socket's peer has no address (''): wsgiref needs one for
        # REMOTE_ADDR and its log lines.
        return conn, addr if addr else ("127.0.0.1", 0)


def listen_fds():
    """The sockets of systemd socket activation, if they are ours."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return 0
    return int(os.environ.get("LISTEN_FDS", "0"))


def notify(message):
    """sd_notify: tell the supervisor, if it asked (lanes' ready = "notify")."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(message.encode(), addr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=int(os.environ.get("PORT") or 8000),
                    help="port on 127.0.0.1 when not socket-activated (default $PORT or 8000)")
    args = ap.parse_args()

    if listen_fds() >= 1:
        server = Server(("", 0), RequestHandler, bind_and_activate=False)
        server.socket.close()
        server.socket = socket.socket(fileno=3)  # already bound and listening
        server.server_name, server.server_port = "localhost", 0
        server.setup_environ()
        where = f"fd 3 ({os.environ.get('LISTEN_FDNAMES', '')})"
    else:
        server = Server(("127.0.0.1", args.port), RequestHandler)
        where = f"http://127.0.0.1:{server.server_port}/"
    server.set_app(app)
    print(f"app.py: pid {os.getpid()} serving on {where}", file=sys.stderr, flush=True)
    notify("READY=1")
    server.serve_forever()


if __name__ == "__main__":
    main()
