"""Field unit client: publishes a unit's video, audio and GPS to the dispatch server.

Library use (the server's demo mode runs simulated units in-process)::

    stop = asyncio.Event()
    await run_unit(UnitConfig(server="http://127.0.0.1:8080", unit_id="bc-01", token="..."), stop)
"""

from .config import UnitConfig
from .unit import run_unit

__all__ = ["UnitConfig", "run_unit"]
