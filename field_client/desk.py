"""Where a delivered order goes: machine orders to the unit (carried out at once, in the
background, so a slow one does not hold up the next), human orders to the officer."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .answers import AnswerOutbox
from .machine_orders import MachineOrders
from .officer import Officer
from .orders import Order

logger = logging.getLogger(__name__)


class OrderDesk:
    def __init__(self, unit_id: str, machine: MachineOrders, answers: AnswerOutbox, officer: Officer | None) -> None:
        self.unit_id = unit_id
        self._machine = machine
        self._answers = answers
        self._officer = officer
        self._tasks: set[asyncio.Task[Any]] = set()

    async def arrived(self, order: Order) -> None:
        if order.is_machine:
            task = asyncio.create_task(self._carry_out(order), name=f"{self.unit_id}-{order.type}-{order.seq}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif self._officer is not None:
            await self._officer.present(order)
        else:
            logger.info("unit %s: instruction %s waits for an officer (no terminal here; --auto-ack acknowledges "
                        "unattended)", self.unit_id, order.id)

    async def _carry_out(self, order: Order) -> None:
        answer = await self._machine.run(order)
        self._answers.report(answer)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
