"""A table's raw features -> one dense vector per row, inside the exported graph. Pure PyTorch.

    numeric x (B, d), NaN = missing  ->  (fill(x) - mean) / std                   (B, d)
    bucketised numeric columns       ->  bin = #{boundaries <= x}, NaN -> own bin  (B, d_b)
    categorical codes (B, C)         ->  codes outside a column's range -> OOV     (B, C)
    bins and codes                   ->  one embedding table, a block per column   (B, (C + d_b)·e)

The output concatenates the standardised numbers and the embeddings: (B, d + (C + d_b)·e).
Statistics, boundaries and vocabulary sizes are buffers: they travel with the graph.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from service.contract import FIRST_CATEGORY_CODE, INPUT_CATEGORICAL, INPUT_FEATURES, OOV_CODE
from training.models import InputLayer
from training.tabular.schema import FeatureSchema


class TabularInputs(InputLayer):
    mean: Tensor
    std: Tensor
    bucket_columns: Tensor
    boundaries: Tensor
    category_sizes: Tensor
    offsets: Tensor

    def __init__(self, schema: FeatureSchema, embedding_dim: int) -> None:
        super().__init__()
        numeric = schema.numeric
        self.num_numeric = len(numeric)
        self.num_categorical = len(schema.categorical)
        self.register_buffer("mean", torch.tensor([f.mean for f in numeric], dtype=torch.float32))
        self.register_buffer("std", torch.tensor([f.std for f in numeric], dtype=torch.float32))

        bucketised = [i for i, f in enumerate(numeric) if f.boundaries is not None]
        widest = max([len(numeric[i].boundaries or []) for i in bucketised] + [1])
        boundaries = np.full((len(bucketised), widest), np.inf, dtype=np.float32)
        for row, i in enumerate(bucketised):
            edges = numeric[i].boundaries or []
            boundaries[row, : len(edges)] = edges
        self.register_buffer("bucket_columns", torch.tensor(bucketised, dtype=torch.int64))
        self.register_buffer("boundaries", torch.from_numpy(boundaries))
        self.missing_bin = widest + 1  # bins 0..widest hold values, this one missing ones

        sizes = [FIRST_CATEGORY_CODE + len(f.vocabulary) for f in schema.categorical]
        self.register_buffer("category_sizes", torch.tensor(sizes, dtype=torch.int64))
        sizes += [widest + 2] * len(bucketised)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]) if sizes else np.zeros(0)
        self.register_buffer("offsets", torch.tensor(starts, dtype=torch.int64))
        self.num_embedded = len(sizes)
        self.embedding = nn.Embedding(max(sum(sizes), 1), embedding_dim)
        self.output_dim = self.num_numeric + self.num_embedded * embedding_dim

    @property
    def input_widths(self) -> list[tuple[str, int]]:
        widths = [(INPUT_FEATURES, self.num_numeric)]
        if self.num_categorical:
            widths.append((INPUT_CATEGORICAL, self.num_categorical))
        return widths

    def forward(self, features: Tensor, categorical: Tensor | None = None) -> Tensor:
        missing = torch.isnan(features)
        filled = torch.where(missing, self.mean, features)
        parts = [(filled - self.mean) / self.std]  # (B, d)
        codes = []
        if categorical is not None and self.num_categorical:
            in_range = (categorical >= 0) & (categorical < self.category_sizes)
            codes.append(torch.where(in_range, categorical, OOV_CODE))  # (B, C)
        if self.bucket_columns.numel():
            values = features[:, self.bucket_columns]  # (B, d_b)
            bins = (values.unsqueeze(-1) >= self.boundaries).sum(dim=-1)  # (B, d_b)
            codes.append(torch.where(torch.isnan(values), self.missing_bin, bins))
        if codes:
            rows = torch.cat(codes, dim=1) + self.offsets  # (B, C + d_b)
            parts.append(self.embedding(rows).flatten(1))  # (B, (C + d_b)·e)
        return torch.cat(parts, dim=1)
