"""End to end in a real headless Chromium (Debian `chromium` + `chromium-driver`, driven by Selenium):
upload a sample, see the result, drag the strength slider, see the result change, download it.

Skipped with the reason when the browser, its driver or selenium is absent (`.ci/run` installs them).
"""

from __future__ import annotations

import hashlib
import io as bytes_io
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
if not Path(CHROMIUM).is_file() or not Path(CHROMEDRIVER).is_file():
    pytest.skip("needs Debian chromium and chromium-driver (apt-get install -y chromium chromium-driver)",
                allow_module_level=True)
selenium = pytest.importorskip("selenium", reason="needs selenium (pip install selenium)")
uvicorn = pytest.importorskip("uvicorn")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

from restorekit.serve.app import ServeConfig, create_app  # noqa: E402

CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-dev-shm-usage",
                "--window-size=1200,900")

# Pixels of the displayed result, hashed in the page (what the user sees, not the URL).
DISPLAYED_HASH = """
const img = document.getElementById('after');
const canvas = document.createElement('canvas');
canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
const ctx = canvas.getContext('2d');
ctx.drawImage(img, 0, 0);
const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
let h = 2166136261;
for (let i = 0; i < data.length; i++) { h ^= data[i]; h = Math.imul(h, 16777619) >>> 0; }
return [canvas.width, canvas.height, h];
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(tiny_zoo):
    """The real app under uvicorn on a free loopback port, in a thread (stopped after the test)."""
    port = _free_port()
    config = uvicorn.Config(create_app(ServeConfig(device="cpu")), host="127.0.0.1", port=port, log_level="warning")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not instance.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    instance.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def browser(tmp_path: Path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads
    yield driver
    driver.quit()


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    """scikit-image's astronaut (bundled, so no network), cropped to keep the CPU work small."""
    from skimage import data

    path = tmp_path / "astronaut.png"
    Image.fromarray(data.astronaut()[::2, ::2][:160, :200]).save(path)
    return path


def _wait_for_result(driver, after_request: int) -> int:
    """Wait until the page shows the result of a request newer than `after_request`; return its number."""
    def done(d):
        viewer = d.find_element("id", "viewer")
        number = int(viewer.get_attribute("data-request"))
        return number if viewer.get_attribute("data-state") == "done" and number > after_request else False
    return WebDriverWait(driver, 30).until(done)


def test_upload_slide_compare_download(server, browser, sample):
    browser.get(server)
    WebDriverWait(browser, 15).until(lambda d: len(Select(d.find_element("id", "model")).options) > 0)
    Select(browser.find_element("id", "task")).select_by_value("denoise")
    Select(browser.find_element("id", "model")).select_by_value("tiny-adafm")
    assert browser.find_element("id", "strength-box").is_displayed()

    browser.find_element("id", "file").send_keys(str(sample))
    first = _wait_for_result(browser, 0)
    width, height, before = browser.execute_script(DISPLAYED_HASH)
    assert (width, height) == (200, 160)

    slider = browser.find_element("id", "strength")
    ActionChains(browser).click_and_hold(slider).move_by_offset(-slider.size["width"] // 2, 0).release().perform()
    moved = float(slider.get_attribute("value"))
    assert moved < 0.6
    second = _wait_for_result(browser, first)
    _, _, after = browser.execute_script(DISPLAYED_HASH)
    assert after != before, "moving the strength slider did not change the displayed image"
    assert f"{moved:.2f}" in browser.find_element("id", "status").text  # lambda echoed from the server

    viewer = browser.find_element("id", "viewer")
    ActionChains(browser).move_to_element_with_offset(viewer, -viewer.size["width"] // 4, 0).click_and_hold() \
        .move_by_offset(-20, 0).release().perform()
    split = float(browser.find_element("id", "divider").get_attribute("aria-valuenow"))
    assert 5 < split < 40  # the before/after divider follows the drag
    assert "inset(0px 0px 0px" in browser.find_element("id", "after-clip").value_of_css_property("clip-path")

    browser.find_element("id", "download").click()
    target = browser.downloads / "astronaut_restored.png"
    try:
        WebDriverWait(browser, 15).until(lambda _: target.is_file() and target.stat().st_size > 0)
    except Exception as err:
        link = browser.find_element("id", "download")
        raise AssertionError(f"no download: {list(browser.downloads.iterdir())} href={link.get_attribute('href')} "
                             f"download={link.get_attribute('download')} logs={browser.get_log('browser')}") from err
    downloaded = np.asarray(Image.open(target))
    assert downloaded.shape == (160, 200, 3)
    import urllib.request

    request = urllib.request.Request(f"{server}/api/restore?model=tiny-adafm&strength={moved}&filename=a.png",
                                     data=sample.read_bytes(), method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        expected = np.asarray(Image.open(bytes_io.BytesIO(response.read())))
    assert hashlib.sha256(downloaded.tobytes()).digest() == hashlib.sha256(expected.tobytes()).digest()
    assert second > first
    errors = [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []


def test_the_auto_box_estimates_the_level_and_moves_the_slider(server, browser, tmp_path):
    """Issue 18: ticking "auto" restores at the level estimated from the upload; the page shows the estimate and
    the strength slider moves to the lambda it set (linear 15..75 in the tiny zoo: sigma 45 -> about 0.5)."""
    from skimage import data

    clean = data.astronaut()[::2, ::2][:160, :200].astype(np.float64)
    noisy = np.clip(np.round(clean + np.random.default_rng(0).normal(0, 45, clean.shape)), 0, 255)
    path = tmp_path / "noisy.png"
    Image.fromarray(noisy.astype(np.uint8)).save(path)
    browser.get(server)
    WebDriverWait(browser, 15).until(lambda d: len(Select(d.find_element("id", "model")).options) > 0)
    Select(browser.find_element("id", "task")).select_by_value("denoise")
    Select(browser.find_element("id", "model")).select_by_value("tiny-adafm")
    assert browser.find_element("id", "auto-box").is_displayed()
    browser.find_element("id", "strength").send_keys("\ue012" * 100)  # arrow left: lambda 0
    browser.find_element("id", "file").send_keys(str(path))
    first = _wait_for_result(browser, 0)
    browser.find_element("id", "auto-level").click()
    _wait_for_result(browser, first)
    note = browser.find_element("id", "estimated").text
    assert "estimated denoise level" in note
    assert 0.4 < float(browser.find_element("id", "strength").get_attribute("value")) < 0.6
    errors = [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []
