"""DL-Net (issue 15; spec methods-dlnet-rednet-mbn-adafm.md section 1): the recursive likelihood module and the
paper's backbones. Tiny widths and images; the released VDSR / IDN files when the workspace has them."""

from __future__ import annotations

import pytest
import torch
from test_reference_checkpoints import released_file

from restorekit import evaluation, io, models
from restorekit.degrade import parse_spec
from restorekit.errors import ModelError
from restorekit.models import dlnet
from restorekit.models.context_autoencoder import ContextAutoencoder, observed
from restorekit.models.drrn import DRRN
from restorekit.zoo import read_weights

pytestmark = pytest.mark.usefixtures("one_thread")

SR_BLUR = "blur:kind=gaussian,width=2.6+down:scale=2,quantize=false"


def _sr_input(seed: int = 0, size: tuple[int, int] = (24, 20), spec: str = SR_BLUR):
    """(LR input, HR clean, record) of a smooth random HR image, blurred and downscaled."""
    g = torch.Generator().manual_seed(seed)
    clean = torch.nn.functional.avg_pool2d(torch.rand(1, 1, size[0] + 3, size[1] + 3, generator=g), 4, 1)[0]
    lr, record = parse_spec(spec).apply_one(clean, seed)
    return lr[None], clean[None], record


def _dlnet(name: str, seed: int = 0, **arguments) -> models.Model:
    torch.manual_seed(seed)
    return models.build(name, **arguments)


def _fidelity(model: models.Model, y: torch.Tensor, record) -> float:
    with torch.no_grad():
        return float(dlnet.fidelity(record, model(y, record=record), y))


# ------------------------------------------------------------------------------------- the module


@pytest.mark.parametrize("name,arguments", [
    ("dlnet_vdsr", {"scale": 2, "depth": 4, "features": 8}),
    ("dlnet_idn", {"scale": 2, "features": 16, "blocks": 1, "distilled": 4}),
])
def test_refinement_steps_decrease_the_data_fidelity_term(name, arguments):
    """The paper's premise: each further update of z lowers ‖D(h(z)) - y‖² on a fixed input."""
    y, _, record = _sr_input()
    values = [_fidelity(_dlnet(name, steps=k, lr=1e-2, **arguments), y, record) for k in range(1, 6)]
    assert all(b < a for a, b in zip(values, values[1:], strict=False)), values


def test_refinement_decreases_the_fidelity_of_a_masked_image():
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    y, record = parse_spec("bernoulli:ratio=0.5").apply_one(image[0], 3)
    values = [_fidelity(_dlnet("dlnet_autoencoder", width=4, steps=k, lr=1e-2), y[None], record) for k in (1, 3, 5)]
    assert values[0] > values[1] > values[2], values


@pytest.mark.parametrize("name,backbone,arguments,call", [
    ("dlnet_vdsr", "vdsr", {"depth": 4, "features": 8}, {"scale": 2}),
    ("dlnet_idn", "idn", {"scale": 2, "features": 16, "blocks": 2, "distilled": 4}, {}),
    ("dlnet_drrn", "drrn", {"units": 3, "features": 8}, {"scale": 2}),
])
def test_one_step_is_exactly_the_backbone(name, backbone, arguments, call):
    """K = 1: no update, the output is the reference network's bit for bit (spec 1.2 item 5)."""
    y, _, record = _sr_input()
    plain = _dlnet(backbone, **arguments)
    refined = models.build(name, **{**arguments, **call, "steps": 1})
    models.load_weights(refined.module, refined.info.architecture.convert(plain.module.state_dict()), name)
    with torch.no_grad():
        assert torch.equal(refined(y, record=record), plain(y, **call))


def test_one_step_is_exactly_the_autoencoder_with_the_records_mask():
    image = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    records = [parse_spec("inpaint:kind=square,size=20").apply_one(image[i], i)[1] for i in range(2)]
    y = torch.stack([r.forward(image[i]) for i, r in enumerate(records)])
    plain = _dlnet("context_autoencoder", width=4)
    refined = models.build("dlnet_autoencoder", width=4, steps=1)
    models.load_weights(refined.module, refined.info.architecture.convert(plain.module.state_dict()), "ae")
    missing = 1 - observed(records, y)  # restorekit's mask convention: 1 = to restore
    assert float(missing[0].sum()) == 400
    with torch.no_grad():
        assert torch.equal(refined(y, record=records), plain(y, mask=missing))


def test_per_sample_records_in_a_batch_equal_separate_calls():
    """One record per sample (the training batch's form): each sample is refined under its own operator."""
    pairs = [_sr_input(seed, spec=f"blur:kind=gaussian,width={w}+down:scale=2,quantize=false")
             for seed, w in ((0, 0.5), (1, 2.6))]
    model = _dlnet("dlnet_vdsr", scale=2, depth=3, features=8, lr=1e-2)
    y = torch.cat([p[0] for p in pairs])
    with torch.no_grad():
        batched = model(y, record=[p[2] for p in pairs])
        for i, (lr, _, record) in enumerate(pairs):
            torch.testing.assert_close(batched[i : i + 1], model(lr, record=record), rtol=1e-5, atol=1e-6)


def _loss(model: torch.nn.Module, y: torch.Tensor, record, target: torch.Tensor) -> torch.Tensor:
    return ((model(y, record=record) - target) ** 2).sum()


def test_gradients_flow_through_the_unrolled_steps():
    """Training differentiates through the inner gradients (create_graph): the gradient of the outer loss
    with respect to a parameter of g matches finite differences in float64, and differs from what the
    first-order path alone (inner gradients treated as constants) would give."""
    y, clean, record = _sr_input(size=(12, 10))
    module = _dlnet("dlnet_vdsr", scale=2, depth=3, features=4, lr=5e-2).module.double().train()
    y, clean = y.double(), clean.double()
    weight = module.backbone.layers[0].weight
    _loss(module, y, record, clean).backward()
    index = tuple(int(i) for i in torch.unravel_index(weight.grad.abs().argmax(), weight.shape))
    analytic = float(weight.grad[index])
    eps = 1e-6
    with torch.no_grad():
        values = []
        for sign in (1, -1):
            weight[index] += sign * eps
            values.append(float(_loss(module.eval(), y, record, clean)))
            weight[index] -= sign * eps
    numeric = (values[0] - values[1]) / (2 * eps)
    assert analytic == pytest.approx(numeric, rel=1e-4)

    # first order only: the same steps with each update detached from the graph of its gradient
    module.train().zero_grad()
    z, h = module.split(y, record)
    m = v = torch.zeros_like(z)
    for k in range(1, module.steps):
        (grad,) = torch.autograd.grad(dlnet.fidelity(record, h(z), y), z, retain_graph=True)
        delta, m, v = dlnet.adam_step(grad, m, v, k, module.lr)
        z = z + delta
    ((h(z) - clean) ** 2).sum().backward()
    assert analytic != 0 and abs(float(weight.grad[index]) - analytic) > 1e-3 * abs(analytic)


def test_evaluation_keeps_no_graph_and_follows_the_callers_grad_mode():
    y, _, record = _sr_input()
    model = _dlnet("dlnet_vdsr", scale=2, depth=3, features=8)
    with torch.no_grad():
        out = model(y, record=record)
    assert not out.requires_grad
    with pytest.raises(ModelError, match="needs the degradation record"):
        model.module(y)


def test_printed_bias_correction_first_step_sign_second_step_1_344():
    """Eq. 5 as printed (m/(1-β1), v/(1-β2)): step 1 is -γ·sign(∇); with a constant gradient step 2 is
    1.344γ (true Adam: γ)."""
    gamma, grad = 1e-3, torch.tensor([3.0, -0.02, 1e-5])
    m = v = torch.zeros(3)
    first, m, v = dlnet.adam_step(grad, m, v, 1, gamma)
    torch.testing.assert_close(first, -gamma * grad.sign())
    second, _, _ = dlnet.adam_step(grad, m, v, 2, gamma)
    torch.testing.assert_close(second.abs(), torch.full((3,), 1.9 / 1.999**0.5 * gamma))
    assert 1.9 / 1.999**0.5 == pytest.approx(1.344, abs=5e-4)
    m = v = torch.zeros(3)
    _, m, v = dlnet.adam_step(grad, m, v, 1, gamma, "adam")
    second, _, _ = dlnet.adam_step(grad, m, v, 2, gamma, "adam")
    torch.testing.assert_close(second.abs(), torch.full((3,), gamma))
    zero, _, _ = dlnet.adam_step(torch.zeros(1), torch.zeros(1), torch.zeros(1), 1, gamma)
    assert float(zero) == 0.0  # the 1e-16 floor inside the root: no division by zero


def test_the_module_adds_no_parameters():
    plain, refined = _dlnet("vdsr", depth=4, features=8), _dlnet("dlnet_vdsr", depth=4, features=8)
    assert [p.shape for p in refined.module.parameters()] == [p.shape for p in plain.module.parameters()]


def test_a_record_of_another_scale_is_one_clear_error():
    y, _, record = _sr_input()
    model = _dlnet("dlnet_vdsr", scale=3, depth=3, features=8)
    with pytest.raises(ModelError, match="record of another image or scale"), torch.no_grad():
        model(y, record=record)


# ------------------------------------------------------------------------------------- backbones


def test_drrn_b1u9_has_the_papers_297k_weights():
    """Tai et al.: DRRN_B1U9, 128 channels, 297K parameters = 1x128x9 + 2x128x128x9 + 128x9 (no biases)."""
    with torch.device("meta"):
        assert sum(p.numel() for p in DRRN(units=9, features=128).parameters()) == 297_216


def test_autoencoder_maps_64_to_64_with_the_described_layer_sizes():
    model = ContextAutoencoder().eval()
    weights = {n: p.numel() for n, p in model.named_parameters() if n.endswith("weight") and p.ndim > 1}
    encoder_and_fc = sum(v for n, v in weights.items() if not n.startswith(("decoder", "output")))
    assert encoder_and_fc == 2_886_656 and sum(weights.values()) == 5_642_240  # spec 1.3(a): "~2.9M" counts the first
    image = torch.rand(2, 3, 64, 64)
    z, h = model.split(image)
    assert z.shape == (2, 64, 32, 32)
    with torch.no_grad():
        out = model(image)
    assert out.shape == (2, 3, 64, 64) and 0 <= float(out.min()) and float(out.max()) <= 1


def test_autoencoder_fills_the_holes_with_the_imagenet_mean_whatever_the_degradations_fill():
    image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(4))
    model = _dlnet("context_autoencoder", width=4)
    outs = []
    for fill in ("zero", "white"):
        y, record = parse_spec(f"inpaint:kind=square,size=16,shift=0,fill={fill}").apply_one(image, 0)
        with torch.no_grad():
            outs.append(model(y[None], mask=1 - observed(record, y[None])))
    assert torch.equal(outs[0], outs[1])


# ------------------------------------------------------------------------------------- weights


def test_dlnet_state_round_trips_and_a_backbone_file_converts_into_it():
    plain = _dlnet("vdsr", depth=4, features=8)
    arch = models.get_architecture("dlnet_vdsr")
    state = arch.convert(plain.module.state_dict())
    assert all(k.startswith("backbone.") for k in state)
    found, arguments = models.detect(state)
    assert found.name == "dlnet_vdsr" and arguments == {"depth": 4, "features": 8, "channels": 1}
    assert models.detect(plain.module.state_dict())[0].name == "vdsr"  # a plain file stays the backbone's


@pytest.mark.parametrize("file,name,arguments", [
    ("vdsr_official.mat", "dlnet_vdsr", {"scale": 2}),
    ("idn_x2.safetensors", "dlnet_idn", {"scale": 2}),
])
def test_released_backbones_load_into_dlnet_unchanged(reference_weights, file, name, arguments):
    """The released VDSR / IDN (the paper's bicubic-trained references) are DL-Net's starting point: they load
    strictly through the DL-Net builder's convert (what `model.init` does), and K = 1 is the released model."""
    path = released_file(reference_weights, file)
    state = read_weights(path)
    arch = models.get_architecture(name)
    backbone = arch.detect(arch.convert(state))
    refined = models.build_loaded(name, {**arguments, **backbone, "steps": 1}, arch.convert(state), str(path))
    released = models.from_state_dict(state, str(path), **({} if name == "dlnet_vdsr" else arguments))
    y, _, record = _sr_input(size=(16, 12))
    with torch.no_grad():
        plain = released(y, scale=2) if name == "dlnet_vdsr" else released(y)
        assert torch.equal(refined(y, record=record), plain)


# ------------------------------------------------------------------------------------- evaluation


def spy_inputs(monkeypatch) -> list:
    """The (input, record) of every DL-Net call from now on, in call order."""
    seen = []
    forward = dlnet.LikelihoodRefine.forward

    def spy(self, y, record=None, **conditions):
        seen.append((y.clone(), record))
        return forward(self, y, record, **conditions)

    monkeypatch.setattr(dlnet.LikelihoodRefine, "forward", spy)
    return seen


def test_eval_gives_each_image_its_own_record(tmp_path, monkeypatch):
    """`eval --task sr --scale 2 --degrade "blur:...+down:scale=2"`: the model receives the record that made
    its input (the record's forward of the ground truth is the input)."""
    folder = tmp_path / "set"
    folder.mkdir()
    for i in range(2):
        image = torch.rand(3, 20 + 4 * i, 16, generator=torch.Generator().manual_seed(i))
        io.write_image(folder / f"im{i}.png", image)
    seen = spy_inputs(monkeypatch)
    model = _dlnet("dlnet_vdsr", scale=2, depth=3, features=8)
    setup = evaluation.default_setup("sr", scale=2, degrade="blur:kind=gaussian,width=2.6+down:scale=2")
    result = evaluation.evaluate(model, folder, setup)
    assert result["n_images"] == 2 and len(seen) == 2
    for y, record in seen:
        assert record.fixed_spec.startswith("blur:kind=gaussian,width=2.6") and record.shape[1] == 2 * y.shape[-2]
    # the default SR benchmark input (no --degrade): the bicubic downscale as the record
    seen.clear()
    evaluation.evaluate(model, folder, evaluation.default_setup("sr", scale=2), limit=1)
    (y, record), = seen
    assert record.type == "down" and torch.allclose(record.forward(torch.zeros(1, 1, 40, 32)), torch.zeros(1, 1, 20, 16))


# ------------------------------------------------------------------------------------- training


def _train_config(**changes) -> dict:
    """Seconds: DL-Net on a 3-layer VDSR, synthetic grey images, SR x2 with a Gaussian blur of width 0..3."""
    from test_train import tiny_config

    base = {"task": "sr", "model.type": "dlnet_vdsr",
            "model.args": {"scale": 2, "depth": 3, "features": 8, "steps": 3, "lr": 0.01},
            "data.train.levels": ["blur:kind=gaussian,width=0..3+down:scale=2,quantize=false"],
            "data.train.scale": 2, "data.train.patch": 16,
            "data.val.levels": ["blur:kind=gaussian,width=2.6+down:scale=2"], "data.val.size": 24,
            "train.steps": 4, "train.batch_size": 4, "train.checkpoint_every": 0, "train.ema_decay": 0.0}
    return tiny_config(**{**base, **changes})


@pytest.mark.parametrize("degrade_on", ["worker", "device"])
def test_a_dlnet_model_trains_with_each_samples_record(tmp_path, monkeypatch, degrade_on):
    """The trainer gives the model its batch's records (one per sample, each with its own drawn blur width, and
    degrading the model's output to exactly the input's size) and validation its images' records; every step
    runs the unrolled refinement with create_graph."""
    from test_train import write_config

    from restorekit.train import load_config, run

    calls = []
    forward = dlnet.LikelihoodRefine.forward

    def spy(self, y, record=None, **conditions):
        out = forward(self, y, record, **conditions)
        if self.training:
            assert all(r.forward(out[i : i + 1].detach()).shape == y[i : i + 1].shape for i, r in enumerate(record))
            calls.append((len(record), y.shape[0], {r.steps[0].levels["width"] for r in record}))
        else:
            calls.append((None, y.shape[0], record.fixed_spec))
        return out

    monkeypatch.setattr(dlnet.LikelihoodRefine, "forward", spy)
    path = write_config(tmp_path, _train_config(**{"data.train.degrade_on": degrade_on}))
    run(load_config(path), tmp_path / "out")
    trained = [c for c in calls if c[0] is not None]
    assert len(trained) == 4 and all(n == b == 4 and len(widths) == 4 for n, b, widths in trained)
    validated = [c for c in calls if c[0] is None]
    assert validated and all(spec.startswith("blur:kind=gaussian,width=2.6") for _, _, spec in validated)


def test_a_dlnet_model_refuses_inputs_without_records(tmp_path):
    from test_train import write_config

    from restorekit.errors import ConfigError
    from restorekit.train import load_config, run

    path = write_config(tmp_path, _train_config(**{"augment.moa": True}))
    with pytest.raises(ConfigError, match="augment.moa"):
        run(load_config(path), tmp_path / "out")


# ------------------------------------------------------------------------------------- restore


def test_restore_gives_the_model_the_record_of_its_level_or_spec():
    """`restore --level u` on a DL-Net SR model: the record is the task's degradation at that level (a blur of width
    u before the x2 downscale), made for the image's size; `--degrade SPEC` says the same thing explicitly."""
    from restorekit.api import Restorer

    restorer = Restorer(_dlnet("dlnet_idn", scale=2, features=16, blocks=1, distilled=4, steps=3, lr=0.05),
                        device="cpu")
    image = torch.rand(3, 20, 24, generator=torch.Generator().manual_seed(0))
    by_level = restorer.restore(image, level=1.3)
    by_spec = restorer.restore(image, degrade="blur:kind=gaussian,width=1.3+down:scale=2")
    assert by_level.shape == (3, 40, 48) and torch.equal(by_level, by_spec)
    assert (by_level - restorer.restore(image, level=0)).abs().max() > 1e-3  # the level reaches the refinement


@pytest.mark.parametrize("spec,message", [
    ("down:scale=3", "does not shrink an image by the model's scale x2"),
    ("blur:kind=gaussian,width=0..3+down:scale=2", "levels are not fixed"),
    ("bernoulli:ratio=0.3", "draws a random mask"),
])
def test_restore_refuses_a_spec_that_cannot_be_the_models_record(spec, message):
    from restorekit.api import Restorer

    restorer = Restorer(_dlnet("dlnet_vdsr", scale=2, depth=3, features=8), device="cpu")
    with pytest.raises(ModelError, match=message):
        restorer.check(degrade=spec)


def test_restore_cli_runs_a_dlnet_weights_file_and_refuses_degrade_for_other_models(tmp_path, capsys):
    from safetensors.torch import save_file

    from restorekit.cli import main

    weights = tmp_path / "dlnet.safetensors"
    save_file(_dlnet("dlnet_vdsr", scale=2, depth=3, features=8).module.state_dict(), weights)
    image = tmp_path / "in.png"
    io.write_image(image, torch.rand(3, 16, 12, generator=torch.Generator().manual_seed(1)))
    assert main(["restore", str(image), "-o", str(tmp_path / "out"), "--model", str(weights), "--level", "2.6"]) == 0
    restored, _ = io.read_image(tmp_path / "out" / "in.png")
    assert restored.shape == (3, 32, 24)
    assert main(["restore", str(image), "-o", str(tmp_path / "bad"), "--model", "bicubic", "--scale", "2",
                 "--degrade", "down:scale=2"]) == 2
    assert "takes no degradation record" in capsys.readouterr().err
    assert not (tmp_path / "bad" / "in.png").exists()
