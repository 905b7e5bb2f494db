"""`strategist serve`: the whole serving stack on one machine (local Triton + FastAPI gateway)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from strategist.paths import MODEL_REPOSITORY_DIR, PROJECT_ROOT, SERVED_CHECKPOINT_DIR

EXAMPLE_REQUEST = PROJECT_ROOT / "examples" / "predict_request.json"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="build what is missing, start local Triton and the gateway (Ctrl-C stops both)",
        description="Export the shipped checkpoint to the CPU model repository if needed, start the local "
        "Triton (falls back to in-process ONNX Runtime when Triton cannot run), then serve the FastAPI "
        "gateway. Other gateway settings come from STRATEGIST_* environment variables (docs/serving.md).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="gateway address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="gateway port (default 8080)")
    parser.add_argument("--checkpoint", type=Path, default=SERVED_CHECKPOINT_DIR, help="checkpoint to serve")
    parser.add_argument("--repo", type=Path, default=MODEL_REPOSITORY_DIR, help="Triton model repository")
    parser.add_argument(
        "--backend",
        choices=("auto", "triton", "onnxruntime"),
        default="auto",
        help="auto: local Triton, or in-process ONNX Runtime when Triton cannot start (default)",
    )
    parser.add_argument(
        "--api-key-file",
        type=Path,
        default=None,
        help="file holding the bearer token clients must send (default: $STRATEGIST_API_KEY; neither = open)",
    )
    parser.add_argument(
        "--api-key",
        default=None,
        help="the token itself (discouraged: visible to every local user in `ps`; use "
        "--api-key-file or $STRATEGIST_API_KEY)",
    )
    parser.add_argument("--triton-timeout", type=float, default=120.0, help="seconds to wait for Triton")
    parser.add_argument("--triton-grpc-port", type=int, default=None, help="default: a free port")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="gateway processes, one event loop each (default 1; about one per core left after Triton, "
        "benchmarks/README.md)",
    )
    parser.add_argument(
        "--edge-proxy",
        choices=("auto", "on", "off"),
        default="auto",
        help="HAProxy on --host:--port in front of the gateway, holding its admission limits: overload "
        "is refused in C before it costs the gateway's event loop; auto: when haproxy is installed "
        "(default; docs/serving.md)",
    )
    parser.add_argument(
        "--example",
        type=Path,
        default=EXAMPLE_REQUEST,
        help="payload for the curl example (written from a simulated race when missing)",
    )
    parser.set_defaults(func=run)


def api_key(args: argparse.Namespace) -> str | None:
    """The API key from --api-key-file, --api-key (warned about) or $STRATEGIST_API_KEY, in that order."""
    import logging

    from strategist.errors import StrategistError

    if args.api_key_file is not None:
        try:
            key = args.api_key_file.read_text().strip()
        except OSError as exc:
            raise StrategistError(f"--api-key-file {args.api_key_file}: {exc.strerror}") from None
        if not key:
            raise StrategistError(f"--api-key-file {args.api_key_file} is empty")
        return key
    if args.api_key:
        logging.getLogger("strategist.serve").warning(
            "--api-key puts the key in the process list (ps) for every local user: "
            "prefer --api-key-file or $STRATEGIST_API_KEY"
        )
        return str(args.api_key)
    return os.environ.get("STRATEGIST_API_KEY") or None


def run(args: argparse.Namespace) -> int:
    import logging

    from strategist.serving.local_stack import ServeOptions, serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    options = ServeOptions(
        host=args.host,
        port=args.port,
        repo=args.repo.resolve(),
        checkpoint=args.checkpoint.resolve(),
        backend=args.backend,
        api_key=api_key(args),
        triton_timeout_s=args.triton_timeout,
        triton_grpc_port=args.triton_grpc_port,
        example=args.example,
        workers=args.workers,
        edge_proxy=args.edge_proxy,
    )
    return serve(options)
