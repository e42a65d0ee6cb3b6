"""Command-line entry point `python -m engine.serve`: serve a trained model over HTTP (FastAPI on uvicorn).

    python -m engine.serve --model runs/latest/model.safetensors      # the CLI's checkpoint
    python -m engine.serve --model dllab-simple_cnn-digits-AbCdEfGh.zip  # an Explorer export
    python -m engine.serve --run <run id> --port 8000                 # a run saved by the app

Then: curl -F file=@photo.jpg http://127.0.0.1:8000/predict   (the OpenAPI page is at /docs)
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from engine.inference import CPU_BATCH_PIXELS, DEFAULT_MAX_BYTES, MAX_BATCH, ServeConfig, default_threads


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine.serve", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", metavar="PATH",
                        help="a checkpoint (model.safetensors), a folder holding one, or an export zip")
    source.add_argument("--run", metavar="ID", help="a run saved by the app (in $DLLAB_DATA/runs)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every network)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on")
    p.add_argument("--max-batch", type=_positive_int, default=None,
                   help="most requests stacked into one forward pass (1: one forward per request); "
                        f"default {MAX_BATCH}, or on a CPU as many images as fit in "
                        f"{CPU_BATCH_PIXELS:,} pixels (4 at 224 px), past which a batch ran slower "
                        "per image")
    p.add_argument("--max-wait-ms", type=_non_negative, default=5.0,
                   help="longest a request waits for others to join its batch, in milliseconds")
    p.add_argument("--max-mb", type=float, default=DEFAULT_MAX_BYTES / 1e6,
                   help="largest image accepted (upload or fetched URL), in MB")
    p.add_argument("--threads", type=_positive_int, default=default_threads(),
                   help="torch threads for the forward pass (default: cores less one)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or mps")
    p.add_argument("--fetch-timeout", type=float, default=10.0,
                   help="wall-clock limit of a /classify-url download, in seconds")
    p.add_argument("--allow-host", action="append", default=[], metavar="HOST",
                   help="a host /classify-url may fetch from although it is private (for tests; repeatable)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, load the model once, serve until Ctrl-C."""
    args = parser().parse_args(argv)
    from engine.device import default_device
    from engine.inference import ServeError, auto_max_batch, load_model_file, load_run_model
    from engine.models import CheckpointError, ModelError
    from engine.runs import RunError

    try:
        if args.max_mb <= 0:
            raise ServeError("--max-mb must be more than 0.")
        try:
            device = default_device(args.device).type
        except RuntimeError:   # torch.device("nonsense")
            raise ServeError(f"--device must be cpu, cuda or mps, not {args.device!r}.") from None
        served = load_run_model(args.run) if args.run else load_model_file(args.model)
    except (ServeError, CheckpointError, ModelError, RunError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cfg = ServeConfig(host=args.host, port=args.port, max_batch=args.max_batch,
                      max_wait_ms=args.max_wait_ms, max_bytes=int(args.max_mb * 1e6),
                      threads=args.threads, device=device, fetch_timeout=args.fetch_timeout,
                      allow_hosts=tuple(args.allow_host))
    if cfg.max_batch is None:
        cfg.max_batch = auto_max_batch(served.size, device)
    desc = served.description
    print(f"serving {desc['arch']} ({len(served.classes)} classes, {desc['size']} px) from "
          f"{args.model or served.source} at http://{args.host}:{args.port} — POST /predict, GET /classify-url, "
          f"/health, /model, /docs; batches of up to {cfg.max_batch} within {cfg.max_wait_ms:g} ms, "
          f"{cfg.threads} torch thread(s) on {device}", flush=True)
    from engine.service import run_service
    run_service(served, cfg)
    return 0
