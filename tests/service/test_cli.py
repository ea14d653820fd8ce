"""`python -m service` refuses to start, with one clear message, when it cannot serve."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import onnxruntime
import pytest

from service.cli import EXIT_STATUSES
from service.listen import EXIT_CANNOT_BIND, EXIT_PORT_IN_USE
from service.settings import Settings
from tests.support import REPO_ROOT, environment_without_settings, free_port


def serve(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = environment_without_settings()
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        cwd=REPO_ROOT,
        env=clean | {"MMOE_PORT": "1"} | env,  # port 1: it must fail before it ever binds
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.skipif(
    "CUDAExecutionProvider" in onnxruntime.get_available_providers(),
    reason="this onnxruntime has CUDA",
)
def test_cuda_without_cuda_fails_at_start_up_with_the_fix(bundled_copy: Path) -> None:
    result = serve({"MMOE_PROVIDER": "cuda", "MMOE_MODEL_REPOSITORY": str(bundled_copy)})
    assert result.returncode == 1
    assert "ERROR service: cannot start: MMOE_PROVIDER=cuda, but this onnxruntime build" in (
        result.stderr
    )
    assert "pip install 'mmoe-service[gpu]', which brings onnxruntime-gpu" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_broken_model_fails_at_start_up(bundled_copy: Path) -> None:
    card = bundled_copy / "mmoe-synthetic" / "1" / "model.json"
    card.write_text(json.dumps(json.loads(card.read_text()) | {"version": 0}))
    result = serve({"MMOE_MODEL_REPOSITORY": str(bundled_copy)})
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].endswith(
        f"ERROR service: cannot start: {card}: invalid model card: version: Input should be "
        "greater than or equal to 1"
    )


def test_invalid_settings_fail_before_anything_loads() -> None:
    result = serve({"MMOE_PORT": "http", "MMOE_PROVIDER": "tpu"})
    assert result.returncode == 2
    assert result.stderr == (
        "mmoe-serve: invalid settings: MMOE_PORT: Input should be a valid integer, unable to "
        "parse string as an integer; MMOE_PROVIDER: Input should be 'auto', 'cpu' or 'cuda'\n"
    )


def test_the_settings_are_printed_at_start_up(bundled_copy: Path) -> None:
    result = serve({"MMOE_MODEL_REPOSITORY": str(bundled_copy), "MMOE_MODEL_NAME": "absent"})
    assert result.returncode == 1
    settings_line = next(line for line in result.stderr.splitlines() if "settings: " in line)
    settings = json.loads(settings_line.split("settings: ", 1)[1])
    assert settings["MMOE_MODEL_REPOSITORY"] == str(bundled_copy)
    assert settings["MMOE_MODEL_NAME"] == "absent"
    assert settings["MMOE_PORT"] == 1


def documented_settings() -> list[str]:
    """The variables in docs/api.md's settings table, in its order."""
    text = (REPO_ROOT / "docs" / "api.md").read_text()
    return re.findall(r"^\| `(MMOE_[A-Z_]+)` +\|", text, flags=re.MULTILINE)


def test_help_lists_every_environment_variable_the_docs_list() -> None:
    result = serve({}, "--help")
    assert result.returncode == 0
    listed = re.findall(r"^  (MMOE_[A-Z_]+) +(\S.*\(default: .+\))$", result.stdout, re.MULTILINE)
    assert [name for name, _ in listed] == documented_settings()
    assert len(documented_settings()) == len(Settings.model_fields)


def test_serving_a_request_never_imports_torch(bundled_copy: Path) -> None:
    script = """
import sys
from fastapi.testclient import TestClient
import service.cli
from service.app import create_app, load_repository
from service.settings import Settings

settings = Settings(provider="cpu", model_repository=REPOSITORY)
with TestClient(create_app(settings, load_repository(settings))) as client:
    response = client.post("/predict", json={"instances": [[0.0] * 100]})
    assert response.status_code == 200, response.text
    assert client.get("/models/mmoe-synthetic").status_code == 200
print(sorted(name for name in sys.modules if name.split(".")[0] == "torch"))
""".replace("REPOSITORY", repr(str(bundled_copy)))
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        env=environment_without_settings(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "[]\n"


def listening_socket() -> socket.socket:
    """A socket listening on a free loopback port: that port is in use."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    return holder


def test_a_port_in_use_is_one_line_and_exit_status_3(bundled_copy: Path) -> None:
    with listening_socket() as holder:
        port = holder.getsockname()[1]
        result = serve({"MMOE_MODEL_REPOSITORY": str(bundled_copy), "MMOE_PORT": str(port)})
    assert result.returncode == EXIT_PORT_IN_USE == 3
    assert result.stderr.splitlines()[-1].endswith(
        f"ERROR service: cannot start: cannot listen on 127.0.0.1:{port}: port {port} is already "
        "in use by another process; stop that process, or choose another port with --port or "
        "MMOE_PORT"
    )
    assert "Traceback" not in result.stderr


def test_an_address_of_another_machine_is_one_line_and_exit_status_4(bundled_copy: Path) -> None:
    # 192.0.2.1 (TEST-NET-1, RFC 5737) is never an address of this machine; nothing is sent.
    result = serve({"MMOE_MODEL_REPOSITORY": str(bundled_copy)}, "--host", "192.0.2.1")
    assert result.returncode == EXIT_CANNOT_BIND == 4
    assert result.stderr.splitlines()[-1].endswith(
        "ERROR service: cannot start: cannot listen on 192.0.2.1:1: the address is not one of "
        "this machine's; set --host or MMOE_HOST to one of its addresses, e.g. 127.0.0.1, or "
        "0.0.0.0 for every interface"
    )


def test_the_options_win_over_the_environment(bundled_copy: Path) -> None:
    with listening_socket() as holder:  # MMOE_PORT names a port in use: only --port can work
        taken = holder.getsockname()[1]
        port = free_port()
        env = environment_without_settings() | {
            "MMOE_MODEL_REPOSITORY": str(bundled_copy),
            "MMOE_HOST": "192.0.2.1",
            "MMOE_PORT": str(taken),
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 60
            while server.poll() is None and time.monotonic() < deadline:
                try:
                    ready = httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=1.0)
                    break
                except httpx.TransportError:
                    time.sleep(0.05)  # polling interval, not synchronisation
            else:
                pytest.fail(f"the server did not answer on --port {port}: {server.stderr}")
        finally:
            server.terminate()
            _, log = server.communicate(timeout=20)
    assert ready.status_code == 200
    settings = json.loads(log.decode().split("settings: ", 1)[1].splitlines()[0])
    assert (settings["MMOE_HOST"], settings["MMOE_PORT"]) == ("127.0.0.1", port)


def test_an_invalid_option_value_is_named_by_its_option() -> None:
    result = serve({"MMOE_PORT": "70000"}, "--port", "65536")
    assert result.returncode == 2
    assert result.stderr == (
        "mmoe-serve: invalid settings: --port: Input should be less than or equal to 65535\n"
    )


def test_help_shows_the_options_beside_the_variables_and_every_exit_status() -> None:
    result = serve({}, "--help")
    assert result.returncode == 0
    assert "--host HOST" in result.stdout and "--port PORT" in result.stdout
    words = " ".join(result.stdout.split())  # argparse wraps the option help
    assert "overrides MMOE_HOST (default: 127.0.0.1)" in words
    assert "overrides MMOE_PORT (default: 8000)" in words
    listed = re.findall(r"^  (\d)  (.+)$", result.stdout, re.MULTILINE)
    assert [(int(status), meaning) for status, meaning in listed] == list(EXIT_STATUSES.items())


def test_the_docs_list_every_exit_status() -> None:
    text = (REPO_ROOT / "docs" / "api.md").read_text()
    documented = re.findall(r"^\| (\d) +\| ", text, flags=re.MULTILINE)
    assert [int(status) for status in documented] == list(EXIT_STATUSES)
