"""A tiny run of `python -m training.experiments` writes every figure, the runs file and a table."""

from __future__ import annotations

import csv
import subprocess
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
from training.experiments.__main__ import DEFAULT_OUT, build_parser, main
from training.experiments.label_correlation import label_correlation
from training.experiments.protocol import QUICK, extra_keys, main_keys

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FIGURES = [
    "performance_vs_correlation.png",
    "trainability.png",
    "learning_rates.png",
    "label_correlation.png",
    "sensitivity.png",
]
TINY = [
    "repeats=2",
    "sweep_repeats=1",
    "sweep_correlations=[0.0,0.5,1.0]",
    "lr_repeats=1",
    "sensitivity_repeats=1",
    "sensitivity=[[2.0,5]]",
    "train_size=64",
    "validation_size=32",
    "test_size=32",
    "epochs=2",
    "label_correlation_sinusoids=[1,5]",
    "label_correlation_rows=200",
    "label_correlation_draws=1",
]


@pytest.fixture(scope="module")
def figures() -> dict[str, Figure]:
    """Each figure the run draws, by file name, as it was just before it was saved."""
    return {}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory, figures: dict[str, Figure]) -> Path:
    threads = torch.get_num_threads()
    out = tmp_path_factory.mktemp("results")
    args = ["--quick", "--workers", "1", "--out", str(out)]
    for item in TINY:
        args += ["--set", item]
    save = plots._save

    def keep_then_save(figure: Figure, path: Path) -> Path:
        figure.canvas.draw()  # a closed figure keeps its artists; drawing checks they render
        figures[path.name] = figure
        return save(figure, path)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plots, "_save", keep_then_save)
        assert main(args) == 0
    torch.set_num_threads(threads)
    return out


def plotted_arrays(axes: Axes) -> list[np.ndarray]:
    """The data of every line, filled area, scatter and bar in `axes`."""
    arrays = [np.asarray(line.get_xydata()) for line in axes.get_lines()]
    arrays += [np.asarray(c.get_paths()[0].vertices) for c in axes.collections if c.get_paths()]
    arrays += [np.asarray(patch.get_path().vertices) for patch in axes.patches]
    return [array for array in arrays if array.size]


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


def test_the_sweep_panel_plots_the_median_loss_of_each_model_from_runs_csv(
    results: Path, figures: dict[str, Figure]
) -> None:
    """Read back from runs.csv with the csv module, not through the experiments' own code."""
    with (results / "runs.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    sweep = figures["performance_vs_correlation.png"].get_axes()[1]
    lines = {line.get_label(): line for line in sweep.get_lines()}
    for model, label in (("shared_bottom", "Shared-Bottom"), ("omoe", "OMoE"), ("mmoe", "MMoE")):
        expected = []
        for p in (0.0, 0.5, 1.0):  # TINY's sweep, one run (seed 0) per point
            [row] = [
                r for r in rows
                if r["model"] == model and float(r["p"]) == p and r["seed"] == "0"
                and float(r["lr"]) == 1e-3 and float(r["c"]) == 3.0 and r["m"] == "5"
            ]  # fmt: skip
            expected.append((float(row["test_loss_task_1"]) + float(row["test_loss_task_2"])) / 2)
        x, y = lines[label].get_data()
        assert list(x) == [0.0, 0.5, 1.0]
        np.testing.assert_allclose(y, expected, rtol=1e-9)


def test_writes_every_run_with_its_settings(results: Path) -> None:
    with (results / "runs.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    fields = {"model", "p", "lr", "c", "m", "seed", "test_loss_task_1", "test_loss_task_2"}
    assert fields | {"best_epoch"} <= set(rows[0])
    assert {row["model"] for row in rows} == {"shared_bottom", "omoe", "mmoe"}
    keys = {(r["model"], r["p"], r["lr"], r["c"], r["m"], r["seed"]) for r in rows}
    assert len(keys) == len(rows)
    assert all(float(row["test_loss_task_1"]) > 0 for row in rows)
    readme = (results / "README.md").read_text()
    assert "| MMoE | 0.5 | 1 |" in readme
    for name in FIGURES:
        assert f"]({name})" in readme


def test_every_model_and_p_uses_the_same_seeds() -> None:
    """Common random numbers: each (p, seed) is trained by every model on the same data."""
    keys = main_keys(QUICK)
    seeds_per_p = {p: sorted(k.seed for k in keys if k.correlation == p) for p in (1.0, 0.9, 0.5)}
    assert seeds_per_p == {p: list(range(12)) for p in (1.0, 0.9, 0.5)}  # QUICK: 12 repeats
    assert len(keys) == 36
    assert not set(keys) & set(extra_keys(QUICK))


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
    assert "`repeats` 2 (full: 200)" in readme
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
