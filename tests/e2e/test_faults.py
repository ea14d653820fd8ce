"""Faults against a real server over raw sockets: idle and slow clients, too many connections,
stalled uploads, disconnects, answers left unread, malformed HTTP, an onnxruntime error during a
request, and SIGTERM under load. Every limit is set small so that each test takes seconds."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import select
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.e2e.conftest import ServerProcess
from tests.onnx_edits import fail_on_batches_of_two_or_more
from tests.support import copy_bundled

StartServer = Callable[[dict[str, str]], ServerProcess]
ROW = [0.5] * 100
PREDICT = json.dumps({"instances": [ROW]}).encode()
READ_TIMEOUT_S = 10.0  # a bound on each read: far beyond every limit set here


def connect(server: ServerProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.settimeout(READ_TIMEOUT_S)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a reset ends it too)."""
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return int(status_line.split()[1]), {k.lower(): v for k, v in headers.items()}, body


def post(path: str, body: bytes, length: int | None = None) -> bytes:
    length = len(body) if length is None else length
    return (
        f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode() + body


def error_of(raw: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
    status, headers, body = parse(raw)
    assert headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert error["request_id"] == headers["x-request-id"]
    return status, headers, error


def wait_for_log(server: ServerProcess, pattern: str, count: int, deadline_s: float = 10) -> str:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        log = server.log()
        if len(re.findall(pattern, log)) >= count:
            return log
        time.sleep(0.05)  # polling the log file, not synchronisation
    return server.log()


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_bundled(tmp_path_factory.mktemp("faults") / "models")


def settings(repository: Path, **extra: str) -> dict[str, str]:
    return {"MMOE_MODEL_REPOSITORY": str(repository), "MMOE_PROVIDER": "cpu"} | extra


# Item 4: idle connections, slow headers and bodies, and the connection limit.


def test_a_connection_that_sends_nothing_is_answered_408_and_closed(
    start_server: StartServer, repository: Path
) -> None:
    server = start_server(settings(repository, MMOE_HEADER_TIMEOUT_S="0.5"))
    with connect(server) as idle:
        status, headers, error = error_of(read_until_closed(idle))
    assert (status, headers["connection"]) == (408, "close")
    assert error == {
        "code": "request_timeout",
        "message": "the request's headers did not arrive within 0.5 s; send the whole request "
        "at once (the server's limit is MMOE_HEADER_TIMEOUT_S)",
        "details": {"header_timeout_s": 0.5},
        "request_id": headers["x-request-id"],
    }


def test_headers_trickled_byte_by_byte_meet_the_same_deadline(
    start_server: StartServer, repository: Path
) -> None:
    server = start_server(settings(repository, MMOE_HEADER_TIMEOUT_S="0.5"))
    request = b"GET /health/live HTTP/1.1\r\nHost: test\r\nX-Padding: " + b"a" * 100
    sent = 0
    with connect(server) as slow:
        for byte in request:  # one byte every 50 ms: 7 s for all of them
            slow.sendall(bytes([byte]))
            sent += 1
            if select.select([slow], [], [], 0.05)[0]:
                break  # the server has answered
        status, _, error = error_of(read_until_closed(slow))
    assert (status, error["code"]) == (408, "request_timeout")
    assert sent < len(request)  # answered before the headers were all sent


def test_a_kept_alive_connection_closes_after_the_keep_alive_timeout(
    start_server: StartServer, repository: Path
) -> None:
    server = start_server(settings(repository, MMOE_KEEP_ALIVE_TIMEOUT_S="1"))
    with connect(server) as sock:
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: test\r\n\r\n")
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 ")
        assert sock.recv(65536) == b""  # closed by the server while idle, without an answer


def test_a_trickled_body_is_answered_408_after_the_body_timeout(
    start_server: StartServer, repository: Path
) -> None:
    server = start_server(settings(repository, MMOE_BODY_TIMEOUT_S="0.5"))
    with connect(server) as slow:
        slow.sendall(post("/predict", PREDICT[:10], length=len(PREDICT)))
        status, headers, error = error_of(read_until_closed(slow))
    assert (status, headers["connection"]) == (408, "close")
    message = (
        "the request body did not arrive within 0.5 s; send it at once (the server's limit is "
        "MMOE_BODY_TIMEOUT_S)"
    )
    assert error["message"] == message
    with connect(server) as slow:  # the same on /v2, in the protocol's shape
        slow.sendall(post("/v2/models/mmoe-synthetic/infer", b'{"inputs"', length=100))
        status, headers, body = parse(read_until_closed(slow))
    assert (status, headers["connection"], json.loads(body)) == (408, "close", {"error": message})


def test_connections_beyond_the_limit_get_503_and_the_server_stays_up(
    start_server: StartServer, repository: Path
) -> None:
    server = start_server(settings(repository, MMOE_MAX_CONNECTIONS="8"))
    held = [connect(server) for _ in range(8)]
    try:
        with connect(server) as extra:
            extra.sendall(b"GET /health/live HTTP/1.1\r\nHost: test\r\n\r\n")
            status, headers, error = error_of(read_until_closed(extra))
        assert (status, headers["retry-after"], error["code"]) == (503, "1", "too_many_connections")
        assert error["details"] == {"max_connections": 8}
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + READ_TIMEOUT_S
    while time.monotonic() < deadline:  # the server notices the closed connections
        response = httpx.get(f"{server.url}/health/live")
        if response.status_code == 200:
            break
    assert response.status_code == 200


# Item 5: stalled uploads hold at most MMOE_MAX_INFLIGHT_BODY_BYTES.


def test_stalled_uploads_are_bounded_across_connections(
    start_server: StartServer, repository: Path
) -> None:
    megabyte = 1024 * 1024
    server = start_server(
        settings(
            repository,
            MMOE_MAX_BODY_BYTES=str(megabyte),
            MMOE_MAX_INFLIGHT_BODY_BYTES=str(2 * megabyte),
            MMOE_BODY_TIMEOUT_S="30",
        )
    )
    before = psutil.Process(server.process.pid).memory_info().rss
    part = b" " * (megabyte - 100_000)  # each just under the limit, and never finished
    stalled = []
    for _ in range(40):
        sock = connect(server)
        sock.sendall(post("/predict", part, length=megabyte))
        stalled.append(sock)
    try:
        refused = []
        for sock in stalled:
            sock.settimeout(0.5)
            try:
                answer = sock.recv(65536)
            except TimeoutError:
                continue  # still held: within the budget
            refused.append(error_of(answer + read_until_closed(sock)))
        assert len(refused) >= 38  # two bodies of ~0.9 MB fit in 2 MB, the rest do not
        status, headers, error = refused[0]
        assert (status, headers["retry-after"], headers["connection"]) == (503, "1", "close")
        assert error["code"] == "overloaded"
        assert error["details"] == {"max_inflight_body_bytes": 2 * megabyte}
        grown = psutil.Process(server.process.pid).memory_info().rss - before
        assert grown < 20 * megabyte  # held unbounded, the 40 bodies alone were 36 MB
    finally:
        for sock in stalled:
            sock.close()
    answer = httpx.post(f"{server.url}/predict", content=PREDICT, timeout=READ_TIMEOUT_S)
    assert answer.status_code == 200


# Item 6: a client that goes away is one info line, never a traceback.


@pytest.mark.parametrize(
    ("fast_path", "path"),
    [("true", "/predict"), ("false", "/predict"), ("true", "/v2/models/mmoe-synthetic/infer")],
    ids=["fast", "plain", "v2"],
)
def test_a_disconnect_is_one_info_line_without_a_traceback(
    start_server: StartServer, repository: Path, fast_path: str, path: str
) -> None:
    server = start_server(settings(repository, MMOE_FAST_PATH=fast_path))
    for _ in range(20):
        with connect(server) as gone:
            gone.sendall(post(path, PREDICT[:20], length=len(PREDICT)))
    log = wait_for_log(server, "client disconnected", 20)
    lines = [line for line in log.splitlines() if "client disconnected" in line]
    assert len(lines) == 20
    assert all(" INFO service.middleware [" in line for line in lines)  # [request id]
    assert "Traceback" not in log and " ERROR " not in log
    assert httpx.post(f"{server.url}/predict", content=PREDICT).status_code == 200


# A client that never reads its answers.


def test_a_client_that_leaves_its_answers_unread_is_dropped(
    start_server: StartServer, repository: Path
) -> None:
    server = start_server(settings(repository, MMOE_WRITE_TIMEOUT_S="0.5"))
    request = b"GET /models/mmoe-synthetic/versions/1 HTTP/1.1\r\nHost: test\r\n\r\n"
    with socket.socket() as reader:
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        reader.connect(("127.0.0.1", server.port))
        reader.sendall(request * 3000)  # ~20 MB of answers, none read
        log = wait_for_log(server, "left its answer unread", 1, deadline_s=30)
        assert "left its answer unread for 0.5 s (MMOE_WRITE_TIMEOUT_S)" in log
    assert httpx.get(f"{server.url}/health/live").status_code == 200


# Item 8: what the server answers before the app sees a request is JSON too.


def test_a_request_that_is_not_http_gets_a_json_400(
    start_server: StartServer, repository: Path
) -> None:
    server = start_server(settings(repository))
    with connect(server) as sock:
        sock.sendall(b"GARBAGE\r\n\r\n")
        status, headers, error = error_of(read_until_closed(sock))
    assert (status, headers["connection"]) == (400, "close")
    assert error["code"] == "invalid_http"


# An onnxruntime error during a request: a 500 with the request id, and the process stays up.


def test_an_onnxruntime_error_is_a_500_with_the_request_id_and_the_server_stays_up(
    start_server: StartServer, tmp_path: Path
) -> None:
    repository = copy_bundled(tmp_path / "models")
    fail_on_batches_of_two_or_more(repository / "mmoe-synthetic" / "1")
    server = start_server(settings(repository))
    headers = {"X-Request-ID": "ort-failure-1"}
    failed = httpx.post(f"{server.url}/predict", json={"instances": [ROW, ROW]}, headers=headers)
    assert failed.status_code == 500
    assert failed.headers["x-request-id"] == "ort-failure-1"
    assert failed.json() == {
        "error": {
            "code": "internal_error",
            "message": "the server failed to answer this request; it is logged under request id "
            "ort-failure-1: quote it when reporting the problem",
            "details": None,
            "request_id": "ort-failure-1",
        }
    }
    log = wait_for_log(server, "request id ort-failure-1", 1)
    assert (
        "ERROR service.middleware [ort-failure-1]: unhandled error in POST /predict (request id "
        "ort-failure-1)" in log
    )
    assert "onnxruntime" in log.split("request id ort-failure-1", 1)[1]  # the cause, logged
    one = httpx.post(f"{server.url}/predict", json={"instances": [ROW]})
    assert one.status_code == 200
    assert server.process.poll() is None


# Item 13: SIGTERM under load: every accepted request is answered.


async def _hammer(port: int, stop: asyncio.Event, outcomes: list[str]) -> None:
    """New connections, one request each, until `stop` or the first refused connection."""
    request = post("/predict", PREDICT).replace(b"Host: test", b"Host: test\r\nConnection: close")
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            outcomes.append("refused")  # after the listening socket closed: safe to retry
            return
        try:
            writer.write(request)
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), READ_TIMEOUT_S)
            outcomes.append(line.split(b" ")[1].decode() if line else "closed unanswered")
            await reader.read()
        except OSError as error:
            outcomes.append(type(error).__name__)
        finally:
            writer.close()


def test_sigterm_under_load_answers_every_accepted_request_then_exits_0(
    start_server: StartServer, repository: Path
) -> None:
    server = start_server(settings(repository, MMOE_KEEP_ALIVE_TIMEOUT_S="1"))
    outcomes: list[str] = []

    async def load_then_sigterm() -> None:
        stop = asyncio.Event()
        clients = [asyncio.create_task(_hammer(server.port, stop, outcomes)) for _ in range(48)]
        await asyncio.sleep(1.0)
        os.kill(server.process.pid, signal.SIGTERM)
        await asyncio.sleep(1.5)
        stop.set()
        await asyncio.gather(*clients)

    asyncio.run(load_then_sigterm())
    counts = Counter(outcomes)
    assert set(counts) <= {"200", "refused"}, counts  # never reset, never closed unanswered
    assert counts["200"] > 48 and counts["refused"] == 48
    assert server.process.wait(timeout=30) == 0
    assert "Finished server process" in server.log()


# Item 9: HEAD over HTTP: the GET's status and headers, no body.


def test_head_over_http_has_the_get_headers_and_no_body(server: ServerProcess) -> None:
    for path in ["/health/ready", "/models", "/models/mmoe-synthetic/versions/1"]:
        get = httpx.get(f"{server.url}{path}")
        head = httpx.head(f"{server.url}{path}")
        assert (head.status_code, head.content) == (get.status_code, b"")
        assert head.headers["content-length"] == str(len(get.content))


def test_headers_over_64_kib_are_refused_with_431(
    start_server: StartServer, repository: Path
) -> None:
    server = start_server(settings(repository))
    with connect(server) as sock:  # once: 10 MB of one header were read whole and answered 200
        with contextlib.suppress(OSError):  # (the server may answer before it is all sent)
            sock.sendall(b"GET /health/live HTTP/1.1\r\nX-Big: " + b"a" * 1_000_000 + b"\r\n\r\n")
        status, headers, error = error_of(read_until_closed(sock))
    assert (status, headers["connection"], error["code"]) == (431, "close", "headers_too_large")
    assert error["details"] == {"max_header_bytes": 65536}
