"""Janus 1.1 (Debian's ``janus``) as a benchmark baseline: its configuration and its command line.

:func:`write_config` generates a configuration folder of three files for one Janus process:

- ``janus.jcfg``: log to stdout, no admin secret, no STUN, no TURN, no ICE-TCP, IPv4 only, no
  mDNS; every plugin but ``janus.plugin.videoroom`` and every transport but HTTP disabled; no
  event handlers or external loggers;
- ``janus.plugin.videoroom.jcfg``: no predefined room (the load generator creates one per unit);
- ``janus.transport.http.jcfg``: the Janus API on ``http://127.0.0.1:PORT/janus``, no HTTPS, no
  admin API.

ICE candidates are host candidates on this machine's primary address only (``ice_enforce_list``,
:func:`primary_address`), which is where the load generator's peers are as well, so media never
leaves the machine. Other interfaces are left out because on a shared machine they come and go
(other test suites create network namespaces with veth pairs): a session whose ICE pair used one
lost its media when it vanished. Nothing here starts a process:
:func:`command` is the argv, :data:`READY_TEXT` the log line that says Janus accepts requests.
"""

from __future__ import annotations

import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

JANUS_BIN = "/usr/bin/janus"
LIBDIR = Path("/usr/lib/x86_64-linux-gnu/janus")
READY_TEXT = "HTTP webserver started"
INSTALL_HINT = "Janus is not installed: apt-get install -y janus (Debian package, version 1.1.2 measured)"


def installed() -> bool:
    return shutil.which("janus") is not None or Path(JANUS_BIN).exists()


def primary_address() -> str:
    """This machine's IPv4 address toward its default route (found without sending a packet)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("198.51.100.1", 9))  # TEST-NET-2: only the route is looked up
        except OSError as exc:
            raise RuntimeError(f"no default route to find this machine's address by: {exc}") from exc
        address: str = s.getsockname()[0]
    return address


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (Janus takes its port from its config file)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class JanusConfig:
    port: int
    rtp_ports: tuple[int, int] = (20000, 40000)
    debug_level: int = 4  # 4 = info: prints READY_TEXT; above that Janus logs per packet
    session_timeout_s: int = 60  # a session without a request or long poll this long is destroyed
    host_address: str = ""  # the only address Janus gathers candidates on; "" = every interface

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/janus"


def _others(folder: str, keep: str) -> str:
    """The comma-separated shared objects in Janus's ``folder`` other than ``keep`` (to disable)."""
    names = sorted(p.name for p in (LIBDIR / folder).glob("*.so") if p.name != keep)
    return ",".join(names)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(folder: Path, config: JanusConfig) -> Path:
    """Write the three configuration files into ``folder`` (created if needed); returns ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    lo, hi = config.rtp_ports
    enforce = f"\n    ice_enforce_list = {_quote(config.host_address)}" if config.host_address else ""
    (folder / "janus.jcfg").write_text(f"""general: {{
    configs_folder = {_quote(str(folder))}
    plugins_folder = {_quote(str(LIBDIR / "plugins"))}
    transports_folder = {_quote(str(LIBDIR / "transports"))}
    events_folder = {_quote(str(LIBDIR / "events"))}
    loggers_folder = {_quote(str(LIBDIR / "loggers"))}
    log_to_stdout = true
    debug_level = {config.debug_level}
    debug_timestamps = true
    debug_colors = false
    session_timeout = {config.session_timeout_s}
    server_name = "bench-janus"
}}
certificates: {{
}}
media: {{
    ipv6 = false
    rtp_port_range = "{lo}-{hi}"
}}
nat: {{
    nice_debug = false
    ice_tcp = false
    full_trickle = false
    ignore_mdns = true
    ice_ignore_list = "vmnet"{enforce}
}}
plugins: {{
    disable = {_quote(_others("plugins", "libjanus_videoroom.so"))}
}}
transports: {{
    disable = {_quote(_others("transports", "libjanus_http.so"))}
}}
loggers: {{
    disable = {_quote(_others("loggers", ""))}
}}
events: {{
    broadcast = false
    disable = {_quote(_others("events", ""))}
}}
""", encoding="utf-8")
    (folder / "janus.plugin.videoroom.jcfg").write_text("general: {\n}\n", encoding="utf-8")
    (folder / "janus.transport.http.jcfg").write_text(f"""general: {{
    json = "compact"
    base_path = "/janus"
    http = true
    port = {config.port}
    ip = "127.0.0.1"
    https = false
}}
admin: {{
    admin_http = false
    admin_https = false
}}
cors: {{
}}
""", encoding="utf-8")
    return folder


def command(folder: Path) -> list[str]:
    """argv of a Janus process reading only ``folder`` (``-F``: configs folder, ``-C``: main file)."""
    return [JANUS_BIN, "-F", str(folder), "-C", str(folder / "janus.jcfg")]
