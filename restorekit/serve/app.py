"""The web page behind `restorekit serve`: one HTML/JS page and a small JSON/PNG API (Starlette).

    GET  /                 the page (static/index.html; no CDN, works offline)
    GET  /api/models       {"models": [...], "tasks": [...], "max_upload_bytes": N}
    POST /api/restore?model=ID[&strength=S][&level=L][&task=T][&filename=NAME]   body: image bytes -> PNG
         level=auto: the level estimated from the upload (restorekit.estimate), sent back in X-Restorekit-Level
         and X-Restorekit-Level-Note with the strength it set (X-Restorekit-Strength)
    POST /api/preview?filename=NAME                                      body: the image bytes -> PNG

Stateless on purpose: the browser keeps the file and sends it with every request (loopback is fast), so
uploads never accumulate. Each request's bytes go to a fresh temporary folder that is deleted before
the response leaves; the client's file name is only echoed in messages, never used as a path. Bodies
are size-limited (413 with the limit in the message) and images pixel-limited before decoding.
Errors are JSON {"error": one line}.

One slow request cannot stall the others (issue 13): at most `max_jobs` restores/previews run at once,
at most `queue` more wait for a slot, and anything beyond gets 503 with Retry-After at once. Every
request has `timeout_s` from its arrival: the upload, the wait and the work (checked before decoding
and between tiles: CPU work in a thread cannot be killed) stop there with a one-line 503/504, and a
job's slot is freed only when its thread has really returned.
"""

from __future__ import annotations

import math
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import anyio
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from restorekit.api import Restorer, is_blind
from restorekit.errors import ImageError, RestorekitError, TimedOut, TooManyPixels
from restorekit.estimate import ESTIMATORS, auto_level
from restorekit.infer import Deadline, check_tiling
from restorekit.serve.limits import (
    DEFAULT_MAX_JOBS,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_UPLOAD_MB,
    DEFAULT_QUEUE,
    DEFAULT_TIMEOUT_S,
    RETRY_AFTER_S,
)
from restorekit.tasks import ANALYZE, AUTO, TASKS, check_task

STATIC = Path(__file__).resolve().parent / "static"
POLL_S = 0.02  # how often a waiting request looks for a free slot
# Built-ins that work without trained weights: the "no change" reference and MATLAB bicubic SR.
BUILTINS = {
    "identity": ("identity", {}, "any", "identity (no change)"),
    "bicubic-x2": ("bicubic", {"scale": 2}, "sr", "bicubic x2 (built-in)"),
    "bicubic-x3": ("bicubic", {"scale": 3}, "sr", "bicubic x3 (built-in)"),
    "bicubic-x4": ("bicubic", {"scale": 4}, "sr", "bicubic x4 (built-in)"),
}
CSP = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'")


class Problem(Exception):
    """An error the user caused (or can fix): HTTP status plus one line (and headers such as Retry-After)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def busy(message: str) -> Problem:
    """503 with Retry-After: the server is full now, the same request may succeed shortly."""
    return Problem(503, message, {"Retry-After": str(RETRY_AFTER_S)})


@dataclass
class ServeConfig:
    max_upload_bytes: int = int(DEFAULT_MAX_UPLOAD_MB * 1024 * 1024)
    max_pixels: int = DEFAULT_MAX_PIXELS
    device: str = "auto"
    tile: int = 512
    tile_overlap: int | None = None  # None: 32, at most half the tile
    max_jobs: int = DEFAULT_MAX_JOBS
    queue: int = DEFAULT_QUEUE
    timeout_s: float = DEFAULT_TIMEOUT_S


Result = TypeVar("Result")


class Jobs:
    """At most `max_jobs` jobs at once and `queue` more waiting; the rest are refused at once (503).

    Thread-safe counters polled every POLL_S rather than an asyncio semaphore: Starlette's TestClient
    runs every request on its own event loop, and a waiting request must give up at its deadline.
    A slot is released after the worker thread returns (anyio waits for the thread even when the
    request is cancelled), so `running` never undercounts work that is still burning CPU.
    """

    def __init__(self, max_jobs: int, queue: int):
        self.max_jobs, self.queue = max_jobs, queue
        self.running = 0
        self.admitted = 0  # running + waiting
        self.lock = threading.Lock()

    def _try_start(self) -> bool:
        with self.lock:
            if self.running < self.max_jobs:
                self.running += 1
                return True
            return False

    async def run(self, deadline: Deadline, work: Callable[[], Result]) -> Result:
        """`work()` in a worker thread once a slot is free; 503 when the line is full or the wait outlasts
        the deadline."""
        with self.lock:
            if self.admitted >= self.max_jobs + self.queue:
                raise busy(f"server busy: {self.running} jobs running and {self.admitted - self.running} "
                           f"waiting (--max-jobs {self.max_jobs}, --queue {self.queue}); try again shortly")
            self.admitted += 1
        try:
            while not self._try_start():
                if deadline.remaining() <= 0:
                    raise busy(f"server busy: no free job slot within the {deadline.seconds:g} s limit; "
                               "try again shortly")
                await anyio.sleep(POLL_S)
            try:
                return await run_in_threadpool(work)
            finally:
                with self.lock:
                    self.running -= 1
        finally:
            with self.lock:
                self.admitted -= 1


def model_entries() -> list[dict]:
    """Zoo models first (what users trained for the purpose), then the built-ins."""
    from restorekit.models import get_architecture
    from restorekit.zoo import entries as zoo_entries

    entries = []
    for entry in zoo_entries():
        card = entry.card
        if card.task == ANALYZE:  # a distortion recogniser restores nothing (restorekit analyze runs it)
            continue
        info = get_architecture(card.architecture).info(card.arguments)
        # FFDNet: the slider sets the noise level itself; DL-Net: the level its record describes (SR: blur width)
        takes_level = bool({"level", "record"} & set(info.inputs))
        span = card.level_range() or (TASKS[card.task].span if takes_level and card.task in TASKS else None)
        entries.append({
            "id": card.name, "label": card.describe(), "task": card.task, "source": entry.source,
            "modulated": info.modulated, "takes_level": takes_level,
            "levels": None if span is None else list(span), "family": card.family,
            # the page's "auto" box: level=auto estimates the level from the upload (restorekit.estimate)
            "auto_level": (info.modulated or takes_level) and card.task in ESTIMATORS,
        })
        if is_blind(card):  # also offered for "auto": whatever is wrong with the image (MBN runs every path)
            entries.append({**entries[-1], "task": AUTO})
    for model_id, (_, _, task, label) in BUILTINS.items():
        entries.append({"id": model_id, "label": label, "task": task, "source": "built-in",
                        "modulated": False, "takes_level": False, "levels": None, "family": "baseline",
                        "auto_level": False})
    return entries


class Models:
    """Loaded restorers, a few at a time (LRU). The lock guards only the cache: a `Restorer` keeps no
    per-request state (strength and level are call arguments), so requests for one model run concurrently."""

    def __init__(self, config: ServeConfig, keep: int = 3):
        self.config, self.keep = config, keep
        self.loaded: OrderedDict[str, Restorer] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, model_id: str) -> Restorer:
        with self.lock:
            if model_id in self.loaded:
                self.loaded.move_to_end(model_id)
                return self.loaded[model_id]
            known = {e["id"] for e in model_entries()}
            if model_id not in known:
                raise Problem(400, f"unknown model {model_id[:80]!r}; available: {', '.join(sorted(known))}")
            name, kwargs = (BUILTINS[model_id][:2] if model_id in BUILTINS else (model_id, {}))
            restorer = Restorer(name, device=self.config.device, tile=self.config.tile,
                                tile_overlap=self.config.tile_overlap, **kwargs)
            self.loaded[model_id] = restorer
            while len(self.loaded) > self.keep:
                self.loaded.popitem(last=False)
            return restorer


def _megabytes(count: int) -> str:
    return f"{count / (1024 * 1024):.1f} MB"


async def read_body(request: Request, limit: int, deadline: Deadline) -> bytes:
    """The request body, refused with 413 as soon as it is known to be over the limit and with 408 when
    it is still arriving at the deadline (a slow sender must not hold a connection for ever)."""
    too_large = f"over the {_megabytes(limit)} upload limit (start the server with --max-upload-mb to change it)"
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise Problem(413, f"upload is {_megabytes(int(declared))}, {too_large}")
    chunks, total = [], 0
    with anyio.move_on_after(deadline.remaining()) as scope:
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise Problem(413, f"upload is {too_large}")
            chunks.append(chunk)
    if scope.cancelled_caught:
        raise Problem(408, f"upload took longer than the {deadline.seconds:g} s limit (the server's --timeout)")
    if not total:
        raise Problem(400, "no image in the request body (send the file's bytes as the POST body)")
    return b"".join(chunks)


def _number(request: Request, key: str) -> float | None:
    raw = request.query_params.get(key)
    if raw in (None, ""):
        return None
    try:
        value = float(raw)
    except ValueError:
        raise Problem(400, f"{key} must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise Problem(400, f"{key} must be a finite number, got {raw!r}")
    return value


def _display_name(request: Request) -> str:
    """The client's file name for messages only (never a path on this machine)."""
    name = Path(request.query_params.get("filename") or "upload").name
    return "".join(ch for ch in name if ch.isprintable())[:120] or "upload"


def _suffix(name: str) -> str:
    from restorekit.io import IMAGE_SUFFIXES

    suffix = Path(name).suffix.lower()
    return suffix if suffix in IMAGE_SUFFIXES else ".img"


def decode_and_encode(payload: bytes, name: str, config: ServeConfig, deadline: Deadline,
                      transform: Callable | None = None) -> bytes:
    """Bytes -> image (in a private temp folder, removed on return) -> optional transform -> 8-bit PNG bytes.

    The folder and file names are ours (only a known image suffix is taken from the client's name)."""
    from restorekit import io

    with tempfile.TemporaryDirectory(prefix="restorekit-serve-") as folder:
        source = Path(folder) / f"upload{_suffix(name)}"
        source.write_bytes(payload)
        try:
            deadline.check()
            image, meta = io.read_image(source, max_pixels=config.max_pixels)
            out = image if transform is None else transform(image)
            deadline.check()
        except TooManyPixels as err:  # the header said so: nothing was decoded
            raise Problem(400, f"{name}: image is {err.width}x{err.height} = {err.width * err.height:,} pixels, "
                          f"over this server's limit of {err.limit:,} (start it with a larger --max-pixels)") from None
        except ImageError as err:
            raise Problem(400, f"{name}: {err.reason}") from None
        except TimedOut as err:
            raise Problem(504, f"{name}: took longer than the {err.seconds:g} s limit; try a smaller image "
                          "or start the server with a larger --timeout") from None
        target = Path(folder) / "result.png"
        io.write_image(target, out, meta, bit_depth=8)
        return target.read_bytes()


def create_app(config: ServeConfig | None = None) -> Starlette:
    """The ASGI app (uvicorn serves it; tests use Starlette's TestClient or a real browser)."""
    config = config or ServeConfig()
    check_tiling(config.tile, config.tile_overlap)  # refused at start, not on every request
    models = Models(config)
    jobs = Jobs(config.max_jobs, config.queue)

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": CSP, "Cache-Control": "no-store"})

    async def list_models(request: Request) -> Response:
        entries = model_entries()
        tasks = list(dict.fromkeys(e["task"] for e in entries))
        return JSONResponse({"models": entries, "tasks": tasks, "max_upload_bytes": config.max_upload_bytes,
                             "max_pixels": config.max_pixels, "max_jobs": config.max_jobs,
                             "timeout_s": config.timeout_s})

    async def restore(request: Request) -> Response:
        deadline = Deadline.after(config.timeout_s)
        model_id = request.query_params.get("model")
        if not model_id:
            raise Problem(400, "say which model: ?model=ID (see /api/models)")
        auto = request.query_params.get("level") == AUTO  # estimated from the upload (the page's "auto" box)
        strength, level = _number(request, "strength"), None if auto else _number(request, "level")
        task = request.query_params.get("task")  # the page's task: a multi-branch model runs that path, auto all
        task = check_task(task) if task not in (None, "", "any") else None
        if strength is not None and not 0.0 <= strength <= 1.0:
            raise Problem(400, f"strength must be in [0, 1], got {strength:g}")
        name = _display_name(request)
        payload = await read_body(request, config.max_upload_bytes, deadline)

        estimated: dict = {}

        def transform(restorer: Restorer, image):
            used = level
            if auto:
                card = restorer.card
                used, estimated["note"] = auto_level(task if task not in (None, AUTO) else card and card.task, image,
                                                     payload, card.level_range() if card else None,
                                                     scale=restorer.info.scale_for(None))
                estimated["level"] = used
            return restorer.restore(image, task=task, level=used, strength=None if auto else strength,
                                    deadline=deadline)

        def work() -> tuple[bytes, float | None]:
            restorer = models.get(model_id)
            lam = None if auto else restorer.strength_for(level, strength)  # a bad level is refused before decoding
            png = decode_and_encode(payload, name, config, deadline, lambda image: transform(restorer, image))
            return png, restorer.strength_for(estimated["level"], None) if auto else lam

        png, lam = await jobs.run(deadline, work)
        headers = {"X-Restorekit-Model": model_id, "Cache-Control": "no-store"}
        if lam is not None:
            headers["X-Restorekit-Strength"] = f"{lam:.4f}"
        if "level" in estimated:  # what the page shows beside the slider
            headers["X-Restorekit-Level"] = f"{estimated['level']:.4g}"
            headers["X-Restorekit-Level-Note"] = estimated["note"]
        return Response(png, media_type="image/png", headers=headers)

    async def preview(request: Request) -> Response:
        deadline = Deadline.after(config.timeout_s)
        name = _display_name(request)
        payload = await read_body(request, config.max_upload_bytes, deadline)
        png = await jobs.run(deadline, lambda: decode_and_encode(payload, name, config, deadline))
        return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})

    async def problem(request: Request, err: Exception) -> Response:
        if isinstance(err, Problem):
            return JSONResponse({"error": err.message}, status_code=err.status, headers=err.headers)
        return JSONResponse({"error": str(err)}, status_code=400)  # RestorekitError: the user's to fix

    routes = [
        Route("/", index),
        Route("/api/models", list_models),
        Route("/api/restore", restore, methods=["POST"]),
        Route("/api/preview", preview, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={Problem: problem, RestorekitError: problem})
    app.state.jobs = jobs  # read by tests and the load test: running/admitted counts
    return app
