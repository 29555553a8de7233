"""Property tests of the two text parsers users feed by hand: degradation specs and training configs.

Issue 13's fuzzing requirement: whatever the text, the parser returns a result or raises its own
one-line error (SpecError / ConfigError), never another exception. Generated inputs mix raw text with
grammar-shaped text built from the real operator and config keys, so most examples get past the first
token. Settings are fixed (derandomize=True) so every run checks the same examples.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from restorekit.degrade import all_operator_classes, parse_spec
from restorekit.degrade.params import format_number, parse_scalar
from restorekit.errors import ConfigError, SpecError
from restorekit.train.config import Config, iter_keys, load_config, validate_config

REPO = Path(__file__).resolve().parent.parent
FIXED = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

# ------------------------------------------------------------------------------------ degradation specs

OPERATORS = all_operator_classes()
NAMES = sorted({cls.name for cls in OPERATORS} | {"mbn", "shdd", "subset", "nosie"})
PARAMS = sorted({p.name for cls in OPERATORS for p in cls.params} | {"kind", "k", "level", "factors", "sigm"})
WORDS = sorted({o for cls in OPERATORS for p in cls.params for o in p.options}
               | {cls.kind for cls in OPERATORS if cls.kind} | {"true", "false", "easy", "moderate", "x"})

numbers = st.one_of(
    st.integers(-5, 300).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["1e308", "1e-308", "-0", "0.5%", "75%", "1e400", "nan", "inf", "0x10", "1_0", "", " "]),
)
values = st.one_of(
    numbers,
    st.sampled_from(WORDS),
    st.tuples(numbers, numbers).map("..".join),
    st.lists(st.one_of(numbers, st.sampled_from(WORDS)), min_size=2, max_size=4).map("|".join),
)
params = st.tuples(st.sampled_from(PARAMS), values).map("=".join)
stages = st.tuples(st.sampled_from(NAMES), st.lists(params, max_size=4)).map(
    lambda t: t[0] + (":" + ",".join(t[1]) if t[1] else ""))


def _param_value(param) -> st.SearchStrategy[str]:
    """Text for one parameter, mostly inside its declared interval (so whole specs often parse)."""
    if param.type == "bool":
        return st.sampled_from(["true", "false", "yes", "maybe"])
    if param.type == "str":
        return st.sampled_from([*param.options, "nope"])
    low = -1e6 if param.low is None else param.low
    high = 1e6 if param.high is None else param.high
    inside = (st.integers(int(low), int(high)) if param.type == "int" else st.floats(low, high)).map(format_number)
    return st.one_of(inside, numbers, st.lists(inside, min_size=2, max_size=2).map(lambda pair: "..".join(
        sorted(pair, key=float))), st.lists(inside, min_size=2, max_size=3).map("|".join))


def _operator_stage(cls) -> st.SearchStrategy[str]:
    head = f"{cls.name}:kind={cls.kind}" if cls.kind else cls.name
    pairs = [st.tuples(st.just(p.name), _param_value(p)).map("=".join) for p in cls.params]
    if not pairs:
        return st.just(head)
    chosen = st.lists(st.sampled_from(range(len(pairs))), unique=True, max_size=len(pairs))
    return chosen.flatmap(lambda idx: st.tuples(*(pairs[i] for i in sorted(idx))) if idx else st.just(())).map(
        lambda parts: head + ("," if cls.kind else ":") + ",".join(parts) if parts else head)


operator_specs = st.lists(st.one_of(*(_operator_stage(cls) for cls in OPERATORS)), min_size=1, max_size=3).map("+".join)
grammar_specs = st.one_of(st.lists(stages, min_size=1, max_size=4).map("+".join), operator_specs,
                          st.tuples(st.sampled_from(["subset:k=1", "subset:k=1..2"]), operator_specs).map("+".join),
                          st.sampled_from(["mbn", "mbn:factors=2..3", "shdd", "shdd:level=easy,regions=3"]))
spec_texts = st.one_of(grammar_specs, st.text(max_size=60),
                       st.tuples(grammar_specs, st.text(max_size=5), st.integers(0, 60)).map(
                           lambda t: t[0][: t[2]] + t[1] + t[0][t[2]:]))  # a valid-looking spec, damaged


def _stage_values(pipeline) -> list:
    return [(op.label(), dict(op.values)) for op in getattr(pipeline, "stages", [])]


@FIXED
@given(spec_texts)
def test_any_spec_text_parses_or_raises_spec_error(text):
    """issue 13, fuzzing requirement: arbitrary text -> a pipeline or a one-line SpecError; and the
    canonical text of a parsed spec parses back to the same spec."""
    try:
        pipeline = parse_spec(text)
    except SpecError as err:
        assert "\n" not in str(err)
        return
    canonical = str(pipeline)
    again = parse_spec(canonical)
    assert str(again) == canonical
    assert _stage_values(again) == _stage_values(pipeline)


@FIXED
@given(st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(10**400), 10**400))
def test_numbers_print_compactly_and_read_back_exactly(value):
    """issue 13, finding 10: levels are printed in at most ~25 characters, and a float reads back as itself."""
    text = format_number(value)
    assert len(text) <= 25, text
    if isinstance(value, float) or abs(value) < 10**16:
        assert parse_scalar(text) == value


@pytest.mark.parametrize("spec", ["noise:sigma=1e308", "jpeg:quality=1e308", "blur:kind=gaussian,width=1e308",
                                  "down:scale=1e308"])
def test_huge_level_is_echoed_compactly(spec):
    """issue 13, finding 10: `sigma=1e308` was echoed as a 309-digit integer."""
    with pytest.raises(SpecError) as info:
        parse_spec(spec)
    assert "=1e+308 is out of range" in str(info.value) and len(str(info.value)) < 120


def test_normal_levels_keep_their_familiar_text():
    """issue 13, finding 10: the compact form changes nothing below 1e16 (records and file names use it)."""
    assert [format_number(v) for v in (25, 25.0, 1.3, 0.0125, 4000, 1e15, -3)] == \
        ["25", "25", "1.3", "0.0125", "4000", "1000000000000000", "-3"]
    assert [format_number(v) for v in (1e16, 1e308, 10**400, 2.5e-300)] == ["1e+16", "1e+308", "1e+400", "2.5e-300"]
    assert str(parse_spec("noise:sigma=12.5")) == "noise:sigma=12.5,clip=false,quantize=false,rng=auto"


# ------------------------------------------------------------------------------------ training configs

CONFIG_KEYS = [k for k, _ in iter_keys()]
BASE_CONFIG = yaml.safe_load((REPO / "configs" / "tiny" / "denoise.yaml").read_text())

yaml_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=12),
    st.sampled_from(["1e-4", "2001-02-30", "0o17", "0x1F", ".inf", "-.nan", "~", "yes", "[", "{a: 1", "*x", "&a b",
                     "!!python/object:os.system", "dncnn", "noise:sigma=25", "l2", "adam", "cosine", "staged"]),
)
yaml_values = st.recursive(
    yaml_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(PARAMS + ["type", "args"]), inner,
                                                                max_size=3),
    max_leaves=6,
)
key_paths = st.one_of(
    st.sampled_from(CONFIG_KEYS).map(lambda k: k.replace("[]", ".0")),
    st.sampled_from(CONFIG_KEYS).map(lambda k: k.replace("[]", ".7")),
    st.text(alphabet="abc.0[]_ =", max_size=12),
)
overrides = st.one_of(
    st.tuples(key_paths, yaml_scalars.map(lambda v: yaml.safe_dump(v).removesuffix("\n").removesuffix("...").strip()))
    .map("=".join),
    st.tuples(key_paths, st.text(max_size=12)).map("=".join),
    st.text(max_size=20),
)


def _mutated_base(data) -> dict:
    """The tiny denoise config with a few keys replaced or removed (so validation reaches deep keys)."""
    raw = yaml.safe_load(yaml.safe_dump(BASE_CONFIG))
    for dotted in data.draw(st.lists(st.sampled_from([k for k in CONFIG_KEYS if "[]" not in k]), max_size=3)):
        *parents, leaf = dotted.split(".")
        node = raw
        for part in parents:
            node = node.setdefault(part, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            if data.draw(st.booleans()):
                node.pop(leaf, None)
            else:
                node[leaf] = data.draw(yaml_values)
    return raw


config_texts = st.one_of(
    st.text(max_size=80),
    yaml_values.map(yaml.safe_dump),
    st.sampled_from(["a: 2001-02-30", "seed: !!binary x", "[" * 200, "a: &x [*x]", "?", "- - -", ": :", "\t", "%YAML 9"]),
)


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz_config") / "config.yaml"


def _config_or_config_error(load) -> None:
    try:
        config = load()
    except ConfigError as err:
        assert "\n" not in str(err).strip() or "not valid YAML" in str(err)
        return
    assert isinstance(config, Config)


@FIXED
@given(text=config_texts, sets=st.lists(overrides, max_size=3))
def test_any_config_text_loads_or_raises_config_error(config_file, text, sets):
    """issue 13, fuzzing requirement: arbitrary YAML-ish text and --set overrides -> Config or ConfigError."""
    config_file.write_text(text)
    _config_or_config_error(lambda: load_config(config_file, sets))


@settings(FIXED, max_examples=150)
@given(data=st.data(), sets=st.lists(overrides, max_size=2))
def test_any_damaged_real_config_validates_or_raises_config_error(data, sets):
    """issue 13, fuzzing requirement: a real config with keys replaced, removed or --set -> Config or ConfigError."""
    raw = _mutated_base(data)
    _config_or_config_error(lambda: validate_config(raw, "denoise.yaml", sets))
