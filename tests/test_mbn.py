"""MBN / R-MBN (issue 17; spec methods-dlnet-rednet-mbn-adafm.md section 3): the architecture against the paper's
Table 8 parameter counts, the improved attention, the hierarchy and the recurrent order, the factor condition
through the trainer, and R-MBN's step-2 recipe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from script_loader import load_script as _script
from test_train import REPO, tiny_config, write_config

from restorekit.degrade import factor_of, parse_spec
from restorekit.errors import ConfigError, ModelError
from restorekit.models import build, create_model
from restorekit.models.mbn import FACTORS, RECURRENT_ORDER, ChannelAttention, total_variation
from restorekit.train import load_config, run


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def paper_mbn():
    return create_model("mbn")  # 96 / 64 channels, the improved branches, the R -> B -> J -> H hierarchy


def test_durb_m_blocks_have_table_8_parameter_counts(paper_mbn):
    """Table 8: M1..M5 0.64 / 0.74 / 0.74 / 0.84 / 0.98M (stem 3.94M), M6 0.98M, M7 = M8 1.43M."""
    assert [count(b) for b in paper_mbn.stem] == [640_032, 738_336, 738_336, 836_640, 984_096]
    assert sum(count(b) for b in paper_mbn.stem) == 3_937_440
    assert [count(b) for b in paper_mbn.hierarchy] == [984_096, 1_426_464, 1_426_464]


def test_improved_branches_have_table_8_parameter_counts(paper_mbn):
    """Table 8 (improved): I1 0.32 / I2 0.98 / I3 0.98 / I4 0.07M; g1 0.04, g2 = g3 0.48, g4 0.13M;
    Table 7: input branches 2.35M, output branches (with M6-M8) 4.96M."""
    inputs = {f: count(paper_mbn.inputs[f]) for f in FACTORS}
    outputs = {f: count(paper_mbn.outputs[f]) for f in FACTORS}
    assert inputs == {"rain": 315_392, "blur": 981_984, "jpeg": 981_984, "haze": 74_784}
    assert outputs == {"rain": 40_707, "blur": 478_089, "jpeg": 478_089, "haze": 128_579}
    assert round(sum(inputs.values()) / 1e6, 2) == 2.35
    assert round((sum(outputs.values()) + sum(count(b) for b in paper_mbn.hierarchy)) / 1e6, 2) == 4.96


def test_minimal_design_has_table_7_parameter_counts():
    """Table 7 (minimal): one 3-conv input branch 0.07M, stem 3.94M, four minimal heads 0.52M."""
    minimal = create_model("mbn", branches="minimal", shared_input=True, hierarchy=False)
    assert count(minimal.inputs["shared"]) == 74_784 and len(minimal.inputs) == 1
    assert sum(count(o) for o in minimal.outputs.values()) == 4 * 128_579
    assert len(minimal.hierarchy) == 0


def test_total_variation_is_the_mean_powered_differences():
    """v_c = mean |y(i+1, j) - y(i, j)|^beta + mean |y(i, j+1) - y(i, j)|^beta, beta = 3 (Sec. 3.2)."""
    y = torch.tensor([[[[0.0, 1.0], [2.0, 4.0]]]])
    vertical = (2.0**3 + 3.0**3) / 2  # (0 -> 2), (1 -> 4)
    horizontal = (1.0**3 + 2.0**3) / 2  # (0 -> 1), (2 -> 4)
    assert total_variation(y, 3.0).item() == pytest.approx(vertical + horizontal)


def test_attention_reads_tv_and_gap_with_a_hidden_width_of_64():
    """FC 2C -> 64 -> C for TV + GAP ([C]); C -> 64 -> C for one statistic; 'none' is the identity."""
    both, gap = ChannelAttention(96, 64, "tv+gap"), ChannelAttention(96, 64, "gap")
    assert tuple(both.fc[0].weight.shape) == (64, 192) and tuple(gap.fc[0].weight.shape) == (64, 96)
    x = torch.rand(2, 96, 6, 6)
    assert torch.equal(ChannelAttention(96, 64, "none")(x), x)
    smooth = torch.full((1, 96, 6, 6), 0.5)
    rough = torch.ones(1, 96, 6, 6)
    rough[..., ::2, :] = 0.0  # the same channel means as `smooth`, a large total variation

    def weights(attention, x):  # the channel scaling, read at a pixel that is not zero
        return attention(x)[0, :, 1, 0] / x[0, :, 1, 0]

    assert torch.allclose(weights(gap, smooth), weights(gap, rough))  # the standard SE sees only the mean
    assert not torch.allclose(weights(both, smooth), weights(both, rough))  # MBN's attention sees the TV too


def test_taps_follow_the_hierarchy_rain_blur_jpeg_haze():
    """O1 = g1 after S (rain), O2 after M6 (blur), O3 after M7 (JPEG), O4 after M8 (haze): a path's output
    depends on exactly the hierarchy blocks below its tap."""
    model = create_model("mbn", features=8, res_features=8, rain_iterations=1, identity_init=False)
    image = torch.rand(1, 3, 32, 32)
    for factor, blocks in zip(FACTORS, (0, 1, 2, 3), strict=True):
        model.zero_grad()
        model(image, factor=factor).sum().backward()
        used = [i for i, b in enumerate(model.hierarchy) if b.t1.weight.grad is not None]
        assert used == list(range(blocks)), factor


def test_r_mbn_runs_every_path_in_the_order_j_h_b_r_and_clamps():
    """Table 2's best order J -> H -> B -> R; [C] clamps to [0, 1] between steps; the forward without a
    factor is the last step."""
    assert RECURRENT_ORDER == ("jpeg", "haze", "blur", "rain")
    model = create_model("mbn", features=8, res_features=8, rain_iterations=1, identity_init=False).eval()
    image = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        steps = model.recurrent(image)
        assert [f for f, _ in steps] == list(RECURRENT_ORDER)
        x = image
        for factor, out in steps:
            x = model.path(x, factor).clamp(0, 1)
            assert torch.equal(out, x)
        assert torch.equal(model(image), steps[-1][1])


def test_a_one_factor_model_is_a_dedicated_network_and_takes_no_factor():
    dedicated = build("mbn", factors=("rain",), features=8, res_features=8, rain_iterations=1, identity_init=False)
    assert dedicated.info.inputs == () and dedicated.info.factors == ("rain",)
    image = torch.rand(1, 3, 20, 28)
    with torch.no_grad():
        assert torch.equal(dedicated(image), dedicated.module.path(image, "rain"))  # no recurrence, no clamp
    with pytest.raises(ModelError, match="takes no factor"):
        dedicated(image, factor="rain")
    with pytest.raises(ModelError, match="paths for rain, not 'haze'"):
        dedicated.module(image, factor="haze")


def test_paths_are_residual_start_as_the_identity_and_any_size_is_served():
    """Every output branch ends in tanh and adds its input; `identity_init` zeroes its last conv(s), so every
    path starts as the identity (an option: the default is PyTorch's init, as the reference code)."""
    model = create_model("mbn", features=8, res_features=8, rain_iterations=2, identity_init=True)
    assert all(float(conv.weight.abs().sum()) == 0 for head in model.outputs.values() for conv in head.last_convs())
    assert float(create_model("mbn", features=8, res_features=8, identity_init=False).outputs["rain"]
                 .last_convs()[0].weight.abs().sum()) > 0
    image = torch.rand(1, 3, 37, 23)
    with torch.no_grad():
        for factor in FACTORS:
            assert torch.allclose(model(image, factor=factor), image, atol=1e-6), factor


def _stem_gradient(model, factor: str) -> float:
    torch.manual_seed(1)
    image = torch.rand(2, 3, 32, 32)
    model.zero_grad()
    (model(image, factor=factor) - image.flip(-1)).abs().mean().backward()
    return max(float(p.grad.abs().max()) for name, p in model.named_parameters()
               if name.startswith("stem.") and p.grad is not None)


def test_kaiming_init_lets_the_gradient_reach_the_stem_of_every_path():
    """Why the CPU recipes use init=kaiming: with PyTorch's default init the multi-scale paths (~30 convs) pass
    the stem a gradient under 1e-4, and Adam barely moves them at a small budget (our first joint run learned
    only haze); He init with the residual and output ends scaled by 0.1 gives every path's stem > 1e-3."""
    torch.manual_seed(0)
    default = create_model("mbn", features=16, res_features=8, rain_iterations=2)
    torch.manual_seed(0)
    kaiming = create_model("mbn", features=16, res_features=8, rain_iterations=2, init="kaiming")
    assert max(_stem_gradient(default, f) for f in ("blur", "jpeg")) < 1e-4
    assert min(_stem_gradient(kaiming, f) for f in FACTORS) > 1e-3
    ends = [conv for block in kaiming.stem for conv in block.residual_ends()]
    assert all(float(conv.weight.std()) < 0.1 * 2 ** 0.5 / (conv.weight[0].numel() ** 0.5) * 1.5 for conv in ends)
    with pytest.raises(ModelError, match="init is one of pytorch, kaiming"):
        create_model("mbn", features=8, res_features=8, init="xavier")


def test_factor_of_names_the_single_operator_of_a_spec():
    assert factor_of("rain:length=10|20,angle=80,intensity=0.7") == "rain"
    assert factor_of("blur:kind=motion,preset=1..6,angle=-45..45") == "blur"
    assert factor_of("jpeg:quality=15..50,encoder=pil") == "jpeg"
    assert factor_of("haze:beta=0.1,airlight=0.9") == "haze"
    assert factor_of("haze:beta=0.1,airlight=0.9+jpeg:quality=20") is None  # a mixture: unknown factor
    assert factor_of("mbn:factors=1..4") is None and factor_of("subset:k=1+rain+jpeg:quality=20") is None
    assert len(parse_spec("mbn:factors=1..4").stages) == 4


def _mbn_config(**changes) -> dict:
    """Seconds: a width-8 MBN on synthetic colour images, the four MBN App. C factors, one cycle."""
    base = {"task": "restore", "model.type": "mbn", "model.args": {"features": 8, "res_features": 8,
                                                                   "rain_iterations": 1},
            "data.train.channels": 3, "data.train.patch": 32, "data.train.size": 48,
            "data.train.levels": {"haze": "haze:beta=0.1,airlight=0.9", "rain": "rain:length=10,angle=80,intensity=0.7",
                                  "jpeg": "jpeg:quality=20", "blur": "blur:kind=motion,preset=1,angle=0"},
            "data.val.levels": None, "data.val.size": 32, "data.val.channels": 3,
            "strategy": {"type": "mbn_cycle", "cycle": [1, 1, 1, 3]},
            "train.loss": "mbn", "train.steps": 6, "train.batch_size": 2, "train.checkpoint_every": 0,
            "train.ema_decay": 0.0}
    return tiny_config(**{**base, **changes})


def test_each_minibatch_runs_its_own_factors_path(tmp_path, monkeypatch):
    """Step 1 (Sec. 3.5): cycles of single-factor minibatches, each through I_f -> S -> O_f; validation per
    factor through that factor's path."""
    from restorekit.models.mbn import MBN

    seen = []
    original = MBN.forward

    def spy(self, image, factor=None):
        seen.append((self.training, factor))
        return original(self, image, factor)

    monkeypatch.setattr(MBN, "forward", spy)
    run(load_config(write_config(tmp_path, _mbn_config(**{"train.log_every": 6}))), tmp_path / "out")
    trained = [f for training, f in seen if training]
    assert len(trained) == 6 and sorted(trained) == ["blur", "blur", "blur", "haze", "jpeg", "rain"]
    assert {f for training, f in seen if not training} == set(FACTORS)
    # the log's per-factor loss curves: every factor's mean loss over the interval
    last = json.loads((tmp_path / "out" / "log.jsonl").read_text().splitlines()[-1])
    assert set(last["loss_by_level"]) == set(FACTORS)


def test_a_factor_model_refuses_batches_that_mix_factors(tmp_path):
    path = write_config(tmp_path, _mbn_config(**{"strategy": {"type": "rigid_joint"}}))
    with pytest.raises(ConfigError, match="strategy.type: mbn runs one factor's path per batch"):
        run(load_config(path), tmp_path / "out")


def test_recurrent_recipe_weighs_the_own_step_and_the_last(tmp_path, monkeypatch):
    """Step 2 (Sec. 3.6): loss = 0.8 x loss(own factor's step) + 0.2 x loss(x4), input branches frozen."""
    from restorekit.train import recipes

    calls = []
    original = recipes.Recurrent.pixel_loss

    def spy(self, pred, batch):
        value = original(self, pred, batch)
        calls.append(value.detach())
        return value

    monkeypatch.setattr(recipes.Recurrent, "pixel_loss", spy)
    cfg = _mbn_config(**{"recipe": "recurrent", "train.steps": 2, "model.freeze": ["inputs.*"],
                         "strategy": {"type": "mbn_cycle", "cycle": [1, 1, 1, 3]}})
    out = tmp_path / "out"
    run(load_config(write_config(tmp_path, cfg)), out)
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert len(calls) == 4  # the last step's loss, then the own step's, per training step
    for row, (final, own) in zip(rows, zip(calls[::2], calls[1::2], strict=True), strict=True):
        assert row["final_loss"] == pytest.approx(final.item(), rel=1e-5)
        assert row["loss"] == pytest.approx(0.8 * own.item() + 0.2 * final.item(), rel=1e-5)


def test_every_step_targets_ask_earlier_paths_to_pass_the_image_and_later_ones_to_keep_it_clean():
    """recurrent.targets every_step (ours, beside the paper's `last`): 0.8 x own step + 0.2 x the other steps,
    those before the own factor's step against the degraded input, those after against the clean image."""
    from types import SimpleNamespace

    from restorekit.train import recipes

    lq, hq = torch.zeros(1, 3, 8, 8), torch.ones(1, 3, 8, 8)
    batch = recipes.Batch(lq=lq, hq=hq, levels=torch.zeros(1, dtype=torch.long))
    fake = SimpleNamespace(OWN_STEP=0.8, FINAL=0.2, pixel_loss=lambda pred, b: ((pred - b.hq) ** 2).mean())
    loss = recipes.Recurrent.every_step_loss
    # J passes the image, H (own) restores it, B and R keep it: nothing to learn
    assert loss(fake, [lq, hq, hq, hq], 1, batch)[0].item() == 0
    # J already changed the (not yet J-factor) image: 0.2 x 1/3 of a unit error
    assert loss(fake, [hq, hq, hq, hq], 1, batch)[0].item() == pytest.approx(0.2 / 3)
    # a later step undoing the restoration costs the same share; the own step's error costs 0.8
    assert loss(fake, [lq, hq, hq, lq], 1, batch)[0].item() == pytest.approx(0.2 / 3)
    assert loss(fake, [lq, hq, hq, lq], 1, batch)[1].item() == 1  # the last step's own loss, for the log
    assert loss(fake, [lq, lq, lq, lq], 1, batch)[0].item() == pytest.approx(0.8 + 0.2 * 2 / 3)


def test_the_every_step_targets_reach_the_trainer(tmp_path, monkeypatch):
    """`recurrent: {targets: every_step}` in a config: per training step, each of the four steps against its target,
    once (the last one is also what the log's final_loss reads)."""
    from restorekit.train import recipes

    calls = []
    original = recipes.Recurrent.pixel_loss
    monkeypatch.setattr(recipes.Recurrent, "pixel_loss",
                        lambda self, pred, batch: calls.append(1) or original(self, pred, batch))
    cfg = _mbn_config(**{"recipe": "recurrent", "train.steps": 2, "recurrent": {"targets": "every_step"},
                         "strategy": {"type": "mbn_cycle", "cycle": [1, 1, 1, 3]}})
    run(load_config(write_config(tmp_path, cfg)), tmp_path / "out")
    assert len(calls) == 2 * 4


def test_the_recurrent_recipe_needs_recurrent_paths(tmp_path):
    path = write_config(tmp_path, tiny_config(recipe="recurrent"))
    with pytest.raises(ConfigError, match="recipe recurrent: dncnn has no recurrent paths"):
        run(load_config(path), tmp_path / "out")


def test_the_cpu_config_is_the_papers_two_steps():
    """configs/mbn: step 1 mbn_cycle [haze, rain, jpeg, blur] = [1, 1, 1, 3] with the DuRN loss and Adam 1e-4;
    step 2 recurrent with the input branches frozen; T91 (Rain100H's clean images come from BSD)."""
    cfg = load_config(REPO / "configs/mbn/mbn_rmbn_t91_cpu.yaml")
    assert cfg.strategy.type == "mbn_cycle" and cfg.strategy.cycle == [1, 1, 1, 3]
    assert [factor_of(level.spec) for level in cfg.data.train.levels] == ["haze", "rain", "jpeg", "blur"]
    assert [t.type for t in cfg.train.loss] == ["mbn"] and cfg.train.optimizer.lr == 1e-4 and cfg.data.train.folder == "T91"
    joint, recurrent = cfg.stages
    assert joint.recipe == "supervised" and recurrent.recipe == "recurrent" and recurrent.freeze == ["inputs.*"]
    assert cfg.model.args["init"] == "kaiming"  # PyTorch's default init learned only haze at this budget
    patches = {level.name: level.patch for level in cfg.data.train.levels}
    assert patches["rain"] * 2 == patches["haze"] == patches["jpeg"] == patches["blur"]  # 128 : 256 in the paper


def test_the_tables_script_scores_every_row_and_reuses_its_cache(tmp_path, monkeypatch):
    """scripts/mbn_tables.py on tiny random weights and 2 synthetic images: the Table 3 layout with the paper's
    rows, a row not trained says so, the cascade chains the dedicated networks, and a rerun reads the cache."""
    import numpy as np
    from PIL import Image
    from safetensors.torch import save_file

    from restorekit import evaluation

    tables = _script("mbn_tables")
    runs, data = tmp_path / "runs", tmp_path / "data"
    small = {"features": 8, "res_features": 8, "rain_iterations": 1, "identity_init": False}
    for path, factors in [("mbn_rmbn_t91_cpu/stages/joint", FACTORS), ("mbn_rmbn_t91_cpu/final", FACTORS),
                          *((f"dedicated_{f}/final", (f,)) for f in FACTORS)]:
        (runs / path).parent.mkdir(parents=True, exist_ok=True)
        save_file(create_model("mbn", factors=factors, **small).state_dict(), str(runs / f"{path}.safetensors"))
    data.mkdir()
    for i in range(2):
        Image.fromarray((np.random.default_rng(i).random((40, 48, 3)) * 255).astype(np.uint8)).save(data / f"{i}.png")
    argv = ["--runs", str(runs), "--dataset", str(data), "--limit", "1", "--crop", "32", "--only", "single"]
    assert tables.main(argv) == 0
    text = (runs / "tables" / "mbn_tables.md").read_text()
    assert "| Universal | not trained |" in text and "| R-MBN* | not trained |" in text
    assert "| MBN | 30.70 / 0.9111 |" in text  # the paper's row beside
    assert "MBN - dedicated" in text and "cascade - MBN" in text
    results = json.loads((runs / "tables" / "mbn_results.json").read_text())["single"]
    assert all(isinstance(results[row]["R"], list) for row in ("Input", "Dedicated", "Cascade (J->H->B->R)", "R-MBN"))
    cascade = tables.cascade_model(tables.Runs(runs))
    assert [type(n).__name__ for n in cascade.module.networks] == ["MBN"] * 4 and cascade.info.size_multiple == 16
    monkeypatch.setattr(evaluation, "evaluate", lambda *a, **k: pytest.fail("the cache was not used"))
    assert tables.main(argv) == 0


@pytest.fixture()
def small_mbn_file(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "mbn.safetensors"
    save_file(create_model("mbn", features=8, res_features=8, rain_iterations=1, identity_init=False).state_dict(),
              str(path))
    return path


def test_the_task_names_the_path_and_auto_runs_them_all(small_mbn_file):
    """`--task derain` runs the rain path (MBN, factor known); auto / restore runs every path (R-MBN)."""
    from restorekit.infer import factor_for
    from restorekit.zoo import load_model

    model = load_model(str(small_mbn_file))
    assert model.info.factors == FACTORS and model.info.inputs == ("factor",)
    assert [factor_for(model, t) for t in ("derain", "deblur", "jpeg", "dehaze")] == ["rain", "blur", "jpeg", "haze"]
    assert factor_for(model, "auto") is None and factor_for(model, "restore") is None
    assert factor_for(model, "derain", "auto") is None and factor_for(model, None, "haze") == "haze"
    with pytest.raises(ModelError, match="paths for rain, blur, jpeg, haze, not 'noise'"):
        factor_for(model, None, "noise")
    with pytest.raises(ModelError, match="takes no factor"):
        factor_for(load_model("identity"), None, "rain")


def test_eval_records_the_path_it_ran(small_mbn_file, tmp_path):
    from restorekit import evaluation
    from restorekit.zoo import load_model

    images = tmp_path / "images"
    images.mkdir()
    torch.manual_seed(0)
    from restorekit import io

    io.write_image(images / "a.png", torch.rand(3, 32, 32))
    model = load_model(str(small_mbn_file))
    results = {}
    for factor in (None, "auto"):
        setup = evaluation.default_setup("derain", degrade="rain:length=10,angle=80,intensity=0.7", factor=factor)
        results[factor] = evaluation.evaluate(model, images, setup)
    assert results[None]["factor"] == "rain" and "factor" not in results[None]["protocol"]
    assert results["auto"]["factor"] == "auto" and results["auto"]["protocol"]["factor"] == "auto"
    assert results[None]["psnr"] != results["auto"]["psnr"]


def test_restore_says_which_path_ran(small_mbn_file, tmp_path, capsys):
    from restorekit import io
    from restorekit.cli import main

    io.write_image(tmp_path / "in.png", torch.rand(3, 24, 24))
    for task, said in (("derain", "runs its rain path (task derain)"), ("auto", "runs every path in turn")):
        out = tmp_path / f"out_{task}.png"
        assert main(["restore", str(tmp_path / "in.png"), "--model", str(small_mbn_file), "--task", task,
                     "-o", str(out)]) == 0
        assert said in capsys.readouterr().err and out.is_file()


def test_task_auto_prefers_a_multi_factor_model_over_a_blind_single_task_one(tmp_path, monkeypatch):
    """`restore --task auto` runs R-MBN when the zoo has it, although a blind denoiser sorts first by name."""
    from zoo_helpers import save_zoo_model

    from restorekit.api import choose_zoo_model

    zoo = tmp_path / "zoo"
    save_zoo_model(zoo, "a-blind-denoiser", "dncnn", {"in_channels": 3, "depth": 3, "features": 8}, family="dncnn",
                   levels=(0, 50), curve=False, blind=True)
    monkeypatch.setenv("RESTOREKIT_WEIGHTS", str(zoo))
    monkeypatch.setenv("RESTOREKIT_BUNDLED", "none")
    assert choose_zoo_model("auto") == "a-blind-denoiser"
    save_zoo_model(zoo, "z-mbn", "mbn", {"features": 8, "res_features": 8, "rain_iterations": 1}, task="restore",
                   family="mbn", levels=None, curve=False, blind=True)
    assert choose_zoo_model("auto") == "z-mbn"


def test_task_auto_prefers_a_one_pass_mixture_model_and_named_factors_reach_the_multi_branch_one(tmp_path, monkeypatch):
    """Issue 18 item 7: `--task auto` runs a one-pass blind model of unknown mixtures (MEPSNet) before R-MBN's
    every-path run (scripts/auto_routing.py: +1.7 dB on average over the two models' test families); `--task
    derain` / `deblur` / `dehaze` still find the multi-branch model's path, and a model made for a task wins."""
    from zoo_helpers import save_zoo_model

    from restorekit.api import choose_zoo_model

    zoo = tmp_path / "zoo"
    monkeypatch.setenv("RESTOREKIT_WEIGHTS", str(zoo))
    monkeypatch.setenv("RESTOREKIT_BUNDLED", "none")
    save_zoo_model(zoo, "z-mepsnet-like", "dncnn", {"in_channels": 3, "depth": 3, "features": 8}, task="restore",
                   family="dncnn", levels=None, curve=False, blind=True)
    save_zoo_model(zoo, "a-mbn", "mbn", {"features": 8, "res_features": 8, "rain_iterations": 1}, task="restore",
                   family="mbn", levels=None, curve=False, blind=True)
    assert choose_zoo_model("auto") == "z-mepsnet-like"
    assert {task: choose_zoo_model(task) for task in ("derain", "deblur", "dehaze", "jpeg")} == dict.fromkeys(
        ("derain", "deblur", "dehaze", "jpeg"), "a-mbn")
    save_zoo_model(zoo, "z-dejpeg", "dncnn", {"in_channels": 3, "depth": 3, "features": 8}, task="jpeg",
                   family="dncnn", levels=(10, 80), curve=False)
    assert choose_zoo_model("jpeg") == "z-dejpeg"
    # An explicit level beyond the task's own models is refused, not handed to the level-blind path (R-MBN's JPEG
    # path at quality 5 would run as an identity); a task with no model of its own still gets the path.
    with pytest.raises(ModelError, match=r"covers level 5.*z-dejpeg \(jpeg, levels 10\.\.80\)"):
        choose_zoo_model("jpeg", 5)
    assert choose_zoo_model("jpeg", 20) == "z-dejpeg" and choose_zoo_model("derain", 3) == "a-mbn"


def test_exclude_leaves_named_images_out_of_a_training_folder(tmp_path):
    """data.train.exclude: Rain100H's clean images are crops of 36 BSD200 images, which must stay out of the
    training set when Rain100H tests a model (issue 17, item 4)."""
    import numpy as np
    from PIL import Image

    from restorekit.data.sources import load_folder

    for name in ("100075.png", "105019.png", "108073.png"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / name)
    kept = load_folder(tmp_path, 3, exclude={"100075.png", "105019"})
    assert kept.names == ["108073.png"]


def test_the_gpu_config_is_the_papers_scale_without_rain100h_sources():
    """configs/mbn/mbn_rmbn_gpu.yaml: 96/64 channels (He init as the CPU recipes), crops 128 (rain) / 256, step 2
    at lr 1e-6 batch 4; BSD200
    without every image a Rain100H clean test image was cropped from (the data README's table, when present)."""
    import csv

    from restorekit import paths

    cfg = load_config(REPO / "configs/mbn/mbn_rmbn_gpu.yaml")
    assert cfg.model.args == {"features": 96, "res_features": 64, "init": "kaiming"}
    assert {level.name: level.patch for level in cfg.data.train.levels} == {"haze": 256, "rain": 128, "jpeg": 256,
                                                                           "blur": 256}
    assert cfg.stages[1].set["train.optimizer.lr"] == 1e-6 and cfg.stages[1].set["train.batch_size"] == 4
    root = paths.data_root()
    table = root / "meta" / "Rain100H_clean_source.csv" if root is not None else None
    if table is None or not table.is_file():
        pytest.skip("no ../shared/data/meta/Rain100H_clean_source.csv (RESTOREKIT_DATA) to check the list against")
    sources = {row["source_file"] for row in csv.DictReader(table.open()) if row["source_dataset"] == "train/BSD200"}
    assert set(cfg.data.train.exclude) == sources


def test_the_diagnosis_finds_a_dead_block_and_scores_every_recurrent_step(tmp_path, capsys):
    """scripts/mbn_diagnose.py: `alive` reads 0 live activations in a DuRB-M whose fused output is negative
    everywhere (ReLU(out + x) passes nothing: the collapse of the CPU models' M7) and in every block fed by it;
    `steps` scores the input and each step of J -> H -> B -> R on each single-factor set."""
    import numpy as np
    from PIL import Image

    diagnose = _script("mbn_diagnose")
    model = create_model("mbn", features=8, res_features=8, rain_iterations=1, init="kaiming")
    data = tmp_path / "data"
    data.mkdir()
    Image.fromarray((np.random.default_rng(0).random((40, 48, 3)) * 255).astype(np.uint8)).save(data / "0.png")
    pairs = diagnose.examples("jpeg", str(data), 1, 32)
    healthy = diagnose.liveness(model, "jpeg", pairs)
    assert list(healthy) == ["inputs.jpeg", *(f"stem.{i}" for i in range(5)), "hierarchy.0", "hierarchy.1",
                             "outputs.jpeg"]
    assert healthy["hierarchy.1"][0] > 0.05
    with torch.no_grad():
        model.hierarchy[1].fuse.bias.fill_(-100.0)
    dead = diagnose.liveness(model, "jpeg", pairs)
    assert dead["hierarchy.1"] == (0.0, 0.0)
    steps = diagnose.step_psnrs(model, pairs)
    assert list(steps) == ["input", "jpeg", "haze", "blur", "rain"] and all(np.isfinite(list(steps.values())))


def test_a_table_row_reads_a_run_folder_or_a_weights_file_named_directly():
    """--rmbn-run / --rmbn-star-run: a run under --runs, or a weights file such as the zoo's rmbn."""
    tables = _script("mbn_tables")
    runs = Path("runs/mbn")
    assert tables.run_weights(runs, "rmbn_step2_long") == runs / "rmbn_step2_long" / "final.safetensors"
    assert tables.run_weights(runs, "weights/rmbn.safetensors") == Path("weights/rmbn.safetensors")
    chosen = tables.Runs(runs, rmbn="weights/rmbn.safetensors", rmbn_star="rmbn_star_from_rmbn").weights()
    assert chosen["R-MBN"] == Path("weights/rmbn.safetensors")
    assert chosen["R-MBN*"] == runs / "rmbn_star_from_rmbn" / "final.safetensors"
