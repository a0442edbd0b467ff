"""The canonical ZIP layout of export packages: every byte of the ZIP structure is determined.

Every member: stored (method 0), flags 0, no data descriptor, no comment, ASCII name, version
made by 0x032D (Unix, 4.5), external attributes 0o100644 << 16, the same DOS time as member 0.
Zip64: a member of >= 4 GiB - 1 bytes carries a local extra 0x0001 (size, size) and the central
one (size, size[, offset]); an offset at or above that carries the central extra (offset); the
end of the central directory gets the Zip64 record and locator when its offset needs them.

The builder writes this layout and the verifier compares every header byte of a package with
it, so one altered byte of the structure is found even where CRCs and hashes do not look.
"""

from __future__ import annotations

import hashlib
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

ZIP64_LIMIT = 0xFFFFFFFF  # a size or offset at or above this needs Zip64 fields (tests lower it)
_READ_SIZE = 1 << 20


@dataclass(frozen=True)
class ZipMember:
    """One member as the layout needs it: ASCII name, size (stored, so compressed = plain), CRC-32."""

    name: str
    size: int
    crc: int


def dos_datetime(ts: float) -> tuple[int, int]:
    """``(time, date)`` DOS fields of POSIX time ``ts`` in UTC (two-second steps; 1980 at the earliest)."""
    t = time.gmtime(ts)
    if t.tm_year < 1980:
        return 0, (1 << 5) | 1  # 1980-01-01 00:00:00
    return ((t.tm_hour << 11) | (t.tm_min << 5) | (t.tm_sec // 2),
            ((t.tm_year - 1980) << 9) | (t.tm_mon << 5) | t.tm_mday)


def _local_header(m: ZipMember, offset: int, dos: tuple[int, int]) -> bytes:
    name = m.name.encode("ascii")
    big = m.size >= ZIP64_LIMIT
    extra = struct.pack("<HHQQ", 1, 16, m.size, m.size) if big else b""
    size32 = 0xFFFFFFFF if big else m.size
    version = 45 if big or offset >= ZIP64_LIMIT else 10
    return struct.pack("<IHHHHHIIIHH", 0x04034B50, version, 0, 0, dos[0], dos[1], m.crc, size32, size32,
                       len(name), len(extra)) + name + extra


def _central_header(m: ZipMember, offset: int, dos: tuple[int, int]) -> bytes:
    name = m.name.encode("ascii")
    big, far = m.size >= ZIP64_LIMIT, offset >= ZIP64_LIMIT
    fields = ([m.size, m.size] if big else []) + ([offset] if far else [])
    extra = struct.pack(f"<HH{len(fields)}Q", 1, 8 * len(fields), *fields) if fields else b""
    size32 = 0xFFFFFFFF if big else m.size
    return struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 0x032D, 45 if fields else 10, 0, 0, dos[0], dos[1],
                       m.crc, size32, size32, len(name), len(extra), 0, 0, 0, 0o100644 << 16,
                       0xFFFFFFFF if far else offset) + name + extra


def _end_records(count: int, cd_offset: int, cd_size: int) -> bytes:
    out = b""
    if cd_offset >= ZIP64_LIMIT or cd_size >= ZIP64_LIMIT:
        out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 0x032D, 45, 0, 0, count, count, cd_size, cd_offset)
        out += struct.pack("<IIQI", 0x07064B50, 0, cd_offset + cd_size, 1)
    return out + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, min(cd_size, 0xFFFFFFFF),
                             min(cd_offset, 0xFFFFFFFF), 0)


def layout(members: list[ZipMember], dos: tuple[int, int]) -> tuple[list[tuple[int, bytes]], int, bytes]:
    """``(offset, local header)`` per member, the offset of the central directory and the bytes
    from there to the end of the file."""
    headers, offset = [], 0
    for m in members:
        header = _local_header(m, offset, dos)
        headers.append((offset, header))
        offset += len(header) + m.size
    central = b"".join(_central_header(m, off, dos) for m, (off, _) in zip(members, headers, strict=True))
    return headers, offset, central + _end_records(len(members), offset, len(central))


def dos_from_date_time(d: tuple[int, int, int, int, int, int]) -> tuple[int, int]:
    """The DOS ``(time, date)`` fields of a ``zipfile.ZipInfo.date_time``."""
    return (d[3] << 11) | (d[4] << 5) | (d[5] // 2), ((d[0] - 1980) << 9) | (d[1] << 5) | d[2]


def hash_file(path: Path) -> tuple[str, int, int]:
    """(sha256 hex, CRC-32, bytes) of a file."""
    h, crc, n = hashlib.sha256(), 0, 0
    with open(path, "rb") as f:
        while chunk := f.read(_READ_SIZE):
            h.update(chunk)
            crc = zlib.crc32(chunk, crc)
            n += len(chunk)
    return h.hexdigest(), crc, n
