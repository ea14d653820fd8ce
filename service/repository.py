"""The model repository: every version of every model under one root, loaded and verified.

Layout: `<root>/<name>/<version>/model.onnx` + `model.json`, and optionally
`<root>/<name>/promoted.json` naming the version served when a request names none (training's
quality gate writes it); without it, the highest version is. Versions above the promoted one are
candidates: loaded and served when a request names them, never by default. Hidden entries
(starting with '.', such as training's `.staging-*` directories) are never models or versions.
All versions are loaded at start-up (the models are small) and any that fails to load fails the
start-up. A repository never changes once built: a reload (`service.reloading`) builds a new one
and swaps it in whole.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Literal

from service.contract import (
    MODEL_NAME_PATTERN,
    PROMOTED_FILE,
    VERSION_RULE,
    is_version,
    parse_version,
)
from service.echo import shown
from service.errors import ModelLoadError, ModelNotFoundError
from service.model import ServedModel
from service.runtime import RuntimeOptions

# Said with every 404 for a model or version: a running server sees later exports on a reload.
NOT_LOADED_HINT = (
    " (a model or version published since the server last loaded the repository is served "
    "after a reload: POST /admin/reload, or MMOE_RELOAD_INTERVAL_S; GET /models lists the "
    "versions that failed to load)"
)

logger = logging.getLogger(__name__)


class ModelRepository:
    """Model versions by name and version, and the default that answers requests naming none."""

    def __init__(
        self,
        models: Mapping[str, Mapping[int, ServedModel]],
        default_name: str,
        default_version: int | None = None,
        promoted: Mapping[str, int] | None = None,
    ) -> None:
        self._models = {
            name: dict(sorted(by_version.items())) for name, by_version in models.items()
        }
        self._latest = {name: list(by_version)[-1] for name, by_version in self._models.items()}
        for name, version in (promoted or {}).items():
            if version not in self._models.get(name, {}):
                raise ModelLoadError(
                    f"{name}/{PROMOTED_FILE} promotes version {version}, which is not in the "
                    f"repository (versions: {list(self._models.get(name, {}))}); promote an "
                    "existing version or delete the file"
                )
            self._latest[name] = version
        if default_name not in self._models:
            raise ModelLoadError(
                f"the default model {default_name!r} is not in the repository (models: "
                f"{sorted(self._models)}); set MMOE_MODEL_NAME to one of them, or train it"
            )
        versions = list(self._models[default_name])
        if default_version is not None and default_version not in versions:
            raise ModelLoadError(
                f"the default model {default_name!r} has no version {default_version} (versions: "
                f"{versions}); set MMOE_MODEL_VERSION to one of them, or leave it unset for the "
                "latest"
            )
        self.default_name = default_name
        self.default_version = (
            default_version if default_version is not None else self._latest[default_name]
        )

    @classmethod
    def load(
        cls,
        root: Path,
        default_name: str,
        default_version: int | None,
        options: RuntimeOptions,
    ) -> ModelRepository:
        """Load and verify every version under `root`; a problem anywhere is a ModelLoadError."""
        if not root.is_dir():
            raise ModelLoadError(
                f"model repository {root} is not a directory (resolved: {root.resolve()}); set "
                "MMOE_MODEL_REPOSITORY to the directory holding <name>/<version>/model.onnx"
            )
        models: dict[str, dict[int, ServedModel]] = {}
        promoted: dict[str, int] = {}
        try:
            found = scan(root)
        except OSError as error:
            raise ModelLoadError(
                f"{error.filename}: cannot read the model repository: {error.strerror}; the "
                "service's user needs to read (and list) every directory in it"
            ) from None
        for name, versions in found.items():
            models[name] = {version: ServedModel.load(path, options) for version, path in versions}
            version = read_promoted(root / name)
            if version is not None:
                promoted[name] = version
        return cls(models, default_name, default_version, promoted)

    def get(
        self, name: str | None = None, version: int | Literal["latest"] | None = None
    ) -> ServedModel:
        """The model that answers: no name means the default model; no version, its default
        version for the default model and the latest (promoted) for any other; 'latest', the
        latest (promoted) one, as in the path form."""
        name = self.default_name if name is None else name
        by_version = self._models.get(name)
        if by_version is None:
            raise ModelNotFoundError(
                f"no model named {shown(name)!r}; available models: {self.names()}"
                f"{NOT_LOADED_HINT}",
                {"model": shown(name), "available": self.names()},
            )
        if isinstance(version, int):
            number = version
        elif version is None and name == self.default_name:
            number = self.default_version
        else:  # 'latest', or no version for a model other than the default
            number = self._latest[name]
        model = by_version.get(number)
        if model is None:
            raise ModelNotFoundError(
                f"model {name!r} has no version {number}; available versions: "
                f"{list(by_version)}{NOT_LOADED_HINT}",
                {"model": name, "version": number, "available": list(by_version)},
            )
        return model

    @property
    def default(self) -> ServedModel:
        return self.get()

    def names(self) -> list[str]:
        return sorted(self._models)

    def versions(self, name: str) -> list[int]:
        """Versions of `name`, oldest first; ModelNotFoundError for an unknown name."""
        return list(self._models[self.get(name).name])

    def latest(self, name: str) -> int:
        """The version `latest` means: the promoted one, else the highest."""
        return self._latest[self.get(name).name]

    def candidates(self, name: str) -> list[int]:
        """Versions newer than the promoted one: served only when a request names them."""
        latest = self.latest(name)
        return [version for version in self.versions(name) if version > latest]

    def __iter__(self) -> Iterator[ServedModel]:
        for name in self.names():
            yield from self._models[name].values()


def scan(root: Path) -> dict[str, list[tuple[int, Path]]]:
    """Model name -> [(version, directory)] under `root`, skipping hidden and foreign entries."""
    found: dict[str, list[tuple[int, Path]]] = {}
    for model_dir in sorted(root.iterdir()):
        if model_dir.name.startswith(".") or not model_dir.is_dir():
            continue
        if not MODEL_NAME_PATTERN.match(model_dir.name):
            logger.warning("skipping %s: not a valid model name", model_dir)
            continue
        versions = []
        for version_dir in model_dir.iterdir():
            if version_dir.name.startswith(".") or not version_dir.is_dir():
                continue
            if not is_version(version_dir.name):
                logger.warning("skipping %s: %s", version_dir, VERSION_RULE)
                continue
            versions.append((parse_version(version_dir.name), version_dir))
        if versions:
            found[model_dir.name] = sorted(versions)
        else:
            logger.warning("skipping %s: it holds no versions", model_dir)
    return found


def read_promoted(model_dir: Path) -> int | None:
    """The version `<model_dir>/promoted.json` names; None without the file."""
    path = model_dir / PROMOTED_FILE
    if not path.exists():
        return None
    try:
        version = json.loads(path.read_bytes())["version"]
        if type(version) is not int:
            raise TypeError(f"version is {version!r}")
        return parse_version(str(version))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ModelLoadError(
            f"{path}: cannot read the promoted version ({error}); it must hold "
            '{"version": N}; write it with `python -m training.promotion NAME VERSION`, or '
            "delete it to serve the highest version"
        ) from None
