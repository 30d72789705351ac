"""The framework floor: a bare ASGI app on kubesat's HTTP stack (uvicorn + httptools + uvloop) and TLS setup.

It reads any request body and answers 200 with a small JSON body (GET /bytes?n=N answers N bytes of
JSON, the floor for shipping a list of that size). It prints a line with "ready" when it listens.
Usage: python bench/suite/floor.py --port P --cert apiserver.crt --key apiserver.key --ca ca.crt
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import sys

import uvicorn
import uvloop

SMALL = b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","code":200}'
HEADERS = [(b"content-type", b"application/json")]
_sized: dict[int, bytes] = {}


def sized(n: int) -> bytes:
    if n not in _sized:
        row = b'{"x":"' + b"a" * 990 + b'"},'
        body = b'{"items":[' + row * (n // len(row) + 1)
        _sized[n] = body[: max(n - 2, 0)] + b"]}"
    return _sized[n]


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    while more:
        msg = await receive()
        more = msg.get("more_body", False)
    body = SMALL
    if scope["path"] == "/bytes":
        body = sized(int(scope["query_string"].decode().partition("n=")[2] or 0))
    await send({"type": "http.response.start", "status": 200,
                "headers": [*HEADERS, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--ca", required=True)
    args = ap.parse_args()
    config = uvicorn.Config(app, host="127.0.0.1", port=args.port, http="httptools", loop="uvloop", lifespan="on",
                            ssl_certfile=args.cert, ssl_keyfile=args.key, ssl_ca_certs=args.ca,
                            ssl_cert_reqs=ssl.CERT_OPTIONAL, log_level="warning", access_log=False,
                            server_header=False, date_header=True)
    server = uvicorn.Server(config)

    async def run() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                await task
                return
            await asyncio.sleep(0.005)
        print("floor ready", flush=True)
        await task

    uvloop.run(run())
    sys.exit(0)


if __name__ == "__main__":
    main()
