"""Many simulated units in one process (``--fleet N``), sharing one pre-encoded loop per codec.

A fleet is a load generator: its units forward pre-encoded frames and never encode, so the
CPU it uses stays small next to the server it measures.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from pathlib import Path
from typing import Sequence

from .config import UnitConfig
from .loop_cache import LoopCache
from .unit import cancel_and_wait, run_unit

logger = logging.getLogger(__name__)

FLEET_LABEL = "FLEET"


def read_token_file(path: Path, count: int) -> list[tuple[str, str]]:
    """The first ``count`` ``unit_id token`` lines of ``path`` (blank and ``#`` lines skipped)."""
    pairs: list[tuple[str, str]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{path}:{number}: expected 'unit_id token', got {len(parts)} fields")
        pairs.append((parts[0], parts[1]))
        if len(pairs) == count:
            return pairs
    raise ValueError(f"{path}: --fleet {count} needs {count} 'unit_id token' lines, found {len(pairs)}")


def per_unit_log(path: Path | None, unit_id: str) -> Path | None:
    """``applied.jsonl`` -> ``applied.<unit_id>.jsonl``: each fleet unit dedupes on its own."""
    if path is None:
        return None
    return path.with_name(f"{path.stem}.{unit_id}{path.suffix}")


def fleet_configs(template: UnitConfig, units: Sequence[tuple[str, str]]) -> list[UnitConfig]:
    """One config per ``(unit_id, token)``, otherwise equal to ``template``. All share the
    test-pattern label so that they share one encoded loop."""
    label = template.pattern_label if template.pattern_label is not None else FLEET_LABEL
    return [
        dataclasses.replace(template, unit_id=unit_id, token=token, pattern_label=label,
                            applied_log=per_unit_log(template.applied_log, unit_id))
        for unit_id, token in units
    ]


async def run_fleet(configs: Sequence[UnitConfig], stop: asyncio.Event, *,
                    loops: LoopCache | None = None, stagger_s: float = 0.05,
                    rng: random.Random | None = None) -> None:
    """Run every unit until ``stop`` is set; unit ``k`` starts ``k * stagger_s`` seconds late
    so the server does not get every offer in the same instant.

    Units without an explicit ``pattern_label`` are labelled ``FLEET``, so units with the same
    codec and size share one pre-encoded loop instead of building one each (~1.5 s of CPU and
    ~2 MB per loop at 640x480).
    """
    configs = [c if c.pattern_label is not None else dataclasses.replace(c, pattern_label=FLEET_LABEL)
               for c in configs]
    loops = loops or LoopCache()
    rng = rng or random.Random()
    logger.info("fleet of %d units starting", len(configs))

    async def one(index: int, cfg: UnitConfig) -> None:
        try:
            await asyncio.wait_for(stop.wait(), timeout=index * stagger_s)
            return  # stopped before this unit started
        except TimeoutError:
            pass
        await run_unit(cfg, stop, loops=loops, rng=random.Random(rng.random()))

    tasks = [asyncio.create_task(one(i, cfg), name=f"fleet-{cfg.unit_id}") for i, cfg in enumerate(configs)]
    try:
        results = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for t in tasks:
            await cancel_and_wait(t)
    for cfg, result in zip(configs, results, strict=True):
        if isinstance(result, Exception):
            logger.error("unit %s: ended with %r", cfg.unit_id, result)
    logger.info("fleet stopped")
