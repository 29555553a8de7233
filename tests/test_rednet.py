"""RED-Net (issue 16; spec methods-dlnet-rednet-mbn-adafm.md section 2): the pinned definition, checked against the
paper's description. Random weights, small images; one thread."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from restorekit import models
from restorekit.errors import ModelError
from restorekit.models.rednet import REDNet
from restorekit.train.config import load_config

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "rednet"

pytestmark = pytest.mark.usefixtures("one_thread")


def _zeroed(net: REDNet) -> REDNet:
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
    return net


def _deconv_inputs(net: REDNet, x: torch.Tensor) -> list[torch.Tensor]:
    """The input of every deconv d_1..d_n (d_1's is the bottleneck, d_{j+1}'s is ReLU(d_j + skip))."""
    seen: list[torch.Tensor] = []
    hooks = [d.register_forward_pre_hook(lambda _m, args: seen.append(args[0])) for d in net.deconvs]
    with torch.no_grad():
        net(x)
    for hook in hooks:
        hook.remove()
    return seen


@pytest.mark.parametrize("depth,pairs", [
    (30, {2: 13, 4: 11, 6: 9, 8: 7, 10: 5, 12: 3, 14: 1}),  # spec 2.1: c2->d13, ..., c14->d1
    (20, {2: 8, 4: 6, 6: 4, 8: 2}),
])
def test_symmetric_skips_pair_conv_i_with_deconv_n_minus_i_every_two_layers(depth, pairs):
    """Only conv c_i emits anything (bias 1, every weight 0): the ones reach exactly the deconv it is paired with,
    whose ReLU(d_j + c_i) is d_{j+1}'s input; no other deconv sees them. Odd convs are paired with nothing."""
    n = depth // 2
    for i in range(1, n + 1):
        net = _zeroed(REDNet(depth=depth, features=4))
        with torch.no_grad():
            net.convs[i - 1].bias.fill_(1.0)
        inputs = _deconv_inputs(net, torch.rand(1, 1, 2 * n + 3, 2 * n + 5))
        lit = [j for j in range(1, n) if inputs[j].abs().max() > 0]  # inputs[j] = what d_j handed on
        assert lit == ([pairs[i]] if i in pairs else []), (depth, i, lit)
        if i in pairs:
            assert torch.equal(inputs[pairs[i]], torch.ones_like(inputs[pairs[i]]))


def test_valid_convs_shrink_a_50px_patch_to_20px_at_the_red30_bottleneck_and_the_deconvs_restore_it():
    """Spec 2.1: unpadded 3x3 convs remove 2 px each (50 -> 20 after 15), stride-1 deconvs add them back."""
    net = REDNet(depth=30, features=4)
    bottleneck = _deconv_inputs(net, torch.rand(1, 1, 50, 50))[0]
    assert bottleneck.shape[-2:] == (20, 20)
    assert net(torch.rand(1, 1, 50, 50)).shape == (1, 1, 50, 50)


def test_parameter_counts_of_red10_red20_red30_at_width_64():
    """3x3, 64 features, grey: conv 1->64, (n-1) convs 64->64, (n-1) deconvs 64->64, deconv 64->1, with biases."""
    per_inner = 64 * 64 * 9 + 64
    for depth in (10, 20, 30):
        n = depth // 2
        expected = (9 * 64 + 64) + 2 * (n - 1) * per_inner + (64 * 9 + 1)
        net = models.build("rednet", depth=depth, **({"skip_step": 0, "global_residual": False} if depth == 10 else {}))
        assert sum(p.numel() for p in net.module.parameters()) == expected, depth
    assert expected == 1_035_201  # RED30; the release's 128 features: features=128


def test_the_global_residual_adds_the_input_and_red10_has_none():
    """'A skip connection between the input and the output': a zero network is the identity; RED10 ('without
    shortcuts') outputs zero."""
    x = torch.rand(1, 1, 24, 28)
    assert torch.equal(_zeroed(REDNet(depth=20, features=4))(x), x)
    red10 = _zeroed(REDNet(depth=10, features=4, skip_step=0, global_residual=False))
    assert torch.equal(red10(x), torch.zeros_like(x))
    assert _deconv_inputs(red10, x)[1].abs().max() == 0  # no skips either


@pytest.mark.parametrize("down", [(1,), (5,), (9,), (5, 9)])
def test_down_sampling_variants_halve_the_maps_after_the_strided_conv_and_restore_the_size(down):
    """Sec. 4.5: stride 2 at conv1 / conv5 / conv9 / conv5+9, the mirrored deconv up-samples by 2; odd sizes work."""
    net = REDNet(depth=20, features=4, padding="same", down=down)
    x = torch.rand(1, 1, 61, 47)
    bottleneck = _deconv_inputs(net, x)[0]
    factor = 2 ** len(down)
    assert bottleneck.shape[-2:] == (-(-61 // factor), -(-47 // factor))
    assert net(x).shape == x.shape


def test_residual_ablation_has_the_same_layers_and_differs_only_in_the_shortcuts():
    """Fig. 7: He-style identity shortcuts every 2 layers instead of the symmetric skips, same weights."""
    torch.manual_seed(0)
    red = REDNet(depth=10, features=4, padding="same", identity_init=False)
    residual = REDNet(depth=10, features=4, padding="same", skips="residual", identity_init=False)
    residual.load_state_dict(red.state_dict())
    x = torch.rand(1, 1, 20, 20)
    assert (red(x) - residual(x)).abs().max() > 1e-4
    with pytest.raises(ValueError, match="residual shortcuts need padding='same'"):
        REDNet(skips="residual")


def test_sr_instance_upscales_bicubically_first_and_a_too_small_image_is_one_clear_error():
    """Blind SR (Table 8): one model, the input bicubic-upscaled to the target size by the requested scale."""
    model = models.build("rednet", depth=6, features=4, sr_scales=(2, 3, 4))
    assert model.info.scales == (2, 3, 4) and model.info.inputs == ("scale",)
    assert model(torch.rand(1, 1, 10, 12), scale=3).shape == (1, 1, 30, 36)
    with pytest.raises(ModelError, match="at least 31 px"):
        models.build("rednet")(torch.rand(1, 1, 20, 40))


def test_untrained_net_is_the_identity_so_training_starts_at_the_input():
    """Initialisation is not stated; with the global residual the last deconv starts at zero (documented default),
    so F(x) = x before any step; without it (RED10), or with identity_init=False, PyTorch's default stands."""
    x = torch.rand(1, 1, 40, 44)
    assert torch.equal(REDNet(depth=30, features=8)(x), x)
    assert not torch.equal(REDNet(depth=30, features=8, identity_init=False)(x), x)
    red10 = REDNet(depth=10, features=8, skip_step=0, global_residual=False)
    assert red10.deconvs[-1].weight.abs().max() > 0


def test_the_task_models_fine_tune_from_the_blind_denoisers_phase_2_with_its_exact_red30_shape():
    """The JPEG and SR models (spec 2.5: Tables 8-9 train one RED30 per task family) start from the denoiser's
    phase-2 weights: same 30 layers, width and padding (init_strict), only the task's data and levels differ."""
    denoiser = load_config(CONFIGS / "denoise_blind_red30_phase2.yaml")
    start = "runs/rednet/denoise_blind_red30_phase2/final.safetensors"
    tasks = {name: load_config(CONFIGS / f"{name}.yaml") for name in
             ("denoise_blind_red30_phase3", "jpeg_red30_q10_q20_from_denoise", "sr_blind_red30_from_denoise")}
    for name, cfg in tasks.items():
        assert cfg.model.init == start and cfg.model.init_strict, name
        shape = {k: v for k, v in cfg.model.args.items() if k != "sr_scales"}
        assert shape == denoiser.model.args, name
    assert tasks["jpeg_red30_q10_q20_from_denoise"].data.train.levels[0].spec == "jpeg:quality=10|20"
    assert tasks["jpeg_red30_q10_q20_from_denoise"].data.train.grey == "y"  # LIVE1's protocol: MATLAB Y
    assert tasks["sr_blind_red30_from_denoise"].model.args["sr_scales"] == [2, 3, 4]
    phase2 = load_config(CONFIGS / "jpeg_red30_q10_q20_phase2.yaml")
    assert phase2.model.init == "runs/rednet/jpeg_red30_q10_q20_from_denoise/final.safetensors"
    assert phase2.data == tasks["jpeg_red30_q10_q20_from_denoise"].data


def test_deblurring_and_text_removal_start_from_the_zoo_denoiser_and_the_photo_model_sees_8_bit_input():
    """Spec 2.5: one RED30 per kernel (Table 10) and text removal without a mask, here fine-tuned from the zoo's
    blind denoiser (same RED30; the colour text model re-learns its first and last layer). The zoo deblurring model
    continues the width-1.6 one over a range of widths with 8-bit rounding: a float-trained deconvolution amplifies
    a file's rounding into artefacts (docs/BENCHMARKS.md: 17.99 dB against a 25.62 dB input)."""
    denoiser = load_config(CONFIGS / "denoise_blind_red30_phase3.yaml").model.args
    kernels = {"gaussian": "blur:kind=gaussian,width=1.6", "motion": "blur:kind=trajectory,length=15",
               "disk": "blur:kind=disk,radius=4"}
    for kind, spec in kernels.items():
        cfg = load_config(CONFIGS / f"deblur_{kind}_red30_from_denoise.yaml")
        assert cfg.model.init == "weights/rednet_denoise_blind.safetensors" and cfg.model.args == denoiser
        assert [lv.spec for lv in cfg.data.train.levels] == [spec] == [lv.spec for lv in cfg.data.val.levels]
    for kind in ("text", "scratch"):
        removal = load_config(CONFIGS / f"inpaint_{kind}_red30_from_denoise.yaml")
        assert removal.model.args == {**denoiser, "channels": 3, "mask_input": False}
        assert removal.model.init_exclude == ["convs.0.*", "deconvs.14.*"]  # the 1-channel ends of the denoiser
    photo = load_config(CONFIGS / "deblur_gaussian_blind_red30.yaml")
    assert photo.model.init == "runs/rednet/deblur_gaussian_red30_from_denoise/final.safetensors"
    (train,) = photo.data.train.levels
    assert train.spec.startswith("blur:kind=gaussian,width=0.4..2.6") and train.spec.endswith("+quantize:levels=256")
    assert all(lv.spec.endswith("+quantize:levels=256") for lv in photo.data.val.levels)
