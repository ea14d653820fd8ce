"""Publish model versions into the repository `models/<name>/<version>/`, safely.

- **Atomic**: a version is written into a hidden staging directory beside its final place (same
  filesystem) and renamed into place, so a reader sees no version or a whole one.
- **Race-free**: choosing the version number and renaming happen under an exclusive lock on
  `models/<name>/.publish.lock`, so two trainings publishing the same name at once get two
  versions; an existing version is replaced only when `overwrite` is asked for.
- **Promotion**: `models/<name>/promoted.json` names the version the service serves by default;
  a version that is not promoted stays in the repository as a candidate, served only when a
  request names it.

Hidden entries (starting with '.') are never versions; a version directory's name follows the
contract's one version rule.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from service.contract import PROMOTED_FILE, is_version, parse_version

LOCK_FILE = ".publish.lock"


class PublishError(RuntimeError):
    """The repository cannot take this version; the message says what to do."""


class VersionExistsError(PublishError, FileExistsError):
    """The requested version is already in the repository and overwriting was not asked for."""


def existing_versions(models_dir: Path, name: str) -> list[int]:
    model_dir = models_dir / name
    if not model_dir.is_dir():
        return []
    return sorted(
        parse_version(entry.name) for entry in model_dir.iterdir() if is_version(entry.name)
    )


def next_version(models_dir: Path, name: str) -> int:
    versions = existing_versions(models_dir, name)
    return versions[-1] + 1 if versions else 1


def check_destination(models_dir: Path, name: str, version: int | None, overwrite: bool) -> None:
    """Fail before any work is done if the version could not be published: the repository is a
    file or not writable, or the requested version exists and may not be replaced."""
    if models_dir.exists() and not models_dir.is_dir():
        raise PublishError(f"the model repository {models_dir} is a file, not a directory")
    existing = next((p for p in (models_dir / name, models_dir) if p.exists()), None)
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise PublishError(
            f"cannot write to {existing}: not writable (its permissions, or a read-only "
            "filesystem); choose another --export.models_dir"
        )
    if existing is None and not _creatable(models_dir):
        raise PublishError(f"cannot create the model repository {models_dir}")
    if version is not None and not overwrite and (models_dir / name / str(version)).exists():
        raise _exists(models_dir / name / str(version))


def _creatable(path: Path) -> bool:
    parent = path
    while not parent.exists():
        parent = parent.parent
    return parent.is_dir() and os.access(parent, os.W_OK | os.X_OK)


@contextmanager
def publishing_lock(models_dir: Path, name: str) -> Iterator[Path]:
    """Exclusive lock on `models/<name>/` for the duration of one publication."""
    model_dir = models_dir / name
    model_dir.mkdir(parents=True, exist_ok=True)
    with open(model_dir / LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield model_dir
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def publish_version(
    models_dir: Path,
    name: str,
    version: int | None,
    write: Callable[[Path, int], None],
    overwrite: bool = False,
) -> tuple[Path, int]:
    """Call `write(directory, version)` on a fresh directory, then move it to
    models/<name>/<version>/; `version` None takes the next free number. Returns (path, version)."""
    with publishing_lock(models_dir, name) as model_dir:
        chosen = version if version is not None else next_version(models_dir, name)
        final = model_dir / str(chosen)
        if final.exists() and not overwrite:
            raise _exists(final)
        staging = Path(tempfile.mkdtemp(prefix=f".staging-{chosen}-", dir=model_dir))
        try:
            write(staging, chosen)
            staging.chmod(0o755)
            if final.exists():
                retired = Path(tempfile.mkdtemp(prefix=f".retired-{chosen}-", dir=model_dir))
                final.rename(retired / "old")
                staging.rename(final)
                shutil.rmtree(retired)
            else:
                staging.rename(final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return final, chosen


def promoted_version(models_dir: Path, name: str) -> int | None:
    """The version `promoted.json` names, or None where there is none."""
    path = models_dir / name / PROMOTED_FILE
    if not path.exists():
        return None
    return int(json.loads(path.read_text())["version"])


def promote(models_dir: Path, name: str, version: int, reason: str) -> None:
    """Make `version` the one the service serves by default (atomically replaces the pointer)."""
    record: dict[str, Any] = {
        "version": version,
        "promoted_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "reason": reason,
    }
    with publishing_lock(models_dir, name) as model_dir:
        handle, temporary = tempfile.mkstemp(prefix=".promoted-", dir=model_dir)
        with os.fdopen(handle, "w") as stream:
            json.dump(record, stream, indent=2)
            stream.write("\n")
        os.chmod(temporary, 0o644)
        os.replace(temporary, model_dir / PROMOTED_FILE)


def _exists(path: Path) -> VersionExistsError:
    return VersionExistsError(
        f"{path} already exists; choose another version, or pass --export.overwrite true "
        "to replace it"
    )
