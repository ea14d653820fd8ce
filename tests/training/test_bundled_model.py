"""The committed default model is what `make train` makes: same recipe, weights and metrics."""

import hashlib
import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from service.model_card import ModelCard
from tests.support import bundled_version_dir
from training.config import RunConfig
from training.pipeline import run

BUNDLED = bundled_version_dir("mmoe-synthetic", 1)


@pytest.fixture(scope="module")
def card() -> ModelCard:
    return ModelCard.model_validate_json((BUNDLED / "model.json").read_text())


def initializers(path) -> dict[str, np.ndarray]:
    """The graph's weights by name. The input layer was called `normalizer` until tables gave it
    embeddings (`inputs` since): the same tensors under either name."""
    graph = onnx.load(str(path)).graph
    return {
        tensor.name.replace("model.normalizer.", "model.inputs."): numpy_helper.to_array(tensor)
        for tensor in graph.initializer
    }


def test_bundled_card_matches_its_file(card):
    assert card.onnx.sha256 == hashlib.sha256((BUNDLED / "model.onnx").read_bytes()).hexdigest()
    assert (card.name, card.version, card.architecture) == ("mmoe-synthetic", 1, "mmoe")


# Options added after the bundled model was trained, at defaults that leave its recipe unchanged:
# no categorical inputs to embed, early stopping on the validation loss, torch's own threads, CPU.
ADDED_SINCE = {
    "model": {"embedding_dim": 4},
    "train": {"early_stopping_metric": "loss", "threads": None, "device": "cpu"},
}


def test_bundled_model_was_made_with_the_default_config(card):
    defaults = json.loads(RunConfig().model_dump_json())
    drawn = ("alphas", "betas")  # recorded as the values drawn, configured as None
    derived = ("linear_unexplained_share",)  # recorded from the draw, not configured
    recorded_data = {k: v for k, v in card.data.items() if k not in drawn + derived}
    assert recorded_data == {k: v for k, v in defaults["data"].items() if k not in drawn}
    assert card.data["linear_unexplained_share"] == 0.0061
    for section in ("model", "train"):
        recorded = card.training[section]
        added = {k: v for k, v in defaults[section].items() if k not in recorded}
        assert added == ADDED_SINCE[section]
        assert recorded == {k: v for k, v in defaults[section].items() if k in recorded}


@pytest.mark.slow
@pytest.mark.timeout(1200)  # ~30 s on 2 idle cores; minutes when other work shares them
def test_retraining_with_the_defaults_reproduces_the_bundled_model_exactly(card, tmp_path):
    """Seeded, deterministic kernels: the same weights to the last bit, so the same metrics."""
    config = RunConfig().model_copy(deep=True)
    config.export.models_dir = tmp_path
    config.export.name = "mmoe-synthetic"
    retrained = run(config, show_progress=False)
    assert retrained.card.metrics == card.metrics
    # Every epoch's record, in the keys the bundled card has (later cards add each epoch's
    # validation and test metrics), is the same to the last digit.
    history = retrained.card.training["history"]
    assert len(history) == len(card.training["history"])
    for record, recorded in zip(history, card.training["history"], strict=True):
        assert {key: record[key] for key in recorded} == recorded
        assert set(record) - set(recorded) <= {"validation", "test"}
    bundled_weights = initializers(BUNDLED / "model.onnx")
    retrained_weights = initializers(retrained.path / "model.onnx")
    assert sorted(retrained_weights) == sorted(bundled_weights)
    for name, value in bundled_weights.items():
        assert np.array_equal(retrained_weights[name], value), name
