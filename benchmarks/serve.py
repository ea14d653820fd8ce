"""Serving throughput: the service against the HTTP floor and a naive service, in one run.

Three servers answer the same bodies for the same model (the bundled one, copied to a temporary
repository), one after another, each a real uvicorn process on a loopback port:

- floor:   a bare ASGI app on uvloop + httptools returning the service's own response bytes
           (benchmarks/floor_app.py): what any Python server on this stack costs;
- naive:   FastAPI + a pydantic request model + PyTorch eager inference (benchmarks/naive_app.py);
- service: `python -m service` with its default settings (plus any --env).

wrk (https://github.com/wg/wrk) drives each point; the server runs pinned to one core and wrk to
another (taskset). Each point reports requests/s, rows/s, p50/p99 latency and the server's RSS.
The service also answers /v2 infer requests of 256 and 1024 rows with JSON and with binary
tensors, held to onnxruntime called in this process on the same batches (protocol_workloads.py).
A final soak runs the service for --soak-seconds and reports its RSS growth. Results go to
<out>/serve.json and <out>/serve.md (default out/benchmarks/, ignored by git; the committed
results are in benchmarks/results/: --out benchmarks/results).

    python benchmarks/serve.py                 # 8 s per point, 60 s soak: about 3 minutes
    python benchmarks/serve.py --quick --out /tmp/bench    # 1 s per point: a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from machine import add_out_argument
from protocol_workloads import V2_PATH, ProtocolWorkload, measure_protocol
from serve_report import environment, write_results

REPO_ROOT = Path(__file__).resolve().parents[1]
BUNDLED_MODEL = REPO_ROOT / "models" / "mmoe-synthetic" / "1"
WRK_HELP = (
    "wrk is not installed. Install it with `sudo apt-get install wrk` (Debian/Ubuntu), "
    "`brew install wrk` (macOS), or build it from https://github.com/wg/wrk; then rerun."
)
READY_DEADLINE_S = 90.0


@dataclass(frozen=True)
class Workload:
    name: str
    instances: int
    concurrency: int


WORKLOADS = [
    Workload("1 instance, concurrency 1", 1, 1),
    Workload("1 instance, concurrency 32", 1, 32),
    Workload("256 instances, concurrency 1", 256, 1),
    Workload("256 instances, concurrency 8", 256, 8),
]

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local file = io.open([[{body}]], "rb")
wrk.body = file:read("*a")
file:close()
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK_RESULT {{\\"requests\\": %d, \\"duration_us\\": %d, \\"bytes\\": %d, " ..
    "\\"connect_errors\\": %d, \\"read_errors\\": %d, \\"write_errors\\": %d, " ..
    "\\"status_errors\\": %d, \\"timeouts\\": %d, \\"p50_us\\": %d, \\"p99_us\\": %d, " ..
    "\\"mean_us\\": %.1f}}\\n",
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(99), latency.mean))
end
"""


def make_body(instances: int, dim: int) -> bytes:
    """A /predict body of `instances` rows; float32 values written as JSON clients write them."""
    rows = np.random.default_rng(instances).normal(0.0, 1.5, (instances, dim)).astype(np.float32)
    values = ", ".join("[" + ", ".join(repr(float(v)) for v in row) + "]" for row in rows)
    return b'{"instances": [' + values.encode() + b"]}"


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a process, its threads and its child processes (uvicorn
    workers; taskset execs, so the process is the server itself)."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            values = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # a process that ended meanwhile
            continue
        if stat.parent.name == str(pid) or values[1] == str(pid):  # itself, or a child
            ticks += int(values[11]) + int(values[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def pinned(command: list[str], cpus: str | None, niceness: int = 0) -> list[str]:
    """`command` on the given CPUs (taskset), at the given niceness."""
    command = ["taskset", "-c", cpus, *command] if cpus else command
    return ["nice", "-n", str(niceness), *command] if niceness else command


class Server:
    """One server process, started pinned, ready once `ready_path` answers 200."""

    def __init__(
        self,
        name: str,
        command: list[str],
        ready_path: str,
        env: dict[str, str],
        log: Path,
        cwd: Path = REPO_ROOT,
    ) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        self._log = log.open("wb")
        command = [part.replace("{port}", str(self.port)) for part in command]
        env = {key: value.replace("{port}", str(self.port)) for key, value in env.items()}
        self.process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + READY_DEADLINE_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{name} exited at start-up:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(self.url + ready_path, timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{name} was not ready within {READY_DEADLINE_S} s:\n{log.read_text()}")

    def post(self, body: bytes) -> bytes:
        request = urllib.request.Request(
            self.url + "/predict", body, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer: bytes = response.read()
            return answer

    def rss(self) -> int:
        return rss_bytes(self.process.pid)

    def cpu(self) -> float:
        return cpu_seconds(self.process.pid)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


def run_wrk(
    url: str,
    script: Path,
    concurrency: int,
    seconds: int,
    cpus: str | None,
    niceness: int = 0,
    path: str = "/predict",
) -> dict[str, Any]:
    command = pinned(
        ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script)],
        cpus,
        niceness,
    )
    completed = subprocess.run([*command, url + path], capture_output=True, text=True, check=False)
    for line in completed.stdout.splitlines():
        if line.startswith("WRK_RESULT "):
            result: dict[str, Any] = json.loads(line.removeprefix("WRK_RESULT "))
            return result
    raise RuntimeError(
        f"wrk failed ({completed.returncode}):\n{completed.stdout}{completed.stderr}"
    )


def measure(
    server: Server, scripts: dict[int, Path], args: argparse.Namespace
) -> list[dict[str, Any]]:
    return [
        measure_point(server, scripts[w.instances], w.name, w.instances, w.concurrency, args)
        for w in WORKLOADS
    ]


def measure_point(
    server: Server,
    script: Path,
    name: str,
    instances: int,
    concurrency: int,
    args: argparse.Namespace,
    path: str = "/predict",
) -> dict[str, Any]:
    client = (args.client_cpus, args.nice, path)
    if args.warmup:
        run_wrk(server.url, script, concurrency, args.warmup, *client)
    cpu_before = server.cpu()
    raw = run_wrk(server.url, script, concurrency, args.seconds, *client)
    cpu = server.cpu() - cpu_before
    seconds = raw["duration_us"] / 1e6
    errors = sum(raw[key] for key in raw if key.endswith("_errors") or key == "timeouts")
    point = {
        "workload": name,
        "instances": instances,
        "concurrency": concurrency,
        "requests_per_s": round(raw["requests"] / seconds, 1),
        "rows_per_s": round(raw["requests"] * instances / seconds, 1),
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "server_cpu_us_per_request": round(cpu * 1e6 / max(raw["requests"], 1), 1),
        "errors": errors,
        "rss_mb": round(server.rss() / 2**20, 1),
        "wrk": raw,
    }
    print(
        f"  {server.name:>8} | {name:<30} | {point['requests_per_s']:>9,.0f} req/s | "
        f"p50 {point['p50_ms']:.2f} ms | p99 {point['p99_ms']:.2f} ms | "
        f"cpu {point['server_cpu_us_per_request']:.0f} us/req | errors {errors}",
        flush=True,
    )
    if errors:
        raise RuntimeError(f"{server.name}: {errors} failed requests at {name}")
    return point


def measure_v2(server: Server, work: Path, dim: int, args: argparse.Namespace) -> dict[str, Any]:
    """The Open Inference Protocol's workloads (benchmarks/protocol_workloads.py)."""

    def point(w: ProtocolWorkload, script: Path) -> dict[str, Any]:
        return measure_point(server, script, w.name, w.rows, w.concurrency, args, V2_PATH)

    done = WRK_SCRIPT[WRK_SCRIPT.index("done = ") :].format()  # wrk's report, as above
    model = BUNDLED_MODEL / "model.onnx"

    def pin(command: list[str]) -> list[str]:
        return pinned(command, args.server_cpus, args.nice)

    seconds = max(args.seconds / 2, 0.5)  # the baseline before each point
    return measure_protocol(server.url, work, dim, model, done, point, seconds, pin)


def soak(server: Server, script: Path, args: argparse.Namespace) -> dict[str, Any]:
    """RSS before and after --soak-seconds of the busiest workload (1 instance, concurrency 32)."""
    before = server.rss()
    raw = run_wrk(server.url, script, 32, args.soak_seconds, args.client_cpus, args.nice)
    after = server.rss()
    return {
        "seconds": args.soak_seconds,
        "requests": raw["requests"],
        "rss_before_mb": round(before / 2**20, 1),
        "rss_after_mb": round(after / 2**20, 1),
        "rss_growth_percent": round(100 * (after - before) / before, 2),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="1 s per point, no warm-up, 1 s soak: a smoke run"
    )
    parser.add_argument("--seconds", type=int, default=8, help="seconds per point (8)")
    parser.add_argument("--warmup", type=int, default=1, help="warm-up seconds per point (1)")
    parser.add_argument("--soak-seconds", type=int, default=60, help="RSS soak run (60)")
    add_out_argument(parser)
    parser.add_argument(
        "--servers", nargs="+", default=["floor", "naive", "service"],
        choices=["floor", "naive", "service"], help="which servers to run (all three)",
    )  # fmt: skip
    parser.add_argument(
        "--env", action="append", default=[], metavar="MMOE_X=VALUE",
        help="a setting for the service (repeatable), e.g. --env MMOE_BATCHING=false",
    )  # fmt: skip
    parser.add_argument(
        "--baseline-commit", metavar="REV",
        help="also measure the service as it was at this git commit (server 'before')",
    )  # fmt: skip
    parser.add_argument(
        "--variant", action="append", default=[], metavar="NAME:MMOE_X=V,MMOE_Y=W",
        help="also measure the service with these settings, as server NAME (repeatable)",
    )  # fmt: skip
    parser.add_argument("--provider", default="cpu", help="MMOE_PROVIDER of the service (cpu)")
    parser.add_argument("--server-cpus", default="0", help="taskset CPU list of the server (0)")
    parser.add_argument("--client-cpus", default="1", help="taskset CPU list of wrk (1)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    parser.add_argument(
        "--no-protocol", action="store_true",
        help="skip the Open Inference Protocol workloads (/v2, JSON and binary tensors)",
    )  # fmt: skip
    parser.add_argument(
        "--nice", type=int, default=0,
        help="run servers and wrk at this niceness (negative needs root): on a shared machine, "
        "-5 keeps other people's jobs from adding their time slices to the measured latency",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.warmup, args.soak_seconds = 1, 0, 1
    if args.no_pin or not shutil.which("taskset"):
        args.server_cpus = args.client_cpus = None
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not shutil.which("wrk"):
        print(WRK_HELP, file=sys.stderr)
        return 2
    base_env = {key: value for key, value in os.environ.items() if not key.startswith("MMOE_")}
    service_env = base_env | {"MMOE_PROVIDER": args.provider, "MMOE_LOG_LEVEL": "warning"}
    service_env |= dict(item.split("=", 1) for item in args.env)
    dim = json.loads((BUNDLED_MODEL / "model.json").read_text())["input"]["dim"]
    load_before = os.getloadavg()
    started = time.monotonic()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as temporary:
        work = Path(temporary)
        model_dir = work / "models" / "mmoe-synthetic" / "1"
        shutil.copytree(BUNDLED_MODEL, model_dir)
        bodies = {n: make_body(n, dim) for n in sorted({w.instances for w in WORKLOADS})}
        scripts = {}
        for n, body in bodies.items():
            (work / f"body-{n}.json").write_bytes(body)
            scripts[n] = work / f"post-{n}.lua"
            scripts[n].write_text(WRK_SCRIPT.format(body=work / f"body-{n}.json"))
        python = [sys.executable]
        service_env["MMOE_MODEL_REPOSITORY"] = str(work / "models")
        service_env["MMOE_PORT"] = "{port}"
        service_command = pinned([*python, "-m", "service"], args.server_cpus, args.nice)
        # the service answers first: its responses are the floor's canned bytes
        service = Server("service", service_command, "/health/ready", service_env, work / "s.log")
        try:
            responses = {len(body): service.post(body).decode() for body in bodies.values()}
            if "service" in args.servers:
                print("service", flush=True)
                results["service"] = {"points": measure(service, scripts, args)}
                if not args.no_protocol:
                    results["service"]["protocol"] = measure_v2(service, work, dim, args)
                results["service"]["soak"] = soak(service, scripts[1], args)
        finally:
            service.stop()
        if args.baseline_commit:
            results["before"] = measure_before(args, service_command, service_env, scripts, work)
        for variant in args.variant:
            name, _, settings = variant.partition(":")
            env = service_env | dict(item.split("=", 1) for item in settings.split(",") if item)
            print(f"{name} ({settings})", flush=True)
            server = Server(name, service_command, "/health/ready", env, work / "variant.log")
            try:
                results[name] = {"settings": settings, "points": measure(server, scripts, args)}
            finally:
                server.stop()
        (work / "canned.json").write_text(json.dumps(responses))
        others = {
            "floor": [*python, "benchmarks/floor_app.py", "--port", "{port}",
                      "--responses", str(work / "canned.json")],
            "naive": [*python, "benchmarks/naive_app.py", "--port", "{port}",
                      "--model-dir", str(model_dir)],
        }  # fmt: skip
        ready = {"floor": "/", "naive": "/health"}
        for name in ("floor", "naive"):
            if name not in args.servers:
                continue
            print(name, flush=True)
            command = pinned(others[name], args.server_cpus, args.nice)
            server = Server(name, command, ready[name], base_env, work / f"{name}.log")
            try:
                if name == "naive":
                    check_same_answers(server, bodies, responses)
                results[name] = {"points": measure(server, scripts, args)}
            finally:
                server.stop()
    meta = environment(args, load_before, time.monotonic() - started)
    json_path, markdown_path = write_results(args.out, meta, results)
    print(f"wrote {json_path} and {markdown_path}")
    return 0


def measure_before(
    args: argparse.Namespace,
    command: list[str],
    env: dict[str, str],
    scripts: dict[int, Path],
    work: Path,
) -> dict[str, Any]:
    """The service package as it was at --baseline-commit, run from a directory of its own."""
    baseline = work / "baseline"
    baseline.mkdir()
    archive = subprocess.run(
        ["git", "archive", args.baseline_commit, "service"],
        cwd=REPO_ROOT, capture_output=True, check=True,
    ).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(baseline)], input=archive, check=True)
    print(f"before ({args.baseline_commit})", flush=True)
    server = Server("before", command, "/health/ready", env, work / "before.log", baseline)
    try:
        return {"commit": args.baseline_commit, "points": measure(server, scripts, args)}
    finally:
        server.stop()


def check_same_answers(server: Server, bodies: dict[int, bytes], responses: dict[int, str]) -> None:
    """The naive service must give the service's numbers (to float32 rounding) for each body."""
    for body in bodies.values():
        naive = json.loads(server.post(body))
        served = json.loads(responses[len(body)])
        for task, output in served["tasks"].items():
            for key in ("predictions", "gate_weights"):
                if not np.allclose(naive["tasks"][task][key], output[key], rtol=1e-4, atol=1e-5):
                    raise RuntimeError(f"naive and service disagree on {task} {key}")


if __name__ == "__main__":
    sys.exit(main())
