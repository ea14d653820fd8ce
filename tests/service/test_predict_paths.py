"""/predict's fast path against its plain path, and the app's bounded work and lifecycle.

The fast path (a pure-ASGI endpoint, simdjson for array bodies) must answer every body exactly as
the plain path (FastAPI's route, orjson) does: the bodies below are the ones that could tell
them apart. A full queue answers 503 with Retry-After; shutting down finishes queued requests.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.app import create_app, load_repository
from service.inference import Tensors
from service.settings import Settings
from tests.support import copy_bundled

D = 100
REQUEST_ID = "paths-1"
ROW = ", ".join(repr(0.25 + i / 7) for i in range(D))
NEGATED = ", ".join(["-0.0", *("-" + value for value in ROW.split(", ")[1:])])
ROWS = f"[{ROW}], [{NEGATED}], [{', '.join(['3'] * D)}]"


def body(template: str) -> bytes:
    return template.replace("ROWS", ROWS).replace("ROW", f"[{ROW}]").encode()


def row_with(value: str) -> str:
    return "[" + ", ".join([value, *ROW.split(", ")[1:]]) + "]"


TRICKY_BODIES = [
    (200, body('{"instances": [ROWS]}')),
    (200, body('{\n  "instances" : [ ROW ,ROW ] ,"return_gates":false}')),
    (200, body('{"instances": [ROW], "model": "mmoe-synthetic", "version": 1}')),
    (200, body('{"instances": [ROW], "model": null, "version": null}')),
    (200, body('{"instances": [ROW], "model": "mmoe-synthetic", "version": "latest"}')),
    (422, body('{"instances": [ROW], "version": "Latest"}')),
    (200, body('{"instances": [ROW], "model": "mmoe\\u002dsynthetic"}')),  # an escape
    (200, body('{"instances": [ROW], "instances": [ROW, ROW]}')),  # the last one counts
    (200, body('{"return_gates": true, "return_gates": false, "instances": [ROW]}')),
    (200, body('{"instances": [' + row_with("1E2") + ", " + row_with("-12e-3") + "]}")),
    (200, body('{"instances": [' + row_with("1e12") + ", " + row_with("-1000000000000") + "]}")),
    (422, body('{"instances": [' + row_with("1000000000001") + "]}")),  # beyond 1e12
    (422, body('{"instances": [' + row_with(str(2**63 + 1)) + "]}")),  # beyond int64
    (422, body('{"instances": [' + row_with(str(2**64 + 1)) + "]}")),  # beyond uint64
    (200, body('{"instances": [' + row_with("1e-400") + "]}")),  # below the smallest float
    (422, body('{"instances": [' + row_with("[0.5]") + "]}")),  # a nested array
    (422, body('{"instances": [' + row_with("[[]]") + ", " + row_with("[]") + "]}")),
    (422, body('{"instances": [ROW, 0.5]}')),
    (422, body('{"instances": [ROW, {"x_1": 0.5}]}')),
    (422, body('{"instances": [' + row_with("true") + "]}")),
    (422, body('{"instances": [' + row_with("null") + "]}")),
    (422, body('{"instances": [' + row_with('"1.5"') + "]}")),
    (422, body('{"instances": [' + row_with("1e39") + "]}")),  # beyond float32
    (422, body('{"instances": [' + row_with("1e400") + "]}")),  # beyond float64
    (422, body('{"instances": [' + row_with("NaN") + "]}")),
    (422, body('{"instances": [' + row_with("01") + "]}")),
    (422, body('{"instances": [[1, 2, 3]]}')),
    (422, body('{"instances": [ROW, [1, 2]]}')),
    (422, body('{"instances": [[]]}')),
    (422, body('{"instances": []}')),
    (422, body('{"instances": {}}')),
    (422, body('{"instances": [ROW], "version": 1.0}')),
    (422, body('{"instances": [ROW], "version": true}')),
    (422, body('{"instances": [ROW], "return_gates": 1}')),
    (422, body('{"instances": [ROW], "extra": 1}')),
    (422, body('{"instances": [ROW]} trailing')),
    (422, body('{"instances": [ROW], "model": "\\ud800"}')),  # a lone surrogate
    (422, b"\xef\xbb\xbf" + body('{"instances": [ROW]}')),  # a byte order mark
    (422, body('{"instances": [ROW], "model": "mmoe\tsynthetic"}')),  # a raw tab in a string
    (422, body('{"instances": [ROW], "model": "caf\xe9"}').replace(b"\xc3\xa9", b"\xe9")),
    (422, body("[ROW]")),
    (422, b""),
    (404, body('{"instances": [ROW], "model": "mmoe["}')),
    (404, body('{"instances": [ROW], "version": 2}')),
    (413, body('{"instances": [ROW, ROW, ROW, ROW, ROW, ROW, ROW, ROW, ROW]}')),
]


def settings_for(root: Path, **overrides: Any) -> Settings:
    values = {"model_repository": root, "provider": "cpu", "intra_op_threads": 1}
    return Settings(**(values | {"max_instances": 8} | overrides))


@pytest.fixture(scope="module")
def both_paths(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, ...]]:
    settings = settings_for(copy_bundled(tmp_path_factory.mktemp("models")))
    headers = {"X-Request-ID": REQUEST_ID, "Content-Type": "application/json"}
    fast = create_app(settings, load_repository(settings), fast_predict=True)
    plain = create_app(settings, load_repository(settings), fast_predict=False)
    with TestClient(fast, headers=headers) as one, TestClient(plain, headers=headers) as other:
        yield one, other


@pytest.mark.parametrize(("status", "content"), TRICKY_BODIES)
def test_the_fast_path_answers_every_body_as_the_plain_path_does(
    both_paths: tuple[TestClient, TestClient], status: int, content: bytes
) -> None:
    fast, plain = (client.post("/predict", content=content) for client in both_paths)
    assert fast.status_code == plain.status_code == status, plain.text
    assert fast.content == plain.content
    assert fast.headers["content-type"] == plain.headers["content-type"] == "application/json"
    assert fast.headers["x-request-id"] == plain.headers["x-request-id"] == REQUEST_ID
    assert fast.headers["content-length"] == plain.headers["content-length"]


def test_the_fast_path_leaves_every_other_route_to_fastapi(
    both_paths: tuple[TestClient, TestClient],
) -> None:
    fast, plain = both_paths
    for method, path in [("GET", "/predict"), ("POST", "/predict/"), ("GET", "/models")]:
        one = fast.request(method, path, follow_redirects=False)
        other = plain.request(method, path, follow_redirects=False)
        assert (one.status_code, one.content) == (other.status_code, other.content)


def block_the_default_model(app: FastAPI) -> threading.Event:
    """Every call of the default model waits for the returned event."""
    model = app.state.service.repository.default
    release = threading.Event()
    run = model.run

    def blocked(inputs: Mapping[str, np.ndarray]) -> Tensors:
        assert release.wait(timeout=30), "the test never released the model"
        return run(inputs)

    model.run = blocked
    return release


async def until(condition: Any, iterations: int = 10_000) -> None:
    """Let the event loop run until `condition` holds (by loop iterations, not by time)."""
    for _ in range(iterations):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


@pytest.mark.parametrize("fast_predict", [True, False], ids=["fast", "plain"])
def test_a_full_queue_answers_503_with_retry_after(bundled_copy: Path, fast_predict: bool) -> None:
    settings = settings_for(
        bundled_copy, inference_concurrency=1, max_queued_requests=1, inline_max_rows=0
    )
    app = create_app(settings, load_repository(settings), fast_predict=fast_predict)
    release = block_the_default_model(app)
    runner = app.state.runner
    payload = {"instances": [[0.5] * D]}

    async def scenario() -> tuple[list[httpx.Response], httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://test") as client,
        ):
            first = asyncio.ensure_future(client.post("/predict", json=payload))
            await until(lambda: runner.running == 1)
            second = asyncio.ensure_future(client.post("/predict", json=payload))
            await until(lambda: runner.queued == 1)
            refused = await client.post(
                "/predict", json=payload, headers={"X-Request-ID": "full-1"}
            )
            release.set()
            return list(await asyncio.gather(first, second)), refused

    served, refused = asyncio.run(scenario())
    assert [response.status_code for response in served] == [200, 200]
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert refused.headers["x-request-id"] == "full-1"
    assert refused.json() == {
        "error": {
            "code": "overloaded",
            "message": "the server is at capacity: 1 requests are already waiting for an "
            "inference; retry shortly (the server's limit is MMOE_MAX_QUEUED_REQUESTS)",
            "details": {"max_queued_requests": 1},
            "request_id": "full-1",
        }
    }


def test_shutdown_finishes_the_queued_requests(bundled_copy: Path) -> None:
    settings = settings_for(bundled_copy, inference_concurrency=1, inline_max_rows=0)
    app = create_app(settings, load_repository(settings))
    release = block_the_default_model(app)
    runner = app.state.runner
    bodies = [{"instances": [[float(seed)] * D]} for seed in range(4)]

    async def scenario() -> tuple[list[httpx.Response], httpx.Response]:
        started, stop = asyncio.Event(), asyncio.Event()

        async def serve() -> None:
            async with app.router.lifespan_context(app):
                started.set()
                await stop.wait()

        server = asyncio.ensure_future(serve())
        await started.wait()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            sent = [asyncio.ensure_future(client.post("/predict", json=bodies[0]))]
            await until(lambda: runner.running == 1)
            sent += [asyncio.ensure_future(client.post("/predict", json=b)) for b in bodies[1:]]
            await until(lambda: runner.queued == 3)
            stop.set()  # the app shuts down: its lifespan closes the runner
            await until(lambda: runner._closing)
            late = await client.post("/predict", json=bodies[0])
            assert not server.done()
            release.set()
            await server
            return list(await asyncio.gather(*sent)), late

    answered, late = asyncio.run(scenario())
    assert [response.status_code for response in answered] == [200] * 4
    predictions = [r.json()["tasks"]["task_1"]["predictions"][0] for r in answered]
    assert len(set(predictions)) == 4  # each its own row
    assert late.status_code == 503
    assert late.headers["retry-after"] == "1"
    assert late.json()["error"]["code"] == "shutting_down"
