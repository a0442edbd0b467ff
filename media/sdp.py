"""Validation of SDP offers before they reach aiortc, which accepts almost anything.

Every rejection says exactly what is wrong, so a field technician reading a WHIP client's log
can fix it: a missing ``m=`` section, no ICE credentials, no DTLS fingerprint, no codec we can
forward, or a direction that does not fit publishing or viewing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Literal

from aiortc.sdp import SessionDescription

from .errors import SdpError

# Codecs the relay forwards without transcoding, by kind (lower-case encoding names).
FORWARDABLE = {"video": ("vp8", "h264"), "audio": ("opus",)}
_SEND = {"sendonly", "sendrecv"}
_RECV = {"recvonly", "sendrecv"}
_LINE = re.compile(r"^[a-z]=")


@dataclass(frozen=True)
class MediaSummary:
    kind: str
    direction: str
    codecs: tuple[str, ...]  # lower-case encoding names in offer order


@dataclass(frozen=True)
class OfferSummary:
    media: tuple[MediaSummary, ...]


def check_offer(sdp: str, role: Literal["publish", "view"]) -> OfferSummary:
    """Validate an offer for publishing (WHIP) or viewing (WHEP); raise :class:`SdpError` naming the problem."""
    if not isinstance(sdp, str) or not sdp.strip():
        raise SdpError("empty SDP offer")
    if "\x00" in sdp:
        raise SdpError("SDP contains a NUL byte")
    lines = [ln for ln in sdp.replace("\r\n", "\n").split("\n") if ln]
    if not lines or lines[0].strip() != "v=0":
        raise SdpError("not an SDP offer: the first line must be 'v=0'")
    for n, ln in enumerate(lines, 1):
        if not _LINE.match(ln):
            raise SdpError(f"line {n} is not of the form '<letter>=<value>': {ln[:60]!r}")
    sections: list[list[str]] = [[]]
    for ln in lines:
        if ln.startswith("m="):
            sections.append([])
        sections[-1].append(ln)
    session, medias = sections[0], sections[1:]
    if not medias:
        raise SdpError("SDP offer has no m= section")

    def attr(block: list[str], name: str) -> str | None:
        for ln in block:
            if ln.startswith(f"a={name}:") or ln == f"a={name}":
                return ln.split(":", 1)[1] if ":" in ln else ""
        return None

    av_count = 0
    for i, block in enumerate(medias):
        m = block[0][2:].split()
        if len(m) < 4:
            raise SdpError(f"m= line {i} is malformed: {block[0][:60]!r}")
        kind = m[0]
        if kind not in ("audio", "video"):
            continue
        av_count += 1
        port = m[1]
        if port == "0":
            continue  # rejected/disabled section
        for name in ("ice-ufrag", "ice-pwd", "fingerprint", "setup"):
            if attr(block, name) is None and attr(session, name) is None:
                raise SdpError(f"{kind} section {i} has no a={name} (ICE and DTLS-SRTP are required)")
        setup = attr(block, "setup") or attr(session, "setup")
        if setup not in ("actpass", "active", "passive"):
            raise SdpError(f"{kind} section {i}: a=setup:{setup} (an offer says actpass, active or passive)")
        if attr(block, "mid") is None:
            raise SdpError(f"{kind} section {i} has no a=mid (BUNDLE needs one)")
    if av_count == 0:
        raise SdpError("SDP offer has no audio or video m= section")
    _check_bundle(session, medias, attr)

    try:
        parsed = SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc's parser raises assorted errors on hostile input
        raise SdpError(f"SDP offer could not be parsed: {exc.__class__.__name__}: {exc}") from exc

    summaries = []
    for media in parsed.media:
        if media.kind not in ("audio", "video"):
            continue
        codecs = tuple(c.mimeType.split("/", 1)[1].lower() for c in media.rtp.codecs)
        summaries.append(MediaSummary(media.kind, media.direction or "sendrecv", codecs))
    wanted = _SEND if role == "publish" else _RECV
    usable = [
        m for m in summaries if m.direction in wanted and any(c in FORWARDABLE[m.kind] for c in m.codecs)
    ]
    if not usable:
        verb = "sends" if role == "publish" else "receives"
        names = ", ".join(f"{k}: {'/'.join(v).upper()}" for k, v in FORWARDABLE.items())
        raise SdpError(f"SDP offer has no section that {verb} a supported codec ({names})")
    return OfferSummary(tuple(summaries))


def _check_bundle(session: list[str], medias: list[list[str]], attr: Callable[[list[str], str], str | None]) -> None:
    """Media ids are unique, and a BUNDLE group names only sections that exist: aiortc builds an
    answer for a group member without a section (a mid whose m= line was lost) and then fails
    to create or even close the peer connection."""
    mids: list[str] = []
    for block in medias:
        mid = attr(block, "mid")
        if mid is not None:
            if mid in mids:
                raise SdpError(f"a=mid:{mid[:20]} is used by two m= sections")
            mids.append(mid)
    if attr(session, "mid") is not None:
        raise SdpError("a=mid belongs to an m= section, not to the session")
    for ln in session + [ln for block in medias for ln in block]:
        if ln.startswith("a=group:"):
            members = ln.split(":", 1)[1].split()[1:]
            unknown = [m for m in members if m not in mids]
            if unknown:
                raise SdpError(f"a=group names a=mid {unknown[0][:20]!r}, which no m= section has")
