"""Viewers on any node: this node pulls a unit's stream once from the node the unit publishes on,
and its own viewers of the unit share that one pull through the unit's local relay channel.

A pull is one owned task per unit. It finds the owner in presence, signs a node token
(:mod:`dispatch_server.node_tokens`), POSTs a WHEP offer to the owner's advertised URL
(``[cluster] advertise_url``, kept in Redis beside the node's heartbeat) and attaches the answer's
tracks as the channel's sources (:class:`media.upstream.UpstreamSession`). Keyframe requests of this
node's viewers go upstream as PLIs, which the owner hands on to the unit.

When the source ends (the owner died, the unit stopped or moved) and viewers remain, the pull
looks for the unit's owner again and retries with capped exponential backoff and jitter; the
viewers stay attached to the channel and get frames again without negotiating anew. With no
viewer left for ``pull_linger_s`` the pull ends. A unit that starts publishing on this node ends
its pull (the publisher replaces the source).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from media.relay import Channel, Relay
from media.upstream import UpstreamSession

from .config import ClusterConfig
from .errors import Conflict, Unavailable
from .node_tokens import NodeTokens
from .stores.presence import PresenceStore

logger = logging.getLogger(__name__)

FIRST_RETRY_S = 0.25
CHECK_INTERVAL_S = 0.25


class PullFailed(Exception):
    """One attempt to pull from the owner failed; the message says why."""


@dataclass
class Pull:
    unit_id: str
    channel: Channel
    owner: str = ""  # the node pulled from now (or last)
    session: UpstreamSession | None = None
    settled: asyncio.Event = field(default_factory=asyncio.Event)  # the first attempt succeeded or failed
    error: str = ""  # why the last attempt failed
    attempts: int = 0
    attached_once: bool = False  # the channel has had this pull's media (its codecs are known)
    task: asyncio.Task[None] | None = None
    no_viewers_since: float | None = None


class Pulls:
    """The pulls of this node, by unit."""

    def __init__(self, relay: Relay, presence: PresenceStore, tokens: NodeTokens, config: ClusterConfig,
                 ice_servers: list[dict[str, Any]], publisher_timeout_s: float) -> None:
        self._relay = relay
        self._presence = presence
        self._tokens = tokens
        self._config = config
        self._ice_servers = ice_servers
        self._timeout_s = publisher_timeout_s
        self.pulls: dict[str, Pull] = {}
        self._http: aiohttp.ClientSession | None = None
        self._deletes: set[asyncio.Task[None]] = set()
        self._closed = False
        self.started = 0  # pulls opened to an owner (each successful attempt), for metrics and tests

    @property
    def enabled(self) -> bool:
        return self._tokens.enabled

    def serving(self, unit_id: str) -> bool:
        """Whether a pull of the unit feeds its channel now."""
        pull = self.pulls.get(unit_id)
        return pull is not None and pull.session is not None and pull.session.ended_reason is None

    async def ensure(self, unit_id: str, owner: str) -> Channel:
        """The unit's channel, fed by a pull from ``owner`` (started now unless one runs). Waits for
        the owner's answer; raises :class:`Unavailable` (503 ``pull_failed``) naming the owner when
        the first attempt fails, and :class:`Conflict` when pulling is disabled."""
        if not self.enabled:
            raise Conflict(f"unit {unit_id!r} publishes on node {owner!r}; watch it there "
                           "(this node pulls no streams: cluster.secret is empty)", code="publishing_elsewhere")
        if self._closed:
            raise Unavailable("server is shutting down", code="shutting_down")
        pull = self.pulls.get(unit_id)
        if pull is None or pull.task is None or pull.task.done():
            pull = self.pulls[unit_id] = Pull(unit_id, self._relay.channel(unit_id), owner)
            pull.task = asyncio.get_running_loop().create_task(self._run(pull), name=f"pull-{unit_id}")
        pull.no_viewers_since = None
        try:
            await asyncio.wait_for(pull.settled.wait(), self._config.pull_connect_timeout_s)
        except TimeoutError:
            raise Unavailable(f"unit {unit_id!r} publishes on node {owner!r}, whose media did not arrive within "
                              f"{self._config.pull_connect_timeout_s:g} s", code="pull_failed") from None
        if pull.session is None and pull.error:
            raise Unavailable(f"unit {unit_id!r} publishes on node {owner!r}, which could not be pulled from: "
                              f"{pull.error}", code="pull_failed")
        return pull.channel

    def running(self, unit_id: str) -> bool:
        """Whether a pull of the unit runs (feeding the channel, or looking for the unit's owner
        again while its viewers wait)."""
        pull = self.pulls.get(unit_id)
        return pull is not None and pull.task is not None and not pull.task.done() and pull.attached_once

    async def stop(self, unit_id: str) -> None:
        """The unit publishes on this node now: its pull is not needed."""
        pull = self.pulls.get(unit_id)
        if pull is not None and pull.task is not None:
            pull.task.cancel()
            await asyncio.gather(pull.task, return_exceptions=True)

    # the pull's own task ----------------------------------------------------------------
    async def _run(self, pull: Pull) -> None:
        delay = FIRST_RETRY_S
        try:
            while True:
                if pull.owner:
                    try:
                        await self._attempt(pull)
                        delay = FIRST_RETRY_S
                    except PullFailed as exc:
                        pull.error = str(exc)
                        logger.info("unit %s: pull from node %s failed: %s", pull.unit_id, pull.owner, exc)
                    finally:
                        pull.settled.set()
                    if pull.session is not None:
                        reason = await self._follow(pull)
                        pull.session = None
                        if reason is None:
                            return  # no viewer left
                        logger.info("unit %s: pulled source from node %s ended (%s); viewers wait",
                                    pull.unit_id, pull.owner, reason)
                if self._idle(pull):
                    return
                await asyncio.sleep(delay * (0.5 + random.random() / 2))
                delay = min(delay * 2, self._config.pull_retry_max_s)
                owner = await self._owner(pull.unit_id)
                if owner == self._presence.node:
                    return  # the unit publishes here now
                pull.owner = owner or ""
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("unit %s: pull failed", pull.unit_id)
        finally:
            if pull.session is not None:
                await pull.session.close("pull ended")
            if self.pulls.get(pull.unit_id) is pull:
                del self.pulls[pull.unit_id]
            pull.settled.set()

    def _idle(self, pull: Pull) -> bool:
        """No viewer of the unit for ``pull_linger_s`` (checked once per call)."""
        viewers = sum(f.viewer_count for f in pull.channel.fanouts)
        now = time.monotonic()
        if viewers:
            pull.no_viewers_since = None
            return False
        if pull.no_viewers_since is None:
            pull.no_viewers_since = now
        return now - pull.no_viewers_since >= self._config.pull_linger_s

    async def _follow(self, pull: Pull) -> str | None:
        """Wait while the pull runs: the reason its source ended, or None when no viewer is left."""
        session = pull.session
        assert session is not None
        while session.ended_reason is None:
            if self._idle(pull):
                await session.close("no viewer left")
                logger.info("unit %s: pull from node %s ended: no viewer left", pull.unit_id, pull.owner)
                return None
            await asyncio.sleep(CHECK_INTERVAL_S)
        return session.ended_reason

    async def _owner(self, unit_id: str) -> str | None:
        try:
            p = await self._presence.get(unit_id)
        except Exception as exc:  # Redis hiccup: try again at the next round
            logger.warning("unit %s: presence read failed: %s", unit_id, exc)
            return None
        return p.node if p is not None and p.publishing else None

    async def _attempt(self, pull: Pull) -> None:
        pull.attempts += 1
        base = await self._presence.node_url(pull.owner)
        if not base:
            raise PullFailed(f"node {pull.owner!r} advertises no URL (dead, or cluster.advertise_url unset)")
        http = self._client()
        location: list[str] = []

        async def post_offer(sdp: str) -> str:
            headers = {"Content-Type": "application/sdp",
                       "Authorization": f"Bearer {self._tokens.sign(pull.unit_id)}"}
            try:
                async with http.post(f"{base}/whep/{pull.unit_id}", data=sdp, headers=headers) as resp:
                    body = await resp.text()
                    if resp.status != 201:
                        raise PullFailed(f"{base} answered {resp.status}: {body[:300]}")
                    location.append(resp.headers.get("Location", ""))
                    return body
            except aiohttp.ClientError as exc:
                raise PullFailed(f"{base} unreachable: {exc.__class__.__name__}: {exc}") from exc

        def ended(session: Any, reason: str) -> None:
            if location and location[0]:
                self._spawn_delete(base, location[0], pull.unit_id)

        try:
            pull.session = await UpstreamSession.connect(
                unit_id=pull.unit_id, channel=pull.channel, ice_servers=self._ice_servers,
                timeout_s=self._timeout_s, post_offer=post_offer, on_end=ended)
        except PullFailed:
            raise
        except TimeoutError as exc:
            raise PullFailed(f"{base} did not answer in time") from exc
        except Exception as exc:  # aiortc raises assorted errors on answers it cannot take
            raise PullFailed(f"{exc.__class__.__name__}: {exc}") from exc
        pull.error = ""
        pull.attached_once = True
        self.started += 1
        logger.info("unit %s: pulling from node %s (%s)", pull.unit_id, pull.owner, base)

    def _spawn_delete(self, base: str, location: str, unit_id: str) -> None:
        """End the owner's viewer session of a finished pull (it would end by itself when the
        peer connection closes; this frees it at once). Owned by the set of deletes in flight."""
        task = asyncio.get_running_loop().create_task(self._delete(base + location, unit_id))
        self._deletes.add(task)
        task.add_done_callback(self._deletes.discard)

    async def _delete(self, url: str, unit_id: str) -> None:
        if self._http is None or self._http.closed:
            return
        try:
            async with self._http.delete(url, headers={"Authorization": f"Bearer {self._tokens.sign(unit_id)}"},
                                         timeout=aiohttp.ClientTimeout(total=5)) as resp:
                await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.debug("unit %s: DELETE %s failed: %s", unit_id, url, exc)

    def _client(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        return self._http

    async def close(self) -> None:
        """End every pull and the HTTP client. Idempotent."""
        self._closed = True
        tasks = [p.task for p in self.pulls.values() if p.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._deletes:
            await asyncio.wait(list(self._deletes), timeout=2.0)
        for task in list(self._deletes):
            task.cancel()
        await asyncio.gather(*self._deletes, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
            self._http = None
