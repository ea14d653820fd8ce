"""A tiny run of `python -m training.experiments` writes every file and figure, and the figures and
tables show what the files hold (read back here with the csv module, not the experiments' code)."""

from __future__ import annotations

import csv
import gzip
import json
import statistics
import subprocess
from collections import defaultdict
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from tests.support import REPO_ROOT
from training.config import SyntheticDataConfig
from training.experiments import plots
from training.experiments.__main__ import DEFAULT_OUT, build_parser, main, resolve_protocol
from training.experiments.label_correlation import label_correlation
from training.experiments.protocol import (
    FULL,
    QUICK,
    nearest_correlation,
    pilot_runs,
    study_runs,
)
from training.experiments.report import convergence_lines

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FIGURES = [
    "loss_over_steps.png",
    "fresh_loss_over_steps.png",
    "shared_bottom_over_steps.png",
    "performance_vs_correlation.png",
    "trainability.png",
    "fresh_trainability.png",
    "trainability_ecdf.png",
    "learning_rates.png",
    "label_correlation.png",
]
LOSS_FIGURES = [name for name in FIGURES if name != "label_correlation.png"]
MODELS = {"shared_bottom": "Shared-Bottom", "omoe": "OMoE", "mmoe": "MMoE"}
BUDGET = {"main": 3, "fresh": 4}  # the tiny protocol's fixed budgets, in epochs
CAP = {"main": 9, "fresh": 12}
TINY = [
    "main.repeats=3",
    f"main.epochs={BUDGET['main']}",
    f"main.epoch_cap={CAP['main']}",
    "fresh.repeats=2",
    f"fresh.epochs={BUDGET['fresh']}",
    f"fresh.epoch_cap={CAP['fresh']}",
    "pilot_repeats=2",
    "sweep_correlations=[0.0,0.5,1.0]",
    "sweep_repeats=2",
    "train_size=64",
    "validation_size=32",
    "test_size=32",
    "batch_size=16",
    "label_correlation_sinusoids=[1,5]",
    "label_correlation_rows=200",
    "label_correlation_draws=2",
]
STEPS_PER_EPOCH = 4  # 64 rows, batch 16


@pytest.fixture(scope="module")
def figures() -> dict[str, Figure]:
    """Each figure the run draws, by file name, as it was just before it was saved."""
    return {}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory, figures: dict[str, Figure]) -> Path:
    """Run with no --out from an empty folder: the default output folder is used."""
    threads = torch.get_num_threads()
    cwd = tmp_path_factory.mktemp("cwd")
    args = ["--quick", "--workers", "1"]
    for item in TINY:
        args += ["--set", item]
    save = plots._save

    def keep_then_save(figure: Figure, path: Path) -> Path:
        figure.canvas.draw()  # a closed figure keeps its artists; drawing checks they render
        figures[path.name] = figure
        return save(figure, path)

    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)
        patch.setattr(plots, "_save", keep_then_save)
        assert main(args) == 0
    torch.set_num_threads(threads)
    return cwd / "out" / "experiments" / "quick"


def read_runs(results: Path) -> list[dict]:
    with (results / "runs.csv").open() as handle:
        return list(csv.DictReader(handle))


def read_curves(results: Path) -> list[dict]:
    with gzip.open(results / "curves.csv.gz", "rt") as handle:
        return list(csv.DictReader(handle))


def mean_loss(row: dict) -> float:
    return (float(row["test_loss_task_1"]) + float(row["test_loss_task_2"])) / 2


def plotted_arrays(axes: Axes) -> list[np.ndarray]:
    """The data of every line, filled area, scatter and bar in `axes`."""
    arrays = [np.asarray(line.get_xydata()) for line in axes.get_lines()]
    arrays += [np.asarray(c.get_paths()[0].vertices) for c in axes.collections if c.get_paths()]
    arrays += [np.asarray(patch.get_path().vertices) for patch in axes.patches]
    return [array for array in arrays if array.size]


def lines_by_label(axes: Axes) -> dict[str, object]:
    return {line.get_label(): line for line in axes.get_lines()}


def test_writes_to_the_ignored_default_folder_every_file(results: Path) -> None:
    names = {path.name for path in results.iterdir()}
    expected = {"runs.csv", "curves.csv.gz", "label_correlation.csv", "timing.json", "README.md"}
    assert expected | set(FIGURES) <= names
    assert "out/" in (Path(__file__).parents[2] / ".gitignore").read_text().splitlines()


@pytest.mark.parametrize("name", FIGURES)
def test_writes_png_figures_whose_every_panel_holds_data(
    results: Path, figures: dict[str, Figure], name: str
) -> None:
    path = results / name
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    panels = [axes for axes in figures[name].get_axes() if axes.get_visible()]
    assert panels
    for axes in panels:
        arrays = plotted_arrays(axes)
        assert arrays, f"{name}: the panel {axes.get_title()!r} is empty"
        assert any(np.isfinite(array).all() for array in arrays)


@pytest.mark.parametrize("name", LOSS_FIGURES)
def test_every_loss_panel_draws_the_noise_floor(figures: dict[str, Figure], name: str) -> None:
    for axes in figures[name].get_axes():
        dotted = [line for line in axes.get_lines() if line.get_linestyle() == ":"]
        floors = [
            line
            for line in dotted
            if any(np.allclose(data, 0.01) for data in (line.get_xdata(), line.get_ydata()))
        ]
        assert floors, f"{name}: no noise-floor line at 0.01 in {axes.get_title()!r}"


def test_loss_over_steps_plots_the_mean_and_median_of_the_curves_file(
    results: Path, figures: dict[str, Figure]
) -> None:
    curves = read_curves(results)
    per_step: dict[tuple, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in curves:
        if row["setting"] == "main":
            key = (row["model"], float(row["p"]), row["split"])
            per_step[key][int(row["step"])].append(float(row["loss"]))
    axes = figures["loss_over_steps.png"].get_axes()
    titles = {axis.get_title(): axis for axis in axes}
    for p in (1.0, 0.9, 0.5):
        for split in ("test", "train"):
            axis = titles[f"p = {p:g}, {split} loss"]
            drawn = [line for line in axis.get_lines() if line.get_linestyle() in ("-", "--")]
            for model in MODELS:
                steps = sorted(per_step[model, p, split])
                assert steps == [STEPS_PER_EPOCH * epoch for epoch in (1, 2, 3)]
                means = [statistics.fmean(per_step[model, p, split][s]) for s in steps]
                medians = [statistics.median(per_step[model, p, split][s]) for s in steps]
                mean_line = lines_by_label(axis)[MODELS[model]]
                np.testing.assert_allclose(mean_line.get_xdata(), steps)
                np.testing.assert_allclose(mean_line.get_ydata(), means, rtol=1e-12)
                assert any(
                    list(line.get_xdata()) == steps
                    and np.allclose(line.get_ydata(), medians, rtol=1e-12)
                    and line.get_linestyle() == "--"
                    for line in drawn
                )
    assert len({tuple(axis.get_ylim()) for axis in axes}) == 1  # one shared scale


def test_curves_hold_every_study_runs_every_budget_epoch_and_nothing_else(
    results: Path,
) -> None:
    runs = [r for r in read_runs(results) if r["study"] == "study"]
    curves = read_curves(results)
    assert set(curves[0]) == {"setting", "model", "p", "lr", "seed", "step", "split", "loss"}
    expected = {
        (r["setting"], r["model"], float(r["p"]), int(r["seed"]), split, STEPS_PER_EPOCH * e)
        for r in runs
        for split in ("train", "test")
        for e in range(1, BUDGET[r["setting"]] + 1)
    }
    got = {
        (c["setting"], c["model"], float(c["p"]), int(c["seed"]), c["split"], int(c["step"]))
        for c in curves
    }
    assert got == expected and len(curves) == len(expected)
    assert all(float(c["loss"]) > 0 for c in curves)


def test_study_runs_train_the_budget_then_stop_only_when_converged_or_capped(
    results: Path,
) -> None:
    runs = [r for r in read_runs(results) if r["study"] == "study"]
    for run in runs:
        epochs_run, best = int(run["epochs_run"]), int(run["best_epoch"])
        assert BUDGET[run["setting"]] <= epochs_run <= CAP[run["setting"]]
        assert epochs_run == CAP[run["setting"]] or epochs_run - best >= QUICK.patience
    assert any(int(r["epochs_run"]) > BUDGET[r["setting"]] for r in runs)  # some went on


def test_the_test_curve_at_the_best_epoch_is_the_runs_final_loss(results: Path) -> None:
    curves = {
        (c["setting"], c["model"], c["p"], c["seed"], int(c["step"])): float(c["loss"])
        for c in read_curves(results)
        if c["split"] == "test"
    }
    within_budget = [
        run
        for run in read_runs(results)
        if run["study"] == "study" and int(run["best_epoch"]) <= BUDGET[run["setting"]]
    ]
    assert within_budget
    for run in within_budget:
        step = STEPS_PER_EPOCH * int(run["best_epoch"])
        key = (run["setting"], run["model"], run["p"], run["seed"], step)
        assert curves[key] == pytest.approx(mean_loss(run), rel=1e-4)


def test_histograms_count_every_run_of_their_cell_over_shared_bins(
    results: Path, figures: dict[str, Figure]
) -> None:
    runs = [r for r in read_runs(results) if r["setting"] == "main" and r["study"] == "study"]
    axes = figures["trainability.png"].get_axes()
    edges = set()
    for axis in axes:
        model_label, p_text = axis.get_title().split(", p = ")
        model = next(m for m, label in MODELS.items() if label == model_label)
        cell = [r for r in runs if r["model"] == model and float(r["p"]) == float(p_text)]
        heights = [patch.get_height() for patch in axis.patches]
        assert sum(heights) == len(cell) == 3
        edges.add(tuple(round(patch.get_x(), 12) for patch in axis.patches))
        losses = [mean_loss(r) for r in cell]
        low, high = axis.get_xlim()
        assert low <= min(losses) and max(losses) <= high
    assert len(edges) == 1  # the same bins in every panel


def test_sweep_panel_plots_the_median_of_the_sweep_runs(
    results: Path, figures: dict[str, Figure]
) -> None:
    rows = [r for r in read_runs(results) if r["study"] == "sweep"]
    sweep = figures["performance_vs_correlation.png"].get_axes()[1]
    for model, label in MODELS.items():
        expected = [
            statistics.median(
                mean_loss(r) for r in rows if r["model"] == model and float(r["p"]) == p
            )
            for p in (0.0, 0.5, 1.0)
        ]
        x, y = lines_by_label(sweep)[label].get_data()
        assert list(x) == [0.0, 0.5, 1.0]
        np.testing.assert_allclose(y, expected, rtol=1e-9)


def test_each_models_learning_rate_is_its_pilots_best_median(results: Path) -> None:
    rows = read_runs(results)
    for setting in ("main", "fresh"):
        for model in MODELS:
            for p in (1.0, 0.9, 0.5):
                pilot = defaultdict(list)
                for r in rows:
                    if (r["setting"], r["study"], r["model"], float(r["p"])) == (
                        setting, "pilot", model, p
                    ):  # fmt: skip
                        pilot[float(r["lr"])].append(float(r["best_validation_loss"]))
                assert sorted(pilot) == [1e-4, 1e-3, 1e-2]
                best = min(pilot, key=lambda rate: statistics.median(pilot[rate]))
                study = {
                    float(r["lr"])
                    for r in rows
                    if (r["setting"], r["study"], r["model"], float(r["p"])) == (
                        setting, "study", model, p
                    )
                }  # fmt: skip
                assert study == {best}


def test_readme_reports_verdicts_rates_and_every_figure(results: Path) -> None:
    readme = (results / "README.md").read_text()
    assert "This is not the experiment." in readme
    assert "`main.repeats` 3 (full: 200)" in readme
    for name in FIGURES:
        assert f"]({name})" in readme
    assert readme.count("| MMoE's loss rises less than OMoE's as p falls") == 2
    assert "| MMoE | 0.5 |" in readme


def test_replot_redraws_the_same_readme_from_the_files_alone(results: Path) -> None:
    before = (results / "README.md").read_text()
    (results / "README.md").unlink()
    assert main(["--replot", "--out", str(results)]) == 0
    assert (results / "README.md").read_text() == before


def test_timing_records_the_load_average_during_the_run(results: Path) -> None:
    timing = json.loads((results / "timing.json").read_text())
    load = timing["load_average"]
    assert load["samples"] >= 2 and 0 <= load["min"] <= load["median"] <= load["max"]
    assert timing["total_runs"] == len(read_runs(results))
    assert timing["cpu_seconds"] > 0


def test_every_model_and_p_uses_the_same_seeds_and_pilots_use_others() -> None:
    """Common random numbers: each (p, seed) is trained by every model on the same data."""
    chosen = {(m, p): 1e-3 for m in MODELS for p in FULL.correlations}
    study = [run for run in study_runs(FULL, FULL.main, chosen) if run.job.study == "study"]
    cells = defaultdict(set)
    for run in study:
        cells[run.job.model, run.correlation].add(run.seed)
    assert len(cells) == 9 and all(seeds == set(range(200)) for seeds in cells.values())
    pilot_seeds = {run.seed for run in pilot_runs(FULL, FULL.main)}
    assert len(pilot_seeds) == 24 and not pilot_seeds & set(range(200))


def test_sweep_points_borrow_the_nearest_piloted_learning_rate() -> None:
    assert [nearest_correlation(FULL, p) for p in (0.0, 0.7, 0.8, 0.95, 0.96, 1.0)] == [
        0.5,
        0.5,
        0.9,
        0.9,
        1.0,
        1.0,
    ]  # fmt: skip: 0.7 and 0.95 are ties, which go to the lower p
    chosen = {(m, p): {1.0: 1e-2, 0.9: 1e-3, 0.5: 1e-4}[p] for m in MODELS for p in (1.0, 0.9, 0.5)}
    sweep = [run for run in study_runs(QUICK, QUICK.main, chosen) if run.job.study == "sweep"]
    rates = {run.correlation: run.job.learning_rate for run in sweep}
    assert rates == {0.0: 1e-4, 0.2: 1e-4, 0.4: 1e-4, 0.6: 1e-4, 0.8: 1e-3, 1.0: 1e-2}
    assert not [run for run in study_runs(QUICK, QUICK.fresh, chosen) if run.job.study == "sweep"]


def test_fresh_runs_draw_their_own_sinusoids_and_main_runs_share_one(results: Path) -> None:
    rows = [r for r in read_runs(results) if r["study"] == "study"]
    main_draws = {r["sinusoid_seed"] for r in rows if r["setting"] == "main"}
    assert main_draws == {"4"}
    fresh = [r for r in rows if r["setting"] == "fresh"]
    assert all(r["sinusoid_seed"] == r["seed"] for r in fresh)
    assert len({r["linear_unexplained_share"] for r in fresh}) == 2  # two seeds, two draws


def test_dotted_overrides_reach_a_setting_and_unknown_fields_are_refused() -> None:
    protocol = resolve_protocol(FULL, ["main.repeats=7", "fresh.epochs=9"])
    assert (protocol.main.repeats, protocol.fresh.epochs) == (7, 9)
    assert protocol.main.scale == FULL.main.scale
    with pytest.raises(SystemExit, match="main has no field 'colour'"):
        resolve_protocol(FULL, ["main.colour=1"])
    with pytest.raises(SystemExit, match="expected FIELD=JSON"):
        resolve_protocol(FULL, ["repeats"])


def test_label_correlation_is_one_at_p_one_and_below_p_elsewhere() -> None:
    config = SyntheticDataConfig(train_size=5000, validation_size=1, test_size=1)
    same = label_correlation(config.model_copy(update={"correlation": 1.0}))
    half = label_correlation(config.model_copy(update={"correlation": 0.5}))
    assert same > 0.95
    assert half < 0.5


def test_only_the_full_protocol_reads_as_the_study(results: Path) -> None:
    """Any other protocol's README opens with what it changes and why its verdicts can differ."""
    readme = (results / "README.md").read_text()
    assert "**This is not the experiment.** The 'quick' protocol" in readme
    assert "`train_size` 64 (full: 10000)" in readme
    assert "This is not the experiment" not in (REPO_ROOT / "docs/results/README.md").read_text()
    assert "This is not the experiment" in (REPO_ROOT / "docs/results/quick/README.md").read_text()


def test_without_out_the_experiments_write_to_an_ignored_folder() -> None:
    assert build_parser().parse_args(["--full"]).out is None
    assert DEFAULT_OUT.as_posix() == "out/experiments"
    for protocol in ("full", "quick"):
        ignored = subprocess.run(
            [
                "git",
                "check-ignore",
                "--no-index",
                "--quiet",
                f"out/experiments/{protocol}/runs.csv",
            ],
            cwd=REPO_ROOT,
        )
        assert ignored.returncode == 0


@pytest.mark.parametrize(("late", "verdict"), [(1, "met"), (2, "**missed**")])
def test_convergence_says_whether_every_cell_meets_the_one_percent_aim(
    late: int, verdict: str
) -> None:
    protocol = QUICK.model_copy(update={"correlations": (1.0,)})
    records = [
        {
            "setting": setting.name,
            "study": "study",
            "model": model,
            "p": 1.0,
            "seed": seed,
            "epochs_run": setting.epoch_cap if seed < late else 11,
            "best_epoch": setting.epoch_cap if seed < late else 1,
            "test_loss_task_1": 0.1,
            "test_loss_task_2": 0.1,
        }
        for setting in protocol.settings
        for model in ("shared_bottom", "omoe", "mmoe")
        for seed in range(100)
    ]
    lines = convergence_lines(records, protocol)
    assert [line.split(": the aim")[1].split(".")[0] for line in lines] == [
        f" of at most 1 % per cell is {verdict}"
    ] * 2
    assert lines[0].startswith(f"- main setting: {3 * late} of 300 study runs are **unconverged**")
