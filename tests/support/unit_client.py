"""A bare Socket.IO unit for protocol tests (the real field client is tested as a process)."""

from __future__ import annotations

import asyncio
from typing import Any, Callable

import socketio


class RawUnit:
    def __init__(self, url: str, unit_id: str, token: str) -> None:
        self.url, self.unit_id, self.token = url, unit_id, token
        self.sio = socketio.AsyncClient(reconnection=False)
        self.pending: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.events: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self.disconnected = asyncio.Event()
        self.sio.on("disconnect", lambda *args: self.disconnected.set(), namespace="/unit")
        self.sio.on("instructions_pending", self.pending.put_nowait, namespace="/unit")
        for name in ("talk", "talk_end"):
            self.sio.on(name, lambda data, n=name: self.events.put_nowait((n, data)), namespace="/unit")

    async def connect(self) -> "RawUnit":
        await self.sio.connect(self.url, namespaces=["/unit"], auth={"unit_id": self.unit_id, "token": self.token},
                               transports=["websocket"], wait_timeout=5)
        return self

    async def call(self, event: str, data: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self.sio.call(event, data, namespace="/unit", timeout=10)
        return result

    async def close(self) -> None:
        await self.sio.disconnect()

    async def until_disconnected(self, timeout: float = 5.0) -> None:
        """Wait until the server closes this unit's link (a revoked token, a disabled unit)."""
        await asyncio.wait_for(self.disconnected.wait(), timeout)


def _each(queue: asyncio.Queue[dict[str, Any]], key: str) -> Callable[[dict[str, Any]], None]:
    """A handler for a list event: queues each item of ``data[key]`` on its own."""

    def handler(data: dict[str, Any]) -> None:
        for item in data[key]:
            queue.put_nowait(item)

    return handler


class Console:
    """A python-socketio operator console collecting pushed events by name."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token
        self.sio = socketio.AsyncClient(reconnection=False)
        self.queues: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        for name in ("unit_status", "instruction_update", "alert", "alert_update", "action_update", "unit_callback",
                     "snapshot", "action_procedure"):
            q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
            self.queues[name] = q
            self.sio.on(name, q.put_nowait, namespace="/console")
        # Bursts of instruction changes arrive as one list event.
        self.sio.on("instruction_updates", _each(self.queues["instruction_update"], "instructions"),
                    namespace="/console")
        # Moved units arrive as one list event too; queued one unit at a time.
        self.queues["unit_positions"] = asyncio.Queue()
        self.sio.on("unit_positions", _each(self.queues["unit_positions"], "units"), namespace="/console")

    async def connect(self) -> "Console":
        await self.sio.connect(self.url, namespaces=["/console"], auth={"token": self.token}, transports=["websocket"])
        return self

    async def next(self, event: str, pred: Any = lambda d: True, timeout: float = 10) -> dict[str, Any]:
        async def find() -> dict[str, Any]:
            while True:
                d = await self.queues[event].get()
                if pred(d):
                    return d

        return await asyncio.wait_for(find(), timeout)

    async def close(self) -> None:
        await self.sio.disconnect()
