"""What a verifier found: failures (the check fails) and warnings (worth a look).

Shared by the archive verifier (:mod:`recordings.verify`) and the package verifier
(:mod:`recordings.package_verify`); ``docs/archive-format.md`` lists every kind.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Finding:
    kind: str  # missing, altered, extra, out_of_order, bad_entry, chain_broken, bad_signature, ...
    item: str  # a path under the archive, "entry <index>", "entries <a>..<b>" or "sth line <n>"
    message: str

    def __str__(self) -> str:
        return f"{self.kind} {self.item}: {self.message}"


@dataclass
class Findings:
    """What a verifier found: failures (the check fails) and warnings (worth a look)."""

    failures: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def fail(self, kind: str, item: str, message: str) -> None:
        self.failures.append(Finding(kind, item, message))

    def warn(self, kind: str, item: str, message: str) -> None:
        self.warnings.append(Finding(kind, item, message))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ok"] = self.ok
        return d
