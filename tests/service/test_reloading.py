"""Hot reload: new versions are verified as at start-up and swapped in; a bad one is rejected with
its reason while what was served keeps serving; a removed version is unloaded after its last
request; promoted.json is read again; polling notices changes by itself."""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from anyio import to_thread
from fastapi.testclient import TestClient

from service.app import create_app, load_repository
from service.inference import BatchModel, InferenceRunner, Tensors
from tests.service.conftest import REQUEST_ID, settings_for
from tests.support import add_version

KEY = "reload-test-key-0123456789"
ADMIN = {"Authorization": f"Bearer {KEY}"}
NAME = "mmoe-synthetic"
ROW = [0.5] * 100
DEADLINE_S = 30.0


def client_for(root: Path, runner: Any = None, **settings: object) -> TestClient:
    configured = settings_for(root, api_key=KEY, **settings)
    app = create_app(configured, load_repository(configured), runner)
    return TestClient(app, headers={"X-Request-ID": REQUEST_ID})


def answering_version(client: TestClient, **body: object) -> int:
    response = client.post("/predict", json={"instances": [ROW], **body})
    assert response.status_code == 200, response.text
    version: int = response.json()["model"]["version"]
    return version


def versions_of(listing: dict[str, Any], name: str = NAME) -> list[int]:
    [model] = [model for model in listing["models"] if model["name"] == name]
    versions: list[int] = model["versions"]
    return versions


def remove_version(root: Path, version: int) -> None:
    """Take a version out of the repository at once, as an operator's `mv` would."""
    (root / NAME / str(version)).rename(root / NAME / f".retired-{uuid.uuid4().hex}")


def corrupt(version_dir: Path) -> None:
    model = version_dir / "model.onnx"
    model.write_bytes(model.read_bytes()[:-16] + b"\0" * 16)


def test_a_new_version_is_loaded_and_becomes_the_latest(bundled_copy: Path) -> None:
    with client_for(bundled_copy) as client:
        assert answering_version(client) == 1
        add_version(bundled_copy, 2)
        assert answering_version(client) == 1  # nothing changes before a reload
        reloaded = client.post("/admin/reload", headers=ADMIN)
        assert reloaded.status_code == 200
        report = reloaded.json()
        assert {key: report[key] for key in ("trigger", "outcome", "generation")} == {
            "trigger": "admin",
            "outcome": "changed",
            "generation": 2,
        }
        assert (report["loaded"], report["replaced"], report["unloaded"], report["failed"]) == (
            [{"model": NAME, "version": 2}],
            [],
            [],
            [],
        )
        assert answering_version(client) == 2
        assert answering_version(client, version=1) == 1
        listing = client.get("/models").json()
        assert versions_of(listing) == [1, 2]
        assert listing["repository"]["last_reload"] == report
        assert client.get("/health/ready").json()["loaded"][NAME] == [1, 2]
        again = client.post("/admin/reload", headers=ADMIN).json()
        assert (again["outcome"], again["generation"], again["loaded"]) == ("unchanged", 2, [])


def test_a_corrupt_new_version_is_rejected_and_the_old_one_answers(
    bundled_copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with client_for(bundled_copy) as client:
        corrupt(add_version(bundled_copy, 2))
        refused = client.post("/admin/reload", headers=ADMIN)
        assert refused.status_code == 409
        error = refused.json()["error"]
        assert error["code"] == "reload_failed"
        [failure] = error["details"]["failed"]
        model_file = bundled_copy / NAME / "2" / "model.onnx"
        assert failure["reason"].startswith(f"{model_file}: sha256 of the ONNX file is ")
        assert (failure["model"], failure["version"]) == (NAME, 2)
        assert error["message"] == (
            f"1 version(s) or promotion(s) on disk are not served: {NAME} 2: "
            f"{failure['reason']}; every other change was applied, and what was served before "
            "keeps serving"
        )
        assert error["details"]["outcome"] == "unchanged"
        assert answering_version(client) == 1
        assert client.get("/models").json()["failed"] == [failure]
        ready = client.get("/health/ready")
        assert (ready.status_code, ready.json()["failed"]) == (200, [failure])
        assert ready.json()["loaded"][NAME] == [1]
        rejected = [r for r in caplog.records if r.getMessage().startswith("rejected ")]
        assert [r.getMessage() for r in rejected] == [
            f"rejected {NAME} version 2: {failure['reason']}; it is not served"
        ]
        assert [r.levelno for r in rejected] == [logging.ERROR]
        # fixed on disk: the next reload serves it and forgets the failure
        shutil.rmtree(bundled_copy / NAME / "2")
        add_version(bundled_copy, 2)
        fixed = client.post("/admin/reload", headers=ADMIN)
        assert fixed.status_code == 200
        assert fixed.json()["loaded"] == [{"model": NAME, "version": 2}]
        assert client.get("/models").json()["failed"] == []
        assert answering_version(client) == 2


def test_a_served_version_broken_in_place_keeps_answering_from_memory(bundled_copy: Path) -> None:
    with client_for(bundled_copy) as client:
        card = bundled_copy / NAME / "1" / "model.json"
        card.write_text(json.dumps(json.loads(card.read_text()) | {"tasks": []}))
        refused = client.post("/admin/reload", headers=ADMIN)
        assert refused.status_code == 409
        [failure] = refused.json()["error"]["details"]["failed"]
        assert failure["reason"].startswith(f"{card}: invalid model card: tasks: ")
        assert answering_version(client) == 1
        assert client.get("/health/ready").json()["loaded"][NAME] == [1]


def test_removing_the_default_model_is_rejected_as_a_whole(bundled_copy: Path) -> None:
    with client_for(bundled_copy) as client:
        remove_version(bundled_copy, 1)
        refused = client.post("/admin/reload", headers=ADMIN)
        assert refused.status_code == 409
        reason = (
            f"the default model {NAME!r} is not in the repository (models: ['mmoe-adult']); set "
            "MMOE_MODEL_NAME to one of them, or train it"
        )
        assert refused.json()["error"]["message"] == (
            f"the reload was rejected: {reason}; the versions loaded before keep serving"
        )
        assert refused.json()["error"]["details"]["outcome"] == "rejected"
        assert answering_version(client) == 1
        assert client.get("/models").json()["repository"]["last_reload"]["reason"] == reason


def test_promoted_json_is_read_again(bundled_copy: Path) -> None:
    with client_for(bundled_copy) as client:
        add_version(bundled_copy, 2)
        (bundled_copy / NAME / "promoted.json").write_text('{"version": 1}')
        assert client.post("/admin/reload", headers=ADMIN).status_code == 200
        assert answering_version(client) == 1
        assert client.get(f"/models/{NAME}").json()["candidate_versions"] == [2]
        (bundled_copy / NAME / "promoted.json").write_text('{"version": 2}')
        report = client.post("/admin/reload", headers=ADMIN).json()
        assert (report["outcome"], report["loaded"]) == ("changed", [])
        assert answering_version(client) == 2
        (bundled_copy / NAME / "promoted.json").write_text('{"version": 7}')
        refused = client.post("/admin/reload", headers=ADMIN)
        assert refused.status_code == 409
        [failure] = refused.json()["error"]["details"]["failed"]
        assert (failure["model"], failure["version"]) == (NAME, None)
        assert failure["reason"] == (
            f"{bundled_copy / NAME / 'promoted.json'} promotes version 7, which is not served "
            "(available: [1, 2]); the version promoted before stays the latest"
        )
        assert answering_version(client) == 2


class HeldRunner(InferenceRunner):
    """The service's runner, except that each request runs only once the test lets it: a
    request held in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    async def run(self, model: BatchModel, inputs: Mapping[str, np.ndarray]) -> Tensors:
        self.entered.set()
        await to_thread.run_sync(self.release.wait)
        return await super().run(model, inputs)


def test_a_removed_version_finishes_its_requests_then_unloads(bundled_copy: Path) -> None:
    add_version(bundled_copy, 2)
    runner = HeldRunner()
    with client_for(bundled_copy, runner) as client, ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(client.post, "/predict", json={"instances": [ROW], "version": 1})
        assert runner.entered.wait(DEADLINE_S)
        remove_version(bundled_copy, 1)
        report = client.post("/admin/reload", headers=ADMIN).json()
        assert report["unloaded"] == [{"model": NAME, "version": 1}]
        assert client.get("/models").json()["unloading"] == [{"model": NAME, "version": 1}]
        assert versions_of(client.get("/models").json()) == [2]
        runner.release.set()
        answered = in_flight.result(timeout=DEADLINE_S)
        assert (answered.status_code, answered.json()["model"]["version"]) == (200, 1)
        del answered, in_flight
        assert client.get("/models").json()["unloading"] == []
        assert client.post("/predict", json={"instances": [ROW], "version": 1}).status_code == 404


def test_polling_loads_a_new_version_by_itself_and_logs_a_failure_once(
    bundled_copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with client_for(bundled_copy, reload_interval_s=0.05) as client:
        add_version(bundled_copy, 2)
        deadline = time.monotonic() + DEADLINE_S
        while client.get("/health/ready").json()["loaded"][NAME] != [1, 2]:
            assert time.monotonic() < deadline, "the poll never loaded version 2"
            time.sleep(0.05)  # polling interval of the test, not synchronisation
        assert client.get("/models").json()["repository"]["last_reload"]["trigger"] == "poll"
        corrupt(add_version(bundled_copy, 3))
        while not client.get("/models").json()["failed"]:
            assert time.monotonic() < deadline, "the poll never tried version 3"
            time.sleep(0.05)
        time.sleep(0.5)  # ten more polls, which must not try (or log) version 3 again
        assert answering_version(client) == 2
    rejected = [
        r for r in caplog.records if r.getMessage().startswith(f"rejected {NAME} version 3")
    ]
    assert len(rejected) == 1
