"""Distortion recognition (thesis ch. 6, spec methods-thesis.md 5.2-5.3; issue 18 items 2 and 4): the classes, the
label maps, regions -> boxes, VOC mAP, the training loop's resume, `restorekit recognizer` and `restorekit analyze`."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from restorekit import io
from restorekit.cli import main
from restorekit.data.distortion_sets import generate
from restorekit.degrade.distortions import distortion
from restorekit.metrics import average_precision, box_iou, mean_average_precision
from restorekit.recognition import (
    CLASSES,
    class_index,
    classify,
    find_distortions,
    label_map,
    level_index_of,
    level_value,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_classes_are_identity_and_8_types_by_3_levels():
    """Flickr-Distortion: 8 types x 3 levels = 24 classes (Table 6.1's classification), + identity for detection."""
    assert len(CLASSES) == 25 and CLASSES[0] == "identity"
    assert CLASSES[class_index("jpeg", 2)] == "jpeg@2" and class_index("identity", 0) == 0


def test_drawn_levels_take_the_nearest_of_three_in_log_space_and_interpolate_back():
    jpeg, blur = distortion("jpeg"), distortion("gaussian_blur")
    assert [level_index_of(jpeg, q) for q in (30, 15, 14, 8, 7)] == [0, 0, 1, 1, 2]  # cuts sqrt(200), sqrt(50)
    assert level_value(jpeg, 1.0) == 10 and level_value(jpeg, 2.0) == 5
    assert level_value(blur, 0.5) == pytest.approx(math.sqrt(1.5 * 3.0))  # geometric between 1.5 and 3
    assert level_value(blur, 7.0) == 6.0  # clamped to the strongest


def test_label_map_marks_boxes_with_their_class_and_identity_elsewhere():
    labels = label_map(20, 30, [{"type": "gaussian_noise", "level": 0.05, "box": [2, 3, 12, 8]},
                                {"type": "jpeg", "level": 10, "level_index": 1, "box": [15, 0, 30, 20]}])
    assert labels[3:8, 2:12].eq(class_index("gaussian_noise", 2)).all()
    assert labels[:, 15:].eq(class_index("jpeg", 1)).all()
    assert labels.eq(0).sum() == 20 * 30 - 50 - 300


def _probabilities(height: int, width: int, regions: list[tuple[str, int, tuple[int, int, int, int]]]):
    probs = torch.full((len(CLASSES), height, width), 0.01)
    probs[0] = 1.0
    for name, level, (x0, y0, x1, y1) in regions:
        probs[:, y0:y1, x0:x1] = 0.01
        probs[class_index(name, level), y0:y1, x0:x1] = 0.9
    return probs / probs.sum(0, keepdim=True)


def test_regions_become_boxes_with_type_level_and_score():
    probs = _probabilities(100, 120, [("jpeg", 1, (10, 20, 60, 70)), ("salt_pepper", 2, (70, 0, 120, 40)),
                                      ("f_noise", 0, (0, 95, 2, 97))])  # 4 pixels: under MIN_AREA, not reported
    found = {f.type: f for f in find_distortions(probs)}
    assert set(found) == {"jpeg", "salt_pepper"}
    assert found["jpeg"].box == (10, 20, 60, 70) and found["salt_pepper"].box == (70, 0, 120, 40)
    assert found["jpeg"].level == 10 and found["salt_pepper"].level == pytest.approx(0.05, rel=0.05)
    assert found["jpeg"].area == pytest.approx(50 * 50 / (100 * 120))
    assert 0.8 < found["jpeg"].score <= 1
    assert classify(probs) == ("jpeg", 1)  # the largest region wins the whole-image vote
    assert find_distortions(_probabilities(50, 50, [])) == []  # undistorted: nothing reported
    assert find_distortions(probs, min_score=0.95) == []  # analyze reports only regions this sure (default 0.4)


def test_voc_average_precision():
    """VOC all-point AP: hits T, F, T of 2 positives -> precision made monotone (1, 1, 2/3) -> 0.5 + 0.5 * 2/3."""
    assert average_precision([True, False, True], 2) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert average_precision([True, True], 2) == 1.0 and average_precision([], 3) == 0.0
    assert math.isnan(average_precision([False], 0))
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    truths = [[("jpeg", (0, 0, 10, 10))], [("jpeg", (0, 0, 10, 10)), ("salt_pepper", (20, 20, 30, 30))]]
    perfect = [[("jpeg", 0.9, (0, 0, 10, 10))], [("jpeg", 0.8, (0, 0, 10, 10)), ("salt_pepper", 0.7, (20, 20, 30, 30))]]
    assert mean_average_precision(perfect, truths, 0.9)["mAP"] == 1.0
    shifted = [[("jpeg", 0.9, (0, 0, 10, 10))], [("jpeg", 0.8, (2, 0, 12, 10)), ("salt_pepper", 0.7, (20, 20, 30, 30))]]
    scores = mean_average_precision(shifted, truths, 0.75)  # IoU 80/120 = 0.67 < 0.75: the second jpeg misses
    assert scores["jpeg"] == pytest.approx(0.5) and scores["mAP"] == pytest.approx(0.75)
    duplicate = [[("jpeg", 0.9, (0, 0, 10, 10)), ("jpeg", 0.8, (0, 0, 10, 10))], []]  # a second hit on one box: FP
    assert mean_average_precision(duplicate, truths, 0.5)["jpeg"] == pytest.approx(0.5)


@pytest.fixture(scope="module")
def tiny_sets(tmp_path_factory):
    """A classification and a basic detection set from 5 synthetic sources (noise-textured, 96x96)."""
    root = tmp_path_factory.mktemp("sets")
    rng = np.random.default_rng(0)
    images = [torch.from_numpy(rng.random((3, 100, 100), dtype=np.float32)) for _ in range(5)]
    sources = [(f"s{i}.png", lambda image=image: image) for i, image in enumerate(images)]
    generate("classification", sources, root / "cls", crop=64)
    generate("basic", sources, root / "basic", crop=96, versions=2)
    return root


def _config(tmp_path, sets, steps: int) -> str:
    path = tmp_path / f"tiny_{steps}.yaml"
    path.write_text(json.dumps({"name": "tiny", "sets": [str(sets / "cls"), str(sets / "basic")],
                                "model_args": {"widths": [8, 8, 16, 16], "depths": [1, 1, 1, 1], "stem": 8},
                                "crop": 48, "batch_size": 4, "steps": steps, "checkpoint_every": 3, "log_every": 3}))
    return str(path)


def test_training_resumes_to_the_same_weights_and_writes_a_carded_model(tiny_sets, tmp_path, capsys):
    from restorekit.card import read_card
    from restorekit.train.recognition import RecognitionConfig, train
    from restorekit.zoo import read_weights

    config = _config(tmp_path, tiny_sets, 6)
    assert main(["recognizer", "train", config, "--out", str(tmp_path / "straight")]) == 0
    stopped = tmp_path / "stopped"  # killed after step 6's update, before its end: resumes from step 3's checkpoint

    def kill(entry: dict) -> None:
        if entry["step"] == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(RecognitionConfig.load(config), stopped, on_log=kill)
    assert not (stopped / "final.safetensors").exists()
    assert main(["recognizer", "train", config, "--out", str(stopped), "--resume"]) == 0
    assert "resuming from" in capsys.readouterr().out
    straight, resumed = (read_weights(p / "final.safetensors") for p in (tmp_path / "straight", stopped))
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    card = read_card(tmp_path / "straight" / "final.json")
    assert card.task == "analyze" and card.architecture == "distortion_recognizer" and card.sha256
    assert main(["recognizer", "eval", "--model", str(tmp_path / "straight" / "final.safetensors"), "--set",
                 str(tiny_sets / "cls"), "--set", str(tiny_sets / "basic"), "--json", str(tmp_path / "s.json")]) == 0
    results = json.loads((tmp_path / "s.json").read_text())["results"]
    assert 0 <= results[0]["type_accuracy"] <= 1 and results[0]["n_images"] == 24  # one test source x 24
    assert {"mAP@0.5", "mAP@0.75", "mAP@0.9"} <= set(results[1])


def test_analyze_writes_json_and_overlay_and_refuses_bad_input(tiny_sets, tmp_path, capsys, tiny_zoo):
    config = _config(tmp_path, tiny_sets, 2)
    assert main(["recognizer", "train", config, "--out", str(tmp_path / "run")]) == 0
    model = str(tmp_path / "run" / "final.safetensors")
    image = tiny_sets / "basic" / "images" / "s0_00.png"
    report, overlay = tmp_path / "r.json", tmp_path / "o.png"
    capsys.readouterr()
    assert main(["analyze", str(image), "--model", model, "--json", str(report), "--overlay", str(overlay)]) == 0
    data = json.loads(report.read_text())
    assert data["image"] == str(image) and data["size"] == [96, 96] and "noise_sigma" in data["estimates"]
    for item in data["distortions"]:
        assert set(item) >= {"type", "level", "box", "score"} and item["type"] in CLASSES[0:1] + tuple(
            c.split("@")[0] for c in CLASSES[1:])
    assert io.read_image(overlay)[0].shape == (3, 96, 96)
    # refusals: one line, non-zero, nothing written or replaced
    before = report.read_bytes()
    assert main(["analyze", str(image), "--model", model, "--json", str(report)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err and report.read_bytes() == before
    assert main(["analyze", str(tmp_path / "missing.png"), "--model", model]) == 2
    assert "missing.png" in capsys.readouterr().err
    assert main(["analyze", str(image), "--model", "tiny-adafm"]) == 2  # a restorer is not a recogniser
    assert "analyze needs a distortion recogniser" in capsys.readouterr().err
    assert main(["restore", str(image), "-o", str(tmp_path / "out.png"), "--model", model]) == 2
    assert "restores nothing" in capsys.readouterr().err and not (tmp_path / "out.png").exists()


# ---------------------------------------------------------------------------------------------------
# The bundled recogniser (weights/distortion_recognizer.*): issue 18's acceptance for `restorekit analyze`
# ---------------------------------------------------------------------------------------------------


def _analyze(tmp_path, image: torch.Tensor, name: str, capsys) -> dict:
    path = tmp_path / f"{name}.png"
    io.write_image(path, image)
    capsys.readouterr()
    assert main(["analyze", str(path), "--json", str(tmp_path / f"{name}.json")]) == 0, capsys.readouterr().err
    return json.loads((tmp_path / f"{name}.json").read_text())


def _degraded(image: torch.Tensor, spec: str) -> torch.Tensor:
    from restorekit.degrade import parse_spec

    return parse_spec(spec).apply_one(image, seed=0)[0].clamp(0, 1)


@pytest.mark.parametrize("spec,expected", [("noise:sigma=50,clip=true", "gaussian_noise"),
                                           ("jpeg:quality=10,encoder=pil", "jpeg")])
def test_analyze_names_a_whole_image_distortion_first(astronaut, tmp_path, capsys, spec, expected):
    """Issue 18: whole-image Gaussian noise sigma 50 -> gaussian_noise first; JPEG q10 -> jpeg first."""
    report = _analyze(tmp_path, _degraded(astronaut, spec), expected, capsys)
    found = report["distortions"]
    assert found and found[0]["type"] == expected, found[:3]
    if expected == "jpeg":  # a PNG of a decoded JPEG: its quality read from the pixels' DCT lattice
        assert report["estimates"]["jpeg_quality"] == 10


def test_analyze_finds_two_distorted_regions_with_their_boxes(astronaut, tmp_path, capsys):
    """Issue 18: a synthetic image with two known distorted regions -> both types, each box at IoU >= 0.5."""
    image = astronaut.clone()
    truths = {"salt_pepper": ((40, 60, 220, 260), "saltpepper:amount=0.05"),
              "gaussian_blur": ((280, 250, 480, 470), "blur:kind=gaussian,width=6")}
    for (x0, y0, x1, y1), spec in truths.values():
        image[:, y0:y1, x0:x1] = _degraded(astronaut, spec)[:, y0:y1, x0:x1]
    found = _analyze(tmp_path, image, "two_regions", capsys)["distortions"]
    for name, (box, _) in truths.items():
        overlaps = [box_iou(tuple(f["box"]), box) for f in found if f["type"] == name]
        assert overlaps and max(overlaps) >= 0.5, (name, found)
