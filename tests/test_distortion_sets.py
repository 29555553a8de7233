"""Flickr-Distortion-style sets (thesis ch. 6, spec methods-thesis.md 5.1; issue 18 item 1)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from restorekit import io
from restorekit.cli import main
from restorekit.data.distortion_sets import DETECTION, generate, place_boxes
from restorekit.degrade import parse_spec
from restorekit.degrade.distortions import DISTORTIONS, FLICKR_DISTORTIONS


def test_the_vocabulary_is_the_thesis_eight_types_with_their_levels():
    """Table of spec 5.1: GWN var {0.0125, 0.025, 0.05}, S&P the same amounts, blur {1.5, 3, 6}, JPEG {20, 10, 5},
    low-pass {0.3, 0.1, 0.03}, NLM {0.04, 0.06, 0.08}, fnoise {2.5, 5, 10}; quantisation ours (not stated)."""
    levels = {d.name: d.levels for d in FLICKR_DISTORTIONS}
    assert levels == {"gaussian_noise": (0.0125, 0.025, 0.05), "salt_pepper": (0.0125, 0.025, 0.05),
                      "gaussian_blur": (1.5, 3.0, 6.0), "jpeg": (20, 10, 5), "lowpass_noise": (0.3, 0.1, 0.03),
                      "denoising_artifact": (0.04, 0.06, 0.08), "f_noise": (2.5, 5.0, 10.0), "quantization": (16, 8, 4)}
    for kind in FLICKR_DISTORTIONS:  # every name is an engine spec at each level and over its range
        for spec in (*(kind.spec(level) for level in kind.levels), kind.range_spec()):
            parse_spec(spec)
    assert {"contrast", "identity"} <= set(DISTORTIONS)  # SHDD's extra types share the vocabulary


def _sources(count: int, size: int = 80):
    rng = np.random.default_rng(0)
    images = [torch.from_numpy(rng.random((3, size, size + 8), dtype=np.float32)) for _ in range(count)]
    return [(f"img{i}.png", lambda image=image: image) for i, image in enumerate(images)]


def test_classification_is_24_whole_images_per_source_split_by_source(tmp_path):
    labels = generate("classification", _sources(5), tmp_path, crop=64)
    assert len(labels["items"]) == 5 * 24
    by_source = {}
    for item in labels["items"]:
        by_source.setdefault(item["source"], set()).add(item["split"])
        (distortion,) = item["distortions"]
        assert distortion["box"] == [0, 0, 64, 64] and distortion["type"] in labels["types"]
        assert distortion["level"] == labels["levels"][distortion["type"]][distortion["level_index"]]
    assert all(len(splits) == 1 for splits in by_source.values())  # no source in two splits
    assert sorted(s for (s,) in by_source.values()) == ["test", "train", "train", "train", "val"]  # 60/20/20


@pytest.mark.parametrize("kind", ["basic", "difficult"])
def test_detection_boxes_are_disjoint_in_range_and_only_they_change(tmp_path, kind):
    (low, high), (small, large) = DETECTION[kind]
    sources = _sources(2, size=120)
    labels = generate(kind, sources, tmp_path, crop=100, versions=3)
    assert len(labels["items"]) == 6
    clean = {name: load()[..., 10:110, 14:114] for name, load in sources}  # the centre crop
    for item in labels["items"]:
        boxes = [d["box"] for d in item["distortions"]]
        assert 1 <= len(boxes) <= high and (kind == "basic" or len(boxes) >= 3)
        for x0, y0, x1, y1 in boxes:
            assert small * 100 - 1 <= x1 - x0 <= large * 100 + 1 and small * 100 - 1 <= y1 - y0 <= large * 100 + 1
        image = io.read_image(tmp_path / item["file"])[0]
        outside = torch.ones(100, 100, dtype=torch.bool)
        for x0, y0, x1, y1 in boxes:
            outside[y0:y1, x0:x1] = False
        reference = (clean[item["source"]] * 255).round() / 255
        assert torch.allclose(image[:, outside], reference[:, outside], atol=1e-6)
        for i, a in enumerate(boxes):
            for b in boxes[i + 1:]:
                assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]


def test_placement_gives_fewer_boxes_when_the_crop_is_full():
    boxes = place_boxes(np.random.default_rng(0), 10, 9, (0.5, 0.7))
    assert 1 <= len(boxes) < 9


def test_the_command_resumes_and_says_what_it_wrote(tmp_path, capsys):
    folder = tmp_path / "clean"
    folder.mkdir()
    for name, load in _sources(3):
        io.write_image(folder / name, load())
    out = tmp_path / "set"
    assert main(["distortion-set", "basic", str(folder), "-o", str(out), "--crop", "64", "--versions", "2"]) == 0
    assert "6 images" in capsys.readouterr().err
    first = {p.name: p.stat().st_mtime_ns for p in (out / "images").iterdir()}
    assert main(["distortion-set", "basic", str(folder), "-o", str(out), "--crop", "64", "--versions", "2"]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (out / "images").iterdir()} == first  # kept, not rewritten
    assert len(json.loads((out / "labels.json").read_text())["items"]) == 6
