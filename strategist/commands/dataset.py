"""`strategist dataset`: build a training dataset from race folders, or describe one.

    strategist dataset build --races ../shared/data/f1-2023/01_sakhir --out data/real-sakhir
    strategist dataset build --races data/sim-season --out data/sim-train --workers 2
    strategist dataset info data/sim-train

Building is resumable: rerun the same command and finished races are reused.
"""

from __future__ import annotations

import argparse
import logging


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "dataset",
        help="build a dataset from race folders (resumable), or show one",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="dataset_command", metavar="ACTION", required=True)

    build = sub.add_parser("build", help="race folders (or season folders) -> shards + manifest.json")
    build.add_argument(
        "--races", nargs="+", required=True, help="race folders and/or folders of race folders"
    )
    build.add_argument("--out", required=True, help="dataset folder to create or resume")
    build.add_argument(
        "--segment",
        type=float,
        nargs=2,
        default=None,
        metavar=("START", "END"),
        help="align only this part of each lap, as fractions of the lap distance (default: whole lap)",
    )
    build.add_argument("--workers", type=int, default=1, help="races built in parallel processes")
    build.add_argument(
        "--strict", action="store_true", help="stop at the first bad lap instead of skipping it"
    )
    build.add_argument("--no-progress", action="store_true", help="no progress bar")
    build.add_argument("-v", "--verbose", action="store_true", help="log every skipped lap")
    build.set_defaults(func=run_build)

    info = sub.add_parser("info", help="summary of a dataset folder")
    info.add_argument("dir", help="dataset folder (manifest.json + shard-*.npz)")
    info.set_defaults(func=run_info)


def run_build(args: argparse.Namespace) -> int:
    from strategist.data.dataset import build_dataset

    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    if not args.verbose:
        # One line per skipped lap is noise on a season; the manifest keeps the counts.
        logging.getLogger("strategist.data").setLevel(logging.ERROR)
    manifest = build_dataset(
        args.races,
        args.out,
        segment=tuple(args.segment) if args.segment else None,
        workers=args.workers,
        strict=args.strict,
        progress=not args.no_progress,
    )
    print(_summary(manifest, args.out))
    return 0


def run_info(args: argparse.Namespace) -> int:
    from strategist.data.dataset_format import read_manifest

    print(_summary(read_manifest(args.dir), args.dir))
    return 0


def _summary(manifest: dict, folder: str) -> str:
    from strategist.contract import INPUT_SHAPES

    build = manifest.get("build", {})
    lines = [
        f"dataset {folder}: {manifest['n_samples']} samples in {len(manifest['shards'])} shard(s)",
        f"  telemetry [n, {', '.join(map(str, INPUT_SHAPES['telemetry']))}] float32, "
        f"tactical [n, {', '.join(map(str, INPUT_SHAPES['tactical']))}] float32",
        f"  segment: {build.get('segment') or 'whole lap'}; last build run: "
        f"{build.get('races_built_this_run')} race(s) in {build.get('seconds_this_run')} s",
        "  races:",
    ]
    for race in manifest["races"]:
        kind = "simulated" if race["simulated"] else "real"
        tel = "" if race["has_telemetry"] else ", no telemetry"
        lines.append(f"    {race['race']:<28} {race['track']:<16} {kind}{tel}: {race['n']} samples")
    lines.append(f"  skipped: {manifest.get('skipped') or 'nothing'}")
    lines.append(f"  corrected: {manifest.get('corrected') or 'nothing'}")
    stats = manifest.get("stats") or {}
    if stats:
        lines.append(
            f"  pace delta (target - ref): mean {stats['pace_delta_mean']:.3f} s, std {stats['pace_delta_std']:.3f} s"
        )
    return "\n".join(lines)
