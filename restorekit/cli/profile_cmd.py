"""`restorekit profile MODEL`: parameters and Mult-Adds, the efficiency columns of the papers' tables."""

from __future__ import annotations

import argparse

from restorekit.profile import OUTPUT_720P


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "profile", help="parameters and Mult-Adds of a model at an output size (the thesis's 720p convention)",
        description="Parameters (with and without the biases of convolution and linear layers) and Mult-Adds: the "
        "multiply-accumulates of the convolution and linear layers for one image of the stated OUTPUT size, "
        "biases excluded (the thesis's convention; counted by torch.utils.flop_counter on the meta device, "
        "so nothing is computed). Resizing, pixel shuffle and elementwise operations are not counted.")
    p.add_argument("model", help="registered model, zoo name or weights file")
    p.add_argument("--scale", type=int, help="SR factor (default: every scale of a multi-scale model)")
    width, height = OUTPUT_720P
    p.add_argument("--output-size", default=f"{width}x{height}", metavar="WxH",
                   help=f"output image size, width x height (default {width}x{height}, 720p)")
    p.add_argument("--json", metavar="FILE", help="write the numbers here: one object (a list of objects when "
                   "several scales are profiled) with model, params, params_without_bias, mult_adds, "
                   "output_size and scale")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from restorekit.api import choose_model
    from restorekit.atomic import write_json
    from restorekit.cli.common import results_table
    from restorekit.cli.eval_cmd import scale_argument
    from restorekit.profile import human, parse_output_size, profile
    from restorekit.zoo import load_model

    output_size = parse_output_size(args.output_size)
    # single-scale built-ins are built at --scale, as `restore` builds them; an IDN file does not record its scale
    arguments = choose_model(args.model, None, None, args.scale).kwargs or scale_argument(args.model, "sr", args.scale)
    model = load_model(args.model, **arguments)
    scales = [model.info.scale_for(args.scale)] if args.scale is not None else list(model.info.scales)
    profiles = [profile(model, scale, output_size) for scale in scales]
    if args.json:
        records = [p.to_json() for p in profiles]
        write_json(args.json, records[0] if len(records) == 1 else records)
    rows = [[p.model, f"x{p.scale}", "{}x{}".format(*p.output_size), f"{p.params:,} ({human(p.params)})",
             f"{p.params_without_bias:,} ({human(p.params_without_bias)})", human(p.mult_adds)] for p in profiles]
    console = Console()
    if not console.is_terminal:
        console.width = 200  # a pipe or a log: no terminal to wrap the table for
    console.print(results_table("conv + linear Mult-Adds, biases excluded",
                                ["model", "scale", "output", "params", "params w/o bias", "Mult-Adds"], rows))
    return 0
