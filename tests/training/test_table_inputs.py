"""The table's input layer: imputation, standardisation, bins and codes, checked value by value."""

import math

import numpy as np
import pyarrow as pa
import torch

from service.contract import MISSING_CODE, OOV_CODE
from training.config import ModelConfig
from training.models import build_model
from training.tabular.inputs import TabularInputs
from training.tabular.schema import (
    CategoricalFeature,
    FeatureSchema,
    NumericFeature,
    encode_categorical,
)

SCHEMA = FeatureSchema(
    numeric=[
        NumericFeature("age", mean=40.0, std=10.0, count=100, missing=0, boundaries=None),
        NumericFeature("gain", mean=5.0, std=2.0, count=90, missing=10, boundaries=[1.0, 10.0]),
    ],
    categorical=[
        CategoricalFeature("colour", ["blue", "red"], missing=3, out_of_vocabulary=1),
        CategoricalFeature("size", ["L", "M", "S"], missing=0, out_of_vocabulary=0),
    ],
    buckets=4,
    min_category_count=2,
)
E = 3


def layer() -> TabularInputs:
    torch.manual_seed(0)
    return TabularInputs(SCHEMA, E)


def test_numbers_are_standardised_and_missing_ones_imputed_with_the_training_mean():
    inputs = layer()
    features = torch.tensor([[50.0, 9.0], [math.nan, math.nan]])
    codes = torch.zeros(2, 2, dtype=torch.int64)
    encoded = inputs(features, codes)
    assert encoded.shape == (2, 2 + 3 * E)  # 2 numbers, then 2 categories + 1 bucketised column
    torch.testing.assert_close(encoded[:, :2], torch.tensor([[1.0, 2.0], [0.0, 0.0]]))


def test_each_category_and_bin_has_its_own_embedding_row():
    inputs = layer()
    table = inputs.embedding.weight
    colour_rows, size_rows = 2 + 2, 2 + 3  # OOV, missing, then the vocabulary
    gain_start = colour_rows + size_rows
    features = torch.tensor([[40.0, 0.5], [40.0, 1.0], [40.0, 10.0], [40.0, math.nan]])
    codes = torch.tensor([[3, 4], [OOV_CODE, 2], [MISSING_CODE, 3], [99, -1]])
    encoded = inputs(features, codes)
    expected_colour = [3, OOV_CODE, MISSING_CODE, OOV_CODE]  # 99: out of range -> OOV
    expected_size = [4, 2, 3, OOV_CODE]
    expected_gain_bin = [0, 1, 2, 3]  # below 1; at 1; at 10; missing: the bin after the last
    for row in range(4):
        torch.testing.assert_close(encoded[row, 2 : 2 + E], table[expected_colour[row]])
        torch.testing.assert_close(
            encoded[row, 2 + E : 2 + 2 * E], table[colour_rows + expected_size[row]]
        )
        torch.testing.assert_close(
            encoded[row, 2 + 2 * E :], table[gain_start + expected_gain_bin[row]]
        )


def test_strings_become_the_vocabularys_codes_and_unseen_values_oov():
    columns = {
        "colour": pa.array(["red", "green", None, "blue"]),
        "size": pa.array(["S", "L", "M", "XL"]),
    }
    np.testing.assert_array_equal(
        encode_categorical(columns, SCHEMA),
        [[3, 4], [OOV_CODE, 2], [MISSING_CODE, 3], [2, OOV_CODE]],
    )


def test_a_model_over_the_table_trains_its_embeddings():
    model = build_model(ModelConfig(embedding_dim=E), layer(), num_tasks=2)
    outputs, gates = model(torch.tensor([[30.0, 2.0]]), torch.tensor([[2, 3]]))
    assert outputs.shape == (1, 2) and gates.shape == (1, 2, 8)
    outputs.sum().backward()
    gradient = model.inputs.embedding.weight.grad
    used_rows = {2, 4 + 3, 9 + 1}  # colour 'blue', size 'M', gain bin 1
    assert {int(row) for row in torch.nonzero(gradient.abs().sum(1))[:, 0]} == used_rows
