"""A bounded loopback load test for `restorekit serve` (issue 13): start a real server, send N requests from
C concurrent connections, check every answer against the result computed here, sample the server's memory.

Used by tests/test_serve_load.py (the acceptance check) and bench/serve_load.py (the numbers in
docs/RELIABILITY.md). Needs httpx and psutil (the test extras). Everything stops by itself: every request
has a client timeout and the server is terminated at the end.

Requests cycle through three kinds whose correct answer is known without a trained model:
identity (the same pixels back), bicubic-x2 (`restorekit.ops.imresize`, within 1 grey level: thread
counts may differ between the server and this process) and preview (the same pixels back, as PNG).
A 503 counts as deliberate only with a Retry-After header; anything else that is not a correct 200 is
an error.
"""

from __future__ import annotations

import io as bytes_io
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

KINDS = ("identity", "bicubic-x2", "preview")
SAMPLE_EVERY_S = 0.05
CLIENT_TIMEOUT_S = 30.0


@dataclass
class Outcome:
    """One request: what was asked, the status, how long it took, and what was wrong with it (None: correct)."""

    kind: str
    status: int
    seconds: float
    problem: str | None = None


@dataclass
class LoadReport:
    outcomes: list[Outcome]
    seconds: float
    rss_mb: list[float] = field(default_factory=list)  # the server's resident memory, sampled during the run

    @property
    def counts(self) -> Counter:
        return Counter(o.status for o in self.outcomes)

    @property
    def errors(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.problem is not None]

    @property
    def requests_per_s(self) -> float:
        return len(self.outcomes) / self.seconds

    def latency_p95(self, status: int = 200) -> float:
        times = sorted(o.seconds for o in self.outcomes if o.status == status)
        return times[min(len(times) - 1, int(0.95 * len(times)))] if times else float("nan")

    def rss_quarters(self) -> tuple[float, float]:
        """Highest RSS (MB) in the first and in the last quarter of the samples."""
        quarter = max(1, len(self.rss_mb) // 4)
        return max(self.rss_mb[:quarter]), max(self.rss_mb[-quarter:])

    def summary(self) -> str:
        first, last = self.rss_quarters()
        counts = ", ".join(f"{status}: {n}" for status, n in sorted(self.counts.items()))
        served = self.counts[200] / self.seconds
        return (f"{len(self.outcomes)} requests in {self.seconds:.1f} s = {self.requests_per_s:.1f} req/s "
                f"({served:.1f} 200s/s); "
                f"p95 latency of 200s {self.latency_p95() * 1000:.0f} ms; statuses {counts}; "
                f"{len(self.errors)} errors; server RSS {self.rss_mb[0]:.0f} -> {self.rss_mb[-1]:.0f} MB "
                f"(max first quarter {first:.0f}, last quarter {last:.0f})")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int, log: Path, *options: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`python -m restorekit serve` on 127.0.0.1:port with the built-ins only (no zoo: nothing to download
    or train), its output in `log`."""
    environment = {**os.environ, "RESTOREKIT_BUNDLED": "none", "RESTOREKIT_WEIGHTS": str(log.parent / "no-zoo"),
                   **(env or {})}
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "restorekit", "serve", "--port", str(port), "--device", "cpu",
                                 *options], stdout=out, stderr=subprocess.STDOUT, env=environment)


def wait_ready(server: subprocess.Popen, url: str, log: Path, timeout_s: float = 90.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"server exited with status {server.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/api/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server not ready after {timeout_s:g} s: {log.read_text()[-2000:]}")


def stop_server(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=15)


def sample_images(count: int, size: int) -> list[np.ndarray]:
    rng = np.random.default_rng(13)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(count)]


def png_bytes(array: np.ndarray) -> bytes:
    buffer = bytes_io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def expected(kind: str, array: np.ndarray) -> np.ndarray:
    """The correct answer, computed in this process with the library's own functions."""
    from restorekit import io, ops

    if kind == "bicubic-x2":
        return io.to_array(ops.imresize(io.to_tensor(array), 2).clamp(0, 1), 8)
    return array


def check(kind: str, response, array: np.ndarray, want: np.ndarray) -> str | None:
    """None when the response is correct (or a deliberate 503 with Retry-After), else what is wrong."""
    if response.status_code == 503:
        return None if response.headers.get("retry-after") else "503 without Retry-After"
    if response.status_code != 200:
        return f"status {response.status_code}: {response.text[:200]}"
    got = np.asarray(Image.open(bytes_io.BytesIO(response.content)).convert("RGB"))
    if got.shape != want.shape:
        return f"shape {got.shape}, expected {want.shape}"
    worst = int(np.abs(got.astype(int) - want.astype(int)).max())
    return None if worst <= (1 if kind == "bicubic-x2" else 0) else f"pixels differ by up to {worst}"


def _request(client, url: str, kind: str, body: bytes, index: int):
    if kind == "preview":
        return client.post(f"{url}/api/preview", params={"filename": f"p{index}.png"}, content=body)
    return client.post(f"{url}/api/restore", params={"model": kind, "filename": f"r{index}.png"}, content=body)


def run_load(url: str, pid: int, requests: int = 200, concurrency: int = 8, size: int = 64) -> LoadReport:
    """`requests` requests from `concurrency` connections (one httpx client each, keep-alive), the server's
    RSS sampled every SAMPLE_EVERY_S. Returns when every request has been answered or has timed out."""
    import httpx
    import psutil

    images = sample_images(8, size)
    bodies = [png_bytes(a) for a in images]
    wanted = {(kind, i): expected(kind, a) for kind in KINDS for i, a in enumerate(images)}
    process, rss_mb, done = psutil.Process(pid), [], threading.Event()

    def sample() -> None:
        while not done.is_set():
            rss_mb.append(process.memory_info().rss / 2**20)
            done.wait(SAMPLE_EVERY_S)

    def connection(indices: range) -> list[Outcome]:
        outcomes = []
        with httpx.Client(timeout=CLIENT_TIMEOUT_S) as client:
            for index in indices:
                kind, image = KINDS[index % len(KINDS)], index % len(images)
                start = time.perf_counter()
                try:
                    response = _request(client, url, kind, bodies[image], index)
                except httpx.HTTPError as err:
                    outcomes.append(Outcome(kind, 0, time.perf_counter() - start, f"{type(err).__name__}: {err}"))
                    continue
                seconds = time.perf_counter() - start
                outcomes.append(Outcome(kind, response.status_code, seconds,
                                        check(kind, response, images[image], wanted[kind, image])))
        return outcomes

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        shares = [range(c, requests, concurrency) for c in range(concurrency)]
        outcomes = [o for share in pool.map(connection, shares) for o in share]
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    rss_mb.append(process.memory_info().rss / 2**20)
    return LoadReport(outcomes, seconds, rss_mb)
