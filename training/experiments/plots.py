"""The figures, drawn with matplotlib's Agg backend to PNG files; one function per figure.

Every loss plot draws the noise floor (σ², the MSE of a perfect model), panels that are compared
share their scales, and log axes label only their major ticks.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from training.experiments.protocol import MODEL_LABELS, MODELS, Protocol
from training.experiments.summary import run_loss, select

DPI = 110
COLORS = {"shared_bottom": "tab:gray", "omoe": "tab:blue", "mmoe": "tab:red"}
FLOOR_STYLE = {"color": "black", "linestyle": ":", "linewidth": 1.2}

Curves = dict[tuple[str, str, float, str], tuple[np.ndarray, np.ndarray]]


def _save(figure: Figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return path


def _noise_floor(protocol: Protocol) -> float:
    return protocol.noise_std**2


def _log_axis(axis: Axes, which: str = "y") -> None:
    """Log scale, labelled on as many ticks per decade as the span leaves room for, as plain
    numbers; minor ticks unlabelled (their labels overlap). Call once the data is plotted."""
    target: Axis
    if which == "y":
        axis.set_yscale("log")
        target, (low, high) = axis.yaxis, axis.get_ylim()
    else:
        axis.set_xscale("log")
        target, (low, high) = axis.xaxis, axis.get_xlim()
    decades = np.log10(high / low)
    subs = (1.0,) if decades > 1.6 else (1.0, 2.0, 5.0) if decades > 0.6 else tuple(range(1, 10))
    target.set_major_locator(LogLocator(base=10, subs=subs))
    target.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    target.set_minor_formatter(NullFormatter())


def _study_losses(records: Sequence[dict], setting: str, model: str, p: float) -> np.ndarray:
    return np.array(
        [run_loss(r) for r in select(records, setting=setting, study="study", model=model, p=p)]
    )


def curve_arrays(curves: Sequence[dict]) -> Curves:
    """(setting, model, p, split) -> (steps (epochs,), losses (runs, epochs)) from curves rows."""
    grouped: dict[tuple, dict[int, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for row in curves:
        key = (row["setting"], row["model"], row["p"], row["split"])
        grouped[key][row["seed"]][row["step"]] = row["loss"]
    arrays = {}
    for key, runs in grouped.items():
        steps = np.array(sorted({step for run in runs.values() for step in run}))
        losses = np.array([[run.get(s, np.nan) for s in steps] for run in runs.values()])
        arrays[key] = (steps, losses)
    return arrays


def loss_over_steps(curves: Curves, protocol: Protocol, setting: str, path: Path) -> Path:
    """The paper's Figure 4: loss against gradient steps, mean and median over runs, per p."""
    splits = ("test", "train")
    figure, axes = plt.subplots(
        len(splits),
        len(protocol.correlations),
        figsize=(4.3 * len(protocol.correlations), 3.5 * len(splits)),
        sharex=True,
        sharey=True,
        squeeze=False,
    )
    runs = 0
    for row, split in enumerate(splits):
        for col, p in enumerate(protocol.correlations):
            axis = axes[row, col]
            for model in MODELS:
                steps, losses = curves[setting, model, p, split]
                runs = losses.shape[0]
                low, high = np.nanquantile(losses, (0.25, 0.75), axis=0)
                color = COLORS[model]
                axis.plot(steps, np.nanmean(losses, axis=0), color=color, label=MODEL_LABELS[model])
                axis.plot(steps, np.nanmedian(losses, axis=0), color=color, linestyle="--")
                axis.fill_between(steps, low, high, color=color, alpha=0.15, linewidth=0)
            axis.axhline(_noise_floor(protocol), **FLOOR_STYLE, label="noise floor σ²")
            axis.set_title(f"p = {p:g}, {split} loss")
            axis.grid(alpha=0.3)
            _log_axis(axis)
        axes[row, 0].set_ylabel(f"{split} MSE (mean of the two tasks)")
    for axis in axes[-1]:
        axis.set_xlabel("gradient steps")
    axes[0, 0].legend(fontsize=8)
    figure.suptitle(
        f"Loss over training, {setting} setting ({protocol.setting(setting).describe()}):\n"
        f"mean (solid), median (dashed), quartiles (band) of {runs} runs per model and p",
        fontsize=10,
    )
    return _save(figure, path)


def shared_bottom_over_steps(curves: Curves, protocol: Protocol, path: Path) -> Path:
    """Shared-Bottom's mean test loss against steps for each p: the paper's Shared-Bottom figure."""
    settings = [setting.name for setting in protocol.settings]
    figure, axes = plt.subplots(
        1, len(settings), figsize=(5 * len(settings), 3.8), sharey=True, squeeze=False
    )
    shades = plt.get_cmap("viridis")(np.linspace(0.0, 0.8, len(protocol.correlations)))
    for axis, setting in zip(axes[0], settings, strict=True):
        for shade, p in zip(shades, protocol.correlations, strict=True):
            steps, losses = curves[setting, "shared_bottom", p, "test"]
            axis.plot(steps, np.nanmean(losses, axis=0), color=shade, label=f"p = {p:g}")
        axis.axhline(_noise_floor(protocol), **FLOOR_STYLE, label="noise floor σ²")
        axis.set_title(f"{setting} setting")
        axis.set_xlabel("gradient steps")
        axis.grid(alpha=0.3)
        _log_axis(axis)
    axes[0, 0].set_ylabel("Shared-Bottom test MSE, mean over runs")
    axes[0, 0].legend(fontsize=8)
    figure.suptitle("Shared-Bottom's loss over training for each task correlation p")
    return _save(figure, path)


def _shared_bins(records: Sequence[dict], setting: str, protocol: Protocol) -> np.ndarray:
    losses = np.concatenate(
        [
            _study_losses(records, setting, model, p)
            for model in MODELS
            for p in protocol.correlations
        ]
    )
    low = min(float(losses.min()), _noise_floor(protocol))
    return np.geomspace(low * 0.95, float(losses.max()) * 1.05, 41)


def trainability(records: Sequence[dict], protocol: Protocol, setting: str, path: Path) -> Path:
    """The paper's Figure 6: histograms of final test loss over the runs, per model and p."""
    bins = _shared_bins(records, setting, protocol)
    figure, axes = plt.subplots(
        len(protocol.correlations),
        len(MODELS),
        figsize=(4 * len(MODELS), 2.6 * len(protocol.correlations)),
        sharex=True,
        sharey=True,
        squeeze=False,
    )
    runs = 0
    for row, p in enumerate(protocol.correlations):
        for col, model in enumerate(MODELS):
            axis = axes[row, col]
            losses = _study_losses(records, setting, model, p)
            runs = losses.size
            axis.hist(losses, bins=bins, color=COLORS[model], alpha=0.8)
            axis.axvline(_noise_floor(protocol), **FLOOR_STYLE)
            axis.axvline(float(np.median(losses)), color="black", linewidth=1)
            axis.set_title(f"{MODEL_LABELS[model]}, p = {p:g}", fontsize=10)
            axis.grid(alpha=0.3)
            _log_axis(axis, "x")
        axes[row, 0].set_ylabel("runs")
    for axis in axes[-1]:
        axis.set_xlabel("final test MSE (log scale)")
    figure.suptitle(
        f"Trainability, {setting} setting: final test loss of {runs} runs per cell "
        "(solid line: median, dotted: noise floor σ²)",
        fontsize=10,
    )
    return _save(figure, path)


def trainability_ecdf(records: Sequence[dict], protocol: Protocol, path: Path) -> Path:
    """The same final losses as cumulative distributions: one row per setting, one panel per p."""
    settings = [setting.name for setting in protocol.settings]
    figure, axes = plt.subplots(
        len(settings),
        len(protocol.correlations),
        figsize=(4 * len(protocol.correlations), 3.2 * len(settings)),
        sharey=True,
        squeeze=False,
    )
    for row, setting in enumerate(settings):
        for col, p in enumerate(protocol.correlations):
            axis = axes[row, col]
            for model in MODELS:
                ordered = np.sort(_study_losses(records, setting, model, p))
                fraction = np.arange(1, ordered.size + 1) / ordered.size
                axis.step(ordered, fraction, where="post", color=COLORS[model])
                axis.plot([], [], color=COLORS[model], label=MODEL_LABELS[model])
            axis.axvline(_noise_floor(protocol), **FLOOR_STYLE, label="noise floor σ²")
            axis.set_title(f"{setting} setting, p = {p:g}", fontsize=10)
            axis.grid(alpha=0.3)
            _log_axis(axis, "x")
        axes[row, 0].set_ylabel("fraction of runs")
        for col in range(1, len(protocol.correlations)):  # one x scale per setting's row
            axes[row, col].sharex(axes[row, 0])
    for axis in axes[-1]:
        axis.set_xlabel("final test MSE (log scale)")
    axes[0, 0].legend(fontsize=8)
    figure.suptitle("Final test loss over runs, cumulative")
    return _save(figure, path)


def learning_rates(
    records: Sequence[dict],
    protocol: Protocol,
    chosen: dict[str, dict[tuple[str, float], float]],
    path: Path,
) -> Path:
    """The pilots: best validation loss per learning rate, model and p; the chosen rate starred."""
    settings = [setting.name for setting in protocol.settings]
    figure, axes = plt.subplots(
        len(settings),
        len(protocol.correlations),
        figsize=(4.3 * len(protocol.correlations), 3.4 * len(settings)),
        sharey=True,
        squeeze=False,
    )
    rates = protocol.learning_rates
    width = 0.8 / len(MODELS)
    for row, setting in enumerate(settings):
        for col, p in enumerate(protocol.correlations):
            axis = axes[row, col]
            for index, model in enumerate(MODELS):
                positions = np.arange(len(rates)) + (index - 1) * width
                data = [
                    [
                        r["best_validation_loss"] / 2
                        for r in select(
                            records, setting=setting, study="pilot", model=model, p=p, lr=rate
                        )
                    ]
                    for rate in rates
                ]
                parts = axis.boxplot(
                    data,
                    positions=positions,
                    widths=width * 0.85,
                    whis=(5, 95),
                    patch_artist=True,
                    medianprops={"color": "black"},
                    flierprops={"marker": ".", "markersize": 2},
                )
                for box in parts["boxes"]:
                    box.set_facecolor(COLORS[model])
                    box.set_alpha(0.6)
                best = rates.index(chosen[setting][model, p])
                axis.plot(
                    positions[best],
                    np.median(data[best]),
                    marker="*",
                    markersize=11,
                    color="gold",
                    markeredgecolor="black",
                    linestyle="none",
                )
            axis.axhline(_noise_floor(protocol), **FLOOR_STYLE)
            axis.set_xticks(range(len(rates)), [f"lr {rate:g}" for rate in rates])
            axis.set_title(f"{setting} setting, p = {p:g}", fontsize=10)
            axis.grid(alpha=0.3, axis="y")
            _log_axis(axis)
        axes[row, 0].set_ylabel("best validation MSE")
    handles = [
        plt.Line2D([], [], color=COLORS[m], linewidth=6, alpha=0.6, label=MODEL_LABELS[m])
        for m in MODELS
    ]
    handles.append(
        plt.Line2D([], [], marker="*", color="gold", markeredgecolor="black", linestyle="none")
    )
    handles[-1].set_label("chosen")
    axes[0, 0].legend(handles=handles, fontsize=8)
    figure.suptitle(
        f"Learning-rate pilots: {protocol.pilot_repeats} runs per box, early stopping "
        f"(patience {protocol.patience}); dotted: noise floor σ²",
        fontsize=10,
    )
    return _save(figure, path)


def performance_vs_correlation(records: Sequence[dict], protocol: Protocol, path: Path) -> Path:
    """Left: box plots of the main study's final loss. Right: the sweep's medians, quartiles."""
    setting = protocol.main.name
    figure, (boxes, sweep) = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    width = 0.8 / len(MODELS)
    for index, model in enumerate(MODELS):
        data = [_study_losses(records, setting, model, p) for p in protocol.correlations]
        positions = np.arange(len(protocol.correlations)) + (index - 1) * width
        parts = boxes.boxplot(
            data,
            positions=positions,
            widths=width * 0.9,
            whis=(5, 95),
            patch_artist=True,
            medianprops={"color": "black"},
            flierprops={"marker": ".", "markersize": 3, "markeredgecolor": COLORS[model]},
        )
        for box in parts["boxes"]:
            box.set_facecolor(COLORS[model])
            box.set_alpha(0.6)
        boxes.plot([], [], color=COLORS[model], linewidth=6, alpha=0.6, label=MODEL_LABELS[model])

        medians, lower, upper = [], [], []
        for p in protocol.sweep_correlations:
            values = np.array(
                [
                    run_loss(r)
                    for r in select(records, setting=setting, study="sweep", model=model, p=p)
                ]
            )
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
    for axis in (boxes, sweep):
        axis.axhline(_noise_floor(protocol), **FLOOR_STYLE, label="noise floor σ²")
        axis.grid(alpha=0.3, axis="y")
        _log_axis(axis)
    boxes.set_xticks(
        range(len(protocol.correlations)), [f"p = {p:g}" for p in protocol.correlations]
    )
    boxes.set_ylabel("final test MSE (mean of the two tasks)")
    boxes.set_title(f"{protocol.main.repeats} runs per box (whiskers: 5th-95th percentile)")
    boxes.legend(fontsize=8)
    sweep.set_xlabel("task correlation p (cosine of w_1, w_2)")
    sweep.set_title(
        f"fine sweep, {protocol.sweep_repeats} runs per point, early stopping: median, quartiles"
    )
    sweep.invert_xaxis()
    figure.suptitle(f"Final loss vs task correlation, main setting\n({protocol.main.describe()})")
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
            share = float(np.median([r["linear_unexplained_share"] for r in rows]))
            axis.errorbar(
                [r["p"] for r in rows],
                [r["label_correlation"] for r in rows],
                yerr=[r["label_correlation_std"] for r in rows],
                marker="o",
                markersize=3,
                capsize=2,
                label=f"m = {m:g} (nonlinear share {share:.0%})",
            )
        axis.plot([0, 1], [0, 1], "k:", linewidth=1, label="y = p")
        axis.set_title(f"c = {scale:g}")
        axis.set_xlabel("cosine p of the weight vectors")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    axes[0, 0].set_ylabel("Pearson correlation of y_1, y_2 (mean ± std over draws)")
    figure.suptitle("Label correlation vs weight-vector cosine, α and β drawn afresh per draw")
    return _save(figure, path)
