"""CARN, CARN-M and progressive CARN (issue 14, items 2 and 3) against the thesis (spec methods-thesis.md
sections 1.1-1.3, 2.1, 9 and 11) and the released key layouts (field-conventions 3.2), built in miniature.

What the parameter counts count: every parameter of our module, i.e. every conv weight and bias. The RGB
mean is a frozen buffer, not a parameter. The reference code holds it in two frozen 1x1 convs (3x3
weights + 3 biases each = 24 values), which its printouts and files include: that is the only gap
between the thesis's arithmetic (spec section 9) and the reference code's (field-conventions 3.2).
"""

from __future__ import annotations

import re

import pytest
import torch

from restorekit import infer, models
from restorekit.errors import ModelError
from restorekit.models import carn as carn_family

pytestmark = pytest.mark.usefixtures("one_thread")

REFERENCE_MEAN_SHIFT_CONVS = 2 * (3 * 3 + 3)  # sub_mean + add_mean: identity 1x1 conv + bias, frozen


def _params(name: str, **arguments) -> tuple[int, int]:
    """(with biases, without biases), counted on the meta device: nothing allocated."""
    with torch.device("meta"):
        module = models.create_model(name, **arguments)
    named = list(module.named_parameters())
    return sum(p.numel() for _, p in named), sum(p.numel() for n, p in named if not n.endswith("bias"))


def _random(name: str, seed: int = 0, **arguments) -> models.Model:
    model = models.build(name, **arguments)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.module.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.1)
    return model


def _lr(height: int = 9, width: int = 11) -> torch.Tensor:
    return torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(1))


# ------------------------------------------------------------------------------- parameter counts


def test_carn_multi_scale_parameters():
    """Table 2.4: 1,592K with biases; Table 2.5: 1,589K without (spec 9: 1,591,939 / 1,588,608). The
    reference code prints 1,591,963 (field-conventions 3.2, CARN-pytorch issue #6): + its mean-shift convs."""
    with_bias, without_bias = _params("carn")
    assert with_bias == 1_591_939
    assert without_bias == 1_588_608
    assert with_bias + REFERENCE_MEAN_SHIFT_CONVS == 1_591_963


def test_carn_m_parameters_and_the_released_file():
    """Table 2.4: CARN-M 412K, counted without biases (412,032); 414,787 with them (spec 9). The released
    carn_m.pth holds 414,811 values (reference-weights README): 414,787 + the two mean-shift convs."""
    with_bias, without_bias = _params("carn_m")
    assert without_bias == 412_032
    assert with_bias == 414_787
    assert with_bias + REFERENCE_MEAN_SHIFT_CONVS == 414_811


@pytest.mark.parametrize("scale,expected", [(4, 1_111_875), (8, 1_259_587)])
def test_single_scale_carn_parameters(scale, expected):
    """Table 2.1 '+Residual' (single-scale x4) 1,111K; Table 3.1 CARN-B3U3 (single-scale x8) 1.25M."""
    assert _params("carn", scale=scale)[0] == expected


@pytest.mark.parametrize("cascade,thousands", [("none", 963), ("local", 1_074), ("global", 1_000),
                                               ("local+global", 1_111)])
def test_cascading_ablation_parameters_are_table_2_1s(cascade, thousands):
    """Table 2.1 (single-scale x4): baseline (SRResNet-like) 963K, + Local 1,074K, + Global 1,000K,
    + L/G 1,111K, + Residual 1,111K (the body's residual adds no parameters)."""
    assert _params("carn", scale=4, cascade=cascade)[0] // 1000 == thousands
    assert _params("carn", scale=4, cascade=cascade, residual=True) == _params("carn", scale=4, cascade=cascade,
                                                                              residual=False)


def test_without_cascading_the_body_is_the_units_in_sequence():
    """The ablation's baseline: no 1x1 fusions, each block its units one after another (SRResNet-like)."""
    model = _random("carn", features=8, blocks=2, units=2, scale=2, cascade="none", residual=False)
    body = model.module.body
    x = torch.rand(1, 8, 5, 6, generator=torch.Generator().manual_seed(2))
    expected = x
    for block in body.blocks:
        for unit in block.units:
            expected = unit(expected)
    assert torch.equal(body(x), expected)


def test_desubpixel_carn_takes_the_lr_image_nearest_upsampled_to_hr_size():
    """CutBlur's network side (thesis 4.3.1 step 5): the HR-size input is pixel-unshuffled by s before the
    first conv (3 -> 3s^2 channels: 48 for x4 RGB), and at test time the LR image is nearest-upsampled first,
    which `Model.__call__` does: so `model(lr)` is the module on the nearest-upsampled LR."""
    model = _random("carn_m", features=8, blocks=1, units=2, scale=4, desubpixel=True)
    assert model.module.entry.in_channels == 48 and model.info.input_upsample == 4
    lr = _lr(6, 7)
    with torch.no_grad():
        out = model(lr)
        direct = model.module(torch.nn.functional.interpolate(lr, scale_factor=4, mode="nearest"))
    assert out.shape == (1, 3, 24, 28)
    assert torch.equal(out, direct)
    with pytest.raises(ModelError, match="single-scale"):
        models.create_model("carn", desubpixel=True)


def test_progressive_carn_parameters_fix_the_stage_body_as_b8u4():
    """Table 3.1: progressive CARN 9.46M (spec 9: 9,461,443 with three B8U4 stages). The text's other
    reading, B4U8, gives 9,878,467, which matches nothing the thesis reports."""
    assert _params("progressive_carn")[0] == 9_461_443
    assert _params("progressive_carn", blocks=4, units=8)[0] == 9_878_467


def test_efficient_unit_cost_ratio_is_one_over_g_plus_one_over_2k2():
    """Eq. 2.10: EResidual / Residual weights = 1/G + 1/(2K^2); K = 3, G = 4: 0.3056."""
    plain = sum(p.numel() for n, p in carn_family.ResidualUnit(64).named_parameters() if n.endswith("weight"))
    efficient = sum(p.numel() for n, p in carn_family.EfficientResidualUnit(64, 4).named_parameters()
                    if n.endswith("weight"))
    assert efficient / plain == pytest.approx(1 / 4 + 1 / (2 * 3**2))


# ----------------------------------------------------------------------------------- structure


def test_carn_m_shares_one_unit_per_cascading_block_and_groups_the_heads():
    """Sec. 2.3.3 (spec 1.2): one EResidual per block, used at its 3 positions; its 1x1 fusions are not
    shared; G = 4 in the units and in the up-sampling convs."""
    module = models.build("carn_m").module
    for block in module.body.blocks:
        assert len(block.units) == 1 and block.positions == 3 and len(block.fusions) == 3
        assert block.units[0].conv1.groups == block.units[0].conv2.groups == 4
    assert all(head[0].groups == 4 for head in module.heads.values())
    unshared = models.build("carn_m", shared=False).module
    assert all(len(block.units) == 3 for block in unshared.body.blocks)


def test_one_body_three_heads_scale_is_a_call_argument():
    """Sec. 2.3.1: one multi-scale network, x2/x3/x4 branches after a shared body."""
    model = _random("carn_m", features=8, blocks=1, units=2)
    assert model.info.scales == (2, 3, 4) and model.info.inputs == ("scale",)
    for scale in (2, 3, 4):
        assert model(_lr(), scale=scale).shape == (1, 3, 9 * scale, 11 * scale)
    with pytest.raises(ModelError, match="say which scale"):
        infer.run_model(model, _lr()[0])
    single = models.build("carn", features=8, blocks=1, units=1, scale=3)
    assert single.info.scales == (3,) and single.info.inputs == ()
    with pytest.raises(ModelError, match="takes no scale"):
        single(_lr(), scale=3)


def test_the_rgb_mean_is_frozen_subtracted_and_added_back():
    """[REF-CODE] mean shift (0.4488, 0.4371, 0.4040), no std, frozen: a buffer no optimiser sees. With
    every conv zeroed, the network returns exactly the mean image."""
    model = models.build("carn", features=8, blocks=1, units=1)
    assert not any("mean" in name for name, _ in model.module.named_parameters())
    assert model.module.state_dict()["rgb_mean"].flatten().tolist() == pytest.approx([0.4488, 0.4371, 0.4040])
    with torch.no_grad():
        for p in model.module.parameters():
            p.zero_()
    out = model(_lr(), scale=2)
    assert torch.equal(out, model.module.rgb_mean.expand_as(out))


def test_the_variants_differ_in_the_fusion_relu_and_the_global_residual():
    """Thesis (spec 1.1): no ReLU after the 1x1 fusions, O = H^B + H^0. CARN-pytorch (which released
    carn_m.pth): a ReLU after each fusion, no global residual. The keys tell them apart."""
    thesis = _random("carn", features=8, blocks=2, units=2)
    eccv = models.build("carn", features=8, blocks=2, units=2, variant="eccv")
    renamed = {re.sub(r"(fusions\.\d+)\.", r"\1.0.", k): v for k, v in thesis.module.state_dict().items()}
    eccv.module.load_state_dict(renamed)
    assert not torch.allclose(thesis(_lr(), scale=2), eccv(_lr(), scale=2))
    assert models.detect(renamed)[1]["variant"] == "eccv"
    assert models.detect(thesis.module.state_dict())[1]["variant"] == "thesis"
    with pytest.raises(ModelError, match="variant must be one of"):
        models.build("carn", variant="paper")


def test_progressive_stages_double_the_size_and_grow_by_one_module():
    """Sec. 3.3 (spec 2.1): one entry conv, per stage a CARN body + x2 unit, one toRGB; stage k outputs x2^k.
    Stage k's modules are the first k of stage k+1 (same keys and shapes); toRGB is replaced."""
    one, two = (models.build("progressive_carn", stages=k, features=8, blocks=1, units=1) for k in (1, 2))
    assert one.info.scales == (2,) and two.info.scales == (4,)
    assert two(_lr()).shape == (1, 3, 36, 44)
    small, large = one.module.state_dict(), two.module.state_dict()
    assert all(large[k].shape == v.shape for k, v in small.items())
    assert {k.split(".")[1] for k in set(large) - set(small)} == {"1"}  # only stages.1.* is new
    assert models.detect(large)[1] == {"stages": 2, "blocks": 1, "units": 1, "features": 8}


# ----------------------------------------------------------------------- released layouts in miniature

_ECCV_UNIT = {"conv1": "0", "conv2": "2", "pointwise": "4"}
_PCARN_UNIT = {"conv1": "conv1", "conv2": "conv2", "pointwise": "pw"}


def _mean_shift_convs(mean: torch.Tensor) -> dict[str, torch.Tensor]:
    eye = torch.eye(3).view(3, 3, 1, 1)
    return {"sub_mean.shifter.weight": eye, "sub_mean.shifter.bias": -mean.flatten(),
            "add_mean.shifter.weight": eye.clone(), "add_mean.shifter.bias": mean.flatten().clone()}


def _released(state: dict[str, torch.Tensor], layout: str, units: int = 3) -> dict[str, torch.Tensor]:
    """Our state dict written the way CARN-pytorch ('eccv') or PCARN-pytorch ('pcarn') stores it; PCARN
    stores the tied unit once per use (b1, b2, b3 all the same tensors)."""
    out = _mean_shift_convs(state["rgb_mean"])
    for key, value in state.items():
        parts = key.split(".")
        if key == "rgb_mean":
            continue
        if parts[0] in ("entry", "exit"):
            out[key] = value
        elif parts[0] == "heads":
            out[f"upsample.up{parts[1][1:]}.body.{parts[2]}.{parts[3]}"] = value
        elif parts[1] == "fusions":  # body.fusions.{b}[.0].p
            out[f"c{int(parts[2]) + 1}" + (".body.0." if layout == "eccv" else ".") + parts[-1]] = value
        elif parts[3] == "fusions":  # body.blocks.{i}.fusions.{u}[.0].p
            out[f"b{int(parts[2]) + 1}.c{int(parts[4]) + 1}" + (".body.0." if layout == "eccv" else ".") + parts[-1]] = value
        else:  # body.blocks.{i}.units.{u}.{conv}.p
            block, conv = int(parts[2]) + 1, parts[5]
            if layout == "eccv":
                out[f"b{block}.b{int(parts[4]) + 1}.body.{_ECCV_UNIT[conv]}.{parts[6]}"] = value
            else:
                for use in range(units):
                    out[f"b{block}.b{use + 1}.{_PCARN_UNIT[conv]}.{parts[6]}"] = value.clone()
    return out


def test_carn_pytorch_carn_m_layout_converts_and_runs_the_same():
    """carn_m.pth's layout (58 keys: `b1.b1.body.0.weight`, `b1.c1.body.0.*`, `upsample.up4.body.3.*`)."""
    ours = _random("carn_m", features=8, variant="eccv")
    released = _released(ours.module.state_dict(), "eccv")
    assert len(released) == 58 and "upsample.up4.body.3.bias" in released and "b1.b1.body.4.weight" in released
    loaded = models.from_state_dict(released)
    assert loaded.info.name == "carn_m"
    assert loaded.info.arguments == {"features": 8, "blocks": 3, "units": 3, "variant": "eccv", "groups": 4,
                                     "shared": True}
    for scale in (2, 3, 4):
        assert torch.equal(loaded(_lr(), scale=scale), ours(_lr(), scale=scale))


def test_pcarn_m_layout_collapses_the_tied_unit_and_refuses_differing_copies():
    """pcarn_m_*.pth store each block's tied unit three times (551,131 values, 414,811 unique)."""
    ours = _random("carn_m", features=8)
    released = _released(ours.module.state_dict(), "pcarn")
    assert "b3.b3.pw.weight" in released and "b1.c1.weight" in released
    loaded = models.from_state_dict(released)
    assert loaded.info.arguments["variant"] == "thesis" and loaded.info.arguments["shared"] is True
    assert torch.equal(loaded(_lr(), scale=4), ours(_lr(), scale=4))
    released["b2.b3.conv2.bias"] = released["b2.b3.conv2.bias"] + 1e-3
    with pytest.raises(ModelError, match="shared residual unit differs") as refused:
        models.from_state_dict(released, source="pcarn.pth")
    assert "\n" not in str(refused.value) and str(refused.value).startswith("pcarn.pth: ")


def test_a_mean_shift_that_is_not_the_frozen_mean_is_refused():
    released = _released(models.build("carn_m", features=8).module.state_dict(), "eccv")
    released["add_mean.shifter.bias"] = released["add_mean.shifter.bias"] * 2
    with pytest.raises(ModelError, match="mean-shift convs"):
        models.from_state_dict(released)


def test_a_single_scale_carn_pytorch_head_gives_the_scale():
    """CARN-pytorch single-scale builds store one `upsample.up.body.*` head: x3 is one 9F conv, x2^k has k convs."""
    for scale in (2, 3, 4):
        ours = _random("carn", features=8, blocks=1, units=1, scale=scale, variant="eccv")
        released = {re.sub(r"upsample\.up\d\.", "upsample.up.", k): v
                    for k, v in _released(ours.module.state_dict(), "eccv").items()}
        loaded = models.from_state_dict(released)
        assert loaded.info.scales == (scale,)
        assert torch.equal(loaded(_lr()), ours(_lr()))
