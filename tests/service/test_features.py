"""A table model's named raw features: strings to the card's codes, nulls to missing, and every
mistake a 422 that names the instance and the feature."""

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import pytest
from fastapi.testclient import TestClient

from service.app import create_app, load_repository
from service.contract import MISSING_CODE, OOV_CODE
from service.features import FeatureEncoder
from service.model_card import ModelCard
from tests.service.conftest import REQUEST_ID, settings_for
from tests.support import bundled_version_dir

ADULT = bundled_version_dir("mmoe-adult", 1)
ROW: dict[str, Any] = {
    "age": 39, "workclass": "State-gov", "fnlwgt": 77516, "education": "Bachelors",
    "education-num": 13, "occupation": "Adm-clerical", "relationship": "Not-in-family",
    "race": "White", "sex": "Male", "capital-gain": 2174, "capital-loss": 0,
    "hours-per-week": 40, "native-country": "United-States",
}  # fmt: skip
NUMERIC = ["age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
CATEGORICAL = ["workclass", "education", "occupation", "relationship", "race", "sex",
               "native-country"]  # fmt: skip


@pytest.fixture(scope="module")
def card() -> ModelCard:
    return ModelCard.model_validate_json((ADULT / "model.json").read_text())


def code(card: ModelCard, feature: str, value: str) -> int:
    """The code the card gives `value`: its place in the vocabulary, after the two reserved."""
    assert card.categorical is not None
    [spec] = [f for f in card.categorical.features if f.name == feature]
    return spec.vocabulary.index(value) + 2 if value in spec.vocabulary else OOV_CODE


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory):
    from tests.support import copy_bundled

    root = copy_bundled(tmp_path_factory.mktemp("models"))
    settings = settings_for(root, max_instances=16)
    app = create_app(settings, load_repository(settings))
    with TestClient(app, headers={"X-Request-ID": REQUEST_ID}) as test_client:
        yield test_client


def test_the_card_states_the_adult_models_features(card):
    assert card.input.feature_names == NUMERIC and card.input.accepts_missing
    assert card.categorical is not None and card.categorical.feature_names == CATEGORICAL
    assert (card.categorical.oov_code, card.categorical.missing_code) == (0, 1)


def test_strings_become_codes_and_unseen_or_missing_values_their_own(card):
    encoder = FeatureEncoder(card)
    unseen = ROW | {"workclass": "Space-force", "native-country": None, "age": None}
    feeds = encoder.encode([ROW, unseen])
    np.testing.assert_array_equal(
        feeds["features"],
        np.array([[39, 77516, 13, 2174, 0, 40], [np.nan, 77516, 13, 2174, 0, 40]], np.float32),
    )
    expected = [[code(card, name, ROW[name]) for name in CATEGORICAL] for _ in range(2)]
    expected[1][0], expected[1][6] = OOV_CODE, MISSING_CODE
    np.testing.assert_array_equal(feeds["categorical"], expected)
    assert feeds["categorical"].dtype == np.int64 and expected[0][0] >= 2


def test_named_raw_features_answer_what_onnxruntime_answers_on_the_encoded_row(card, client):
    unseen = ROW | {"occupation": "Astronaut", "capital-gain": None}
    response = client.post("/predict", json={"instances": [ROW, unseen], "model": "mmoe-adult"})
    assert response.status_code == 200, response.text
    body = response.json()
    session = onnxruntime.InferenceSession(
        str(ADULT / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    features = np.array([[ROW[n] for n in NUMERIC], [ROW[n] for n in NUMERIC]], np.float32)
    features[1, NUMERIC.index("capital-gain")] = np.nan
    codes = np.array([[code(card, n, ROW[n]) for n in CATEGORICAL]] * 2, np.int64)
    codes[1, CATEGORICAL.index("occupation")] = OOV_CODE
    predictions, gates = session.run(None, {"features": features, "categorical": codes})
    assert body["model"] == {"name": "mmoe-adult", "version": 1, "architecture": "mmoe"}
    for k, task in enumerate(["income", "never_married"]):
        answered = np.array(body["tasks"][task]["predictions"], dtype=np.float32)
        np.testing.assert_array_equal(answered, predictions[:, k])  # shortest float32 text
        weights = np.array(body["tasks"][task]["gate_weights"], dtype=np.float32)
        np.testing.assert_array_equal(weights, gates[:, k])
    assert body["tasks"]["income"]["predictions"][1] != body["tasks"]["income"]["predictions"][0]


@pytest.mark.parametrize(
    ("instance", "status", "code_", "message", "details"),
    [
        (
            {k: v for k, v in ROW.items() if k != "sex"},
            422, "missing_features",
            "instance 1 lacks 1 of the model's 13 features: ['sex']; send null for a value that "
            "is missing",
            {"instance": 1, "missing": ["sex"]},
        ),
        (
            ROW | {"salary": 1},
            422, "unknown_features",
            "instance 1 has unknown features ['salary']; the model's features are ['age', "
            "'fnlwgt', ..., 'native-country']",
            {"instance": 1, "unknown": ["salary"], "unknown_count": 1},
        ),
        (
            ROW | {"age": "39"},
            422, "non_numeric_feature",
            'instance 1, feature \'age\' is a string ("39"); it is a numeric feature: send a '
            "number, or null when it is missing",
            {"instance": 1, "feature": 0, "feature_name": "age"},
        ),
        (
            ROW | {"workclass": 4.5},
            422, "invalid_category",
            "instance 1, feature 'workclass' is a number (4.5); it is a categorical feature: "
            "send a string (a value not seen in training is out of vocabulary, not an error), "
            "or null when it is missing",
            {"instance": 1, "feature": 6, "feature_name": "workclass"},
        ),
        (
            [39, 77516, 13, 2174, 0, 40],
            422, "invalid_instance",
            "instance 1 is an array; each instance must be an object of the model's named "
            "features ['age', 'fnlwgt', ..., 'native-country']",
            {"instance": 1},
        ),
    ],
)  # fmt: skip
def test_a_bad_instance_is_a_422_naming_it(client, instance, status, code_, message, details):
    response = client.post("/predict", json={"instances": [ROW, instance], "model": "mmoe-adult"})
    assert response.status_code == status
    assert response.json() == {
        "error": {"code": code_, "message": message, "details": details, "request_id": REQUEST_ID}
    }


def test_a_number_names_a_category_by_its_digits(card):
    encoder = FeatureEncoder(card)
    feeds = encoder.encode([ROW | {"workclass": 7}])
    assert feeds["categorical"][0, 0] == OOV_CODE  # "7" is no workclass, and no error either


def test_the_synthetic_model_keeps_positional_arrays(client):
    response = client.post("/predict", json={"instances": [[0.5] * 100]})
    assert response.status_code == 200
    assert response.json()["model"]["name"] == "mmoe-synthetic"
    refused = client.post("/predict", json={"instances": [[None] + [0.5] * 99]})
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "non_numeric_feature"


def test_a_numeric_table_model_takes_arrays_with_nulls(card, tmp_path: Path):
    numeric_only = card.model_copy(update={"categorical": None})
    encoder = FeatureEncoder(numeric_only)
    feeds = encoder.encode([[1, None, 3, 4, 5, 6]])
    assert list(feeds) == ["features"]
    np.testing.assert_array_equal(feeds["features"], [[1, np.nan, 3, 4, 5, 6]])
