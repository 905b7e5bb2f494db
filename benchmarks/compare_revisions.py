"""The gateway's CPU per /predict request of two or more git revisions, side by side in one process.

    .venv/bin/python -m benchmarks.compare_revisions d6ebd4e HEAD [--rounds 200]

On a shared machine whose speed moves by up to 2x within seconds, two runs minutes apart do not
compare; this loads each revision's code (`git archive` into a temporary folder) in turn into one
process, keeps one lean-path app per revision (fixed-output backend, as benchmarks.gateway_cpu), and
then measures them in alternating short rounds: the same bodies through each app, and decode_predict
and preprocess on the example request. Reported per revision: the fastest round and the median of
the per-round ratios against the first revision (only paired rounds compare). "refusal" is one
/predict refused with 429 while every in-flight slot is taken (what most arrivals cost under
overload), measured on a second app of the revision with its admission layer held full; "-" for a
revision without admission control.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from strategist.paths import PROJECT_ROOT

PACKAGES = ("server", "strategist", "benchmarks", "export")
MEASURES = ("lean path ms/request", "decode_predict ms", "preprocess ms", "refusal ms")


def _export(revision: str, root: Path) -> Path:
    folder = root / revision.replace("/", "_")
    folder.mkdir()
    archive = subprocess.run(
        ["git", "archive", revision], cwd=PROJECT_ROOT, check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    # Share this checkout's cache of simulated payload races (simulating one takes tens of seconds).
    cache = PROJECT_ROOT / "benchmarks" / "results" / "tmp"
    cache.mkdir(parents=True, exist_ok=True)
    (folder / "benchmarks" / "results").mkdir(parents=True, exist_ok=True)
    (folder / "benchmarks" / "results" / "tmp").symlink_to(cache, target_is_directory=True)
    return folder


def _load(folder: Path, n_payloads: int) -> dict[str, Any]:
    """Import the revision's packages from `folder` (after dropping any loaded ones) and build its app."""
    for name in [m for m in sys.modules if m.split(".")[0] in PACKAGES]:
        del sys.modules[name]
    sys.path.insert(0, str(folder))
    try:
        gateway_cpu = importlib.import_module("benchmarks.gateway_cpu")
        services = importlib.import_module("benchmarks.services")
        payloads = importlib.import_module("benchmarks.payloads")
        decode = importlib.import_module("server.decode").decode_predict
        preprocess = importlib.import_module("server.preprocess").preprocess
        main = importlib.import_module("server.main")
        settings = importlib.import_module("server.settings")
        contract = importlib.import_module("strategist.contract")
    finally:
        sys.path.remove(str(folder))
    inputs = (contract.INPUT_TELEMETRY, contract.INPUT_TACTICAL, contract.INPUT_CONTEXT)
    example = (folder / "examples" / "predict_request.json").read_bytes()
    bodies = [example, *payloads.race_payloads(n_payloads, services.WORK_DIR).encoded()]

    def app() -> Any:
        return main.create_app(
            settings.GatewaySettings(request_decoder="fast", lean_routes=True),
            backend=gateway_cpu.FixedBackend(inputs),
        )

    return {"gateway_cpu": gateway_cpu, "app": app(), "refusing_app": app(), "bodies": bodies,
            "example": example, "decode": decode, "preprocess": preprocess, "inputs": inputs}  # fmt: skip


def _hold_admission_full(app: Any) -> bool:
    """Take every in-flight slot of the app's admission layer and allow no queue, so each prediction
    request is refused at once. False when the revision has no admission layer."""
    layer = app.middleware_stack
    while layer is not None and type(layer).__name__ != "AdmissionMiddleware":
        layer = getattr(layer, "app", None)
    if layer is None:
        return False
    layer.in_flight = layer.max_in_flight
    layer.max_queued = 0
    return True


async def _measure(variants: dict[str, dict[str, Any]], rounds: int) -> dict[str, dict[str, list[float]]]:
    times: dict[str, dict[str, list[float]]] = {name: {m: [] for m in MEASURES} for name in variants}
    lifespans = []
    for v in variants.values():
        lifespans.append(await v["gateway_cpu"]._lifespan_started(v["app"]))
        v["client"] = v["gateway_cpu"].AsgiClient(v["app"])
        for _ in range(3):  # warm-up; every body must be answered
            for body in v["bodies"]:
                assert await v["client"].post("/predict", body) == 200
        v["request"] = v["decode"](v["example"], "application/json")
        lifespans.append(await v["gateway_cpu"]._lifespan_started(v["refusing_app"]))
        v["refusing"] = v["gateway_cpu"].AsgiClient(v["refusing_app"])
        await v["refusing"].post("/predict", v["example"])  # builds the middleware stack
        v["refuses"] = _hold_admission_full(v["refusing_app"])
        assert not v["refuses"] or await v["refusing"].post("/predict", v["example"]) == 429
    for _ in range(rounds):
        for name, v in variants.items():
            started = time.process_time()
            for body in v["bodies"]:
                await v["client"].post("/predict", body)
            times[name][MEASURES[0]].append((time.process_time() - started) / len(v["bodies"]) * 1e3)
            started = time.process_time()
            for _ in range(5):
                v["decode"](v["example"], "application/json")
            times[name][MEASURES[1]].append((time.process_time() - started) / 5 * 1e3)
            started = time.process_time()
            for _ in range(5):
                v["preprocess"]([v["request"]], default_race_laps=57, input_names=v["inputs"])
            times[name][MEASURES[2]].append((time.process_time() - started) / 5 * 1e3)
            if v["refuses"]:
                started = time.process_time()
                for _ in range(20):
                    await v["refusing"].post("/predict", v["example"])
                times[name][MEASURES[3]].append((time.process_time() - started) / 20 * 1e3)
    for inbox in lifespans:  # let each app's lifespan end (its backend closed) before the loop does
        await inbox.put({"type": "lifespan.shutdown"})
    await asyncio.sleep(0.1)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("revisions", nargs="+", help="git revisions; the first is the reference")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--payloads", type=int, default=8, help="race bodies besides the example")
    args = parser.parse_args(argv)
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        variants = {}
        for revision in args.revisions:
            folder = _export(revision, Path(tmp))
            os.chdir(folder)  # each revision reads its own files by relative path
            variants[revision] = _load(folder, args.payloads)
        times = asyncio.run(_measure(variants, args.rounds))
        os.chdir(cwd)
    reference = times[args.revisions[0]]
    print(
        f"load average {os.getloadavg()[0]:.2f}; {args.rounds} alternating rounds; min ms (x reference, median of paired ratios)"
    )
    print("| revision | " + " | ".join(MEASURES) + " |")
    print("|---|" + "---:|" * len(MEASURES))
    for revision, measured in times.items():
        cells = []
        for m in MEASURES:
            if not measured[m] or not reference[m]:
                cells.append(f"{min(measured[m]):.3f}" if measured[m] else "-")
                continue
            ratio = statistics.median(a / b for a, b in zip(measured[m], reference[m], strict=True))
            cells.append(f"{min(measured[m]):.3f} ({ratio:.3f}x)")
        print(f"| {revision} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
