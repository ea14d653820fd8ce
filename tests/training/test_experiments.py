"""A tiny run of `python -m training.experiments` writes every figure, the runs file and a table."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib.image
import pytest
import torch

from training.config import SyntheticDataConfig
from training.experiments.__main__ import main
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
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    threads = torch.get_num_threads()
    out = tmp_path_factory.mktemp("results")
    args = ["--quick", "--workers", "1", "--out", str(out)]
    for item in TINY:
        args += ["--set", item]
    assert main(args) == 0
    torch.set_num_threads(threads)
    return out


@pytest.mark.parametrize("name", FIGURES)
def test_writes_valid_png_figures(results: Path, name: str) -> None:
    path = results / name
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


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
    seeds_per_p = {p: {k.seed for k in keys if k.correlation == p} for p in QUICK.correlations}
    assert all(seeds == set(range(QUICK.repeats)) for seeds in seeds_per_p.values())
    assert not set(keys) & set(extra_keys(QUICK))


def test_label_correlation_is_one_at_p_one_and_below_p_elsewhere() -> None:
    config = SyntheticDataConfig(train_size=5000, validation_size=1, test_size=1)
    same = label_correlation(config.model_copy(update={"correlation": 1.0}))
    half = label_correlation(config.model_copy(update={"correlation": 0.5}))
    assert same > 0.95
    assert half < 0.5
