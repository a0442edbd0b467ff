"""The person at the unit: who sees a human order and answers it.

- :class:`TerminalOfficer`: an officer at the unit's terminal. Each order is printed in Chinese
  and English with a bell; the officer answers with a key and Enter::

      a [N]          确认 acknowledge (I have seen it)
      d [N]          完成 done
      r [N] REASON   拒绝 refuse, with the reason the command room will read
      l              列出 list the open orders
      n [NAME]       已告知 the spoken notice (全程录音录像告知) was given, by NAME if named

  ``N`` is the instruction's number (``#N`` on screen); without it the oldest open order is meant.
- :class:`AutoAck`: an unattended vehicle terminal (``--auto-ack``). It acknowledges that the
  order reached the terminal, and never claims that a human task was done.

Without either, a delivered order waits for nobody: the command room's overdue-acknowledgement
alert is what tells it so.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import Any, Awaitable, Callable, Protocol, TextIO

from geo.fix import Fix

from .answers import Answer, AnswerOutbox
from .errors import LinkError
from .orders import Order, describe

logger = logging.getLogger(__name__)

HELP = ("回复 Answer: a=确认 acknowledge   d=完成 done   r 原因=拒绝 refuse (reason)   l=列表 list   [+ #号 number]"
        "   n [姓名]=已告知 notice given")
MarkNotice = Callable[[str | None], Awaitable[dict[str, Any]]]


class Officer(Protocol):
    async def present(self, order: Order) -> None: ...


class AutoAck:
    def __init__(self, answers: AnswerOutbox) -> None:
        self._answers = answers

    async def present(self, order: Order) -> None:
        self._answers.report(Answer(order.id, "acknowledged", result={"by": "auto-ack"}))


class TerminalOfficer:
    def __init__(self, answers: AnswerOutbox, here: Callable[[], Fix | None], out: TextIO | None = None,
                 notice: MarkNotice | None = None) -> None:
        self._answers = answers
        self._here = here
        self._notice = notice
        self._sending: set[asyncio.Task[None]] = set()  # notices on their way; cancelled by run()'s end
        self._out = out or sys.stdout
        self._open: dict[int, Order] = {}  # by seq, oldest first
        self._acknowledged: set[str] = set()

    def _print(self, *lines: str) -> None:
        for line in lines:
            print(line, file=self._out)
        self._out.flush()

    async def present(self, order: Order) -> None:
        self._open[order.seq] = order
        self._print("\a", *describe(order, self._here()), HELP)

    def command(self, line: str) -> None:
        """One line the officer typed."""
        words = line.strip().split(maxsplit=2)
        if not words:
            return
        key = words[0].lower()
        if key in ("l", "list", "列表"):
            self._list()
            return
        if key in ("n", "notice", "告知"):
            self._mark_notice(" ".join(words[1:]).strip() or None)
            return
        if key not in ("a", "d", "r"):
            self._print(f"未知按键 unknown key {words[0]!r}", HELP)
            return
        rest = words[1:]
        seq = None
        if rest and rest[0].lstrip("#").isdigit():
            seq = int(rest.pop(0).lstrip("#"))
        order = self._open.get(seq) if seq is not None else next(iter(self._open.values()), None)
        if order is None:
            self._print("没有待处理的指令 no open instruction" + (f" #{seq}" if seq is not None else ""))
            return
        if key == "a":
            self._acknowledge(order)
            self._print(f"#{order.seq} 已确认 acknowledged")
        elif key == "d":
            self._acknowledge(order)
            self._answers.report(Answer(order.id, "done"))
            del self._open[order.seq]
            self._print(f"#{order.seq} 已完成 done")
        else:
            reason = " ".join(rest).strip()
            if not reason:
                self._print("拒绝需要说明原因 a refusal needs a reason: r [#号] 原因")
                return
            self._answers.report(Answer(order.id, "refused", reason=reason))
            del self._open[order.seq]
            self._print(f"#{order.seq} 已拒绝 refused: {reason}")

    def _acknowledge(self, order: Order) -> None:
        if order.id not in self._acknowledged:
            self._acknowledged.add(order.id)
            self._answers.report(Answer(order.id, "acknowledged"))

    def _mark_notice(self, officer: str | None) -> None:
        if self._notice is None:
            self._print("本终端不能标记告知 this terminal cannot mark the notice")
            return
        task = asyncio.get_running_loop().create_task(self._send_notice(self._notice, officer))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send_notice(self, notice: MarkNotice, officer: str | None) -> None:
        try:
            ack = await notice(officer)
        except LinkError as exc:
            self._print(f"告知未标记 notice not marked: {exc}")
            return
        self._print(f"已告知 notice marked ({ack.get('notice_at')}, {ack.get('marked_by')})")

    def _list(self) -> None:
        if not self._open:
            self._print("没有待处理的指令 no open instructions")
        for order in self._open.values():
            state = "已确认 acknowledged" if order.id in self._acknowledged else "待确认 to acknowledge"
            self._print(f"#{order.seq} {order.type} {state}: {order.payload.get('text') or order.payload}")

    async def run(self, stdin: TextIO | None = None) -> None:
        """Read the officer's commands from the terminal until cancelled (or the input ends)."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        # A duplicate, so closing the transport leaves the process's stdin open. The two share
        # the non-blocking flag the transport sets, and with it the shell that started us.
        pipe = os.fdopen(os.dup((stdin or sys.stdin).fileno()), "rb", buffering=0)
        was_blocking = os.get_blocking(pipe.fileno())
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
        try:
            while True:
                raw = await reader.readline()
                if not raw:
                    return
                self.command(raw.decode("utf-8", "replace"))
        finally:
            os.set_blocking(pipe.fileno(), was_blocking)
            transport.close()
            for task in list(self._sending):
                task.cancel()
            await asyncio.gather(*self._sending, return_exceptions=True)
