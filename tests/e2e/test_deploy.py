"""The deployment, run without Docker: what the containers would run, run as host processes.

Nothing here is copied by hand from the Dockerfile or docker-compose.yml: the commands, the
environment, the health check and the volume paths are read from those files, so a change to
either that breaks the containers breaks these tests. Only what a container gets from Docker
itself is replaced: the listening address and port (a free loopback port) and the model
repository volume (a copy of the bundled models/ in a temporary directory).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support import REPO_ROOT, copy_bundled, environment_without_settings, free_port

DOCKERFILE = REPO_ROOT / "Dockerfile"
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
MODEL_NAME = "mmoe-synthetic"
INPUT_DIM = 100

# What the host cannot take from an image: its own PATH and HOME stay.
HOST_ONLY = {"PATH", "HOME"}
# A container's view of the filesystem, as far as a mount namespace gives it: the root
# filesystem read-only; the volume and the container's tmpfs /tmp are directories on another
# mount (/dev/shm). /tmp itself is not replaced: this checkout may live under it.
READ_ONLY_ROOT = [
    "unshare", "--mount", "sh", "-c",
    'mount --make-rprivate / && mount -o remount,bind,ro / && exec "$@"',
    "read-only-root",
]  # fmt: skip
TINY_TRAINING = [
    "--log-level", "WARNING",
    "--data.train_size", "256", "--data.validation_size", "64", "--data.test_size", "64",
    "--train.epochs", "2", "--model.num_experts", "2", "--model.expert_units", "4",
    "--model.tower_units", "4",
]  # fmt: skip


# --- reading the Dockerfile ------------------------------------------------------------------


@dataclass
class Stage:
    """What a Dockerfile stage sets for the container that runs it (parents included)."""

    name: str
    env: dict[str, str] = field(default_factory=dict)
    user: str | None = None  # with build arguments expanded to their defaults
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction: comments dropped, continuation lines joined."""
    instructions, pending = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue  # also a comment line inside a continued instruction, as Docker reads it
        pending = f"{pending} {stripped}" if pending else stripped
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        keyword, _, arguments = pending.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def exec_form(arguments: str) -> list[str]:
    return json.loads(arguments) if arguments.startswith("[") else ["/bin/sh", "-c", arguments]


def expand(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda match: env.get(match.group(1), ""), value)


def dockerfile_stages(text: str) -> dict[str, Stage]:
    stages: dict[str, Stage] = {}
    stage: Stage | None = None
    global_args: dict[str, str] = {}  # ARGs before the first FROM, with their defaults
    stage_args: dict[str, str] = {}  # ARGs declared in the current stage (Docker's scoping)
    for keyword, arguments in dockerfile_instructions(text):
        if keyword == "ARG":
            name, has_default, default = arguments.partition("=")
            if stage is None:
                global_args[name] = default
            else:
                stage_args[name] = default if has_default else global_args.get(name, "")
            continue
        if keyword == "FROM":
            stage_args = {}
            words = arguments.split()
            base, name = words[0], words[-1] if len(words) == 3 else ""
            parent = stages.get(base, Stage(name=base))
            stage = Stage(name, dict(parent.env), parent.user, list(parent.entrypoint))
            stage.cmd, stage.healthcheck = list(parent.cmd), list(parent.healthcheck)
            stages[name] = stage
        elif stage is None:
            continue  # global ARGs
        elif keyword == "ENV":
            for word in shlex.split(arguments):
                key, _, value = word.partition("=")
                stage.env[key] = expand(value, stage.env)
        elif keyword == "USER":
            stage.user = expand(arguments, stage_args | stage.env)
        elif keyword == "ENTRYPOINT":
            stage.entrypoint, stage.cmd = exec_form(arguments), []
        elif keyword == "CMD":
            stage.cmd = exec_form(arguments)
        elif keyword == "HEALTHCHECK":
            stage.healthcheck = exec_form(arguments[arguments.index("CMD ") + 4 :].strip())
    return stages


# --- reading docker-compose.yml --------------------------------------------------------------


def interpolate(value: Any) -> Any:
    """Compose's ${NAME:-default} with every NAME unset: the file's own defaults."""
    if isinstance(value, dict):
        return {key: interpolate(item) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item) for item in value]
    if not isinstance(value, str):
        return value
    return re.sub(r"\$\{\w+(?::?-([^}]*))?\}", lambda match: match.group(1) or "", value)


def compose_services() -> dict[str, dict[str, Any]]:
    return interpolate(yaml.safe_load(COMPOSE_FILE.read_text())["services"])


@dataclass
class Container:
    """The process a compose service's container runs, and what it runs with."""

    service: dict[str, Any]
    image: Stage
    command: list[str]
    env: dict[str, str]

    @classmethod
    def of(cls, service_name: str) -> Container:
        service = compose_services()[service_name]
        image = dockerfile_stages(DOCKERFILE.read_text())[service["build"]["target"]]
        command = image.entrypoint + (service.get("command") or image.cmd)
        env = image.env | {key: str(value) for key, value in service.get("environment", {}).items()}
        return cls(service, image, command, env)

    def volume_target(self) -> str:
        (volume,) = self.service["volumes"]
        return volume.split(":")[1]

    def host_argv(self) -> list[str]:
        """The command with the image's `python` (first on its PATH) as this interpreter."""
        assert self.command[0] == "python", self.command
        return [sys.executable, *self.command[1:]]

    def host_env(self, **overrides: str) -> dict[str, str]:
        """This machine's environment less its MMOE_ settings, then the container's, then
        `overrides`."""
        host = environment_without_settings()
        image = {key: value for key, value in self.env.items() if key not in HOST_ONLY}
        return host | image | overrides


# --- running them ----------------------------------------------------------------------------


def repository_copy(root: Path) -> Path:
    """The volume: seeded with the bundled models, as Docker seeds it from the image."""
    return copy_bundled(root)


@contextmanager
def running_api(
    repository: Path, workdir: Path, wrapper: Sequence[str] = (), scratch: Path | None = None
) -> Iterator[tuple[str, Container, dict]]:
    """The api container's command and environment as a host process on a loopback port."""
    api = Container.of("api")
    port = free_port()
    env = api.host_env(
        MMOE_HOST="127.0.0.1", MMOE_PORT=str(port), MMOE_MODEL_REPOSITORY=str(repository)
    )
    env |= with_tmp_at(scratch, api.env) if scratch else {}
    log = workdir / "api.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*wrapper, *api.host_argv()],
            cwd=workdir,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"the api exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"not ready in 60 s:\n{log.read_text()}"
            try:
                if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        yield url, api, env
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def with_tmp_at(scratch: Path, image_env: dict[str, str]) -> dict[str, str]:
    """Settings that put the container's /tmp at `scratch`: TMPDIR, HOME and the image's own
    /tmp paths."""
    moved = {
        key: str(scratch) + value.removeprefix("/tmp")
        for key, value in image_env.items()
        if value == "/tmp" or value.startswith("/tmp/")
    }
    return {"TMPDIR": str(scratch), "HOME": str(scratch)} | moved


def run_healthcheck(test: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    assert test[0] == "CMD" and test[1] == "python", test
    return subprocess.run(
        [sys.executable, *test[2:]], env=env, capture_output=True, text=True, timeout=30
    )


def predict(url: str, **selection: object) -> dict[str, Any]:
    instances = [[0.01 * i for i in range(INPUT_DIM)], [0.5] * INPUT_DIM]
    body = {"instances": instances, **selection}
    response = httpx.post(f"{url}/predict", json=body, timeout=10)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body["tasks"]) == {"task_1", "task_2"}
    for task in body["tasks"].values():
        assert len(task["predictions"]) == len(instances)
        for gate_weights in task["gate_weights"]:
            assert sum(gate_weights) == pytest.approx(1.0, abs=1e-4)
    return body


@pytest.fixture(scope="module")
def retrained_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled repository after one run of the trainer container's command (tiny sizes)."""
    root = repository_copy(tmp_path_factory.mktemp("volume") / "models")
    trainer = Container.of("trainer")
    argv = [*trainer.host_argv(), *TINY_TRAINING, "--export.models_dir", str(root)]
    run = subprocess.run(
        argv,
        cwd=tmp_path_factory.mktemp("workdir"),
        env=trainer.host_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return root


# --- the tests -------------------------------------------------------------------------------


def test_api_container_serves_the_bundled_model_and_passes_its_healthcheck(tmp_path):
    repository = repository_copy(tmp_path / "models")
    with running_api(repository, tmp_path) as (url, api, env):
        body = predict(url)
        assert body["model"] == {"name": MODEL_NAME, "version": 1, "architecture": "mmoe"}
        healthcheck = run_healthcheck(api.service["healthcheck"]["test"], env)
        assert healthcheck.returncode == 0, healthcheck.stderr
    assert run_healthcheck(api.service["healthcheck"]["test"], env).returncode != 0


def test_healthcheck_fails_while_nothing_answers():
    api = Container.of("api")
    env = api.host_env(MMOE_PORT=str(free_port()))
    assert run_healthcheck(api.service["healthcheck"]["test"], env).returncode != 0


def test_trainer_container_exports_the_next_version_into_the_repository(retrained_repository):
    """The container's own recipe, cut to 2 epochs: a worse model than the bundled one, so it
    is published as a candidate and not promoted."""
    version = retrained_repository / MODEL_NAME / "2"
    assert (version / "model.onnx").is_file()
    card = json.loads((version / "model.json").read_text())
    assert (card["name"], card["version"]) == (MODEL_NAME, 2)
    assert (retrained_repository / MODEL_NAME / "1" / "model.onnx").is_file()
    promoted = json.loads((retrained_repository / MODEL_NAME / "promoted.json").read_text())
    assert promoted["version"] == 1
    assert promoted["reason"].startswith("kept: version 2 was not promoted (worse than version 1")


def test_restarted_api_keeps_the_default_and_serves_the_candidate_by_number(
    retrained_repository, tmp_path
):
    with running_api(retrained_repository, tmp_path) as (url, _, _):
        ready = httpx.get(f"{url}/health/ready", timeout=5).json()
        assert ready["default_model"] == {"name": MODEL_NAME, "version": 1}
        assert predict(url)["model"]["version"] == 1
        assert predict(url, version=2)["model"]["version"] == 2
        listed = httpx.get(f"{url}/models/{MODEL_NAME}", timeout=5).json()
        assert (listed["latest_version"], listed["candidate_versions"]) == (1, [2])


def test_a_promoted_retraining_is_served_after_a_restart(retrained_repository, tmp_path):
    repository = tmp_path / "models"
    shutil.copytree(retrained_repository, repository)
    promotion = [sys.executable, "-m", "training.promotion", MODEL_NAME, "2"]
    done = subprocess.run(
        [*promotion, "--models-dir", str(repository)], capture_output=True, text=True, cwd=REPO_ROOT
    )
    assert done.returncode == 0, done.stderr
    with running_api(repository, tmp_path) as (url, _, _):
        ready = httpx.get(f"{url}/health/ready", timeout=5).json()
        assert ready["default_model"] == {"name": MODEL_NAME, "version": 2}
        assert predict(url)["model"]["version"] == 2


@pytest.mark.skipif(
    os.geteuid() != 0 or not Path("/dev/shm").is_dir(),
    reason="a read-only root filesystem needs root for a mount namespace (CI runs as root)",
)
def test_trainer_and_api_work_on_a_read_only_root_filesystem(tmp_path):
    writable = Path(tempfile.mkdtemp(prefix="mmoe-deploy-", dir="/dev/shm"))
    try:
        repository = repository_copy(writable / "models")  # the volume
        scratch = writable / "tmp"  # the tmpfs
        scratch.mkdir()
        probe = subprocess.run([*READ_ONLY_ROOT, "touch", str(REPO_ROOT / ".probe")])
        assert probe.returncode != 0, "the root filesystem was writable"
        trainer = Container.of("trainer")
        argv = [*trainer.host_argv(), *TINY_TRAINING, "--export.models_dir", str(repository)]
        run = subprocess.run(
            [*READ_ONLY_ROOT, *argv],
            cwd=scratch,
            env=trainer.host_env() | with_tmp_at(scratch, trainer.env),
            capture_output=True,
            text=True,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        with running_api(repository, tmp_path, READ_ONLY_ROOT, scratch) as (url, _, _):
            assert predict(url, version=2)["model"]["version"] == 2  # the new candidate
    finally:
        shutil.rmtree(writable)


def test_api_container_listens_on_all_interfaces_on_its_published_port():
    api = Container.of("api")
    published = {mapping.rsplit(":", 1)[1] for mapping in api.service["ports"]}
    assert published == {api.env["MMOE_PORT"]}
    assert api.env["MMOE_HOST"] == "0.0.0.0"
    assert api.image.healthcheck == api.service["healthcheck"]["test"][1:]


@pytest.mark.parametrize("name", ["api", "api-gpu"])
def test_services_read_the_model_repository_volume_the_trainer_writes(name):
    service = Container.of(name)
    trainer = Container.of("trainer")
    models_dir = trainer.command[trainer.command.index("--export.models_dir") + 1]
    assert service.volume_target() == trainer.volume_target() == models_dir
    assert service.env["MMOE_MODEL_REPOSITORY"] == models_dir


@pytest.mark.parametrize("name", ["api", "trainer", "api-gpu"])
def test_containers_run_unprivileged_on_a_read_only_root_filesystem(name):
    container = Container.of(name)
    assert container.image.user is not None
    uid, _, gid = container.image.user.partition(":")
    assert uid.isdigit() and int(uid) != 0, container.image.user
    assert gid.isdigit() and int(gid) != 0, container.image.user
    assert container.service["read_only"] is True
    assert "/tmp" in container.service["tmpfs"]
    assert container.env["PYTHONDONTWRITEBYTECODE"] == "1"


@pytest.mark.parametrize("name", ["api", "trainer", "api-gpu", "proxy"])
def test_every_container_is_hardened_and_limited(name):
    """What docs/deploy.md promises of every container, the proxy included."""
    service = compose_services()[name]
    assert service["read_only"] is True and service["cap_drop"] == ["ALL"]
    assert service["security_opt"] == ["no-new-privileges:true"]
    limits = service["deploy"]["resources"]["limits"]
    assert float(limits["cpus"]) > 0 and re.fullmatch(r"[0-9]+[mg]", limits["memory"])
    if "user" in service:  # the proxy's image is nginx's; ours set USER in the Dockerfile
        uid = service["user"].split(":")[0]
        assert uid.isdigit() and int(uid) != 0


def test_gpu_service_reserves_an_nvidia_gpu_and_requires_cuda():
    gpu = Container.of("api-gpu")
    assert gpu.service["profiles"] == ["gpu"]
    (device,) = gpu.service["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert gpu.env["MMOE_PROVIDER"] == "cuda"


def test_trainer_runs_once_under_its_profile():
    trainer = Container.of("trainer")
    assert trainer.service["profiles"] == ["train"]
    assert trainer.service["restart"] == "no"


def image_requirements(*options: str) -> list[str]:
    script = REPO_ROOT / "docker" / "requirements.py"
    run = subprocess.run([sys.executable, str(script), *options], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return run.stdout.splitlines()


def project_names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[ ;]", requirement)[0] for requirement in requirements}


def test_service_images_install_neither_torch_nor_both_onnxruntime_builds():
    api = project_names(image_requirements())
    assert "onnxruntime" in api and "torch" not in api
    gpu = project_names(image_requirements("--extra", "gpu"))
    assert "onnxruntime-gpu" in gpu and "onnxruntime" not in gpu and "torch" not in gpu


def test_trainer_image_pins_the_cpu_build_of_torch():
    trainer = image_requirements("--extra", "train", "--torch-cpu")
    assert any(re.fullmatch(r"torch==[0-9.]+\+cpu", line) for line in trainer), trainer
