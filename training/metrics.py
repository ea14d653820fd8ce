"""Held-out metrics per task, in numpy: what the model card records."""

from __future__ import annotations

import numpy as np


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve by the rank-sum formula, ties averaged; None with one class."""
    positives = labels > 0.5
    num_positive = int(positives.sum())
    num_negative = labels.size - num_positive
    if num_positive == 0 or num_negative == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(scores.size, dtype=np.float64)
    sorted_scores = scores[order]
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average_ranks = first + (counts + 1) / 2.0  # 1-based average rank of each tie group
    ranks[order] = np.repeat(average_ranks, counts)
    rank_sum = ranks[positives].sum()
    return float((rank_sum - num_positive * (num_positive + 1) / 2) / (num_positive * num_negative))


def task_metrics(task_type: str, labels: np.ndarray, predictions: np.ndarray) -> dict:
    """Regression: mse, mae. Binary (predictions are probabilities): log_loss, accuracy, auc."""
    labels = labels.astype(np.float64)
    predictions = predictions.astype(np.float64)
    if task_type == "regression":
        errors = predictions - labels
        return {"mse": float(np.mean(errors**2)), "mae": float(np.mean(np.abs(errors)))}
    clipped = np.clip(predictions, 1e-7, 1 - 1e-7)
    log_loss = -np.mean(labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped))
    return {
        "log_loss": float(log_loss),
        "accuracy": float(np.mean((predictions > 0.5) == (labels > 0.5))),
        "auc": roc_auc(labels, predictions),
    }
