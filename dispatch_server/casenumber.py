"""Court case numbers (执行案号) such as ``（2026）冀0916执123号``.

Form: a year in brackets, the court's province abbreviation and numeric code, the case type
(执, optionally with a qualifier such as 恢 resumed, 保 preservation, 异 objection, 复 review,
监 supervision), a serial number and 号. ASCII ``()`` and ``〔〕`` brackets are accepted and the
number is stored with full-width ``（）`` brackets, the form printed on court documents.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼兵"
_RE = re.compile(
    r"^\s*[（(〔\[]\s*(?P<year>\d{4})\s*[）)〕\]]\s*"
    rf"(?P<prov>[{PROVINCES}])(?P<court>\d{{2,6}})"
    r"(?P<kind>执(?:恢|保|异|复|监|协|他|行|字)?)"
    r"(?P<serial>\d{1,7})号\s*$"
)


class CaseNumberError(ValueError):
    pass


@dataclass(frozen=True)
class CaseNumber:
    year: int
    province: str
    court_code: str
    kind: str
    serial: int

    def __str__(self) -> str:
        return f"（{self.year}）{self.province}{self.court_code}{self.kind}{self.serial}号"


def parse_case_number(text: str) -> CaseNumber:
    """Parse and normalise; raise :class:`CaseNumberError` saying what a valid number looks like."""
    if not isinstance(text, str):
        raise CaseNumberError("case number must be text such as （2026）冀0916执123号")
    m = _RE.match(text)
    if not m:
        raise CaseNumberError(
            f"case number {text[:60]!r} does not parse: expected the form （2026）冀0916执123号 "
            "(year in brackets, province and court code, 执 with an optional qualifier, serial, 号)"
        )
    year = int(m["year"])
    if not 1990 <= year <= 2100:
        raise CaseNumberError(f"case number year {year} is out of range")
    return CaseNumber(year, m["prov"], m["court"], m["kind"], int(m["serial"]))
