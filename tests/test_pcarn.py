"""PCARN (thesis ch. 2, spec 1.3): the 9-conv discriminator, the multi-scale discriminator (pyramid by average
pooling, factors 1/2/4, separate networks, losses summed), the VGG-19 relu5_4 perceptual loss (user-supplied
weights with torchvision's names; random weights only when a test asks) and adversarial fine-tuning of CARN-M
through the adversarial recipe, with exact resume."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from test_recipes import same_weights
from test_train import REPO, read_log, tiny_config, write_config
from torch import nn

from restorekit.errors import ConfigError, ModelError
from restorekit.models import create_model
from restorekit.train import load_config, run, validate_config
from restorekit.train.checkpoint import list_checkpoints
from restorekit.train.discriminators import MultiScaleDiscriminator, PCARNDiscriminator, build_discriminator
from restorekit.train.losses import Loss, VGGLoss
from restorekit.train.recipes import gan_loss, pyramid_gan_loss
from restorekit.train.vgg import VGG19Features, load_vgg19, random_vgg19

# Thesis Fig. 2.1 (bottom): kernel k, channels n, stride s of the nine convs; the ninth from the reference code.
THESIS_DISCRIMINATOR = [(3, 64, 1), (4, 64, 2), (3, 128, 1), (4, 128, 2), (3, 256, 1), (4, 256, 2), (3, 512, 1),
                        (3, 512, 1), (3, 1, 1)]
# torchvision's vgg19().features: the 16 convs' indices up to relu5_4 (index 35).
TORCHVISION_CONVS = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]


def convs(module: nn.Module) -> list[nn.Conv2d]:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


# ------------------------------------------------------------------------------------ discriminator


def test_the_discriminator_has_the_thesis_nine_convs_with_batchnorm_after_all_but_the_first_and_last():
    disc = PCARNDiscriminator(3, 64)
    assert [(c.kernel_size[0], c.out_channels, c.stride[0]) for c in convs(disc)] == THESIS_DISCRIMINATOR
    layers = list(disc.body)
    after = [layers[layers.index(c) + 1] if layers.index(c) + 1 < len(layers) else None for c in convs(disc)]
    assert isinstance(after[0], nn.LeakyReLU)  # first conv: no BN
    assert all(isinstance(a, nn.BatchNorm2d) for a in after[1:8])  # convs 2-8: BN + LeakyReLU
    assert sum(isinstance(m, nn.LeakyReLU) for m in layers) == 8
    assert after[8] is None  # the last conv gives logits: the Sigmoid is in the BCE loss
    # Three stride-2 convs: 48x48 -> 6x6 logits (a x4 target of 192 px: 24x24).
    assert disc(torch.rand(2, 3, 48, 48)).shape == (2, 1, 6, 6)


def test_the_vanilla_gan_loss_is_bce_of_the_sigmoid_the_thesis_minimax_loss():
    logits = torch.randn(2, 1, 6, 6)
    for real in (True, False):
        target = torch.full_like(logits, float(real))
        assert gan_loss("vanilla", logits, real) == pytest.approx(
            float(F.binary_cross_entropy(torch.sigmoid(logits), target)), rel=1e-5)


def test_the_multi_scale_discriminator_pools_by_1_2_4_into_separate_networks():
    pyramid = MultiScaleDiscriminator(nn.Identity, (1, 2, 4))  # members that return what they are shown
    image = torch.rand(1, 3, 16, 16)
    full, half, quarter = pyramid.judge(image)
    assert torch.equal(full, image)
    assert half.shape[-1] == 8 and quarter.shape[-1] == 4
    assert half[0, 0, 0, 0] == pytest.approx(float(image[0, 0, :2, :2].mean()))  # 2x2 average pooling
    assert quarter[0, 0, 1, 2] == pytest.approx(float(image[0, 0, 4:8, 8:12].mean()))  # 4x4 average pooling

    msd = build_discriminator("pcarn", 3, features=8, scales=[1, 2, 4])
    assert len(msd.nets) == 3 and msd.min_side == 32  # a 4x-pooled image still needs 8 px for 3 stride-2 convs
    first, second = (list(net.parameters())[0] for net in msd.nets[:2])
    assert first is not second and not torch.equal(first, second)  # identical architecture, separate weights
    assert [t.shape[-1] for t in msd.judge(torch.rand(2, 3, 64, 64))] == [8, 4, 2]


def test_the_multi_scale_loss_is_the_sum_over_the_pyramid_levels():
    levels = [torch.randn(2, 1, s, s) for s in (8, 4, 2)]
    for real in (True, False):
        assert pyramid_gan_loss("vanilla", levels, real) == pytest.approx(
            sum(float(gan_loss("vanilla", x, real)) for x in levels), rel=1e-6)


def test_real_and_fake_batches_are_normalised_apart_as_the_reference_code_calls_them():
    """One call judges both (one DDP forward per backward), but BatchNorm sees each batch on its own."""
    msd = build_discriminator("pcarn", 3, features=8, scales=[1, 2])
    real, fake = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32) * 0.5
    both = msd(real, fake)
    alone = [msd.judge(real), msd.judge(fake)]
    assert all(torch.allclose(a, b) for x, y in zip(both, alone, strict=True) for a, b in zip(x, y, strict=True))
    mixed = msd.judge(torch.cat([real, fake]))[0][:2]
    assert not torch.allclose(mixed, both[0][0])


# ------------------------------------------------------------------------------------ VGG-19


def test_the_vgg_extractor_is_torchvision_vgg19_features_up_to_relu5_4():
    features = VGG19Features().features
    assert len(features) == 36 and isinstance(features[35], nn.ReLU)  # relu5_4 is features[35]
    assert [i for i, m in enumerate(features) if isinstance(m, nn.Conv2d)] == TORCHVISION_CONVS  # 16 convs
    assert [features[i].out_channels for i in TORCHVISION_CONVS] == [64] * 2 + [128] * 2 + [256] * 4 + [512] * 8
    assert sum(isinstance(m, nn.MaxPool2d) for m in features) == 4  # relu5_4 is at 1/16 resolution
    assert VGG19Features()(torch.rand(1, 3, 32, 32)).shape == (1, 512, 2, 2)


@pytest.fixture(scope="module")
def torchvision_named_state() -> dict[str, torch.Tensor]:
    """What a torchvision VGG-19 file holds: features.N.* for the 16 convs plus the classifier."""
    state = dict(random_vgg19().state_dict())
    state.update({"classifier.0.weight": torch.zeros(4, 8), "classifier.0.bias": torch.zeros(4)})
    return state


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_a_weights_file_with_torchvision_names_loads_strictly(tmp_path, torchvision_named_state, suffix):
    path = tmp_path / f"vgg19{suffix}"
    if suffix == ".pth":
        torch.save(torchvision_named_state, path)
    else:
        save_file(torchvision_named_state, path)
    loaded = load_vgg19(path).state_dict()
    assert set(loaded) == {f"features.{i}.{p}" for i in TORCHVISION_CONVS for p in ("weight", "bias")}
    assert all(torch.equal(loaded[k], torchvision_named_state[k]) for k in loaded)
    incomplete = {k: v for k, v in torchvision_named_state.items() if k != "features.34.weight"}
    save_file(incomplete, tmp_path / "partial.safetensors")
    with pytest.raises(ModelError, match=r"not torchvision VGG-19 weights \(missing \['features.34.weight'\]"):
        load_vgg19(tmp_path / "partial.safetensors")


def test_the_perceptual_loss_refuses_to_run_without_a_weights_file():
    with pytest.raises(ConfigError, match="loss vgg54 needs a VGG-19 weights file"):
        VGGLoss()
    cfg = tiny_config(**{"train.loss": [{"type": "vgg54", "weight": 1.0}]})
    with pytest.raises(ConfigError, match=r"x.yaml: train.loss\[0\].weights: loss 'vgg54' needs its network's"):
        validate_config(cfg, "x.yaml")
    with pytest.raises(ConfigError, match=r"train.loss\[0\].weights: loss 'l1' takes no weights"):
        validate_config(tiny_config(**{"train.loss": [{"type": "l1", "weights": "vgg.pth"}]}), "x.yaml")
    with pytest.raises(ModelError, match="loss vgg54: /nonexistent/vgg19.pth: no such weights file"):
        VGGLoss(weights="/nonexistent/vgg19.pth")


def test_the_perceptual_loss_is_the_mean_squared_feature_difference_per_sample():
    loss = Loss([{"type": "vgg54", "weight": 1.0, "random_init": True}])
    target = torch.rand(2, 3, 32, 32)
    pred = target.clone().requires_grad_(True)
    assert torch.equal(loss(pred, target), torch.zeros(2))
    moved = (target + 0.1 * torch.randn_like(target)).requires_grad_(True)
    value = loss(moved, target)
    net = loss.terms[0][0].features
    expected = ((net(moved) - net(target)) ** 2).mean(dim=(1, 2, 3))  # Eq. 2.5, averaged over C, H, W
    assert value.shape == (2,) and torch.allclose(value, expected)
    value.sum().backward()
    assert moved.grad.abs().sum() > 0 and all(p.grad is None for p in net.parameters())  # VGG stays frozen
    # Grey images are compared as RGB; a fully masked-out (cutout) sample counts nothing.
    grey = torch.rand(1, 1, 32, 32)
    assert loss(grey, grey).item() == 0.0
    assert loss(moved.detach(), target, torch.zeros(2, 1, 32, 32)).abs().max() == 0


# ------------------------------------------------------------------------------------ fine-tuning


SINGLE_X2 = {"model.args": {"features": 8, "blocks": 1, "units": 2, "scale": 2},
             "data.train": {"source": "synthetic", "count": 4, "size": 64, "channels": 3, "patch": 32, "scale": 2,
                            "levels": ["down:scale=2"], "workers": 0}}
# The thesis's setting: one body with x2/x3/x4 heads, one scale per batch.
MULTI_SCALE = {"model.args": {"features": 8, "blocks": 1, "units": 2},
               "data.train": {"source": "synthetic", "count": 4, "size": 64, "channels": 3, "lr_patch": 16,
                              "scales": [2, 3, 4], "levels": ["down:scale={scale}"], "workers": 0}}


def pcarn_config(init: str | None, **changes) -> dict:
    """A seconds-long PCARN-M fine-tuning: tiny carn_m, pcarn discriminator at 1/2/4, random-init VGG."""
    return tiny_config(**{
        "task": "sr", "recipe": "adversarial", "train.ema_decay": 0.0, "model": {"type": "carn_m", "init": init},
        **SINGLE_X2, "data.val": {"source": "synthetic", "count": 1, "size": 48, "crop": None},
        "train.steps": 6, "train.batch_size": 2, "train.checkpoint_every": 3, "train.keep_checkpoints": 10,
        "train.grad_clip_norm": 10.0, "train.scheduler": {"type": "constant"},
        "train.loss": [{"type": "vgg54", "weight": 1.0, "random_init": True}],
        "adversarial": {"weight": 5e-3, "grad_clip_norm": 0.0, "optimizer": {"lr": 1e-3},
                        "discriminator": {"type": "pcarn", "features": 8, "scales": [1, 2, 4]}},
        **changes})


@pytest.mark.parametrize("setting", [SINGLE_X2, MULTI_SCALE], ids=["x2", "x2-x3-x4"])
def test_adversarial_fine_tuning_of_carn_m_trains_both_networks_and_resumes_exactly(tmp_path, setting):
    torch.manual_seed(1)
    start = create_model("carn_m", **setting["model.args"])
    save_file(start.state_dict(), tmp_path / "l1.safetensors")  # the "L1-pretrained" generator
    path = write_config(tmp_path, pcarn_config(str(tmp_path / "l1.safetensors"), **setting))
    full, part = tmp_path / "full", tmp_path / "part"
    run(load_config(path), full)
    log = read_log(full)
    assert [r["step"] for r in log] == list(range(1, 7))
    assert all(math.isfinite(r["d_loss"]) and r["pixel_loss"] > 0 and r["loss"] > r["pixel_loss"] for r in log)
    final = load_file(full / "final.safetensors")
    assert any(not torch.equal(final[k], v) for k, v in start.state_dict().items() if k in final)
    (_, third), (_, sixth) = list_checkpoints(full)[:2]
    d3, d6 = (torch.load(p, weights_only=True)["discriminator"] for p in (third, sixth))
    assert {k.split(".")[1] for k in d6} == {"0", "1", "2"}  # three separate discriminators
    assert any(not torch.equal(d3[k], d6[k]) for k in d3)
    run(load_config(path), part)
    for step, ck in list_checkpoints(part):
        if step > 3:
            ck.unlink()
    run(load_config(path), part, resume="latest")
    assert same_weights(full / "final.safetensors", part / "final.safetensors")
    assert [(r["loss"], r["d_loss"]) for r in read_log(part)] == [(r["loss"], r["d_loss"]) for r in log]


def test_a_patch_too_small_for_the_pyramid_is_refused_before_training(tmp_path):
    path = write_config(tmp_path, pcarn_config(None, **{"data.train.patch": 16}))
    with pytest.raises(ConfigError, match=r"adversarial.discriminator: the pcarn discriminator at scales \[1, 2, 4\] "
                                          r"needs target patches of at least 32 px; the smallest is 16"):
        run(load_config(path), tmp_path / "out")


def test_the_pcarn_m_config_carries_the_thesis_recipe():
    cfg = load_config(REPO / "configs/carn/pcarn_m_gan.yaml")
    a, t = cfg.adversarial, cfg.train
    assert cfg.recipe == "adversarial" and cfg.model.type == "carn_m" and cfg.model.args["variant"] == "thesis"
    assert a.discriminator.type == "pcarn" and a.discriminator.scales == [1, 2, 4]  # MSD, S = 3
    assert a.gan_loss == "vanilla" and a.weight == 5e-3  # 5e-3 x GAN (reference code)
    assert [(term.type, term.weight) for term in t.loss] == [("vgg54", 1.0)]  # + 1.0 x VGG
    assert t.grad_clip_norm == 10 and a.grad_clip_norm == 0  # only the generator is clipped
    assert t.steps == 200_000 and t.optimizer.lr == 1e-4 == a.optimizer.lr  # 2e5 fine-tuning steps
    assert cfg.data.train.lr_patch == 48 and cfg.data.train.scales == [2, 3, 4]  # 48x48 LR, one scale per batch
    assert "scale" not in cfg.model.args and cfg.model.init_strict  # the multi-scale model: the whole L1 file
