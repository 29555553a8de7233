"""Named level parameters and the three kinds of value a spec can give them: fixed, range, choice.

A parameter is declared once per operator (`Param`), with its type and valid interval, so that the
spec parser, the range sampler and the error messages all read from the same table. Values are parsed
from spec text (`25`, `0..75`, `10|20|35`, `75%`, `true`, `pil`) into `Fixed`, `Uniform` or `Choice`,
validated against the interval at parse time (so a bad level fails before any image is touched), and
drawn per sample by `sample(rng)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from restorekit.errors import SpecError

Number = int | float
Scalar = int | float | bool | str

_REQUIRED = object()


@dataclass(frozen=True)
class Param:
    """One named parameter of an operator.

    `type` is 'float', 'int', 'bool' or 'str'. Numeric parameters are levels: they accept ranges and
    choices. `low`/`high` bound the valid values (`low_open`/`high_open` make a bound exclusive);
    'str' parameters list their `options`. `default` is `REQUIRED` when the papers give no range we
    could default to; otherwise it is spec text parsed like a user value (so defaults are validated
    by the same code).
    """

    name: str
    type: str
    doc: str
    default: Any = _REQUIRED
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    options: tuple[str, ...] = ()

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED

    def bounds_text(self) -> str:
        """Human description of the valid values, used in docs and error messages."""
        if self.type == "bool":
            return "true or false"
        if self.type == "str":
            return " | ".join(self.options)
        lo = "" if self.low is None else f"{'>' if self.low_open else '>='} {format_number(self.low)}"
        hi = "" if self.high is None else f"{'<' if self.high_open else '<='} {format_number(self.high)}"
        kind = "an integer" if self.type == "int" else "a number"
        return f"{kind} {lo}{' and ' if lo and hi else ''}{hi}".strip()

    def check(self, value: Scalar, where: str) -> Scalar:
        """Return `value` converted to this parameter's type, or raise SpecError naming the problem."""
        if self.type == "str":
            if value not in self.options:
                raise SpecError(f"{where}: {self.name}={value!r} is not valid; choose {self.bounds_text()}")
            return value
        if self.type == "bool":
            if not isinstance(value, bool):
                raise SpecError(f"{where}: {self.name}={value!r} must be true or false")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(f"{where}: {self.name}={value!r} must be {self.bounds_text()}")
        if not math.isfinite(value):
            raise SpecError(f"{where}: {self.name}={value!r} must be finite")
        if self.type == "int":
            if float(value) != int(value):
                raise SpecError(f"{where}: {self.name}={format_number(value)} must be a whole number")
            value = int(value)
        else:
            value = float(value)
        too_low = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        too_high = self.high is not None and (value >= self.high if self.high_open else value > self.high)
        if too_low or too_high:
            raise SpecError(
                f"{where}: {self.name}={format_number(value)} is out of range; must be {self.bounds_text()}"
            )
        return value


REQUIRED = _REQUIRED


# ------------------------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Fixed:
    """A single value: every sample gets exactly this."""

    value: Scalar

    def sample(self, rng: np.random.Generator) -> Scalar:
        return self.value

    def text(self) -> str:
        return format_value(self.value)


@dataclass(frozen=True)
class Uniform:
    """`low..high`: uniform on the closed interval (integers for 'int' parameters, inclusive)."""

    low: Number
    high: Number
    integer: bool = False

    def sample(self, rng: np.random.Generator) -> Number:
        if self.integer:
            return int(rng.integers(int(self.low), int(self.high) + 1))
        return float(rng.uniform(self.low, self.high))

    def text(self) -> str:
        return f"{format_number(self.low)}..{format_number(self.high)}"


@dataclass(frozen=True)
class Choice:
    """`a|b|c`: one of the listed values, uniformly."""

    values: tuple[Scalar, ...] = field(default_factory=tuple)

    def sample(self, rng: np.random.Generator) -> Scalar:
        return self.values[int(rng.integers(len(self.values)))]

    def text(self) -> str:
        return "|".join(format_value(v) for v in self.values)


Value = Fixed | Uniform | Choice


def possible_values(value: Value) -> tuple[Scalar, ...] | None:
    """The finite set of values `value` can take, or None for a continuous range."""
    if isinstance(value, Fixed):
        return (value.value,)
    if isinstance(value, Choice):
        return value.values
    if value.integer:
        return tuple(range(int(value.low), int(value.high) + 1))
    return None


# Whole numbers below this print as plain integers (`25`, `4000`); above it every float is an
# integer, so `1e308` would print as 309 digits: those fall back to the float's exponent form.
_PLAIN_INTEGER_LIMIT = 10**16


def format_number(value: Number) -> str:
    """Shortest text that reads back as the same number (`25`, `1.3`, `0.0125`, `1e+308`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if abs(value) < _PLAIN_INTEGER_LIMIT else _format_big_int(value)
    number = float(value)
    if number.is_integer() and abs(number) < _PLAIN_INTEGER_LIMIT:
        return str(int(number))
    return repr(number)  # Python's shortest round-trip form; exponent notation when large or tiny


def _format_big_int(value: int) -> str:
    """A huge integer in exponent form: exact as a float's repr when it is one (every spec number
    passed through float), else rounded to 17 significant digits - never hundreds of digits."""
    try:
        as_float = float(value)
    except OverflowError:
        as_float = math.inf
    if math.isfinite(as_float) and as_float == value:
        return repr(as_float)
    digits = str(abs(value))
    mantissa = f"{digits[0]}.{digits[1:17]}".rstrip("0").rstrip(".")
    return f"{'-' if value < 0 else ''}{mantissa}e+{len(digits) - 1}"


def format_value(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return format_number(value)
    return str(value)


def parse_scalar(text: str) -> Scalar:
    """Spec text -> bool, number (`75%` -> 0.75) or bare word."""
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    number_text = lowered[:-1] if lowered.endswith("%") else lowered
    try:
        number = float(number_text)
    except ValueError:
        if lowered.endswith("%"):
            raise SpecError(f"{text!r} is not a percentage") from None
        return lowered
    if lowered.endswith("%"):
        return number / 100.0
    return int(number) if number.is_integer() and "." not in number_text and "e" not in number_text else number


def parse_value(param: Param, text: str, where: str) -> Value:
    """Parse and validate the text of one `key=value`, for `param`."""
    text = text.strip()
    if not text:
        raise SpecError(f"{where}: {param.name}= has no value; expected {param.bounds_text()}")
    numeric = param.type in ("int", "float")
    if ".." in text:
        if not numeric:
            raise SpecError(f"{where}: {param.name} takes {param.bounds_text()}, not a range")
        low_text, _, high_text = text.partition("..")
        low = param.check(_number(low_text, param, where), where)
        high = param.check(_number(high_text, param, where), where)
        if high < low:
            raise SpecError(f"{where}: range {param.name}={text} is empty (high < low)")
        if high == low:
            return Fixed(low)
        return Uniform(low, high, integer=param.type == "int")
    if "|" in text:
        items = [item for item in text.split("|")]
        if any(not item.strip() for item in items):
            raise SpecError(f"{where}: {param.name}={text} has an empty choice")
        values = tuple(param.check(_coerce(item, param, where), where) for item in items)
        return Fixed(values[0]) if len(set(values)) == 1 else Choice(values)
    return Fixed(param.check(_coerce(text, param, where), where))


def _number(text: str, param: Param, where: str) -> Number:
    value = parse_scalar(text)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(f"{where}: {param.name}: {text.strip()!r} is not a number")
    return value


def _coerce(text: str, param: Param, where: str) -> Scalar:
    if param.type in ("int", "float"):
        return _number(text, param, where)
    value = parse_scalar(text)
    if param.type == "str" and not isinstance(value, str):
        return text.strip().lower()
    return value
