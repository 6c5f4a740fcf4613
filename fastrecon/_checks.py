"""Typed field checks for parsing untrusted configs (a checkpoint's embedded JSON).

Each check takes the field's dotted name (``where``, e.g. ``"encoder.img_size"``) and the raw value,
and returns the value with its proper Python type or raises :class:`~fastrecon.errors.ConfigError`
naming the field, the value and what was expected. JSON gives ``bool`` for true/false, which Python
counts as an ``int``: whole-number fields refuse it, and no field accepts numbers written as strings.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from fastrecon.errors import ConfigError

T = TypeVar("T")

_MAX_REPR = 80


def shown(value: Any) -> str:
    """``repr(value)``, shortened so a crafted megabyte-long string does not flood the message."""
    text = repr(value)
    return text if len(text) <= _MAX_REPR else text[: _MAX_REPR - 5] + "...'" + f" ({len(text)} chars)"


def fail(where: str, value: Any, expected: str) -> ConfigError:
    return ConfigError(f"config field {where!r} is {shown(value)}; expected {expected}.")


def whole(where: str, value: Any, low: int, high: int) -> int:
    """A whole number (not bool, not a string, not a float) in ``low..high``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail(where, value, f"a whole number in {low}..{high}")
    if not low <= value <= high:
        raise fail(where, value, f"a whole number in {low}..{high}")
    return value


def real(
    where: str, value: Any, low: float, high: float, *, low_open: bool = False, high_open: bool = False
) -> float:
    """A finite number (int or float, not bool or string) in the given interval."""
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise fail(where, value, f"a number in {interval}")
    number = float(value)
    too_low = number <= low if low_open else number < low
    too_high = number >= high if high_open else number > high
    if not math.isfinite(number) or too_low or too_high:
        raise fail(where, value, f"a finite number in {interval}")
    return number


def flag(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise fail(where, value, "true or false")
    return value


def text(where: str, value: Any, *, max_len: int, pattern: str | None = None, what: str = "") -> str:
    """A string of at most ``max_len`` characters without control characters, matching ``pattern``."""
    if not isinstance(value, str):
        raise fail(where, value, what or f"a string of at most {max_len} characters")
    if len(value) > max_len or any(ord(ch) < 32 and ch not in "\n\t" for ch in value):
        raise fail(where, value, what or f"a string of at most {max_len} printable characters")
    if pattern is not None and re.fullmatch(pattern, value) is None:
        raise fail(where, value, what or f"a string matching {pattern}")
    return value


def choice(where: str, value: Any, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise fail(where, value, "one of " + ", ".join(repr(c) for c in choices))
    return value


def optional(check: Callable[[str, Any], T]) -> Callable[[str, Any], T | None]:
    def checked(where: str, value: Any) -> T | None:
        return None if value is None else check(where, value)

    return checked


def fixed_tuple(where: str, value: Any, length: int, item: Callable[[str, Any], T]) -> tuple[T, ...]:
    """A list/tuple of exactly ``length`` items, each checked with ``item``."""
    if not isinstance(value, list | tuple) or len(value) != length:
        raise fail(where, value, f"a list of {length} items")
    return tuple(item(f"{where}[{i}]", v) for i, v in enumerate(value))


def section(where: str, value: Any) -> dict[str, Any]:
    """A JSON object (dict with string keys)."""
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise fail(where, value, "an object (a dict of named fields)")
    return value
