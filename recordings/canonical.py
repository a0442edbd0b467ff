"""The canonical JSON of ledger lines, tree heads and manifests: RFC 8785 (JCS).

One byte sequence per value, which any language can produce and check:

- objects: members sorted by their names' UTF-16 code units (for ASCII names, simply by byte),
  no whitespace, ``,`` and ``:`` as separators;
- strings: UTF-8; ``"`` and ``\\`` escaped with a backslash; U+0008, U+0009, U+000A, U+000C,
  U+000D as ``\\b \\t \\n \\f \\r``; every other code point below U+0020 as ``\\u00xx`` with
  lowercase hex; everything else (U+007F, non-ASCII, U+2028) as itself;
- numbers: integers in plain decimal; any other number as ECMAScript's ``Number.prototype.toString``
  writes it (the shortest digits that round-trip; ``25`` not ``25.0``, ``0.000001``, ``1e-7``,
  ``1e+21``); no NaN or infinity;
- ``true``, ``false``, ``null``.

Lines written before this form (archives and packages of 2026-11, "format 1") used Python's
``json.dumps`` with sorted keys: the same bytes, except that a non-integer-valued float could be
written differently (``25.0``, ``1e-05``, ``1e+16``). :func:`is_canonical` accepts both.
"""

from __future__ import annotations

import json
import math
from typing import Any

_ESCAPE = json.encoder.encode_basestring


def _string(s: str) -> str:
    # Python's escaping is RFC 8785's: \" \\ \b \f \n \r \t, other controls \u00xx in lowercase,
    # everything else as itself (with ensure_ascii off).
    text: str = _ESCAPE(s)
    return text


def es_number(x: float) -> str:
    """``x`` as ECMAScript's Number.prototype.toString writes it (RFC 8785 §3.2.2.3)."""
    if math.isnan(x) or math.isinf(x):
        raise ValueError("NaN and infinity have no JSON form")
    if x == 0:
        return "0"
    sign = "-" if x < 0 else ""
    digits, exponent = _shortest(abs(x))
    k = len(digits)
    n = exponent + k  # the decimal point sits after n digits
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * -n + digits
    e = n - 1
    mantissa = digits[0] + ("." + digits[1:] if k > 1 else "")
    return f"{sign}{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"


def _shortest(x: float) -> tuple[str, int]:
    """The shortest round-trip digits of ``x`` > 0 (Python's ``repr``) and the exponent of the last."""
    mantissa, _, exp = repr(x).partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    exponent = (int(exp) if exp else 0) - len(frac)
    stripped = digits.rstrip("0")
    exponent += len(digits) - len(stripped)
    return stripped or "0", exponent


def _encode(obj: Any, out: list[str]) -> None:
    if obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif isinstance(obj, str):
        out.append(_string(obj))
    elif isinstance(obj, int):
        out.append(str(int(obj)))
    elif isinstance(obj, float):
        out.append(es_number(obj))
    elif isinstance(obj, dict):
        out.append("{")
        first = True
        for key in sorted(obj, key=_utf16_key):
            if not isinstance(key, str):
                raise TypeError(f"object keys must be strings, not {type(key).__name__}")
            if not first:
                out.append(",")
            first = False
            out.append(_string(key))
            out.append(":")
            _encode(obj[key], out)
        out.append("}")
    elif isinstance(obj, (list, tuple)):
        out.append("[")
        for i, item in enumerate(obj):
            if i:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:
        raise TypeError(f"{type(obj).__name__} has no JSON form")


def _utf16_key(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def canonical_json(obj: Any) -> bytes:
    """The RFC 8785 bytes of ``obj`` (dicts, lists, str, int, float, bool, None)."""
    out: list[str] = []
    _encode(obj, out)
    return "".join(out).encode("utf-8")


def legacy_json(obj: Any) -> bytes:
    """What format 1 wrote: Python's ``json.dumps`` with sorted keys (see the module docstring)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def is_canonical(obj: Any, line: bytes) -> bool:
    """``line`` is ``obj`` in canonical form, or in the form of format 1."""
    try:
        return canonical_json(obj) == line or legacy_json(obj) == line
    except (TypeError, ValueError):
        return False
