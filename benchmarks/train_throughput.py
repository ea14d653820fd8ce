"""Training throughput: R replicas trained as one batched model vs the same R trained one by one.

Both sides train the same replicas (same seeds, data, initialisation, batch order, epochs; early
stopping off) in the same process, so the ratio is fair on a noisy machine; the baseline is the
repository's single-model trainer, `training.trainer.train`. Samples per second counts training
rows seen (replicas x rows x epochs). Results go to <out>/train_throughput.{json,md}: by default
out/benchmarks/ (ignored by git), so a trial run never overwrites the committed
benchmarks/results/; point --out there to record a new result.

    python benchmarks/train_throughput.py                     # 64 replicas, 10,000 rows, 2 epochs
    python benchmarks/train_throughput.py --replicas 16 --epochs 1 --threads 2
    python benchmarks/train_throughput.py --out benchmarks/results   # update the committed result
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
from machine import add_out_argument, describe_torch_run, torch_run_line

from training import synthetic
from training.config import ModelConfig, SyntheticDataConfig, TrainConfig
from training.replicas import ReplicaSplits, build_replicas, train_replicas
from training.trainer import TensorSplit, initial_model, train

TASKS = ["regression", "regression"]


def datasets(replicas: int, rows: int) -> list[synthetic.SyntheticDataset]:
    return [
        synthetic.generate(
            SyntheticDataConfig(train_size=rows, validation_size=1000, test_size=1, seed=seed)
        )
        for seed in range(replicas)
    ]


def batched_seconds(architecture: str, data: list, config: TrainConfig) -> float:
    seeds = list(range(len(data)))
    train_split = ReplicaSplits.from_numpy(
        [d.train.features for d in data], [d.train.labels for d in data]
    )
    validation = ReplicaSplits.from_numpy(
        [d.validation.features for d in data], [d.validation.labels for d in data]
    )
    models = build_replicas(ModelConfig(architecture=architecture), 2, seeds, train_split.features)
    started = time.perf_counter()
    train_replicas(models, seeds, train_split, validation, TASKS, config, show_progress=False)
    return time.perf_counter() - started


def sequential_seconds(architecture: str, data: list, config: TrainConfig) -> float:
    total = 0.0
    for seed, dataset in enumerate(data):
        train_split = TensorSplit.from_numpy(dataset.train.features, dataset.train.labels)
        model_config = ModelConfig(architecture=architecture)
        model = initial_model(model_config, train_split.features, 2, seed)
        validation = TensorSplit.from_numpy(dataset.validation.features, dataset.validation.labels)
        started = time.perf_counter()
        train(
            model, train_split, validation, TASKS, config.model_copy(update={"seed": seed}), False
        )
        total += time.perf_counter() - started
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", type=int, default=64, help="R, runs per side (default 64)")
    parser.add_argument("--rows", type=int, default=10_000, help="training rows per run")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run (no early stop)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument(
        "--models", nargs="+", default=["shared_bottom", "omoe", "mmoe"], help="architectures"
    )
    add_out_argument(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = TrainConfig(epochs=args.epochs, patience=args.epochs + 1)
    data = datasets(args.replicas, args.rows)
    samples = args.replicas * args.rows * args.epochs
    load_before = os.getloadavg()
    rows = []
    for architecture in args.models:
        batched = batched_seconds(architecture, data, config)
        sequential = sequential_seconds(architecture, data, config)
        rows.append(
            {
                "model": architecture,
                "batched_samples_per_s": round(samples / batched),
                "sequential_samples_per_s": round(samples / sequential),
                "batched_seconds": round(batched, 2),
                "sequential_seconds": round(sequential, 2),
                "speedup": round(sequential / batched, 2),
            }
        )
        print(rows[-1], flush=True)
    result = {
        "benchmark": "train_throughput",
        **describe_torch_run(args.threads, load_before),
        "setup": {
            "replicas": args.replicas,
            "train_rows": args.rows,
            "validation_rows": 1000,
            "epochs": args.epochs,
            "batch_size": config.batch_size,
        },
        "results": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train_throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Training throughput: batched replicas vs one run after another",
        "",
        torch_run_line(result),
        "",
        f"{args.replicas} replicas x {args.rows} training rows x {args.epochs} epochs, batch "
        f"{config.batch_size}, plus a 1000-row validation pass per epoch (not counted as samples).",
        "",
        "| model | batched samples/s | sequential samples/s | speed-up |",
        "|---|---|---|---|",
        *(
            f"| {r['model']} | {r['batched_samples_per_s']:,} | "
            f"{r['sequential_samples_per_s']:,} | {r['speedup']}x |"
            for r in rows
        ),
        "",
        "Reproduce: `make bench-train` (`python benchmarks/train_throughput.py`).",
        "",
    ]
    (args.out / "train_throughput.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
