"""The quality gate: a new version is served by default only if it is not worse."""

import pytest

from service.model_card import ModelCard, TaskSpec
from tests.support import bundled_version_dir
from training.promotion import PromotionDecision, decide

BUNDLED = ModelCard.model_validate_json((bundled_version_dir() / "model.json").read_bytes())


def card(version: int, mse: tuple[float, float]) -> ModelCard:
    metrics = {"test": {"task_1": {"mse": mse[0]}, "task_2": {"mse": mse[1]}}}
    return BUNDLED.model_copy(update={"version": version, "metrics": metrics})


def binary_card(version: int, auc: float | None) -> ModelCard:
    tasks = [TaskSpec(name="income", type="binary")]
    metrics = {"test": {"income": {"auc": auc, "log_loss": 0.3}}}
    return BUNDLED.model_copy(update={"version": version, "tasks": tasks, "metrics": metrics})


def test_the_first_version_is_promoted():
    assert decide("if-better", card(1, (0.03, 0.03)), None, 0.01) == PromotionDecision(
        True, "the first version of mmoe-synthetic"
    )


@pytest.mark.parametrize(
    ("new", "promoted", "reason"),
    [
        ((0.0301, 0.0290), True, "not worse than version 1 beyond 1% (task_1 mse 0.0301 vs "
         "0.03; task_2 mse 0.029 vs 0.03)"),
        ((0.0304, 0.0290), False, "worse than version 1 beyond 1% on ['task_1'] (task_1 mse "
         "0.0304 vs 0.03; task_2 mse 0.029 vs 0.03)"),
        ((0.43, 0.44), False, "worse than version 1 beyond 1% on ['task_1', 'task_2'] (task_1 "
         "mse 0.43 vs 0.03; task_2 mse 0.44 vs 0.03)"),
    ],
)  # fmt: skip
def test_if_better_compares_every_tasks_test_mse(new, promoted, reason):
    decision = decide("if-better", card(2, new), card(1, (0.03, 0.03)), 0.01)
    assert decision == PromotionDecision(promoted, reason)


def test_binary_tasks_compare_auc_where_higher_is_better():
    current = binary_card(1, 0.90)
    assert decide("if-better", binary_card(2, 0.895), current, 0.01).promote
    assert not decide("if-better", binary_card(2, 0.88), current, 0.01).promote
    assert decide("if-better", binary_card(2, None), current, 0.01) == PromotionDecision(
        False, "no test auc to compare for income"
    )


def test_versions_with_other_tasks_are_not_compared():
    assert decide("if-better", binary_card(2, 0.99), card(1, (0.03, 0.03)), 0.01) == (
        PromotionDecision(
            False, "its tasks differ from version 1's, so their metrics cannot be compared"
        )
    )


def test_always_and_never_override_the_metrics():
    worse, current = card(2, (1.0, 1.0)), card(1, (0.03, 0.03))
    assert decide("always", worse, current, 0.01) == PromotionDecision(
        True, "--export.promote always"
    )
    better = card(2, (0.01, 0.01))
    assert decide("never", better, current, 0.01) == PromotionDecision(
        False, "--export.promote never"
    )
