"""The one registry of task names: what a degradation, a model, a config, `eval` and `restore` can name.

Every other list of tasks in the package is derived from `TASKS` (degradation specs, config validation,
the metric convention of `eval`, `--task` choices, the model descriptors). A new task is one `Task(...)`
line here; the canonical degradation for it lives in `degrade.spec.canonical_spec`.
"""

from __future__ import annotations

from dataclasses import dataclass

from restorekit.errors import RestorekitError


@dataclass(frozen=True)
class Task:
    """A restoration task and the metric convention the literature scores it with (field-conventions 4.4)."""

    name: str
    summary: str
    level: str | None  # what `--level` means for it, or None when it has no level
    y_channel: bool = False  # PSNR/SSIM on the Y channel (SR, JPEG, deraining) rather than RGB
    span: tuple[float, float] | None = None  # the usual range of levels (a level slider's ends when a model has none)
    factor: str | None = None  # the degradation operator it removes, what a factor-conditioned model (MBN) is told


TASKS: dict[str, Task] = {t.name: t for t in (
    Task("denoise", "Gaussian noise removal", "noise sigma on the 0-255 scale", span=(0, 75)),
    Task("sr", "super-resolution", "Gaussian blur width before downscaling (0: none)", y_channel=True),
    Task("jpeg", "JPEG deblocking", "JPEG quality", y_channel=True, span=(10, 90), factor="jpeg"),
    Task("deblur", "Gaussian deblurring", "blur kernel width", factor="blur"),
    Task("inpaint", "filling a missing block", "side of the square hole in pixels"),
    Task("interpolate", "filling randomly missing pixels", "missing fraction (0.75 or 75 = 75%)"),
    Task("derain", "rain streak removal", "streak intensity", y_channel=True, factor="rain"),
    Task("dehaze", "haze removal", "haze density beta", factor="haze"),
)}

# Names a request or a model may use besides the tasks themselves.
AUTO = "auto"  # a request: "whatever is wrong with it" -> a blind / multi-factor model
GENERIC = "restore"  # a model trained on an arbitrary spec or folder pairs; eval's "score as given"
ANY = "any"  # an architecture that serves every task (identity, an untrained backbone)
ANALYZE = "analyze"  # a model that says what is wrong with an image (a distortion recogniser); it restores nothing

REQUEST_TASKS = (*TASKS, AUTO)  # `restore --task`, Restorer(task=...)
EVAL_TASKS = (*TASKS, GENERIC)  # `eval --task`, training configs
MODEL_TASKS = (*TASKS, GENERIC, ANY, ANALYZE)  # what a model descriptor or card may declare


def check_task(task: str | None, allowed: tuple[str, ...] = REQUEST_TASKS) -> str | None:
    """Unknown tasks are one clear line (argparse `choices` would print the usage block too)."""
    if task is not None and task not in allowed:
        raise RestorekitError(f"unknown task {task!r}; choose one of: {', '.join(allowed)}")
    return task


def serves(model_tasks: tuple[str, ...], wanted: str | None) -> bool:
    """Whether a model declaring `model_tasks` can serve a request for `wanted` (None / auto: anything that
    restores; a recogniser serves only `analyze`)."""
    if ANALYZE in model_tasks:
        return wanted == ANALYZE
    return wanted in (None, AUTO) or wanted in model_tasks or bool({ANY, GENERIC} & set(model_tasks))
