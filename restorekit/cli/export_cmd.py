"""`restorekit export NAME --onnx out.onnx`: an ONNX graph checked against PyTorch before it is written."""

from __future__ import annotations

import argparse
import re

from restorekit.errors import RestorekitError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a model to ONNX (dynamic height/width, parity-checked against PyTorch)",
        description="Export a zoo model, built-in or weights file to ONNX (opset 17, dynamic batch/height/width). "
        "Modulated models (AdaFM) take their strength lambda as a second input `strength` (float32, shape [1]) "
        "unless --strength bakes one in. The graph is run by onnxruntime at two sizes and compared with "
        "PyTorch (max abs difference < 1e-3) before the file is written. Run it with "
        "`restorekit restore --model out.onnx` or any ONNX runtime.",
    )
    p.add_argument("model", metavar="NAME", help="zoo name, built-in (dncnn, adafm_net, bicubic, ...) or weights file")
    p.add_argument("--onnx", required=True, metavar="OUT", help="output .onnx file")
    p.add_argument("--strength", type=float, help="bake this modulation strength in (default: a `strength` input)")
    p.add_argument("--scale", type=int, help="SR factor for built-in SR models (bicubic)")
    p.add_argument("--input-size", metavar="HxW", help="export for one fixed input size (needed by models whose "
                   "graph depends on the size: MATLAB bicubic)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p.set_defaults(run=run)


def parse_size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match:
        raise RestorekitError(f"--input-size {text!r}: expected HxW, e.g. 256x320")
    return int(match.group(1)), int(match.group(2))


def run(args: argparse.Namespace) -> int:
    from restorekit import export
    from restorekit.api import choose_model
    from restorekit.zoo import load_model

    if args.opset < 17:
        raise RestorekitError(f"--opset {args.opset}: restorekit exports with opset 17 or newer")
    if args.strength is not None and not 0.0 <= args.strength <= 1.0:
        raise RestorekitError(f"strength must be in [0, 1], got {args.strength}")
    choice = choose_model(args.model, None, None, args.scale)
    model = load_model(choice.name, **choice.kwargs)
    if args.strength is not None and not model.info.modulated:
        raise RestorekitError(f"model {args.model!r} has no strength control; drop --strength")
    path, diff = export.export_file(model, args.onnx, name=args.model, strength=args.strength,
                                    input_size=parse_size(args.input_size), opset=args.opset,
                                    overwrite=args.overwrite)
    inputs = "input, strength" if export.load_onnx(path).info.modulated else "input"
    print(f"wrote {path} (inputs: {inputs}; max abs difference vs PyTorch {diff:.1e})")
    return 0
