"""`restorekit restore`: restore files and folders with a zoo model (or a built-in / weights file).

The library behind it (choosing a model, `Restorer`, masks) is `restorekit.api`; this module is the
command: jobs (input -> output paths), the per-file loop that keeps going past a bad file, the progress
bar and the JSON report.

Exit status: 0 all restored or skipped; 1 some inputs failed (each named on one line of stderr);
2 nothing was run (bad arguments: unknown model/task, level out of range, an unusable output folder, ...).

Under torchrun (WORLD_SIZE > 1) the processes share one job: rank 0 plans it (sorted inputs, finished
outputs skipped) and broadcasts the plan, each rank restores a round-robin share, and rank 0 gathers the
results into the summary line and the --json report. Every rank exits with the whole job's status.
Outputs are written atomically, so a crashed run leaves finished files and no partial ones, and a
rerun does the rest.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import torch

from restorekit import distributed, infer
from restorekit.api import BACKENDS, Restorer, build_restorer, choose_model, load_mask
from restorekit.atomic import check_writable, remove_stale_temps, write_json
from restorekit.cli.common import console, error_line, progress_bar
from restorekit.distributed import Dist
from restorekit.errors import RestorekitError
from restorekit.estimate import ESTIMATORS, auto_level, check_estimable
from restorekit.infer import OVERLAP_HELP, TILE_HELP
from restorekit.tasks import AUTO, REQUEST_TASKS, check_task

# How long a finished rank waits at the final gather for the slowest one (torch's default is 30 min):
# shares are balanced by count, not by image size, so one rank may finish hours before another.
SLOWEST_RANK_WAIT = timedelta(hours=24)

# =====================================================================================================
# The command
# =====================================================================================================


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "restore",
        help="restore image files or folders (recursive) with a zoo model",
        description="Restore images. Folders are processed recursively; outputs keep their relative names, "
        "format and bit depth. Existing outputs are skipped unless --overwrite. A file that fails is named "
        "on stderr and the rest continue; exit status 1 then (2: nothing was run). Under torchrun the processes "
        "share the files, each restored once; a rerun after a crash does the rest.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files and/or folders")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="output folder (or a file name when there is a single input file)")
    p.add_argument("--task", help=f"one of {', '.join(REQUEST_TASKS)}; picks the zoo model when --model is absent")
    p.add_argument("--model", help="zoo name, built-in (bicubic, identity, ...), weights file or .onnx file")
    p.add_argument("--level", type=level_arg, help="degradation level (noise sigma, JPEG quality, ...): sets a "
                   "modulated model's strength from its lambda(level) curve; checked against its range. 'auto': "
                   f"estimated from each image ({', '.join(ESTIMATORS)}), said on stderr and in --json")
    p.add_argument("--strength", type=float, help="modulation strength lambda in [0, 1] (AdaFM); overrides --level")
    p.add_argument("--scale", type=int, help="SR factor")
    p.add_argument("--degrade", metavar="SPEC",
                   help="for a model that takes its input's degradation (DL-Net): what was done to the images, "
                   "e.g. 'blur:kind=gaussian,width=1.3+down:scale=2' (default: the task's degradation at --level "
                   "and --scale; for SR --level is the blur width)")
    p.add_argument("--mask", help="mask image (or folder of masks with the inputs' relative names): white pixels "
                   "take the model's output, black keep the input; for inpainting, white = the holes")
    p.add_argument("--tile", type=int, default=512, help=TILE_HELP)
    p.add_argument("--tile-overlap", type=int, help=OVERLAP_HELP)
    p.add_argument("--ensemble", action="store_true", help="average the 8 flips/rotations (x8 slower)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"),
                   help="fp16/bf16 only for models whose flag the contract tests measured; on the CPU bf16 "
                   "runs as autocast over fp32 weights (2-3x faster on CPUs with AVX512-BF16)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--backend", default="torch", choices=BACKENDS, help="onnxruntime: CPU inference via ONNX")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--json", metavar="REPORT", help="write a per-file report (status, time, sizes, settings)")
    p.set_defaults(run=run)


def level_arg(value: str) -> float | str:
    """--level: a number, or 'auto' (estimated per image)."""
    if value.strip().lower() == AUTO:
        return AUTO
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {value!r}") from None


@dataclass
class Job:
    """One input file and where its result goes (`rel`: its name relative to the input folder)."""

    source: Path
    dest: Path
    rel: str
    status: str = "pending"  # restored | skipped | failed
    error: str | None = None
    rank: int | None = None  # the process that restored (or tried) it; None: skipped when planned
    seconds: float = 0.0
    size_in: tuple[int, int] | None = None
    size_out: tuple[int, int] | None = None
    level: float | None = None  # the level it was restored at, when estimated (--level auto)
    level_note: str | None = None  # how that level was found


def _output_suffix(path: Path) -> str:
    from restorekit.io import IMAGE_SUFFIXES

    return path.suffix if path.suffix.lower() in IMAGE_SUFFIXES else ".png"


def plan_jobs(inputs: list[str], output: str) -> list[Job]:
    """Map inputs to outputs: folder/a/b.png -> OUT/a/b.png, file.png -> OUT/file.png (or OUT if a file name)."""
    from restorekit.io import is_image_file, list_images

    out = Path(output)
    single_file = len(inputs) == 1 and not Path(inputs[0]).is_dir() and is_image_file(out)
    jobs: list[Job] = []
    for raw in inputs:
        source = Path(raw)
        if source.is_dir():
            found = list_images(source, recursive=True)
            if not found:
                raise RestorekitError(f"{source}: no images found (looked recursively for "
                                      ".png .jpg .jpeg .bmp .tif .tiff .webp)")
            for path in found:
                rel = path.relative_to(source).as_posix()
                jobs.append(Job(path, (out / rel).with_suffix(_output_suffix(path)), rel))
        elif single_file:
            jobs.append(Job(source, out, source.name))
        else:
            jobs.append(Job(source, out / (source.stem + _output_suffix(source)), source.name))
    seen: dict[Path, Path] = {}
    for job in jobs:
        if job.dest.resolve() == job.source.resolve():
            raise RestorekitError(f"{job.source}: the output would replace the input; choose another -o folder")
        if job.dest in seen:
            raise RestorekitError(f"{seen[job.dest]} and {job.source} would both be written to {job.dest}")
        seen[job.dest] = job.source
    return jobs


def _mask_for(job: Job, mask_arg: str | None, shared: torch.Tensor | None) -> torch.Tensor | None:
    """The shared mask, or the mask with the job's relative name in a mask folder."""
    if mask_arg is None:
        return None
    if shared is not None:
        return shared
    folder = Path(mask_arg)
    for candidate in (folder / job.rel, (folder / job.rel).with_suffix(".png")):
        if candidate.is_file():
            return load_mask(candidate)
    raise RestorekitError(f"{job.source}: no mask {folder / job.rel} in the mask folder")


def numeric_level(level: float | str | None) -> float | None:
    """--level as a number: None for 'auto' (estimated per image) as for no level."""
    return None if level == AUTO else level


def process(job: Job, model: LoadedModel, args: argparse.Namespace) -> None:
    """Read, restore, write one file (atomically, so a failure never leaves a partial output)."""
    from restorekit import io

    if job.dest.exists() and not args.overwrite:
        job.status = "skipped"
        return
    start = time.perf_counter()
    image, meta = io.read_image(job.source)
    mask = _mask_for(job, args.mask, model.shared_mask)
    level = args.level
    if model.auto_task is not None:
        level, job.level_note = auto_level(model.auto_task, image, job.source, model.level_range,
                                           scale=model.restorer.info.scale_for(args.scale))
        job.level = level
        console.print(f"restorekit: {job.rel}: {job.level_note}", markup=False, highlight=False, soft_wrap=True)
    out = model.restorer.restore(image, task=args.task, level=numeric_level(level),
                                 strength=args.strength, scale=args.scale, mask=mask, degrade=args.degrade)
    io.write_image(job.dest, out, meta, overwrite=args.overwrite)
    job.size_in, job.size_out = tuple(image.shape[-2:]), tuple(out.shape[-2:])
    job.status, job.seconds = "restored", time.perf_counter() - start


def run_jobs(jobs: list[Job], model: LoadedModel, args: argparse.Namespace, show_progress: bool = True) -> None:
    """Every job, with a progress bar on a terminal (silent otherwise); failures are reported and skipped."""
    with progress_bar(show_progress) as progress:
        bar = progress.add_task("restoring", total=len(jobs))
        for job in jobs:
            progress.update(bar, description=job.rel)
            try:
                process(job, model, args)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as err:  # noqa: BLE001 - one bad file must not stop the batch
                job.status, job.error = "failed", error_line(job.source, err)
                console.print(f"restorekit: error: {job.error}", markup=False, highlight=False, soft_wrap=True)
            progress.advance(bar)


def report(jobs: list[Job], model: LoadedModel, args: argparse.Namespace, dist: Dist) -> dict:
    """The --json payload: settings that change the pixels, then one entry per file (and which rank ran it)."""
    restorer = model.restorer
    return {
        "model": model.name,
        "card": restorer.card.name if restorer.card else None,
        "task": args.task, "level": args.level, "strength": model.strength,
        "factor": infer.factor_for(restorer.model, args.task) or "auto" if "factor" in restorer.info.inputs else None,
        "scale": infer.request_scale(restorer.info, numeric_level(args.level), args.scale),
        "settings": {"tile": args.tile, "tile_overlap": restorer.tile_overlap, "ensemble": args.ensemble,
                     "precision": args.precision, "device": str(restorer.device), "backend": args.backend,
                     "mask": args.mask, "degrade": infer.record_spec(
                         restorer.model, numeric_level(args.level), args.scale, args.degrade)},
        "summary": _counts(jobs),
        "world_size": dist.world,
        "ranks": [{"rank": rank, **_counts([j for j in jobs if j.rank == rank])} for rank in range(dist.world)],
        "files": [{"input": str(j.source), "output": str(j.dest), "status": j.status, "error": j.error,
                   "rank": j.rank, "seconds": round(j.seconds, 3), "size_in": j.size_in, "size_out": j.size_out,
                   **({"level": j.level, "level_estimate": j.level_note} if j.level_note else {})}
                  for j in jobs],
    }


def _counts(jobs: list[Job]) -> dict[str, int]:
    return {s: sum(j.status == s for j in jobs) for s in ("restored", "skipped", "failed")}


# -----------------------------------------------------------------------------------------------------
# Before any image: the model (every rank), the plan and the output folder (rank 0)
# -----------------------------------------------------------------------------------------------------


@dataclass
class LoadedModel:
    """What every rank builds from the arguments: the restorer, plus what the report and notes say about it."""

    restorer: Restorer
    name: str
    strength: float | None
    shared_mask: torch.Tensor | None
    notes: list[str] = field(default_factory=list)
    auto_task: str | None = None  # --level auto: the task whose level each image's estimate gives
    level_range: tuple[float, float] | None = None  # the model's levels; an estimate outside is clamped



def load_model(args: argparse.Namespace, device: str) -> LoadedModel:
    """Build and check the restorer; level -> lambda and mask errors surface here, before any file."""
    auto = args.level == AUTO
    level = numeric_level(args.level)
    choice = choose_model(args.model, args.task, level, args.scale)
    restorer = build_restorer(choice, task=args.task, level=level, scale=args.scale, backend=args.backend,
                              device=device, precision=args.precision, tile=args.tile,
                              tile_overlap=args.tile_overlap, ensemble=args.ensemble, degrade=args.degrade)
    lam = restorer.strength_for(level, args.strength)
    notes = []
    if choice.chosen_by_task:
        notes.append(f"using zoo model {choice.name!r}")
    if "factor" in restorer.info.inputs:  # a multi-branch model (MBN): say which path(s) will run
        factor = infer.factor_for(restorer.model, args.task)
        notes.append(f"{choice.name!r} runs its {factor} path (task {args.task})" if factor else
                     f"{choice.name!r} runs every path in turn ({', '.join(restorer.info.factors)}): the factor "
                     "is unknown")
    level_used = (restorer.card is not None and restorer.card.level_range() is not None) or \
        bool({"level", "record"} & set(restorer.info.inputs))  # FFDNet's noise map; DL-Net's record
    if args.level is not None and lam is None and not level_used:
        notes.append(f"model {choice.name!r} has no level range; --level is ignored")
    auto_task = None
    if auto and level_used and args.strength is None:
        auto_task = check_estimable(args.task or (restorer.card.task if restorer.card else None))
    if args.mask and restorer.info.scales != (1,):
        raise RestorekitError("--mask cannot be used with a model that changes the image size")
    shared_mask = load_mask(args.mask) if args.mask and not Path(args.mask).is_dir() else None
    level_range = restorer.card.level_range() if restorer.card is not None else None
    return LoadedModel(restorer, choice.name, lam, shared_mask, notes, auto_task, level_range)


def _rank_device(args: argparse.Namespace, dist: Dist) -> str:
    """Under torchrun each process takes its local rank's GPU (auto/cuda -> cuda:LOCAL_RANK); ONNX stays put."""
    onnx = args.backend == "onnxruntime" or (args.model or "").lower().endswith(".onnx")
    return args.device if not dist.active or onnx else str(dist.device)


def output_folders(jobs: list[Job], output: str) -> list[Path]:
    """The folders outputs go under: OUT, or the parent of a single output file name."""
    out = Path(output)
    return sorted({job.dest.parent if job.dest == out else out for job in jobs})


def preflight(jobs: list[Job], args: argparse.Namespace) -> list[Path]:
    """Refuse an output folder (or --json path) we cannot write now, not after every image was computed.

    Creates the output folders and probes each with a temp file; a file standing where a sub-folder
    must go is refused too. Returns the output folders.
    """
    folders = output_folders(jobs, args.output)
    for folder in folders:
        _check_folder(folder, "output folder")
    for parent in sorted({job.dest.parent for job in jobs} - set(folders)):
        blocker = next((p for p in (parent, *parent.parents) if p.exists()), None)
        if blocker is not None and not blocker.is_dir():
            raise RestorekitError(f"{blocker}: is a file, but outputs must go in a folder of that name")
    if args.json:
        report_path = Path(args.json)
        if report_path.is_dir():
            raise RestorekitError(f"{report_path}: is a folder; --json needs a file name")
        _check_folder(report_path.parent, "folder for the --json report")
    return folders


def _check_folder(folder: Path, what: str) -> None:
    if folder.exists() and not folder.is_dir():
        raise RestorekitError(f"{folder}: the {what} is a file")
    try:
        check_writable(folder)
    except OSError as err:
        raise RestorekitError(f"{folder}: cannot write the {what} ({err.strerror or err})") from None


# -----------------------------------------------------------------------------------------------------
# The run: one process, or one rank of a torchrun job
# -----------------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    dist = distributed.setup(args.device, timeout=SLOWEST_RANK_WAIT) if distributed.launched_world() > 1 else Dist()
    try:
        return _run(args, dist)
    finally:
        distributed.teardown(dist)


def prepare(args: argparse.Namespace, dist: Dist) -> tuple[list[Job], list[Path], LoadedModel]:
    """Everything that can refuse the run, before any image. Rank 0 alone plans (finished outputs marked
    skipped, unless --overwrite) and checks the output folders; the other ranks get its plan."""
    jobs: list[Job] = []
    folders: list[Path] = []
    check_task(args.task)
    if dist.main:
        jobs = plan_jobs(args.inputs, args.output)
    model = load_model(args, _rank_device(args, dist))
    if dist.main:
        folders = preflight(jobs, args)
        for job in jobs:
            if job.dest.exists() and not args.overwrite:
                job.status = "skipped"
    return jobs, folders, model


def _run(args: argparse.Namespace, dist: Dist) -> int:
    failure: RestorekitError | None = None
    try:
        jobs, folders, model = prepare(args, dist)
    except RestorekitError as err:
        failure = err
    if not _all_ready(failure, dist):
        return 2
    jobs, folders = distributed.broadcast_object((jobs, folders), dist)
    if dist.local_rank == 0:  # one process per machine: temps a killed run left there (issue 13, finding 8)
        for folder in folders:
            remove_stale_temps(folder)
    if dist.main:
        for note in model.notes:
            print(f"restorekit: {note}", file=sys.stderr)

    mine = distributed.shard([i for i, job in enumerate(jobs) if job.status == "pending"], dist)
    for i in mine:
        jobs[i].rank = dist.rank
    run_jobs([jobs[i] for i in mine], model, args, show_progress=dist.main)
    for share in distributed.gather_objects([(i, jobs[i]) for i in mine], dist):
        for i, job in share:
            jobs[i] = job

    counts = _counts(jobs)
    if dist.main:
        if args.json:
            write_json(args.json, report(jobs, model, args, dist))
        _print_summary(counts, len(jobs), args.output, dist)
    return 1 if counts["failed"] else 0


def _all_ready(failure: RestorekitError | None, dist: Dist) -> bool:
    """True when no rank failed to set up. Otherwise rank 0 raises the error (one line; the CLI exits 2)
    and the other ranks return False to exit 2 quietly, so a mistake in the arguments is printed once."""
    reasons = distributed.gather_objects(None if failure is None else str(failure), dist)
    if not any(reasons):
        return True
    if not dist.main:
        return False
    if failure is not None:
        raise failure
    rank, reason = next((rank, reason) for rank, reason in enumerate(reasons) if reason)
    raise RestorekitError(f"rank {rank}: {reason}")


def _print_summary(counts: dict[str, int], total: int, output: str, dist: Dist) -> None:
    skipped = f", {counts['skipped']} skipped (exist; --overwrite replaces them)" if counts["skipped"] else ""
    processes = f" ({dist.world} processes)" if dist.active else ""
    if total > 1 or counts["skipped"]:  # a lone failed file already has its one line
        print(f"restorekit: {counts['restored']} restored{skipped}, {counts['failed']} failed -> {output}{processes}",
              file=sys.stderr)
