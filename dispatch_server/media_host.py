"""Where a node's media sessions run: the small interface the live path and talk-back use.

:class:`LocalMediaHost` runs peer connections and the relay in this process (``[media] workers
= 0``, and inside each media worker). :class:`dispatch_server.media_workers.MediaWorkers` hands
them to worker processes, one unit per worker. Either way a session answers an offer and ends
exactly once, calling ``on_end(session, reason)``; the rules (who may publish or watch, revocation,
gaps in recordings) stay with the caller.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from media.relay import Relay
from media.session import PublisherSession, ViewerSession
from recordings.source import FrameSource

OnEnd = Callable[[Any, str], None]


class HostedSession(Protocol):
    """A publisher or viewer session, local or in a worker."""

    @property
    def id(self) -> str: ...

    @property
    def unit_id(self) -> str: ...

    @property
    def ended_reason(self) -> str | None: ...

    async def close(self, reason: str = "closed", settle_s: float = 0.0) -> None: ...  # settle_s: see PublisherSession


class HostedPublisher(HostedSession, Protocol):
    @property
    def codecs(self) -> dict[str, str]: ...  # kind -> mime type

    @property
    def channel(self) -> FrameSource: ...  # what the recorder taps

    @property
    def pc(self) -> Any: ...  # the peer connection in this process, None in a worker

    def media_silence_s(self) -> float: ...

    async def packet_counts(self) -> tuple[int, int] | None: ...  # (lost, received) RTP packets; None: unknown here


class HostedViewer(HostedSession, Protocol):
    @property
    def viewer(self) -> str: ...


class MediaHost(Protocol):
    """Answers publish and watch offers for a channel (a unit's, or ``talk:<unit>``)."""

    relay: Relay  # this process's own relay: pulls from other nodes feed it

    async def publish(self, unit_id: str, channel_id: str, offer_sdp: str, timeout_s: float,
                      on_end: OnEnd) -> tuple[HostedPublisher, str]:
        """Raises :class:`media.errors.SdpError` for an offer it cannot take."""
        ...

    async def watch(self, unit_id: str, channel_id: str, offer_sdp: str, on_end: OnEnd,
                    viewer: str) -> tuple[HostedViewer, str]:
        """Raises :class:`media.errors.SdpError` or :class:`media.errors.CodecMismatch`."""
        ...

    def counters(self) -> dict[str, dict[str, int]]:
        """Cumulative relay counters by kind (``media.relay.Relay.counters``), over every process."""
        ...

    def take_first_frames(self) -> list[float]:
        """Viewers' first-frame delays since the last call (``Relay.take_first_frames``)."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class LocalMediaHost:
    """Peer connections and relay channels in this process."""

    def __init__(self, relay: Relay, ice_servers: list[dict[str, Any]]) -> None:
        self.relay = relay
        self._ice_servers = ice_servers

    async def publish(self, unit_id: str, channel_id: str, offer_sdp: str, timeout_s: float,
                      on_end: OnEnd) -> tuple[PublisherSession, str]:
        return await PublisherSession.accept(unit_id=unit_id, offer_sdp=offer_sdp,
                                             channel=self.relay.channel(channel_id), ice_servers=self._ice_servers,
                                             timeout_s=timeout_s, on_end=on_end)

    async def watch(self, unit_id: str, channel_id: str, offer_sdp: str, on_end: OnEnd,
                    viewer: str) -> tuple[ViewerSession, str]:
        return await ViewerSession.accept(unit_id=unit_id, offer_sdp=offer_sdp, channel=self.relay.channel(channel_id),
                                          ice_servers=self._ice_servers, on_end=on_end, viewer=viewer)

    def counters(self) -> dict[str, dict[str, int]]:
        return self.relay.counters()

    def take_first_frames(self) -> list[float]:
        return self.relay.take_first_frames()

    async def start(self) -> None:
        self.relay.start()

    async def close(self) -> None:
        await self.relay.close()
