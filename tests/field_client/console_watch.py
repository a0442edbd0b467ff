"""Test helper: follow units' state as the server pushes it to the operator console."""

from __future__ import annotations

import asyncio
from typing import Any, Callable

import aiohttp
import socketio

Unit = dict[str, Any]


def publishing(unit: Unit) -> bool:
    return bool(unit["publishing"])


def not_publishing(unit: Unit) -> bool:
    return not unit["publishing"]


class ConsoleWatch:
    """A ``/console`` connection keeping the latest state of every unit (``roster`` and
    ``unit_status`` events); :meth:`until` waits for a unit state without polling."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False, handle_sigint=False)
        self.units: dict[str, Unit] = {}
        self._changed = asyncio.Event()
        self.sio.on("roster", self._roster, namespace="/console")
        self.sio.on("unit_status", self._status, namespace="/console")

    async def _roster(self, data: dict[str, Any]) -> None:
        for unit in data["units"]:
            await self._status(unit)

    async def _status(self, unit: Unit) -> None:
        self.units[unit["id"]] = unit
        self._changed.set()

    async def connect(self, url: str, token: str) -> None:
        await self.sio.connect(url, auth={"token": token}, namespaces=["/console"],
                               transports=["websocket"], wait_timeout=10)

    async def close(self) -> None:
        await self.sio.disconnect()

    async def until(self, unit_id: str, pred: Callable[[Unit], bool], timeout: float = 30) -> Unit:
        async with asyncio.timeout(timeout):
            while True:
                unit = self.units.get(unit_id)
                if unit is not None and pred(unit):
                    return unit
                self._changed.clear()
                await self._changed.wait()


async def api_units(url: str, token: str) -> dict[str, Unit]:
    """``GET /api/units`` as ``{unit_id: unit}``."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/api/units", headers={"Authorization": f"Bearer {token}"}) as resp:
            assert resp.status == 200, await resp.text()
            return {u["id"]: u for u in (await resp.json())["units"]}
