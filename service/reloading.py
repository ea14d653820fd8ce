"""Hot reload of the model repository, by polling (`MMOE_RELOAD_INTERVAL_S`) or on demand
(`POST /admin/reload`).

A reload compares the repository on disk with the versions being served, by each version's
file fingerprint (`artifact.fingerprint`: size, mtime and inode of model.json and model.onnx):
unchanged versions are kept as they are; a new or changed one is loaded in a worker thread and
checked exactly as at start-up (`ServedModel.load`: card, sha256, embedded card, signature,
warm-up). One that fails is rejected: the reason is logged and listed by /models and
/health/ready, and the version loaded before, if any, keeps serving. A failure is tried again
when its files change, or on an admin reload. `promoted.json` is read again too.

The new `ModelRepository` is then swapped in with one assignment: a request that has already
looked its model up finishes on it (the old session), every later one sees the new repository.
A version that left the repository stays in memory until its last request has finished (the
last reference goes), and is listed as unloading until then. If the repository on disk cannot
be served as a whole (the default model gone, say), the reload is rejected and nothing changes.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from anyio import to_thread

from service.artifact import Fingerprint, fingerprint
from service.contract import PROMOTED_FILE
from service.errors import ModelLoadError
from service.metrics import ServiceMetrics
from service.model import ServedModel
from service.repository import ModelRepository, read_promoted, scan
from service.runtime import RuntimeOptions

logger = logging.getLogger(__name__)

Trigger = Literal["poll", "admin"]
Outcome = Literal["unchanged", "changed", "rejected"]
VersionKey = tuple[str, int]
FailureKey = tuple[str, int | None]  # version None: the model's promoted.json


def iso_time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def _version_list(keys: list[VersionKey]) -> list[dict[str, Any]]:
    return [{"model": name, "version": version} for name, version in keys]


@dataclass(frozen=True)
class LoadFailure:
    """A version (or a promoted.json) on disk that is not served, and why."""

    model: str
    version: int | None
    reason: str
    failed_at: float
    source: object = field(compare=False, repr=False)  # what failed: a fingerprint, a reason

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "reason": self.reason,
            "failed_at": iso_time(self.failed_at),
        }


@dataclass(frozen=True)
class ReloadReport:
    trigger: Trigger
    outcome: Outcome
    generation: int
    at: float
    loaded: list[VersionKey]
    replaced: list[VersionKey]
    unloaded: list[VersionKey]
    failed: list[LoadFailure]
    reason: str | None  # why a rejected reload was rejected

    @property
    def ok(self) -> bool:
        """Every version on disk is served: nothing failed, nothing rejected."""
        return self.outcome != "rejected" and not self.failed

    def as_dict(self) -> dict[str, Any]:
        return {
            "trigger": self.trigger,
            "outcome": self.outcome,
            "generation": self.generation,
            "at": iso_time(self.at),
            "loaded": _version_list(self.loaded),
            "replaced": _version_list(self.replaced),
            "unloaded": _version_list(self.unloaded),
            "failed": [failure.as_dict() for failure in self.failed],
            "reason": self.reason,
        }


class RepositoryStatus:
    """What the service says about its repository besides the versions it serves."""

    def __init__(self, polling_interval_s: float = 0.0) -> None:
        self.polling_interval_s = polling_interval_s
        self.generation = 1
        self.failures: dict[FailureKey, LoadFailure] = {}
        self.last_reload: ReloadReport | None = None
        self._unloading: dict[int, VersionKey] = {}
        self._tokens = itertools.count()
        self._lock = threading.Lock()

    def retire(self, model: ServedModel) -> None:
        """List `model` as unloading until nothing refers to it any more."""
        key = (model.name, model.version)
        token = next(self._tokens)
        with self._lock:
            self._unloading[token] = key
        weakref.finalize(model, self._unloaded, token, key)

    def _unloaded(self, token: int, key: VersionKey) -> None:
        with self._lock:
            self._unloading.pop(token, None)
        logger.info("unloaded %s version %d: its last request has finished", *key)

    def unloading(self) -> list[VersionKey]:
        with self._lock:
            return sorted(self._unloading.values())

    def failure_list(self) -> list[dict[str, Any]]:
        ordered = sorted(self.failures.values(), key=lambda f: (f.model, f.version or 0))
        return [failure.as_dict() for failure in ordered]

    def as_dict(self) -> dict[str, Any]:
        last = self.last_reload
        return {
            "generation": self.generation,
            "polling_interval_s": self.polling_interval_s,
            "last_reload": None if last is None else last.as_dict(),
        }


class ReloadTarget(Protocol):
    """What a reload reads and swaps: `handlers.ServiceState` is one."""

    repository: ModelRepository | None
    status: RepositoryStatus


@dataclass
class _Plan:
    """What a reload found, prepared in a worker thread, applied on the event loop."""

    signature: tuple[Any, ...]
    failures: dict[FailureKey, LoadFailure]
    repository: ModelRepository | None = None
    loaded: list[VersionKey] = field(default_factory=list)
    replaced: list[VersionKey] = field(default_factory=list)
    retiring: list[ServedModel] = field(default_factory=list)
    reason: str | None = None


class RepositoryReloader:
    """Reloads `state.repository` from `root`; one reload at a time."""

    def __init__(
        self,
        state: ReloadTarget,
        root: Path,
        default_name: str,
        default_version: int | None,
        options: RuntimeOptions,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self.state = state
        self.root = root
        self.default_name = default_name
        self.default_version = default_version
        self.options = options
        self.metrics = metrics
        self._lock = asyncio.Lock()
        self._signature: tuple[Any, ...] | None = None

    async def reload(self, trigger: Trigger) -> ReloadReport | None:
        """Reload now; None when a poll finds the repository as it was at the last check."""
        async with self._lock:
            plan = await to_thread.run_sync(self._plan, trigger)
            return None if plan is None else self._apply(plan, trigger)

    async def poll_forever(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.reload("poll")
            except Exception:  # a bug here must not end the polling
                logger.exception("the repository poll failed")

    def _plan(self, trigger: Trigger) -> _Plan | None:
        current = self.state.repository
        if current is None:
            raise RuntimeError("a reload needs the repository loaded at start-up")
        try:
            disk = self._scan()
        except (OSError, ModelLoadError) as error:
            return _Plan(("unreadable", str(error)), dict(self.state.status.failures), None,
                         reason=str(error))  # fmt: skip
        fingerprints = {
            (name, version): fingerprint(directory)
            for name, versions in disk.items()
            for version, directory in versions
        }
        promoted_files = {name: _read_bytes(self.root / name / PROMOTED_FILE) for name in disk}
        signature = (tuple(sorted(fingerprints.items())), tuple(sorted(promoted_files.items())))
        if trigger == "poll" and signature == self._signature:
            return None
        plan = _Plan(signature, {})
        served = {(model.name, model.version): model for model in current}
        models: dict[str, dict[int, ServedModel]] = {}
        for name, versions in disk.items():
            for version, directory in versions:
                key = (name, version)
                model = self._version(key, directory, fingerprints[key], served.get(key), plan,
                                      retry=trigger == "admin")  # fmt: skip
                if model is not None:
                    models.setdefault(name, {})[version] = model
        promoted = {name: self._promoted(name, current, by_version, plan)
                    for name, by_version in models.items()}  # fmt: skip
        try:
            plan.repository = ModelRepository(
                models,
                self.default_name,
                self.default_version,
                {name: version for name, version in promoted.items() if version is not None},
            )
        except ModelLoadError as error:
            plan.reason = str(error)
            return plan
        kept = {(model.name, model.version): model for model in plan.repository}
        plan.retiring = [model for key, model in served.items() if kept.get(key) is not model]
        return plan

    def _scan(self) -> dict[str, list[tuple[int, Path]]]:
        if not self.root.is_dir():
            raise ModelLoadError(f"the model repository {self.root} is not a directory any more")
        return scan(self.root)

    def _version(
        self,
        key: VersionKey,
        directory: Path,
        source: Fingerprint,
        served: ServedModel | None,
        plan: _Plan,
        retry: bool,
    ) -> ServedModel | None:
        """The model to serve for `key`: the one served, unless its files changed and load."""
        if served is not None and served.source == source:
            return served
        previous = self.state.status.failures.get(key)
        if previous is not None and previous.source == source and not retry:
            plan.failures[key] = previous
            return served
        try:
            model = ServedModel.load(directory, self.options)
        except ModelLoadError as error:
            plan.failures[key] = LoadFailure(*key, str(error), time.time(), source)
            self._count_load(key[0], ok=False)
            keeps = "the version loaded before keeps serving" if served else "it is not served"
            logger.error("rejected %s version %d: %s; %s", *key, error, keeps)
            return served
        self._count_load(key[0], ok=True)
        (plan.replaced if served is not None else plan.loaded).append(key)
        return model

    def _promoted(
        self,
        name: str,
        current: ModelRepository,
        by_version: dict[int, ServedModel],
        plan: _Plan,
    ) -> int | None:
        """The version `name`'s promoted.json names; on a problem, the one promoted before."""
        path = self.root / name / PROMOTED_FILE
        try:
            version = read_promoted(self.root / name)
            if version is None or version in by_version:
                return version
            reason = (
                f"{path} promotes version {version}, which is not served (available: "
                f"{sorted(by_version)}); the version promoted before stays the latest"
            )
        except ModelLoadError as error:
            reason = f"{error}; the version promoted before stays the latest"
        previous = self.state.status.failures.get((name, None))
        if previous is None or previous.reason != reason:
            logger.error("%s", reason)
            plan.failures[(name, None)] = LoadFailure(name, None, reason, time.time(), reason)
        else:
            plan.failures[(name, None)] = previous
        before = current.latest(name) if name in current.names() else None
        return before if before in by_version else None

    def _apply(self, plan: _Plan, trigger: Trigger) -> ReloadReport:
        status = self.state.status
        status.failures = plan.failures
        self._signature = plan.signature
        now = time.time()
        new = plan.repository
        old = self.state.repository
        assert old is not None  # _plan checked it
        if new is None:
            outcome: Outcome = "rejected"
            logger.error(
                "reload rejected: %s; the versions loaded before keep serving", plan.reason
            )
        elif (
            plan.loaded or plan.replaced or plan.retiring or _served_view(new) != _served_view(old)
        ):
            outcome = "changed"
        else:
            outcome = "unchanged"
        unloaded = sorted(
            (m.name, m.version) for m in plan.retiring if (m.name, m.version) not in plan.replaced
        )
        if new is not None and outcome == "changed":
            self.state.repository = new
            status.generation += 1
            for model in plan.retiring:
                status.retire(model)
            if self.metrics is not None:
                self.metrics.forget_versions((m.name, m.version) for m in plan.retiring)
            default = new.default
            logger.info(
                "reloaded the model repository (generation %d): loaded %s, replaced %s, "
                "unloading %s; default model %s version %d",
                status.generation, plan.loaded, plan.replaced, unloaded, default.name,
                default.version,
            )  # fmt: skip
        report = ReloadReport(
            trigger,
            outcome,
            status.generation,
            now,
            sorted(plan.loaded),
            sorted(plan.replaced),
            unloaded if outcome == "changed" else [],
            sorted(plan.failures.values(), key=lambda f: (f.model, f.version or 0)),
            plan.reason,
        )
        status.last_reload = report
        if self.metrics is not None:
            self.metrics.reloaded(trigger, outcome, now if outcome == "changed" else None)
        return report

    def _count_load(self, model: str, ok: bool) -> None:
        if self.metrics is not None:
            self.metrics.model_loaded(model, ok)


def _served_view(repository: ModelRepository) -> tuple[Any, ...]:
    """What requests see besides the versions: the default and each model's latest."""
    latest = tuple((name, repository.latest(name)) for name in repository.names())
    return repository.default_name, repository.default_version, latest


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def versions_with_roles(repository: ModelRepository) -> Iterator[tuple[ServedModel, str]]:
    """Every served version and its role: default, latest, candidate or older."""
    for model in repository:
        latest = repository.latest(model.name)
        if model.name == repository.default_name and model.version == repository.default_version:
            role = "default"
        elif model.version == latest:
            role = "latest"
        elif model.version > latest:
            role = "candidate"
        else:
            role = "older"
        yield model, role
