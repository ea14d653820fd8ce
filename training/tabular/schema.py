"""What the graph needs to know about the features, learned from the training rows in one pass.

`SchemaFit` takes blocks one at a time and holds only running sums, category counts and a fixed-
size row sample, so a file of any length fits in memory. Numeric columns: mean and (unbiased)
standard deviation, merged block by block (Chan et al.), the mean doubling as the value a missing
entry is imputed with. Categorical columns: the training values seen at least `min_category_count`
times, sorted, as the vocabulary. Quantile bins: from the `quantile_sample_rows` training rows with
the smallest sample priority (all rows when there are fewer), so reading in blocks or at once picks
the same rows. A value holding more than 1/buckets of the rows (capital-gain's 0) gets a bin of
its own and the quantiles are taken over the other values: a zero-inflated column still gets its
bins where the values vary.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from service.contract import FIRST_CATEGORY_CODE, MISSING_CODE, OOV_CODE


@dataclass(frozen=True)
class NumericFeature:
    name: str
    mean: float  # also the imputed value of a missing entry
    std: float
    count: int  # training rows with a value
    missing: int  # training rows without one
    boundaries: list[float] | None  # bucket boundaries; None: not bucketised


@dataclass(frozen=True)
class CategoricalFeature:
    name: str
    vocabulary: list[str]  # vocabulary[i] has code FIRST_CATEGORY_CODE + i
    missing: int  # training rows without a value
    out_of_vocabulary: int  # training rows whose value is too rare to keep


@dataclass(frozen=True)
class FeatureSchema:
    numeric: list[NumericFeature]
    categorical: list[CategoricalFeature]
    buckets: int
    min_category_count: int

    @property
    def numeric_names(self) -> list[str]:
        return [feature.name for feature in self.numeric]

    @property
    def categorical_names(self) -> list[str]:
        return [feature.name for feature in self.categorical]

    def describe(self) -> dict:
        """The statistics as the card records them (the vocabularies have their own card field)."""
        return {
            "numeric": [
                {
                    "name": f.name,
                    "mean": f.mean,
                    "std": f.std,
                    "missing": f.missing,
                    "bucket_boundaries": f.boundaries,
                }
                for f in self.numeric
            ],
            "categorical": [
                {
                    "name": f.name,
                    "vocabulary_size": len(f.vocabulary),
                    "missing": f.missing,
                    "out_of_vocabulary": f.out_of_vocabulary,
                }
                for f in self.categorical
            ],
            "buckets": self.buckets,
            "min_category_count": self.min_category_count,
            "codes": {"out_of_vocabulary": OOV_CODE, "missing": MISSING_CODE},
        }


@dataclass
class _Moments:
    count: int = 0
    mean: float = 0.0
    m2: float = 0.0  # sum of squared deviations from the mean

    def update(self, values: np.ndarray) -> None:
        """Merge the non-NaN `values` (Chan, Golub and LeVeque's pairwise update)."""
        values = values[~np.isnan(values)]
        if values.size == 0:
            return
        batch_mean = float(values.mean())
        batch_m2 = float(np.square(values - batch_mean).sum())
        total = self.count + values.size
        delta = batch_mean - self.mean
        self.mean += delta * values.size / total
        self.m2 += batch_m2 + delta * delta * self.count * values.size / total
        self.count = total

    @property
    def std(self) -> float:
        variance = self.m2 / (self.count - 1) if self.count > 1 else 0.0
        return float(np.sqrt(variance)) if variance > 1e-24 else 1.0  # constant: leave unscaled


@dataclass
class SchemaFit:
    """Accumulates the training rows' statistics; `finish` turns them into a FeatureSchema."""

    numeric: list[str]
    categorical: list[str]
    bucketised: list[str]
    buckets: int
    min_category_count: int
    sample_rows: int
    rows: int = 0
    _moments: dict[str, _Moments] = field(default_factory=dict)
    _counts: dict[str, Counter[str]] = field(default_factory=dict)
    _missing: Counter[str] = field(default_factory=Counter)
    _sample_priority: np.ndarray = field(default_factory=lambda: np.empty(0, np.uint64))
    _sample_values: np.ndarray | None = None  # (rows in sample, bucketised columns)

    def __post_init__(self) -> None:
        self._moments = {name: _Moments() for name in self.numeric}
        self._counts = {name: Counter() for name in self.categorical}
        self._sample_values = np.empty((0, len(self.bucketised)))

    def update(
        self, columns: dict[str, pa.Array], rows: np.ndarray, priorities: np.ndarray
    ) -> None:
        """Add the training rows `rows` (indices into the block's columns) of one block."""
        if rows.size == 0:
            return
        self.rows += rows.size
        index = pa.array(rows)
        numbers: dict[str, np.ndarray] = {}
        for name in self.numeric:
            values = _floats(columns[name].take(index))
            numbers[name] = values
            self._moments[name].update(values)
            self._missing[name] += int(np.isnan(values).sum())
        for name in self.categorical:
            values = columns[name].take(index)
            self._missing[name] += values.null_count
            for entry in pc.value_counts(values.drop_null()).to_pylist():
                self._counts[name][entry["values"]] += entry["counts"]
        if self.bucketised and self.buckets > 0:
            block_values = np.column_stack([numbers[name] for name in self.bucketised])
            self._keep_sample(priorities[rows], block_values)

    def _keep_sample(self, priorities: np.ndarray, values: np.ndarray) -> None:
        assert self._sample_values is not None
        merged_priority = np.concatenate([self._sample_priority, priorities])
        merged_values = np.concatenate([self._sample_values, values])
        if merged_priority.size > self.sample_rows:
            keep = np.argpartition(merged_priority, self.sample_rows - 1)[: self.sample_rows]
            merged_priority, merged_values = merged_priority[keep], merged_values[keep]
        self._sample_priority, self._sample_values = merged_priority, merged_values

    def finish(self) -> FeatureSchema:
        numeric = [
            NumericFeature(
                name=name,
                mean=self._moments[name].mean,
                std=self._moments[name].std,
                count=self._moments[name].count,
                missing=self._missing[name],
                boundaries=self._boundaries(name) if name in self.bucketised else None,
            )
            for name in self.numeric
        ]
        categorical = []
        for name in self.categorical:
            counts = self._counts[name]
            kept = sorted(
                value for value, count in counts.items() if count >= self.min_category_count
            )
            rare = sum(count for count in counts.values() if count < self.min_category_count)
            categorical.append(CategoricalFeature(name, kept, self._missing[name], rare))
        return FeatureSchema(numeric, categorical, self.buckets, self.min_category_count)

    def _boundaries(self, name: str) -> list[float]:
        assert self._sample_values is not None
        if self.buckets == 0:
            return []
        column = self._sample_values[:, self.bucketised.index(name)]
        return quantile_boundaries(column[~np.isnan(column)], self.buckets)


def quantile_boundaries(values: np.ndarray, buckets: int) -> list[float]:
    """Sorted float32 boundaries b: a value x falls in bin #{b <= x} (see the module docstring)."""
    if values.size == 0 or buckets < 2:
        return []
    distinct, counts = np.unique(values, return_counts=True)
    atoms = distinct[counts > values.size / buckets]
    rest = values[~np.isin(values, atoms)]
    cuts = np.linspace(0.0, 1.0, buckets + 1)[1:-1]
    quantiles = np.quantile(rest, cuts) if rest.size else np.empty(0)
    atoms32 = atoms.astype(np.float32)
    above_atoms = np.nextafter(atoms32, np.float32(np.inf))
    edges = np.concatenate([quantiles.astype(np.float32), atoms32, above_atoms])
    edges = np.unique(edges)
    lowest, highest = values.min(), values.max()  # no bin without training rows
    return [float(edge) for edge in edges if lowest < edge <= highest]


def _floats(values: pa.Array) -> np.ndarray:
    """float64 with NaN for null."""
    return pc.fill_null(values, np.nan).to_numpy(zero_copy_only=False)


def encode_numeric(columns: dict[str, pa.Array], schema: FeatureSchema) -> np.ndarray:
    """(rows, d) float32, NaN where a value is missing: the graph imputes it."""
    return np.column_stack([_floats(columns[name]) for name in schema.numeric_names]).astype(
        np.float32
    )


def encode_categorical(columns: dict[str, pa.Array], schema: FeatureSchema) -> np.ndarray:
    """(rows, C) int64 codes: vocabulary codes, OOV_CODE for other values, MISSING_CODE for none."""
    encoded = []
    for feature in schema.categorical:
        values = columns[feature.name]
        position = pc.index_in(values, value_set=pa.array(feature.vocabulary, pa.string()))
        codes = pc.fill_null(pc.add(position.cast(pa.int64()), FIRST_CATEGORY_CODE), OOV_CODE)
        codes = pc.if_else(pc.is_null(values), MISSING_CODE, codes)
        encoded.append(codes.to_numpy(zero_copy_only=False))
    if not encoded:
        return np.empty((len(next(iter(columns.values()))), 0), np.int64)
    return np.column_stack(encoded).astype(np.int64)
