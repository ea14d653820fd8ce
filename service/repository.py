"""The model repository: every version of every model under one root, loaded and verified.

Layout: `<root>/<name>/<version>/model.onnx` + `model.json`. Hidden entries (starting with '.',
such as training's `.staging-*` directories) are never models or versions. All versions are loaded
at start-up (the models are small) and any that fails to load fails the start-up.

The seam for hot reloading (a later issue): callers only use `get`, `names`, `versions` and
`default`; a reloading repository swaps its `_models` mapping whole, never mutates it in place.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from pathlib import Path

from service.contract import MODEL_NAME_PATTERN, VERSION_RULE, is_version, parse_version
from service.errors import ModelLoadError, ModelNotFoundError
from service.model import ServedModel
from service.runtime import RuntimeOptions

logger = logging.getLogger(__name__)


class ModelRepository:
    """Model versions by name and version, and the default that answers requests naming none."""

    def __init__(
        self,
        models: Mapping[str, Mapping[int, ServedModel]],
        default_name: str,
        default_version: int | None = None,
    ) -> None:
        self._models = {
            name: dict(sorted(by_version.items())) for name, by_version in models.items()
        }
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
        self.default_version = default_version if default_version is not None else versions[-1]

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
        for name, versions in scan(root).items():
            models[name] = {version: ServedModel.load(path, options) for version, path in versions}
        return cls(models, default_name, default_version)

    def get(self, name: str | None = None, version: int | None = None) -> ServedModel:
        """The model that answers: no name means the default model; no version, its default
        version for the default model and the latest for any other."""
        name = self.default_name if name is None else name
        by_version = self._models.get(name)
        if by_version is None:
            raise ModelNotFoundError(
                f"no model named {name!r}; available models: {self.names()}",
                {"model": name, "available": self.names()},
            )
        if version is None:
            version = (
                self.default_version if name == self.default_name else next(reversed(by_version))
            )
        model = by_version.get(version)
        if model is None:
            raise ModelNotFoundError(
                f"model {name!r} has no version {version}; available versions: {list(by_version)}",
                {"model": name, "version": version, "available": list(by_version)},
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
