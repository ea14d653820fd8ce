"""`python -m training` / `mmoe-train`: train one model and export it into the model repository.

Every config field is an option named `--<section>.<field>`, generated from the config models, so
`--help` lists them all with their defaults and the command line can never fall behind the config.
Precedence: defaults < `--config FILE` < options.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from tqdm.contrib.logging import logging_redirect_tqdm

from service.logs import LOG_FORMATS, configure_logging
from training.config import (
    ConfigError,
    ExportConfig,
    ModelConfig,
    RunConfig,
    SyntheticDataConfig,
    TabularDataConfig,
    TrainConfig,
    build_config,
    merge,
    read_config_file,
)

# (section, its config model, the group's title in --help); `data` has one model per kind.
OPTION_GROUPS: list[tuple[str, type[BaseModel], str]] = [
    (
        "data",
        SyntheticDataConfig,
        "synthetic data, --data.kind synthetic (the default; Ma et al. 2018, section 5.1)",
    ),
    ("data", TabularDataConfig, "a table, --data.kind tabular (CSV or Parquet files)"),
    ("model", ModelConfig, "model architecture"),
    ("train", TrainConfig, "training"),
    ("export", ExportConfig, "ONNX export and model repository"),
]


def _takes_json(annotation: Any) -> bool:
    """Lists and objects are given as JSON on the command line."""
    return any(
        typing.get_origin(arg) in (list, dict) for arg in (annotation, *typing.get_args(annotation))
    )


def _field(section: str, name: str) -> Any:
    """The pydantic field behind `--section.name` (for `data`, whichever kind has it)."""
    for group_section, model, _ in OPTION_GROUPS:
        if group_section == section and name in model.model_fields:
            return model.model_fields[name]
    raise KeyError(f"{section}.{name}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmoe-train",
        description=(
            "Train a Shared-Bottom, OMoE or MMoE model on the paper's synthetic data or on a table "
            "(CSV or Parquet) and export it as a validated ONNX model version to "
            "<export.models_dir>/<export.name>/<version>/. The new version becomes the one served "
            "by default only if its held-out metrics are not worse than the current one's (see "
            "--export.promote); otherwise it is kept as a candidate. The destination is checked "
            "before training starts. Under torchrun, every process trains its share of each "
            "batch (DDP) and rank 0 exports."
        ),
        epilog=(
            "Examples:\n"
            "  mmoe-train --export.name mmoe-synthetic      # the bundled default model's recipe\n"
            "  mmoe-train --data.correlation 0.9 --model.architecture omoe --export.name omoe-p09\n"
            "  mmoe-train --config configs/omoe-p09.toml --train.epochs 5\n"
            "  mmoe-train --config configs/omoe-p09.toml --dry-run   # metrics only, no export\n"
            "  mmoe-train --config configs/mmoe-adult.toml  # UCI Adult, two binary tasks\n"
            "  torchrun --standalone --nproc-per-node 2 -m training \\\n"
            "      --config configs/mmoe-adult.toml          # data-parallel, 2 processes\n"
            "  mmoe-train --export.name mmoe-synthetic --export.triton_dir triton-models\n"
            "Lists and objects take JSON: --train.loss_weights '[1, 0.5]'. Paths are relative to "
            "the directory you run in."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="JSON or TOML file with any of the sections below; options override it",
    )
    parser.add_argument(
        "--print-config", action="store_true", help="print the resolved config as JSON and exit"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="train and evaluate, print the held-out metrics, export nothing",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging level (default: INFO)",
    )
    parser.add_argument(
        "--log-format",
        default="text",
        choices=LOG_FORMATS,
        help="text, or json: one object per line (time, level, logger, message) (default: text)",
    )
    parser.add_argument(
        "--data.kind",
        dest="data.kind",
        choices=["synthetic", "tabular"],
        default=argparse.SUPPRESS,
        help="where the rows come from (default: synthetic)",
    )
    for section, section_model, title in OPTION_GROUPS:
        group = parser.add_argument_group(title)
        for name, option in section_model.model_fields.items():
            if name == "kind":
                continue
            described = option.description or ""
            if option.is_required():
                described += " (required)"
            elif "default" not in described:  # some descriptions say what their default means
                default = option.get_default(call_default_factory=True)
                shown = json.dumps(default) if isinstance(default, list | bool | None) else default
                described += f" (default: {shown})"
            group.add_argument(
                f"--{section}.{name}",
                dest=f"{section}.{name}",
                metavar="JSON" if _takes_json(option.annotation) else "VALUE",
                default=argparse.SUPPRESS,
                help=described,
            )
    return parser


def _overrides(arguments: argparse.Namespace) -> dict[str, Any]:
    """Turn `--section.field value` options into a nested dict; list fields take JSON."""
    nested: dict[str, Any] = {}
    for key, value in vars(arguments).items():
        if "." not in key:
            continue
        section, name = key.split(".", 1)
        annotation = None if name == "kind" else _field(section, name).annotation
        if _takes_json(annotation) or value.lower() in ("null", "none"):
            try:
                value = json.loads(value) if value.lower() != "none" else None
            except json.JSONDecodeError:
                raise ConfigError(f"--{key}: expected JSON such as [1, 2], got {value!r}") from None
        nested.setdefault(section, {})[name] = value
    return nested


def resolve_config(arguments: argparse.Namespace) -> RunConfig:
    raw = read_config_file(arguments.config) if arguments.config else {}
    return build_config(merge(raw, _overrides(arguments)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    arguments = parser.parse_args(argv)
    configure_logging(arguments.log_level, arguments.log_format)
    for chatty in ("onnxscript", "onnx_ir"):  # the exporter's pass-by-pass INFO lines
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        config = resolve_config(arguments)
    except ConfigError as error:
        parser.exit(2, f"mmoe-train: error: {error}\n")
    if arguments.print_config:
        print(config.model_dump_json(indent=2))
        return 0

    from training import distributed  # torch loads only when needed
    from training.export_triton import TritonExportError, describe
    from training.pipeline import ExportRefusedError, run
    from training.publish import PublishError
    from training.tabular.reader import DataError

    shard = distributed.join(config.train.device)
    if shard.rank != 0:
        logging.getLogger().setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        with logging_redirect_tqdm():
            result = run(
                config, show_progress=not arguments.quiet, dry_run=arguments.dry_run, shard=shard
            )
    except ConfigError as error:
        parser.exit(2, f"mmoe-train: error: {error}\n")
    except (PublishError, ExportRefusedError, DataError, TritonExportError) as error:
        parser.exit(1, f"mmoe-train: error: {error}\n")
    finally:
        distributed.leave()
    if result is None:  # not rank 0: rank 0 exports and reports
        return 0
    card = result.card
    if result.path is None:
        print("dry run: nothing exported")
    else:
        print(f"exported {card.name} version {card.version} to {result.path}")
    print(f"held-out test metrics: {json.dumps(card.metrics['test'])}")
    if result.promotion is not None:
        if result.promotion.promote:
            print(
                f"promoted: version {card.version} is served by default ({result.promotion.reason})"
            )
        else:
            print(
                f"not promoted: {result.promotion.reason}; version {card.version} stays a "
                f"candidate, served only when a request names it; promote it with: python -m "
                f"training.promotion {card.name} {card.version} --models-dir "
                f"{config.export.models_dir}"
            )
    if result.triton is not None:
        print("\n".join(describe(result.triton, config.export.triton_device)))
    elif config.export.triton_dir is not None and result.path is not None:
        print(
            f"not exported for Triton: version {card.version} is not the promoted version; "
            f"export it by hand with: python -m training.export_triton {result.path} "
            f"{config.export.triton_dir}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
