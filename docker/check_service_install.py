"""Install the api image's dependency set alone, as the Dockerfile does, and check it serves.

In a fresh virtual environment, from a copy of only what the api image copies (pyproject.toml,
docker/requirements.py, service/): `pip install -r <requirements.py output>`, then
`pip install --no-deps .`. Then: torch and the training package are absent, the service's app
imports, and `python -m service` serves the bundled model: the image's health check command
passes and /predict answers.

    python3.11 docker/check_service_install.py     # make check-deploy runs it

Standard library only; it needs the package index pip is configured with.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # the test helpers: bundled models, free ports
from tests.support import copy_bundled, environment_without_settings, free_port  # noqa: E402

IMAGE_FILES = [
    "pyproject.toml",
    "docker/requirements.py",
    "docker/install-venv.sh",
    "docker/constraints.txt",
    "service",
]

IMPORT_CHECK = """
import importlib.util, sys
import service.app, service.cli
for absent in ("torch", "training"):
    assert importlib.util.find_spec(absent) is None, f"{absent} is installed"
assert "torch" not in sys.modules
import onnxruntime
print("service imports without torch; onnxruntime", onnxruntime.__version__)
"""


def run(*command: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    shown = ["<program>" if "\n" in str(part) else str(part) for part in command]
    print("+", " ".join(shown), flush=True)
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done.stdout


def install(work: Path) -> Path:
    source = work / "src"
    for name in IMAGE_FILES:
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        copy = shutil.copytree if (REPO_ROOT / name).is_dir() else shutil.copy2
        copy(REPO_ROOT / name, target)
    # The image's own build steps, with this interpreter as the image's python3.
    interpreter_dir = str(Path(sys.executable).parent)
    env = os.environ | {
        "VENV": str(work / "venv"),
        "PATH": f"{interpreter_dir}:{os.environ['PATH']}",
    }
    for step in ("dependencies", "project"):
        run("sh", "docker/install-venv.sh", step, cwd=source, env=env)
    return work / "venv" / "bin" / "python"


def check_every_package_is_pinned(python: Path) -> None:
    """Every installed distribution but the project is pinned, at that version, by the
    constraints file the install used: nothing entered the image unpinned."""
    pins = {}
    for line in (REPO_ROOT / "docker" / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[normalized(name)] = version
    frozen = run(python, "-m", "pip", "list", "--format=json", "--exclude-editable")
    installed = {normalized(item["name"]): item["version"] for item in json.loads(frozen)}
    installed.pop("mmoe-service", None)
    for tool in ("pip", "setuptools", "wheel"):  # the venv's own, not the project's
        installed.pop(tool, None)
    unpinned = {name: version for name, version in installed.items() if pins.get(name) != version}
    if unpinned:
        sys.exit(f"installed but not pinned by docker/constraints.txt (make lock): {unpinned}")
    print(f"all {len(installed)} installed packages are pinned by docker/constraints.txt")


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def serve_bundled_model(python: Path, work: Path) -> None:
    port = free_port()
    env = environment_without_settings() | {
        "MMOE_HOST": "127.0.0.1",
        "MMOE_PORT": str(port),
        "MMOE_MODEL_REPOSITORY": str(copy_bundled(work / "models")),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    healthcheck = [python, "-c", healthcheck_command()]
    log = (work / "serve.log").open("wb")
    server = subprocess.Popen(
        [python, "-m", "service"], cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        while subprocess.run(healthcheck, env=env, capture_output=True).returncode != 0:
            if server.poll() is not None or time.monotonic() > deadline:
                sys.exit("the service did not become ready:\n" + (work / "serve.log").read_text())
            time.sleep(0.2)
        body = json.dumps({"instances": [[0.1] * 100]}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/predict", body, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.load(response)
        print("served", answer["model"], "tasks", sorted(answer["tasks"]))
        for path in ("/ui", "/ui/assets/app.js", "/ui/assets/style.css", "/metrics"):
            # the gate explorer's files are package data: a non-editable install must ship them
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as page:
                print(f"GET {path}: {page.status}, {len(page.read())} bytes")
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()


def healthcheck_command() -> str:
    """The `python -c` program of the Dockerfile's HEALTHCHECK (its last exec-form argument)."""
    for line in (REPO_ROOT / "Dockerfile").read_text().splitlines():
        if line.strip().startswith('CMD ["python", "-c"'):
            return json.loads(line.strip().removeprefix("CMD "))[-1]
    sys.exit("no python -c HEALTHCHECK command in the Dockerfile")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="mmoe-service-install-") as directory:
        work = Path(directory)
        python = install(work)
        print(run(python, "-c", IMPORT_CHECK, cwd=work).strip())
        check_every_package_is_pinned(python)
        serve_bundled_model(python, work)
    print("ok: the api image's dependency set installs alone, without torch, and serves")
    return 0


if __name__ == "__main__":
    sys.exit(main())
