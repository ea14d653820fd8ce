"""Which version a model serves by default: the quality gate after an export, and promoting by hand.

After a version is published it becomes the served default (`models/<name>/promoted.json`) only
as the export's `promote` policy says: `always`, `never`, or `if-better`, where every task's
held-out test metric must not be worse than the currently promoted version's beyond a relative
tolerance (MSE for regression, AUC for binary tasks). A version that is not promoted stays in the
repository as a candidate: the service serves it when a request names its number.

    python -m training.promotion mmoe-synthetic 3 [--models-dir models]   # promote by hand
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from service.contract import CARD_FILE, parse_version
from service.model_card import ModelCard
from training.publish import existing_versions, promote, promoted_version


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reason: str


def current_card(models_dir: Path, name: str, excluding: int) -> ModelCard | None:
    """The card of the version served by default now (promoted, else the highest), ignoring
    `excluding` (the version just published)."""
    current = promoted_version(models_dir, name)
    if current is None or current == excluding:
        others = [v for v in existing_versions(models_dir, name) if v != excluding]
        current = others[-1] if others else None
    if current is None:
        return None
    path = models_dir / name / str(current) / CARD_FILE
    return ModelCard.model_validate_json(path.read_bytes())


def decide(
    policy: str, candidate: ModelCard, current: ModelCard | None, tolerance: float
) -> PromotionDecision:
    if policy == "always":
        return PromotionDecision(True, "--export.promote always")
    if policy == "never":
        return PromotionDecision(False, "--export.promote never")
    if current is None:
        return PromotionDecision(True, f"the first version of {candidate.name}")
    if [(t.name, t.type) for t in candidate.tasks] != [(t.name, t.type) for t in current.tasks]:
        return PromotionDecision(
            False,
            f"its tasks differ from version {current.version}'s, so their metrics cannot be "
            "compared",
        )
    worse, compared = [], []
    for task in candidate.tasks:
        metric, higher_is_better = ("auc", True) if task.type == "binary" else ("mse", False)
        new = candidate.metrics["test"][task.name].get(metric)
        old = current.metrics["test"][task.name].get(metric)
        if new is None or old is None:
            return PromotionDecision(False, f"no test {metric} to compare for {task.name}")
        limit = old * (1 - tolerance) if higher_is_better else old * (1 + tolerance)
        is_worse = new < limit if higher_is_better else new > limit
        compared.append(f"{task.name} {metric} {new:.6g} vs {old:.6g}")
        if is_worse:
            worse.append(task.name)
    summary = "; ".join(compared)
    if worse:
        return PromotionDecision(
            False,
            f"worse than version {current.version} beyond {tolerance:.0%} on {worse} ({summary})",
        )
    return PromotionDecision(
        True, f"not worse than version {current.version} beyond {tolerance:.0%} ({summary})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.promotion",
        description="Make a published version the one the service serves by default "
        "(models/<name>/promoted.json). The service reads it at start-up.",
    )
    parser.add_argument("name", help="model name")
    parser.add_argument("version", help="version to promote")
    parser.add_argument("--models-dir", type=Path, default=Path("models"), help="(default: models)")
    arguments = parser.parse_args(argv)
    try:
        version = parse_version(arguments.version)
    except ValueError as error:
        parser.error(str(error))
    if version not in existing_versions(arguments.models_dir, arguments.name):
        parser.exit(
            1, f"error: {arguments.models_dir / arguments.name / str(version)} does not exist\n"
        )
    promote(arguments.models_dir, arguments.name, version, "promoted by hand")
    print(f"{arguments.name} version {version} is now served by default (after a restart)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
