"""SR speed on CPU (issue 14; a benchmark, not a test): CARN and CARN-M x4 against a plain convolution and
against the same network built the way the official code lays out its modules.

For each model on one LR image (default 480x320, x4, so a 1920x1280 output):
- wall time and this process's CPU time, median over rounds after a warm-up;
- achieved GFLOP/s = 2 x Mult-Adds / time, with Mult-Adds from `restorekit.profile.count_mult_adds` (the
  thesis's convention: convolutions only, counted on the meta device);
- that rate as a fraction of a plain `Conv2d(64, 64, 3, padding=1)` timed in the same run on a 64-channel
  input at the LR size (the denominator: CARN's body runs at the LR size) and, for reference, at the HR size;
- the same model in the official code's structure (nmhkahn/CARN-pytorch: MeanShift as frozen 1x1 convs,
  `Block` of b1..b3 residual blocks and c1..c3 `BasicBlock(conv1x1, ReLU)` fusions, per-scale
  `_UpsampleBlock` bodies, multi-scale dispatch by the call's scale), rebuilt here from the released key
  layout of `carn_m.pth` and the spec, timed side by side with ours in alternating rounds.

Before timing, the two structures must agree: CARN-M loads the released `carn_m.pth` (strict) into the
official structure and through our converter into ours (random weights through the same converter when the
file is absent); CARN has no released file, so random official-structure weights go through the converter.
The warm-up outputs of both must agree to 1e-5 (max abs) or the benchmark stops.

Every subject (both structures of each model and the two reference convs) runs once per round, in an order
rotated each round, so load from other processes on the machine hits all of them alike. On a shared machine
use `--threads 1`: then the CPU-time clock measures the work done and other processes barely move it.

    .venv/bin/python bench/sr_speed.py --threads 1 --json outputs/sr_speed_t1.json
    .venv/bin/python bench/sr_speed.py --rounds 1 --size 96x64      # quick look
"""

from __future__ import annotations

import argparse
import ctypes
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from restorekit import models
from restorekit.atomic import write_json
from restorekit.errors import RestorekitError
from restorekit.models import Model
from restorekit.models.carn import DIV2K_RGB_MEAN
from restorekit.paths import reference_weights_root
from restorekit.profile import count_mult_adds, parse_output_size
from restorekit.zoo import read_weights

MODELS = ("carn", "carn_m")
CONV_FEATURES = 64
AGREEMENT = 1e-5  # max abs difference allowed between the two structures' outputs
CARN_TARGET = 0.60  # the bar: CARN at >= 60% of the plain conv's GFLOP/s


# ---------------------------------------------------------------------------------------------------
# The official code's module structure (CARN-pytorch `carn.py`, `carn_m.py`, `ops.py`), from its key layout
# ---------------------------------------------------------------------------------------------------


class OfficialMeanShift(nn.Module):
    """A frozen 3->3 1x1 conv: identity weight, bias -mean (sub) or +mean (add): `sub_mean.shifter.*`."""

    def __init__(self, sign: float) -> None:
        super().__init__()
        self.shifter = nn.Conv2d(3, 3, 1)
        self.shifter.weight.data = torch.eye(3).view(3, 3, 1, 1)
        self.shifter.bias.data = sign * torch.tensor(DIV2K_RGB_MEAN)
        for parameter in self.shifter.parameters():
            parameter.requires_grad = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shifter(x)


class OfficialBasicBlock(nn.Module):
    """The fusion: `body = Sequential(conv1x1, ReLU)` (`b1.c1.body.0.*`, `c1.body.0.*`)."""

    def __init__(self, inputs: int, features: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(inputs, features, 1), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class OfficialResidualBlock(nn.Module):
    """CARN's unit: `body = Sequential(conv3x3, ReLU, conv3x3)`, then ReLU(body(x) + x)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(features, features, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(features, features, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + x)


class OfficialEResidualBlock(nn.Module):
    """CARN-M's unit: `body = Sequential(gconv3x3, ReLU, gconv3x3, ReLU, conv1x1)` (`b1.b1.body.{0,2,4}`)."""

    def __init__(self, features: int, groups: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(features, features, 3, padding=1, groups=groups), nn.ReLU(inplace=True),
                                  nn.Conv2d(features, features, 3, padding=1, groups=groups), nn.ReLU(inplace=True),
                                  nn.Conv2d(features, features, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + x)


class OfficialBlock(nn.Module):
    """A cascading block. CARN stores b1, b2, b3; CARN-M stores only b1 and calls it at all three positions
    (which is why `carn_m.pth` has `b1.b1.*` and no `b1.b2.*`)."""

    def __init__(self, features: int, efficient: bool, groups: int) -> None:
        super().__init__()
        if efficient:
            self.b1 = OfficialEResidualBlock(features, groups)
        else:
            self.b1, self.b2, self.b3 = (OfficialResidualBlock(features) for _ in range(3))
        self.c1, self.c2, self.c3 = (OfficialBasicBlock(features * k, features) for k in (2, 3, 4))
        self.efficient = efficient

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        units = (self.b1, self.b1, self.b1) if self.efficient else (self.b1, self.b2, self.b3)
        return _official_cascade(x, units, (self.c1, self.c2, self.c3))


def _official_cascade(x: torch.Tensor, units: tuple[nn.Module, ...], fusions: tuple[nn.Module, ...]) -> torch.Tensor:
    """c0 = o0 = x; b_k = unit_k(o_{k-1}); c_k = cat[c_{k-1}, b_k]; o_k = fusion_k(c_k), written out as
    the reference code does (the same pattern inside a block and across blocks)."""
    c0 = o0 = x
    b1 = units[0](o0)
    c1 = torch.cat([c0, b1], dim=1)
    o1 = fusions[0](c1)
    b2 = units[1](o1)
    c2 = torch.cat([c1, b2], dim=1)
    o2 = fusions[1](c2)
    b3 = units[2](o2)
    c3 = torch.cat([c2, b3], dim=1)
    return fusions[2](c3)


class OfficialUpsampleStage(nn.Module):
    """`_UpsampleBlock`: per x2 `conv(F->4F), ReLU, PixelShuffle(2)`, or `conv(F->9F), ReLU, PixelShuffle(3)`."""

    def __init__(self, features: int, scale: int, groups: int) -> None:
        super().__init__()
        factors = [3] if scale == 3 else [2] * (scale.bit_length() - 1)
        layers: list[nn.Module] = []
        for factor in factors:
            layers += [nn.Conv2d(features, factor * factor * features, 3, padding=1, groups=groups),
                       nn.ReLU(inplace=True), nn.PixelShuffle(factor)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class OfficialUpsampleBlock(nn.Module):
    """`UpsampleBlock(multi_scale=True)`: up2, up3, up4, chosen by the call's scale."""

    def __init__(self, features: int, groups: int) -> None:
        super().__init__()
        self.up2, self.up3, self.up4 = (OfficialUpsampleStage(features, s, groups) for s in (2, 3, 4))

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        return {2: self.up2, 3: self.up3, 4: self.up4}[scale](x)


class OfficialCARN(nn.Module):
    """CARN-pytorch's `Net` (carn.py; carn_m.py with `efficient=True`, groups 4 in the units and heads):
    ReLU after every fusion, no global residual (our `variant="eccv"`)."""

    def __init__(self, efficient: bool, features: int = 64, groups: int = 4) -> None:
        super().__init__()
        groups = groups if efficient else 1
        self.sub_mean, self.add_mean = OfficialMeanShift(-1.0), OfficialMeanShift(1.0)
        self.entry = nn.Conv2d(3, features, 3, padding=1)
        self.b1, self.b2, self.b3 = (OfficialBlock(features, efficient, groups) for _ in range(3))
        self.c1, self.c2, self.c3 = (OfficialBasicBlock(features * k, features) for k in (2, 3, 4))
        self.upsample = OfficialUpsampleBlock(features, groups)
        self.exit = nn.Conv2d(features, 3, 3, padding=1)

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        x = self.entry(self.sub_mean(x))
        out = _official_cascade(x, (self.b1, self.b2, self.b3), (self.c1, self.c2, self.c3))
        return self.add_mean(self.exit(self.upsample(out, scale=scale)))


# ---------------------------------------------------------------------------------------------------
# The pairs to time
# ---------------------------------------------------------------------------------------------------


@dataclass
class Pair:
    """One model in both structures with the same weights, and where its weights came from."""

    name: str
    ours: Model
    official: OfficialCARN
    weights: str


def released_carn_m(weights: Path | None) -> tuple[dict[str, torch.Tensor] | None, str]:
    """The released carn_m.pth's tensors, or None (with why) when the file is not here."""
    folder = reference_weights_root()
    path = weights or (folder / "carn_m.pth" if folder else None)
    if path is None or not path.is_file():
        return None, f"random (carn_m.pth not found{f' at {path}' if path else ''})"
    return read_weights(path), f"released {path.name}"


def build_pair(name: str, weights: Path | None) -> Pair:
    """The official structure with the released (CARN-M) or random weights, and ours converted from them."""
    official = OfficialCARN(efficient=name == "carn_m").eval()
    state, source = released_carn_m(weights) if name == "carn_m" else (None, "random")
    if state is not None:
        official.load_state_dict(state, strict=True)
    ours = models.from_state_dict(official.state_dict(), source=f"official-structure {name}")
    if ours.info.name != name:
        raise RestorekitError(f"the official-structure {name} was detected as {ours.info.name}")
    return Pair(name, ours.eval(), official, source)


def conv_mult_adds(conv: nn.Module, height: int, width: int) -> int:
    """The reference conv's Mult-Adds, counted by the same flop counter `restorekit.profile` uses."""
    counter = FlopCounterMode(display=False)
    with torch.device("meta"), counter:
        conv.to("meta")(torch.empty(1, CONV_FEATURES, height, width))
    return counter.get_total_flops() // 2


# ---------------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------------


@dataclass
class Subject:
    """Something timed once per round: a call, its Mult-Adds, and the times measured."""

    label: str
    run: Callable[[], torch.Tensor]
    mult_adds: int
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # user + system, every thread of this process
    system: list[float] = field(default_factory=list)  # of which in the kernel (page faults, mostly)
    page_faults: list[int] = field(default_factory=list)

    def time_once(self) -> None:
        before, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        self.run()
        wall, after = time.perf_counter() - wall, resource.getrusage(resource.RUSAGE_SELF)
        self.wall.append(wall)
        self.system.append(after.ru_stime - before.ru_stime)
        self.cpu.append(after.ru_utime - before.ru_utime + self.system[-1])
        self.page_faults.append(after.ru_minflt - before.ru_minflt)

    def seconds(self, clock: str) -> float:
        return statistics.median(self.wall if clock == "wall" else self.cpu)

    def gflops(self, clock: str) -> float:
        return 2 * self.mult_adds / self.seconds(clock) / 1e9


def check_agreement(pair: Pair, image: torch.Tensor, scale: int) -> float:
    """The warm-up: both structures once on the benchmark image; their outputs must agree to AGREEMENT."""
    difference = (pair.ours(image, scale=scale) - pair.official(image, scale=scale)).abs().max().item()
    if not difference < AGREEMENT:
        raise RestorekitError(f"{pair.name}: ours and the official structure differ by {difference:.2e} "
                              f"(> {AGREEMENT:g}); timing them side by side would compare different networks")
    return difference


def run_rounds(subjects: list[Subject], rounds: int) -> None:
    """Each round runs every subject once; the order rotates by one each round."""
    for index in range(rounds):
        shift = index % len(subjects)
        for subject in subjects[shift:] + subjects[:shift]:
            subject.time_once()
        print(f"  round {index + 1}/{rounds} done", file=sys.stderr, flush=True)


def per_round_ratio(ours: Subject, official: Subject, clock: str) -> tuple[float, float, float]:
    """(median, min, max) of ours / official per round: the two ran next to each other under the same load."""
    times = (ours.wall, official.wall) if clock == "wall" else (ours.cpu, official.cpu)
    ratios = [a / b for a, b in zip(*times)]
    return statistics.median(ratios), min(ratios), max(ratios)


# ---------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------


def keep_freed_memory() -> None:
    """Tell glibc to serve blocks up to 1 GiB from its heap and never return freed memory to the kernel.

    By default glibc maps every block over its mmap threshold (at most 32 MiB) afresh and unmaps it on free,
    so each 39 MB LR feature map and 629 MB HR one is zero-filled page by page by the kernel on every call;
    this shows what that costs (the same as running with MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_
    set, or under jemalloc / tcmalloc). The price: the process keeps its peak memory."""
    mmap_threshold, trim_threshold = -3, -1  # glibc's M_MMAP_THRESHOLD, M_TRIM_THRESHOLD
    try:
        libc = ctypes.CDLL("libc.so.6")
        accepted = libc.mallopt(mmap_threshold, 1 << 30) and libc.mallopt(trim_threshold, 1 << 30)
    except (OSError, AttributeError):
        accepted = False
    if not accepted:
        raise RestorekitError("--keep-freed-memory needs glibc's mallopt (Linux); this C library refused it")


def cpu_model() -> str:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return platform.processor() or "unknown"
    return next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Model name")),
                "unknown")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5, help="timed rounds; each time is the median over them (default 5)")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--size", default="480x320", help="LR image WIDTHxHEIGHT (default 480x320)")
    p.add_argument("--scale", type=int, default=4, choices=(2, 3, 4))
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated, from carn,carn_m")
    p.add_argument("--clock", choices=("wall", "cpu"), default="cpu",
                   help="the clock of the verdicts (both are printed); cpu with --threads 1 resists machine load")
    p.add_argument("--weights", type=Path, default=None,
                   help="carn_m.pth (default: the reference-weights folder beside the data folder)")
    p.add_argument("--keep-freed-memory", action="store_true",
                   help="glibc keeps freed blocks (no fresh zero-filled pages per call): the allocator's share of the time")
    p.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    return p.parse_args(argv)


def measure(args: argparse.Namespace) -> dict:
    """Build, check and time everything; the results as one JSON-able dict."""
    width, height = parse_output_size(args.size)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        raise RestorekitError(f"--models: unknown {', '.join(unknown)} (choose from {', '.join(MODELS)})")
    torch.manual_seed(0)
    image = torch.rand(1, 3, height, width)
    out_height, out_width = height * args.scale, width * args.scale
    pairs = [build_pair(name, args.weights) for name in names]
    subjects: list[Subject] = []
    agreement: dict[str, float] = {}
    with torch.inference_mode():
        for pair in pairs:
            agreement[pair.name] = check_agreement(pair, image, args.scale)
            mult_adds = count_mult_adds(pair.ours, args.scale, (out_width, out_height))
            subjects += [Subject(f"{pair.name} ours", lambda p=pair: p.ours(image, scale=args.scale), mult_adds),
                         Subject(f"{pair.name} official", lambda p=pair: p.official(image, scale=args.scale), mult_adds)]
        for where, (h, w) in (("LR", (height, width)), ("HR", (out_height, out_width))):
            conv = nn.Conv2d(CONV_FEATURES, CONV_FEATURES, 3, padding=1).eval()
            features = torch.rand(1, CONV_FEATURES, h, w)
            conv(features)  # warm-up
            subjects.append(Subject(f"conv 64->64 3x3 at {where} {w}x{h}", lambda c=conv, f=features: c(f),
                                    conv_mult_adds(nn.Conv2d(CONV_FEATURES, CONV_FEATURES, 3, padding=1), h, w)))
        run_rounds(subjects, args.rounds)
    return summarise(args, pairs, subjects, agreement, (width, height))


def summarise(args: argparse.Namespace, pairs: list[Pair], subjects: list[Subject], agreement: dict[str, float],
              size: tuple[int, int]) -> dict:
    by_label = {s.label: s for s in subjects}
    lr_conv = next(s for s in subjects if s.label.startswith("conv") and " LR " in s.label)
    rows = [{"subject": s.label, "mult_adds": s.mult_adds,
             **{f"{clock}_ms": 1e3 * s.seconds(clock) for clock in ("wall", "cpu")},
             "system_ms": 1e3 * statistics.median(s.system), "page_faults": statistics.median(s.page_faults),
             **{f"{clock}_gflops": s.gflops(clock) for clock in ("wall", "cpu")},
             **{f"{clock}_fraction_of_lr_conv": s.gflops(clock) / lr_conv.gflops(clock) for clock in ("wall", "cpu")},
             "wall_ms_all": [1e3 * t for t in s.wall], "cpu_ms_all": [1e3 * t for t in s.cpu],
             "system_ms_all": [1e3 * t for t in s.system]} for s in subjects]
    verdicts = []
    for pair in pairs:
        ours, official = by_label[f"{pair.name} ours"], by_label[f"{pair.name} official"]
        ratio, low, high = per_round_ratio(ours, official, args.clock)
        verdicts.append({"model": pair.name, "weights": pair.weights, "max_abs_difference": agreement[pair.name],
                         "ours_over_official": ratio, "ratio_range": [low, high], "speed": speed_verdict(low, high),
                         "fraction_of_lr_conv": ours.gflops(args.clock) / lr_conv.gflops(args.clock),
                         "target_fraction": CARN_TARGET if pair.name == "carn" else None})
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "n/a"
    return {"date": time.strftime("%Y-%m-%d %H:%M"), "torch": torch.__version__, "cpu": cpu_model(),
            "cores": os.cpu_count(), "threads": torch.get_num_threads(), "clock": args.clock, "rounds": args.rounds,
            "allocator": "glibc, freed memory kept" if args.keep_freed_memory else "glibc default",
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "lr_size": f"{size[0]}x{size[1]}", "scale": args.scale, "load_average_at_end": load,
            "rows": rows, "verdicts": verdicts}


def print_report(result: dict) -> None:
    clock = result["clock"]
    print(f"torch {result['torch']}, CPU {result['cpu']}, {result['cores']} cores, {result['threads']} torch "
          f"thread(s), LR {result['lr_size']} x{result['scale']}, median of {result['rounds']} rounds, "
          f"{result['allocator']} (peak RSS {result['peak_rss_mb']:.0f} MB), "
          f"load average at end {result['load_average_at_end']}\n")
    print("| subject | Mult-Adds (G) | wall ms | CPU ms | of which system ms | page faults | GFLOP/s wall "
          "| GFLOP/s CPU | % of LR conv (wall / CPU) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in result["rows"]:
        print(f"| {row['subject']} | {row['mult_adds'] / 1e9:.2f} | {row['wall_ms']:.0f} | {row['cpu_ms']:.0f} "
              f"| {row['system_ms']:.0f} | {row['page_faults']:,.0f} "
              f"| {row['wall_gflops']:.1f} | {row['cpu_gflops']:.1f} | {100 * row['wall_fraction_of_lr_conv']:.0f}% / "
              f"{100 * row['cpu_fraction_of_lr_conv']:.0f}% |")
    print(f"\nVerdicts on the {clock} clock (GFLOP/s = 2 x Mult-Adds / time; denominator: the conv at the LR size):")
    for v in result["verdicts"]:
        low, high = v["ratio_range"]
        target = v["target_fraction"]
        bar = f" (target >= {target:.0%}: {'met' if v['fraction_of_lr_conv'] >= target else 'NOT met'})" if target else ""
        print(f"- {v['model']} ({v['weights']}; structures agree to {v['max_abs_difference']:.1e}): "
              f"{v['fraction_of_lr_conv']:.0%} of the LR conv's GFLOP/s{bar}; ours / official "
              f"{v['ours_over_official']:.3f} (per-round {low:.3f}-{high:.3f}): {v['speed']}")


def speed_verdict(low: float, high: float) -> str:
    """Ours against official from the per-round ratios: a ratio range that straddles 1 is a tie, not a loss."""
    if low == high:
        return "one round: no noise estimate, run more rounds"
    if high < 1.0:
        return "ours faster in every round"
    if low > 1.0:
        return "ours SLOWER in every round"
    return "no slower: the same within round-to-round noise"


def run_bench(argv: list[str] | None, parse: Callable[[list[str] | None], argparse.Namespace],
              measure_fn: Callable[[argparse.Namespace], dict], report: Callable[[dict], None]) -> int:
    """The main of a timing bench built on this module's rounds: measure, print, and with --json write."""
    args = parse(argv)
    result = measure_fn(args)
    report(result)
    if args.json:
        write_json(Path(args.json), result)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        if args.keep_freed_memory:
            keep_freed_memory()
        result = measure(args)
    except RestorekitError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print_report(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
