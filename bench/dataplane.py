"""The native data plane (media/_dataplane.c) against its Python reference, in one run.

    python -m bench.dataplane [--rounds 3] [--units 24] [--window 15] [--micro-only]

1. **In process** (no sockets, no event loop work): the packet engine's path for one video packet
   from the SRTP datagram to two viewers' ``sendto`` (stand-in transports that keep what is sent,
   real pylibsrtp sessions): ``PublisherIngress`` and the stream, unprotect, fan-out, two header
   builds and two protects; the fan-out alone; and the recorder's frame assembly with a tap like
   the archive's (VP8, 4 packets of 1,000 bytes per frame, µs per frame; Opus, µs per packet).
   µs, median of ``--rounds``, for ``[media] native_dataplane`` true and false alternately.
2. **Whole server** (unless ``--micro-only``): ``bench.profile_engine`` runs the server with
   ``--units`` units (recording on, 2 viewers each, the load of :mod:`bench.relay`), alternating
   ``DISPATCH_MEDIA__NATIVE_DATAPLANE=true`` and ``false`` for ``--rounds`` rounds, each a fresh
   server: CPU per unit (% of one core), medians and their ratio.

The side-by-side figure against Janus stays :mod:`bench.relay`'s.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import subprocess
import sys
import time
from collections import deque
from typing import Any

import pylibsrtp
from aiortc.rtcrtpparameters import RTCRtcpFeedback, RTCRtpCodecParameters

from bench.relay import PYTHON
from media import _dataplane, rtp_hooks
from media.assembly import frame_assembler
from media.ingress import PublisherIngress
from media.packets import PacketViewer, fan_out
from media.relay import Fanout, RelayConfig
from media.rtpext import ExtensionPlan
from media.rtpwire import build_rtp
from tests.support.dtls_standin import Dtls, srtp_session

PACKETS = 20_000
PAYLOAD = 1100  # bytes: a full video packet of ~1 Mbit/s VP8


def _viewers(stream: Any, native: bool) -> list[Dtls]:
    wires = []
    for k in range(2):
        dtls = Dtls("aead-aes128-gcm")
        viewer = PacketViewer(stream, rtp_hooks.rtp_sender_of(dtls, native), lambda: True,  # type: ignore[arg-type]
                              ssrc=5 + k, payload_type=96, rtx_ssrc=9, rtx_payload_type=None,
                              plan=ExtensionPlan("0", 1, 3, None))
        viewer.waiting = False
        stream.subscribe(viewer)
        wires.append(dtls)
    return wires


async def _ingress_us(native: bool) -> float:
    """µs per packet, SRTP datagram in to two viewers' sendto."""
    fanout = Fanout("bench", "video", RelayConfig(native_dataplane=native), time.monotonic)
    codec = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96,
                                  rtcpFeedback=[RTCRtcpFeedback(type="nack")])
    ingress = PublisherIngress("bench", 1234, 2_000_000, time.monotonic, native=native)
    stream = fanout.attach_packets("pub", codec, ingress.request_keyframe)
    publisher = Dtls("aead-aes128-gcm")
    ingress.add("video", stream, codec, [], publisher)  # type: ignore[arg-type]
    wires = _viewers(stream, native)
    tx = srtp_session("aead-aes128-gcm", pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
    datagrams = [tx.protect(build_rtp(96, n % 3 == 2, n & 0xFFFF, (n // 3) * 3000, 77,
                                      bytes([0x10 if n % 3 == 0 else 0]) + bytes(PAYLOAD - 1))) for n in range(PACKETS)]
    hook = publisher.transport._connection.data_received
    start = time.perf_counter()
    for n, data in enumerate(datagrams):
        hook(data, 1)
        if n % 1000 == 0:
            for dtls in wires:
                dtls.sent.clear()
    elapsed = time.perf_counter() - start
    ingress.close()
    return elapsed / PACKETS * 1e6


def _fan_out_us(native: bool) -> float:
    """µs per packet, the fan-out to two viewers alone (with their protect and sendto)."""
    fanout = Fanout("bench", "video", RelayConfig(native_dataplane=native), lambda: 0.0)
    wires = _viewers(fanout.stream, native)
    viewers = tuple(fanout.stream.viewers)
    step = _dataplane.fan_out if native else fan_out
    payload = bytes(PAYLOAD)
    start = time.perf_counter()
    for n in range(PACKETS):
        step(viewers, n & 0xFFFF, n * 3000, n % 3 == 2, payload, False, None)
        if n % 1000 == 0:
            for dtls in wires:
                dtls.sent.clear()
    return (time.perf_counter() - start) / PACKETS * 1e6


def _assembly_us(native: bool, video: bool) -> float:
    """µs per frame: the recorder's assembly (media.assembly.frame_assembler) of an in-order stream,
    each frame handed to a tap that does what the archive's does (bytes, a record, a deque)."""
    queue: deque[tuple[str, bytes, int, bool, float]] = deque()

    def tap(frame: Any, keyframe: bool) -> None:
        queue.append(("video", bytes(frame), int(frame.pts or 0), keyframe, time.time()))

    if video:
        codec = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
    else:
        codec = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, payloadType=111, channels=2)
    assembler = frame_assembler(codec, tap, lambda: None, native=native)
    frames = PACKETS
    packets: list[tuple[int, int, bool, bytes]] = []
    for f in range(frames):
        if not video:
            packets.append((f & 0xFFFF, f * 960, True, b"\x78" + bytes(100)))
            continue
        for k in range(4):  # VP8 payload descriptor with a 15-bit picture id; a keyframe every 100
            first = bytes([0x1 if f % 100 else 0x0]) if k == 0 else b""
            descriptor = bytes([0x90 if k == 0 else 0x80, 0x80, 0x80 | (f >> 8) & 0x7F, f & 0xFF])
            packets.append(((f * 4 + k) & 0xFFFF, f * 3000, k == 3, descriptor + first + bytes(1000)))
    now = time.monotonic()
    start = time.perf_counter()
    for seq, ts, marker, payload in packets:
        assembler.push(seq, ts, marker, payload, now)
    elapsed = time.perf_counter() - start
    if assembler.frames != frames:
        raise RuntimeError(f"assembled {assembler.frames} frames of {frames}")
    return elapsed / frames * 1e6


def _server_cpu_per_unit(native: bool, units: int, window: float) -> float:
    out = subprocess.run([PYTHON, "-m", "bench.profile_engine", "--units", str(units), "--recording", "--window",
                          str(window), "--env", f"DISPATCH_MEDIA__NATIVE_DATAPLANE={'true' if native else 'false'}"],
                         check=True, capture_output=True, text=True).stdout
    print("  " + next(line for line in out.splitlines() if "units, engine" in line), flush=True)
    match = re.search(r"-> ([0-9.]+)%/unit", out)
    if match is None:
        raise RuntimeError(f"bench.profile_engine printed no figure:\n{out}")
    return float(match.group(1))


def _report(name: str, native: list[float], python: list[float], unit: str) -> None:
    n, p = statistics.median(native), statistics.median(python)
    print(f"{name}: native {n:.2f} {unit} ({', '.join(f'{x:.2f}' for x in native)}), python {p:.2f} {unit} "
          f"({', '.join(f'{x:.2f}' for x in python)}); native/python {n / p:.2f}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dataplane", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--units", type=int, default=24)
    parser.add_argument("--window", type=float, default=15.0)
    parser.add_argument("--micro-only", action="store_true")
    args = parser.parse_args(argv)
    results: dict[str, dict[bool, list[float]]] = {
        k: {True: [], False: []} for k in ("ingress", "fan_out", "vp8", "opus", "server")}
    for _ in range(args.rounds):
        for native in (True, False):
            results["ingress"][native].append(asyncio.run(_ingress_us(native)))
            results["fan_out"][native].append(_fan_out_us(native))
            results["vp8"][native].append(_assembly_us(native, video=True))
            results["opus"][native].append(_assembly_us(native, video=False))
    _report("in process, datagram to two viewers", results["ingress"][True], results["ingress"][False], "µs/packet")
    _report("in process, fan-out to two viewers", results["fan_out"][True], results["fan_out"][False], "µs/packet")
    _report("in process, recorder's assembly, VP8", results["vp8"][True], results["vp8"][False], "µs/frame")
    _report("in process, recorder's assembly, Opus", results["opus"][True], results["opus"][False], "µs/packet")
    if not args.micro_only:
        for r in range(args.rounds):
            for native in ((True, False) if r % 2 == 0 else (False, True)):
                results["server"][native].append(_server_cpu_per_unit(native, args.units, args.window))
        _report(f"server, {args.units} units, recording on, CPU per unit", results["server"][True],
                results["server"][False], "%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
