"""ONNX export: parity with PyTorch (max abs < 1e-3) for every registered family, strength as an input,
size-dependent graphs (MATLAB bicubic) refused with a reason or exported at a fixed size."""

from __future__ import annotations

import json

import onnx
import pytest
import torch

from restorekit import export
from restorekit.cli import main
from restorekit.errors import ModelError
from restorekit.infer import Restorer
from restorekit.models import create_model, list_models
from test_zoo_cli import lively_adafm, tiny_zoo  # noqa: F401  (fixture)

# Small instances of each registered architecture (full-size ones export the same graph, only slower).
# A family registered later and missing here is exported at its defaults, so it is never left untested.
SMALL = {
    "dncnn": {"in_channels": 3, "depth": 4, "features": 8},
    "adafm_net": {"blocks": 2, "features": 8, "kernel_size": 3},
    "bicubic": {"scale": 2},
    "identity": {},
}
FIXED_SIZE = (40, 56)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models run fastest on one thread


def _model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model(name, **SMALL.get(name, {})).eval()
    return lively_adafm(model) if name == "adafm_net" else model


@pytest.mark.parametrize("name", list_models())
def test_every_registered_family_exports_with_parity(name):
    """bicubic (and SR AdaFM) build resize matrices from the size: dynamic export is refused with that
    reason, and the fixed-size export (torch.export path) must then match."""
    model = _model(name)
    try:
        runner = export.runner_from_bytes(export.export_bytes(model, name=name))
        sizes = None
    except ModelError as err:  # size-dependent graph: the reason is stated, a fixed size works
        assert "depends on the input size" in str(err)
        sizes = FIXED_SIZE
        runner = export.runner_from_bytes(export.export_bytes(model, name=name, input_size=sizes))
    assert export.check_parity(model, runner, name, sizes) < export.PARITY_TOLERANCE
    assert runner.info.family == model.info.family and runner.info.scale == model.info.scale
    if sizes is not None:  # a fixed-size graph says so instead of failing obscurely at another size
        with pytest.raises(ModelError, match=f"exported for {sizes[0]}x{sizes[1]}"):
            runner(torch.rand(1, 3, 32, 32))


@pytest.mark.parametrize("norm", ["none", "cin"])
def test_strength_is_a_graph_input_with_parity_at_every_lambda(norm):
    torch.manual_seed(0)
    model = lively_adafm(create_model("adafm_net", blocks=2, features=8, norm=norm).eval())
    runner = export.runner_from_bytes(export.export_bytes(model, name="adafm"))
    assert isinstance(runner, export.ModulatedOnnxModel)
    outputs = []
    for lam in (0.0, 0.3, 1.0):
        assert export.max_difference(model, runner, (36, 50), strength=lam) < export.PARITY_TOLERANCE
        outputs.append(runner.set_strength(lam)(torch.ones(1, 3, 36, 50)))
    assert (outputs[0] - outputs[2]).abs().max() > 0.01  # lambda really reaches the graph


def test_export_command_writes_a_self_describing_graph(tiny_zoo, tmp_path, capsys):
    path = tmp_path / "m.onnx"
    assert main(["export", "tiny-adafm", "--onnx", str(path)]) == 0
    assert "inputs: input, strength" in capsys.readouterr().out
    proto = onnx.load(str(path))
    assert proto.opset_import[0].version >= 17
    meta = {p.key: p.value for p in proto.metadata_props}
    card = json.loads(meta["restorekit.card"])
    assert card["name"] == "tiny-adafm" and "strength_curve" in card
    assert not any(key.startswith("_") for key in card)  # no local paths inside a shareable file
    assert [d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim] == ["batch", "", "height", "width"]
    assert main(["export", "tiny-adafm", "--onnx", str(path)]) == 2  # no silent overwrite
    assert "already exists" in capsys.readouterr().err
    # The file restores like the PyTorch model, level -> lambda curve included (from the embedded card).
    image = torch.rand(3, 50, 70, generator=torch.Generator().manual_seed(1))
    onnx_out = Restorer(export.load_onnx(path), device="cpu", tile=32).restore(image, level=40)
    torch_out = Restorer("tiny-adafm", device="cpu", tile=32).restore(image, level=40)
    assert (onnx_out - torch_out).abs().max() < 1e-3


def test_fixed_strength_export_bakes_lambda(tiny_zoo, tmp_path, capsys):
    path = tmp_path / "fixed.onnx"
    assert main(["export", "tiny-adafm", "--onnx", str(path), "--strength", "0.25"]) == 0
    runner = export.load_onnx(path)
    assert not isinstance(runner, export.ModulatedOnnxModel)
    model = Restorer("tiny-adafm", device="cpu").model.set_strength(0.25)
    x = torch.rand(1, 3, 30, 44)
    assert (runner(x) - model(x)).abs().max() < export.PARITY_TOLERANCE


def test_every_installed_zoo_model_exports_with_parity():
    """Acceptance: ONNX parity under 1e-3 for every exported zoo model (the real zoo, once trained)."""
    from restorekit.zoo import load_model, weights_dir, zoo_cards

    cards = [c for c in zoo_cards() if (weights_dir() / c.get("file", "")).is_file()]
    if not cards:
        pytest.skip(f"no trained models installed in {weights_dir()} yet")
    for card in cards:
        model = load_model(card["name"])
        runner = export.runner_from_bytes(export.export_bytes(model, name=card["name"]))
        assert export.check_parity(model, runner, card["name"], None) < export.PARITY_TOLERANCE, card["name"]
