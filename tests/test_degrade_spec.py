"""Spec grammar: what parses, what it means, and errors that name the bad token and list valid choices."""

from __future__ import annotations

import pytest
import torch

from restorekit.degrade import Choice, Fixed, Uniform, operator_names, parse_spec, parse_stage
from restorekit.degrade.pipeline import Sequential, SpatiallyVarying
from restorekit.errors import SpecError


def test_issue_examples_parse_to_the_expected_pipelines():
    pipe = parse_spec("blur:kind=gaussian,width=1.3+down:scale=4+noise:sigma=10")
    assert isinstance(pipe, Sequential)
    assert [op.label() for op in pipe.stages] == ["blur:kind=gaussian", "down", "noise"]
    assert pipe.stages[0].values["width"] == Fixed(1.3)
    assert parse_spec("noise:sigma=0..75").stages[0].values["sigma"] == Uniform(0.0, 75.0)
    assert parse_spec("jpeg:quality=10|20|30").stages[0].values["quality"] == Choice((10, 20, 30))
    assert parse_spec("jpeg:quality=15..50").stages[0].values["quality"] == Uniform(15, 50, integer=True)
    assert parse_spec("inpaint:kind=square,size=20").stages[0].values["size"] == Fixed(20)
    assert isinstance(parse_spec("shdd:level=moderate"), SpatiallyVarying)


def test_percentages_whitespace_and_case():
    pipe = parse_spec(" Bernoulli : ratio = 75% ")
    assert pipe.stages[0].values["ratio"] == Fixed(0.75)
    assert str(pipe) == "bernoulli:ratio=0.75,exact=false,fill=zero"


def test_spec_text_round_trips():
    for spec in ["noise:sigma=0..75", "blur:kind=motion", "mbn", "subset:k=1..2+noise:sigma=5+jpeg:quality=10", "shdd:level=easy"]:
        pipe = parse_spec(spec)
        assert str(parse_spec(str(pipe))) == str(pipe)


def test_every_operator_has_a_documented_default_or_required_level():
    assert {"noise", "blur", "down", "jpeg", "inpaint", "bernoulli", "rain", "haze", "contrast", "pink"} <= set(operator_names())


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nosie:sigma=25", r"unknown operator 'nosie' \(did you mean 'noise'\?\); valid operators: bernoulli, blur"),
        ("noise:sigm=25", r"unknown parameter 'sigm' \(did you mean 'sigma'\?\); valid parameters: sigma, var, clip"),
        ("noise:sigma=abc", r"'abc' is not a number"),
        ("noise:sigma=-5", r"sigma=-5 is out of range; must be a number >= 0"),
        ("noise:sigma=300", r"sigma=300 is out of range"),
        ("noise", r"give exactly one of sigma="),
        ("noise:sigma=5,var=0.1", r"exactly one of sigma="),
        ("jpeg:quality=0", r"jpeg: quality=0 is out of range; must be an integer >= 1 and <= 100"),
        ("jpeg:quality=101", r"quality=101 is out of range"),
        ("jpeg:quality=30.5", r"must be a whole number"),
        ("jpeg", r"missing parameter 'quality'"),
        ("jpeg:quality=30,encoder=matlab", r"encoder='matlab' is not valid; choose pil \| opencv"),
        ("noise:sigma", r"expected key=value, got 'sigma'"),
        ("noise:sigma=25++jpeg:quality=10", r"empty stage #2"),
        ("noise:sigma=25+", r"empty stage #2"),
        ("", r"empty spec"),
        ("noise:sigma=50..10", r"is empty \(high < low\)"),
        ("noise:sigma=1,sigma=2", r"'sigma' given twice"),
        ("blur:kind=box,width=1", r"unknown kind 'box'; valid kinds: disk, gaussian, motion, trajectory"),
        ("blur:kind=disk", r"missing parameter 'radius'"),
        ("blur:kind=motion,preset=2,radius=3,sigma=1", r"not both"),
        ("down:scale=1.5,method=decimate", r"decimate needs an integer scale"),
        ("bernoulli:ratio=1", r"ratio=1 is out of range; must be a number >= 0 and < 1"),
        ("inpaint:kind=square,size=0", r"size=0 is out of range"),
        ("noise:clip=maybe,sigma=1", r"clip='maybe' must be true or false"),
        ("shdd:level=hard", r"level='hard' is not valid; choose easy \| moderate \| difficult"),
        ("shdd+noise:sigma=5", r"stands alone"),
        ("noise:sigma=5+subset:k=1", r"must be the first stage"),
        ("subset:k=1..3+noise:sigma=5+jpeg:quality=5", r"k=1..3 exceeds the 2 operators"),
        ("subset:k=1+down:scale=2+noise:sigma=5", r"size-changing operators cannot be optional"),
    ],
)
def test_bad_specs_name_the_problem(spec, message):
    with pytest.raises(SpecError, match=message):
        parse_spec(spec)


def test_wrong_image_sizes_and_shapes_are_clear():
    with pytest.raises(SpecError, match="does not fit a 16x16 image"):
        parse_spec("inpaint:kind=square,size=20,shift=0").apply_one(torch.rand(3, 16, 16), seed=0)
    with pytest.raises(ValueError, match="BCHW"):
        parse_spec("noise:sigma=5")(torch.rand(3, 8, 8), torch.Generator())
    with pytest.raises(TypeError, match="float"):
        parse_spec("noise:sigma=5").apply_one(torch.zeros(3, 8, 8, dtype=torch.uint8), seed=0)


def test_operators_are_usable_on_their_own():
    op = parse_stage("blur:kind=gaussian,width=0.5..2")
    batch = torch.rand(4, 3, 16, 16)
    out = op(batch, torch.Generator().manual_seed(0))
    assert out.shape == batch.shape
    level = op.sample_level(__import__("numpy").random.default_rng(0))
    assert level["kind"] == "gaussian" and 0.5 <= level["width"] <= 2


def test_docs_describe_every_operator_and_parameter():
    from pathlib import Path

    from restorekit.degrade import all_operator_classes

    text = (Path(__file__).resolve().parent.parent / "docs" / "degradations.md").read_text()
    for cls in all_operator_classes():
        assert f"### `{cls.label()}`" in text, cls.label()
        for param in cls.params:
            assert f"| `{param.name}` |" in text, f"{cls.label()}: {param.name}"


def test_the_denoising_noise_protocol_is_explicit():
    """Issue 19: KAIR's float noise by default (DnCNN / FFDNet tables), the AdaFM paper's clipped uint8 noisy
    images on request; an unknown protocol is one clear error."""
    from restorekit.degrade import canonical_spec

    assert canonical_spec("denoise", 25) == "noise:sigma=25"
    assert canonical_spec("denoise", 25, noise="quantized") == "noise:sigma=25,quantize=true"
    assert canonical_spec("jpeg", 20, noise="quantized") == "jpeg:quality=20"  # only denoising's input changes
    with pytest.raises(SpecError, match="unknown noise protocol 'clipped'"):
        canonical_spec("denoise", 25, noise="clipped")
