"""The one JSON reader for everything a client sends: HTTP bodies and Socket.IO event data.

Python's ``json`` accepts ``NaN``, ``Infinity`` and ``-Infinity`` (which no browser can parse back,
so one stored ``NaN`` breaks every list that contains it), integers of any length (a 400-digit
``ttl_s`` reached arithmetic that raised), and nesting until the interpreter's recursion limit.
Here every such value is refused with a ``400 bad_json`` whose message names the field, before any
service sees it:

- numbers must be finite, and integers at most :data:`MAX_INT_DIGITS` digits long;
- objects and arrays nest at most :data:`MAX_DEPTH` deep.
"""

from __future__ import annotations

import json
import math
from typing import Any

from .errors import BadRequest

MAX_DEPTH = 32
MAX_INT_DIGITS = 18  # below 2**63: every integer a client may send fits a 64-bit column


class _Refused:
    """What the parser puts where a refused number was, so the walk can name its field."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _constant(text: str) -> _Refused:
    return _Refused(text)


def _int(text: str) -> int | _Refused:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        return _Refused(f"{text[:12]}… ({len(text)} digits)")
    return int(text)


def _float(text: str) -> float | _Refused:
    value = float(text)
    return value if math.isfinite(value) else _Refused(text[:24])


def _path(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else key


def check(value: Any, what: str = "request body") -> None:
    """Refuse non-finite or oversized numbers and deep nesting in already-parsed data."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, _Refused):
            raise BadRequest(f"{what}: field {path or '(top)'}: {item.text} is not allowed "
                             f"(numbers must be finite, integers at most {MAX_INT_DIGITS} digits)", code="bad_json")
        if isinstance(item, float) and not math.isfinite(item):
            raise BadRequest(f"{what}: field {path or '(top)'} must be a finite number", code="bad_json")
        if isinstance(item, int) and not isinstance(item, bool) and len(str(abs(item))) > MAX_INT_DIGITS:
            raise BadRequest(f"{what}: field {path or '(top)'}: integer of more than {MAX_INT_DIGITS} digits",
                             code="bad_json")
        if isinstance(item, (dict, list)):
            if depth >= MAX_DEPTH:
                raise BadRequest(f"{what}: field {path or '(top)'} nests deeper than {MAX_DEPTH} levels",
                                 code="bad_json")
            children = item.items() if isinstance(item, dict) else enumerate(item)
            stack.extend((child, _path(path, key), depth + 1) for key, child in children)


def loads(raw: bytes | str, what: str = "request body") -> Any:
    """Parse untrusted JSON; ``BadRequest`` (``bad_json``) naming what is wrong and where."""
    try:
        value = json.loads(raw, parse_constant=_constant, parse_int=_int, parse_float=_float)
    except RecursionError:
        raise BadRequest(f"{what} nests deeper than {MAX_DEPTH} levels", code="bad_json") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"{what} is not valid JSON: {exc}", code="bad_json") from exc
    check(value, what)
    return value
