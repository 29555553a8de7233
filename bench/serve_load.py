"""Web server load benchmark (issue 13; a benchmark, not a test): a real `restorekit serve` on a loopback
port, N requests from C concurrent connections (identity, bicubic-x2 and preview of small PNGs, each
answer checked), printing requests/s, p95 latency and the server's RSS at the start and end.

The numbers in docs/RELIABILITY.md come from the defaults:

    .venv/bin/python bench/serve_load.py
    .venv/bin/python bench/serve_load.py --requests 1000 --size 256 --max-jobs 1 --queue 0   # more 503s

The server runs the built-ins only (no zoo). Exit status 1 when any answer was wrong or the memory grew
by more than --rss-growth-mb between the first and last quarter of the run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from restorekit.serve import loadtest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--size", type=int, default=64, help="side of the square test images")
    parser.add_argument("--max-jobs", type=int, default=2)
    parser.add_argument("--queue", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=24, help="requests before the measured run (model loading)")
    parser.add_argument("--rss-growth-mb", type=float, default=30.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="restorekit-load-") as folder:
        port, log = loadtest.free_port(), Path(folder) / "server.log"
        url = f"http://127.0.0.1:{port}"
        server = loadtest.start_server(port, log, "--max-jobs", str(args.max_jobs), "--queue", str(args.queue))
        try:
            loadtest.wait_ready(server, url, log)
            loadtest.run_load(url, server.pid, args.warmup, args.concurrency, args.size)
            report = loadtest.run_load(url, server.pid, args.requests, args.concurrency, args.size)
        finally:
            loadtest.stop_server(server)
    print(f"serve load: {args.requests} requests, {args.concurrency} connections, {args.size}x{args.size} PNGs, "
          f"--max-jobs {args.max_jobs} --queue {args.queue}")
    print(report.summary())
    for outcome in report.errors[:10]:
        print(f"  error: {outcome.kind}: {outcome.problem}")
    first, last = report.rss_quarters()
    return 1 if report.errors or last - first > args.rss_growth_mb else 0


if __name__ == "__main__":
    sys.exit(main())
