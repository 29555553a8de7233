"""ONNX export: strength as a graph input, the `export` command's self-describing file, baked strengths and
the installed zoo. Parity with PyTorch (max abs < 1e-3) for every registered architecture and test config,
size-dependent graphs (MATLAB bicubic) refused with a reason or exported at a fixed size, and models with
other conditions refused: tests/test_model_contract.py::test_onnx_export_parity."""

from __future__ import annotations

import json

import onnx
import pytest
import torch
from zoo_helpers import lively_adafm

from restorekit import export
from restorekit.api import Restorer
from restorekit.cli import main
from restorekit.errors import ModelError
from restorekit.models import build

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models run fastest on one thread


@pytest.mark.parametrize("norm", ["none", "cin"])
def test_strength_is_a_graph_input_with_parity_at_every_lambda(norm):
    torch.manual_seed(0)
    model = build("adafm_net", blocks=2, features=8, norm=norm)
    lively_adafm(model.module)
    runner = export.model_from_onnx(export.export_bytes(model, name="adafm"))
    assert runner.module.takes_strength and runner.info.inputs == ("strength",)
    assert runner.info.fp16 is False and runner.info.bf16 is False  # the graph is fp32
    outputs = []
    for lam in (0.0, 0.3, 1.0):
        assert export.max_difference(model, runner, (36, 50), strength=lam) < export.PARITY_TOLERANCE
        outputs.append(runner(torch.ones(1, 3, 36, 50), strength=lam))
    assert (outputs[0] - outputs[2]).abs().max() > 0.01  # lambda really reaches the graph


def test_export_refuses_models_with_other_conditions():
    with pytest.raises(ModelError, match="only condition is the strength"):
        export.export_bytes(build("vdsr", depth=3, features=8), name="vdsr")


@pytest.mark.usefixtures("tiny_zoo")
def test_export_command_writes_a_self_describing_graph(tmp_path, capsys):
    path = tmp_path / "m.onnx"
    assert main(["export", "tiny-adafm", "--onnx", str(path)]) == 0
    assert "inputs: input, strength" in capsys.readouterr().out
    proto = onnx.load(str(path))
    assert proto.opset_import[0].version >= 17
    meta = {p.key: p.value for p in proto.metadata_props}
    card = json.loads(meta["restorekit.card"])
    assert card["name"] == "tiny-adafm" and "strength_curve" in card
    assert not any(key.startswith("_") for key in card)  # no local paths inside a shareable file
    assert json.loads(meta["restorekit.architecture"]) == {"name": "adafm_net",
                                                           "arguments": {"blocks": 2, "features": 8}}
    assert [d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim] == ["batch", "", "height", "width"]
    assert main(["export", "tiny-adafm", "--onnx", str(path)]) == 2  # no silent overwrite
    assert "already exists" in capsys.readouterr().err
    # The file restores like the PyTorch model, level -> lambda curve included (from the embedded card).
    image = torch.rand(3, 50, 70, generator=torch.Generator().manual_seed(1))
    onnx_model = export.load_onnx(path)
    assert onnx_model.name == "tiny-adafm" and onnx_model.card is not None
    onnx_out = Restorer(onnx_model, device="cpu", tile=32).restore(image, level=40)
    torch_out = Restorer("tiny-adafm", device="cpu", tile=32).restore(image, level=40)
    assert (onnx_out - torch_out).abs().max() < 1e-3


@pytest.mark.usefixtures("tiny_zoo")
def test_fixed_strength_export_bakes_lambda(tmp_path):
    path = tmp_path / "fixed.onnx"
    assert main(["export", "tiny-adafm", "--onnx", str(path), "--strength", "0.25"]) == 0
    runner = export.load_onnx(path)
    assert not runner.info.modulated and not runner.module.takes_strength
    with pytest.raises(ModelError, match="takes no strength"):  # a baked graph has no slider to move
        runner(torch.rand(1, 3, 8, 8), strength=0.5)
    model = Restorer("tiny-adafm", device="cpu").model
    x = torch.rand(1, 3, 30, 44)
    with torch.no_grad():
        assert (runner(x) - model(x, strength=0.25)).abs().max() < export.PARITY_TOLERANCE
        assert (runner(x) - model(x, strength=1.0)).abs().max() > export.PARITY_TOLERANCE


def test_every_installed_zoo_model_exports_with_parity():
    """Acceptance: ONNX parity under 1e-3 for every installed zoo model (the bundled ones included)."""
    from restorekit.zoo import entries, load_model

    installed = [e.card.name for e in entries() if e.weights.is_file()]
    if not installed:
        pytest.skip("no trained models installed in the zoo")
    for name in installed:
        model = load_model(name)
        # a multi-head model (carn_x234 takes scale) or a recogniser (a class map, not an image): refused, in one line
        if set(model.info.inputs) - {"strength"} or "image" not in model.info.outputs:
            with pytest.raises(ModelError, match="ONNX export covers image-to-image models"):
                export.export_bytes(model, name=name)
            continue
        runner = export.model_from_onnx(export.export_bytes(model, name=name))
        assert export.check_parity(model, runner, name, None) < export.PARITY_TOLERANCE, name
