"""What the experiments run, as data: the paper's protocol (`FULL`) and a laptop one (`QUICK`).

A run is one (model, p, learning rate, c, m, seed). The seed fixes the data draw (weight vectors,
features, noise) and the initialisation and batch order, and the same seeds are used for every model
and every p: common random numbers, so a difference between two cells comes from the model or p.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from service.contract import Architecture
from training.config import SyntheticDataConfig, TrainConfig

MODELS: tuple[Architecture, ...] = ("shared_bottom", "omoe", "mmoe")
MODEL_LABELS = {"shared_bottom": "Shared-Bottom", "omoe": "OMoE", "mmoe": "MMoE"}

_DATA = SyntheticDataConfig()
_TRAIN = TrainConfig()


class Protocol(BaseModel):
    """Sizes and grids of every study; defaults are the full protocol."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "full"
    repeats: int = Field(200, ge=1, description="runs per model and p in the main study")
    correlations: tuple[float, ...] = (1.0, 0.9, 0.5)
    sweep_correlations: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))
    sweep_repeats: int = Field(10, ge=1, description="runs per model and p in the fine sweep")
    learning_rates: tuple[float, ...] = (1e-4, 1e-3, 1e-2)
    lr_correlations: tuple[float, ...] = (0.9, 0.5)
    lr_repeats: int = Field(10, ge=1, description="runs per model, p and lr in the lr study")
    sensitivity: tuple[tuple[float, int], ...] = Field(
        ((1.0, 5), (2.0, 5), (3.0, 10)), description="(c, m) pairs besides the default"
    )
    sensitivity_correlations: tuple[float, ...] = (1.0, 0.5)
    sensitivity_repeats: int = 8
    scale: float = _DATA.scale
    num_sinusoids: int = _DATA.num_sinusoids
    learning_rate: float = _TRAIN.learning_rate
    train_size: int = _DATA.train_size
    validation_size: int = _DATA.validation_size
    test_size: int = _DATA.test_size
    epochs: int = _TRAIN.epochs
    patience: int = _TRAIN.patience
    batch_size: int = _TRAIN.batch_size
    replicas_per_job: int = Field(100, ge=1, description="replicas trained as one batched model")
    label_correlation_sinusoids: tuple[int, ...] = (1, 5, 20, 100)
    label_correlation_rows: int = 20_000
    label_correlation_draws: int = 5


FULL = Protocol()
QUICK = Protocol(
    name="quick",
    repeats=12,
    sweep_correlations=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
    sweep_repeats=4,
    lr_repeats=4,
    sensitivity_repeats=4,
    train_size=2_000,
    validation_size=500,
    test_size=500,
    epochs=40,
    patience=5,
    replicas_per_job=64,
    label_correlation_rows=5_000,
    label_correlation_draws=2,
)


@dataclass(frozen=True, order=True)
class Setting:
    """What the data and the optimiser look like for a group of runs; models and p vary inside."""

    learning_rate: float
    scale: float
    num_sinusoids: int


@dataclass(frozen=True, order=True)
class RunKey:
    setting: Setting
    correlation: float
    seed: int


def main_keys(protocol: Protocol) -> list[RunKey]:
    """The paper's main study: every p in `correlations`, `repeats` seeds, default setting."""
    default = Setting(protocol.learning_rate, protocol.scale, protocol.num_sinusoids)
    return [
        RunKey(default, p, seed) for p in protocol.correlations for seed in range(protocol.repeats)
    ]


def extra_keys(protocol: Protocol) -> list[RunKey]:
    """What the fine sweep, the learning-rate and the (c, m) studies add to the main study."""
    default = Setting(protocol.learning_rate, protocol.scale, protocol.num_sinusoids)
    keys: set[RunKey] = set()

    def add(setting: Setting, correlations: tuple[float, ...], repeats: int) -> None:
        keys.update(RunKey(setting, p, seed) for p in correlations for seed in range(repeats))

    add(default, protocol.sweep_correlations, protocol.sweep_repeats)
    for learning_rate in protocol.learning_rates:
        setting = Setting(learning_rate, protocol.scale, protocol.num_sinusoids)
        add(setting, protocol.lr_correlations, protocol.lr_repeats)
    for scale, num_sinusoids in protocol.sensitivity:
        setting = Setting(protocol.learning_rate, scale, num_sinusoids)
        add(setting, protocol.sensitivity_correlations, protocol.sensitivity_repeats)
    return sorted(keys - set(main_keys(protocol)))


def data_config(protocol: Protocol, key: RunKey) -> SyntheticDataConfig:
    return SyntheticDataConfig(
        correlation=key.correlation,
        scale=key.setting.scale,
        num_sinusoids=key.setting.num_sinusoids,
        train_size=protocol.train_size,
        validation_size=protocol.validation_size,
        test_size=protocol.test_size,
        seed=key.seed,
    )


def train_config(protocol: Protocol, setting: Setting) -> TrainConfig:
    return TrainConfig(
        learning_rate=setting.learning_rate,
        batch_size=protocol.batch_size,
        epochs=protocol.epochs,
        patience=protocol.patience,
    )
