"""Typed, frozen configuration: defaults, then ``config.toml``, then ``DISPATCH_*`` environment.

Order of precedence (later wins): the dataclass defaults below, the TOML file, environment
variables named ``DISPATCH_<SECTION>__<KEY>`` (for example ``DISPATCH_SERVER__PORT=0``).
Unknown sections or keys are rejected; every error names the offending key. Secrets (the Redis
URL's password, TURN credentials) print as ``***``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
import typing
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, TypeVar

from recordings.archive_config import witness_location
from recordings.checkpoint import default_checkpoint_path

ENV_PREFIX = "DISPATCH_"
EVENT_LOOPS = ("uvloop", "asyncio")
T = TypeVar("T")


def redact_url(url: str) -> str:
    """``redis://user:secret@host`` → ``redis://user:***@host``."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


class ConfigError(ValueError):
    """A configuration value is missing, unknown or invalid; the message names the key."""


@dataclass(frozen=True)
class IceServer:
    """One STUN/TURN server handed to publishers and viewers (RTCIceServer)."""

    urls: tuple[str, ...]
    username: str = ""
    credential: str = field(default="", repr=False)

    def as_rtc_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"urls": list(self.urls)}
        if self.username:
            out["username"] = self.username
            out["credential"] = self.credential
        return out

    def __repr__(self) -> str:
        cred = ", credential='***'" if self.credential else ""
        return f"IceServer(urls={self.urls!r}, username={self.username!r}{cred})"


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    node_id: str = ""  # empty: "<hostname>-<pid>"
    max_message_bytes: int = 64 * 1024  # largest Socket.IO message or HTTP JSON body
    max_sdp_bytes: int = 32 * 1024  # largest SDP offer accepted by WHIP/WHEP
    shutdown_grace_s: float = 5.0  # first signal drains for this long, a second one forces
    event_loop: str = "uvloop"  # "uvloop" (libuv; ~15% less CPU per message, docs/benchmarks.md "Geo") or "asyncio"
    # glibc malloc arenas (M_ARENA_MAX; 0: glibc's default of 8 per core): every recording thread
    # kept its own, ~1.3 MB per recorded unit (dispatch_server/malloc_arenas.py).
    malloc_arena_max: int = 2
    # Reverse proxies (addresses or CIDR ranges) whose X-Forwarded-For names the client; from any
    # other peer the header is ignored (lockouts and the ledger use the peer's own address).
    trusted_proxies: tuple[str, ...] = ()
    # Browser origins besides the server's own allowed to open Socket.IO (e.g. "https://wall.court.example").
    allowed_origins: tuple[str, ...] = ()
    # What a stranger can hold (docs/security.md, "Timeouts and caps"):
    header_timeout_s: float = 10.0  # a connection without a complete request head this long after it opened is closed
    idle_timeout_s: float = 75.0  # a kept-alive connection is closed when its next request head is not complete by then
    body_timeout_s: float = 30.0  # a request body must arrive within this, plus 1 s per 32 KiB its route accepts
    max_connections_per_address: int = 200  # TCP connections open at once from one address (trusted proxies exempt)
    handshake_timeout_s: float = 10.0  # a Socket.IO connection that has joined no namespace this long is closed


@dataclass(frozen=True)
class StorageConfig:
    data_dir: str = "data"  # relative paths are resolved against the config file's folder
    # empty: the server's durable state in SQLite under data_dir (one node, or nodes sharing one host);
    # postgresql://user:password@host:port/db: in PostgreSQL, shared by every node of a cluster (docs/cluster.md)
    url: str = ""
    pool_size: int = 4  # PostgreSQL connections (and database threads) per process


@dataclass(frozen=True)
class AuthConfig:
    session_ttl_s: float = 12 * 3600.0
    min_password_length: int = 8


@dataclass(frozen=True)
class MediaConfig:
    publisher_timeout_s: float = 3.0  # a publisher silent this long is offline and may be replaced
    pli_min_interval_s: float = 0.3  # keyframe requests to a publisher are coalesced to this rate
    keyframe_interval_s: float = 4.0  # periodic keyframe request to every publisher; 0 disables
    viewer_queue_frames: int = 30  # ~1 s at 30 fps; a viewer further behind restarts at the next keyframe
    engine: str = "packets"  # "packets": forward RTP packets (SFU fast path); "frames": encoded frames via aiortc
    publisher_max_bitrate: int = 2_500_000  # packet engine: REMB sent to every publisher (bit/s)
    # packet engine: the bytes retransmitted to a viewer over a second are at most this share of
    # those forwarded to it (with reordering links NACK every overtaken packet: ~0.8 on 5% loss, 80 ± 40 ms)
    viewer_rtx_share: float = 1.0
    # packet engine: per-packet SRTP, header build and send in C (media._dataplane); false: the Python reference
    native_dataplane: bool = True
    ice_servers: tuple[IceServer, ...] = ()
    # media worker processes (dispatch_server.media_workers): -1 one per core this process may run on,
    # 0 media in the server's own process, N that many
    workers: int = -1

    @property
    def worker_count(self) -> int:
        """How many media worker processes ``workers`` means on this machine (0: none)."""
        if self.workers >= 0:
            return self.workers
        try:
            return len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            return os.cpu_count() or 1


@dataclass(frozen=True)
class ConsoleConfig:
    patrol_interval_s: float = 8.0
    time_zone: str = "Asia/Shanghai"  # the court's: every time on the console is shown in it (IANA name)


@dataclass(frozen=True)
class GeoConfig:
    stale_after_s: float = 30.0  # a unit whose last fix is older shows as stale
    tile_url: str = ""  # map tiles, e.g. "https://tiles.court.example/{z}/{x}/{y}.png"; empty: plain map, no requests
    tile_crs: str = "wgs84"  # "gcj02" for most Chinese tile servers: positions are converted for display
    center: tuple[float, ...] = (39.9042, 116.4074)  # map centre [lat, lon] before any unit has a fix
    zoom: int = 13
    telemetry_heartbeat_s: float = 20.0  # the telemetry channel pings this often and drops a unit that does not answer


@dataclass(frozen=True)
class AlertsConfig:
    escalate_after_s: float = 60.0  # an alert nobody acknowledged this long is escalated
    sweep_interval_s: float = 0.5  # how often TTLs, acknowledgement deadlines and escalations are checked


@dataclass(frozen=True)
class ProcedureRule:
    """流程预警: what the rules of procedure require of one action type (``[[procedure.rules]]``)."""

    type: str  # an action type: seizure (查封), search (搜查), eviction (腾退), service, other
    min_recorders: int = 2  # recorders (units of the action recording) that must run at once
    record_before_start: bool = True  # recording must already run when the action starts
    stay_in_area: bool = True  # each unit of the team stays inside the action's area while it runs
    notice_within_s: float = 300.0  # the spoken notice (全程录音录像告知) within this long of start; 0: none


# Seizure, search and eviction: at least two recorders throughout, the notice within 5 minutes.
DEFAULT_PROCEDURE_RULES = (
    ProcedureRule("seizure"),
    ProcedureRule("search"),
    ProcedureRule("eviction"),
    ProcedureRule("service", min_recorders=1, record_before_start=False, stay_in_area=False, notice_within_s=0.0),
    ProcedureRule("other", min_recorders=1, record_before_start=False, stay_in_area=False, notice_within_s=0.0),
)


@dataclass(frozen=True)
class ProcedureConfig:
    court_name: str = "人民法院执行指挥中心"  # shown in the header of reports and printed statistics
    rules: tuple[ProcedureRule, ...] = DEFAULT_PROCEDURE_RULES

    def rule_for(self, action_type: str) -> ProcedureRule:
        """The rule of an action type; a type without a rule of its own gets one recorder and nothing else."""
        for rule in self.rules:
            if rule.type == action_type:
                return rule
        return ProcedureRule(action_type, min_recorders=1, record_before_start=False, stay_in_area=False,
                             notice_within_s=0.0)


@dataclass(frozen=True)
class RetentionRule:
    """How long recordings of one category are kept (``[[archive.retention]]``)."""

    category: str
    keep_days: float


@dataclass(frozen=True)
class ArchiveConfig:
    dir: str = ""  # empty: <data_dir>/archive; relative paths resolve against the config file's folder
    enabled: bool = True  # record every publishing unit
    segment_s: float = 10.0  # segments are cut at the first keyframe after this many seconds
    queue_frames: int = 1500  # frames buffered between the relay and one writer (~18 s of 30 fps video + Opus)
    reconnect_grace_s: float = 300.0  # a recording stays open this long for its unit to come back
    sign_interval_s: float = 60.0  # a signed tree head at least this often while entries arrive
    min_free_bytes: int = 64 * 1024 * 1024  # below this, recording pauses (disk full) and operators are alarmed
    signing_key: str = ""  # empty: <data_dir>/keys/ledger-ed25519.pem (created at first start)
    # What the server last verified of its ledger, kept outside the archive so that a rewritten or
    # rolled-back ledger is refused at start; empty: <signing key's folder>/checkpoints/<archive>.json
    checkpoint: str = ""
    # Where every signed tree head also goes: directories (another disk or machine) and http(s) URLs of
    # `dispatch-audit witness serve`; each refuses a head the ledger does not provably extend.
    witnesses: tuple[str, ...] = ()
    default_category: str = "standard"
    retention: tuple[RetentionRule, ...] = (
        RetentionRule("standard", 365.0),
        RetentionRule("incident", 3650.0),
    )
    max_delete_share: float = 0.2  # a retention run that would delete more than this share stops and alarms
    max_snapshot_bytes: int = 5 * 1024 * 1024  # largest still (JPEG) a unit may upload; larger ones get 413


@dataclass(frozen=True)
class PartyConfig:
    code_ttl_s: float = 30 * 86400.0  # an access code the court issued works this long, as often as needed
    session_ttl_s: float = 24 * 3600.0  # a party's portal session after the code
    link_max_lifetime_s: float = 7 * 86400.0  # download links expire at the latest after this
    max_failures: int = 5  # wrong codes from one address for one case before a lockout
    lockout_s: float = 900.0  # first lockout; doubles per further failure, up to max_lockout_s
    max_lockout_s: float = 3600.0  # a lockout never lasts longer, so nobody can lock a party out for good
    export_workers: int = 1  # exports running at once (each uses most of a core)
    time_zone: str = "Asia/Shanghai"  # the court's zone: times on the exports' watermark (IANA name)
    # A font file with Chinese glyphs for the exports' watermark; empty: the first found on the machine
    # (fonts-noto-cjk, fonts-wqy-*); with none, the watermark is drawn in English.
    watermark_font: str = ""


@dataclass(frozen=True)
class RedisConfig:
    url: str = field(default="", repr=False)  # empty: single node, in-memory presence

    def __repr__(self) -> str:
        return f"RedisConfig(url={redact_url(self.url)!r})"


@dataclass(frozen=True)
class ClusterConfig:
    """Viewers on any node (docs/cluster.md): a node pulls a unit's stream from the node it
    publishes on, authenticated with short-lived tokens signed with ``secret``."""

    secret: str = field(default="", repr=False)  # shared by every node; empty: no pulling (409 names the owner)
    advertise_url: str = ""  # how other nodes reach this one, e.g. "http://10.0.0.5:8080"; empty: the bound address
    token_ttl_s: float = 30.0  # a node token is good this long after it was signed
    pull_linger_s: float = 5.0  # a pull with no viewer left ends after this long (at least 1 s)
    pull_retry_max_s: float = 5.0  # a pull that lost its source retries with backoff up to this interval
    pull_connect_timeout_s: float = 15.0  # the first viewer of a pull waits this long for the owner's media

    def __repr__(self) -> str:
        return (f"ClusterConfig(secret={'***' if self.secret else ''!r}, advertise_url={self.advertise_url!r}, "
                f"token_ttl_s={self.token_ttl_s}, pull_linger_s={self.pull_linger_s}, "
                f"pull_retry_max_s={self.pull_retry_max_s}, pull_connect_timeout_s={self.pull_connect_timeout_s})")


@dataclass(frozen=True)
class DemoConfig:
    simulated_units: int = 0  # units run inside the server process (make run starts 3)
    unit_prefix: str = "sim"


@dataclass(frozen=True)
class MetricsConfig:
    """Prometheus ``/metrics`` (docs/observability.md): on a listener of its own, off the public port."""

    host: str = "127.0.0.1"  # where the metrics listener binds (a management network address)
    port: int = 9108  # 0 picks a free port; -1: no separate listener
    token: str = field(default="", repr=False)  # when set, /metrics also answers on the public port with it

    def __repr__(self) -> str:
        return f"MetricsConfig(host={self.host!r}, port={self.port}, token={'***' if self.token else ''!r})"


@dataclass(frozen=True)
class LogConfig:
    format: str = "text"  # "text" (people) or "json" (one object per line, for a log collector)
    level: str = "INFO"


@dataclass(frozen=True)
class Settings:
    server: ServerConfig = ServerConfig()
    storage: StorageConfig = StorageConfig()
    auth: AuthConfig = AuthConfig()
    media: MediaConfig = MediaConfig()
    console: ConsoleConfig = ConsoleConfig()
    alerts: AlertsConfig = AlertsConfig()
    geo: GeoConfig = GeoConfig()
    archive: ArchiveConfig = ArchiveConfig()
    party: PartyConfig = PartyConfig()
    redis: RedisConfig = RedisConfig()
    cluster: ClusterConfig = ClusterConfig()
    demo: DemoConfig = DemoConfig()
    metrics: MetricsConfig = MetricsConfig()
    log: LogConfig = LogConfig()
    procedure: ProcedureConfig = ProcedureConfig()
    base_dir: str = "."  # folder of the config file; not settable from the file

    @property
    def data_dir(self) -> Path:
        p = Path(self.storage.data_dir).expanduser()
        return p if p.is_absolute() else (Path(self.base_dir) / p).resolve()

    @property
    def archive_dir(self) -> Path:
        if not self.archive.dir:
            return self.data_dir / "archive"
        p = Path(self.archive.dir).expanduser()
        return p if p.is_absolute() else (Path(self.base_dir) / p).resolve()

    @property
    def checkpoint_path(self) -> Path:
        if not self.archive.checkpoint:
            return default_checkpoint_path(self.signing_key_path.parent, self.archive_dir)
        p = Path(self.archive.checkpoint).expanduser()
        return p if p.is_absolute() else (Path(self.base_dir) / p).resolve()

    @property
    def witness_targets(self) -> tuple[str, ...]:
        """``archive.witnesses`` with directories resolved like the other paths."""
        return tuple(witness_location(w, Path(self.base_dir)) for w in self.archive.witnesses)

    @property
    def watermark_font_path(self) -> str:
        """``party.watermark_font`` resolved like the other paths; empty when not set."""
        if not self.party.watermark_font:
            return ""
        p = Path(self.party.watermark_font).expanduser()
        return str(p if p.is_absolute() else (Path(self.base_dir) / p).resolve())

    @property
    def signing_key_path(self) -> Path:
        if not self.archive.signing_key:
            return self.data_dir / "keys" / "ledger-ed25519.pem"
        p = Path(self.archive.signing_key).expanduser()
        return p if p.is_absolute() else (Path(self.base_dir) / p).resolve()


def _coerce(key: str, value: Any, typ: Any) -> Any:
    origin = typing.get_origin(typ)
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if typ is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
    if typ is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    if typ is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if origin is tuple:
        (item_type, _ellipsis) = typing.get_args(typ)
        if isinstance(value, str):
            raise ConfigError(f"{key}: expected a list, got a string")
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return tuple(_coerce(f"{key}[{i}]", v, item_type) for i, v in enumerate(value))
    if dataclasses.is_dataclass(typ):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a table, got {value!r}")
        return _build(typ, value, key)
    raise ConfigError(f"{key}: unsupported type {typ!r}")  # pragma: no cover - programming error


def _build(cls: Any, raw: Mapping[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.name != "base_dir"}
    unknown = sorted(set(raw) - names)
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(f"{where}{unknown[0]}: unknown key (known: {', '.join(sorted(names))})")
    kwargs = {}
    for name, value in raw.items():
        key = f"{prefix}.{name}" if prefix else name
        if name == "urls" and isinstance(value, str):
            value = [value]  # RTCIceServer allows a single URL string
        kwargs[name] = _coerce(key, value, hints[name])
    return cls(**kwargs)


def section(cls: type[T], raw: Mapping[str, Any], prefix: str) -> T:
    """One section (``cls``, a config dataclass) from a plain mapping, checked like a file's: how a
    media worker receives its front's ``[media]`` and ``[log]``."""
    built: T = _build(cls, raw, prefix)
    return built


def _env_overrides(env: Mapping[str, str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :]
        if "__" not in rest:
            continue  # DISPATCH_CONFIG and similar are not overrides
        section, key = rest.lower().split("__", 1)
        out.setdefault(section, {})[key] = value
    return out


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(merged.get(k), Mapping):
            merged[k] = _merge(merged[k], v)
        else:
            merged[k] = v
    return merged


def load_settings(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Settings:
    """Build validated settings.

    ``path`` None means ``$DISPATCH_CONFIG``, else ``./config.toml`` when it exists, else
    defaults only. ``overrides`` (from command-line flags) win over everything.
    """
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    base_dir = Path.cwd()
    if path is None:
        path = env.get("DISPATCH_CONFIG") or ("config.toml" if Path("config.toml").is_file() else None)
    if path is not None:
        p = Path(path)
        try:
            raw = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {p}: not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {p}: {exc}") from None
        base_dir = p.resolve().parent
    raw = _merge(raw, _env_overrides(env))
    if overrides:
        raw = _merge(raw, {k: dict(v) for k, v in overrides.items()})
    settings: Settings = _build(Settings, raw, "")
    settings = dataclasses.replace(settings, base_dir=str(base_dir))
    validate(settings)
    return settings


def validate(s: Settings) -> None:
    """Range checks that types alone cannot express; each error names its key."""
    if s.storage.url and not s.storage.url.startswith(("postgresql://", "postgres://")):
        raise ConfigError("storage.url: only PostgreSQL is supported (postgresql://user:password@host:port/database); "
                          "leave it empty for SQLite under storage.data_dir")
    if not 1 <= s.storage.pool_size <= 64:
        raise ConfigError(f"storage.pool_size: {s.storage.pool_size} must be between 1 and 64")
    if not -1 <= s.metrics.port <= 65535:
        raise ConfigError(f"metrics.port: {s.metrics.port} is not a port (0 = any free one, -1 = no listener)")
    if s.metrics.token and len(s.metrics.token) < 16:
        raise ConfigError("metrics.token: use at least 16 characters (it guards /metrics on the public port)")
    if s.log.format not in ("text", "json"):
        raise ConfigError(f"log.format: {s.log.format!r} must be \"text\" or \"json\"")
    if s.log.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"log.level: {s.log.level!r} must be DEBUG, INFO, WARNING or ERROR")
    for i, proxy in enumerate(s.server.trusted_proxies):
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise ConfigError(f"server.trusted_proxies[{i}]: {proxy!r} is not an address or CIDR range") from None
    for i, origin in enumerate(s.server.allowed_origins):
        if not origin.startswith(("http://", "https://")) or origin.count("/") != 2:
            raise ConfigError(f"server.allowed_origins[{i}]: {origin!r} is not an origin like https://host:port")
    if not 0 <= s.server.port <= 65535:
        raise ConfigError(f"server.port: must be 0-65535, got {s.server.port}")
    if s.server.event_loop not in EVENT_LOOPS:
        raise ConfigError(f"server.event_loop: must be one of {', '.join(EVENT_LOOPS)}, got {s.server.event_loop!r}")
    if s.party.watermark_font and not Path(s.watermark_font_path).is_file():
        raise ConfigError(f"party.watermark_font: {s.watermark_font_path} is not a file "
                          "(a font with Chinese glyphs, e.g. /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc)")
    seen_types: set[str] = set()
    for i, rule in enumerate(s.procedure.rules):
        if rule.type in seen_types:
            raise ConfigError(f"procedure.rules[{i}].type: {rule.type!r} has a rule already")
        seen_types.add(rule.type)
        if rule.min_recorders < 0:
            raise ConfigError(f"procedure.rules[{i}].min_recorders: must be 0 or more, got {rule.min_recorders}")
        if rule.notice_within_s < 0:
            raise ConfigError(f"procedure.rules[{i}].notice_within_s: must be 0 (not required) or more")
    checks: list[tuple[str, float, float]] = [
        ("server.max_message_bytes", s.server.max_message_bytes, 1024),
        ("server.header_timeout_s", s.server.header_timeout_s, 0.1),
        ("server.idle_timeout_s", s.server.idle_timeout_s, 0.1),
        ("server.body_timeout_s", s.server.body_timeout_s, 0.1),
        ("server.max_connections_per_address", s.server.max_connections_per_address, 1),
        ("server.handshake_timeout_s", s.server.handshake_timeout_s, 0.1),
        ("server.max_sdp_bytes", s.server.max_sdp_bytes, 1024),
        ("server.malloc_arena_max", s.server.malloc_arena_max, 0),
        ("auth.session_ttl_s", s.auth.session_ttl_s, 1),
        ("auth.min_password_length", s.auth.min_password_length, 1),
        ("media.publisher_timeout_s", s.media.publisher_timeout_s, 0.5),
        ("media.pli_min_interval_s", s.media.pli_min_interval_s, 0.0),
        ("media.keyframe_interval_s", s.media.keyframe_interval_s, 0.0),
        ("media.viewer_queue_frames", s.media.viewer_queue_frames, 2),
        ("media.publisher_max_bitrate", s.media.publisher_max_bitrate, 50_000),
        ("media.viewer_rtx_share", s.media.viewer_rtx_share, 0.0),
        ("media.workers", s.media.workers, -1),
        ("console.patrol_interval_s", s.console.patrol_interval_s, 1.0),
        ("alerts.escalate_after_s", s.alerts.escalate_after_s, 1.0),
        ("alerts.sweep_interval_s", s.alerts.sweep_interval_s, 0.05),
        ("geo.stale_after_s", s.geo.stale_after_s, 1.0),
        ("geo.telemetry_heartbeat_s", s.geo.telemetry_heartbeat_s, 1.0),
        ("demo.simulated_units", s.demo.simulated_units, 0),
        ("archive.segment_s", s.archive.segment_s, 1.0),
        ("archive.queue_frames", s.archive.queue_frames, 10),
        ("archive.reconnect_grace_s", s.archive.reconnect_grace_s, 0.0),
        ("archive.sign_interval_s", s.archive.sign_interval_s, 1.0),
        ("archive.min_free_bytes", s.archive.min_free_bytes, 0),
        ("archive.max_snapshot_bytes", s.archive.max_snapshot_bytes, 1024),
        ("party.code_ttl_s", s.party.code_ttl_s, 60.0),
        ("party.session_ttl_s", s.party.session_ttl_s, 60.0),
        ("party.link_max_lifetime_s", s.party.link_max_lifetime_s, 1.0),
        ("party.max_failures", s.party.max_failures, 1),
        ("party.lockout_s", s.party.lockout_s, 1.0),
        ("party.max_lockout_s", s.party.max_lockout_s, 1.0),
        ("party.export_workers", s.party.export_workers, 1),
        ("cluster.token_ttl_s", s.cluster.token_ttl_s, 1.0),
        ("cluster.pull_linger_s", s.cluster.pull_linger_s, 1.0),
        ("cluster.pull_retry_max_s", s.cluster.pull_retry_max_s, 0.1),
        ("cluster.pull_connect_timeout_s", s.cluster.pull_connect_timeout_s, 1.0),
    ]
    for key, value, minimum in checks:
        if value < minimum:
            raise ConfigError(f"{key}: must be at least {minimum}, got {value}")
    if s.media.engine not in ("packets", "frames"):
        raise ConfigError(f"media.engine: must be 'packets' or 'frames', got {s.media.engine!r}")
    for i, ice in enumerate(s.media.ice_servers):
        for url in ice.urls:
            if not re.match(r"^(stun|stuns|turn|turns):", url):
                raise ConfigError(f"media.ice_servers[{i}].urls: {url!r} is not a stun:/turn: URL")
        if any(u.startswith("turn") for u in ice.urls) and not (ice.username and ice.credential):
            raise ConfigError(f"media.ice_servers[{i}]: TURN servers need username and credential")
    try:
        zoneinfo.ZoneInfo(s.console.time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"console.time_zone: {s.console.time_zone!r} is not an IANA time zone "
                          "like 'Asia/Shanghai'") from None
    if s.geo.tile_crs not in ("wgs84", "gcj02"):
        raise ConfigError(f"geo.tile_crs: must be 'wgs84' or 'gcj02', got {s.geo.tile_crs!r}")
    if len(s.geo.center) != 2 or not (-90 <= s.geo.center[0] <= 90 and -180 <= s.geo.center[1] <= 180):
        raise ConfigError(f"geo.center: must be [lat, lon], got {list(s.geo.center)!r}")
    if s.geo.tile_url and not re.match(r"^(https?://|/)", s.geo.tile_url):
        raise ConfigError(f"geo.tile_url: must be an http(s) URL or a path on this server, got {s.geo.tile_url!r}")
    if not 1 <= s.geo.zoom <= 20:
        raise ConfigError(f"geo.zoom: must be 1..20, got {s.geo.zoom}")
    if not 0 < s.archive.max_delete_share <= 1:
        raise ConfigError(f"archive.max_delete_share: must be in (0, 1], got {s.archive.max_delete_share}")
    for i, w in enumerate(s.archive.witnesses):
        if not w.strip() or (re.match(r"^[a-z]+://", w) and not w.startswith(("http://", "https://"))):
            raise ConfigError(f"archive.witnesses[{i}]: {w!r} is neither a directory nor an http(s) URL")
    categories = [r.category for r in s.archive.retention]
    if len(set(categories)) != len(categories):
        raise ConfigError("archive.retention: a category is listed twice")
    if s.archive.default_category not in categories:
        raise ConfigError(f"archive.default_category: {s.archive.default_category!r} has no retention rule")
    for i, r in enumerate(s.archive.retention):
        if r.keep_days <= 0:
            raise ConfigError(f"archive.retention[{i}].keep_days: must be positive, got {r.keep_days}")
    try:
        zoneinfo.ZoneInfo(s.party.time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"party.time_zone: {s.party.time_zone!r} is not an IANA time zone "
                          "(e.g. Asia/Shanghai)") from None
    if s.cluster.secret and len(s.cluster.secret) < 32:
        raise ConfigError("cluster.secret: use at least 32 characters (it signs node-to-node tokens)")
    if s.cluster.advertise_url and not re.match(r"^https?://[^/]+$", s.cluster.advertise_url):
        raise ConfigError(f"cluster.advertise_url: {s.cluster.advertise_url!r} is not a base URL "
                          "like http://10.0.0.5:8080")
    if s.redis.url and not re.match(r"^(redis|rediss|unix)://", s.redis.url):
        raise ConfigError(f"redis.url: {redact_url(s.redis.url)!r} is not a redis:// URL")


def describe(s: Settings) -> str:
    """One line per section for the start-up log, secrets redacted."""
    parts = []
    for f in dataclasses.fields(s):
        if f.name == "base_dir":
            continue
        parts.append(f"{f.name}: {getattr(s, f.name)!r}")
    return "\n".join(parts)

