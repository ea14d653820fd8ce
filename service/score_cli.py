"""`mmoe-score INPUT --out OUTPUT`: score a CSV or Parquet file, in this process or through a
running server, in batches, with a progress bar. Needs the `score` extra (pyarrow, tqdm)."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from service.client import ClientError, MMoEClient, Prediction
from service.contract import VERSION_RULE, parse_version
from service.errors import ModelLoadError, ServiceError
from service.settings import Settings

if TYPE_CHECKING:
    from service.scoring import Scorer

EXIT_FAILED = 1  # the model cannot be loaded or the server cannot answer
EXIT_USAGE = 2  # bad options, or an input that cannot be scored (a missing column, ...)

EPILOG = """\
examples:
  mmoe-score rows.parquet --out scored.parquet                  # in this process, models/
  mmoe-score rows.csv --out scored.csv --gates --keep id        # + gate columns, + the id column
  mmoe-score rows.csv --out scored.parquet --url http://127.0.0.1:8000   # through a server

The input has one column per feature, named as the model's card names them (the bundled model:
x_1 ... x_100; mmoe-adult: its numeric and categorical columns, text for the categories, an empty
cell where a value is missing); other columns are ignored unless --keep copies them. The output
has, in input order, the kept columns, one column per task (named by the task), and with --gates
one column per gate and expert: gate_<task>_e<i> (MMoE) or gate_shared_e<i> (OMoE). The output is
written to a temporary file and moved into place at the end: a failed run leaves none.

exit status: 0 scored; 1 the model cannot be loaded or the server cannot answer; 2 bad options
or an input that cannot be scored (a missing column, an empty or non-numeric value, ...)."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    pass


def version_argument(text: str) -> int | Literal["latest"]:
    if text == "latest":
        return "latest"
    try:
        return parse_version(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: {VERSION_RULE}, or 'latest'") from None


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmoe-score",
        description="Score a CSV or Parquet file: per-task predictions (and gate weights) for "
        "every row, with onnxruntime in this process or through a running server (--url).",
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("input", type=Path, metavar="INPUT", help="a .csv or .parquet file")
    parser.add_argument(
        "--out", type=Path, required=True, metavar="OUTPUT", help="a .csv or .parquet file"
    )
    parser.add_argument(
        "--url",
        help="score through the server at this URL; without it the model runs in this process",
    )
    default_repository = Settings.model_fields["model_repository"].default
    parser.add_argument(
        "--model-repository",
        type=Path,
        default=default_repository,
        metavar="DIR",
        help="in this process: the model repository",
    )
    parser.add_argument(
        "--model",
        metavar="NAME",
        help="the model (default: mmoe-synthetic in this process, the server's default with --url)",
    )
    parser.add_argument(
        "--version", type=version_argument, default="latest", help="a version number, or latest"
    )
    parser.add_argument("--gates", action="store_true", help="also write the gate weights")
    parser.add_argument(
        "--keep",
        action="append",
        default=[],
        metavar="COLUMN",
        help="copy this input column to the output (repeat for more), e.g. an id",
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=4096, help="rows read and scored at a time"
    )
    parser.add_argument(
        "--provider",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="in this process: the onnxruntime execution provider",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    missing = [name for name in ("pyarrow", "tqdm") if importlib.util.find_spec(name) is None]
    if missing:
        print(
            f"mmoe-score: error: {' and '.join(missing)} not installed; mmoe-score needs the "
            "`score` extra: pip install 'mmoe-service[score]'",
            file=sys.stderr,
        )
        return EXIT_USAGE
    from service.scoring import ScoringError
    from service.tables import TableError

    try:
        return score(arguments)
    except (TableError, ScoringError) as error:
        print(f"mmoe-score: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (ModelLoadError, ServiceError, ClientError) as error:
        print(f"mmoe-score: error: {error}", file=sys.stderr)
        return EXIT_FAILED


def score(arguments: argparse.Namespace) -> int:
    from tqdm import tqdm

    from service.scoring import (
        LocalScorer,
        RemoteScorer,
        feature_columns,
        features_of,
        output_batch,
        output_names,
        records_of,
    )
    from service.tables import TableReader, TableWriter

    reader = TableReader(arguments.input)
    scorer: Scorer
    if arguments.url:
        client = MMoEClient(arguments.url)
        scorer = RemoteScorer(client, arguments.model, arguments.version)
        where = arguments.url
    else:
        name = arguments.model or Settings.model_fields["model_name"].default
        scorer = LocalScorer(
            arguments.model_repository, name, arguments.version, arguments.provider
        )
        where = f"onnxruntime in this process, {scorer.served.provider}"
    spec, keep, gates = scorer.spec, arguments.keep, arguments.gates
    features = feature_columns(spec, reader.columns(), keep)
    output_names(spec, keep, gates)  # a name clash is an error before any work
    writer = TableWriter(arguments.out, arguments.overwrite)
    progress = tqdm(
        total=reader.progress_total,
        unit="row" if reader.progress_unit == "rows" else "B",
        unit_scale=True,
        desc=f"scoring {arguments.input.name}",
        disable=arguments.quiet,
    )
    rows = 0
    try:
        columns = list(dict.fromkeys([*features, *keep]))
        numeric = spec.feature_names if spec.records else features
        batches = reader.batches(
            columns, numeric, arguments.batch_size, progress.update, text=spec.categorical
        )
        for batch in batches:
            if spec.records:
                answer = score_records(scorer, records_of(batch, spec, rows), gates, rows)
            else:
                answer = scorer.score(features_of(batch, features, rows), gates)
            writer.write(output_batch(batch, keep, spec, answer, gates))
            rows += batch.num_rows
        writer.commit()
    except BaseException:
        writer.discard()
        raise
    finally:
        progress.close()
    if not arguments.quiet:
        print(
            f"mmoe-score: {rows} rows scored by {spec.model.name} version {spec.model.version} "
            f"({where}) -> {arguments.out}",
            file=sys.stderr,
        )
    return 0


def score_records(
    scorer: Scorer, records: list[dict[str, Any]], gates: bool, first_row: int
) -> Prediction:
    """The model's encoder names a bad value by its instance in the batch; say its row."""
    from service.scoring import ScoringError

    try:
        return scorer.score(records, gates)
    except ServiceError as error:
        if error.status != 422:
            raise
        raise ScoringError(
            f"rows {first_row + 1}-{first_row + len(records)}: {error} (instance i is row "
            f"{first_row + 1} + i)"
        ) from None


if __name__ == "__main__":
    sys.exit(main())
