"""Shared fixtures. Dataset tests skip with a reason when RESTOREKIT_DATA (or ../shared/data) is absent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from restorekit.paths import data_root, reference_weights_root


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--full-sets", action="store_true",
                     help="also run the `full_set` tests: a released model over a whole benchmark set (minutes each)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`make test` stays inside CI's 15 minutes: a whole-set reproduction whose code path a smaller set already
    checks runs only with --full-sets."""
    if config.getoption("--full-sets"):
        return
    skip = pytest.mark.skip(reason="a whole benchmark set (minutes): run with `pytest --full-sets`; "
                                   "a smaller set checks the same path in `make test`")
    for item in items:
        if "full_set" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    root = data_root()
    if root is None:
        pytest.skip("benchmark data not found: set RESTOREKIT_DATA to the shared data folder")
    return root


@pytest.fixture(scope="session")
def reference_weights() -> Path:
    root = reference_weights_root()
    if root is None:
        pytest.skip("reference weights not found: expected beside RESTOREKIT_DATA as ../reference-weights")
    return root


@pytest.fixture
def astronaut() -> torch.Tensor:
    """scikit-image's bundled astronaut, 512x512 RGB, as a CHW float tensor in [0, 1]."""
    from skimage import data

    return torch.from_numpy(data.astronaut().astype(np.float32) / 255).permute(2, 0, 1).contiguous()


@pytest.fixture
def camera() -> torch.Tensor:
    """scikit-image's bundled cameraman, 512x512 grey, as a 1xHxW float tensor in [0, 1]."""
    from skimage import data

    return torch.from_numpy(data.camera().astype(np.float32) / 255)[None]


@pytest.fixture
def one_thread():
    """Tiny models run fastest on one torch thread (and do not fight a busy CI machine for cores);
    use with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_zoo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two tiny carded models (AdaFM-Net 15..75 with a linear lambda(level), DnCNN at 25) as the user's zoo,
    the bundled zoo hidden."""
    from zoo_helpers import save_zoo_model

    zoo = tmp_path / "zoo"
    save_zoo_model(zoo)
    save_zoo_model(zoo, "tiny-dncnn", "dncnn", {"in_channels": 3, "depth": 3, "features": 8},
                   task="denoise", family="dncnn", levels=(25, 25), curve=False)
    monkeypatch.setenv("RESTOREKIT_WEIGHTS", str(zoo))
    monkeypatch.setenv("RESTOREKIT_BUNDLED", "none")
    return zoo
