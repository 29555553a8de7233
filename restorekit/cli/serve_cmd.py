"""`restorekit serve`: the web page (upload, choose task/model, strength slider, before/after, download)."""

from __future__ import annotations

import argparse
import ipaddress
import sys

from restorekit.errors import RestorekitError
from restorekit.infer import OVERLAP_HELP, TILE_HELP, check_tiling
from restorekit.serve.limits import (
    DEFAULT_MAX_JOBS,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_UPLOAD_MB,
    DEFAULT_QUEUE,
    DEFAULT_TIMEOUT_S,
)

# Open connections uvicorn accepts before answering 503 itself: bounds the uploads held in memory
# (each at most --max-upload-mb) however many clients connect; jobs are limited by --max-jobs/--queue.
MAX_CONNECTIONS = 64


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="web page: upload an image, pick a model, drag the strength slider, compare, download",
        description="Serve the restorekit page (one HTML/JS file, works offline). Binds to 127.0.0.1 unless "
        "--host says otherwise. Uploads are kept only in a temporary folder for the length of one request. "
        "At most --max-jobs images are worked on at once and --queue more wait; further requests get 503 "
        "with Retry-After, and a request still running after --timeout seconds stops (between tiles) with 504.",
    )
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only; anything else is warned about)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB,
                   help=f"largest accepted upload (default {DEFAULT_MAX_UPLOAD_MB:g} MB)")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help=f"largest accepted image, checked before decoding (default {DEFAULT_MAX_PIXELS:,})")
    p.add_argument("--max-jobs", type=int, default=DEFAULT_MAX_JOBS,
                   help=f"images restored at once (default {DEFAULT_MAX_JOBS}; each job uses every core)")
    p.add_argument("--queue", type=int, default=DEFAULT_QUEUE,
                   help=f"requests that may wait for a job slot; beyond that 503 (default {DEFAULT_QUEUE})")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                   help=f"seconds a request may take, upload and wait included (default {DEFAULT_TIMEOUT_S:g})")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda ...")
    p.add_argument("--tile", type=int, default=512, help=TILE_HELP)
    p.add_argument("--tile-overlap", type=int, help=OVERLAP_HELP)
    p.set_defaults(run=run)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_limits(args: argparse.Namespace) -> None:
    """Refuse settings that would make the server refuse everything (or nothing), before it starts."""
    if args.max_upload_mb <= 0 or args.max_pixels <= 0:
        raise RestorekitError("--max-upload-mb and --max-pixels must be positive")
    if args.max_jobs < 1 or args.queue < 0:
        raise RestorekitError(f"--max-jobs must be 1 or more and --queue 0 or more (got {args.max_jobs}, {args.queue})")
    if not args.timeout > 0:
        raise RestorekitError(f"--timeout must be a positive number of seconds, got {args.timeout:g}")
    check_tiling(args.tile, args.tile_overlap)


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from restorekit.serve.app import ServeConfig, create_app
    except ImportError as err:
        raise RestorekitError(f"serve needs starlette and uvicorn ({err}); pip install restorekit") from err

    check_limits(args)
    config = ServeConfig(max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), max_pixels=args.max_pixels,
                         device=args.device, tile=args.tile, tile_overlap=args.tile_overlap,
                         max_jobs=args.max_jobs, queue=args.queue, timeout_s=args.timeout)
    if not is_loopback(args.host):
        print(f"restorekit: warning: serving on {args.host}: anyone who can reach this address can use it",
              file=sys.stderr)
    print(f"restorekit: serving on http://{args.host}:{args.port}/  (Ctrl+C stops)", file=sys.stderr)
    uvicorn.run(create_app(config), host=args.host, port=args.port, log_level="warning",
                limit_concurrency=MAX_CONNECTIONS)
    return 0
