"""Statistics as tables with Chinese column names: what the CSV and XLSX exports hold.

One table per view (行动, 录像, 指令, 告警, 调取申请, 证据档案): a row per group, then 合计 (the
totals, which count an item once even when it is in several groups). Columns that depend on the
data (one per instruction type, state, alert kind, gap cause) appear for every value any row has.
Seconds stay seconds and counts stay counts, so a file holds exactly the numbers of
``GET /api/stats``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

ACTION_TYPES = {"seizure": "查封扣押", "search": "搜查", "eviction": "强制腾退", "service": "送达", "other": "其他"}
INSTRUCTION_TYPES = {"text": "文字指令", "goto": "前往位置", "record_start": "开始录像", "record_stop": "停止录像",
                     "snapshot": "拍照", "callback": "回电", "end_action": "结束行动"}
INSTRUCTION_STATES = {"queued": "待送达", "delivered": "已送达", "acknowledged": "已确认", "done": "已完成",
                      "refused": "已拒绝", "expired": "已过期", "cancelled": "已撤销"}
ALERT_KINDS = {"sos": "紧急求助", "unit_offline": "单位离线", "stopped_publishing": "视频中断",
               "ack_overdue": "指令超时未确认", "geofence_exit": "离开行动区域", "geofence_enter": "进入行动区域",
               "recording_degraded": "录像异常", "recording_resumed": "录像恢复",
               "retention_halted": "保留期限清理已暂停"}
GROUPS = {"type": "行动类型", "judge": "承办法官", "officer": "执行人员", "unit": "执法单位", "team": "执行组"}
TOTAL = "合计"
NONE = "（无）"

Row = dict[str, Any]


@dataclass(frozen=True)
class Table:
    name: str  # the view (sheet name)
    columns: list[str]
    rows: list[list[Any]]


def _col(header: str, get: Callable[[Row], Any]) -> tuple[str, Callable[[Row], Any]]:
    return header, get


def _keys(rows: list[Row], view: str, part: str) -> list[str]:
    return sorted({k for r in rows for k in r[view][part]})


def _with(value: str, get: Callable[[Row, str], Any]) -> Callable[[Row], Any]:
    """``get`` with its second argument bound now (a lambda in a loop would see the last value)."""
    return lambda row: get(row, value)


def _causes(row: Row) -> dict[str, Any]:
    by_cause: dict[str, Any] = row["recording"]["gaps"]["by_cause"]
    return by_cause


def group_label(group: str, key: str) -> str:
    if key == "":
        return NONE
    return ACTION_TYPES.get(key, key) if group == "type" else key


def _table(name: str, group: str, stats: dict[str, Any],
           columns: list[tuple[str, Callable[[Row], Any]]]) -> Table:
    rows = [[group_label(group, g["key"]), *(get(g) for _, get in columns)] for g in stats["groups"]]
    rows.append([TOTAL, *(get(stats["totals"]) for _, get in columns)])
    return Table(name, [GROUPS[group], *(h for h, _ in columns)], rows)


def tables(stats: dict[str, Any]) -> list[Table]:
    """Every view of ``stats`` (the answer of :meth:`StatsService.compute`) as a table."""
    group = stats["group"]
    every = [*stats["groups"], stats["totals"]]
    causes = sorted({c for r in every for c in r["recording"]["gaps"]["by_cause"]})
    ins_types, ins_states = _keys(every, "instructions", "by_type"), _keys(every, "instructions", "by_state")
    kinds = _keys(every, "alerts", "by_kind")

    def pct(view: str, part: str, label: str, points: tuple[str, ...]) -> list[tuple[str, Callable[[Row], Any]]]:
        names = {"p50": "P50", "p90": "P90", "p99": "P99", "max": "最大"}
        return [_col(f"{label}{names[p]}（秒）", _with(p, lambda r, p: r[view][part][p])) for p in points]

    out = [
        _table("行动", group, stats, [
            _col("计划行动", lambda r: r["actions"]["planned"]),
            _col("已开始", lambda r: r["actions"]["started"]),
            _col("已结束", lambda r: r["actions"]["ended"]),
            _col("已取消", lambda r: r["actions"]["cancelled"]),
            _col("进行中", lambda r: r["actions"]["running"]),
            _col("总时长（秒）", lambda r: r["actions"]["duration_s"]["total"]),
            _col("平均时长（秒）", lambda r: r["actions"]["duration_s"]["mean"]),
            _col("时长中位数（秒）", lambda r: r["actions"]["duration_s"]["p50"]),
            _col("最长时长（秒）", lambda r: r["actions"]["duration_s"]["max"])]),
        _table("录像", group, stats, [
            _col("录像时长（秒）", lambda r: r["recording"]["recorded_s"]),
            _col("录像时长（小时）", lambda r: r["recording"]["recorded_hours"]),
            _col("计入覆盖率的行动", lambda r: r["recording"]["coverage"]["actions"]),
            _col("全程覆盖的行动", lambda r: r["recording"]["coverage"]["full"]),
            _col("平均覆盖率", lambda r: r["recording"]["coverage"]["mean_ratio"]),
            _col("总覆盖率", lambda r: r["recording"]["coverage"]["ratio"]),
            _col("中断次数", lambda r: r["recording"]["gaps"]["count"]),
            _col("中断总时长（秒）", lambda r: r["recording"]["gaps"]["seconds"]),
            *[_col(f"中断次数·{c}", _with(c, lambda r, c: _causes(r).get(c, {}).get("count", 0)))
              for c in causes],
            *[_col(f"中断时长（秒）·{c}", _with(c, lambda r, c: _causes(r).get(c, {}).get("seconds", 0)))
              for c in causes]]),
        _table("指令", group, stats, [
            _col("指令总数", lambda r: r["instructions"]["total"]),
            *[_col(f"类型·{INSTRUCTION_TYPES.get(t, t)}", _with(t, lambda r, t: r["instructions"]["by_type"].get(t, 0)))
              for t in ins_types],
            *[_col(f"状态·{INSTRUCTION_STATES.get(s, s)}",
                   _with(s, lambda r, s: r["instructions"]["by_state"].get(s, 0)))
              for s in ins_states],
            *pct("instructions", "delivery_s", "送达用时", ("p50", "p90", "p99", "max")),
            *pct("instructions", "ack_s", "确认用时", ("p50", "p90", "p99", "max")),
            _col("已过期", lambda r: r["instructions"]["expired"]),
            _col("已拒绝", lambda r: r["instructions"]["refused"])]),
        _table("告警", group, stats, [
            _col("告警总数", lambda r: r["alerts"]["total"]),
            *[_col(f"类别·{ALERT_KINDS.get(k, k)}", _with(k, lambda r, k: r["alerts"]["by_kind"].get(k, 0)))
              for k in kinds],
            _col("紧急求助次数", lambda r: r["alerts"]["sos"]),
            *pct("alerts", "sos_ack_s", "求助确认用时", ("p50", "p90", "max")),
            _col("未确认", lambda r: r["alerts"]["unacknowledged"]),
            _col("已升级", lambda r: r["alerts"]["escalated"])]),
        _table("调取申请", group, stats, [
            _col("收到申请", lambda r: r["requests"]["received"]),
            _col("批准", lambda r: r["requests"]["decided"]["approve"]),
            _col("驳回", lambda r: r["requests"]["decided"]["refuse"]),
            _col("要求补充材料", lambda r: r["requests"]["more_info"]),
            *pct("requests", "decision_s", "决定用时", ("p50", "p90", "max")),
            _col("导出", lambda r: r["requests"]["exports"]),
            _col("下载次数", lambda r: r["requests"]["downloads"]),
            _col("撤销链接", lambda r: r["requests"]["links_revoked"])]),
    ]
    ev = stats.get("evidence")
    if ev is not None:
        check = ev["last_verification"]
        out.append(Table("证据档案", ["档案总大小（字节）", "本期封存片段", "本期封存字节", "本期删除字节",
                                  "本期增长（字节）", "最近校验时间", "校验结果"],
                         [[ev["archive_bytes"], ev["segments_sealed"], ev["sealed_bytes"], ev["deleted_bytes"],
                           ev["growth_bytes"], check["at"] or "", "通过" if check["ok"] else "未通过"]]))
    return out
