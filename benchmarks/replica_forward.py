"""Replica training steps: `training.stacked.StackedModel` vs a `vmap` of the module's own forward.

Both sides train the same R replicas (same initial weights, same batches) with the same loss and
Adam; only the forward differs: the baseline is `torch.func.vmap` over `functional_call` of the
repository's module (what the replica trainer used before `stacked.py`), the candidate the stacked
forward. Rounds alternate between the two in one process, so a busy machine slows both alike; the
best round of each is reported. Results go to <out>/replica_forward.{json,md}: by default
out/benchmarks/ (ignored by git); point --out at benchmarks/results to record a new result.

    python benchmarks/replica_forward.py                    # 100 replicas, batch 128
    python benchmarks/replica_forward.py --replicas 32 --steps 20
    python benchmarks/replica_forward.py --out benchmarks/results   # update the committed result
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from collections.abc import Callable

import torch
from machine import add_out_argument, describe_torch_run, torch_run_line
from torch import Tensor
from torch.func import functional_call, stack_module_state, vmap

from training.config import ModelConfig
from training.models import MultiTaskModel
from training.replicas import build_replicas
from training.stacked import StackedModel

ROWS, INPUT_DIM, TASKS = 10_000, 100, 2

Step = Callable[[Tensor, Tensor], None]


def vmap_step(models: list[MultiTaskModel]) -> Step:
    stacked, buffers = stack_module_state(list(models))
    parameters = {name: value.detach().requires_grad_() for name, value in stacked.items()}
    template = copy.deepcopy(models[0]).to("meta")
    optimizer = torch.optim.Adam(list(parameters.values()), lr=1e-3)

    def forward_one(params: dict, bufs: dict, features: Tensor) -> Tensor:
        outputs, _ = functional_call(template, (params, bufs), (features,))
        return outputs

    forward = vmap(forward_one)

    def step(features: Tensor, labels: Tensor) -> None:
        loss = ((forward(parameters, buffers, features) - labels) ** 2).mean(dim=1).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def stacked_step(models: list[MultiTaskModel]) -> Step:
    stacked = StackedModel(models)
    optimizer = torch.optim.Adam(list(stacked.parameters.values()), lr=1e-3)

    def step(features: Tensor, labels: Tensor) -> None:
        loss = ((stacked(features) - labels) ** 2).mean(dim=1).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def steps_per_second(step: Step, batches: list[tuple[Tensor, Tensor]]) -> float:
    started = time.perf_counter()
    for features, labels in batches:
        step(features, labels)
    return len(batches) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", type=int, default=100, help="R (default 100)")
    parser.add_argument("--batch", type=int, default=128, help="rows per step (default 128)")
    parser.add_argument("--steps", type=int, default=30, help="steps per round (default 30)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per side (default 5)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument(
        "--models", nargs="+", default=["shared_bottom", "omoe", "mmoe"], help="architectures"
    )
    add_out_argument(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(args.replicas, ROWS, INPUT_DIM, generator=generator)
    labels = torch.randn(args.replicas, ROWS, TASKS, generator=generator)
    rows = torch.arange(args.replicas).unsqueeze(1)
    batches = []
    for _ in range(args.steps):
        picked = torch.randint(0, ROWS, (args.replicas, args.batch), generator=generator)
        batches.append((features[rows, picked], labels[rows, picked]))
    load_before = os.getloadavg()
    results = []
    for architecture in args.models:
        models = build_replicas(
            ModelConfig(architecture=architecture), TASKS, range(args.replicas), features
        )
        sides = {"vmap": vmap_step(models), "stacked": stacked_step(models)}
        for step in sides.values():
            step(*batches[0])  # warm-up
        rates: dict[str, list[float]] = {name: [] for name in sides}
        for _ in range(args.rounds):
            for name, step in sides.items():
                rates[name].append(steps_per_second(step, batches))
        best = {name: max(values) for name, values in rates.items()}
        results.append(
            {
                "model": architecture,
                "vmap_steps_per_s": round(best["vmap"], 2),
                "stacked_steps_per_s": round(best["stacked"], 2),
                "speedup": round(best["stacked"] / best["vmap"], 2),
            }
        )
        print(results[-1], flush=True)
    result = {
        "benchmark": "replica_forward",
        **describe_torch_run(args.threads, load_before),
        "setup": {
            "replicas": args.replicas,
            "batch": args.batch,
            "steps_per_round": args.steps,
            "rounds": args.rounds,
        },
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "replica_forward.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Replica training steps: stacked forward vs vmap of the module",
        "",
        torch_run_line(result, "; rounds alternate, the best of each side is shown"),
        "",
        f"{args.replicas} replicas, batch {args.batch}: forward, backward and an Adam step, "
        f"{args.steps} steps per round, {args.rounds} rounds per side.",
        "",
        "| model | vmap steps/s | stacked steps/s | speed-up |",
        "|---|---|---|---|",
        *(
            f"| {r['model']} | {r['vmap_steps_per_s']} | {r['stacked_steps_per_s']} | "
            f"{r['speedup']}x |"
            for r in results
        ),
        "",
        "Reproduce: `make bench-replicas` (`python benchmarks/replica_forward.py`).",
        "",
    ]
    (args.out / "replica_forward.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
