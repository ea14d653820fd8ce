"""The client's retries and error mapping, against the real app in process (Starlette's
TestClient is an httpx.Client, so the client's own HTTP code runs unchanged)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from service import errors
from service.app import create_app, load_repository
from service.client import (
    ERROR_CLASSES,
    ClientError,
    MMoEClient,
    ServiceError,
    retry_after_s,
)
from service.settings import Settings
from tests.support import REPO_ROOT

ROWS = np.full((3, 100), 0.25, dtype=np.float32)


def settings_for(root: Path) -> Settings:
    return Settings(model_repository=root, provider="cpu", intra_op_threads=1)


class BusyFirst:
    """The real app behind a server that answers 503 with Retry-After to the first `busy`
    requests, as a loaded server does."""

    def __init__(self, app: ASGIApp, busy: int, retry_after: str) -> None:
        self.app, self.busy, self.retry_after = app, busy, retry_after

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.busy > 0:
            self.busy -= 1
            headers = [(b"retry-after", self.retry_after.encode())]
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": b"{}"})
            return
        await self.app(scope, receive, send)


def test_a_503_with_retry_after_is_retried_after_that_wait(bundled_copy: Path) -> None:
    settings = settings_for(bundled_copy)
    app = BusyFirst(create_app(settings, load_repository(settings)), busy=2, retry_after="3")
    waits: list[float] = []
    with TestClient(app) as http:
        client = MMoEClient("http://testserver", http=http, sleep=waits.append)
        answer = client.predict(ROWS)
    assert waits == [3.0, 3.0]
    assert len(answer) == 3


def test_a_server_still_loading_is_retried_with_backoff_then_its_error_raised(
    bundled_copy: Path,
) -> None:
    app = create_app(settings_for(bundled_copy))  # never started: every model route answers 503
    waits: list[float] = []
    http = TestClient(app, headers={"X-Request-ID": "r-9"})
    client = MMoEClient("http://testserver", http=http, sleep=waits.append, max_retries=4)
    with pytest.raises(errors.NotReadyError) as error:
        client.predict(ROWS)
    assert waits == [0.5, 1.0, 2.0, 4.0]
    assert (error.value.status, error.value.code, error.value.request_id) == (
        503,
        "not_ready",
        "r-9",
    )
    assert str(error.value).startswith("the service is starting: models are still loading")


def test_retry_after_as_an_http_date_or_seconds() -> None:
    assert retry_after_s("7") == 7.0
    assert retry_after_s(format_datetime(datetime.now(UTC) - timedelta(seconds=5))) == 0.0
    later = retry_after_s(format_datetime(datetime.now(UTC) + timedelta(seconds=30)))
    assert later is not None and 28.0 < later <= 30.0
    assert retry_after_s("soon") is None


def test_every_error_code_of_the_service_has_its_class() -> None:
    assert ERROR_CLASSES["wrong_feature_count"] is errors.WrongFeatureCountError
    assert ERROR_CLASSES["too_many_instances"] is errors.TooManyInstancesError
    assert ERROR_CLASSES["internal_error"] is ServiceError
    defined = [
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, ServiceError)
    ]
    assert sorted(ERROR_CLASSES) == sorted({cls.code for cls in defined})
    assert ERROR_CLASSES["overloaded"] is errors.OverloadedError  # not its refinement


def test_an_unknown_route_is_a_service_error_with_its_code(bundled_copy: Path) -> None:
    settings = settings_for(bundled_copy)
    with TestClient(create_app(settings, load_repository(settings))) as http:
        client = MMoEClient("http://testserver/api", http=http)
        with pytest.raises(ServiceError) as error:
            client.predict(ROWS)
    assert (error.value.status, error.value.code) == (404, "not_found")
    assert str(error.value) == "no route for POST /api/predict; the API is described at /docs"


def test_input_the_client_cannot_send_is_a_client_error() -> None:
    client = MMoEClient("http://127.0.0.1:9")
    with pytest.raises(ClientError, match=r"^instances must be a 2-D array \[n, d\]; got an "):
        client.predict(np.zeros(100))
    with pytest.raises(ClientError, match=r"^no instances to predict"):
        client.predict([])
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        MMoEClient(batch_size=0)


def test_importing_the_client_loads_no_server_and_no_runtime() -> None:
    script = (
        "import sys, service.client; "
        "print(sorted(m for m in ('onnxruntime', 'fastapi', 'starlette', 'torch') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT
    )
    assert (result.returncode, result.stdout) == (0, "[]\n"), result.stderr
