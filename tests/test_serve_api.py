"""The web page's API through Starlette's TestClient: restore, strength, limits and one-line errors."""

from __future__ import annotations

import io as bytes_io
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette")
pytest.importorskip("httpx")
from starlette.testclient import TestClient
from zoo_helpers import save_zoo_model

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
    assert list(private_tmp.iterdir()) == []  # every upload's folder is gone


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
    assert list(private_tmp.iterdir()) == []


def test_pixel_limit_and_preview(tiny_zoo, private_tmp):
    client = TestClient(create_app(ServeConfig(max_pixels=1000, device="cpu")))
    response = client.post("/api/preview", params={"filename": "big.png"}, content=_png())
    assert response.status_code == 400 and "over the" in response.json()["error"]
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
