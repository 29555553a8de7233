"""The canonical degraded test sets (issue 3, item 6): the committed manifest describes every set the
script makes, and regenerating a set with `restorekit degrade --seed 0` gives the manifest's pixels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from script_loader import load_script

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def script():
    return load_script("canonical_test_sets")


@pytest.fixture(scope="module")
def manifest(script):
    return json.loads(script.MANIFEST.read_text())


def test_manifest_lists_every_canonical_set_with_its_command(script, manifest):
    sets = script.canonical_sets()
    assert [s.name for s in sets] == list(manifest["sets"])
    for test_set in sets:
        entry = manifest["sets"][test_set.name]
        assert entry["images"] > 0 and len(entry["pixels_sha256"]) == 64
        assert f"--spec {test_set.spec} --seed 0" in entry["command"] and "/work/" not in entry["command"]
    assert manifest["seed"] == 0 and "torch" in manifest["software"]


def test_fingerprint_depends_on_pixels_not_on_png_compression(script, tmp_path, astronaut):
    pixels = (astronaut[:, :32, :32].permute(1, 2, 0).numpy() * 255).round().astype("uint8")
    for level, folder in ((1, "fast"), (9, "small")):
        (tmp_path / folder).mkdir()
        Image.fromarray(pixels).save(tmp_path / folder / "a.png", compress_level=level)
    assert (tmp_path / "fast" / "a.png").read_bytes() != (tmp_path / "small" / "a.png").read_bytes()
    assert script.fingerprint(tmp_path / "fast") == script.fingerprint(tmp_path / "small")
    Image.fromarray(pixels[:, ::-1]).save(tmp_path / "fast" / "a.png")
    assert script.fingerprint(tmp_path / "fast") != script.fingerprint(tmp_path / "small")


@pytest.mark.data
@pytest.mark.parametrize("name", ["Set5/LR_x4", "Set5/blur_u2.6_x3", "Set12/noise_s25", "classic5/jpeg_q10"])
def test_regenerated_sets_match_the_manifest(script, manifest, data_dir, tmp_path, name):
    """Bit-exact on the software stack the manifest records (its `software`); the full list is checked
    by `scripts/canonical_test_sets.py --check` (75 s)."""
    test_set = next(s for s in script.canonical_sets() if s.name == name)
    assert script.generate(test_set, data_dir, tmp_path) == manifest["sets"][name]
