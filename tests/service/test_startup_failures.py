"""Start-up failures a probe found ending in tracebacks, hangs or silence: each is one line now,
with its exit status (`mmoe-serve --help` lists them)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from service.settings import available_cpus
from tests.support import REPO_ROOT, environment_without_settings

# As root, permissions do not stop a read: drop the capabilities that let root ignore them.
WITHOUT_ROOT_OVERRIDES = (
    ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
)


def serve(env: dict[str, str], prefix: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = environment_without_settings()
    return subprocess.run(
        [*(prefix or []), sys.executable, "-m", "service"],
        cwd=REPO_ROOT,
        env=clean | {"MMOE_PORT": "1"} | env,  # port 1: it must fail before it ever binds
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_card_that_is_not_utf8_is_one_line_and_exit_status_1(bundled_copy: Path) -> None:
    card = bundled_copy / "mmoe-synthetic" / "1" / "model.json"
    card.write_bytes(b"\xff\xfe" + card.read_bytes())
    result = serve({"MMOE_MODEL_REPOSITORY": str(bundled_copy)})
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].endswith(
        f"ERROR service: cannot start: {card}: invalid model card: it is not UTF-8 text (byte 0 "
        "is 0xff); a card is JSON in UTF-8, as training writes it"
    )


def test_an_unreadable_model_directory_is_one_line_and_exit_status_1(bundled_copy: Path) -> None:
    assert WITHOUT_ROOT_OVERRIDES == [] or shutil.which("setpriv"), "needs util-linux's setpriv"
    model_dir = bundled_copy / "mmoe-synthetic"
    model_dir.chmod(0)
    try:
        result = serve({"MMOE_MODEL_REPOSITORY": str(bundled_copy)}, WITHOUT_ROOT_OVERRIDES)
    finally:
        model_dir.chmod(0o755)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].endswith(
        f"ERROR service: cannot start: {model_dir}: cannot read the model repository: Permission "
        "denied; the service's user needs to read (and list) every directory in it"
    )


def test_an_unreadable_repository_is_one_line_and_exit_status_1(bundled_copy: Path) -> None:
    bundled_copy.chmod(0)
    try:
        result = serve({"MMOE_MODEL_REPOSITORY": str(bundled_copy)}, WITHOUT_ROOT_OVERRIDES)
    finally:
        bundled_copy.chmod(0o755)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "cannot read the model repository: Permission denied" in result.stderr


def test_more_intra_op_threads_than_cpus_is_refused_at_once() -> None:
    result = serve({"MMOE_INTRA_OP_THREADS": "100000"})  # once: accepted, then a hung start-up
    assert result.returncode == 2
    assert result.stderr == (
        f"mmoe-serve: invalid settings: MMOE_INTRA_OP_THREADS: must be at most "
        f"{available_cpus()}, the CPUs this process may run on (more would only queue threads "
        "or processes for the same CPUs)\n"
    )


def test_a_misspelled_setting_is_warned_about_by_name(bundled_copy: Path) -> None:
    env = {"MMOE_MODEL_REPOSITORY": str(bundled_copy), "MMOE_PORTT": "9000"}
    result = serve(env | {"MMOE_MODEL_NAME": "absent"})  # (so that it stops after the warning)
    assert result.returncode == 1
    assert (
        "WARNING service: MMOE_PORTT is not a setting and is ignored; did you mean MMOE_PORT?"
        in result.stderr
    )


def test_an_impossible_host_is_one_line_and_its_documented_status(bundled_copy: Path) -> None:
    result = serve({"MMOE_MODEL_REPOSITORY": str(bundled_copy), "MMOE_HOST": "999.1.1.1"})
    assert result.returncode == 4  # EXIT_CANNOT_BIND, listed by --help and docs/api.md
    assert "Traceback" not in result.stderr
    assert (
        "ERROR service: cannot start: cannot listen on 999.1.1.1:1: the host '999.1.1.1' is"
        in (result.stderr.splitlines()[-1])
    )
