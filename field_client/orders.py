"""Instructions as the unit holds them (:class:`Order`), and how a person reads one.

Two kinds: *human* orders (``text``, ``goto``) are for the officer, who acknowledges them
(a person saw it) and then completes or refuses them; *machine* orders (``record_start``,
``record_stop``, ``snapshot``, ``callback``, ``end_action``) are carried out by the unit itself,
which reports ``done`` with what it did, or ``refused`` with why it could not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from geo.distance import haversine_m, initial_bearing_deg
from geo.fix import Fix
from utctime import parse_iso

HUMAN = ("text", "goto")
MACHINE = ("record_start", "record_stop", "snapshot", "callback", "end_action")

TYPE_TEXT = {
    "text": ("文字指令", "text"),
    "goto": ("前往指定地点", "go to"),
    "record_start": ("开始录像", "start recording"),
    "record_stop": ("停止录像", "stop recording"),
    "snapshot": ("拍照取证", "snapshot"),
    "callback": ("回呼指挥中心", "call back"),
    "end_action": ("结束本单位行动", "end action"),
}
PRIORITY_TEXT = {"low": ("低", "low"), "normal": ("普通", "normal"), "high": ("高", "high"),
                 "urgent": ("紧急", "urgent")}
COMPASS = (("北", "N"), ("东北", "NE"), ("东", "E"), ("东南", "SE"), ("南", "S"), ("西南", "SW"), ("西", "W"),
           ("西北", "NW"))


@dataclass(frozen=True)
class Order:
    """One delivered instruction (docs/api.md, ``instructions_pending``/``sync``)."""

    id: str
    seq: int
    type: str
    payload: dict[str, Any]
    priority: str = "normal"
    expires_at: float | None = None
    action_id: str | None = None
    case_number: str | None = None

    @classmethod
    def from_wire(cls, item: dict[str, Any]) -> Order:
        expires = item.get("expires_at")
        try:
            expires_at = parse_iso(expires) if isinstance(expires, str) else None
        except ValueError:
            expires_at = None
        payload = item.get("payload")
        return cls(str(item["id"]), int(item["seq"]), str(item.get("type", "text")),
                   payload if isinstance(payload, dict) else {}, str(item.get("priority", "normal")), expires_at,
                   item.get("action_id"), item.get("case_number"))

    @property
    def is_machine(self) -> bool:
        return self.type in MACHINE

    def target(self) -> tuple[float, float] | None:
        """A ``goto``'s destination (lat, lon)."""
        lat, lon = self.payload.get("lat"), self.payload.get("lon")
        if isinstance(lat, (int, float)) and isinstance(lon, (int, float)):
            return float(lat), float(lon)
        return None


def way_to(here: Fix | None, target: tuple[float, float]) -> str:
    """``距离 350 m，方位 东北 (45°) / 350 m NE (45°)`` from ``here``, or that the unit has no fix."""
    if here is None:
        return "本机暂无定位，无法计算距离 / no GPS fix here: distance unknown"
    metres = haversine_m(here.lat, here.lon, target[0], target[1])
    bearing = initial_bearing_deg(here.lat, here.lon, target[0], target[1])
    zh, en = COMPASS[int(((bearing % 360) + 22.5) // 45) % 8]
    distance = f"{metres / 1000:.1f} km" if metres >= 1000 else f"{metres:.0f} m"
    return f"距离 {distance}，方位 {zh} ({bearing:.0f}°) / {distance} {en} ({bearing:.0f}°)"


def geo_uri(target: tuple[float, float]) -> str:
    """A ``geo:`` URI (RFC 5870): the phone's own map app opens it, no map server needed."""
    return f"geo:{target[0]:.6f},{target[1]:.6f}?q={target[0]:.6f},{target[1]:.6f}"


def describe(order: Order, here: Fix | None = None) -> list[str]:
    """The lines a person reads on the unit's terminal, each in Chinese and English."""
    kind_zh, kind_en = TYPE_TEXT.get(order.type, (order.type, order.type))
    prio_zh, prio_en = PRIORITY_TEXT.get(order.priority, (order.priority, order.priority))
    lines = [f"━━ 新指令 New instruction #{order.seq}  [{prio_zh} {prio_en}]  {kind_zh} / {kind_en}  ({order.id})"]
    if order.case_number:
        lines.append(f"   案号 Case: {order.case_number}")
    text = order.payload.get("text") or order.payload.get("note")
    if text:
        lines.append(f"   内容 Text: {text}")
    target = order.target()
    if target is not None:
        lines.append(f"   目标 Target: {target[0]:.6f}, {target[1]:.6f}  {way_to(here, target)}")
        lines.append(f"   地图 Map: {geo_uri(target)}")
    if order.expires_at is not None and math.isfinite(order.expires_at):
        lines.append(f"   有效至 Valid until: {datetime.fromtimestamp(order.expires_at):%Y-%m-%d %H:%M:%S}")
    return lines
