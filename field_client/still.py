"""Stills for ``snapshot`` orders: the last picture the unit's camera produced, as a JPEG, and its
upload to the server's evidence archive (``POST /api/units/{unit_id}/snapshots``).

The camera is whatever the unit publishes: for the pre-encoded test pattern the last keyframe
sent (decoded here: a client may decode, the server never does); for a device or a file the
last decoded frame on its way to the encoder (:class:`~field_client.sources.FrameTap`). When the camera is off (no
publish running) there is nothing to take, and the order is refused with that reason.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import quote

import aiohttp
import av
import cv2
import numpy as np

from utctime import iso_millis

from .codec import normalize_codec

logger = logging.getLogger(__name__)

JPEG_QUALITY = 90
DECODERS = {"vp8": "vp8", "h264": "h264"}


class StillCamera:
    def __init__(self, codec: str) -> None:
        self._codec = normalize_codec(codec)
        self._keyframe: bytes | None = None
        self._frame: av.VideoFrame | None = None
        self._ready = asyncio.Event()

    def on_packet(self, data: bytes, keyframe: bool) -> None:
        """Sees every encoded packet the test-pattern track sends (a :class:`EncodedVideoTrack` hook)."""
        if keyframe:
            self._keyframe = data
            self._ready.set()

    def on_frame(self, frame: av.VideoFrame) -> None:
        self._frame = frame
        self._ready.set()

    def clear(self) -> None:
        """The camera stopped (publish ended): an old picture must not pass for a new one."""
        self._keyframe = None
        self._frame = None
        self._ready.clear()

    @property
    def ready(self) -> bool:
        return self._frame is not None or self._keyframe is not None

    async def wait_ready(self, timeout_s: float) -> bool:
        """Wait for the camera's first picture (a publish that just started has none yet)."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def jpeg(self) -> bytes | None:
        """The newest picture as JPEG, or None when the camera has produced nothing."""
        frame, keyframe = self._frame, self._keyframe
        if frame is None and keyframe is None:
            return None
        return await asyncio.to_thread(self._encode, frame, keyframe)

    def _encode(self, frame: av.VideoFrame | None, keyframe: bytes | None) -> bytes:
        if frame is None:
            assert keyframe is not None
            decoder: Any = av.CodecContext.create(DECODERS[self._codec], "r")
            frames = decoder.decode(av.Packet(keyframe))
            if not frames:
                raise ValueError("the camera's last keyframe does not decode")
            frame = frames[0]
        image: np.ndarray = frame.to_ndarray(format="bgr24")
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise ValueError("JPEG encoding failed")
        return bytes(jpeg.tobytes())


async def upload_snapshot(http: aiohttp.ClientSession, server: str, unit_id: str, token: str, jpeg: bytes,
                          instruction_id: str | None, taken_at: float, timeout_s: float = 30.0) -> dict[str, Any]:
    """Send a still to the server's archive; the server's answer (``snapshot_id``, ``sha256``...).

    Raises ``ValueError`` with the server's message when it refuses, ``aiohttp.ClientError`` or
    ``TimeoutError`` when it cannot be reached.
    """
    params = {"taken_at": iso_millis(taken_at)}
    if instruction_id:
        params["instruction"] = instruction_id
    url = f"{server}/api/units/{quote(unit_id, safe='')}/snapshots"
    async with http.post(url, data=jpeg, params=params, timeout=aiohttp.ClientTimeout(total=timeout_s),
                         headers={"Authorization": f"Bearer {token}", "Content-Type": "image/jpeg"}) as resp:
        body: Any = await resp.json(content_type=None)
        if resp.status != 201 or not isinstance(body, dict):
            error = body.get("error", {}) if isinstance(body, dict) else {}
            raise ValueError(f"HTTP {resp.status}: {error.get('message') or body!r:.200}")
        return body
