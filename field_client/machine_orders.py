"""Machine orders, carried out by the unit itself and reported with what happened.

- ``record_start``: publish camera and microphone (the server records whatever a unit publishes);
  ``done`` once media flows, ``refused`` if the unit has neither or the publish does not come up.
- ``record_stop``: stop publishing (the recording closes with a ``unit_stopped`` gap).
- ``snapshot``: a still from the camera into the evidence archive; ``done`` with its id and hash.
- ``callback``: the unit calls the command room back: its microphone is live in its stream, and
  operators are told to listen (and can answer with talk-back).
- ``end_action``: the unit's part of the action is over: it stops publishing.

Each returns the :class:`Answer` to report; nothing here raises for an order it cannot carry out.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from .answers import Answer
from .errors import FieldClientError
from .orders import Order

logger = logging.getLogger(__name__)

MEDIA_TIMEOUT_S = 30.0


class UnitControls(Protocol):
    @property
    def has_camera(self) -> bool: ...

    @property
    def has_microphone(self) -> bool: ...

    async def set_media(self, on: bool, timeout_s: float) -> bool: ...

    async def take_snapshot(self, order: Order) -> dict[str, Any]: ...

    async def call_back(self, order: Order) -> None: ...


class MachineOrders:
    def __init__(self, unit_id: str, controls: UnitControls) -> None:
        self.unit_id = unit_id
        self._controls = controls

    async def run(self, order: Order) -> Answer:
        handler = getattr(self, f"_{order.type}", None)
        if handler is None:
            return Answer(order.id, "refused", reason=f"本机不支持此指令 this unit cannot carry out {order.type!r}")
        try:
            answer: Answer = await handler(order)
        except (FieldClientError, OSError, ValueError, TimeoutError) as exc:
            logger.warning("unit %s: %s %s failed: %s", self.unit_id, order.type, order.id, exc)
            return Answer(order.id, "refused", reason=f"执行失败 failed: {exc}")
        return answer

    async def _media(self, order: Order, on: bool) -> Answer:
        c = self._controls
        if on and not (c.has_camera or c.has_microphone):
            return Answer(order.id, "refused", reason="本机没有摄像头和麦克风 no camera or microphone on this unit")
        if await c.set_media(on, MEDIA_TIMEOUT_S):
            return Answer(order.id, "done", result={"publishing": on})
        what = "推流未能开始 publishing did not start" if on else "推流未能停止 publishing did not stop"
        return Answer(order.id, "refused", reason=f"{what} within {MEDIA_TIMEOUT_S:.0f} s")

    async def _record_start(self, order: Order) -> Answer:
        return await self._media(order, True)

    async def _record_stop(self, order: Order) -> Answer:
        return await self._media(order, False)

    async def _end_action(self, order: Order) -> Answer:
        answer = await self._media(order, False)
        if answer.state == "done":
            return Answer(order.id, "done", result={"publishing": False, "ended": True})
        return answer

    async def _snapshot(self, order: Order) -> Answer:
        if not self._controls.has_camera:
            return Answer(order.id, "refused", reason="本机没有摄像头 no camera on this unit")
        result = await self._controls.take_snapshot(order)
        return Answer(order.id, "done", result=result)

    async def _callback(self, order: Order) -> Answer:
        if not self._controls.has_microphone:
            return Answer(order.id, "refused", reason="本机没有麦克风 no microphone on this unit")
        if not await self._controls.set_media(True, MEDIA_TIMEOUT_S):
            return Answer(order.id, "refused", reason="推流未能开始 publishing did not start")
        await self._controls.call_back(order)
        return Answer(order.id, "done", result={"audio": "live"})
