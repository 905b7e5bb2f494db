"""Sequential latency of a running gateway, from exact per-request times.

    .venv/bin/python examples/latency_probe.py --url http://127.0.0.1:8080 --n 300 [--batch 8] [--api-key KEY]

Sends the example payload (examples/predict_request.json) one request at a time over one keep-alive
connection, after a warm-up, and prints client-side p50/p99 and the gateway's own stage times
(preprocess / predict / postprocess, from the responses). Not a load test: see benchmarks/ for that.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import httpx
import numpy as np

EXAMPLE = Path(__file__).resolve().parent / "predict_request.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--payload", type=Path, default=EXAMPLE)
    parser.add_argument("--n", type=int, default=300, help="timed requests")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--batch", type=int, default=0, help="cars per /predict/batch call (0: /predict)")
    parser.add_argument("--api-key", default=None)
    args = parser.parse_args()

    car = json.loads(args.payload.read_text())
    endpoint, body = ("/predict/batch", {"cars": [car] * args.batch}) if args.batch else ("/predict", car)
    content = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if args.api_key:
        headers["Authorization"] = f"Bearer {args.api_key}"
    latencies, stages = [], {"preprocess_ms": [], "predict_ms": [], "postprocess_ms": []}
    with httpx.Client(base_url=args.url, headers=headers, timeout=10.0) as client:
        for i in range(args.warmup + args.n):
            started = time.perf_counter()
            response = client.post(endpoint, content=content)
            elapsed_ms = (time.perf_counter() - started) * 1e3
            response.raise_for_status()
            if i >= args.warmup:
                latencies.append(elapsed_ms)
                for name, value in response.json()["timing"].items():
                    stages[name].append(value)
    p50, p99 = np.percentile(latencies, [50, 99])
    backend = response.json()["model"]["backend"]
    print(
        f"{endpoint} x{args.n} ({args.batch or 1} car(s), {len(content) / 1e3:.0f} kB body, backend {backend})"
    )
    print(f"  client latency  p50 {p50:.2f} ms  p99 {p99:.2f} ms  mean {statistics.fmean(latencies):.2f} ms")
    print("  gateway stages  " + "  ".join(f"{k[:-3]} p50 {np.median(v):.2f} ms" for k, v in stages.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
