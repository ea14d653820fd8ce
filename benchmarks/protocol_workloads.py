"""The Open Inference Protocol's part of the serving benchmark (benchmarks/serve.py): /v2 infer
requests of 256 and 1024 rows with JSON and with binary tensors, against the service already
running, and the baseline they are held to: onnxruntime called in this process on the same
batches, its session made as the service makes it, pinned to the server's CPUs. The target: binary
requests of 1024 rows reach at least 0.5 x the in-process rows/s."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

V2_PATH = "/v2/models/mmoe-synthetic/infer"

WRK_V2_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "{content_type}"
{extra_header}
local file = io.open([[{body}]], "rb")
wrk.body = file:read("*a")
file:close()
"""


@dataclass(frozen=True)
class ProtocolWorkload:
    name: str
    rows: int
    binary: bool
    concurrency: int


PROTOCOL_WORKLOADS = [
    ProtocolWorkload(f"v2 {form} {rows} rows, concurrency {concurrency}", rows, form == "binary",
                     concurrency)
    for rows in (256, 1024)
    for concurrency in (1, 4)
    for form in ("json", "binary")
]  # fmt: skip


def batch(rows: int, dim: int) -> np.ndarray:
    return np.random.default_rng(rows).normal(0.0, 1.5, (rows, dim)).astype(np.float32)


def v2_body(features: np.ndarray, binary: bool) -> tuple[bytes, int | None]:
    """An infer body for `features` and, for binary tensors, its JSON part's length. Binary:
    every output comes back as binary data; JSON: every output as JSON."""
    tensor: dict[str, object] = {
        "name": "features",
        "shape": list(features.shape),
        "datatype": "FP32",
    }
    if not binary:
        tensor["data"] = features.ravel()
        return orjson.dumps({"inputs": [tensor]}, option=orjson.OPT_SERIALIZE_NUMPY), None
    tensor["parameters"] = {"binary_data_size": features.nbytes}
    header = orjson.dumps({"inputs": [tensor], "parameters": {"binary_data_output": True}})
    return header + features.tobytes(), len(header)


def wrk_script(body_path: Path, header_length: int | None, done: str) -> str:
    extra = (
        f'wrk.headers["Inference-Header-Content-Length"] = "{header_length}"'
        if header_length is not None
        else ""
    )
    content_type = "application/json" if header_length is None else "application/octet-stream"
    script = WRK_V2_SCRIPT.format(content_type=content_type, extra_header=extra, body=body_path)
    return script + done


def onnxruntime_rows_per_s(
    model_file: Path, features: np.ndarray, seconds: float
) -> dict[str, float]:
    """onnxruntime run in this process on one batch for `seconds`: rows/s, and wall and CPU time
    per call. The session is made as the service makes it (service.runtime.OnnxSession: CPU
    provider, no spinning), one intra-op thread per CPU this process may use."""
    from service.runtime import OnnxSession, RuntimeOptions

    threads = len(os.sched_getaffinity(0))
    session = OnnxSession(model_file.read_bytes(), str(model_file), RuntimeOptions("cpu", threads))
    for _ in range(20):  # warm-up
        session.run(["predictions", "gates"], {"features": features})
    calls, started, cpu_started = 0, time.perf_counter(), time.process_time()
    while (elapsed := time.perf_counter() - started) < seconds or calls < 20:
        session.run(["predictions", "gates"], {"features": features})
        calls += 1
    cpu = time.process_time() - cpu_started
    return {
        "rows_per_s": round(calls * len(features) / elapsed, 1),
        "ms_per_call": round(1000 * elapsed / calls, 3),
        "cpu_us_per_call": round(1e6 * cpu / calls, 1),
        "threads": threads,
    }


def pinned_baseline(
    pin: Callable[[list[str]], list[str]], model_file: Path, rows: int, dim: int, seconds: float
) -> dict[str, float]:
    """`onnxruntime_rows_per_s` in a process of its own, pinned and niced as the server is."""
    command = pin([sys.executable, __file__, str(model_file), str(rows), str(dim), str(seconds)])
    completed = subprocess.run(command, capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(completed.stdout)
    return result


def answer(url: str, body: bytes, header_length: int | None) -> dict[str, np.ndarray]:
    """Post one infer body; the output arrays, whichever form they came back in."""
    headers = {"Content-Type": "application/json"}
    if header_length is not None:
        headers = {
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(header_length),
        }
    request = urllib.request.Request(url + V2_PATH, body, headers)
    with urllib.request.urlopen(request, timeout=60) as response:
        content: bytes = response.read()
        length = response.headers.get("Inference-Header-Content-Length")
    split = len(content) if length is None else int(length)
    offset, arrays = split, {}
    for output in orjson.loads(content[:split])["outputs"]:
        if "data" in output:
            array = np.array(output["data"], dtype=np.float32)
        else:
            size = output["parameters"]["binary_data_size"]
            array = np.frombuffer(content[offset : offset + size], dtype=np.float32)
            offset += size
        arrays[output["name"]] = array.reshape(output["shape"])
    return arrays


def measure_protocol(
    url: str,
    work: Path,
    dim: int,
    model_file: Path,
    wrk_done: str,
    measure_point: Callable[[ProtocolWorkload, Path], dict[str, Any]],
    baseline_seconds: float,
    pin: Callable[[list[str]], list[str]],
) -> dict[str, Any]:
    """Every protocol workload against the service at `url` (one `measure_point` each, wrk's
    result), after checking that JSON and binary answers agree bit for bit. Before each point,
    the in-process onnxruntime baseline on the same batch, pinned and niced as the server
    (`pin`); each point's rows/s as a fraction of it, and the baseline's CPU time per call as a
    fraction of the server's CPU time per request (the same comparison, less moved by load)."""
    batches = {rows: batch(rows, dim) for rows in sorted({w.rows for w in PROTOCOL_WORKLOADS})}
    scripts: dict[tuple[int, bool], Path] = {}
    for rows, features in batches.items():
        forms = {binary: v2_body(features, binary) for binary in (False, True)}
        json_answer, binary_answer = (answer(url, *forms[binary]) for binary in (False, True))
        for name, array in json_answer.items():
            if array.tobytes() != binary_answer[name].tobytes():
                raise RuntimeError(f"{rows} rows: JSON and binary {name} differ")
        for binary, (body, length) in forms.items():
            form = "binary" if binary else "json"
            (work / f"v2-{rows}-{form}.body").write_bytes(body)
            script = work / f"v2-{rows}-{form}.lua"
            script.write_text(wrk_script(work / f"v2-{rows}-{form}.body", length, wrk_done))
            scripts[rows, binary] = script
    points = []
    for workload in PROTOCOL_WORKLOADS:
        # the baseline just before each point: the machine is shared, its load drifts
        baseline = pinned_baseline(pin, model_file, workload.rows, dim, baseline_seconds)
        point = measure_point(workload, scripts[workload.rows, workload.binary])
        point["form"] = "binary" if workload.binary else "json"
        point["onnxruntime_in_process"] = baseline
        point["to_onnxruntime"] = round(point["rows_per_s"] / baseline["rows_per_s"], 3)
        cpu_ratio = baseline["cpu_us_per_call"] / point["server_cpu_us_per_request"]
        point["cpu_to_onnxruntime"] = round(cpu_ratio, 3)
        points.append(point)
    return {"points": points}


if __name__ == "__main__":  # the pinned baseline's own process: MODEL_FILE ROWS DIM SECONDS
    model_path, count, dimension, duration = sys.argv[1:5]
    features = batch(int(count), int(dimension))
    print(json.dumps(onnxruntime_rows_per_s(Path(model_path), features, float(duration))))
