"""`restorekit serve`: the web page (upload, choose task/model, strength slider, before/after, download)."""

from __future__ import annotations

import argparse
import ipaddress
import sys

from restorekit.errors import RestorekitError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="web page: upload an image, pick a model, drag the strength slider, compare, download",
        description="Serve the restorekit page (one HTML/JS file, works offline). Binds to 127.0.0.1 unless "
        "--host says otherwise. Uploads are kept only in a temporary folder for the length of one request.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="largest accepted upload (default 20 MB)")
    p.add_argument("--max-pixels", type=int, default=40_000_000, help="largest accepted image (default 40 MP)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda ...")
    p.add_argument("--tile", type=int, default=512, help="tile size for large images (default 512)")
    p.set_defaults(run=run)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from restorekit.serve.app import ServeConfig, create_app
    except ImportError as err:
        raise RestorekitError(f"serve needs starlette and uvicorn ({err}); pip install restorekit") from err

    if args.max_upload_mb <= 0 or args.max_pixels <= 0:
        raise RestorekitError("--max-upload-mb and --max-pixels must be positive")
    config = ServeConfig(max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), max_pixels=args.max_pixels,
                         device=args.device, tile=args.tile)
    if not is_loopback(args.host):
        print(f"restorekit: warning: serving on {args.host}: anyone who can reach this address can use it",
              file=sys.stderr)
    print(f"restorekit: serving on http://{args.host}:{args.port}/  (Ctrl+C stops)", file=sys.stderr)
    uvicorn.run(create_app(config), host=args.host, port=args.port, log_level="warning")
    return 0
