"""The Open Inference Protocol's part of the serving benchmark (benchmarks/serve.py): /v2 infer
bodies with JSON and with binary tensors, and the baseline they are held to, onnxruntime called
in this process on the same batches, with the service's own session settings and threads, pinned
to the server's CPUs."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

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
    model_file: Path, batches: dict[int, np.ndarray], seconds: float, cpus: set[int] | None
) -> dict[int, dict[str, float]]:
    """Rows/s of onnxruntime run in this process on each batch, the session made as the service
    makes it (service.runtime.OnnxSession: CPU provider, as many intra-op threads as the
    server's CPUs, no spinning), this process pinned to those CPUs while it runs."""
    from service.runtime import OnnxSession, RuntimeOptions

    before = os.sched_getaffinity(0)
    threads = len(cpus) if cpus else len(before)
    session = OnnxSession(model_file.read_bytes(), str(model_file), RuntimeOptions("cpu", threads))
    results: dict[int, dict[str, float]] = {}
    try:
        if cpus:
            os.sched_setaffinity(0, cpus)
        for rows, features in batches.items():
            for _ in range(20):  # warm-up
                session.run(["predictions", "gates"], {"features": features})
            calls, started = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - started) < seconds or calls < 20:
                session.run(["predictions", "gates"], {"features": features})
                calls += 1
            results[rows] = {
                "rows_per_s": round(calls * rows / elapsed, 1),
                "ms_per_call": round(1000 * elapsed / calls, 3),
                "threads": threads,
            }
    finally:
        os.sched_setaffinity(0, before)
    return results
