"""README.md of a results folder: the verdicts with their intervals and the tables behind every
figure, written from the files alone."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from training.experiments.findings import findings
from training.experiments.protocol import FULL, MODEL_LABELS, MODELS, Protocol, differences
from training.experiments.summary import (
    UNCONVERGED_AIM,
    cell_stats,
    choose_learning_rates,
    run_loss,
    select,
    unconverged,
)

PAPER = "Ma et al. (KDD 2018)"


def _f(value: float) -> str:
    return f"{value:.4f}"


def chosen_rates(records: Sequence[dict], protocol: Protocol) -> dict:
    """Per setting, (model, p) -> the learning rate its pilot chose."""
    return {
        setting.name: choose_learning_rates(records, setting.name, MODELS, protocol.correlations)
        for setting in protocol.settings
    }


def quick_note(records: Sequence[dict], protocol: Protocol) -> list[str]:
    """What a protocol other than the full one changes, and why its numbers are not the study's."""
    if protocol == FULL:
        return []
    changes = [
        f"`{field}` {value} (full: {full})"
        for field, (value, full) in differences(protocol.model_dump(), FULL.model_dump()).items()
        if field != "name"
    ]
    study = [r for r in records if r["study"] == "study"]
    late = sum(
        len(unconverged(select(study, setting=s.name), s.epoch_cap)) for s in protocol.settings
    )
    return [
        f"**This is not the experiment.** The {protocol.name!r} protocol runs the same code and "
        "draws the same figures as the full protocol, from fewer and smaller runs, so that it "
        "finishes in minutes: it shows that the pipeline works. Its numbers and verdicts are "
        "not the study's and may contradict it: with "
        f"{protocol.train_size} training rows instead of {FULL.train_size} and budgets of "
        f"{protocol.main.epochs} / {protocol.fresh.epochs} epochs instead of "
        f"{FULL.main.epochs} / {FULL.fresh.epochs}, the models are compared on less data and "
        f"before all of them have converged ({late} of its {len(study)} study runs end still "
        f"improving), and with {protocol.main.repeats} seeds per cell instead of "
        f"{FULL.main.repeats} the intervals are wide. The committed full results are in "
        "`docs/results/`. This protocol differs from the full one in: " + "; ".join(changes) + ".",
        "",
    ]


def nonlinearity_table(records: Sequence[dict], protocol: Protocol) -> list[str]:
    lines = [
        "| setting | p | share of label variance a linear fit cannot explain: median "
        "[min, max] over runs | Pearson correlation of the labels: median | runs |",
        "|---|---|---|---|---|",
    ]
    for setting in protocol.settings:
        for p in protocol.correlations:
            runs = select(records, setting=setting.name, study="study", model="mmoe", p=p)
            shares = np.array([r["linear_unexplained_share"] for r in runs])
            correlation = np.median([r["label_correlation"] for r in runs])
            lines.append(
                f"| {setting.name} | {p:g} | {np.median(shares):.1%} [{shares.min():.1%}, "
                f"{shares.max():.1%}] | {correlation:.3f} | {len(runs)} |"
            )
    return lines


def rates_table(records: Sequence[dict], protocol: Protocol, chosen: dict) -> list[str]:
    header = " | ".join(f"p = {p:g}" for p in protocol.correlations)
    lines = [
        f"| setting | model | {header} |",
        "|---|---" + "|---" * len(protocol.correlations) + "|",
    ]
    for setting in protocol.settings:
        for model in MODELS:
            cells = []
            for p in protocol.correlations:
                medians = {
                    rate: np.median(
                        [
                            r["best_validation_loss"] / 2
                            for r in select(
                                records, setting=setting.name, study="pilot", model=model,
                                p=p, lr=rate,
                            )
                        ]
                    )
                    for rate in protocol.learning_rates
                }  # fmt: skip
                rate = chosen[setting.name][model, p]
                cells.append(f"**{rate:g}** ({_f(medians[rate])})")
            lines.append(f"| {setting.name} | {MODEL_LABELS[model]} | " + " | ".join(cells) + " |")
    return lines


def verdict_table(records: Sequence[dict], protocol: Protocol, setting: str) -> list[str]:
    lines = [
        "| claim of the paper | statistic (paired by seed) | estimate [95 % CI] | verdict |",
        "|---|---|---|---|",
    ]
    for finding in findings(records, protocol, setting):
        lines.append(
            f"| {finding.claim} | {finding.statistic} | {finding.interval()} | "
            f"**{finding.verdict}** |"
        )
    return lines


def study_table(records: Sequence[dict], protocol: Protocol, setting: str) -> list[str]:
    lines = [
        "| model | p | lr | task | mean | std | median | q10 | q90 | max | best epoch past the "
        "budget | unconverged | runs |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    budget, cap = protocol.setting(setting).epochs, protocol.setting(setting).epoch_cap
    for model in MODELS:
        for p in protocol.correlations:
            runs = select(records, setting=setting, study="study", model=model, p=p)
            stats = cell_stats(runs)
            late = len(unconverged(runs, cap))
            past = sum(r["best_epoch"] > budget for r in runs)
            for task in ("task_1", "task_2", "mean_of_tasks"):
                s = stats[task]
                name = task[-1] if task != "mean_of_tasks" else "mean"
                lines.append(
                    f"| {MODEL_LABELS[model]} | {p:g} | {runs[0]['lr']:g} | {name} | "
                    f"{_f(s['mean'])} | {_f(s['std'])} | {_f(s['q50'])} | {_f(s['q10'])} | "
                    f"{_f(s['q90'])} | {_f(s['max'])} | {past} | {late} | {s['runs']} |"
                )
    return lines


def convergence_lines(records: Sequence[dict], protocol: Protocol) -> list[str]:
    """How many runs per cell ended still improving, and which runs lie far above their cell."""
    lines = []
    for setting in protocol.settings:
        worst = 0.0
        late_total, total = 0, 0
        for model in MODELS:
            for p in protocol.correlations:
                runs = select(records, setting=setting.name, study="study", model=model, p=p)
                late = len(unconverged(runs, setting.epoch_cap))
                worst = max(worst, late / len(runs))
                late_total, total = late_total + late, total + len(runs)
        far = _far_runs(records, setting.name)
        lines.append(
            f"- {setting.name} setting: {late_total} of {total} study runs are **unconverged** "
            f"(best validation epoch = the cap, {setting.epoch_cap}); at most {worst:.1%} "
            f"in any cell: the aim of at most {UNCONVERGED_AIM * 100:g} % per cell is "
            f"{'met' if worst <= UNCONVERGED_AIM else '**missed**'}. Runs whose final loss "
            f"(mean of the tasks) is over 10x their cell's median: {far}."
        )
    return lines


def _far_runs(records: Sequence[dict], setting: str) -> str:
    counts: dict[str, int] = {}
    for model in MODELS:
        for p in sorted({r["p"] for r in records}):
            runs = select(records, setting=setting, study="study", model=model, p=p)
            if not runs:
                continue
            losses = np.array([run_loss(r) for r in runs])
            count = int((losses > 10 * np.median(losses)).sum())
            if count:
                counts[MODEL_LABELS[model]] = counts.get(MODEL_LABELS[model], 0) + count
    if not counts:
        return "none"
    return ", ".join(f"{n} {model}" for model, n in counts.items())


def write_readme(
    records: Sequence[dict],
    label_table: Sequence[dict],
    protocol: Protocol,
    timing: dict,
    discussion_link: str = "DISCUSSION.md",
) -> str:
    chosen = chosen_rates(records, protocol)
    main, fresh = protocol.main, protocol.fresh
    label_rows = [
        f"| {r['c']:g} | {r['m']:g} | {r['p']:g} | {r['label_correlation']:.3f} ± "
        f"{r['label_correlation_std']:.3f} | {r['linear_unexplained_share']:.1%} |"
        for r in label_table
        if r["p"] in (0.0, 0.5, 0.9, 1.0)
    ]
    lines = [
        f"# Experiment results ({protocol.name} protocol)",
        "",
        *quick_note(records, protocol),
        f"Generated by `python -m training.experiments` from the files beside it; do not edit by "
        "hand. `runs.csv` holds every run (pilot, study and sweep), `curves.csv.gz` every study "
        "run's training and test loss after every epoch of its fixed budget (setting, model, p, "
        "lr, seed, step, split, loss), `label_correlation.csv` the generator's label correlations, "
        "`timing.json` how long it took. Where we differ from the paper, and why we think so: "
        f"[DISCUSSION.md]({discussion_link}).",
        "",
        "## Setup",
        "",
        f"Synthetic data of {PAPER}, d = 100, noise std {protocol.noise_std:g} (noise floor: "
        f"MSE {protocol.noise_std**2:g}), {protocol.train_size} / {protocol.validation_size} / "
        f"{protocol.test_size} train / validation / test rows per run, in two settings:",
        *[
            f"- **{s.name}**: {s.describe()}; {s.repeats} runs per model and p, each trained "
            f"for {s.epochs} epochs ({s.epochs * protocol.steps_per_epoch} gradient steps), then "
            f"on with early stopping up to {s.epoch_cap}."
            for s in (main, fresh)
        ],
        "",
        "8 experts of 16 units, towers of 8 units, Shared-Bottom of 113 units; Adam, batch "
        f"{protocol.batch_size}. Each model's learning rate per p is chosen from "
        f"{', '.join(f'{r:g}' for r in protocol.learning_rates)} by a pilot of "
        f"{protocol.pilot_repeats} runs per cell on other seeds (lowest median best validation "
        f"loss; early stopping with patience {protocol.patience}). Every study run then trains for "
        "its setting's fixed budget with no early stopping (the learning curves below stop "
        "there), then goes on until its validation loss has not improved for "
        f"{protocol.patience} epochs or it reaches the setting's cap, so that no run is judged "
        "while still improving; its final loss is the test MSE (mean of the two tasks) at its "
        "best validation epoch. Seed s fixes a run's "
        "data, initialisation and batch order, and the same seeds serve every model and every "
        "p (common random numbers), so every comparison below is paired by seed.",
        "",
        "### How nonlinear the tasks are",
        "",
        "A label depends on x only through wₖᵀx, so the share of its variance that a linear fit "
        "cannot explain depends on c, m, α and β, not on p (computed exactly, "
        "`training.synthetic.linear_unexplained_share`):",
        "",
        *nonlinearity_table(records, protocol),
        "",
        "### Learning rates chosen by the pilots (median best validation MSE of the chosen rate)",
        "",
        *rates_table(records, protocol, chosen),
        "",
        "## Verdicts",
        "",
        "Each claim is tested with a statistic paired by seed and a 95 % percentile bootstrap "
        "interval (10,000 resamples of the seeds): **reproduced** when the interval excludes "
        "zero in the paper's direction, **opposite** when it excludes zero the other way, "
        "**not reproduced** when it contains zero.",
        "",
    ]
    for setting in protocol.settings:
        lines += [
            f"### {setting.name} setting ({setting.describe()})",
            "",
            *verdict_table(records, protocol, setting.name),
            "",
        ]
    lines += [
        "### Convergence",
        "",
        *convergence_lines(records, protocol),
        "",
        "## Loss over training steps (the paper's Figure 4)",
        "",
        "![Loss over training steps, main setting](loss_over_steps.png)",
        "",
        "![Loss over training steps, fresh setting](fresh_loss_over_steps.png)",
        "",
        "## Shared-Bottom's loss over training for each p (the paper's Shared-Bottom figure)",
        "",
        "![Shared-Bottom over steps](shared_bottom_over_steps.png)",
        "",
        "## Final loss vs task correlation",
        "",
        "![Final loss vs task correlation](performance_vs_correlation.png)",
        "",
    ]
    for setting in protocol.settings:
        lines += [
            f"### Final test MSE, {setting.name} setting, {setting.repeats} runs per model and p",
            "",
            *study_table(records, protocol, setting.name),
            "",
        ]
    lines += [
        "## Trainability: histograms of final loss (the paper's Figure 6)",
        "",
        "![Trainability, main setting](trainability.png)",
        "",
        "![Trainability, fresh setting](fresh_trainability.png)",
        "",
        "The same runs as cumulative distributions:",
        "",
        "![Trainability, cumulative](trainability_ecdf.png)",
        "",
        "## Learning-rate pilots",
        "",
        "![Learning-rate pilots](learning_rates.png)",
        "",
        "## Label correlation vs weight cosine (the generator, not a figure of the paper)",
        "",
        "![Label correlation vs weight cosine](label_correlation.png)",
        "",
        "| c | m | p | Pearson corr. of labels (mean ± std over draws) | nonlinear share "
        "(median over draws) |",
        "|---|---|---|---|---|",
        *label_rows,
        "",
        "## Time",
        "",
        *timing_lines(records, timing),
        "",
    ]
    return "\n".join(lines)


def timing_lines(records: Sequence[dict], timing: dict) -> list[str]:
    epochs = {
        study: sum(r["epochs_run"] for r in records if r["study"] == study)
        for study in ("pilot", "study", "sweep")
    }
    total = sum(epochs.values())
    load = timing["load_average"]
    shares = ", ".join(f"{study} {count / total:.0%}" for study, count in epochs.items())
    cpu = timing.get("cpu_seconds")  # recorded since the worker processes' CPU time is summed
    idle = (
        f" All its processes used {cpu / 60:.1f} min of CPU time: about "
        f"{cpu / 60 / timing['cpus']:.1f} min of wall time on {timing['cpus']} idle cores."
        if cpu
        else ""
    )
    sessions = timing.get("sessions", 1)  # recorded since an interrupted run can resume
    resumed = f" over {sessions} sessions (interrupted and resumed)" if sessions > 1 else ""
    return [
        f"{timing['total_runs']} runs in {timing['total_seconds'] / 60:.1f} min{resumed} "
        f"(pilots {timing['pilot_seconds'] / 60:.1f} min, studies and sweep "
        f"{timing['study_seconds'] / 60:.1f} min) with {timing['workers']} worker processes of "
        f"{timing['threads_per_worker']} torch thread on {timing['machine']}, torch "
        f"{timing['torch']}, {timing['date']}. The machine was shared: its 1-minute load average, "
        f"sampled every {timing['load_sample_seconds']} s during the run, was "
        f"{load['min']:.1f}-{load['max']:.1f} (median {load['median']:.1f}) on "
        f"{timing['cpus']} cores.{idle} Replica-epochs trained (what the time goes to): "
        f"{total:,}; {shares}.",
    ]
