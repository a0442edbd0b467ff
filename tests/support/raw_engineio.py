"""An Engine.IO client written by hand, over a websocket: it sends exactly the text it is given,
so tests can send what no Socket.IO library would (malformed packets, reserved event names,
``NaN``) and see what the server answers."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp


class RawEngineIO:
    """A websocket Engine.IO client written by hand: it does what it is told and nothing else."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.opened = time.monotonic()

    @classmethod
    async def open(cls, http: aiohttp.ClientSession, url: str) -> RawEngineIO:
        ws = await http.ws_connect(f"{url}/socket.io/?EIO=4&transport=websocket")
        first = await asyncio.wait_for(ws.receive(), 5)
        assert first.type is aiohttp.WSMsgType.TEXT and first.data.startswith("0{"), first
        return cls(ws)

    async def send(self, text: str) -> None:
        await self.ws.send_str(text)

    async def receive_text(self) -> str:
        """The next text frame (pings are answered on the way)."""
        while True:
            msg = await asyncio.wait_for(self.ws.receive(), 5)
            assert msg.type is aiohttp.WSMsgType.TEXT, msg
            if msg.data == "2":
                await self.ws.send_str("3")
                continue
            return str(msg.data)

    async def join(self, namespace: str, auth: dict[str, Any]) -> None:
        """Connect to ``namespace`` (fails unless the server accepts)."""
        await self.send(f"40{namespace}," + json.dumps(auth))
        answer = await self.receive_text()
        assert answer.startswith(f"40{namespace},"), answer

    async def ack(self, namespace: str, packet_id: int) -> Any:
        """The acknowledgement ``43<namespace>,<id>[...]`` of a call, as data."""
        prefix = f"43{namespace},{packet_id}["
        while True:
            text = await self.receive_text()
            if text.startswith(prefix):
                return json.loads(text[len(prefix) - 1:])

    async def closed_after(self, limit_s: float) -> float:
        """Seconds from the handshake until the server closed the socket (pings are answered)."""
        async with asyncio.timeout(limit_s):
            while True:
                msg = await self.ws.receive()
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                    return time.monotonic() - self.opened
                if msg.type is aiohttp.WSMsgType.TEXT and msg.data == "2":
                    await self.ws.send_str("3")
