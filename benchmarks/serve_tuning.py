"""Which intra-op threads, inference concurrency, inline rows and workers suit this machine?

Runs the service (`python -m service`) once per combination of settings, on every core (not
pinned: the point is how the service uses a whole machine; wrk shares it, as any client on the
same host would), and measures the throughput workloads of `benchmarks/serve.py` plus the
single-client latency. Results go to <out>/serve_tuning.{json,md}; the service's defaults come
from this table (docs/deploy.md says how to tune them elsewhere).

    python benchmarks/serve_tuning.py                      # 5 s per point, about 3 minutes
    python benchmarks/serve_tuning.py --quick --out /tmp/tuning
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from machine import add_out_argument
from serve import (
    BUNDLED_MODEL,
    WRK_HELP,
    WRK_SCRIPT,
    Server,
    make_body,
    pinned,
    run_wrk,
)
from serve_report import environment

POINTS = [(1, 1), (1, 32), (256, 8)]  # (instances, concurrency)
GRID = {
    "MMOE_INTRA_OP_THREADS": ["1", "2"],
    "MMOE_INFERENCE_CONCURRENCY": ["1", "2"],
    "MMOE_INLINE_MAX_ROWS": ["16", "256"],
    "MMOE_WORKERS": ["1", "2"],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1 s per point: a smoke run")
    parser.add_argument("--seconds", type=int, default=5, help="seconds per point (5)")
    add_out_argument(parser)
    parser.add_argument("--nice", type=int, default=0, help="niceness of servers and wrk")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds = 1
    if not shutil.which("wrk"):
        print(WRK_HELP, file=sys.stderr)
        return 2
    base_env = {key: value for key, value in os.environ.items() if not key.startswith("MMOE_")}
    dim = json.loads((BUNDLED_MODEL / "model.json").read_text())["input"]["dim"]
    load_before = os.getloadavg()
    started = time.monotonic()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-tuning-") as temporary:
        work = Path(temporary)
        shutil.copytree(BUNDLED_MODEL, work / "models" / "mmoe-synthetic" / "1")
        scripts = {}
        for n in sorted({n for n, _ in POINTS}):
            (work / f"body-{n}.json").write_bytes(make_body(n, dim))
            scripts[n] = work / f"post-{n}.lua"
            scripts[n].write_text(WRK_SCRIPT.format(body=work / f"body-{n}.json"))
        for values in itertools.product(*GRID.values()):
            settings = dict(zip(GRID, values, strict=True))
            env = base_env | settings | {
                "MMOE_MODEL_REPOSITORY": str(work / "models"),
                "MMOE_PROVIDER": "cpu",
                "MMOE_LOG_LEVEL": "warning",
                "MMOE_PORT": "{port}",
            }  # fmt: skip
            command = pinned([sys.executable, "-m", "service"], None, args.nice)
            server = Server("service", command, "/health/ready", env, work / "service.log")
            row: dict[str, Any] = {"settings": settings}
            try:
                for instances, concurrency in POINTS:
                    script = scripts[instances]
                    run_wrk(server.url, script, concurrency, 1, None, args.nice)  # warm-up
                    cpu_before = server.cpu()
                    raw = run_wrk(server.url, script, concurrency, args.seconds, None, args.nice)
                    cpu = server.cpu() - cpu_before
                    rate = raw["requests"] / (raw["duration_us"] / 1e6)
                    row[f"{instances}x{concurrency}"] = {
                        "requests_per_s": round(rate, 1),
                        "server_cpu_us_per_request": round(cpu * 1e6 / max(raw["requests"], 1)),
                        "p50_ms": raw["p50_us"] / 1000,
                        "p99_ms": raw["p99_us"] / 1000,
                        "errors": raw["status_errors"] + raw["timeouts"],
                    }
            finally:
                server.stop()
            rows.append(row)
            print(json.dumps(row), flush=True)
    args.env, args.provider, args.server_cpus, args.client_cpus = [], "cpu", None, None
    meta = environment(args, load_before, time.monotonic() - started)
    meta["benchmark"] = "serve_tuning"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serve_tuning.json").write_text(json.dumps({**meta, "results": rows}, indent=2))
    (args.out / "serve_tuning.md").write_text(markdown(meta, rows))
    print(f"wrote {args.out / 'serve_tuning.json'} and {args.out / 'serve_tuning.md'}")
    return 0


def markdown(meta: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    load = meta["machine"]["load_average_before"]
    quick = " (--quick: a smoke run, not a measurement)" if meta["quick"] else ""
    lines = [
        "# Serving settings on this machine: threads, concurrency, inline rows, workers",
        "",
        f"{meta['date']}, commit {meta['git_commit']}{quick}; {meta['machine']['cpu']}, "
        f"{meta['machine']['cores']} cores, server and wrk (1 thread) not pinned, at niceness "
        f"{meta['machine']['niceness']}; "
        f"{meta['seconds_per_point']:g} s per point after a 1 s warm-up; load average before "
        f"{load[0]} / {load[1]} / {load[2]}, after {meta['machine']['load_average_after'][0]}.",
        "",
        "Each cell: throughput, p99 latency, and the server's CPU time per request (all its "
        "threads and workers).",
        "",
        "| intra-op threads | inference concurrency | inline rows | workers | "
        "1 instance, c=1: req/s, p99 ms, CPU µs | 1 instance, c=32: req/s, p99 ms, CPU µs | "
        "256 instances, c=8: rows/s, p99 ms, CPU µs |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        settings = row["settings"]
        cells = [
            f"{row[key]['requests_per_s'] * scale:,.0f}, {row[key]['p99_ms']:.1f}, "
            f"{row[key]['server_cpu_us_per_request']:,}"
            for key, scale in (("1x1", 1), ("1x32", 1), ("256x8", 256))
        ]
        lines.append(
            f"| {settings['MMOE_INTRA_OP_THREADS']} | {settings['MMOE_INFERENCE_CONCURRENCY']} | "
            f"{settings['MMOE_INLINE_MAX_ROWS']} | {settings['MMOE_WORKERS']} | "
            + " | ".join(cells)
            + " |"
        )
    lines += ["", "Reproduce: `python benchmarks/serve_tuning.py`.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
