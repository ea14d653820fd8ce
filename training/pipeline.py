"""One training run end to end: data → model → training → held-out metrics → validated export.

Under torchrun every process prepares the same data and trains its shard of each batch; only
rank 0 evaluates, exports, publishes and promotes (the others return None).
"""

from __future__ import annotations

import hashlib
import logging
import math
import platform
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pyarrow
import torch

from service.contract import CARD_FILE, MODEL_FILE, ONNX_OPSET, gate_count
from service.model_card import ExpertSpec, ModelCard, OnnxSpec, TaskSpec
from training.batches import Shard
from training.config import ConfigError, RunConfig, SyntheticDataConfig
from training.data import PreparedData, prepare_synthetic
from training.export import InferenceGraph, expected_signature, export_onnx, validate_export
from training.export_triton import (
    TritonExport,
    TritonExportError,
    TritonExportOptions,
    export_triton,
)
from training.models import count_parameters
from training.promotion import PromotionDecision, current_card, decide
from training.publish import (
    check_destination,
    next_version,
    promote,
    promoted_version,
    publish_version,
)
from training.tabular.prepare import prepare_table
from training.trainer import ONE_PROCESS, TrainingResult, evaluate_rows, train

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunResult:
    path: Path | None  # None for a dry run
    card: ModelCard
    graph: InferenceGraph  # the trained PyTorch model as exported
    promotion: PromotionDecision | None  # None for a dry run
    triton: TritonExport | None = None  # the Triton export, when asked for and promoted


class ExportRefusedError(RuntimeError):
    """The trained model is not fit to publish (e.g. its metrics are not finite)."""


def prepare(config: RunConfig, shard: Shard = ONE_PROCESS) -> PreparedData:
    """The rows, tasks and initial model of a run, from the generator or from a table."""
    if isinstance(config.data, SyntheticDataConfig):
        return prepare_synthetic(config.data, config.train.seed)
    return prepare_table(config.data, config.train, shard)


def run(
    config: RunConfig,
    show_progress: bool = True,
    dry_run: bool = False,
    shard: Shard = ONE_PROCESS,
) -> RunResult | None:
    """Train, evaluate and (unless `dry_run`) export, publish and maybe promote one model.
    The destination is checked before any training. Not rank 0 of several processes: None."""
    export = config.export
    if export.name is None and not dry_run:
        raise ConfigError(
            "choose the model's name with --export.name NAME (models/NAME/<version>/); "
            "`make train` publishes the bundled recipe as mmoe-synthetic"
        )
    name = export.name or "dry-run"
    if not dry_run:
        check_destination(export.models_dir, name, export.version, export.overwrite)
    started = time.perf_counter()
    if config.train.threads is not None:
        torch.set_num_threads(config.train.threads)
    data = prepare(config, shard)
    task_names, task_types = data.task_names, data.task_types

    model = data.initial_model(config.model, config.train.seed)
    result = train(
        model,
        data.train,
        data.validation,
        task_types,
        config.train,
        show_progress=show_progress,
        task_names=task_names,
        test_rows=data.test if shard.rank == 0 else None,  # reported by rank 0 alone
        shard=shard,
    )
    if shard.rank != 0:
        return None
    model.cpu()
    graph = InferenceGraph(model, task_types)
    cpu = torch.device("cpu")
    metrics = {
        split_name: evaluate_rows(model, rows, task_types, cpu).metrics(task_names, task_types)
        for split_name, rows in (("validation", data.validation), ("test", data.test))
    }
    for task, values in metrics["test"].items():
        logger.info("test %s: %s", task, values)
    _refuse_non_finite(metrics)

    card = ModelCard(
        name=name,
        version=export.version or next_version(export.models_dir, name),
        architecture=config.model.architecture,
        tasks=[TaskSpec(name=n, type=t) for n, t in zip(task_names, task_types, strict=True)],
        input=data.input,
        categorical=data.categorical,
        experts=_expert_spec(config, len(task_names)),
        onnx=OnnxSpec(
            file=MODEL_FILE, opset=ONNX_OPSET, outputs=expected_signature(graph, len(task_names))
        ),
        parameters=count_parameters(model),
        metrics=metrics,
        data=data.description,
        training=_training_record(config, result, time.perf_counter() - started, shard),
        software=_software_versions(),
        created_at=datetime.now(UTC).replace(microsecond=0),
    )
    if dry_run:
        return RunResult(None, card, graph, None)

    def write(directory: Path, version: int) -> None:
        versioned = card.model_copy(update={"version": version})
        onnx_path = directory / MODEL_FILE
        export_onnx(graph, onnx_path, versioned.embedded().model_dump_json())
        validate_export(
            onnx_path, graph, data.export_checks, card.onnx.outputs, export.rtol, export.atol
        )
        digest = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
        onnx_spec = card.onnx.model_copy(update={"sha256": digest})
        final_card = versioned.model_copy(update={"onnx": onnx_spec})
        (directory / CARD_FILE).write_text(final_card.model_dump_json(indent=2) + "\n")

    path, version = publish_version(
        export.models_dir, name, export.version, write, export.overwrite
    )
    final_card = ModelCard.model_validate_json((path / CARD_FILE).read_text())
    logger.info("exported %s version %d to %s", name, version, path)
    current = current_card(export.models_dir, name, excluding=version)
    decision = decide(export.promote, final_card, current, export.promote_tolerance)
    if decision.promote:
        promote(export.models_dir, name, version, decision.reason)
    elif current is not None and promoted_version(export.models_dir, name) is None:
        # Without a pointer the highest version is served: pin the one served until now.
        reason = f"kept: version {version} was not promoted ({decision.reason})"
        promote(export.models_dir, name, current.version, reason)
    triton = None
    if export.triton_dir is not None and decision.promote:
        options = TritonExportOptions(
            device=export.triton_device, storage_uri=export.triton_storage_uri
        )
        try:
            triton = export_triton(path, export.triton_dir, options)
        except TritonExportError as error:
            raise TritonExportError(
                f"version {version} is published and promoted, but the Triton export failed: "
                f"{error}"
            ) from None
    return RunResult(path, final_card, graph, decision, triton)


def _refuse_non_finite(metrics: dict[str, dict[str, dict[str, float | None]]]) -> None:
    for split, per_task in metrics.items():
        for task, values in per_task.items():
            for metric, value in values.items():
                if value is not None and not math.isfinite(value):
                    raise ExportRefusedError(
                        f"the {split} {metric} of {task} is {value}: training diverged or the "
                        "data hold non-finite values; nothing was exported (lower "
                        "--train.learning_rate, or check the data)"
                    )


def _expert_spec(config: RunConfig, num_tasks: int) -> ExpertSpec:
    model = config.model
    if model.architecture == "shared_bottom":
        return ExpertSpec(count=0, units=model.bottom_units, gates=0)
    gates = gate_count(model.architecture, num_tasks)
    return ExpertSpec(count=model.num_experts, units=model.expert_units, gates=gates)


def _training_record(
    config: RunConfig, result: TrainingResult, seconds: float, shard: Shard
) -> dict:
    return {
        "model": config.model.model_dump(),
        "train": config.train.model_dump(),
        "processes": shard.world_size,
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "stopped_early": result.stopped_early,
        "best_validation_loss": result.best_validation_loss,
        "seconds": round(seconds, 2),
        "history": [
            {k: v for k, v in record.items() if k != "validation_task_losses"}
            for record in result.history
        ],
    }


def _software_versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
        "pyarrow": pyarrow.__version__,
    }
