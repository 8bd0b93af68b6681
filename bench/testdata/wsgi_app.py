"""The WSGI app the lanes bench runs under gunicorn (go run ./bench
-only pyisolation,pyhang,pythroughput). Standard library only.

    /fast                 a 100-byte answer at once
    /hang                 never answers (sleeps an hour)
    /sleep?ms=N           sleeps N ms, then answers
    /sleep/slow?ms=N      the same under a path of its own, which a lane
                          can take (the NaviServer table's slow class)
    anything else         404
"""

import time
from urllib.parse import parse_qs

BODY = b"x" * 99 + b"\n"


def _answer(start_response, status, body):
    start_response(status, [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
    ])
    return [body]


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/fast":
        return _answer(start_response, "200 OK", BODY)
    if path in ("/sleep", "/sleep/slow"):
        try:
            ms = int(parse_qs(environ.get("QUERY_STRING", "")).get("ms", ["0"])[0])
        except ValueError:
            return _answer(start_response, "400 Bad Request", b"ms: want an integer\n")
        time.sleep(max(ms, 0) / 1000.0)
        return _answer(start_response, "200 OK", BODY)
    if path == "/hang":
        time.sleep(3600)
        return _answer(start_response, "200 OK", BODY)
    return _answer(start_response, "404 Not Found", b"not found\n")
