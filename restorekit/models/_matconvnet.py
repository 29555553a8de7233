"""Read MATLAB `.mat` weight files (v5 via scipy, v7.3 = HDF5 via h5py) into a flat dict of tensors.

Released MATLAB-era checkpoints (VDSR's `model.weight{i}`, MatConvNet's `net.layers{i}.weights{j}`) are
nested structs and cells. They are flattened to deterministic dotted keys so that a family's `detect`
can recognise them by key names and shapes like any state dict:

    struct field     -> `.field`           cell / struct-array element -> `.{index}` (0-based, column order)
    a struct with a character `type` field (a MatConvNet layer) -> `.{index}.{type}` ("layers.2.conv.weights.0")

Numeric and logical arrays become tensors in MATLAB's dimension order (a conv weight is (k, k, in, out)
for both file versions: the HDF5 reversal is undone here); characters, empty arrays and anything else
are left out. Nothing is unpickled: MATLAB files hold no Python objects and both readers only parse arrays.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from restorekit.errors import ModelError

StateDict = dict[str, torch.Tensor]
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def read_mat(path: str | Path) -> StateDict:
    """Every numeric array of a MATLAB v5 or v7.3 file under flat dotted keys (see the module docstring)."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            header = handle.read(520)
    except OSError as err:
        raise ModelError(f"{path}: cannot read ({err})") from err
    try:
        state = _read_hdf5(path) if _HDF5_MAGIC in header[:8] + header[512:520] else _read_v5(path)
    except ModelError:
        raise
    except Exception as err:  # any parse failure means "not a readable .mat" to the user
        raise ModelError(f"{path}: not a readable MATLAB file ({type(err).__name__}: {err})") from err
    if not state:
        raise ModelError(f"{path}: no numeric arrays in this MATLAB file")
    return state


def _tensor(array: np.ndarray) -> torch.Tensor | None:
    if array.dtype == np.bool_:
        return torch.from_numpy(np.ascontiguousarray(array))
    if not np.issubdtype(array.dtype, np.number) or array.size == 0:
        return None
    return torch.from_numpy(np.ascontiguousarray(array))


# ----------------------------------------------------------------------------------- MATLAB v5 (scipy)


def _read_v5(path: Path) -> StateDict:
    from scipy.io import loadmat

    contents = loadmat(str(path), squeeze_me=False, struct_as_record=True, mat_dtype=False)
    state: StateDict = {}
    for name in sorted(k for k in contents if not k.startswith("__")):
        _flatten_v5(contents[name], name, state)
    return state


def _v5_type(record: np.void) -> str | None:
    if "type" not in (record.dtype.names or ()):
        return None
    value = record["type"]
    return str(value.ravel()[0]) if isinstance(value, np.ndarray) and value.dtype.kind == "U" and value.size else None


def _flatten_v5(value: Any, key: str, state: StateDict) -> None:
    if not isinstance(value, np.ndarray):
        return
    if value.dtype.names:  # struct (array): one entry per element, fields below
        elements = value.ravel(order="F")
        for index, record in enumerate(elements):
            prefix = key if len(elements) == 1 else f"{key}.{index}"
            kind = _v5_type(record)
            prefix = f"{prefix}.{kind}" if kind else prefix
            for field in value.dtype.names:
                _flatten_v5(record[field], f"{prefix}.{field}", state)
    elif value.dtype == object:  # cell array
        for index, item in enumerate(value.ravel(order="F")):
            _flatten_v5(item, f"{key}.{index}", state)
    else:
        tensor = _tensor(value)
        if tensor is not None:
            state[key] = tensor


# ------------------------------------------------------------------------------ MATLAB v7.3 (h5py)


def _read_hdf5(path: Path) -> StateDict:
    import h5py

    state: StateDict = {}
    with h5py.File(path, "r") as handle:
        for name in sorted(k for k in handle if not k.startswith("#")):
            _flatten_hdf5(handle, handle[name], name, state)
    return state


def _matlab_class(node: Any) -> str:
    value = node.attrs.get("MATLAB_class", b"")
    return value.decode() if isinstance(value, bytes) else str(value)


def _hdf5_type(handle: Any, group: Any) -> str | None:
    node = group.get("type")
    if node is None or _matlab_class(node) != "char" or node.attrs.get("MATLAB_empty", 0):
        return None
    return "".join(map(chr, np.asarray(node).ravel()))


def _flatten_hdf5(handle: Any, node: Any, key: str, state: StateDict) -> None:
    import h5py

    if isinstance(node, h5py.Group):  # a struct
        kind = _hdf5_type(handle, node)
        prefix = f"{key}.{kind}" if kind else key
        for field in sorted(node):
            _flatten_hdf5(handle, node[field], f"{prefix}.{field}", state)
        return
    if node.attrs.get("MATLAB_empty", 0) or _matlab_class(node) == "char":
        return
    if _matlab_class(node) == "cell":
        # HDF5 stores MATLAB arrays with reversed dimensions: C order here is MATLAB's column order.
        for index, ref in enumerate(np.asarray(node).ravel()):
            _flatten_hdf5(handle, handle[ref], f"{key}.{index}", state)
        return
    array = np.asarray(node)
    tensor = _tensor(np.transpose(array) if array.ndim > 1 else array)
    if tensor is not None:
        state[key] = tensor


# ------------------------------------------------------------------------- helpers for the converters


def conv_weight(weight: torch.Tensor) -> torch.Tensor:
    """MATLAB (kh, kw, in, out) -> PyTorch (out, in, kh, kw). MATLAB drops trailing singleton
    dimensions, so a last layer with one output channel arrives as (kh, kw, in)."""
    while weight.ndim < 4:
        weight = weight.unsqueeze(-1)
    return weight.permute(3, 2, 0, 1).contiguous().float()


def vector(bias: torch.Tensor) -> torch.Tensor:
    return bias.reshape(-1).contiguous().float()


def matconvnet_layers(state: StateDict, prefix: str = "net.layers.") -> list[tuple[str, dict[str, torch.Tensor]]]:
    """(type, fields) per layer of a flattened MatConvNet `net.layers`, in order; [] when not one."""
    layers: dict[int, tuple[str, dict[str, torch.Tensor]]] = {}
    for key, value in state.items():
        if not key.startswith(prefix):
            return []
        parts = key[len(prefix):].split(".", 2)
        if len(parts) < 3 or not parts[0].isdigit():
            return []
        kind, fields = layers.setdefault(int(parts[0]), (parts[1], {}))
        if kind != parts[1]:
            return []
        fields[parts[2]] = value
    if sorted(layers) != list(range(len(layers))):
        return []
    return [layers[i] for i in range(len(layers))]


def matconvnet_convs(layers: list[tuple[str, dict[str, torch.Tensor]]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(PyTorch weight, bias) of every `conv` layer in order."""
    return [(conv_weight(f["weights.0"]), vector(f["weights.1"])) for kind, f in layers if kind == "conv"]


def plain_convs(state: StateDict, prefix: str) -> list[torch.Tensor]:
    """The conv weights of a plain 3x3 `{prefix}.{0,2,4,...}.{weight,bias}` stack (conv, ReLU, conv, ...:
    VDSR and DnCNN-3 in our layout) when `state` is exactly that, else [] (SRCNN's 9-1-5 is not)."""
    indices = sorted(int(k.split(".")[1]) for k in state if k.startswith(f"{prefix}.") and k.endswith(".weight")
                     and k.split(".")[1].isdigit())
    if not indices or indices != list(range(0, 2 * len(indices), 2)) or len(state) != 2 * len(indices):
        return []
    weights = [state[f"{prefix}.{i}.weight"] for i in indices]
    if any(w.ndim != 4 or tuple(w.shape[-2:]) != (3, 3) or f"{prefix}.{i}.bias" not in state
           for i, w in zip(indices, weights, strict=True)):
        return []
    return weights
