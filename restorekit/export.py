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
import dataclasses
import io
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from restorekit.errors import ModelError
from restorekit.infer import is_modulated

OPSET = 17
PARITY_TOLERANCE = 1e-3  # max abs difference (images in [0, 1]) accepted between onnxruntime and PyTorch
_META_PREFIX = "restorekit."


class _StrengthAsInput(nn.Module):
    """Feeds a graph input to every modulated layer, so lambda stays a runtime value after tracing."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
        for layer in self.model.modulated_layers():
            layer.strength = strength  # AdaFM computes x + strength * delta(x): broadcasting a [1] tensor
        return self.model(x)


def has_strength_input(model: nn.Module) -> bool:
    """Models whose modulated layers can take lambda as a tensor (AdaFM-Net and its CIN baseline)."""
    return hasattr(model, "modulated_layers") and bool(model.modulated_layers())


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _probe_sizes(multiple: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Two different, non-square sizes (the export size and the check size), valid for the model."""
    return (_round_up(64, multiple), _round_up(80, multiple)), (_round_up(40, multiple), _round_up(56, multiple))


def _metadata(model: nn.Module, name: str, strength: str, input_size: tuple[int, int] | None) -> dict[str, str]:
    from restorekit.infer import model_info

    info = dataclasses.asdict(model_info(model))
    return {
        f"{_META_PREFIX}name": name,
        f"{_META_PREFIX}info": json.dumps(info),
        # Keys starting with '_' are local to this machine (e.g. the weights path): not shipped in the file.
        f"{_META_PREFIX}card": json.dumps({k: v for k, v in (getattr(model, "card", None) or {}).items()
                                           if not k.startswith("_")}),
        f"{_META_PREFIX}strength": strength,
        f"{_META_PREFIX}input_size": "dynamic" if input_size is None else f"{input_size[0]}x{input_size[1]}",
    }


def export_bytes(
    model: nn.Module,
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

    from restorekit.infer import model_info

    model = copy.deepcopy(model).float().eval()
    info = model_info(model)
    channels = info.in_channels or 3
    size = input_size or _probe_sizes(max(1, info.size_multiple))[0]
    if input_size is not None and any(v % max(1, info.size_multiple) for v in input_size):
        raise ModelError(f"--input-size must be a multiple of {info.size_multiple} for this model")
    dummy = torch.rand(1, channels, *size)
    axes = {0: "batch"} if input_size else {0: "batch", 2: "height", 3: "width"}
    if info.in_channels is None:
        axes[1] = "channels"
    if strength is None and has_strength_input(model):
        module, args, inputs, mode = _StrengthAsInput(model), (dummy, torch.tensor([0.5])), ["input", "strength"], "input"
    else:
        if is_modulated(model):
            model.set_strength(1.0 if strength is None else strength)
        module, args, inputs, mode = model, (dummy,), ["input"], "none" if strength is None else f"{strength:g}"
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


class OnnxModel(nn.Module):
    """An onnxruntime session behind the nn.Module interface `run_model` / `Restorer` use (CPU, fp32)."""

    def __init__(self, source: bytes | str | Path):
        super().__init__()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        payload = source if isinstance(source, bytes) else str(source)
        try:
            self.session = ort.InferenceSession(payload, options, providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 - ORT raises its own exception types
            where = "ONNX graph" if isinstance(source, bytes) else str(source)
            raise ModelError(f"{where}: cannot load with onnxruntime ({err})") from err
        meta = self.session.get_modelmeta().custom_metadata_map
        self.name = meta.get(f"{_META_PREFIX}name", "onnx")
        self.info = _info_from(meta)
        self.card = json.loads(meta.get(f"{_META_PREFIX}card", "{}"))
        fixed = meta.get(f"{_META_PREFIX}input_size", "dynamic")
        self.fixed_size = None if fixed == "dynamic" else tuple(int(v) for v in fixed.split("x"))
        self.input_names = [i.name for i in self.session.get_inputs()]

    def feeds(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return {self.input_names[0]: x}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fixed_size is not None and tuple(x.shape[-2:]) != self.fixed_size:
            raise ModelError(f"this ONNX model was exported for {self.fixed_size[0]}x{self.fixed_size[1]} inputs "
                             f"(got {x.shape[-2]}x{x.shape[-1]}); use tile=0 and that size, or the PyTorch model")
        array = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        return torch.from_numpy(self.session.run(None, self.feeds(array))[0])


class ModulatedOnnxModel(OnnxModel):
    """An ONNX graph with a `strength` input: `set_strength` works as on the PyTorch AdaFM model."""

    strength: float = 1.0

    def set_strength(self, strength: float) -> ModulatedOnnxModel:
        if not 0.0 <= float(strength) <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {strength}")
        self.strength = float(strength)
        return self

    def feeds(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return {self.input_names[0]: x, self.input_names[1]: np.array([self.strength], dtype=np.float32)}


def _info_from(meta: dict[str, str]):
    """ModelInfo back from the metadata (half precision off: the graph is fp32)."""
    from restorekit.models import ModelInfo

    fields = {f.name for f in dataclasses.fields(ModelInfo)}
    stored = json.loads(meta.get(f"{_META_PREFIX}info", "{}"))
    info = ModelInfo(**{k: v for k, v in stored.items() if k in fields}) if stored else ModelInfo("onnx", "any", in_channels=None)
    info.supports_half = False
    return info


def runner_from_bytes(payload: bytes | str | Path) -> OnnxModel:
    """The right runner class for a graph: with `set_strength` only when lambda is an input."""
    plain = OnnxModel(payload)
    if len(plain.input_names) > 1:
        return ModulatedOnnxModel(payload)
    return plain


def load_onnx(path: str | Path) -> OnnxModel:
    """A `.onnx` file (ours, or any single-input image-to-image graph) as a model for `Restorer`."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelError(f"{path}: no such ONNX file")
    return runner_from_bytes(path)


@torch.no_grad()
def max_difference(model: nn.Module, runner: OnnxModel, size: tuple[int, int], strength: float = 0.7,
                   seed: int = 0) -> float:
    """Max abs difference between PyTorch (fp32) and onnxruntime on one random image of `size`."""
    from restorekit.infer import model_info

    model = copy.deepcopy(model).float().eval()
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(1, model_info(model).in_channels or 3, *size, generator=generator)
    if is_modulated(model) and isinstance(runner, ModulatedOnnxModel):
        model.set_strength(strength)
        runner.set_strength(strength)
    return float((runner(x) - model(x)).abs().max())


def check_parity(model: nn.Module, runner: OnnxModel, name: str, input_size: tuple[int, int] | None) -> float:
    """Run both at the export size and (dynamic graphs) a second size; error past PARITY_TOLERANCE."""
    from restorekit.infer import model_info

    sizes = [input_size] if input_size else list(_probe_sizes(max(1, model_info(model).size_multiple)))
    worst = 0.0
    for size in sizes:
        try:
            diff = max_difference(model, runner, size)
        except Exception as err:  # noqa: BLE001 - a shape error at the second size means a size-baked graph
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


def onnx_runner(model: nn.Module, name: str = "model") -> OnnxModel:
    """The model as an in-memory ONNX graph on onnxruntime (`restore --backend onnxruntime`), parity-checked."""
    runner = runner_from_bytes(export_bytes(model, name=name))
    runner.card = getattr(model, "card", None) or runner.card
    check_parity(model, runner, name, None)
    return runner


def export_file(
    model: nn.Module,
    path: str | Path,
    *,
    name: str,
    strength: float | None = None,
    input_size: tuple[int, int] | None = None,
    opset: int = OPSET,
    overwrite: bool = False,
) -> tuple[Path, float]:
    """Export, check parity against PyTorch, then write atomically; returns the path and the max difference."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise ModelError(f"{path}: already exists (pass --overwrite to replace it)")
    payload = export_bytes(model, name=name, strength=strength, input_size=input_size, opset=opset)
    runner = runner_from_bytes(payload)
    if strength is not None and is_modulated(model):
        model = copy.deepcopy(model).set_strength(strength)
    diff = check_parity(model, runner, name, input_size)
    _write_atomic(path, payload)
    return path, diff


def _write_atomic(path: Path, payload: bytes) -> None:
    """Temp file + rename in the target folder: an interrupted export never leaves half a graph."""
    import os
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
