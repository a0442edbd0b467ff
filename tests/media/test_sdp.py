from __future__ import annotations

from typing import Literal

import pytest

from media.errors import SdpError
from media.sdp import check_offer

ICE = "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdef0123456789\r\na=fingerprint:sha-256 00:11\r\na=setup:actpass\r\n"


def offer(direction: str = "sendonly", codec: str = "VP8/90000", kind: str = "video", ice: str = ICE) -> str:
    return (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
        f"m={kind} 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\n{ice}a=mid:0\r\na={direction}\r\n"
        f"a=rtcp-mux\r\na=rtpmap:96 {codec}\r\n"
    )


def test_good_offer_is_summarised() -> None:
    s = check_offer(offer(), "publish")
    assert tuple(m.kind for m in s.media) == ("video",) and s.media[0].codecs == ("vp8",)
    assert check_offer(offer("recvonly"), "view").media[0].direction == "recvonly"


@pytest.mark.parametrize(
    ("sdp", "role", "fragment"),
    [
        ("", "publish", "empty"),
        ("garbage", "publish", "v=0"),
        ("v=0\r\nthis is not sdp\r\n", "publish", "line 2"),
        ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", "publish", "no m= section"),
        (offer(kind="application"), "publish", "no audio or video"),
        (offer(ice=""), "publish", "a=ice-ufrag"),
        (offer(ice=ICE.replace("a=fingerprint:sha-256 00:11\r\n", "")), "publish", "a=fingerprint"),
        (offer(codec="VP9/90000"), "publish", "supported codec"),
        (offer(codec="AV1/90000"), "view", "supported codec"),
        (offer("recvonly"), "publish", "sends a supported codec"),
        (offer("sendonly"), "view", "receives a supported codec"),
        (offer() + "\x00", "publish", "NUL"),
        ("v=0\r\nm=video\r\n", "publish", "malformed"),
        # found by tests/dispatch_server/test_sdp_fuzz.py: a BUNDLE member whose m= line was lost
        # made aiortc fail to build the answer and then to close the peer (a 500)
        (offer().replace("t=0 0\r\n", "t=0 0\r\na=group:BUNDLE 0 1\r\n"), "publish", "a=mid '1'"),
        (offer().replace("t=0 0\r\n", "t=0 0\r\na=mid:0\r\n"), "publish", "not to the session"),
        (offer() + offer().split("\r\n", 4)[4], "publish", "two m= sections"),
    ],
)
def test_bad_offers_are_refused_with_the_reason(sdp: str, role: Literal["publish", "view"], fragment: str) -> None:
    with pytest.raises(SdpError) as err:
        check_offer(sdp, role)
    assert fragment in str(err.value)
