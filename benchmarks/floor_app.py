"""The HTTP floor: the fastest a Python server on this stack can answer, whatever it computes.

A bare ASGI callable on uvicorn with uvloop and httptools, the service's own stack: it reads the
whole request body and answers with canned bytes (the service's own response to a body of that
length), so it pays for HTTP, the event loop and moving the same bytes, and for nothing else.

    python benchmarks/floor_app.py --port 8100 --responses canned.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import uvicorn

Scope = dict[str, Any]


def build_app(responses: dict[int, bytes]) -> Any:
    """An ASGI app answering a body of n bytes with `responses[n]` (b'{}' for other lengths)."""
    headers_by_length = {
        length: [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        for length, body in responses.items()
    }
    empty = b"{}"
    empty_headers = [(b"content-type", b"application/json"), (b"content-length", b"2")]

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        chunks = []
        more_body = True
        while more_body:
            message = await receive()
            chunks.append(message.get("body", b""))
            more_body = message.get("more_body", False)
        length = sum(map(len, chunks))
        payload = responses.get(length, empty)
        headers = headers_by_length.get(length, empty_headers)
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--responses", type=Path, required=True, help="JSON: {body length: response text}"
    )
    args = parser.parse_args()
    canned = json.loads(args.responses.read_text())
    responses = {int(length): text.encode() for length, text in canned.items()}
    uvicorn.run(
        build_app(responses),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        log_level="warning",
        access_log=False,
        server_header=False,
    )


if __name__ == "__main__":
    main()
