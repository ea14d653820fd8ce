import pytest

from training.publish import VersionExistsError, existing_versions, next_version, publish_version


def write_file(text: str):
    def write(directory):
        (directory / "model.onnx").write_text(text)

    return write


def test_versions_count_up_and_ignore_hidden_entries(tmp_path):
    assert next_version(tmp_path, "m") == 1
    publish_version(tmp_path, "m", 1, write_file("a"))
    publish_version(tmp_path, "m", 3, write_file("b"))
    (tmp_path / "m" / ".staging-4-x").mkdir()
    for not_a_version in ("0", "07", "٣", "²", "+5", "latest"):  # the service skips these too
        (tmp_path / "m" / not_a_version).mkdir()
    assert existing_versions(tmp_path, "m") == [1, 3]
    assert next_version(tmp_path, "m") == 4


def test_an_existing_version_is_not_overwritten(tmp_path):
    publish_version(tmp_path, "m", 1, write_file("original"))
    with pytest.raises(VersionExistsError) as error:
        publish_version(tmp_path, "m", 1, write_file("replacement"))
    assert str(error.value) == (
        f"{tmp_path / 'm' / '1'} already exists; choose another version, or pass "
        "--export.overwrite true to replace it"
    )
    assert (tmp_path / "m" / "1" / "model.onnx").read_text() == "original"


def test_overwrite_replaces_the_version_whole(tmp_path):
    publish_version(tmp_path, "m", 1, write_file("original"))
    (tmp_path / "m" / "1" / "stale.txt").write_text("x")
    publish_version(tmp_path, "m", 1, write_file("replacement"), overwrite=True)
    assert sorted(p.name for p in (tmp_path / "m" / "1").iterdir()) == ["model.onnx"]
    assert (tmp_path / "m" / "1" / "model.onnx").read_text() == "replacement"
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["1"]


def test_a_failed_write_leaves_no_version_behind(tmp_path):
    def failing(directory):
        (directory / "model.onnx").write_text("half")
        raise RuntimeError("export broke")

    with pytest.raises(RuntimeError, match="export broke"):
        publish_version(tmp_path, "m", 1, failing)
    assert list((tmp_path / "m").iterdir()) == []
