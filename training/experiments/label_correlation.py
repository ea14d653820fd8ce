"""How correlated the two labels are for a given cosine p of w_1 and w_2, and how nonlinear.

The sine terms make the labels less correlated than their weight vectors: the Pearson correlation
of y_1 and y_2 falls below p, the more so the more the sines dominate (small c, large m, large α).
Each (c, m, p) is measured over several draws of the data and of α, β (sinusoid_seed = the draw's
seed), beside the share of label variance a linear fit cannot explain. Pure numpy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from training import synthetic
from training.config import SyntheticDataConfig


def label_correlation(config: SyntheticDataConfig) -> float:
    """Pearson correlation of the two tasks' training labels of one generated data set."""
    labels = synthetic.generate(config).train.labels  # (n, 2)
    return float(np.corrcoef(labels[:, 0], labels[:, 1])[0, 1])


def label_correlation_table(
    correlations: Sequence[float],
    sinusoid_counts: Sequence[int],
    scales: Sequence[float],
    rows: int,
    draws: int,
) -> list[dict]:
    """One record per (c, m, p): mean and std over `draws` draws of the label correlation, and the
    median share of label variance a linear fit leaves unexplained."""
    records = []
    for scale in scales:
        for num_sinusoids in sinusoid_counts:
            for correlation in correlations:
                configs = [
                    SyntheticDataConfig(
                        correlation=correlation,
                        scale=scale,
                        num_sinusoids=num_sinusoids,
                        sinusoid_seed=seed,
                        train_size=rows,
                        validation_size=1,
                        test_size=1,
                        seed=seed,
                    )
                    for seed in range(draws)
                ]
                values = [label_correlation(config) for config in configs]
                shares = [
                    synthetic.linear_unexplained_share(
                        *synthetic.sinusoid_parameters(config), scale, config.noise_std
                    )
                    for config in configs
                ]
                records.append(
                    {
                        "c": scale,
                        "m": num_sinusoids,
                        "p": correlation,
                        "label_correlation": round(float(np.mean(values)), 4),
                        "label_correlation_std": round(float(np.std(values)), 4),
                        "linear_unexplained_share": round(float(np.median(shares)), 4),
                    }
                )
    return records
