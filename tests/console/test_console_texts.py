"""The console's text catalogue (console/static/console-texts.js) has a Chinese and an English
text for every machine code the server can send a person, and for every key the console uses.

The codes are read from the server itself: alert kinds, error codes raised anywhere in
``dispatch_server/``, instruction types, states, priorities and reasons, gap causes, footage
request states, decisions and history entries, audit verbs, roles, unit kinds, action types and
states, retention categories. A new code without a text fails here, before a person meets it raw.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from dispatch_server import actions, alerts, auth, footage_requests, instructions
from dispatch_server.config import ArchiveConfig
from recordings import gaps

REPO = Path(__file__).resolve().parents[2]
STATIC = REPO / "console" / "static"
SERVER = REPO / "dispatch_server"

ERROR_CODE = re.compile(r"""(?:\bcode(?::\s*str)?\s*=\s*|"code":\s*|status, code = \d+, )"([a-z_]+)\"""")
WHAT = re.compile(r'"what":\s*"([a-z_]+)"')
VERB = re.compile(r'"((?:action|alert|instruction|login|talk|unit|user)\.[a-z_]+)"')


def catalogue() -> dict[str, set[str]]:
    script = ("import('./console/static/console-texts.js').then((m) => "
              "console.log(JSON.stringify({zh: Object.keys(m.TEXTS.zh), en: Object.keys(m.TEXTS.en)})))")
    out = subprocess.run(["node", "--input-type=module", "-e", script], cwd=REPO, capture_output=True, text=True,
                         timeout=60, check=True)
    keys = json.loads(out.stdout)
    return {"zh": set(keys["zh"]), "en": set(keys["en"])}


def server_sources() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(SERVER.rglob("*.py")))


def codes_the_server_sends() -> set[str]:
    source = server_sources()
    keys = {f"err.{c}" for c in ERROR_CODE.findall(source)}
    keys |= {f"alert.{k}" for k in alerts.KINDS} | {f"alert_msg.{k}" for k in alerts.KINDS}
    keys |= {f"ins_type.{k}" for k in instructions.TYPES} | {f"ins_state.{k}" for k in instructions.STATES}
    keys |= {f"priority.{k}" for k in instructions.PRIORITIES} | {f"ins_reason.{k}" for k in instructions.REASON_CODES}
    keys |= {f"gap.{k}" for k in gaps.CAUSES}
    keys |= {f"req_state.{k}" for k in footage_requests.STATES}
    keys |= {f"req_what.{k}" for k in {*WHAT.findall(source), *footage_requests.DECISIONS}}
    verbs = {v for v in VERB.findall(source) if not v.startswith("alert.")}
    verbs |= {f"instruction.{s}" for s in instructions.STATES} | {"action.geofence_exit", "action.geofence_enter"}
    keys |= {f"audit.{v}" for v in verbs}
    keys |= {f"role.{r}" for r in auth.ROLES} | {f"kind.{k}" for k in auth.UNIT_KINDS}
    keys |= {f"action_type.{k}" for k in actions.ACTION_TYPES} | {f"action_state.{k}" for k in actions.STATES}
    keys |= {f"category.{r.category}" for r in ArchiveConfig().retention}
    return keys


def test_every_code_the_server_can_send_has_a_chinese_and_an_english_text() -> None:
    texts = catalogue()
    wanted = codes_the_server_sends()
    assert len(wanted) > 150, "the server's codes were not found"
    for language in ("zh", "en"):
        missing = sorted(wanted - texts[language])
        assert not missing, f"codes without a {language} text in console-texts.js: {missing}"


def test_both_languages_have_the_same_keys() -> None:
    texts = catalogue()
    assert sorted(texts["zh"] - texts["en"]) == [] and sorted(texts["en"] - texts["zh"]) == []


def test_every_key_the_console_uses_has_a_text() -> None:
    texts = catalogue()["zh"]
    used: set[str] = set()
    for path in [*STATIC.glob("*.js"), STATIC / "index.html", STATIC / "report.html"]:
        if path.name.startswith(("field", "portal")) or path.name == "console-texts.js":
            continue
        source = path.read_text(encoding="utf-8")
        used |= set(re.findall(r"""\b(?:t|tx)\(\s*'([a-z_.]+)'""", source))
        used |= set(re.findall(r'data-text(?:-title|-placeholder|-label)?="([a-z_.]+)"', source))
    assert used, "no keys found"
    assert sorted(used - texts) == [], "keys used without a text"


def test_no_console_module_writes_chinese_and_english_side_by_side() -> None:
    """Every text goes through the catalogue: no literal Chinese in the console's modules."""
    cjk = re.compile(r"[\u4e00-\u9fff]")
    for path in STATIC.glob("*.js"):
        if path.name.startswith(("field", "portal")) or path.name == "console-texts.js":
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("//")[0]
            if code.strip().startswith(("*", "/*")) or "冀0916" in code:  # doc comments; the case-number example
                continue
            assert not cjk.search(code), f"{path.name}:{n} has a literal text: {line.strip()}"


def test_no_key_is_written_twice_in_one_language() -> None:
    """A key written twice is silently the later text in JavaScript (two screens once shared
    ``report_generated`` with different placeholders, and one lost its time)."""
    key = re.compile(r"^\s{4}(?:'([^']+)'|(\w+)):", re.M)
    block = re.compile(r"^  (zh|en): \{\n(.*?)^  \},?$", re.M | re.S)
    checked = 0
    for path in sorted(STATIC.glob("*texts*.js")):
        for language, body in block.findall(path.read_text(encoding="utf-8")):
            seen: set[str] = set()
            twice = []
            for m in key.finditer(body):
                k = m.group(1) or m.group(2)
                if k in seen:
                    twice.append(k)
                seen.add(k)
            assert not twice, f"{path.name} {language}: written twice: {twice}"
            checked += len(seen)
    assert checked > 1000, "the catalogues were not found"
