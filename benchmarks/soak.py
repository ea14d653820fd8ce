"""Soak: the service under mixed traffic, valid and hostile, for a bounded time on loopback.

One `python -m service` process (default settings, the bundled models copied to a temporary
repository) and one asyncio client in this process with --concurrency workers, each drawing its
next request from a fixed mix:

- single:  one instance on /predict (each answer must equal the first answer to the same body,
           to within float32 rounding: onnxruntime's kernels round differently with the batch a
           row shares, so a micro-batched answer may differ from another in its last bits);
- batch:   64 instances;
- v2:      one row as an Open Inference Protocol JSON tensor (/v2/models/.../infer), held to the
           first answer the same way;
- invalid: a wrong feature count, a body that is not JSON, an unknown model, a /v2 tensor of the
           wrong shape (each its 4xx);
- aborted: a new connection that sends half a body and closes (nobody to answer).

First --baseline-seconds of single and batch requests alone (the baseline, in the same run), then
--seconds of the mix. Every window of --window-seconds records requests, the p50/p99 latency of
valid requests and the server's RSS. It fails (exit 1) on any unexpected status, connection
error or differing answer, or when the RSS grew 10 % or more from the end of the baseline to the
end of the mix. Results: <out>/soak.json and <out>/soak.md (default out/benchmarks/, ignored by
git; the committed record is benchmarks/results/: --out benchmarks/results).

    python benchmarks/soak.py                     # 10 s baseline + 60 s mix at concurrency 64
    python benchmarks/soak.py --seconds 3 --baseline-seconds 1 --out /tmp/soak   # smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from machine import REPO_ROOT, add_out_argument, cpu_model, package_version

MODELS = ["mmoe-synthetic", "mmoe-adult"]
MAX_RSS_GROWTH = 0.10
RTOL, ATOL = 1e-5, 1e-6  # float32 rounding, far below any real difference
READ_TIMEOUT_S = 30.0


def _body(instances: list[Any], **extra: Any) -> bytes:
    return json.dumps({"instances": instances, **extra}).encode()


def _tensor(rows: list[list[float]]) -> bytes:
    features = {"name": "features", "datatype": "FP32", "shape": [len(rows), len(rows[0])]}
    return json.dumps({"inputs": [features | {"data": rows}]}).encode()


ROW = [round(0.01 * i, 2) for i in range(100)]
PREDICT, V2_INFER = "/predict", "/v2/models/mmoe-synthetic/infer"
# kind -> (path, body, the statuses it may get)
REQUESTS: dict[str, tuple[str, bytes, set[int]]] = {
    "single": (PREDICT, _body([ROW]), {200}),
    "batch": (PREDICT, _body([ROW] * 64), {200}),
    "v2": (V2_INFER, _tensor([ROW]), {200}),
    "invalid: feature count": (PREDICT, _body([ROW[:99]]), {422}),
    "invalid: not JSON": (PREDICT, b'{"instances": [[1, 2,', {422}),
    "invalid: unknown model": (PREDICT, _body([ROW], model="no-such-model"), {404}),
    "invalid: v2 shape": (V2_INFER, _tensor([ROW[:99]]), {400}),
}
INVALID = [kind for kind in REQUESTS if kind.startswith("invalid")]
MIX = ["single"] * 7 + ["batch"] * 2 + ["v2"] * 2 + INVALID + ["aborted"]
BASELINE_MIX = ["single"] * 7 + ["batch"] * 2 + ["v2"] * 2


@dataclass
class Window:
    started: float
    latencies_ms: list[float] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    rss_mb: float = 0.0


@dataclass
class Record:
    windows: list[Window] = field(default_factory=list)
    unexpected: Counter[str] = field(default_factory=Counter)
    first_answers: dict[str, np.ndarray] = field(default_factory=dict)
    largest_difference: float = 0.0

    def compare(self, kind: str, answer: bytes) -> bool:
        """Whether `answer` equals the first answer to `kind`, to within float32 rounding."""
        parsed = json.loads(answer)
        if "outputs" in parsed:  # /v2
            values = np.concatenate([np.ravel(output["data"]) for output in parsed["outputs"]])
        else:
            values = np.array(
                [
                    [*task["predictions"], *np.ravel(task["gate_weights"] or [])]
                    for task in parsed["tasks"].values()
                ],
                dtype=np.float64,
            )
        first = self.first_answers.setdefault(kind, values)
        difference = float(np.max(np.abs(values - first)))
        self.largest_difference = max(self.largest_difference, difference)
        return bool(np.allclose(values, first, rtol=RTOL, atol=ATOL))

    def window(self) -> Window:
        return self.windows[-1]


def _request(path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: soak\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = dict(line.split(": ", 1) for line in lines[1:] if line)
    headers = {name.lower(): value for name, value in headers.items()}
    body = await reader.readexactly(int(headers["content-length"]))
    return status, body, headers.get("connection") == "close"


async def _abort(port: int) -> None:
    """Half a body on a new connection, then gone."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    path, body, _ = REQUESTS["batch"]
    writer.write(_request(path, body)[: len(body) // 2])
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def _worker(port: int, mix: list[str], deadline: float, record: Record, seed: int) -> None:
    draw = random.Random(seed)
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    while time.monotonic() < deadline:
        kind = draw.choice(mix)
        window = record.window()
        if kind == "aborted":
            try:
                await _abort(port)
                window.counts["aborted"] += 1
            except OSError as error:
                record.unexpected[f"aborted: {type(error).__name__}"] += 1
            continue
        path, body, expected = REQUESTS[kind]
        try:
            if connection is None:
                connection = await asyncio.open_connection("127.0.0.1", port)
            reader, writer = connection
            started = time.perf_counter()
            writer.write(_request(path, body))
            status, answer, closed = await asyncio.wait_for(_read_response(reader), READ_TIMEOUT_S)
            elapsed_ms = (time.perf_counter() - started) * 1e3
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as error:
            record.unexpected[f"{kind}: {type(error).__name__}"] += 1
            connection = None
            continue
        if closed:
            connection[1].close()
            connection = None
        window.counts[kind] += 1
        if status not in expected:
            record.unexpected[f"{kind}: status {status}"] += 1
        elif status == 200:
            window.latencies_ms.append(elapsed_ms)
            if not record.compare(kind, answer):
                record.unexpected[f"{kind}: a different answer to the same body"] += 1
    if connection is not None:
        connection[1].close()


async def _phase(
    port: int, mix: list[str], seconds: float, args: argparse.Namespace, record: Record, pid: int
) -> None:
    deadline = time.monotonic() + seconds
    record.windows.append(Window(time.monotonic()))
    workers = [
        asyncio.create_task(_worker(port, mix, deadline, record, seed))
        for seed in range(args.concurrency)
    ]
    server = psutil.Process(pid)
    while time.monotonic() < deadline:
        await asyncio.sleep(min(args.window_seconds, max(0.0, deadline - time.monotonic())))
        record.window().rss_mb = server.memory_info().rss / 2**20
        if time.monotonic() < deadline:
            record.windows.append(Window(time.monotonic()))
    await asyncio.gather(*workers)
    record.window().rss_mb = server.memory_info().rss / 2**20


def _summary(windows: list[Window], origin: float) -> list[dict[str, Any]]:
    rows = []
    for window in windows:
        latencies = np.array(window.latencies_ms or [np.nan])
        rows.append(
            {
                "t_s": round(window.started - origin, 1),
                "requests": dict(sorted(window.counts.items())),
                "p50_ms": round(float(np.percentile(latencies, 50)), 2),
                "p99_ms": round(float(np.percentile(latencies, 99)), 2),
                "rss_mb": round(window.rss_mb, 1),
            }
        )
    return rows


def _overall(windows: list[Window]) -> dict[str, Any]:
    latencies = np.array([x for window in windows for x in window.latencies_ms] or [np.nan])
    counts: Counter[str] = Counter()
    for window in windows:
        counts.update(window.counts)
    return {
        "requests": dict(sorted(counts.items())),
        "p50_ms": round(float(np.percentile(latencies, 50)), 2),
        "p99_ms": round(float(np.percentile(latencies, 99)), 2),
    }


def start_server(repository: Path, log_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMOE_")} | {
        "MMOE_MODEL_REPOSITORY": str(repository),
        "MMOE_PROVIDER": "cpu",
        "MMOE_PORT": str(port),
    }
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "service"], cwd=REPO_ROOT, env=env, stdout=log, stderr=log
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=1):
                return process, port
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"the server was not ready in 90 s:\n{log_path.read_text()}")


def _git_commit() -> str:
    completed = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    return completed.stdout.strip() or "unknown"


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def markdown(result: dict[str, Any]) -> str:
    machine, verdict = result["machine"], result["verdict"]
    lines = [
        "# Soak: mixed valid and hostile traffic",
        "",
        f"{result['date']}, commit {result['git_commit']}; {machine['cpu']}, {machine['cores']} "
        f"cores; load average {machine['load_average_before']} before, "
        f"{machine['load_average_after']} after (other people's jobs share this machine"
        f"{': ' + machine['note'] if machine['note'] else ''}). "
        f"Server: `python -m service`, default settings, one process; client: asyncio in one "
        f"process, concurrency {result['concurrency']}, on the same machine.",
        "",
        f"**{'PASS' if verdict['passed'] else 'FAIL'}**: {verdict['unexpected']} unexpected "
        f"outcomes; RSS {verdict['rss_start_mb']} MB at the end of the baseline, "
        f"{verdict['rss_end_mb']} MB at the end ({verdict['rss_growth'] * 100:+.1f} %, limit "
        f"+{MAX_RSS_GROWTH * 100:.0f} %). Answers to the same body differed by at most "
        f"{verdict['largest_answer_difference']:.3g} (float32 rounding with the batch they ran "
        "in).",
        "",
        "| phase | seconds | requests | p50 ms (valid) | p99 ms (valid) |",
        "|---|---:|---|---:|---:|",
    ]
    for phase in ("baseline", "mix"):
        data = result[phase]
        counts = ", ".join(f"{k} {v}" for k, v in data["overall"]["requests"].items())
        lines.append(
            f"| {phase} | {data['seconds']} | {counts} | {data['overall']['p50_ms']} | "
            f"{data['overall']['p99_ms']} |"
        )
    lines += ["", "Over time (windows of the mix):", "", "| t (s) | requests | p99 ms | RSS MB |"]
    lines.append("|---:|---:|---:|---:|")
    for row in result["mix"]["windows"]:
        lines.append(
            f"| {row['t_s']} | {sum(row['requests'].values())} | {row['p99_ms']} | "
            f"{row['rss_mb']} |"
        )
    if result["unexpected"]:
        lines += ["", "Unexpected: " + json.dumps(result["unexpected"])]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="the mix (60)")
    parser.add_argument("--baseline-seconds", type=float, default=10.0, help="valid only (10)")
    parser.add_argument("--concurrency", type=int, default=64, help="client workers (64)")
    parser.add_argument("--window-seconds", type=float, default=5.0, help="report window (5)")
    parser.add_argument(
        "--note", default="", help="what else ran on the machine meanwhile, for the record"
    )
    add_out_argument(parser)
    args = parser.parse_args(argv)

    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    try:
        for name in MODELS:
            shutil.copytree(REPO_ROOT / "models" / name / "1", work / "models" / name / "1")
        process, port = start_server(work / "models", work / "server.log")
        try:
            baseline, mix, pid = Record(), Record(), process.pid
            asyncio.run(_phase(port, BASELINE_MIX, args.baseline_seconds, args, baseline, pid))
            mix.first_answers = baseline.first_answers
            asyncio.run(_phase(port, MIX, args.seconds, args, mix, pid))
        finally:
            process.terminate()
            process.wait(timeout=60)
        log = (work / "server.log").read_text(errors="replace")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    unexpected = baseline.unexpected + mix.unexpected
    if "Traceback" in log:
        unexpected["server log: a traceback"] += log.count("Traceback")
    rss_start, rss_end = baseline.window().rss_mb, mix.window().rss_mb
    growth = (rss_end - rss_start) / rss_start
    origin = mix.windows[0].started
    result = {
        "benchmark": "soak",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git_commit": _git_commit(),
        "concurrency": args.concurrency,
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "note": args.note,
        },
        "software": {
            name: package_version(name)
            for name in ("uvicorn", "uvloop", "httptools", "onnxruntime")
        },
        "baseline": {
            "seconds": args.baseline_seconds,
            "overall": _overall(baseline.windows),
            "windows": _summary(baseline.windows, baseline.windows[0].started),
        },
        "mix": {
            "seconds": args.seconds,
            "overall": _overall(mix.windows),
            "windows": _summary(mix.windows, origin),
        },
        "unexpected": dict(unexpected),
        "verdict": {
            "unexpected": sum(unexpected.values()),
            "rss_start_mb": round(rss_start, 1),
            "rss_end_mb": round(rss_end, 1),
            "rss_growth": round(growth, 4),
            "largest_answer_difference": max(baseline.largest_difference, mix.largest_difference),
            "passed": not unexpected and growth < MAX_RSS_GROWTH,
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "soak.md").write_text(markdown(result))
    print(markdown(result))
    return 0 if result["verdict"]["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
