"""The repository loads every version, and refuses to serve a model whose card it cannot trust."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.errors import ModelLoadError, ModelNotFoundError
from service.repository import ModelRepository
from service.runtime import RuntimeOptions
from service.settings import Settings
from tests.support import add_version, edit_embedded_card

CPU = RuntimeOptions(provider="cpu", intra_op_threads=1)
NAME = "mmoe-synthetic"


def load(root: Path, name: str = NAME, version: int | None = None) -> ModelRepository:
    return ModelRepository.load(root, name, version, CPU)


def rewrite_card(version_dir: Path, **changes: object) -> None:
    card = json.loads((version_dir / "model.json").read_text())
    (version_dir / "model.json").write_text(json.dumps(card | changes))


def test_loads_every_version_and_the_latest_is_the_default(bundled_copy: Path) -> None:
    add_version(bundled_copy, 3)
    (bundled_copy / NAME / ".staging-4-abc").mkdir()
    (bundled_copy / ".cache").mkdir()
    (bundled_copy / "README.md").write_text("not a model")
    repository = load(bundled_copy)
    assert repository.names() == ["mmoe-adult", NAME]
    assert repository.versions(NAME) == [1, 3]
    assert (repository.default.name, repository.default.version) == (NAME, 3)
    assert repository.get(NAME, 1).version == 1
    assert [(model.name, model.version) for model in repository] == [
        ("mmoe-adult", 1),
        (NAME, 1),
        (NAME, 3),
    ]


def test_a_pinned_default_version_answers_requests_naming_none(bundled_copy: Path) -> None:
    add_version(bundled_copy, 2)
    repository = load(bundled_copy, version=1)
    assert repository.get().version == 1
    assert repository.get(NAME).version == 1
    assert repository.get(version=2).version == 2


def test_the_promoted_version_is_the_latest_and_newer_ones_are_candidates(
    bundled_copy: Path,
) -> None:
    add_version(bundled_copy, 2)
    add_version(bundled_copy, 3)
    (bundled_copy / NAME / "promoted.json").write_text('{"version": 2, "reason": "by hand"}')
    repository = load(bundled_copy)
    assert (repository.default.version, repository.latest(NAME)) == (2, 2)
    assert repository.candidates(NAME) == [3]
    assert repository.get(NAME, 3).version == 3  # served when named
    assert load(bundled_copy, version=3).default.version == 3  # MMOE_MODEL_VERSION wins


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"version": 7}', None),
        ('{"version": "2"}', "version is '2'"),
        ('{"version": 0}', "a version is a whole number from 1 to 2147483647 with no leading zero"),
        ("{}", "'version'"),
        ("not json", "Expecting value: line 1 column 1 (char 0)"),
    ],
)
def test_a_broken_promotion_fails_the_start_up(
    bundled_copy: Path, content: str, problem: str | None
) -> None:
    path = bundled_copy / NAME / "promoted.json"
    path.write_text(content)
    with pytest.raises(ModelLoadError) as raised:
        load(bundled_copy)
    if problem is None:
        assert str(raised.value) == (
            f"{NAME}/promoted.json promotes version 7, which is not in the repository "
            "(versions: [1]); promote an existing version or delete the file"
        )
    else:
        assert str(raised.value) == (
            f"{path}: cannot read the promoted version ({problem}); it must hold "
            '{"version": N}; write it with `python -m training.promotion NAME VERSION`, or '
            "delete it to serve the highest version"
        )


def test_latest_names_the_promoted_version_in_the_body_as_in_the_path(
    bundled_copy: Path,
) -> None:
    add_version(bundled_copy, 2)
    add_version(bundled_copy, 3)  # a candidate: newer than the promoted version
    (bundled_copy / NAME / "promoted.json").write_text('{"version": 2, "reason": "by hand"}')
    repository = load(bundled_copy, version=1)  # MMOE_MODEL_VERSION=1 pins the default
    assert repository.get(version="latest").version == 2
    assert repository.get(NAME, "latest").version == 2
    settings = Settings(model_repository=bundled_copy, provider="cpu", model_version=1)
    row = [0.5] * 100
    with TestClient(create_app(settings, repository)) as client:
        by_default = client.post("/predict", json={"instances": [row]}).json()
        by_latest = client.post("/predict", json={"instances": [row], "version": "latest"}).json()
        path_form = client.get(f"/models/{NAME}/versions/latest").json()
        candidate = client.post("/predict", json={"instances": [row], "version": 3}).json()
    assert by_default["model"]["version"] == 1
    assert by_latest["model"]["version"] == 2
    assert path_form["version"] == 2
    assert candidate["model"]["version"] == 3


def test_unknown_models_and_versions_are_not_found(bundled_copy: Path) -> None:
    repository = load(bundled_copy)
    with pytest.raises(ModelNotFoundError, match=r"^no model named 'other'; available models"):
        repository.get("other")
    with pytest.raises(ModelNotFoundError, match=r"^model 'mmoe-synthetic' has no version 9;"):
        repository.get(NAME, 9)


def test_a_missing_default_model_fails_the_start_up(bundled_copy: Path) -> None:
    with pytest.raises(ModelLoadError) as raised:
        load(bundled_copy, name="mmoe-census")
    assert str(raised.value) == (
        "the default model 'mmoe-census' is not in the repository (models: ['mmoe-adult', "
        "'mmoe-synthetic']); "
        "set MMOE_MODEL_NAME to one of them, or train it"
    )
    with pytest.raises(ModelLoadError, match=r"has no version 4 \(versions: \[1\]\); set MMOE_"):
        load(bundled_copy, version=4)


def test_a_missing_repository_fails_the_start_up(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"^model repository .*/absent is not a directory"):
        load(tmp_path / "absent")


def test_a_corrupted_card_fails_the_start_up(bundled_copy: Path) -> None:
    version_dir = bundled_copy / NAME / "1"
    (version_dir / "model.json").write_text('{"name": "mmoe-synthetic", "version": 1')
    with pytest.raises(ModelLoadError) as raised:
        load(bundled_copy)
    assert str(raised.value).startswith(f"{version_dir}/model.json: invalid model card: (card): ")


def test_an_invalid_card_names_the_field(bundled_copy: Path) -> None:
    version_dir = bundled_copy / NAME / "1"
    rewrite_card(version_dir, architecture="transformer")
    with pytest.raises(ModelLoadError) as raised:
        load(bundled_copy)
    assert str(raised.value) == (
        f"{version_dir}/model.json: invalid model card: architecture: Input should be 'mmoe', "
        "'omoe' or 'shared_bottom'"
    )


def test_a_mismatched_sha256_fails_the_start_up(bundled_copy: Path) -> None:
    version_dir = bundled_copy / NAME / "1"
    card = json.loads((version_dir / "model.json").read_text())
    real = card["onnx"]["sha256"]
    card["onnx"]["sha256"] = "0" * 64
    (version_dir / "model.json").write_text(json.dumps(card))
    with pytest.raises(ModelLoadError) as raised:
        load(bundled_copy)
    assert str(raised.value) == (
        f"{version_dir}/model.onnx: sha256 of the ONNX file is {real}, the model card says "
        f"{'0' * 64}; the file and its card do not belong together (re-export the model, or "
        "restore the matching model.onnx)"
    )


def test_a_card_differing_from_the_embedded_card_fails_the_start_up(bundled_copy: Path) -> None:
    version_dir = bundled_copy / NAME / "1"
    rewrite_card(version_dir, parameters=1)
    with pytest.raises(ModelLoadError) as raised:
        load(bundled_copy)
    assert str(raised.value) == (
        f"{version_dir}/model.onnx: model.json differs from the card embedded in the ONNX file "
        "in ['parameters']"
    )


def test_a_card_disagreeing_with_the_graph_fails_the_start_up(bundled_copy: Path) -> None:
    version_dir = bundled_copy / NAME / "1"
    card = json.loads((version_dir / "model.json").read_text())
    edit_embedded_card(
        version_dir,
        tasks=[*card["tasks"], {"name": "task_3", "type": "regression"}],
        experts=card["experts"] | {"gates": 3},
        onnx=card["onnx"] | {"outputs": {"predictions": [None, 3], "gates": [None, 3, 8]}},
    )
    with pytest.raises(ModelLoadError) as raised:
        load(bundled_copy)
    assert str(raised.value) == (
        f"{version_dir}/model.onnx: the graph's outputs are [predictions tensor(float)[batch, 2], "
        "gates tensor(float)[batch, 2, 8]], but the card promises [predictions "
        "tensor(float)[batch, 3], gates tensor(float)[batch, 3, 8]]"
    )


def test_a_card_stored_under_another_version_fails_the_start_up(bundled_copy: Path) -> None:
    shutil.move(bundled_copy / NAME / "1", bundled_copy / NAME / "2")
    with pytest.raises(ModelLoadError) as raised:
        load(bundled_copy)
    assert str(raised.value) == (
        f"{bundled_copy / NAME / '2'}: the card says 'mmoe-synthetic' version 1, but it is stored "
        "as 'mmoe-synthetic' version 2; the directory must be <models>/<name>/<version>/"
    )


def test_a_file_that_is_not_onnx_fails_the_start_up(bundled_copy: Path) -> None:
    version_dir = bundled_copy / NAME / "1"
    (version_dir / "model.onnx").write_bytes(b"not a model")
    rewrite_card(
        version_dir,
        onnx=json.loads((version_dir / "model.json").read_text())["onnx"]
        | {"sha256": hashlib.sha256(b"not a model").hexdigest()},
    )
    with pytest.raises(ModelLoadError, match=r"model.onnx: onnxruntime cannot load this model: "):
        load(bundled_copy)


def test_entries_that_are_not_versions_are_skipped_with_a_warning(
    bundled_copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    not_versions = ["0", "01", "latest", "²", "٣", "+2", "2147483648"]
    for entry in not_versions:
        (bundled_copy / NAME / entry).mkdir()
    (bundled_copy / "Not A Name").mkdir()
    with caplog.at_level(logging.WARNING, logger="service.repository"):
        repository = load(bundled_copy)
    assert repository.versions(NAME) == [1]
    rule = "a version is a whole number from 1 to 2147483647 with no leading zero"
    assert sorted(record.getMessage() for record in caplog.records) == sorted(
        [f"skipping {bundled_copy / 'Not A Name'}: not a valid model name"]
        + [f"skipping {bundled_copy / NAME / entry}: {rule}" for entry in not_versions]
    )
