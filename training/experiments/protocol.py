"""What the experiments run, as data: the paper's protocol (`FULL`) and a laptop one (`QUICK`).

Two data settings, each studied the same way:
- `main`: the generator with one fixed draw of α and β (as in the paper, which fixes them);
- `fresh`: α and β drawn afresh for every run, so a reader sees how much the conclusions depend on
  the draw.

For each setting: a learning-rate pilot (every model, p and learning rate on its own seeds, early
stopping) picks each model's learning rate per p on validation loss, as the paper tuned it; then
the study trains every model at every p for a fixed budget of epochs with no early stopping,
recording its loss after every epoch (the learning curves), and goes on past the budget with
early stopping, up to a cap, so that a run still improving at the budget is not cut short; it keeps
the weights of its best validation epoch. The main
setting adds a fine sweep over p (fewer runs, early stopping, each p at the learning rate chosen
for the nearest piloted p).

A run's seed fixes its data draw (weight vectors, features, noise, and α, β in the fresh setting),
its initialisation and its batch order, and the same seeds serve every model and every p: common
random numbers, so a difference between two cells comes from the model or p.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.contract import Architecture
from training.config import SyntheticDataConfig, TrainConfig

MODELS: tuple[Architecture, ...] = ("shared_bottom", "omoe", "mmoe")
MODEL_LABELS = {"shared_bottom": "Shared-Bottom", "omoe": "OMoE", "mmoe": "MMoE"}
STUDIES = ("pilot", "study", "sweep")

_DATA = SyntheticDataConfig()
_TRAIN = TrainConfig()


class DataSetting(BaseModel):
    """The generator's knobs that stay fixed within a setting; p and the seed vary inside."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    scale: float = Field(gt=0.0, description="c")
    num_sinusoids: int = Field(ge=0, description="m")
    sinusoid_seed: int | None = Field(
        description="seed of the one draw of α, β; None: a fresh draw per run, from its seed"
    )
    repeats: int = Field(ge=1, description="runs per model and p in the study")
    epochs: int = Field(ge=1, description="the fixed budget of every study run, in epochs")
    epoch_cap: int = Field(
        ge=1,
        description="study runs still improving at the budget train on, with early stopping, "
        "up to this many epochs",
    )

    @model_validator(mode="after")
    def _cap_covers_budget(self) -> DataSetting:
        if self.epoch_cap < self.epochs:
            raise ValueError(f"epoch_cap ({self.epoch_cap}) must be >= epochs ({self.epochs})")
        return self

    def describe(self) -> str:
        draw = (
            f"α, β ~ N(0, 1) drawn once (sinusoid_seed {self.sinusoid_seed})"
            if self.sinusoid_seed is not None
            else "α, β ~ N(0, 1) drawn afresh for every run (sinusoid_seed = the run's seed)"
        )
        return f"c = {self.scale:g}, m = {self.num_sinusoids}, {draw}"


class Protocol(BaseModel):
    """Sizes and grids of every study; defaults are the full protocol."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "full"
    main: DataSetting = DataSetting(
        name="main",
        scale=1.0,
        num_sinusoids=5,
        sinusoid_seed=4,
        repeats=200,
        epochs=100,
        epoch_cap=400,
    )
    fresh: DataSetting = DataSetting(
        name="fresh",
        scale=1.0,
        num_sinusoids=10,
        sinusoid_seed=None,
        repeats=100,
        epochs=100,
        epoch_cap=400,
    )
    correlations: tuple[float, ...] = (1.0, 0.9, 0.5)
    learning_rates: tuple[float, ...] = (1e-4, 1e-3, 1e-2)
    pilot_repeats: int = Field(24, ge=1, description="runs per model, p and lr in each pilot")
    pilot_seed_offset: int = Field(
        100_000, ge=0, description="pilot seeds start here: never the studies' seeds"
    )
    sweep_correlations: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))
    sweep_repeats: int = Field(20, ge=1, description="runs per model and p in the fine sweep")
    train_size: int = _DATA.train_size
    validation_size: int = _DATA.validation_size
    test_size: int = _DATA.test_size
    noise_std: float = _DATA.noise_std
    patience: int = Field(
        10, ge=1, description="early stopping: the pilots, the sweep, the study past its budget"
    )
    batch_size: int = _TRAIN.batch_size
    replicas_per_job: int = Field(100, ge=1, description="replicas trained as one batched model")
    label_correlation_sinusoids: tuple[int, ...] = (1, 5, 10, 20)
    label_correlation_scales: tuple[float, ...] = (1.0, 3.0)
    label_correlation_rows: int = 20_000
    label_correlation_draws: int = 10

    @property
    def settings(self) -> tuple[DataSetting, DataSetting]:
        return (self.main, self.fresh)

    def setting(self, name: str) -> DataSetting:
        return {setting.name: setting for setting in self.settings}[name]

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.train_size // self.batch_size)


def differences(mine: dict, other: dict, prefix: str = "") -> dict[str, tuple]:
    """Dotted field name -> (mine, other) for every field that differs, nested settings included."""
    changes: dict[str, tuple] = {}
    for field in {**mine, **other}:
        value, theirs = mine.get(field), other.get(field)
        if isinstance(value, dict) and isinstance(theirs, dict):
            changes |= differences(value, theirs, f"{prefix}{field}.")
        elif value != theirs:
            changes[prefix + field] = (value, theirs)
    return changes


FULL = Protocol()
QUICK = Protocol(
    name="quick",
    main=FULL.main.model_copy(update={"repeats": 12, "epochs": 30, "epoch_cap": 120}),
    fresh=FULL.fresh.model_copy(update={"repeats": 8, "epochs": 30, "epoch_cap": 120}),
    pilot_repeats=3,
    sweep_correlations=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
    sweep_repeats=4,
    train_size=2_000,
    validation_size=500,
    test_size=500,
    patience=5,
    replicas_per_job=64,
    label_correlation_rows=5_000,
    label_correlation_draws=3,
)


@dataclass(frozen=True, order=True)
class Job:
    """Runs trained together as one batched model: one model, learning rate and setting."""

    setting: str
    study: str
    model: Architecture
    learning_rate: float


@dataclass(frozen=True, order=True)
class Run:
    job: Job
    correlation: float
    seed: int


def pilot_runs(protocol: Protocol, setting: DataSetting) -> list[Run]:
    """Every model, p in `correlations` and learning rate, on the pilot's own seeds."""
    seeds = range(protocol.pilot_seed_offset, protocol.pilot_seed_offset + protocol.pilot_repeats)
    return [
        Run(Job(setting.name, "pilot", model, rate), p, seed)
        for model in MODELS
        for rate in protocol.learning_rates
        for p in protocol.correlations
        for seed in seeds
    ]


def nearest_correlation(protocol: Protocol, p: float) -> float:
    """The piloted p closest to `p`, whose learning rate a sweep point borrows; ties go low."""
    return min(protocol.correlations, key=lambda piloted: (round(abs(piloted - p), 9), piloted))


def study_runs(
    protocol: Protocol, setting: DataSetting, chosen: dict[tuple[str, float], float]
) -> list[Run]:
    """The study, then (main setting only) the sweep, at the `chosen` learning rates.

    `chosen` maps (model, p) to a learning rate; a sweep point uses its nearest piloted p's.
    """
    runs = [
        Run(Job(setting.name, "study", model, chosen[model, p]), p, seed)
        for model in MODELS
        for p in protocol.correlations
        for seed in range(setting.repeats)
    ]
    if setting.name != protocol.main.name:
        return runs
    for p in protocol.sweep_correlations:
        for model in MODELS:
            rate = chosen[model, nearest_correlation(protocol, p)]
            runs += [
                Run(Job(setting.name, "sweep", model, rate), p, seed)
                for seed in range(protocol.sweep_repeats)
            ]
    return runs


def data_config(protocol: Protocol, setting: DataSetting, run: Run) -> SyntheticDataConfig:
    sinusoid_seed = run.seed if setting.sinusoid_seed is None else setting.sinusoid_seed
    return SyntheticDataConfig(
        correlation=run.correlation,
        scale=setting.scale,
        num_sinusoids=setting.num_sinusoids,
        sinusoid_seed=sinusoid_seed,
        noise_std=protocol.noise_std,
        train_size=protocol.train_size,
        validation_size=protocol.validation_size,
        test_size=protocol.test_size,
        seed=run.seed,
    )


def train_config(protocol: Protocol, job: Job) -> TrainConfig:
    """Pilots and the sweep stop early within the setting's budget; study runs may go on to its
    cap (no study run stops before the budget: see `min_epochs`)."""
    setting = protocol.setting(job.setting)
    return TrainConfig(
        learning_rate=job.learning_rate,
        batch_size=protocol.batch_size,
        epochs=setting.epoch_cap if job.study == "study" else setting.epochs,
        patience=protocol.patience,
    )


def min_epochs(protocol: Protocol, job: Job) -> int:
    """Epochs every run of `job` trains before early stopping may stop it: a study run's budget."""
    return protocol.setting(job.setting).epochs if job.study == "study" else 0
