"""JSON body -> float32 array: the ways we tried, on the same bodies, in one process.

- plain:      what the service's plain path does (`service.payload`: orjson.loads, the envelope's
              checks, np.array, one set of value types, a finiteness check);
- simdjson:   what the fast path does (`service.payload_fast`: simdjson hands every number over as
              one buffer of doubles, then float32 and a finiteness check);
- orjson + fromiter: orjson.loads, then np.fromiter over the flattened rows straight into float32
              (no type check: it would accept "1.5" and true);
- fromstring: the numbers parsed straight into a float32 array by numpy's text parser, after
              turning brackets into commas (no JSON validation at all: a lower bound on what a
              hand-written parser could hope for in numpy).

Each is timed as the best of several repeats on bodies of 1 to 1024 rows of the bundled model's
100 features, written as Python writes float32 values it got from numpy (`repr(float(x))`), and
checked to give the same array as the plain path. Results: <out>/parse_bodies.{json,md}.

    python benchmarks/parse_bodies.py
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from itertools import chain

import numpy as np
import orjson
from machine import add_out_argument, cpu_model
from serve import make_body

from service.payload import decode_request, instances_to_array
from service.payload_fast import decode_array_body, to_float32

DIM = 100
ROWS = [1, 32, 256, 1024]
BRACKETS_TO_SPACES = bytes.maketrans(b"[]", b"  ")


def plain(body: bytes) -> np.ndarray:
    request = decode_request(body, 4096)
    return instances_to_array(request.instances, DIM, None)


def simdjson_buffer(body: bytes) -> np.ndarray:
    decoded = decode_array_body(body, 4096)
    assert decoded is not None
    features = to_float32(decoded.values)
    assert features is not None
    return features


def orjson_fromiter(body: bytes) -> np.ndarray:
    rows = orjson.loads(body)["instances"]
    flat = np.fromiter(chain.from_iterable(rows), np.float32, count=len(rows) * DIM)
    return flat.reshape(len(rows), DIM)


def fromstring(body: bytes) -> np.ndarray:
    start, stop = body.index(b"[") + 1, body.rindex(b"]")
    text = body[start:stop].translate(BRACKETS_TO_SPACES).decode()
    return np.fromstring(text, dtype=np.float32, sep=",").reshape(-1, DIM)


WAYS: dict[str, Callable[[bytes], np.ndarray]] = {
    "plain (orjson + np.array)": plain,
    "simdjson buffer (fast path)": simdjson_buffer,
    "orjson + np.fromiter": orjson_fromiter,
    "np.fromstring": fromstring,
}


def best_seconds(function: Callable[[bytes], np.ndarray], body: bytes, budget_s: float) -> float:
    function(body)
    repeats = max(1, int(budget_s / 5 / max(_once(function, body), 1e-6)))
    return min(_once(function, body, repeats) for _ in range(5))


def _once(function: Callable[[bytes], np.ndarray], body: bytes, repeats: int = 1) -> float:
    started = time.perf_counter()
    for _ in range(repeats):
        function(body)
    return (time.perf_counter() - started) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="time per way and size")
    add_out_argument(parser)
    args = parser.parse_args()
    load_before = os.getloadavg()
    results = []
    for rows in ROWS:
        body = make_body(rows, DIM)
        reference = plain(body)
        row: dict[str, object] = {"rows": rows, "body_bytes": len(body)}
        for name, function in WAYS.items():
            np.testing.assert_array_equal(function(body), reference, err_msg=name)
            row[name] = round(best_seconds(function, body, args.seconds) * 1e6, 1)
        results.append(row)
        print(row, flush=True)
    record = {
        "benchmark": "parse_bodies",
        "date": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "load_average_before": load_before,
        },
        "microseconds": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "parse_bodies.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [
        "# JSON body to float32 array: microseconds per body (best of 5)",
        "",
        f"{record['date']}; {record['machine']['cpu']}, {record['machine']['cores']} cores; load "
        f"average before {load_before[0]:.2f} (a shared machine); one process, one thread.",
        "",
        "| rows | body bytes | " + " | ".join(WAYS) + " |",
        "|---:|---:|" + "---:|" * len(WAYS),
        *(
            f"| {r['rows']} | {r['body_bytes']:,} | "
            + " | ".join(f"{r[name]:,}" for name in WAYS)
            + " |"
            for r in results
        ),
        "",
        "Only the first two check what the service must check (a JSON document, numbers only, "
        "every row of one length); the service keeps the simdjson buffer for array bodies and "
        "the plain path for everything else. Reproduce: `python benchmarks/parse_bodies.py`.",
        "",
    ]
    (args.out / "parse_bodies.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
