"""Static checks of the console's files: no external requests, every import and element id
resolves, the test hooks the browser tests rely on are exported, and the only npm dependencies
are the Socket.IO client and Leaflet, pinned by the lockfile."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

CONSOLE = Path(__file__).resolve().parents[2] / "console"
STATIC = CONSOLE / "static"
PAGES = {"index.html": "console.js", "field.html": "field.js", "portal.html": "portal.js",
         "report-stats.html": "report-stats.js", "report.html": "report.js"}


def _static_files() -> list[Path]:
    return sorted(p for p in STATIC.iterdir() if p.suffix in {".html", ".js", ".css"})


def test_no_file_reaches_outside_the_server() -> None:
    # The command centre network is air-gapped: no CDN, no web fonts, no absolute URLs.
    for path in _static_files():
        text = path.read_text(encoding="utf-8")
        found = re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, flags=re.IGNORECASE)
        assert not found, f"{path.name} refers to external hosts: {found}"
        assert "@import" not in text, f"{path.name}: CSS @import fetches another file"


@pytest.mark.parametrize("page", sorted(PAGES))
def test_pages_load_assets_by_absolute_server_paths(page: str) -> None:
    html = (STATIC / page).read_text(encoding="utf-8")
    refs = re.findall(r"""(?:src|href)="([^"]+)\"""", html)
    assert refs, f"{page} loads nothing"
    for ref in refs:
        if ref.startswith("data:"):
            continue
        if ref in ("/portal/dispatch_verify.py", "/portal/court-public-key.pem"):
            continue  # the portal's downloads (tests/dispatch_server/test_portal_downloads.py)
        if ref == "/" and page == "report.html":
            continue  # the report's link back to the console: a page, not an asset
        assert ref.startswith(("/static/", "/vendor/")), f"{page}: {ref} is not served by the server"
        if ref.startswith("/static/"):
            assert (STATIC / ref.removeprefix("/static/")).is_file(), f"{page}: {ref} does not exist"
    if page == "index.html":
        assert "/vendor/socket.io.min.js" in refs
        # Leaflet's UMD build defines window.L: a classic script, loaded before the modules.
        assert "/vendor/leaflet/leaflet.js" in refs and "/vendor/leaflet/leaflet.css" in refs
        assert html.index('src="/vendor/leaflet/leaflet.js"') < html.index('type="module"')


def test_module_imports_resolve() -> None:
    for path in STATIC.glob("*.js"):
        for target in re.findall(r"""from\s+'(\.[^']+)'""", path.read_text(encoding="utf-8")):
            assert (path.parent / target).resolve().is_file(), f"{path.name} imports missing {target}"


def _module_closure(entry: str) -> list[Path]:
    """The entry script and every module it imports, directly or not."""
    seen: list[Path] = []
    todo = [STATIC / entry]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.append(path)
        for target in re.findall(r"""from\s+'(\.[^']+)'""", path.read_text(encoding="utf-8")):
            todo.append((path.parent / target).resolve())
    return seen


@pytest.mark.parametrize(("page", "script"), sorted(PAGES.items()))
def test_every_element_id_the_script_uses_is_in_its_page(page: str, script: str) -> None:
    html = (STATIC / page).read_text(encoding="utf-8")
    ids = set(re.findall(r'\bid="([^"]+)"', html))
    for module in _module_closure(script):
        used = set(re.findall(r"""byId\('([^']+)'\)""", module.read_text(encoding="utf-8")))
        assert used <= ids, f"{module.name} uses ids missing from {page}: {sorted(used - ids)}"
    used = set(re.findall(r"""byId\('([^']+)'\)""", (STATIC / script).read_text(encoding="utf-8")))
    assert used, f"{script} looks up no elements"


def test_every_module_is_used_by_a_page() -> None:
    used = {p.name for entry in PAGES.values() for p in _module_closure(entry)}
    modules = {p.name for p in STATIC.glob("*.js")}
    assert modules <= used, f"modules no page loads: {sorted(modules - used)}"


def test_test_hooks_are_exported() -> None:
    console = (STATIC / "console.js").read_text(encoding="utf-8")
    start = re.search(r"^\s+window\.dispatchConsole = \{", console, flags=re.MULTILINE)
    assert start, "console.js does not set window.dispatchConsole"
    hook = console[start.start():]
    hook = hook[: hook.index("};")]
    for name in ("tiles:", "roster:", "patrol:", "stats:", "connection()", "actions:", "instructions:", "alerts:",
                 "talk:", "alarm:", "map:"):
        assert name in hook, f"dispatchConsole lacks {name}"
    tile = (STATIC / "video-tile.js").read_text(encoding="utf-8")
    for needle in ("this.pc = ", "this.video = ", "get state()", "dataset.unitId", "dataset.state"):
        assert needle in tile
    roster = (STATIC / "roster.js").read_text(encoding="utf-8")
    assert "row.dataset.unitId" in roster
    patrol = (STATIC / "patrol.js").read_text(encoding="utf-8")
    assert "this.current = " in patrol and "this.active = " in patrol
    field = (STATIC / "field.js").read_text(encoding="utf-8")
    assert "window.fieldPage = {" in field
    hook = field[field.index("window.fieldPage = {"):]
    for name in ("get pc()", "get state()", "get link()", "orders:", "get talk()", "get gps()", "setLanguage:"):
        assert name in hook, f"fieldPage lacks {name}"
    html = (STATIC / "field.html").read_text(encoding="utf-8")
    for element in ('id="field-state"', 'id="link-state"', 'id="gps-state"', 'id="talk-state"', 'id="orders"',
                    'id="talk-audio"', 'id="lang-btn"'):
        assert element in html, element


def test_only_dependencies_are_the_socketio_client_v4_leaflet_1_the_font_and_echarts() -> None:
    package = json.loads((CONSOLE / "package.json").read_text(encoding="utf-8"))
    assert sorted(package["dependencies"]) == ["@fontsource/noto-sans-sc", "echarts", "leaflet", "socket.io-client"]
    assert not package.get("devDependencies")
    lock = json.loads((CONSOLE / "package-lock.json").read_text(encoding="utf-8"))
    pinned = lock["packages"]["node_modules/socket.io-client"]["version"]
    assert pinned.split(".")[0] == "4", pinned
    leaflet = lock["packages"]["node_modules/leaflet"]["version"]
    assert leaflet.split(".")[:2] >= ["1", "9"] and leaflet.split(".")[0] == "1", leaflet
    assert "node_modules/" in (CONSOLE / ".gitignore").read_text(encoding="utf-8").split()


def test_scripts_parse() -> None:
    # console/package.json says "type": "module", so node parses the files as ES modules.
    for path in STATIC.glob("*.js"):
        result = subprocess.run(["node", "--check", str(path)], capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, f"{path.name}: {result.stderr}"


def test_dispatch_hooks_are_in_place() -> None:
    # The SOS banner and its parts, addressed by the browser tests.
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    banner = re.search(r'<section id="sos-banner"[^>]*>(.*?)</section>', html, flags=re.DOTALL)
    assert banner, "index.html has no #sos-banner"
    for part in ("sos-position", "sos-ack", "sos-unit", "sos-message", "sos-time", "sos-escalated"):
        assert re.search(rf'class="[^"]*\b{part}\b', banner.group(1)), f"#sos-banner has no .{part}"
    alerts = (STATIC / "alerts.js").read_text(encoding="utf-8")
    for needle in ("b.dataset.alertId = ", "b.dataset.unitId = ", "this.alerts = new Map()", "li.dataset.alertId",
                   "li.dataset.escalated", "openTile(alert.unit_id)"):
        assert needle in alerts, needle
    instructions = (STATIC / "instructions.js").read_text(encoding="utf-8")
    assert "li.dataset.instructionId = ins.id" in instructions and "li.dataset.state = ins.state" in instructions
    texts = (STATIC / "console-texts.js").read_text(encoding="utf-8")
    assert "'ins_state.expired': '已过期'" in texts and "'ins_state.expired': 'Expired'" in texts
    actions = (STATIC / "actions.js").read_text(encoding="utf-8")
    assert "li.dataset.actionId" in actions and "li.dataset.state" in actions
    groups = (STATIC / "wall-groups.js").read_text(encoding="utf-8")
    assert "element.dataset.actionId = key" in groups
    panels = (STATIC / "dispatch-panels.js").read_text(encoding="utf-8")
    for event in ("action_update", "instruction_update", "instruction_updates", "alert", "alert_update"):
        assert f"socket.on('{event}'" in panels, f"the console does not listen to {event}"


def test_map_hooks_and_no_tiles_unless_configured() -> None:
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    assert 'data-panel="map-panel"' in html and 'id="map-panel"' in html and 'id="map"' in html
    mapjs = (STATIC / "map.js").read_text(encoding="utf-8")
    for needle in ("leaflet: ", "markers: this.markers", "body.dataset.unitId", "entry.body.dataset.status",
                   "/api/units/nearest?", "type: 'goto'", "note: t('map_goto_note')", "invalidateSize("):
        assert needle in mapjs, needle
    # The only tile layer is the configured one; no marker images (Leaflet's default icon is a PNG).
    assert mapjs.count("L.tileLayer(") == 1 and "config.tileUrl" in mapjs
    assert "L.Icon.Default" not in mapjs and "new L.Icon(" not in mapjs
    gcj = (STATIC / "gcj02.js").read_text(encoding="utf-8")
    assert "6378245.0" in gcj and "0.00669342162296594323" in gcj and "72.004" in gcj and "55.8271" in gcj


def test_sos_alarm_is_synthesised_not_loaded() -> None:
    # No audio files: the alarm tone is made with WebAudio oscillators.
    for path in STATIC.iterdir():
        assert path.suffix not in {".mp3", ".wav", ".ogg", ".oga", ".m4a", ".webm"}, path.name
    for path in _static_files():
        text = path.read_text(encoding="utf-8")
        # An <audio> element plays a WebRTC stream (the field page's talk-back), never a file.
        assert not re.search(r"new Audio\(|<audio\b[^>]*\bsrc=", text), f"{path.name} plays an audio file"
    alarm = (STATIC / "alarm-sound.js").read_text(encoding="utf-8")
    assert "createOscillator()" in alarm and "AudioContext" in alarm


def test_talk_back_sends_audio_only_to_the_talk_resource() -> None:
    talk = (STATIC / "talk-back.js").read_text(encoding="utf-8")
    assert "getUserMedia({ audio: true, video: false })" in talk
    assert "direction: 'sendonly'" in talk
    assert "`/api/talk/${encodeURIComponent(unitId)}`" in talk
    assert "waitForIceGathering(pc)" in talk and "deleteSession(" in talk
