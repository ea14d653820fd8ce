"""docs/results/README.md: the tables of numbers behind every figure, written from the runs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from training.experiments.protocol import FULL, MODEL_LABELS, MODELS, Protocol
from training.experiments.summary import cell_stats, run_loss, select

FIGURES = {
    "performance_vs_correlation.png": (
        "Converged test loss vs task correlation (the paper's Figure 4 plots loss over steps)"
    ),
    "trainability.png": (
        "Trainability: final test loss over repeated runs, as ECDFs (the paper's Figure 6 shows "
        "histograms)"
    ),
    "learning_rates.png": "Trainability over Adam learning rates",
    "label_correlation.png": "Label correlation vs weight cosine (a check of the data generator)",
    "sensitivity.png": "How the comparison changes with c and m",
}


def _f(value: float) -> str:
    return f"{value:.4f}"


def main_table(records: Sequence[dict], protocol: Protocol) -> list[str]:
    lines = [
        "| model | p | task | mean | std | median | q10 | q90 | max | runs |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    default = {"lr": protocol.learning_rate, "c": protocol.scale, "m": protocol.num_sinusoids}
    for model in MODELS:
        for p in protocol.correlations:
            stats = cell_stats(select(records, protocol.repeats, model=model, p=p, **default))
            for task in ("task_1", "task_2"):
                s = stats[task]
                lines.append(
                    f"| {MODEL_LABELS[model]} | {p} | {task[-1]} | {_f(s['mean'])} | "
                    f"{_f(s['std'])} | {_f(s['q50'])} | {_f(s['q10'])} | {_f(s['q90'])} | "
                    f"{_f(s['max'])} | {s['runs']} |"
                )
    return lines


def _median_grid(
    records: Sequence[dict], seeds: int, rows: Sequence, row_name: str, **where: float | str
) -> list[str]:
    lines = [
        f"| {row_name} | " + " | ".join(MODEL_LABELS[m] for m in MODELS) + " |",
        "|---" * (len(MODELS) + 1) + "|",
    ]
    for row in rows:
        cells = []
        for model in MODELS:
            s = cell_stats(select(records, seeds, model=model, **row[1], **where))["mean_of_tasks"]
            cells.append(f"{_f(s['q50'])} [{_f(s['q25'])}, {_f(s['q75'])}]")
        lines.append(f"| {row[0]} | " + " | ".join(cells) + " |")
    return lines


def _outliers(records: Sequence[dict]) -> int:
    cells: dict[tuple, list[float]] = {}
    for r in records:
        cells.setdefault((r["model"], r["p"], r["lr"], r["c"], r["m"]), []).append(run_loss(r))
    return sum(int((np.array(v) > 10 * np.median(v)).sum()) for v in cells.values())


def findings(records: Sequence[dict], protocol: Protocol) -> list[str]:
    """The paper's three claims, each checked against our medians and spreads."""
    default = {"lr": protocol.learning_rate, "c": protocol.scale, "m": protocol.num_sinusoids}
    high, low = max(protocol.correlations), min(protocol.correlations)

    def stats(model: str, p: float) -> dict[str, float]:
        runs = select(records, protocol.repeats, model=model, p=p, **default)
        return cell_stats(runs)["mean_of_tasks"]

    rise = {m: stats(m, low)["q50"] - stats(m, high)["q50"] for m in MODELS}
    least = min(rise, key=rise.__getitem__)
    gap = {m: stats(m, high)["q50"] / stats("mmoe", high)["q50"] - 1 for m in MODELS}
    spread = {
        m: max(stats(m, p)["q90"] - stats(m, p)["q10"] for p in protocol.correlations)
        for m in MODELS
    }
    widest = max(spread, key=spread.__getitem__)
    rises = ", ".join(f"{MODEL_LABELS[m]} {rise[m]:+.4f}" for m in MODELS)
    spreads = ", ".join(f"{MODEL_LABELS[m]} {spread[m]:.4f}" for m in MODELS)
    return [
        f"- *MMoE's loss rises least as p falls.* Median loss change from p = {high} to p = {low}: "
        f"{rises}. Least: **{MODEL_LABELS[least]}** "
        f"({'agrees' if least == 'mmoe' else 'differs from the paper'}).",
        f"- *OMoE is close to MMoE at p = {high}.* OMoE's median is {gap['omoe']:+.1%} from MMoE's "
        f"(Shared-Bottom {gap['shared_bottom']:+.1%}).",
        f"- *Shared-Bottom has the widest spread.* Widest q10-q90 range at any p: {spreads}. "
        f"Widest: **{MODEL_LABELS[widest]}** "
        f"({'agrees' if widest == 'shared_bottom' else 'differs from the paper'}).",
    ]


def quick_note(records: Sequence[dict], protocol: Protocol) -> list[str]:
    """For a protocol other than the full one: what it changes, and why it is not the study."""
    if protocol == FULL:
        return []
    mine, full = protocol.model_dump(), FULL.model_dump()
    changes = [
        f"`{field}` {mine[field]} (full: {full[field]})"
        for field in mine
        if field != "name" and mine[field] != full[field]
    ]
    capped = sum(1 for r in records if r["best_epoch"] >= protocol.epochs)
    return [
        f"**This is not the experiment.** The {protocol.name!r} protocol runs the same code and "
        "draws the same figures as the full protocol from fewer and smaller runs, so that it "
        "finishes in minutes: it shows that the pipeline works. Its numbers and verdicts are not "
        "the study's and may contradict it (the ranking of the models can invert): with "
        f"{protocol.train_size} training rows instead of {FULL.train_size} and at most "
        f"{protocol.epochs} epochs instead of {FULL.epochs}, the models are compared on less data "
        f"and before all of them have converged ({capped} of its {len(records)} runs had their "
        f"best epoch at the cap), and with {protocol.repeats} runs per cell instead of "
        f"{FULL.repeats} a median moves with a few seeds. The full results are in "
        "`docs/results/`. This protocol differs from the full one in: " + "; ".join(changes) + ".",
        "",
    ]


def write_readme(
    records: Sequence[dict],
    label_table: Sequence[dict],
    protocol: Protocol,
    timing: dict,
    discussion_link: str = "DISCUSSION.md",
) -> str:
    default = {"c": protocol.scale, "m": protocol.num_sinusoids}
    lr = protocol.learning_rate
    sweep_rows = [(p, {"p": p}) for p in protocol.sweep_correlations]
    lr_rows = [
        (f"p = {p}, lr = {rate:g}", {"p": p, "lr": rate})
        for p in protocol.lr_correlations
        for rate in protocol.learning_rates
    ]
    settings = [(protocol.scale, protocol.num_sinusoids), *protocol.sensitivity]
    sensitivity_rows = [
        (f"c = {c}, m = {m}, p = {p}", {"c": c, "m": m, "p": p})
        for c, m in settings
        for p in protocol.sensitivity_correlations
    ]
    label_rows = [
        f"| {r['c']} | {r['m']} | {r['p']} | {r['label_correlation']:.3f} |"
        for r in label_table
        if r["p"] in (0.0, 0.5, 0.9, 1.0)
    ]
    outliers = _outliers(records)
    lines = [
        f"# Experiment results ({protocol.name} protocol)",
        "",
        f"Generated by `python -m training.experiments` (protocol {protocol.name!r}, "
        f"{protocol.repeats} runs per model and p in the main study); do not edit by hand. "
        "Every run is in `runs.csv`; "
        "the discussion of where we differ from the paper is in "
        f"[docs/results/DISCUSSION.md]({discussion_link}).",
        "",
        f"Setup: synthetic data of Ma et al. (2018) with d = 100, c = {protocol.scale}, "
        f"m = {protocol.num_sinusoids}, α, β ~ N(0, 1) (sinusoid_seed 0), noise std 0.1 "
        f"(noise floor MSE 0.01); {protocol.train_size} / {protocol.validation_size} / "
        f"{protocol.test_size} train / validation / test rows per run; 8 experts of 16 units, "
        "towers of 8 units, Shared-Bottom of 113 units; Adam, batch "
        f"{protocol.batch_size}, at most {protocol.epochs} epochs, early stopping with patience "
        f"{protocol.patience} on validation loss. Seed s fixes one run's data draw, its "
        "initialisation and its batch order, and the same seeds serve every model and every p "
        "(common random numbers). Loss: test MSE on raw labels.",
        "",
        *quick_note(records, protocol),
        f"Wall time: main study {timing['main_seconds']:.0f} s, everything "
        f"{timing['total_seconds']:.0f} s, with {timing['workers']} worker processes of "
        f"{timing['threads_per_worker']} torch thread on {timing['machine']}. "
        f"Runs whose test MSE is over 10x the median of their cell (model, p, lr, c, m): "
        f"{outliers} of {len(records)}.",
        "",
    ]
    for name, title in FIGURES.items():
        lines += [f"## {title}", "", f"![{title}]({name})", ""]
        if name == "performance_vs_correlation.png":
            lines += [
                "### Findings checked against the paper",
                "",
                *findings(records, protocol),
                "",
            ]
            lines += [
                f"### Test MSE per task, {protocol.repeats} runs per row (lr = {lr:g})",
                "",
                *main_table(records, protocol),
                "",
                f"### Fine sweep: median [quartiles] of the mean-of-tasks test MSE, "
                f"{protocol.sweep_repeats} runs per cell",
                "",
                *_median_grid(records, protocol.sweep_repeats, sweep_rows, "p", lr=lr, **default),
                "",
            ]
        if name == "learning_rates.png":
            lines += [
                f"Median [quartiles] of the mean-of-tasks test MSE, {protocol.lr_repeats} runs "
                "per cell:",
                "",
                *_median_grid(records, protocol.lr_repeats, lr_rows, "setting", **default),
                "",
            ]
        if name == "label_correlation.png":
            lines += [
                "| c | m | p | Pearson corr. of labels |",
                "|---|---|---|---|",
                *label_rows,
                "",
            ]
        if name == "sensitivity.png":
            lines += [
                f"Median [quartiles] of the mean-of-tasks test MSE, "
                f"{protocol.sensitivity_repeats} runs per cell:",
                "",
                *_median_grid(
                    records, protocol.sensitivity_repeats, sensitivity_rows, "setting", lr=lr
                ),
                "",
            ]
    return "\n".join(lines)
