"""Socket.IO messages parsed at the edge: one function per message, so handlers never touch raw dicts.

Every parser raises :class:`BadRequest` (code ``bad_message``) naming the field that is wrong.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import msgpack

from ..errors import BadRequest, TooLarge
from ..sos import MAX_NOTE, SosCall


def _bad(message: str) -> BadRequest:
    return BadRequest(message, code="bad_message")


def unpack_msgpack(data: bytes | bytearray, what: str) -> Any:
    """Untrusted msgpack from a unit: no binary or extension types, text map keys only."""
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True, max_bin_len=0, max_ext_len=0)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise BadRequest(f"{what}: not valid msgpack: {exc}", code="bad_message") from None


def check_size(data: Any, limit: int, what: str) -> None:
    """Reject payloads whose size (bytes as they are, anything else as JSON) exceeds ``limit``."""
    if isinstance(data, (bytes, bytearray, str)):
        size = len(data)  # binary events (position batches) and bare strings: no serialisation needed
    else:
        try:
            size = len(json.dumps(data, default=str))
        except (TypeError, ValueError) as exc:
            raise _bad(f"{what}: payload is not JSON-like: {exc}") from exc
    if size > limit:
        raise TooLarge(f"{what}: {size} bytes is over the limit of {limit} bytes")


def _obj(data: Any, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise _bad(f"{what}: expected a JSON object, got {type(data).__name__}")
    return data


def _str(d: dict[str, Any], key: str, what: str, max_len: int = 256) -> str:
    v = d.get(key)
    if not isinstance(v, str) or not v:
        raise _bad(f"{what}: field {key!r} must be a non-empty string")
    if len(v) > max_len:
        raise _bad(f"{what}: field {key!r} is longer than {max_len} characters")
    return v


@dataclass(frozen=True)
class Offer:
    sdp: str


def parse_publish(data: Any, max_sdp: int) -> Offer:
    d = _obj(data, "publish")
    return Offer(_str(d, "sdp", "publish", max_sdp))


@dataclass(frozen=True)
class Watch:
    unit_id: str
    sdp: str


def parse_watch(data: Any, max_sdp: int) -> Watch:
    d = _obj(data, "watch")
    return Watch(_str(d, "unit_id", "watch", 64), _str(d, "sdp", "watch", max_sdp))


@dataclass(frozen=True)
class SessionRef:
    session_id: str


def parse_session_ref(data: Any, what: str) -> SessionRef:
    d = _obj(data, what)
    return SessionRef(_str(d, "session_id", what, 64))


@dataclass(frozen=True)
class Sync:
    after_seq: int


def parse_sync(data: Any) -> Sync:
    d = _obj(data, "sync")
    after = d.get("after_seq", 0)
    if isinstance(after, bool) or not isinstance(after, int) or after < 0:
        raise _bad("sync: after_seq must be a whole number >= 0")
    return Sync(after)


@dataclass(frozen=True)
class Received:
    ids: tuple[str, ...]


def parse_received(data: Any) -> Received:
    d = _obj(data, "received")
    ids = d.get("ids")
    if not isinstance(ids, list) or not 1 <= len(ids) <= 500 \
            or not all(isinstance(i, str) and 0 < len(i) <= 64 for i in ids):
        raise _bad("received: ids must be a list of 1..500 instruction ids")
    return Received(tuple(ids))


@dataclass(frozen=True)
class InstructionState:
    id: str
    state: str
    reason: str | None
    result: dict[str, Any] | None = None


MAX_RESULT_BYTES = 4096


def parse_instruction_state(data: Any) -> InstructionState:
    """``{"id", "state", "reason"?, "result"?}``: ``result`` is a small JSON object the unit
    reports with its answer (at most ``MAX_RESULT_BYTES`` as JSON)."""
    d = _obj(data, "instruction_state")
    reason = d.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise _bad("instruction_state: reason must be text")
    result = d.get("result")
    if result is not None:
        if not isinstance(result, dict):
            raise _bad("instruction_state: result must be an object")
        check_size(result, MAX_RESULT_BYTES, "instruction_state: result")
    return InstructionState(_str(d, "id", "instruction_state", 64), _str(d, "state", "instruction_state", 32), reason,
                            result)


@dataclass(frozen=True)
class Callback:
    instruction_id: str | None


def parse_callback(data: Any) -> Callback:
    """``{"instruction_id"?}``: the unit opens talk towards the command room (``callback``)."""
    d = _obj({} if data is None else data, "callback")
    iid = d.get("instruction_id")
    if iid is not None and (not isinstance(iid, str) or not 0 < len(iid) <= 64):
        raise _bad("callback: instruction_id must be an instruction id")
    return Callback(iid)


@dataclass(frozen=True)
class TalkJoin:
    talk_id: str
    sdp: str


def parse_talk_join(data: Any, max_sdp: int) -> TalkJoin:
    d = _obj(data, "talk_join")
    return TalkJoin(_str(d, "talk_id", "talk_join", 64), _str(d, "sdp", "talk_join", max_sdp))


def parse_sos(data: Any) -> SosCall:
    """An SOS: ``{"note"?, "lat"?, "lon"?, "accuracy"?}`` (also empty or absent). The position
    fields are checked for type here and for range by the fix parser."""
    if data is None:
        return SosCall()
    if not isinstance(data, dict):
        raise _bad("sos: expected a JSON object")
    note = data.get("note", "")
    if not isinstance(note, str) or len(note) > MAX_NOTE:
        raise _bad(f"sos: note must be text of at most {MAX_NOTE} characters")
    numbers: dict[str, float | None] = {}
    for key in ("lat", "lon", "accuracy"):
        v = data.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
            raise _bad(f"sos: field {key!r} must be a finite number")
        numbers[key] = None if v is None else float(v)
    return SosCall(note, numbers["lat"], numbers["lon"], numbers["accuracy"])


@dataclass(frozen=True)
class NoticeMark:
    officer: str | None = None  # who gave the notice, as the officer names themself; None: the unit


MAX_OFFICER = 64


def parse_notice(data: Any) -> NoticeMark:
    """The spoken notice was given (已告知): ``{"officer"?: name}`` (also empty or absent)."""
    if data is None:
        return NoticeMark()
    d = _obj(data, "notice")
    officer = d.get("officer")
    if officer is None or officer == "":
        return NoticeMark()
    if not isinstance(officer, str) or len(officer.strip()) == 0 or len(officer) > MAX_OFFICER:
        raise _bad(f"notice: officer must be a name of 1..{MAX_OFFICER} characters")
    return NoticeMark(officer.strip())
