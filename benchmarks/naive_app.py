"""The naive baseline: the service as it is usually first written, for the benchmark only.

FastAPI with a pydantic request model (`instances: list[list[float]]`, validated value by value),
a plain `def` route (FastAPI runs it in its thread pool), PyTorch eager inference of the very same
weights, and a dict response serialised by FastAPI. It runs on the same uvicorn stack (uvloop,
httptools, no access log) as the service, so the difference is the application alone.

The weights are the ONNX file's own initialisers loaded into the training package's model, and
the start-up checks that PyTorch and onnxruntime agree on them. This lives in `benchmarks/`,
never in the product: the service never imports torch.

    python benchmarks/naive_app.py --port 8200 --model-dir models/mmoe-synthetic/1
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import torch
import uvicorn
from fastapi import FastAPI
from onnx import numpy_helper
from pydantic import BaseModel

from training.config import ModelConfig
from training.export import InferenceGraph
from training.models import build_model


class PredictRequest(BaseModel):
    instances: list[list[float]]
    return_gates: bool = True


def load_torch_graph(model_dir: Path) -> tuple[InferenceGraph, dict[str, Any]]:
    """The model in `model_dir` as a PyTorch module, weights taken from its ONNX file."""
    card = json.loads((model_dir / "model.json").read_text())
    tasks = card["tasks"]
    model = build_model(ModelConfig(**card["training"]["model"]), card["input"]["dim"], len(tasks))
    graph = InferenceGraph(model, [task["type"] for task in tasks])
    wanted = graph.state_dict()
    # Models exported before the input layer was renamed name its statistics model.normalizer.*
    renamed = {"model.normalizer.": "model.inputs."}
    weights = {}
    for initializer in onnx.load(str(model_dir / "model.onnx")).graph.initializer:
        name = initializer.name
        for old, new in renamed.items():
            if name.startswith(old) and name not in wanted:
                name = new + name.removeprefix(old)
        if name in wanted:
            weights[name] = torch.from_numpy(numpy_helper.to_array(initializer).copy())
    graph.load_state_dict(weights, strict=True)
    graph.eval()
    check_against_onnxruntime(graph, model_dir, card["input"]["dim"])
    return graph, card


def check_against_onnxruntime(graph: InferenceGraph, model_dir: Path, dim: int) -> None:
    features = np.random.default_rng(0).normal(0.0, 1.5, (64, dim)).astype(np.float32)
    session = onnxruntime.InferenceSession(
        str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    expected = session.run(graph.output_names, {"features": features})
    with torch.no_grad():
        actual = graph(torch.from_numpy(features))
    for name, want, got in zip(graph.output_names, expected, actual, strict=True):
        if not np.allclose(want, got.numpy(), rtol=1e-4, atol=1e-5):
            raise SystemExit(f"the PyTorch copy of {model_dir} disagrees with it on {name!r}")


def create_app(model_dir: Path) -> FastAPI:
    graph, card = load_torch_graph(model_dir)
    task_names = [task["name"] for task in card["tasks"]]
    reference = {
        "name": card["name"],
        "version": card["version"],
        "architecture": card["architecture"],
    }
    app = FastAPI(title="naive baseline")

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ready"}

    @app.post("/predict")
    def predict(request: PredictRequest) -> dict[str, Any]:
        features = torch.tensor(request.instances, dtype=torch.float32)
        with torch.no_grad():
            outputs = graph(features)
        predictions = outputs[0]
        gates = outputs[1] if len(outputs) > 1 and request.return_gates else None
        tasks = {}
        for index, task in enumerate(task_names):
            gate_weights = None
            if gates is not None:
                gate_weights = gates[:, index if gates.shape[1] > 1 else 0].tolist()
            tasks[task] = {
                "predictions": predictions[:, index].tolist(),
                "gate_weights": gate_weights,
            }
        return {"model": reference, "tasks": tasks}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--model-dir", type=Path, required=True, help="<repository>/<name>/<version>"
    )
    args = parser.parse_args()
    uvicorn.run(
        create_app(args.model_dir),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
