"""MMOE_LOG_FORMAT=json: every line a real server writes is one JSON object, and every line
written while a request is served carries its request id, the access line with route, status
and duration; the API key appears nowhere."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.conftest import ServerProcess
from tests.support import add_version, copy_bundled

KEY = "json-logs-key-0123456789abc"
NAME = "mmoe-synthetic"


def test_every_line_is_json_and_carries_the_request_id(tmp_path: Path) -> None:
    repository = copy_bundled(tmp_path / "models")
    server = ServerProcess(
        {
            "MMOE_MODEL_REPOSITORY": str(repository),
            "MMOE_PROVIDER": "cpu",
            "MMOE_LOG_FORMAT": "json",
            "MMOE_ACCESS_LOG": "true",
            "MMOE_API_KEY": KEY,
        },
        tmp_path / "server.log",
    )
    try:
        server.wait_ready()
        with httpx.Client(base_url=server.url) as client:
            predicted = client.post(
                "/predict",
                json={"instances": [[0.5] * 100]},
                headers={"X-Request-ID": "json-predict-1"},
            )
            refused = client.post(
                "/predict", json={"instances": [[0.5]]}, headers={"X-Request-ID": "json-bad-1"}
            )
            add_version(repository, 2)
            reloaded = client.post(
                "/admin/reload",
                headers={"X-Request-ID": "json-reload-1", "Authorization": f"Bearer {KEY}"},
            )
        assert (predicted.status_code, refused.status_code, reloaded.status_code) == (200, 422, 200)
    finally:
        server.stop()
    text = server.log()
    assert KEY not in text
    lines: list[dict[str, Any]] = [json.loads(line) for line in text.splitlines() if line]
    for line in lines:
        assert list(line)[:5] == ["time", "level", "logger", "message", "request_id"], line
    [settings] = [line for line in lines if line["message"].startswith("settings: ")]
    assert json.loads(settings["message"].removeprefix("settings: "))["MMOE_API_KEY"] == "********"
    assert settings["request_id"] is None
    assert any(line["logger"].startswith("uvicorn") for line in lines)

    def of(request_id: str) -> list[dict[str, Any]]:
        return [line for line in lines if line["request_id"] == request_id]

    [predict_access] = of("json-predict-1")
    assert {key: predict_access[key] for key in ("logger", "route", "status", "method")} == {
        "logger": "service.access",
        "route": "/predict",
        "status": 200,
        "method": "POST",
    }
    assert predict_access["duration_ms"] > 0
    assert [line["status"] for line in of("json-bad-1")] == [422]
    # The reload's lines, from its worker thread and from the event loop, all carry its id.
    reload_lines = of("json-reload-1")
    messages = [line["message"] for line in reload_lines]
    assert any(
        message.startswith(f"loaded {NAME} version 2 (mmoe, 2 tasks)") for message in messages
    )
    assert any(message.startswith("reloaded the model repository") for message in messages)
    assert reload_lines[-1]["route"] == "/admin/reload"
    assert reload_lines[-1]["status"] == 200
    loaded_anywhere = [line for line in lines if line["message"].startswith(f"loaded {NAME}")]
    assert [line["request_id"] for line in loaded_anywhere] == [None, "json-reload-1"]
