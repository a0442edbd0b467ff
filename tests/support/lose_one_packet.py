"""A publisher's network that loses one video packet and its first retransmission (and, if asked,
every new packet after a few more): for tests of how the server recovers it."""

from __future__ import annotations

import asyncio
from typing import Any

from aiortc.rtp import is_rtcp

from media.rtpwire import parse_rtp


class LoseOnePacket:
    """Installed on ``sender``'s DTLS transport (an aiortc publisher in the test's process):
    the ``nth`` RTP packet sent is lost, and so is the first retransmission of it; from packet
    ``quiet_after`` on (if given) no new packet is sent, only retransmissions."""

    def __init__(self, sender: Any, nth: int = 100, quiet_after: int | None = None) -> None:
        self.nth = nth
        self.quiet_after = quiet_after
        self.sent = 0  # new packets the publisher handed to its transport
        self.lost: int | None = None  # the sequence number lost
        self.tries = 0  # retransmissions of it
        self.first_retransmission_lost = asyncio.Event()
        transport = sender.transport
        self._send = transport._send_rtp
        setattr(transport, "_send_rtp", self._lossy_send)  # noqa: B010 - the test's own network

    async def _lossy_send(self, data: bytes) -> None:
        if not is_rtcp(data):
            view = parse_rtp(data)
            assert view is not None
            if self.lost is not None and view.sequence_number == self.lost:
                self.tries += 1
                if self.tries == 1:
                    self.first_retransmission_lost.set()
                    return
            else:
                self.sent += 1
                if self.sent == self.nth:
                    self.lost = view.sequence_number
                    return
                if self.quiet_after is not None and self.sent > self.quiet_after:
                    return
        await self._send(data)
