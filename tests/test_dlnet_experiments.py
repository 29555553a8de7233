"""DL-Net experiments (issue 15, part B): the naive-likelihood loss and how records reach it, the fixed
inpainting / interpolation test sets with saved records, their reading by `restorekit eval` (each DL-Net input
gets its own record; l1 / l2 on [-1, 1]), the configs, and the tables script."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from script_loader import load_script as _script
from test_dlnet import spy_inputs
from test_train import REPO, tiny_config, write_config

from restorekit import evaluation, io
from restorekit.degrade import parse_spec
from restorekit.errors import ConfigError
from restorekit.models import build
from restorekit.train import load_config, run
from restorekit.train.losses import Loss, likelihood

pytestmark = pytest.mark.usefixtures("one_thread")


def _batch(spec: str, n: int = 3, side: int = 16, seed: int = 0):
    """(clean, degraded, records) of n random images through `spec`."""
    clean = torch.rand(n, 3, side, side, generator=torch.Generator().manual_seed(seed))
    pipe = parse_spec(spec)
    pairs = [pipe.apply_one(clean[i], 10 + i) for i in range(n)]
    return clean, torch.stack([p[0] for p in pairs]), [p[1] for p in pairs]


# ------------------------------------------------------------------------------------- naive likelihood


@pytest.mark.parametrize("spec", ["inpaint:kind=square,size=6,shift=3,fill=mean", "bernoulli:ratio=0.5,fill=mean",
                                  "blur:kind=gaussian,width=1.5"])
def test_likelihood_is_zero_at_the_truth_and_grows_with_the_violation(spec):
    clean, lq, records = _batch(spec)
    assert torch.allclose(likelihood(clean, clean, records=records, lq=lq), torch.zeros(3), atol=1e-10)
    noise = torch.randn_like(clean) * 0.1
    values = [likelihood(clean + a * noise, clean, records=records, lq=lq) for a in (0.5, 1.0, 2.0)]
    assert values[0].shape == (3,) and bool((values[0] > 0).all())
    assert bool((values[1] > values[0]).all()) and bool((values[2] > values[1]).all())
    assert torch.allclose(values[2], 4 * values[1], rtol=1e-4)  # quadratic in the residual


def test_likelihood_ignores_what_the_mask_hides():
    """Missing pixels are not observed: changing the prediction inside the hole leaves L at 0."""
    clean, lq, records = _batch("inpaint:kind=square,size=8,shift=0,fill=mean", n=1)
    pred = clean.clone()
    pred[..., 4:12, 4:12] = 0.3  # the centred 8x8 hole of a 16x16 image
    assert float(likelihood(pred, clean, records=records, lq=lq)) == 0.0
    pred[..., 0, 0] += 0.5
    assert float(likelihood(pred, clean, records=records, lq=lq)) == pytest.approx(0.25 * 3 / (3 * 16 * 16))


def test_the_loss_reads_records_only_through_the_likelihood_term():
    clean, lq, records = _batch("bernoulli:ratio=0.3,fill=zero", n=2)
    pred = clean + 0.05
    combined = Loss([{"type": "l2", "weight": 1.0}, {"type": "likelihood", "weight": 1e3}])
    plain = Loss([{"type": "l2"}])
    assert combined.needs_records and not plain.needs_records
    expected = plain(pred, clean) + 1e3 * likelihood(pred, clean, records=records, lq=lq)
    assert torch.allclose(combined(pred, clean, None, records=records, lq=lq), expected)
    assert torch.equal(plain(pred, clean, None, records=records, lq=lq), plain(pred, clean))
    with pytest.raises(ConfigError, match="degradation record"):
        combined(pred, clean)


def _naive_config(**changes) -> dict:
    """Seconds: a width-4 context autoencoder on synthetic colour 64x64 crops, holes of side 1..30."""
    base = {"task": "inpaint", "model.type": "context_autoencoder", "model.args": {"width": 4},
            "data.train.channels": 3, "data.train.patch": 64, "data.train.size": 72,
            "data.train.levels": ["inpaint:kind=square,size=1..30,shift=10,fill=mean"],
            "data.val.levels": ["inpaint:kind=square,size=20,shift=0,fill=mean"], "data.val.size": 64,
            "train.loss": [{"type": "l2", "weight": 1.0}, {"type": "likelihood", "weight": 1000.0}],
            "train.steps": 3, "train.batch_size": 4, "train.checkpoint_every": 0, "train.ema_decay": 0.0}
    return tiny_config(**{**base, **changes})


@pytest.mark.parametrize("degrade_on", ["worker", "device"])
def test_a_model_without_records_trains_on_the_naive_likelihood(tmp_path, monkeypatch, degrade_on):
    """The records are kept for the loss although the model does not take them, one per sample, and the term
    compares each sample's D(output) with its own input."""
    from restorekit.train import losses

    seen = []
    original = losses.likelihood

    def spy(pred, target, mask=None, records=None, lq=None, **rest):
        seen.append((len(records), pred.shape[0], {r.steps[0].levels["size"] for r in records}))
        return original(pred, target, mask, records=records, lq=lq, **rest)

    spy.needs_records = True
    monkeypatch.setitem(losses.LOSSES, "likelihood", spy)
    path = write_config(tmp_path, _naive_config(**{"data.train.degrade_on": degrade_on}))
    run(load_config(path), tmp_path / "out")
    assert len(seen) == 3 and all(n == b == 4 for n, b, _ in seen)
    assert len(set().union(*(sizes for _, _, sizes in seen))) > 1  # each sample its own drawn hole


def test_the_naive_likelihood_refuses_inputs_without_records(tmp_path):
    path = write_config(tmp_path, _naive_config(**{"augment.moa": True}))
    with pytest.raises(ConfigError, match="augment.moa: the loss \\(likelihood\\) reads the degradation record"):
        run(load_config(path), tmp_path / "out")


# ------------------------------------------------------------------------------------- test sets + eval


@pytest.fixture
def test_sets(tmp_path, monkeypatch):
    """scripts/dlnet_test_sets.py on 2 synthetic 'benchmark' images (80x72), every set."""
    data = tmp_path / "data"
    for i in range(2):
        image = torch.rand(3, 80, 72, generator=torch.Generator().manual_seed(i))
        io.write_image(data / "test" / "Fake" / f"im{i}.png", image)
    monkeypatch.setenv("RESTOREKIT_DATA", str(data))
    module = _script("dlnet_test_sets")
    assert module.main(["--dataset", "Fake", "--root", str(tmp_path / "sets")]) == 0
    return module, tmp_path / "sets" / "Fake_64"


def test_test_sets_are_paired_folders_with_records_and_deterministic(test_sets, tmp_path):
    module, root = test_sets
    manifest = json.loads((root / "manifest.json").read_text())
    assert set(manifest["sets"]) == {s.name for s in module.dlnet_sets()}
    assert [s.column for s in module.dlnet_sets()][:4] == ["s = 10", "s = 20", "s = 30", "s = 20, centered"]
    folder = root / "inpaint_s30"
    pairs = evaluation.dataset_items(folder)
    assert len(pairs) == 2 * 10 and all(d.with_suffix(".json").is_file() for _, _, d in pairs)
    shifts = set()
    for _, clean_path, degraded_path in pairs:
        clean, degraded = io.read_image(clean_path)[0], io.read_image(degraded_path)[0]
        record = evaluation.sidecar_record(degraded_path)
        assert clean.shape == (3, 64, 64)
        assert torch.equal(record.forward(clean[None])[0], degraded)  # the saved input IS D(clean)
        levels = record.steps[0].levels
        assert levels["size"] == 30 and abs(levels["dx"]) <= 10 and abs(levels["dy"]) <= 10
        shifts.add((levels["dx"], levels["dy"]))
    assert len(shifts) > 5  # 10 sampled degradations per image
    ratios = {evaluation.sidecar_record(d).steps[0].levels["ratio"] for _, _, d in evaluation.dataset_items(root / "interp_r0_75")}
    assert len(ratios) == 20 and all(0 <= r <= 0.75 for r in ratios)
    again = _script("dlnet_test_sets")
    assert again.main(["--dataset", "Fake", "--root", str(tmp_path / "again"), "--only", "inpaint_s30"]) == 0
    twice = json.loads((tmp_path / "again" / "Fake_64" / "manifest.json").read_text())
    assert twice["sets"]["inpaint_s30"]["degraded_sha256"] == manifest["sets"]["inpaint_s30"]["degraded_sha256"]


def test_eval_hands_each_paired_input_its_saved_record_and_reports_pm1_errors(test_sets, monkeypatch):
    _, root = test_sets
    folder = root / "interp_r45"
    seen = spy_inputs(monkeypatch)
    result = evaluation.evaluate(build("dlnet_autoencoder", width=4), folder, evaluation.default_setup("interpolate"),
                                 limit=3)
    assert result["n_images"] == 3 and len(seen) == 3
    for (y, record), (_, clean_path, degraded_path) in zip(seen, evaluation.dataset_items(folder), strict=False):
        assert record.to_dict() == evaluation.sidecar_record(degraded_path).to_dict()
        assert torch.equal(record.forward(io.read_image(clean_path)[0][None]), y)
    for row in result["images"]:  # l2 on [-1, 1] = 4 x the MSE that the PSNR (peak 1 on [0, 1]) measures
        assert row["l2_pm1"] == pytest.approx(4 * 10 ** (-row["psnr"] / 10), rel=1e-9)
        assert 0 < row["l1_pm1"] <= 2
    assert result["l1_pm1"] == pytest.approx(sum(r["l1_pm1"] for r in result["images"]) / 3)
    # a model without records on the same folder: the sidecars are not read, the pm1 errors still reported
    plain = evaluation.evaluate(build("identity"), folder, evaluation.default_setup("interpolate"), limit=2)
    assert "l2_pm1" in plain and "l1_pm1" not in evaluation.evaluate(
        build("identity"), folder, evaluation.default_setup("denoise"), limit=1)


def test_a_record_taking_model_on_pairs_without_records_says_so(test_sets):
    from restorekit.errors import ModelError

    _, root = test_sets
    for sidecar in (root / "inpaint_s10" / "degraded").glob("*.json"):
        sidecar.unlink()
    with pytest.raises(ModelError, match="needs the degradation record"):
        evaluation.evaluate(build("dlnet_autoencoder", width=4), root / "inpaint_s10",
                            evaluation.default_setup("inpaint"), limit=1)


# ------------------------------------------------------------------------------------- configs + tables


def test_the_dlnet_configs_are_one_experiment_each_at_equal_budgets():
    folder = REPO / "configs" / "dlnet"
    for task in ("inpaint", "interp"):
        cfgs = {kind: load_config(folder / f"{task}_{kind}.yaml") for kind in
                ("reference", "joint", "on_demand", "multitask", "naive_likelihood", "dlnet")}
        assert len(cfgs["reference"].data.train.levels) == 1 and cfgs["reference"].strategy.type == "single"
        assert len(cfgs["on_demand"].data.train.levels) == 5 and len(cfgs["multitask"].data.train.levels) == 30
        assert cfgs["multitask"].strategy.type == "uncertainty" and cfgs["on_demand"].strategy.type == "on_demand"
        assert [t.type for t in cfgs["naive_likelihood"].train.loss] == ["l2", "likelihood"]
        assert cfgs["naive_likelihood"].train.loss[1].weight == 1000
        assert cfgs["dlnet"].model.type == "dlnet_autoencoder" and cfgs["dlnet"].model.args["steps"] == 5
        assert cfgs["dlnet"].model.args["lr"] == (1e-3 if task == "inpaint" else 1e-2)
        for kind, cfg in cfgs.items():
            if kind != "reference":  # fine-tuned from the reference, same steps, batch, optimiser, data
                assert cfg.model.init == f"runs/dlnet/{task}_reference/final.safetensors", kind
                assert (cfg.train.steps, cfg.train.batch_size) == (cfgs["joint"].train.steps, 32), kind
                assert cfg.train.scheduler == cfgs["joint"].train.scheduler, kind
                assert cfg.train.optimizer == cfgs["joint"].train.optimizer, kind
                assert cfg.data.train.folder == ["T91", "BSD200"] and cfg.data.train.patch == 64, kind
    on_demand = [lv.spec for lv in load_config(folder / "inpaint_on_demand.yaml").data.train.levels]
    assert [spec.split(",")[1] for spec in on_demand] == ["size=1..6", "size=7..12", "size=13..18", "size=19..24",
                                                          "size=25..30"]  # [L-5, L]: tiles 1..30


def test_the_tables_script_lists_every_run_and_writes_the_papers_layout(tmp_path):
    tables = _script("dlnet_tables")
    commands = tables.train_commands(Path("runs/dlnet"))
    for command in commands:
        config = REPO / command.split()[2]
        assert config.is_file(), command
    assert len(commands) == 12 + 7 + 2 and any("idn_x4.safetensors" in c for c in commands)  # + the small DRRN pair
    # DL-Net on VDSR: a second x2 stage, x3 and x4 all start from the first x2 run (VDSR serves every scale)
    chained = [c for c in commands if "model.init=runs/dlnet/sr_dlnet_vdsr_x2/final.safetensors" in c]
    assert [c.split("--out ")[1].split()[0] for c in chained] == [
        "runs/dlnet/sr_dlnet_vdsr_x2_cont", "runs/dlnet/sr_dlnet_vdsr_x3", "runs/dlnet/sr_dlnet_vdsr_x4"]
    chosen = [s for s in _script("dlnet_test_sets").dlnet_sets() if s.name.startswith("inpaint")]
    fake = {"l1_pm1": 0.02, "l2_pm1": 0.002, "psnr": 30.0}
    results = {label: {s.name: dict(fake) for s in chosen} for label in tables.METHODS}
    results["On-Demand Learning [9]"] = None
    results["DL-Net"]["inpaint_s30"]["psnr"] = 29.5
    text = tables.task_table("inpaint", results, "fake")
    assert "| On-Demand Learning [9] | not trained |" in text
    assert "s = 30: -0.50 dB (NOT better)" in text and "does NOT hold at every level" in text
    assert "| DL-Net | 0.0129 / 0.0008 / 38.47 |" in text  # the paper's row beside
    assert math.isclose(float(text.split("| Autoencoder (Default) | ")[1].split(" / ")[2].split(" ")[0]), 30.0)


def test_the_refinement_probe_switches_the_updates_off_and_wraps_the_released_backbone(tmp_path):
    """scripts/dlnet_refinement_probe.py (the u = 0 diagnosis in BENCHMARKS): K = 1 is the backbone alone (spec
    1.2), so the trained model at K = 1 and at K = 5 differ, and the released backbone wrapped in the module at
    K = 1 scores exactly what it scores alone (the wrapper carries its weights and adds nothing)."""
    from zoo_helpers import save_zoo_model

    probe = _script("dlnet_refinement_probe")
    trained = save_zoo_model(tmp_path / "zoo", "tiny-dlnet", "dlnet_vdsr", {"scale": 2, "depth": 3, "features": 4},
                             task="sr", family="dlnet", levels=(0, 3), curve=False)
    released = save_zoo_model(tmp_path / "zoo", "tiny-vdsr", "vdsr", {"depth": 3, "features": 4}, task="sr",
                              family="vdsr", levels=None, seed=1)
    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        io.write_image(images / f"{i}.png", torch.rand(3, 24, 24, generator=torch.Generator().manual_seed(i)))
    setup = evaluation.default_setup("sr", scale=2, grey="y", degrade="blur:kind=gaussian,width=0+down:scale=2")
    out = probe.probe(str(trained), str(released), images, setup, steps=5)
    assert list(out) == ["trained, K = 1", "trained, K = 5", "released backbone alone",
                         "released backbone in the module, K = 5, not fine-tuned"]
    assert out["trained, K = 1"]["psnr"] != out["trained, K = 5"]["psnr"]
    assert set(out["released backbone alone"]["images"]) == {"0.png", "1.png"}
    still = probe.probe(str(trained), str(released), images, setup, steps=1)
    assert math.isclose(still["released backbone in the module, K = 1, not fine-tuned"]["psnr"],
                        still["released backbone alone"]["psnr"], abs_tol=1e-6)
