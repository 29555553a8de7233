"""The spec grammar used everywhere (CLI, configs, evaluation) and the canonical spec of each task.

    spec   := stage ('+' stage)*
    stage  := NAME [':' param (',' param)*]
    param  := KEY '=' value
    value  := NUMBER | NUMBER '..' NUMBER | item ('|' item)+ | WORD | true | false      (NUMBER may end in %)

Examples: `noise:sigma=25`, `blur:kind=gaussian,width=1.3+down:scale=4+noise:sigma=10`,
`noise:sigma=0..75`, `jpeg:quality=10|20|30|40`, `bernoulli:ratio=75%`, `inpaint:kind=square,size=20`,
`shdd:level=moderate`, `mbn:factors=1..4`, `subset:k=1..2+noise:sigma=0..50+jpeg:quality=10..90`.
Errors name the bad token and list the valid operators or parameters.
"""

from __future__ import annotations

import functools

from restorekit.degrade.operator import Operator, operator_class
from restorekit.degrade.params import Fixed, Param, Value, format_number, parse_value
from restorekit.degrade.pipeline import SHDD_LEVELS, Pipeline, Sequential, SpatiallyVarying
from restorekit.errors import SpecError
from restorekit.tasks import TASKS

# Stage names that are not operators: composition and presets.
SUBSET_PARAM = Param("k", "int", "how many of the following operators each sample gets", low=1, high=64)
SHDD_PARAMS = (
    Param("level", "str", "difficulty: easy (2 regions), moderate (3), difficult (4)", default="moderate", options=tuple(SHDD_LEVELS)),
    Param("regions", "int", "override the number of regions", default=None, low=1, high=64),
    Param("quantize", "bool", "round the output to uint8 levels", default="true"),
)
MBN_PARAMS = (Param("factors", "int", "how many of the four factors each sample gets", default="1..4", low=1, high=4),)
COMPOSITES = ("mbn", "shdd", "subset")

# MBN App. C mixed dataset, in its synthesis order haze -> rain -> motion blur -> JPEG.
MBN_STAGES = (
    "haze:beta=0.08|0.1|0.12|0.16|0.2,airlight=0.8|0.85|0.9|0.95|1",
    "rain:length=10|20|35|50,angle=70|80|85|90|100|105|110,intensity=0.55|0.65|0.7|0.8",
    "blur:kind=motion,preset=1..6,angle=-45..45",
    "jpeg:quality=15..50,encoder=pil",
)


def _split_stage(text: str) -> tuple[str, list[tuple[str, str]]]:
    """'name:k=v,k=v' -> ('name', [('k', 'v'), ...]); raises on malformed key=value tokens."""
    name, _, rest = text.partition(":")
    name = name.strip().lower()
    if not name:
        raise SpecError(f"stage {text.strip()!r} has no operator name")
    pairs = []
    if rest.strip():
        for token in rest.split(","):
            key, eq, value = token.partition("=")
            if not eq or not key.strip():
                raise SpecError(f"{name}: expected key=value, got {token.strip()!r}")
            pairs.append((key.strip().lower(), value.strip()))
    elif ":" in text:
        raise SpecError(f"{name}: nothing after ':'")
    keys = [k for k, _ in pairs]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise SpecError(f"{name}: parameter {duplicates[0]!r} given twice")
    return name, pairs


def _parse_params(params: tuple[Param, ...], pairs: list[tuple[str, str]], where: str) -> dict[str, Value]:
    by_name = {p.name: p for p in params}
    values = {}
    for key, text in pairs:
        if key not in by_name:
            raise SpecError(f"{where}: unknown parameter {key!r}; valid parameters: {', '.join(by_name)}")
        values[key] = parse_value(by_name[key], text, where)
    for param in params:
        if param.name not in values and param.default is not None and not param.required:
            values[param.name] = parse_value(param, str(param.default), where)
        elif param.name not in values and param.required:
            raise SpecError(f"{where}: missing parameter {param.name!r} ({param.doc})")
    return values


def parse_stage(text: str) -> Operator:
    """One operator stage, e.g. 'blur:kind=gaussian,width=1.3'."""
    name, pairs = _split_stage(text)
    kind = next((v.lower() for k, v in pairs if k == "kind"), None)
    cls = operator_class(name, kind, extra_names=COMPOSITES)
    values: dict[str, Value] = {}
    by_name = {p.name: p for p in cls.params}
    for key, value_text in pairs:
        if key == "kind":
            continue
        if key not in by_name:
            raise SpecError(cls.unknown_param_message(key))
        values[key] = parse_value(by_name[key], value_text, cls.label())
    return cls(values)


def parse_spec(text: str) -> Pipeline:
    """Parse a spec string into a runnable pipeline (`Sequential` or `SpatiallyVarying`)."""
    if not isinstance(text, str) or not text.strip():
        raise SpecError("empty spec; examples: 'noise:sigma=25', 'jpeg:quality=10', 'down:scale=4'")
    stages = [s.strip() for s in text.split("+")]
    for position, stage in enumerate(stages, 1):
        if not stage:
            raise SpecError(f"empty stage #{position} in {text!r} (two '+' in a row, or one at an end)")
    names = [_split_stage(s)[0] for s in stages]
    if "shdd" in names:
        if len(stages) != 1:
            raise SpecError("shdd: a spatially varying spec stands alone (it already ends in uint8 rounding)")
        values = _parse_params(SHDD_PARAMS, _split_stage(stages[0])[1], "shdd")
        quantize = values.pop("quantize", Fixed(True))
        if not isinstance(quantize, Fixed):
            raise SpecError("shdd: quantize takes true or false, not a choice")
        return SpatiallyVarying(values["level"], values.get("regions"), bool(quantize.value))
    subset = None
    if names[0] == "subset":
        subset = _parse_params((SUBSET_PARAM,), _split_stage(stages[0])[1], "subset")["k"]
        stages, names = stages[1:], names[1:]
        if not stages:
            raise SpecError("subset: no operators follow it")
    if "subset" in names:
        raise SpecError("subset: must be the first stage")
    if "mbn" in names:
        if len(stages) != 1 or subset is not None:
            raise SpecError("mbn: the MBN mixed-factor preset stands alone")
        factors = _parse_params(MBN_PARAMS, _split_stage(stages[0])[1], "mbn")["factors"]
        return Sequential([parse_stage(s) for s in MBN_STAGES], subset=factors)
    return Sequential([parse_stage(s) for s in stages], subset=subset)


@functools.lru_cache(maxsize=256)
def factor_of(text: str) -> str | None:
    """The degradation type of a spec that applies exactly one operator (its name: 'rain', 'blur', 'jpeg',
    'haze', 'noise', ...), None for chains and random subsets: what a model taking the `factor` condition
    (MBN) is told about a training or validation level."""
    pipeline = parse_spec(text)
    if not isinstance(pipeline, Sequential) or pipeline.subset is not None or len(pipeline.stages) != 1:
        return None
    return pipeline.stages[0].name


# --------------------------------------------------------------------------------------- tasks



# How the canonical denoising input is made (issue 19): 'float' = KAIR's protocol (noise added in float, not clipped:
# the DnCNN / FFDNet tables); 'quantized' = the noisy image clipped to [0, 1] and rounded to 8 bits, as noisy files
# are (the AdaFM paper trains and tests so; the released AdaFM-Net loses 6 dB at sigma 75 on float noise).
NOISE_PROTOCOLS = {"float": "", "quantized": ",quantize=true"}


def canonical_spec(task: str, level: float | None = None, scale: int | None = None, noise: str = "float") -> str:
    """The project's standard degradation for a task at a level, as a spec string.

    denoise: noise:sigma=LEVEL (0-255 scale, KAIR float protocol; noise="quantized" adds quantize=true); jpeg: jpeg:quality=LEVEL (Pillow);
    sr: down:scale=SCALE (MATLAB bicubic, uint8), preceded by blur:kind=gaussian,width=LEVEL when a
    nonzero LEVEL is given (DL-Net's blurred SR); deblur: blur:kind=gaussian,width=LEVEL;
    inpaint: a centred square hole of side LEVEL; interpolate: Bernoulli removal, LEVEL < 1 read as a
    fraction and LEVEL >= 1 as a percentage (0.75 and 75 both mean 75%); derain: MBN-style rain, LEVEL
    = streak intensity; dehaze: haze, LEVEL = beta. Without a level, derain/dehaze use MBN's sets.
    """
    task = task.strip().lower() if isinstance(task, str) else task
    if noise not in NOISE_PROTOCOLS:
        raise SpecError(f"unknown noise protocol {noise!r}; one of {', '.join(NOISE_PROTOCOLS)}")
    if task not in TASKS:
        raise SpecError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
    if task == "sr":
        if scale is None:
            raise SpecError("task 'sr' needs a scale (2, 3, 4, ...)")
        spec = f"down:scale={format_number(scale)}"
        if level:
            spec = f"blur:kind=gaussian,width={format_number(level)}+{spec}"
    elif task in ("derain", "dehaze") and level is None:
        spec = "rain" if task == "derain" else "haze"
    else:
        if level is None:
            raise SpecError(f"task {task!r} needs a level")
        text = format_number(level)
        spec = {
            "denoise": f"noise:sigma={text}{NOISE_PROTOCOLS[noise]}",
            "jpeg": f"jpeg:quality={text}",
            "deblur": f"blur:kind=gaussian,width={text}",
            "inpaint": f"inpaint:kind=square,size={text},shift=0",
            "interpolate": f"bernoulli:ratio={format_number(level / 100) if level >= 1 else text}",
            "derain": f"rain:intensity={text}",
            "dehaze": f"haze:beta={text}",
        }[task]
    parse_spec(spec)  # validate the level now, with the operator's own message
    return spec
