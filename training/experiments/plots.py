"""The figures, drawn with matplotlib's Agg backend to PNG files; one function per figure."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

from training.experiments.protocol import MODEL_LABELS, MODELS, Protocol
from training.experiments.summary import run_loss, select

DPI = 110
COLORS = {"shared_bottom": "tab:gray", "omoe": "tab:blue", "mmoe": "tab:red"}


def _save(figure: plt.Figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return path


def _losses(records: Sequence[dict], seeds: int, **where: float | str) -> np.ndarray:
    return np.array([run_loss(r) for r in select(records, seeds, **where)])


def _ecdf(axis: plt.Axes, values: np.ndarray, model: str) -> None:
    ordered = np.sort(values)
    fraction = np.arange(1, ordered.size + 1) / ordered.size
    axis.step(ordered, fraction, where="post", color=COLORS[model], label=MODEL_LABELS[model])


def performance_vs_correlation(records: Sequence[dict], protocol: Protocol, path: Path) -> Path:
    """Left: box plots at the main p values. Right: median and quartiles over the fine p sweep."""
    default = {"lr": protocol.learning_rate, "c": protocol.scale, "m": protocol.num_sinusoids}
    figure, (boxes, sweep) = plt.subplots(1, 2, figsize=(11, 4.2))
    width = 0.8 / len(MODELS)
    for index, model in enumerate(MODELS):
        data = [
            _losses(records, protocol.repeats, model=model, p=p, **default)
            for p in protocol.correlations
        ]
        positions = np.arange(len(protocol.correlations)) + (index - 1) * width
        parts = boxes.boxplot(
            data,
            positions=positions,
            widths=width * 0.9,
            whis=(5, 95),
            patch_artist=True,
            medianprops={"color": "black"},
        )
        for box in parts["boxes"]:
            box.set_facecolor(COLORS[model])
            box.set_alpha(0.6)
        for flier in parts["fliers"]:
            flier.set(marker=".", markersize=3, markeredgecolor=COLORS[model])
        boxes.plot([], [], color=COLORS[model], linewidth=6, alpha=0.6, label=MODEL_LABELS[model])

        medians, lower, upper = [], [], []
        for p in protocol.sweep_correlations:
            values = _losses(records, protocol.sweep_repeats, model=model, p=p, **default)
            medians.append(np.median(values))
            lower.append(np.quantile(values, 0.25))
            upper.append(np.quantile(values, 0.75))
        sweep.plot(
            protocol.sweep_correlations,
            medians,
            "o-",
            color=COLORS[model],
            label=MODEL_LABELS[model],
        )
        sweep.fill_between(
            protocol.sweep_correlations, lower, upper, color=COLORS[model], alpha=0.2
        )

    boxes.set_xticks(range(len(protocol.correlations)), [f"p = {p}" for p in protocol.correlations])
    boxes.set_yscale("log")
    boxes.set_ylabel("test MSE (mean of the two tasks)")
    boxes.set_title(f"{protocol.repeats} runs per box (whiskers: 5th-95th percentile)")
    boxes.legend()
    sweep.set_xlabel("task correlation p (cosine of w_1, w_2)")
    sweep.set_ylabel("test MSE: median, band = quartiles")
    sweep.set_title(f"fine sweep, {protocol.sweep_repeats} runs per point")
    sweep.invert_xaxis()
    sweep.legend()
    figure.suptitle(
        f"Performance vs task correlation (c = {protocol.scale}, m = {protocol.num_sinusoids})"
    )
    return _save(figure, path)


def trainability(records: Sequence[dict], protocol: Protocol, path: Path) -> Path:
    """ECDFs of final test loss over repeated runs, one panel per p (the paper's Figure 6)."""
    default = {"lr": protocol.learning_rate, "c": protocol.scale, "m": protocol.num_sinusoids}
    figure, axes = plt.subplots(
        1, len(protocol.correlations), figsize=(4 * len(protocol.correlations), 3.6), sharey=True
    )
    for axis, p in zip(np.atleast_1d(axes), protocol.correlations, strict=True):
        for model in MODELS:
            _ecdf(axis, _losses(records, protocol.repeats, model=model, p=p, **default), model)
        axis.set_xscale("log")
        axis.set_title(f"p = {p}")
        axis.set_xlabel("final test MSE")
        axis.grid(alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel(f"fraction of {protocol.repeats} runs")
    np.atleast_1d(axes)[0].legend()
    figure.suptitle("Trainability: distribution of final test loss over runs")
    return _save(figure, path)


def learning_rates(records: Sequence[dict], protocol: Protocol, path: Path) -> Path:
    """ECDFs of final test loss for each Adam learning rate (rows: p, columns: lr)."""
    rows, cols = len(protocol.lr_correlations), len(protocol.learning_rates)
    figure, axes = plt.subplots(
        rows, cols, figsize=(4 * cols, 3.3 * rows), sharex=True, squeeze=False
    )
    for i, p in enumerate(protocol.lr_correlations):
        for j, lr in enumerate(protocol.learning_rates):
            axis = axes[i, j]
            for model in MODELS:
                values = _losses(
                    records,
                    protocol.lr_repeats,
                    model=model,
                    p=p,
                    lr=lr,
                    c=protocol.scale,
                    m=protocol.num_sinusoids,
                )
                _ecdf(axis, values, model)
            axis.set_xscale("log")
            axis.set_title(f"p = {p}, lr = {lr:g}")
            axis.grid(alpha=0.3)
        axes[i, 0].set_ylabel(f"fraction of {protocol.lr_repeats} runs")
    for axis in axes[-1]:
        axis.set_xlabel("final test MSE")
    axes[0, 0].legend()
    figure.suptitle("Trainability over Adam learning rates")
    return _save(figure, path)


def label_correlation(table: Sequence[dict], path: Path) -> Path:
    """Pearson correlation of the labels against the cosine p, one line per m, a panel per c."""
    scales = sorted({r["c"] for r in table})
    figure, axes = plt.subplots(
        1, len(scales), figsize=(4.5 * len(scales), 4), sharey=True, squeeze=False
    )
    for axis, scale in zip(axes[0], scales, strict=True):
        for m in sorted({r["m"] for r in table}):
            rows = [r for r in table if r["c"] == scale and r["m"] == m]
            axis.errorbar(
                [r["p"] for r in rows],
                [r["label_correlation"] for r in rows],
                yerr=[r["label_correlation_std"] for r in rows],
                marker="o",
                markersize=3,
                capsize=2,
                label=f"m = {m}",
            )
        axis.plot([0, 1], [0, 1], "k:", linewidth=1, label="y = p")
        axis.set_title(f"c = {scale}")
        axis.set_xlabel("cosine p of the weight vectors")
        axis.grid(alpha=0.3)
    axes[0, 0].set_ylabel("Pearson correlation of y_1, y_2")
    axes[0, 0].legend()
    figure.suptitle("Label correlation vs weight-vector cosine")
    return _save(figure, path)


def sensitivity(records: Sequence[dict], protocol: Protocol, path: Path) -> Path:
    """Median test loss (quartile bars) per model at each p, one panel per (c, m)."""
    settings = [(protocol.scale, protocol.num_sinusoids), *protocol.sensitivity]
    figure, axes = plt.subplots(1, len(settings), figsize=(3.6 * len(settings), 3.6), squeeze=False)
    offsets = np.linspace(-0.15, 0.15, len(MODELS))
    for axis, (scale, m) in zip(axes[0], settings, strict=True):
        x = np.arange(len(protocol.sensitivity_correlations))
        for offset, model in zip(offsets, MODELS, strict=True):
            stats = []
            for p in protocol.sensitivity_correlations:
                values = _losses(
                    records,
                    protocol.sensitivity_repeats,
                    model=model,
                    p=p,
                    lr=protocol.learning_rate,
                    c=scale,
                    m=m,
                )
                stats.append(np.quantile(values, (0.25, 0.5, 0.75)))
            lower, median, upper = np.array(stats).T
            axis.errorbar(
                x + offset,
                median,
                yerr=[median - lower, upper - median],
                fmt="o",
                color=COLORS[model],
                capsize=3,
                label=MODEL_LABELS[model],
            )
        axis.set_xticks(x, [f"p = {p}" for p in protocol.sensitivity_correlations])
        axis.set_title(f"c = {scale}, m = {m}")
        axis.grid(alpha=0.3)
    axes[0, 0].set_ylabel("test MSE: median, bars = quartiles")
    axes[0, 0].legend()
    figure.suptitle(
        f"How the comparison changes with c and m ({protocol.sensitivity_repeats} runs per point)"
    )
    return _save(figure, path)
