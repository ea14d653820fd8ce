"""The paper's claims on the synthetic data, each checked with a paired statistic and its interval.

Every statistic is computed over the study's seeds, paired: seed s at p = 1 and seed s at p = 0.5
share their feature rows, noise and initialisation, and so do the three models at one seed. A
verdict follows from the 95 % bootstrap interval alone: "reproduced" when it excludes zero in the
paper's direction, "opposite" when it excludes zero the other way, else "not reproduced".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from training.experiments.protocol import MODEL_LABELS, Protocol
from training.experiments.summary import bootstrap_interval, losses_by_seed, paired, spread

Statistic = Callable[[dict[str, np.ndarray]], np.ndarray]


@dataclass(frozen=True)
class Finding:
    claim: str  # the paper's claim, in our words
    statistic: str  # what the numbers are
    estimate: float
    low: float
    high: float
    expected_sign: int  # +1: the paper expects a positive statistic, -1 a negative one

    @property
    def verdict(self) -> str:
        if self.expected_sign * self.low > 0 and self.expected_sign * self.high > 0:
            return "reproduced"
        if self.expected_sign * self.low < 0 and self.expected_sign * self.high < 0:
            return "opposite"
        return "not reproduced"

    def interval(self, digits: int = 4) -> str:
        return f"{self.estimate:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"


def study_columns(
    records: Sequence[dict], setting: str, correlations: Sequence[float]
) -> dict[str, np.ndarray]:
    """Paired final test losses, one column per (model, p), named like 'mmoe@0.5'."""
    return paired(
        {
            f"{model}@{p}": losses_by_seed(
                records, setting=setting, study="study", model=model, p=p
            )
            for model in ("shared_bottom", "omoe", "mmoe")
            for p in correlations
        }
    )


def _change(model: str, other: str, high: float, low: float) -> Statistic:
    """Median over seeds of [(model - other) at p = low] - [(model - other) at p = high]."""

    def statistic(c: dict[str, np.ndarray]) -> np.ndarray:
        at_low = c[f"{model}@{low}"] - c[f"{other}@{low}"]
        at_high = c[f"{model}@{high}"] - c[f"{other}@{high}"]
        return np.median(at_low - at_high, axis=-1)

    return statistic


def _gap(model: str, other: str, p: float) -> Statistic:
    return lambda c: np.median(c[f"{model}@{p}"] - c[f"{other}@{p}"], axis=-1)


def _rise(model: str, high: float, low: float) -> Statistic:
    return lambda c: np.median(c[f"{model}@{low}"] - c[f"{model}@{high}"], axis=-1)


def _spread_gap(model: str, other: str, p: float) -> Statistic:
    return lambda c: spread(c[f"{model}@{p}"]) - spread(c[f"{other}@{p}"])


def findings(records: Sequence[dict], protocol: Protocol, setting: str) -> list[Finding]:
    """The paper's claims checked on one setting's study, in the order the README lists them."""
    high, low = max(protocol.correlations), min(protocol.correlations)
    columns = study_columns(records, setting, protocol.correlations)

    def check(claim: str, statistic_text: str, statistic: Statistic, sign: int) -> Finding:
        estimate, lower, upper = bootstrap_interval(columns, statistic)
        return Finding(claim, statistic_text, estimate, lower, upper, sign)

    change = f"from p = {high:g} to p = {low:g}"
    result = [
        check(
            f"MMoE's loss rises less than OMoE's as p falls {change}",
            f"median over seeds of the change in MMoE − OMoE {change}",
            _change("mmoe", "omoe", high, low),
            -1,
        ),
        check(
            f"MMoE's loss rises less than Shared-Bottom's as p falls {change}",
            f"median over seeds of the change in MMoE − Shared-Bottom {change}",
            _change("mmoe", "shared_bottom", high, low),
            -1,
        ),
    ]
    for model in ("shared_bottom", "omoe", "mmoe"):
        result.append(
            check(
                f"{MODEL_LABELS[model]} does worse on less related tasks",
                f"median over seeds of {MODEL_LABELS[model]}'s loss change {change}",
                _rise(model, high, low),
                +1,
            )
        )
    for p in (high, low):
        result.append(
            check(
                f"MMoE beats Shared-Bottom at p = {p:g}",
                f"median over seeds of MMoE − Shared-Bottom at p = {p:g}",
                _gap("mmoe", "shared_bottom", p),
                -1,
            )
        )
    result.append(
        check(
            f"MMoE beats OMoE at p = {low:g}",
            f"median over seeds of MMoE − OMoE at p = {low:g}",
            _gap("mmoe", "omoe", low),
            -1,
        )
    )
    for p in (high, low):
        result.append(
            check(
                f"Shared-Bottom's final losses spread wider than MMoE's at p = {p:g} "
                "(trainability)",
                f"10-90 % range of Shared-Bottom's losses minus MMoE's at p = {p:g}",
                _spread_gap("shared_bottom", "mmoe", p),
                +1,
            )
        )
    return result
