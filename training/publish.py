"""Write a model version into the repository `models/<name>/<version>/` atomically.

The version is built in a hidden temporary directory beside its final place (same filesystem),
then renamed into place, so a reader sees either no version or a whole one. Hidden entries
(starting with '.') are never versions.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from service.contract import is_version, parse_version


class VersionExistsError(FileExistsError):
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


def publish_version(
    models_dir: Path,
    name: str,
    version: int,
    write: Callable[[Path], None],
    overwrite: bool = False,
) -> Path:
    """Call `write(directory)` on a fresh directory, then move it to models/<name>/<version>/."""
    final = models_dir / name / str(version)
    if final.exists() and not overwrite:
        raise VersionExistsError(
            f"{final} already exists; choose another version, or pass --export.overwrite true "
            "to replace it"
        )
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".staging-{version}-", dir=final.parent))
    try:
        write(staging)
        staging.chmod(0o755)
        if final.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".retired-{version}-", dir=final.parent))
            final.rename(retired / "old")
            staging.rename(final)
            shutil.rmtree(retired)
        else:
            staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final
