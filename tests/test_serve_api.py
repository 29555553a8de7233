"""The web page's API through Starlette's TestClient: restore, strength, limits and one-line errors."""

from __future__ import annotations

import io as bytes_io
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette")
pytest.importorskip("httpx")
from starlette.testclient import TestClient
from zoo_helpers import save_zoo_model

from restorekit import infer
from restorekit.cli import main
from restorekit.serve.app import ServeConfig, create_app

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models run fastest on one thread


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point tempfile at an empty folder so the test can see that uploads do not outlive a request."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def client(tiny_zoo, private_tmp) -> TestClient:
    return TestClient(create_app(ServeConfig(max_upload_bytes=200_000, device="cpu", tile=64)))


def _png(height: int = 48, width: int = 64, mode: str = "RGB") -> bytes:
    rng = np.random.default_rng(0)
    shape = (height, width, 3) if mode == "RGB" else (height, width)
    buffer = bytes_io.BytesIO()
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _restore(client: TestClient, body: bytes, **params):
    return client.post("/api/restore", params={"filename": "photo.png", **params}, content=body)


def _leftovers(folder: Path) -> list[Path]:
    """Upload folders still on disk (other libraries may put their own caches in the temp folder)."""
    return list(folder.glob("restorekit-serve-*"))


def test_models_lists_the_zoo_then_the_builtins(client):
    data = client.get("/api/models").json()
    ids = [m["id"] for m in data["models"]]
    assert ids[:2] == ["tiny-adafm", "tiny-dncnn"] and "bicubic-x4" in ids and "identity" in ids
    adafm = data["models"][0]
    assert adafm["modulated"] and adafm["levels"] == [15, 75] and adafm["task"] == "denoise"
    assert data["max_upload_bytes"] == 200_000 and "denoise" in data["tasks"]


def test_page_is_self_contained(client):
    page = client.get("/")
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    assert "http" not in page.text.replace("http-equiv", "")  # no CDN or other remote resource
    script = client.get("/static/app.js")
    assert script.status_code == 200 and "/api/restore" in script.text


def test_restore_returns_png_and_strength_changes_it(client, private_tmp):
    body = _png()
    low, high = _restore(client, body, model="tiny-adafm", strength=0), _restore(client, body, model="tiny-adafm", strength=1)
    assert low.status_code == high.status_code == 200 and low.headers["content-type"] == "image/png"
    assert low.headers["x-restorekit-strength"] == "0.0000"
    a, b = (np.asarray(Image.open(bytes_io.BytesIO(r.content))) for r in (low, high))
    assert a.shape == (48, 64, 3) and np.abs(a.astype(int) - b).max() > 2
    by_level = _restore(client, body, model="tiny-adafm", level=45)
    assert by_level.headers["x-restorekit-strength"] == "0.5000"  # linear curve 15..75
    sr = _restore(client, _png(20, 30, "L"), model="bicubic-x2")
    assert Image.open(bytes_io.BytesIO(sr.content)).size == (60, 40)
    assert _leftovers(private_tmp) == []  # every upload's folder is gone


@pytest.mark.parametrize(
    "params, body, status, message",
    [
        ({"model": "tiny-adafm", "strength": "1.5"}, None, 400, "strength must be in [0, 1], got 1.5"),
        ({"model": "tiny-adafm", "strength": "abc"}, None, 400, "strength must be a number"),
        ({"model": "tiny-adafm", "level": "90"}, None, 400, "outside this model's range 15..75"),
        ({"model": "tiny-dncnn", "strength": "0.5"}, None, 400, "has no strength control"),
        ({"model": "nope"}, None, 400, "unknown model 'nope'"),
        ({"model": "tiny-adafm"}, b"GIF89a definitely not an image", 400, "photo.png: not a recognised image format"),
        ({"model": "tiny-adafm"}, b"", 400, "no image in the request body"),
        ({"model": "tiny-adafm"}, b"\0" * 300_000, 413, "over the 0.2 MB upload limit"),
    ],
)
def test_bad_requests_get_one_clear_message(client, private_tmp, params, body, status, message):
    response = _restore(client, _png() if body is None else body, **params)
    assert response.status_code == status
    error = response.json()["error"]
    assert message in error and "\n" not in error
    assert _leftovers(private_tmp) == []


def test_pixel_limit_and_preview(tiny_zoo, private_tmp):
    """Issue 13, finding 10: the pixel-limit message names the server's own option, not the library's."""
    client = TestClient(create_app(ServeConfig(max_pixels=1000, device="cpu")))
    response = client.post("/api/preview", params={"filename": "big.png"}, content=_png())
    error = response.json()["error"]
    assert response.status_code == 400
    assert error == "big.png: image is 64x48 = 3,072 pixels, over this server's limit of 1,000 " \
                    "(start it with a larger --max-pixels)"
    client = TestClient(create_app(ServeConfig(device="cpu")))
    buffer = bytes_io.BytesIO()
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(buffer, format="TIFF")
    preview = client.post("/api/preview", params={"filename": "scan.tif"}, content=buffer.getvalue())
    assert preview.status_code == 200 and Image.open(bytes_io.BytesIO(preview.content)).format == "PNG"


def test_concurrent_requests_at_different_strengths_do_not_interfere(client):
    """Strength is a call argument, not model state (issue 12 item 2): requests for ONE model run at the
    same time, and each result equals the one it gets alone."""
    from concurrent.futures import ThreadPoolExecutor

    body = _png()
    strengths = [0.0, 1.0, 0.3, 0.7] * 3
    alone = {s: _restore(client, body, model="tiny-adafm", strength=s).content for s in set(strengths)}
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(lambda s: _restore(client, body, model="tiny-adafm", strength=s).content, strengths))
    assert all(result == alone[s] for s, result in zip(strengths, together))
    assert len(set(alone.values())) == 4


def test_a_model_that_takes_the_level_gets_a_level_slider(client, tiny_zoo):
    """FFDNet's noise map is its strength control: the page gets a level slider (the task's usual span when
    the card has no range) and the level reaches the model (issue 12 item 6)."""
    save_zoo_model(tiny_zoo, "tiny-ffdnet", "ffdnet", {"channels": 3, "features": 8, "depth": 3},
                   task="denoise", family="ffdnet", levels=None, curve=False)
    entry = next(m for m in client.get("/api/models").json()["models"] if m["id"] == "tiny-ffdnet")
    assert entry["takes_level"] and not entry["modulated"] and entry["levels"] == [0, 75]
    body = _png()
    low, high = (_restore(client, body, model="tiny-ffdnet", level=v) for v in (5, 60))
    assert low.status_code == high.status_code == 200 and low.content != high.content


# ---------------------------------------------------------------------------------------------------
# Issue 13, "Server hardening": job slots, deadlines, temp files, names that are never paths, binding
# ---------------------------------------------------------------------------------------------------

HELD_HEIGHT = 61  # images of this height are held in the model call until the test lets them go


@pytest.fixture
def hold(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Make the model call block for images HELD_HEIGHT rows high (a job that is 'slow' for as long as the
    test wants); other images run normally."""
    release = threading.Event()
    run_model = infer.run_model

    def held(model, image, *args, **kwargs):
        if image.shape[-2] == HELD_HEIGHT:
            assert release.wait(30), "the test never released the held job"
        return run_model(model, image, *args, **kwargs)

    monkeypatch.setattr(infer, "run_model", held)
    yield release
    release.set()


def _wait_until(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def _jobs_client(private_tmp, **config) -> TestClient:
    return TestClient(create_app(ServeConfig(device="cpu", **config)))


def test_a_full_server_answers_503_with_retry_after_at_once_and_serves_again_when_free(tiny_zoo, private_tmp, hold):
    """Issue 13, finding 1: a slow job holds its slot, not the server; with every slot and place in line
    taken a request is refused at once (not queued without bound), and served once the job ends."""
    client = _jobs_client(private_tmp, max_jobs=1, queue=0)
    jobs = client.app.state.jobs
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(_restore, client, _png(HELD_HEIGHT, 64), model="identity")
        _wait_until(lambda: jobs.running == 1)
        refused = _restore(client, _png(), model="identity")
        preview = client.post("/api/preview", params={"filename": "a.png"}, content=_png())
        assert refused.status_code == preview.status_code == 503
        assert refused.headers["retry-after"] == "2" and "server busy" in refused.json()["error"]
        assert "--max-jobs 1" in refused.json()["error"] and "\n" not in refused.json()["error"]
        assert not slow.done()
        hold.set()
        assert slow.result(timeout=30).status_code == 200
    assert _restore(client, _png(), model="identity").status_code == 200
    assert (jobs.running, jobs.admitted) == (0, 0)


def test_while_a_slow_job_runs_a_small_request_is_still_answered(tiny_zoo, private_tmp, hold):
    """Issue 13, finding 1: with two slots, a held (slow) job does not delay a second small request; with one
    slot and a place in line, the second waits for the first and is then served."""
    client = _jobs_client(private_tmp, max_jobs=2, queue=0)
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(_restore, client, _png(HELD_HEIGHT, 64), model="identity")
        _wait_until(lambda: client.app.state.jobs.running == 1)
        quick = _restore(client, _png(), model="tiny-dncnn")
        assert quick.status_code == 200 and not slow.done()
        hold.set()
        assert slow.result(timeout=30).status_code == 200
    hold.clear()
    client = _jobs_client(private_tmp, max_jobs=1, queue=1)
    jobs = client.app.state.jobs
    with ThreadPoolExecutor(2) as pool:
        slow = pool.submit(_restore, client, _png(HELD_HEIGHT, 64), model="identity")
        _wait_until(lambda: jobs.running == 1)
        waiting = pool.submit(_restore, client, _png(), model="identity")
        _wait_until(lambda: jobs.admitted == 2)
        assert not waiting.done()
        hold.set()
        assert slow.result(timeout=30).status_code == waiting.result(timeout=30).status_code == 200


def test_a_job_past_its_deadline_stops_between_tiles_and_says_so(tiny_zoo, private_tmp, monkeypatch):
    """Issue 13, finding 1: the request timeout is cooperative (checked before every tile): the thread really
    stops, its slot is free when the 504 arrives, and its upload folder is gone."""
    calls = []
    run_model = infer.run_model

    def slow_tile(*args, **kwargs):
        calls.append(time.monotonic())
        time.sleep(0.1)
        return run_model(*args, **kwargs)

    monkeypatch.setattr(infer, "run_model", slow_tile)
    client = _jobs_client(private_tmp, max_jobs=1, timeout_s=1, tile=16, tile_overlap=8)
    started = time.monotonic()
    response = _restore(client, _png(64, 64), model="identity")  # 16 tiles of 0.1 s each: 1.6 s of work
    assert response.status_code == 504
    assert response.json()["error"] == ("photo.png: took longer than the 1 s limit; try a smaller image "
                                        "or start the server with a larger --timeout")
    assert time.monotonic() - started < 10  # safety bound, not a speed test
    jobs = client.app.state.jobs
    assert (jobs.running, jobs.admitted) == (0, 0)  # released only after the thread returned
    tiles_run = len(calls)
    assert 0 < tiles_run < 16
    time.sleep(0.3)
    assert len(calls) == tiles_run  # nothing still computing in the background
    assert _leftovers(private_tmp) == []


def test_a_request_waiting_for_a_slot_gives_up_at_its_deadline(tiny_zoo, private_tmp, hold):
    """Issue 13, finding 1: the line is bounded in time too: the waiting request gets 503 with Retry-After
    when its --timeout passes, and the held job, once released, reports its own timeout (504)."""
    client = _jobs_client(private_tmp, max_jobs=1, queue=1, timeout_s=0.5)
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(_restore, client, _png(HELD_HEIGHT, 64), model="identity")
        _wait_until(lambda: client.app.state.jobs.running == 1)
        waited = _restore(client, _png(), model="identity")
        assert waited.status_code == 503 and waited.headers["retry-after"] == "2"
        assert waited.json()["error"] == "server busy: no free job slot within the 0.5 s limit; try again shortly"
        hold.set()
        assert slow.result(timeout=30).status_code == 504
    assert _leftovers(private_tmp) == []


def test_an_upload_still_arriving_at_the_deadline_gets_408(tiny_zoo):
    """Issue 13 build item (request timeout): a client that sends its body slowly (or never finishes it) is
    answered at --timeout instead of holding the connection; needs a real server (TestClient sends whole
    bodies)."""
    import socket

    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(ServeConfig(device="cpu", timeout_s=0.5)), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        _wait_until(lambda: server.started, 20)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"POST /api/preview?filename=slow.png HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
            sock.sendall(_png()[:100])  # ... and the other 900 bytes never come
            answer = ""
            while not answer.endswith("}"):  # the JSON body may come in a second packet
                chunk = sock.recv(65536).decode("latin-1")
                assert chunk, f"connection closed after {answer!r}"
                answer += chunk
        assert answer.startswith("HTTP/1.1 408")
        assert "upload took longer than the 0.5 s limit (the server's --timeout)" in answer
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.mark.parametrize("filename", ["../../escape.png", "/tmp/escape.png", "..", "a\0b.png", "x" * 5000 + ".png",
                                      "..\\..\\escape.png", "sub/dir/escape.png"])
def test_the_client_file_name_never_reaches_the_file_system(client, private_tmp, tmp_path, filename):
    """Issue 13 build item: no path in any request can reach outside the temp folder; the name is only
    echoed (printable, at most 120 characters, no folder part)."""
    ok = client.post("/api/preview", params={"filename": filename}, content=_png())
    assert ok.status_code == 200
    bad = client.post("/api/preview", params={"filename": filename}, content=b"not an image")
    echoed = bad.json()["error"].split(": ")[0]
    assert bad.status_code == 400 and len(echoed) <= 120 and "/" not in echoed and "\0" not in echoed
    assert not list(tmp_path.rglob("*escape*")) and not Path("/tmp/escape.png").exists()
    assert _leftovers(private_tmp) == []


def _declared_png(width: int, height: int) -> bytes:
    """A valid PNG header declaring width x height, three rows of pixel data, then IEND (issue 13, finding 1)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\0" + b"\x80" * (width * 3) for _ in range(3))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")


def test_a_tiny_file_declaring_a_huge_image_is_refused_before_decoding(client, private_tmp):
    """Issue 13, finding 1 (the DoS half): ~140 bytes declaring 6000x6600 (under the pixel limit, cut short)
    and 13000x13000 (over it) are both answered with one line at once instead of holding a job for minutes."""
    started = time.monotonic()
    cut = _restore(client, _declared_png(6000, 6600), model="identity")
    assert cut.status_code == 400 and "photo.png: truncated or corrupt image data" in cut.json()["error"]
    huge = client.post("/api/preview", params={"filename": "big.png"}, content=_declared_png(13000, 13000))
    assert huge.status_code == 400 and "13000x13000 = 169,000,000 pixels" in huge.json()["error"]
    assert "--max-pixels" in huge.json()["error"]
    assert time.monotonic() - started < 10  # safety bound: the issue saw 92 s and 2.45 GB
    assert _leftovers(private_tmp) == []


def test_a_model_id_is_never_a_path(client):
    response = _restore(client, _png(), model="../../weights/tiny-dncnn")
    assert response.status_code == 400 and response.json()["error"].startswith("unknown model")


def test_serve_binds_to_loopback_unless_told_and_warns_otherwise(monkeypatch, capsys):
    """Issue 13 build item: 127.0.0.1 by default; any other address is served with a warning."""
    import uvicorn

    from restorekit.cli import build_parser

    args = build_parser().parse_args(["serve"])
    assert (args.host, args.max_jobs, args.queue, args.timeout) == ("127.0.0.1", 2, 4, 120.0)
    bound = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: bound.append(options))
    assert main(["serve", "--port", "8123"]) == 0
    assert "warning" not in capsys.readouterr().err
    assert main(["serve", "--host", "0.0.0.0", "--max-jobs", "3"]) == 0
    assert "warning: serving on 0.0.0.0: anyone who can reach this address can use it" in capsys.readouterr().err
    assert [b["host"] for b in bound] == ["127.0.0.1", "0.0.0.0"]


@pytest.mark.parametrize("options, message", [
    (["--max-jobs", "0"], "--max-jobs must be 1 or more"),
    (["--queue", "-1"], "--queue 0 or more"),
    (["--timeout", "0"], "--timeout must be a positive number"),
    (["--tile", "-5"], "tile -5: use 0 (whole image) or at least 16 pixels"),
    (["--tile-overlap", "-1"], "tile overlap -1: must be 0 or more"),
])
def test_serve_refuses_bad_limits_before_starting(monkeypatch, capsys, options, message):
    """Issue 13, finding 7: the same tile rule as restore; nothing is bound when a setting is impossible."""
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("the server started"))
    assert main(["serve", *options]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_a_blind_multi_branch_model_is_offered_for_auto_and_the_task_picks_its_path(tiny_zoo, private_tmp):
    """Issue 17: the page offers `auto` (every path of MBN in turn, the factor unknown); under `derain` the same
    model runs its rain path; a task the page does not know is one clear 400."""
    save_zoo_model(tiny_zoo, "tiny-mbn", "mbn", {"features": 8, "res_features": 8, "rain_iterations": 1,
                                                 "identity_init": False},
                   task="restore", family="mbn", levels=None, curve=False, blind=True)
    client = TestClient(create_app(ServeConfig(max_upload_bytes=200_000, device="cpu", tile=64)))
    data = client.get("/api/models").json()
    assert "auto" in data["tasks"]
    assert {m["task"] for m in data["models"] if m["id"] == "tiny-mbn"} == {"restore", "auto"}
    body = _png(32, 32)
    auto, rain = _restore(client, body, model="tiny-mbn", task="auto"), _restore(client, body, model="tiny-mbn",
                                                                                  task="derain")
    assert auto.status_code == rain.status_code == 200 and auto.content != rain.content
    bad = _restore(client, body, model="tiny-mbn", task="sharpen")
    assert bad.status_code == 400 and "unknown task 'sharpen'" in bad.json()["error"]


def test_level_auto_estimates_the_upload_and_says_what_it_set(client, astronaut):
    """Issue 18: the page's "auto" box sends level=auto; the server estimates the level from the upload, sets the
    strength from it and returns both, with how the level was found, for the page to show."""
    models = {m["id"]: m for m in client.get("/api/models").json()["models"]}
    assert models["tiny-adafm"]["auto_level"] and not models["identity"]["auto_level"]
    clean = astronaut[:, :96, :128].permute(1, 2, 0).numpy() * 255
    noisy = np.clip(np.round(clean + np.random.default_rng(0).normal(0, 45, clean.shape)), 0, 255).astype(np.uint8)
    buffer = bytes_io.BytesIO()
    Image.fromarray(noisy).save(buffer, format="PNG")
    response = _restore(client, buffer.getvalue(), model="tiny-adafm", level="auto", strength="0")
    assert response.status_code == 200, response.text
    level = float(response.headers["x-restorekit-level"])
    assert abs(level - 45) < 4 and "estimated denoise level" in response.headers["x-restorekit-level-note"]
    assert float(response.headers["x-restorekit-strength"]) == pytest.approx((level - 15) / 60, abs=1e-3)
    refused = _restore(client, buffer.getvalue(), model="tiny-adafm", level="auto", task="jpeg")
    assert refused.status_code == 400 and "no JPEG block lattice found" in refused.json()["error"]
