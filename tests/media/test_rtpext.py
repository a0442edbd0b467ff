"""Header extensions of forwarded packets: written under the ids each viewer negotiated, checked
against aiortc's own parser and, end to end, on the wire of real aiortc viewers."""

from __future__ import annotations

import re
import time
from typing import Any

import aiohttp
from aiortc import RTCDtlsTransport
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket, is_rtcp, pack_header_extensions, unpack_header_extensions
from aiortc.sdp import SessionDescription

from field_client.encoded_loop import EncodedAudioLoop, EncodedLoop
from media.rtpext import ABS_SEND_TIME, AUDIO_LEVEL, MID, ExtensionPlan, abs_send_time, find_extension
from media.rtpwire import RtpView, build_rtp, parse_rtp
from tests.conftest import LiveServer
from tests.support.peers import make_publisher, make_viewer, whep_view, whip_publish

LEVEL = (True, 42)  # what the publisher's audio packets say (voice activity, -42 dBov)


def _ext(id_: int, uri: str) -> RTCRtpHeaderExtensionParameters:
    return RTCRtpHeaderExtensionParameters(id=id_, uri=uri)


def _aiortc_map(*exts: RTCRtpHeaderExtensionParameters) -> HeaderExtensionsMap:
    ids = HeaderExtensionsMap()
    ids.configure(RTCRtpParameters(headerExtensions=list(exts)))
    return ids


def test_blocks_parse_in_aiortc_under_the_viewers_ids_in_both_forms() -> None:
    negotiated = [_ext(4, MID), _ext(9, ABS_SEND_TIME), _ext(14, AUDIO_LEVEL), _ext(5, "urn:x-unknown")]
    plan = ExtensionPlan.negotiated(negotiated, "1")
    assert plan is not None
    sent_at = abs_send_time(1_000_000.25)
    data = build_rtp(111, True, 7, 960, 0xAB, b"opus", plan.block(sent_at, bytes([0x80 | 42])))
    packet = RtpPacket.parse(data, _aiortc_map(*negotiated))
    assert packet.payload == b"opus" and packet.sequence_number == 7
    assert packet.extensions.mid == "1"
    assert packet.extensions.abs_send_time == int.from_bytes(sent_at, "big")
    assert packet.extensions.audio_level == LEVEL
    view = parse_rtp(data)
    assert view is not None and view.extension_profile == 0xBEDE and view.payload == b"opus"
    assert find_extension(view.extension_profile, view.extension, 4) == b"1"
    assert find_extension(view.extension_profile, view.extension, 5) is None  # not written: not ours to fill

    # An id above 14 needs the two-byte form (RFC 8285 §4.3).
    wide = ExtensionPlan.negotiated([_ext(20, MID), _ext(3, ABS_SEND_TIME)], "video")
    assert wide is not None
    data = build_rtp(96, False, 1, 2, 3, b"vp8", wide.block(sent_at, None))
    packet = RtpPacket.parse(data, _aiortc_map(_ext(20, MID), _ext(3, ABS_SEND_TIME)))
    assert packet.extensions.mid == "video" and packet.extensions.abs_send_time == int.from_bytes(sent_at, "big")
    # Nothing of ours negotiated: no plan, and no extension header on the packet.
    assert ExtensionPlan.negotiated([_ext(5, "urn:x-unknown")], "0") is None
    bare = parse_rtp(build_rtp(96, False, 1, 2, 3, b"vp8", b""))
    assert bare is not None and bare.extension_profile == 0 and bare.payload == b"vp8"


def test_a_publishers_element_is_found_whatever_the_form() -> None:
    elements = [(1, b"0"), (2, bytes([0xAA])), (3, b"\x01\x02\x03")]
    for profile, block in (pack_header_extensions(elements), pack_header_extensions([(15, b"")] + elements)):
        for id_, value in elements:
            assert find_extension(profile, block, id_) == value
        assert find_extension(profile, block, 7) is None
    assert unpack_header_extensions(*pack_header_extensions(elements)) == elements
    assert find_extension(0xBEDE, b"\x21", 2) is None  # truncated: not read past the end
    # 24-bit abs-send-time wraps every 64 s.
    assert int.from_bytes(abs_send_time(64.0), "big") == int.from_bytes(abs_send_time(0.0), "big")


class Wire:
    """The raw RTP packets that reach one viewer's DTLS transport (aiortc still gets them)."""

    def __init__(self, transport: RTCDtlsTransport) -> None:
        self.packets: list[tuple[float, bytes]] = []
        original = transport._handle_rtp_data

        async def handle(data: bytes, arrival_time_ms: int) -> None:
            self.packets.append((time.time(), data))
            await original(data, arrival_time_ms=arrival_time_ms)

        setattr(transport, "_handle_rtp_data", handle)  # noqa: B010 - this test's own tap, on the viewer's transport

    def views(self, payload_type: int) -> list[tuple[float, RtpView, bytes]]:
        out = []
        for at, data in self.packets:
            view = parse_rtp(data)
            assert view is not None
            if view.payload_type == payload_type:
                out.append((at, view, data))
        return out


def _renumber(sdp: str) -> str:
    return re.sub(r"a=extmap:(\d+) ", lambda m: f"a=extmap:{10 + int(m.group(1))} ", sdp)


def _strip_extmaps(sdp: str) -> str:
    return "".join(line for line in sdp.splitlines(keepends=True) if not line.startswith("a=extmap:"))


def _sections(sdp: str) -> dict[str, Any]:
    return {m.kind: m for m in SessionDescription.parse(sdp).media}


async def test_viewers_get_the_extensions_they_negotiated_under_their_own_ids(
    make_live: Any, http: aiohttp.ClientSession, vp8_loop: EncodedLoop, opus_loop: EncodedAudioLoop
) -> None:
    live: LiveServer = await make_live(media={"engine": "packets"})
    token = live.add_unit("bc-ext")
    live.add_user("op", "operator")
    op = await live.login("op")
    pub = await make_publisher(vp8_loop, opus_loop)
    viewers = [await make_viewer(), await make_viewer(), await make_viewer()]
    try:
        # The publisher's audio says how loud it is (aiortc's own sender does not for encoded
        # packets): its transport adds the element under the id the server answered.
        transport = pub.pc.getSenders()[0].transport
        original_send = transport._send_rtp
        level_map: list[HeaderExtensionsMap] = []
        opus_pt: list[int] = []

        async def send_with_level(data: bytes) -> None:
            if level_map and not is_rtcp(data):
                packet = RtpPacket.parse(data, level_map[0])
                if packet.payload_type == opus_pt[0]:
                    packet.extensions.audio_level = LEVEL
                    data = packet.serialize(level_map[0])
            await original_send(data)

        setattr(transport, "_send_rtp", send_with_level)  # noqa: B010 - this test's own publisher
        await whip_publish(http, live.url, "bc-ext", token, pub)
        audio = _sections(pub.pc.remoteDescription.sdp)["audio"]
        assert any(e.uri == AUDIO_LEVEL for e in audio.rtp.headerExtensions)
        opus_pt.append(audio.rtp.codecs[0].payloadType)
        level_map.append(_aiortc_map(*audio.rtp.headerExtensions))

        offers = [None, _renumber, _strip_extmaps]
        wires = []
        for viewer, offer_filter in zip(viewers, offers, strict=True):
            await whep_view(http, live.url, "bc-ext", op, viewer, offer_filter=offer_filter)
            wires.append(Wire(viewer.pc.getReceivers()[0].transport))
        for viewer in viewers:
            await viewer.wait_frames(len(viewer.frames) + 30, timeout=20)
            await viewer.wait_audio(viewer.audio_frames + 25, timeout=20)

        for k, (viewer, wire) in enumerate(zip(viewers, wires, strict=True)):
            answer = _sections(viewer.pc.remoteDescription.sdp)
            for kind in ("video", "audio"):
                section = answer[kind]
                ids = {e.uri: e.id for e in section.rtp.headerExtensions}
                views = wire.views(section.rtp.codecs[0].payloadType)
                assert len(views) > 20, f"viewer {k}: {kind} packets seen"
                if k == 2:
                    assert not ids and not any(view.extension_profile for _, view, _ in views), \
                        "a viewer that negotiated no extension gets none"
                    continue
                assert ids[MID] == (10 + 1 if k == 1 else 1)  # the viewer's own numbering
                parsed = _aiortc_map(*section.rtp.headerExtensions)
                for at, view, data in views:
                    packet = RtpPacket.parse(data, parsed)
                    assert packet.extensions.mid == section.rtp.muxId
                    if kind == "video":
                        assert packet.extensions.abs_send_time is not None
                        age = (int.from_bytes(abs_send_time(at), "big") - packet.extensions.abs_send_time) & 0xFFFFFF
                        assert age < (1 << 18) // 2, f"abs-send-time {age / (1 << 18):.3f} s before arrival"
                    else:
                        assert packet.extensions.audio_level == LEVEL
                        assert find_extension(view.extension_profile, view.extension, ids[AUDIO_LEVEL]) == b"\xaa"
    finally:
        for viewer in viewers:
            await viewer.close()
        await pub.close()
