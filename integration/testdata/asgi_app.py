"""An ASGI app for the exec lanes' tests under uvicorn: / and /pid answer
at once, /hang blocks its event loop for good (a hung handler: only a kill
of the process ends it)."""

import os
import time


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/hang":
        while True:
            time.sleep(1)
    body = str(os.getpid()).encode() if path == "/pid" else b"ok"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
