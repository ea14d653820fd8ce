"""Hot reload in a real server under concurrent traffic: a new version swapped in by
POST /admin/reload and an old one removed by the repository poll, with no failed request."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from tests.e2e.conftest import ServerProcess
from tests.support import add_version, copy_bundled

KEY = "live-reload-key-0123456789"
NAME = "mmoe-synthetic"
CLIENTS = 8
DEADLINE_S = 60.0


def versions_of(listing: dict[str, Any]) -> list[int]:
    [model] = [model for model in listing["models"] if model["name"] == NAME]
    versions: list[int] = model["versions"]
    return versions


class Traffic:
    """`CLIENTS` clients sending /predict (default model, no version) back to back."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answers: list[tuple[float, int, int | str]] = []  # (sent at, status, version)
        self.stopping = asyncio.Event()

    async def client(self, seed: int) -> None:
        rows = np.random.default_rng(seed).normal(size=(1 + seed % 4, 100)).tolist()
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as client:
            while not self.stopping.is_set():
                sent_at = time.monotonic()
                response = await client.post("/predict", json={"instances": rows})
                ok = response.status_code == 200
                version = response.json()["model"]["version"] if ok else response.text
                self.answers.append((sent_at, response.status_code, version))

    async def until(self, more: int) -> None:
        """Wait until `more` further answers have arrived."""
        target = len(self.answers) + more
        deadline = time.monotonic() + DEADLINE_S
        while len(self.answers) < target:
            assert time.monotonic() < deadline, "the traffic stalled"
            await asyncio.sleep(0.01)


async def wait_for(check: Callable[[], Awaitable[bool]], seen: object) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not await check():
        assert time.monotonic() < deadline, f"the server never got there; last seen: {seen}"
        await asyncio.sleep(0.05)


def test_versions_swap_in_and_out_under_traffic_with_no_failed_request(tmp_path: Path) -> None:
    repository = copy_bundled(tmp_path / "models")
    server = ServerProcess(
        {
            "MMOE_MODEL_REPOSITORY": str(repository),
            "MMOE_PROVIDER": "cpu",
            "MMOE_API_KEY": KEY,
            "MMOE_RELOAD_INTERVAL_S": "0.2",
        },
        tmp_path / "server.log",
    )
    try:
        server.wait_ready()
        asyncio.run(scenario(server, repository))
        log = server.log()
    finally:
        server.stop()
    assert f"loaded {NAME} version 2" in log
    assert f"unloaded {NAME} version 1: its last request has finished" in log
    assert KEY not in log


async def scenario(server: ServerProcess, repository: Path) -> None:
    traffic = Traffic(server.url)
    clients = [asyncio.create_task(traffic.client(seed)) for seed in range(CLIENTS)]
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as admin:
        await traffic.until(50)
        await asyncio.to_thread(add_version, repository, 2)
        reloaded = await admin.post("/admin/reload", headers={"Authorization": f"Bearer {KEY}"})
        assert reloaded.status_code == 200, reloaded.text
        # (the poll may have loaded it first: then this reload found nothing left to do)
        assert versions_of((await admin.get("/models")).json()) == [1, 2]
        swapped_at = time.monotonic()  # the swap happened before the answer
        await traffic.until(50)
        # Take version 1 away; the poll notices and unloads it once its last request is done.
        (repository / NAME / "1").rename(repository / NAME / f".retired-{uuid.uuid4().hex}")

        listing: dict[str, Any] = {}

        async def only_version_2() -> bool:
            listing.update((await admin.get("/models")).json())
            return bool(versions_of(listing) == [2] and listing["unloading"] == [])

        await wait_for(only_version_2, listing)
        await traffic.until(50)
        last = (await admin.get("/models")).json()["repository"]["last_reload"]
        assert (last["trigger"], last["unloaded"]) == ("poll", [{"model": NAME, "version": 1}])
    traffic.stopping.set()
    await asyncio.gather(*clients)
    statuses = {status for _, status, _ in traffic.answers}
    assert statuses == {200}, [answer for answer in traffic.answers if answer[1] != 200][:3]
    assert {version for _, _, version in traffic.answers[:50]} == {1}
    # a request sent before the swap may finish on version 1 after it; none sent after it does
    assert {version for sent_at, _, version in traffic.answers if sent_at > swapped_at} == {2}
