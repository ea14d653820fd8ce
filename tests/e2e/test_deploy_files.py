"""The deployment's small files say what the big ones do: .env.example holds compose's defaults,
.dockerignore lets only the bundled model versions into an image, and docker/constraints.txt pins
every requirement of every image, within pyproject.toml's ranges, for the Dockerfile's install."""

from __future__ import annotations

import importlib.util
import re
from types import ModuleType

from packaging.requirements import Requirement

from tests.support import BUNDLED_VERSIONS, REPO_ROOT

COMPOSE_DEFAULT = re.compile(r"\$\{([A-Z0-9_]+):-([^}]*)\}")


def compose_defaults() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in (REPO_ROOT / "docker-compose.yml").read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        for name, default in COMPOSE_DEFAULT.findall(line):
            assert found.setdefault(name, default) == default, f"{name} has two defaults"
    return found


def test_env_example_lists_every_compose_variable_with_its_default() -> None:
    example = {}
    for line in (REPO_ROOT / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            example[name] = value
    assert example == compose_defaults()


def test_only_the_bundled_model_versions_enter_an_image() -> None:
    rules = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    model_rules = sorted(rule for rule in rules if rule.startswith("!models"))
    bundled = sorted(
        f"!models/{name}/{version}/{file}"
        for name, versions in BUNDLED_VERSIONS.items()
        for version in versions
        for file in ("model.json", "model.onnx")
    )
    assert model_rules == bundled
    assert rules[rules.index("*") + 1 :].count("!models/") == 0  # never the whole folder


def pins() -> dict[str, str]:
    found = {}
    for line in (REPO_ROOT / "docker" / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            found[name] = version
    return found


def docker_requirements() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "requirements", REPO_ROOT / "docker" / "requirements.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_image_requirement_is_pinned_within_its_range() -> None:
    pinned = pins()
    for extras in ([], ["train"], ["gpu"]):
        for text in docker_requirements().image_requirements(extras, torch_cpu=False):
            requirement = Requirement(text)
            name = re.sub(r"[-_.]+", "-", requirement.name).lower()
            assert name in pinned, f"{text} is not pinned: run make lock"
            assert requirement.specifier.contains(pinned[name], prereleases=True), (
                f"{name}=={pinned[name]} is outside {text}: run make lock"
            )


def test_every_image_installs_with_the_constraints() -> None:
    script = (REPO_ROOT / "docker" / "install-venv.sh").read_text()
    assert '-r "$VENV/requirements.txt" -c docker/constraints.txt' in script
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    copies = re.findall(r"^COPY docker/.*$", dockerfile, flags=re.MULTILINE)
    installs = re.findall(r"install-venv\.sh dependencies", dockerfile)
    assert len(copies) == 2 and len(installs) == 3  # python-build serves api and trainer
    assert all("docker/constraints.txt" in copy for copy in copies)
    assert "!docker/constraints.txt" in (REPO_ROOT / ".dockerignore").read_text().splitlines()
