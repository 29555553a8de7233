"""ONNX export of any registered or zoo model, and an onnxruntime runner that plugs into `Restorer`.

Export uses torch.onnx's TorchScript exporter (`dynamo=False`: it handles dynamic height/width axes in
well under a second and needs no onnxscript) at opset 17. Modulated models (AdaFM) get their strength
lambda as a second input `strength` (float32, shape [1]), so one file serves the whole slider;
`strength=S` bakes a fixed value instead. The graph carries restorekit metadata (the ModelInfo fields
and the model card), so a bare `.onnx` file restores with the same padding, tiling context and
lambda(level) curve as the PyTorch model.

Some graphs depend on the input size: MATLAB bicubic (the `bicubic` baseline, SR AdaFM models) builds
its resize matrices from the size, and tracing freezes them as constants. Every export is therefore
run by onnxruntime at a second, different size and compared with PyTorch; such models export only at
a fixed `input_size`, with an error that says so.
"""

from __future__ import annotations

import copy
import io
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from restorekit.card import parse_card
from restorekit.errors import ModelError
from restorekit.models import Architecture, Model, ModelInfo, get_architecture

OPSET = 17
PARITY_TOLERANCE = 1e-3  # max abs difference (images in [0, 1]) accepted between onnxruntime and PyTorch
_META_PREFIX = "restorekit."


class _FixedConditions(nn.Module):
    """The module with its call conditions bound: strength as a traced graph input (one file serves the
    whole slider) or baked in as a constant."""

    def __init__(self, model: Model, strength: float | None):
        super().__init__()
        self.net = model.module  # registered, so tracing sees its weights as parameters, not constants
        self.model, self.strength = model, strength

    def forward(self, x: torch.Tensor, strength: torch.Tensor | None = None) -> torch.Tensor:
        lam = strength if strength is not None else self.strength
        return self.model(x, strength=lam)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _probe_sizes(multiple: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Two different, non-square sizes (the export size and the check size), valid for the model."""
    return (_round_up(64, multiple), _round_up(80, multiple)), (_round_up(40, multiple), _round_up(56, multiple))


def _metadata(model: Model, name: str, strength: str, input_size: tuple[int, int] | None) -> dict[str, str]:
    """What a bare .onnx file needs to restore like the PyTorch model: architecture + arguments (the
    descriptor is rebuilt from the registry on load), the card, the strength mode and the input size."""
    return {
        f"{_META_PREFIX}name": name,
        f"{_META_PREFIX}architecture": json.dumps({"name": model.info.name, "arguments": model.info.arguments}),
        f"{_META_PREFIX}card": json.dumps(model.card.to_json() if model.card is not None else None),
        f"{_META_PREFIX}strength": strength,
        f"{_META_PREFIX}input_size": "dynamic" if input_size is None else f"{input_size[0]}x{input_size[1]}",
    }


def export_bytes(
    model: Model,
    *,
    name: str = "model",
    strength: float | None = None,
    input_size: tuple[int, int] | None = None,
    opset: int = OPSET,
) -> bytes:
    """The serialized ONNX graph (fp32) of `model`: dynamic batch/height/width unless `input_size`.

    strength None on a modulated model: lambda becomes the second input; a number bakes it in.
    """
    import onnx

    info = model.info
    if "image" not in info.outputs or set(info.inputs) - {"strength"}:
        raise ModelError(f"{name}: ONNX export covers image-to-image models whose only condition is the "
                         f"strength; this one takes {', '.join(info.inputs)}")
    model = Model(copy.deepcopy(model.module).float().eval(), info, model.name, model.card)  # the caller's stays
    channels = info.in_channels or 3
    size = input_size or _probe_sizes(max(1, info.size_multiple))[0]
    if input_size is not None and any(v % max(1, info.size_multiple) for v in input_size):
        raise ModelError(f"--input-size must be a multiple of {info.size_multiple} for this model")
    dummy = torch.rand(1, channels, *size)
    axes = {0: "batch"} if input_size else {0: "batch", 2: "height", 3: "width"}
    if info.in_channels is None:
        axes[1] = "channels"
    if strength is None and info.modulated:
        module, args, inputs, mode = _FixedConditions(model, None), (dummy, torch.tensor([0.5])), ["input", "strength"], "input"
    else:
        baked = (1.0 if strength is None else strength) if info.modulated else None
        module, args, inputs, mode = _FixedConditions(model, baked), (dummy,), ["input"], \
            "none" if strength is None else f"{strength:g}"
    try:
        payload = _traced_export(module, args, inputs, axes, opset)
    except (TypeError, RuntimeError) as err:
        if input_size is None:
            raise ModelError(f"{name}: cannot export with dynamic height/width: its computation depends on the "
                             "input size (MATLAB bicubic); export with --input-size HxW for one fixed size") from err
        if len(inputs) > 1:
            raise ModelError(f"{name}: a fixed-size export of this model needs a fixed --strength") from err
        payload = _dynamo_export(module, args, max(opset, 18))
    proto = onnx.load_from_string(payload)
    for key, value in _metadata(model, name, mode, input_size).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto.SerializeToString()


def _traced_export(module: nn.Module, args: tuple, inputs: list[str], axes: dict, opset: int) -> bytes:
    """TorchScript-based export: fast and handles dynamic axes, but sizes are traced as tensors."""
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings on `if strength == 0`, exporter deprecation notice
        torch.onnx.export(module, args, buffer, input_names=inputs, output_names=["output"],
                          dynamic_axes={"input": axes, "output": dict(axes)}, opset_version=opset, dynamo=False)
    return buffer.getvalue()


def _dynamo_export(module: nn.Module, args: tuple, opset: int) -> bytes:
    """torch.export-based export at static shapes: sizes are plain ints, so MATLAB bicubic's size-derived
    matrices become constants. Slower (seconds) and needs onnxscript; used only for fixed-size exports."""
    import contextlib
    import logging

    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(module, args, input_names=["input"], output_names=["output"],
                                        opset_version=opset, dynamo=True, verbose=False)
    except ImportError as err:
        raise ModelError(f"fixed-size export of this model needs onnxscript ({err})") from err
    finally:
        quiet.setLevel(level)
    return program.model_proto.SerializeToString()


class OnnxModule(nn.Module):
    """An onnxruntime session behind the module call `Model` uses (CPU, fp32); strength is a call argument
    fed to the graph's second input when it has one."""

    def __init__(self, source: bytes | str | Path):
        super().__init__()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        payload = source if isinstance(source, bytes) else str(source)
        try:
            self.session = ort.InferenceSession(payload, options, providers=["CPUExecutionProvider"])
        except Exception as err:
            where = "ONNX graph" if isinstance(source, bytes) else str(source)
            raise ModelError(f"{where}: cannot load with onnxruntime ({err})") from err
        self.meta = self.session.get_modelmeta().custom_metadata_map
        fixed = self.meta.get(f"{_META_PREFIX}input_size", "dynamic")
        self.fixed_size = None if fixed == "dynamic" else tuple(int(v) for v in fixed.split("x"))
        self.input_names = [i.name for i in self.session.get_inputs()]

    @property
    def takes_strength(self) -> bool:
        return len(self.input_names) > 1

    def forward(self, x: torch.Tensor, strength: float | None = None) -> torch.Tensor:
        if self.fixed_size is not None and tuple(x.shape[-2:]) != self.fixed_size:
            raise ModelError(f"this ONNX model was exported for {self.fixed_size[0]}x{self.fixed_size[1]} inputs "
                             f"(got {x.shape[-2]}x{x.shape[-1]}); use tile=0 and that size, or the PyTorch model")
        feeds = {self.input_names[0]: np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())}
        if self.takes_strength:
            feeds[self.input_names[1]] = np.array([1.0 if strength is None else float(strength)], dtype=np.float32)
        return torch.from_numpy(self.session.run(None, feeds)[0])


# A graph without restorekit metadata: any single-input image-to-image network, same size out.
FOREIGN_GRAPH = Architecture(name="onnx", build=OnnxModule, family="onnx", tasks=("any",), in_channels=None)


def _info_from(module: OnnxModule) -> ModelInfo:
    """The registered descriptor resolved for the stored arguments; fp32 only (the graph is fp32)."""
    stored = json.loads(module.meta.get(f"{_META_PREFIX}architecture", "null") or "null")
    if stored is None:
        info = FOREIGN_GRAPH.info()
    else:
        info = get_architecture(stored["name"]).info(stored["arguments"])
    inputs = ("strength",) if module.takes_strength else ()
    # the graph was traced through `Model.__call__`: it takes the LR image and up-samples it itself
    return ModelInfo(**{**info.__dict__, "fp16": False, "bf16": False, "inputs": inputs, "input_upsample": 1})


def model_from_onnx(source: bytes | str | Path) -> Model:
    """An ONNX graph as a `Model` (ours: with the descriptor, card and strength input it was exported with)."""
    module = OnnxModule(source)
    card = json.loads(module.meta.get(f"{_META_PREFIX}card", "null") or "null")
    name = module.meta.get(f"{_META_PREFIX}name", "onnx")
    return Model(module, _info_from(module), name, parse_card(card, name) if card else None)


def load_onnx(path: str | Path) -> Model:
    """A `.onnx` file (ours, or any single-input image-to-image graph) as a model for `Restorer`."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelError(f"{path}: no such ONNX file")
    return model_from_onnx(path)


@torch.no_grad()
def max_difference(model: Model, runner: Model, size: tuple[int, int], strength: float = 0.7, seed: int = 0) -> float:
    """Max abs difference between PyTorch and the ONNX graph on one random image of `size`."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(1, model.info.in_channels or 3, *size, generator=generator)
    lam = strength if runner.info.modulated else None
    return float((runner(x, strength=lam) - model(x, strength=lam)).abs().max())


def check_parity(model: Model, runner: Model, name: str, input_size: tuple[int, int] | None) -> float:
    """Run both at the export size and (dynamic graphs) a second size; error past PARITY_TOLERANCE."""
    sizes = [input_size] if input_size else list(_probe_sizes(max(1, model.info.size_multiple)))
    worst = 0.0
    for size in sizes:
        try:
            diff = max_difference(model, runner, size)
        except Exception as err:
            raise ModelError(f"{name}: the ONNX graph does not run at {size[0]}x{size[1]} ({type(err).__name__}); "
                             "its computation depends on the input size (MATLAB bicubic); export with "
                             "--input-size HxW for one fixed size") from err
        if diff > PARITY_TOLERANCE:
            raise ModelError(f"{name}: ONNX output differs from PyTorch by {diff:.2e} at {size[0]}x{size[1]} "
                             f"(tolerance {PARITY_TOLERANCE:g})"
                             + ("; its computation depends on the input size (MATLAB bicubic): export with "
                                "--input-size HxW" if input_size is None and size != sizes[0] else ""))
        worst = max(worst, diff)
    return worst


def onnx_runner(model: Model) -> Model:
    """The model as an in-memory ONNX graph on onnxruntime (`restore --backend onnxruntime`), parity-checked."""
    runner = model_from_onnx(export_bytes(model, name=model.name))
    runner.card = model.card
    check_parity(model, runner, model.name, None)
    return runner


def export_file(
    model: Model,
    path: str | Path,
    *,
    name: str,
    strength: float | None = None,
    input_size: tuple[int, int] | None = None,
    opset: int = OPSET,
    overwrite: bool = False,
) -> tuple[Path, float]:
    """Export, check parity against PyTorch, then write atomically; returns the path and the max difference."""
    from restorekit.atomic import write_bytes

    path = Path(path)
    if path.exists() and not overwrite:
        raise ModelError(f"{path}: already exists (pass --overwrite to replace it)")
    payload = export_bytes(model, name=name, strength=strength, input_size=input_size, opset=opset)
    runner = model_from_onnx(payload)
    reference = model if strength is None else _baked(model, strength)
    diff = check_parity(reference, runner, name, input_size)
    write_bytes(path, payload)
    return path, diff


def _baked(model: Model, strength: float) -> Model:
    """The PyTorch reference for a graph with the strength baked in: same info, no strength input."""
    from restorekit.models import with_info

    baked = _FixedConditions(model, strength)
    return Model(baked, with_info(model, inputs=()).info, model.name, model.card)
