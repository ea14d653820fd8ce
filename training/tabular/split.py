"""Which split a row belongs to, decided by the row alone, so a file read in blocks splits the same.

Row i of a file set gets u_i = hash(seed, i) / 2^64, uniform on [0, 1) (splitmix64, a bijection of
the 64-bit integers). Without test files, rows with u < test_fraction are test rows; of the rest,
a validation_fraction share are validation rows. The same hash, salted differently, ranks the
training rows for the fixed-size sample the quantile bins come from.
"""

from __future__ import annotations

import numpy as np

TRAIN, VALIDATION, TEST = 0, 1, 2
SPLIT_NAMES = {TRAIN: "train", VALIDATION: "validation", TEST: "test"}

_GOLDEN = 0x9E3779B97F4A7C15
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
_SAMPLE_SALT = 0x5A17


def row_hashes(start: int, count: int, seed: int) -> np.ndarray:
    """splitmix64 of rows start..start+count-1 under `seed`: (count,) uint64."""
    offset = np.uint64((seed * _GOLDEN + _GOLDEN) % 2**64)  # numpy arrays wrap; Python ints do not
    state = np.arange(start, start + count, dtype=np.uint64) + offset
    state = (state ^ (state >> np.uint64(30))) * _MIX_1
    state = (state ^ (state >> np.uint64(27))) * _MIX_2
    return state ^ (state >> np.uint64(31))


def uniform(hashes: np.ndarray) -> np.ndarray:
    """uint64 hashes -> float64 in [0, 1), from their top 53 bits."""
    return (hashes >> np.uint64(11)).astype(np.float64) * 2.0**-53


def assign_splits(
    start: int,
    count: int,
    seed: int,
    validation_fraction: float,
    test_fraction: float | None,
) -> np.ndarray:
    """(count,) int8 of TRAIN, VALIDATION, TEST; test_fraction None: the rows are not test rows."""
    u = uniform(row_hashes(start, count, seed))
    splits = np.full(count, TRAIN, dtype=np.int8)
    if test_fraction is None:
        splits[u < validation_fraction] = VALIDATION
        return splits
    splits[u < test_fraction] = TEST
    validation_end = test_fraction + validation_fraction * (1.0 - test_fraction)
    splits[(u >= test_fraction) & (u < validation_end)] = VALIDATION
    return splits


def sample_priorities(start: int, count: int, seed: int) -> np.ndarray:
    """(count,) uint64: the training rows with the smallest values form the quantile sample."""
    return row_hashes(start, count, seed ^ _SAMPLE_SALT)
