"""Publishing versions: atomic, race-free, never replacing a version unless told, promotion."""

import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from training.publish import (
    PublishError,
    VersionExistsError,
    check_destination,
    existing_versions,
    next_version,
    promote,
    promoted_version,
    publish_version,
)


def write_file(text: str):
    def write(directory: Path, version: int) -> None:
        (directory / "model.onnx").write_text(f"{text} as version {version}")

    return write


def entries(model_dir: Path) -> list[str]:
    return sorted(p.name for p in model_dir.iterdir() if p.name != ".publish.lock")


def test_versions_count_up_and_ignore_hidden_entries(tmp_path):
    assert next_version(tmp_path, "m") == 1
    assert publish_version(tmp_path, "m", 1, write_file("a")) == (tmp_path / "m" / "1", 1)
    publish_version(tmp_path, "m", 3, write_file("b"))
    (tmp_path / "m" / ".staging-4-x").mkdir()
    for not_a_version in ("0", "07", "٣", "²", "+5", "latest"):  # the service skips these too
        (tmp_path / "m" / not_a_version).mkdir()
    assert existing_versions(tmp_path, "m") == [1, 3]
    assert next_version(tmp_path, "m") == 4
    assert publish_version(tmp_path, "m", None, write_file("c")) == (tmp_path / "m" / "4", 4)
    assert (tmp_path / "m" / "4" / "model.onnx").read_text() == "c as version 4"


def test_an_existing_version_is_not_overwritten(tmp_path):
    publish_version(tmp_path, "m", 1, write_file("original"))
    with pytest.raises(VersionExistsError) as error:
        publish_version(tmp_path, "m", 1, write_file("replacement"))
    assert str(error.value) == (
        f"{tmp_path / 'm' / '1'} already exists; choose another version, or pass "
        "--export.overwrite true to replace it"
    )
    assert (tmp_path / "m" / "1" / "model.onnx").read_text() == "original as version 1"


def test_overwrite_replaces_the_version_whole(tmp_path):
    publish_version(tmp_path, "m", 1, write_file("original"))
    (tmp_path / "m" / "1" / "stale.txt").write_text("x")
    publish_version(tmp_path, "m", 1, write_file("replacement"), overwrite=True)
    assert sorted(p.name for p in (tmp_path / "m" / "1").iterdir()) == ["model.onnx"]
    assert (tmp_path / "m" / "1" / "model.onnx").read_text() == "replacement as version 1"
    assert entries(tmp_path / "m") == ["1"]


def test_a_failed_write_leaves_no_version_behind(tmp_path):
    def failing(directory: Path, version: int) -> None:
        (directory / "model.onnx").write_text("half")
        raise RuntimeError("export broke")

    with pytest.raises(RuntimeError, match="export broke"):
        publish_version(tmp_path, "m", 1, failing)
    assert entries(tmp_path / "m") == []


def _publish_slowly(models_dir: str, version: int | None, started, results) -> None:
    def write(directory: Path, chosen: int) -> None:
        time.sleep(0.5)  # an export takes a while: the other publisher arrives meanwhile
        (directory / "model.onnx").write_text(f"pid {os.getpid()} as version {chosen}")

    started.wait()  # both publishers start together
    try:
        _, chosen = publish_version(Path(models_dir), "m", version, write)
        results.put(("ok", chosen, os.getpid()))
    except VersionExistsError as error:
        results.put(("exists", str(error), os.getpid()))


def race(models_dir: Path, version: int | None) -> list[tuple]:
    context = multiprocessing.get_context("spawn")
    started, results = context.Barrier(2, timeout=60), context.Queue()
    workers = [
        context.Process(target=_publish_slowly, args=(str(models_dir), version, started, results))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    return sorted(outcomes)


def test_two_publishers_of_the_next_version_get_two_versions(tmp_path):
    """Without the lock both chose version 1 and one deleted the other's model."""
    outcomes = race(tmp_path, None)
    assert [(status, version) for status, version, _ in outcomes] == [("ok", 1), ("ok", 2)]
    for _, version, pid in outcomes:
        text = (tmp_path / "m" / str(version) / "model.onnx").read_text()
        assert text == f"pid {pid} as version {version}"


def test_two_publishers_of_one_named_version_one_wins_one_fails_clearly(tmp_path):
    outcomes = race(tmp_path, 1)
    assert [status for status, *_ in outcomes] == ["exists", "ok"]
    assert outcomes[0][1] == (
        f"{tmp_path / 'm' / '1'} already exists; choose another version, or pass "
        "--export.overwrite true to replace it"
    )
    winner = outcomes[1][2]
    assert (tmp_path / "m" / "1" / "model.onnx").read_text() == f"pid {winner} as version 1"


def test_promotion_writes_the_pointer_the_service_reads(tmp_path):
    publish_version(tmp_path, "m", 1, write_file("a"))
    assert promoted_version(tmp_path, "m") is None
    promote(tmp_path, "m", 1, "the first version of m")
    record = json.loads((tmp_path / "m" / "promoted.json").read_text())
    assert (record["version"], record["reason"]) == (1, "the first version of m")
    assert promoted_version(tmp_path, "m") == 1


def test_the_destination_is_checked_before_any_work(tmp_path):
    check_destination(tmp_path / "new" / "models", "m", None, overwrite=False)  # creatable
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(PublishError, match=rf"^the model repository {a_file} is a file"):
        check_destination(a_file, "m", None, overwrite=False)
    publish_version(tmp_path, "m", 2, write_file("a"))
    with pytest.raises(VersionExistsError, match="already exists"):
        check_destination(tmp_path, "m", 2, overwrite=False)
    check_destination(tmp_path, "m", 2, overwrite=True)
    check_destination(tmp_path, "m", 3, overwrite=False)


def test_an_unwritable_repository_is_found_before_any_work(tmp_path):
    """Root may write to a mode-555 directory (CI runs as root): there the directory is made
    read-only by a read-only bind mount in a mount namespace instead."""
    locked = tmp_path / "models"
    locked.mkdir(mode=0o555)
    script = (
        "import sys; from pathlib import Path; from training.publish import check_destination\n"
        "try: check_destination(Path(sys.argv[1]), 'm', None, overwrite=False)\n"
        "except Exception as error: print(type(error).__name__, error)"
    )
    command = [sys.executable, "-c", script, str(locked)]
    if os.geteuid() == 0:
        mount = f"mount --bind {locked} {locked} && mount -o remount,bind,ro {locked}"
        command = ["unshare", "--mount", "sh", "-c", f'{mount} && exec "$@"', "ro", *command]
    done = subprocess.run(command, capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert done.stdout == (
        f"PublishError cannot write to {locked}: not writable (its permissions, or a read-only "
        "filesystem); choose another --export.models_dir\n"
    ), done.stderr
