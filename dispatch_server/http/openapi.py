"""OpenAPI 3.1 description of the HTTP interface, served at ``/api/openapi.json``.

Written by hand next to the handlers; ``tests/dispatch_server/test_openapi.py`` fails when a
route exists that the document does not describe, or the other way round.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

routes = web.RouteTableDef()

ERROR = {"$ref": "#/components/schemas/Error"}
BEARER: list[dict[str, list[str]]] = [{"bearer": []}]


def _telemetry_op() -> dict[str, Any]:
    """The telemetry channel is a websocket: the upgrade answers 101; frames are in docs/api.md."""
    return {
        "summary": "Telemetry channel (websocket): msgpack batches of GPS fixes; Bearer unit token",
        "security": BEARER,
        "responses": {
            "101": {"description": "switched to a websocket of {seq, fixes} batches and their acknowledgements"},
            **{str(code): {"description": "refused before the upgrade", "content": {"application/json": {"schema": ERROR}}}
               for code in (400, 401, 403, 404)},
        },
    }


def _op(summary: str, *, body: dict[str, Any] | None = None, sdp: bool = False, ok: int = 200,
        result: dict[str, Any] | None = None, errors: tuple[int, ...] = (400, 401, 403), public: bool = False,
        params: tuple[str, ...] = ()) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {}}
    if not public:
        op["security"] = BEARER
    if params:
        op["parameters"] = [{"name": p, "in": "query", "required": False, "schema": {"type": "string"}} for p in params]
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if sdp:
        op["requestBody"] = {"required": True, "content": {"application/sdp": {"schema": {"type": "string"}}}}
        op["responses"]["201"] = {
            "description": "SDP answer; Location names the session resource",
            "headers": {"Location": {"schema": {"type": "string"}}},
            "content": {"application/sdp": {"schema": {"type": "string"}}},
        }
    elif ok == 204 or ok == 200 and result is None:
        op["responses"][str(ok)] = {"description": "done"}
    else:
        op["responses"][str(ok)] = {"description": "ok", "content": {"application/json": {"schema": result or {"type": "object"}}}}
    # A body that does not arrive within server.body_timeout_s (+1 s per 32 KiB) is answered 408.
    for status in (*errors, 408) if body is not None or sdp else errors:
        op["responses"][str(status)] = {"description": "error", "content": {"application/json": {"schema": ERROR}}}
    return op


def _path_params(*names: str) -> list[dict[str, Any]]:
    return [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names]


OBJ = {"type": "object"}
UNIT = {"$ref": "#/components/schemas/Unit"}
ACTION = {"$ref": "#/components/schemas/Action"}
INSTRUCTION = {"$ref": "#/components/schemas/Instruction"}
ALERT = {"$ref": "#/components/schemas/Alert"}
RECORDING = {"$ref": "#/components/schemas/Recording"}
HOLD = {"$ref": "#/components/schemas/Hold"}
UNIT_ADMIN = {"$ref": "#/components/schemas/UnitAdmin"}
UNIT_TOKEN = {"$ref": "#/components/schemas/UnitToken"}
USER = {"$ref": "#/components/schemas/User"}
SNAPSHOT = {"$ref": "#/components/schemas/Snapshot"}
JPEG = {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}


def _segment_op() -> dict[str, Any]:
    op = _op("A sealed segment (video/webm or video/x-matroska), Range requests answered with 206; Bearer token or "
             "the ticket of the detail's url; download=1 adds Content-Disposition (ledger: played / downloaded)",
             params=("ticket", "download"), errors=(400, 401, 403, 404, 416, 503))
    video = {"video/webm": {"schema": {"type": "string", "format": "binary"}},
             "video/x-matroska": {"schema": {"type": "string", "format": "binary"}}}
    op["responses"]["200"] = {"description": "the whole file", "content": video}
    op["responses"]["206"] = {"description": "the requested byte range", "content": video}
    return op


def _snapshot_upload_op() -> dict[str, Any]:
    op = _op("A still from the unit's camera into the evidence archive (unit token; ledger: snapshot_sealed); "
             "instruction: the instruction it answers, taken_at: the device's clock (ISO 8601); over "
             "archive.max_snapshot_bytes -> 413", ok=201, result=SNAPSHOT, params=("instruction", "taken_at"),
             errors=(400, 401, 403, 404, 408, 413, 415, 503))
    op["requestBody"] = {"required": True, "content": JPEG}
    return op


def _snapshot_image_op() -> dict[str, Any]:
    op = _op("The sealed JPEG; Bearer token or the ticket of the list's image_url (ledger: viewed)",
             params=("ticket",), errors=(400, 401, 403, 404, 503))
    op["responses"]["200"] = {"description": "the still, byte for byte as sealed", "content": JPEG}
    return op


def _stats_op() -> dict[str, Any]:
    """Statistics (汇总统计, docs/supervision.md): JSON, or every view as CSV or XLSX with Chinese column names."""
    op = _op("Statistics of a period (day, week from Monday, month, custom from..to; in the court's time zone) by "
             "a grouping (type, judge, officer, unit, team): actions, recording and coverage, instructions, alerts, "
             "party requests, evidence; format=csv (UTF-8 with BOM) or xlsx for a file; 400 names a bad parameter",
             params=("period", "date", "from", "to", "group", "format"), result={"$ref": "#/components/schemas/Stats"},
             errors=(400, 401, 403))
    for p in op["parameters"]:
        p["schema"] = {"period": {"enum": ["day", "week", "month", "custom"]},
                       "group": {"enum": ["type", "judge", "officer", "unit", "team"]},
                       "format": {"enum": ["json", "csv", "xlsx"]}}.get(p["name"], {"type": "string", "format": "date"})
    op["responses"]["200"]["content"] |= {
        "text/csv": {"schema": {"type": "string"}},
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {"schema": {"type": "string", "format": "binary"}}}
    return op


def document() -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/api/login": {"post": _op("Log in; the token is accepted as Authorization: Bearer", public=True, errors=(400, 401, 413, 429, 503),
                                   body={"type": "object", "required": ["username", "password"],
                                         "properties": {"username": {"type": "string"}, "password": {"type": "string"}}},
                                   result={"type": "object", "properties": {"token": {"type": "string"}, "role": {"type": "string"},
                                                                            "expires_at": {"type": "string"}}})},
        "/api/logout": {"post": _op("End this session", ok=204, errors=(401,))},
        "/api/me": {"get": _op("Who am I", result=OBJ, errors=(401,))},
        "/api/health": {"get": _op("This node's figures (admins): sessions, telemetry, archive", result=OBJ)},
        "/api/units": {"get": _op("Roster of units with live state", result={"type": "object", "properties": {"units": {"type": "array", "items": UNIT}}}),
                       "post": _op("Register a unit (admins); the token is in this answer only (audit: unit.registered)", ok=201,
                                   body={"type": "object", "required": ["id", "kind"],
                                         "properties": {"id": {"type": "string"}, "kind": {"enum": ["body", "vehicle", "phone"]},
                                                        "name": {"type": "string", "maxLength": 64}}},
                                   result=UNIT_TOKEN, errors=(400, 401, 403, 409, 413))},
        "/api/units/{unit_id}/rotate": {"parameters": _path_params("unit_id"),
                                        "post": _op("A new token for a unit (admins); the old one stops working and its links close at once "
                                                    "(audit: unit.token_rotated)", result=UNIT_TOKEN, errors=(400, 401, 403, 404))},
        "/api/units/{unit_id}/disable": {"parameters": _path_params("unit_id"),
                                         "post": _op("Disable a unit (admins): its links close at once, it is refused until enabled "
                                                     "(audit: unit.disabled)", result=UNIT_ADMIN, errors=(400, 401, 403, 404))},
        "/api/units/{unit_id}/enable": {"parameters": _path_params("unit_id"),
                                        "post": _op("Enable a disabled unit (admins; audit: unit.enabled)", result=UNIT_ADMIN,
                                                    errors=(400, 401, 403, 404))},
        "/api/users": {
            "get": _op("People with role, state and open sessions (admins)",
                       result={"type": "object", "properties": {"users": {"type": "array", "items": USER}}}),
            "post": _op("Create a person (admins; audit: user.created)", ok=201, result=USER, errors=(400, 401, 403, 409, 413),
                        body={"type": "object", "required": ["username", "role", "password"],
                              "properties": {"username": {"type": "string"}, "role": {"enum": ["operator", "supervisor", "auditor", "admin"]},
                                             "password": {"type": "string"}}}),
        },
        "/api/users/{username}/password": {"parameters": _path_params("username"),
                                           "post": _op("Set a new password (admins); every session of the person ends (audit: user.password_reset)",
                                                       body={"type": "object", "required": ["password"], "properties": {"password": {"type": "string"}}},
                                                       result=USER, errors=(400, 401, 403, 404, 413))},
        "/api/users/{username}/role": {"parameters": _path_params("username"),
                                       "post": _op("Change a person's role (admins; audit: user.role_changed); not one's own admin role",
                                                   body={"type": "object", "required": ["role"], "properties": {"role": {"type": "string"}}},
                                                   result=USER, errors=(400, 401, 403, 404, 409, 413))},
        "/api/users/{username}/disable": {"parameters": _path_params("username"),
                                          "post": _op("Disable a person (admins): sessions end, logins refused (audit: user.disabled)",
                                                      result=USER, errors=(401, 403, 404, 409))},
        "/api/users/{username}/enable": {"parameters": _path_params("username"),
                                         "post": _op("Enable a disabled person (admins; audit: user.enabled)", result=USER,
                                                     errors=(401, 403, 404))},
        "/api/console-config": {"get": _op("Patrol interval, the court's time zone, ICE servers and the map for the console", result=OBJ)},
        "/api/actions": {
            "get": _op("List enforcement actions", params=("state",), result={"type": "object", "properties": {"actions": {"type": "array", "items": ACTION}}}),
            "post": _op("Create an enforcement action", ok=201, body=ACTION, result=ACTION, errors=(400, 401, 403, 404)),
        },
        "/api/actions/{id}": {
            "parameters": _path_params("id"),
            "get": _op("One action", result=ACTION, errors=(401, 403, 404)),
            "patch": _op("Edit an action (not once ended)", body=OBJ, result=ACTION, errors=(400, 401, 403, 404, 409)),
        },
        "/api/actions/{id}/start": {"parameters": _path_params("id"),
                                    "post": _op("Start a planned action", result=ACTION, errors=(401, 403, 404, 409))},
        "/api/actions/{id}/end": {"parameters": _path_params("id"),
                                  "post": _op("End a running action", result=ACTION, errors=(401, 403, 404, 409))},
        "/api/actions/{id}/report": {
            "parameters": _path_params("id"),
            "get": _op("The action's report (行动报告; supervisors, auditors, admins): team, times, tracks, coverage "
                       "by recorders, gaps, rule breaks, instructions, alerts and the evidence list with hashes; "
                       "provisional while the action runs; 409 action_not_started while planned (ledger: viewed, "
                       "what report)", result={"$ref": "#/components/schemas/ActionReport"},
                       errors=(400, 401, 403, 404, 409, 503))},
        "/api/actions/{id}/procedure": {"parameters": _path_params("id"),
                                        "get": _op("The action's compliance with the rules of procedure (流程预警): "
                                                   "open and past rule breaks, the notice, the rule",
                                                   result=OBJ, errors=(401, 403, 404))},
        "/api/actions/{id}/cancel": {"parameters": _path_params("id"),
                                     "post": _op("Cancel a planned action (audit: action.cancelled); 409 once it runs",
                                                 result=ACTION, errors=(401, 403, 404, 409))},
        "/api/instructions": {
            "get": _op("List instructions, newest first", params=("unit", "action", "state", "limit"),
                       result={"type": "object", "properties": {"instructions": {"type": "array", "items": INSTRUCTION}}}),
            "post": _op("Queue an instruction to a unit, an action's team or all online units", ok=201,
                        body={"$ref": "#/components/schemas/NewInstruction"},
                        result={"type": "object", "properties": {"id": {"type": "string"}, "ids": {"type": "array", "items": {"type": "string"}},
                                                                 "units": {"type": "array", "items": {"type": "string"}},
                                                                 "online": {"type": "array", "items": {"type": "string"}},
                                                                 "state": {"type": "string"}}},
                        errors=(400, 401, 403, 404, 409, 413)),
        },
        "/api/instructions/{id}": {"parameters": _path_params("id"),
                                   "get": _op("An instruction with the time of each state", result=INSTRUCTION, errors=(401, 403, 404))},
        "/api/instructions/{id}/cancel": {"parameters": _path_params("id"),
                                          "post": _op("Cancel a queued instruction: final state cancelled, never delivered (audit: "
                                                      "instruction.cancelled); 409 not_cancellable once the unit received it",
                                                      result=INSTRUCTION, errors=(401, 403, 404, 409))},
        "/api/alerts": {"get": _op("Alerts, newest first", params=("state",),
                                   result={"type": "object", "properties": {"alerts": {"type": "array", "items": ALERT}}})},
        "/api/alerts/{id}/ack": {"parameters": _path_params("id"),
                                 "post": _op("Acknowledge an alert", result=ALERT, errors=(401, 403, 404, 409))},
        "/api/units/nearest": {"get": _op("The k nearest units to a point by great-circle distance",
                                          params=("lat", "lon", "k", "available"), result=OBJ, errors=(400, 401, 403))},
        "/api/units/{unit_id}/track": {"parameters": _path_params("unit_id"),
                                       "get": _op("A unit's track in a time range: GeoJSON, or GPX with format=gpx",
                                                  params=("from", "to", "format"), result=OBJ, errors=(400, 401, 403, 404))},
        "/api/units/{unit_id}/sos": {"parameters": _path_params("unit_id"),
                                     "post": _op("SOS from a unit (unit token)", ok=201, body=OBJ, result=ALERT, errors=(400, 401, 404))},
        "/api/talk/{unit_id}": {"parameters": _path_params("unit_id"),
                                "post": _op("Start talking to a unit (SDP offer, sendonly Opus)", sdp=True, errors=(400, 401, 403, 409, 415))},
        "/api/talk/{unit_id}/{talk_id}": {"parameters": _path_params("unit_id", "talk_id"),
                                          "delete": _op("Stop talking", errors=(401, 403, 404))},
        "/api/audit": {"get": _op("Audit trail, newest first: filters by person (actor), unit, case, action (a verb or its family) "
                                  "and time (from, to); format=csv for a CSV file", params=("subject", "actor", "unit", "case", "action",
                                                                                          "from", "to", "limit", "format"), result=OBJ)},
        "/api/recordings": {"get": _op("Search recordings by case, action, unit, officer, time overlap and place",
                                       params=("case", "action", "unit", "officer", "from", "to", "near", "within_m", "limit"),
                                       result={"type": "object", "properties": {"recordings": {"type": "array", "items": RECORDING}}},
                                       errors=(400, 401, 403, 503))},
        "/api/recordings/{id}": {"parameters": _path_params("id"),
                                 "get": _op("A recording: segments with playback URLs, gaps, metadata and the unit's GPS "
                                            "track (ledger: viewed)", result=RECORDING, errors=(400, 401, 403, 404, 503))},
        "/api/recordings/{id}/segments/{seq}": {"parameters": _path_params("id", "seq"), "get": _segment_op()},
        "/api/units/{unit_id}/snapshots": {"parameters": _path_params("unit_id"), "post": _snapshot_upload_op()},
        "/api/snapshots": {"get": _op("Stills from the archive, newest first, by unit, case and action",
                                      params=("unit", "case", "action", "limit"),
                                      result={"type": "object", "properties": {"snapshots": {"type": "array",
                                                                                             "items": SNAPSHOT}}},
                                      errors=(400, 401, 403, 503))},
        "/api/snapshots/{snapshot_id}": {"parameters": _path_params("snapshot_id"), "get": _snapshot_image_op()},
        "/api/recordings/{id}/category": {
            "parameters": _path_params("id"),
            "put": _op("Change a recording's retention category (ledger: retention_changed)", result=RECORDING,
                       body={"type": "object", "required": ["category", "reason"],
                             "properties": {"category": {"type": "string"}, "reason": {"type": "string"}}},
                       errors=(400, 401, 403, 404, 503))},
        "/api/holds": {
            "get": _op("Legal holds in force", result={"type": "object", "properties": {"holds": {"type": "array", "items": HOLD}}},
                       errors=(401, 403, 503)),
            "post": _op("Put a case under a legal hold (ledger: hold_set)", ok=201, result=HOLD,
                        body={"type": "object", "required": ["case_number", "reason"],
                              "properties": {"case_number": {"type": "string"}, "reason": {"type": "string", "maxLength": 2000}}},
                        errors=(400, 401, 403, 409, 413, 503)),
        },
        "/api/holds/{case}": {"parameters": _path_params("case"),
                              "delete": _op("Release a legal hold (ledger: hold_released)", params=("reason",), result=OBJ,
                                            errors=(400, 401, 403, 404, 503))},
        "/api/retention/run": {"post": _op("Run retention (dry_run=1: only report); 409 and an alert when it would delete "
                                           "more than archive.max_delete_share", params=("dry_run",), result=OBJ,
                                           errors=(400, 401, 403, 409, 503))},
        "/api/archive/sign": {"post": _op("Sign a tree head of the evidence ledger now (admins; dispatch-audit verify --fresh)", result=OBJ, errors=(401, 403, 503))},
        # Party access (docs/api.md "Party access"): portal calls carry the party's portal token.
        "/api/party/login": {"post": _op("Party login: case number + one-time access code + name -> portal token; "
                                         "429 with Retry-After after repeated wrong codes from one address",
                                         public=True, result=OBJ, errors=(400, 401, 413, 429),
                                         body={"type": "object", "required": ["case_number", "code", "name"],
                                               "properties": {"case_number": {"type": "string"},
                                                              "code": {"type": "string"}, "name": {"type": "string"}}})},
        "/api/party/me": {"get": _op("The party's portal session", result=OBJ, errors=(401,))},
        "/api/party/actions": {"get": _op("Enforcement actions of the party's case", result=OBJ, errors=(401,))},
        "/api/party/requests": {
            "get": _op("The party's footage requests with status, messages, progress and download links",
                       result=OBJ, errors=(401,)),
            "post": _op("Request the footage of an action of the case (ledger: request_created)", ok=201, result=OBJ,
                        body={"type": "object", "required": ["action_id", "reason"],
                              "properties": {"action_id": {"type": "string"}, "reason": {"type": "string"},
                                             "from": {"type": "string"}, "to": {"type": "string"}}},
                        errors=(400, 401, 404, 413)),
        },
        "/api/party/requests/{request_id}/reply": {
            "parameters": _path_params("request_id"),
            "post": _op("Answer the court's request for more information", result=OBJ,
                        body={"type": "object", "properties": {"message": {"type": "string"}}},
                        errors=(400, 401, 404, 409))},
        "/api/party/codes": {"post": _op("Issue a one-time access code for a case and a named party (shown once)",
                                         ok=201, result=OBJ, errors=(400, 401, 403),
                                         body={"type": "object", "required": ["case_number", "party_name"],
                                               "properties": {"case_number": {"type": "string"},
                                                              "party_name": {"type": "string"}}})},
        "/api/footage-requests": {"get": _op("Footage requests of parties", params=("state",), result=OBJ,
                                             errors=(400, 401, 403))},
        "/api/footage-requests/{request_id}": {
            "parameters": _path_params("request_id"),
            "get": _op("A request with its history, decision, regions, export and the action's recordings",
                       result=OBJ, errors=(401, 403, 404))},
        "/api/footage-requests/{request_id}/decision": {
            "parameters": _path_params("request_id"),
            "post": _op("approve (recording_id, from, to, release_until, include_audio), refuse or more_info "
                        "(reason); ledger: request_approved / request_refused / request_more_info", result=OBJ,
                        body={"type": "object", "required": ["decision"],
                              "properties": {"decision": {"enum": ["approve", "refuse", "more_info"]},
                                             "reason": {"type": "string"}, "recording_id": {"type": "string"},
                                             "release_until": {"type": "string"}, "include_audio": {"type": "boolean"},
                                             "from": {"type": "string"}, "to": {"type": "string"}}},
                        errors=(400, 401, 403, 404, 409))},
        "/api/footage-requests/{request_id}/review": {
            "parameters": _path_params("request_id"),
            "get": _op("Review keyframe at t seconds: JPEG (data URL) with the boxes that would be blurred or kept",
                       params=("t",), result=OBJ, errors=(400, 401, 403, 404, 409))},
        "/api/footage-requests/{request_id}/regions": {
            "parameters": _path_params("request_id"),
            "put": _op("Manual blur (blur) and keep (keep) regions in video pixels and recording seconds; 400 "
                       "region_outside_frame for a region not inside the frame", result=OBJ,
                       body={"type": "object", "properties": {"regions": {"type": "array", "items": OBJ}}},
                       errors=(400, 401, 403, 404, 409))},
        "/api/footage-requests/{request_id}/preview": {
            "parameters": _path_params("request_id"),
            "get": _op("The finished export (video/mp4) as the party will get it, for the court to watch before "
                       "releasing it (?ticket= from preview_url); ledger: played (what: preview)",
                       params=("ticket",), result=OBJ, errors=(401, 403, 404, 409))},
        "/api/footage-requests/{request_id}/release": {
            "parameters": _path_params("request_id"),
            "post": _op("Release a watched export to the party: issues the download link; 409 not_previewed until "
                        "the person watched it; ledger: export_released", result=OBJ,
                        errors=(401, 403, 404, 409))},
        "/api/footage-requests/{request_id}/export": {
            "parameters": _path_params("request_id"),
            "post": _op("Start the redacted, watermarked export and its package; progress arrives as "
                        "footage_request events", ok=202, result=OBJ, errors=(401, 403, 404, 409))},
        "/api/links/{link_id}/revoke": {
            "parameters": _path_params("link_id"),
            "post": _op("Revoke a party's download link (refused from the next request on; ledger: link_revoked)",
                        result=OBJ, errors=(401, 403, 404))},
        "/api/stats": {"get": _stats_op()},
        "/api/stats/actions": {"get": _op("The actions behind a figure of the statistics (figure: planned, started, ended, "
                                          "cancelled, running, undercovered, gaps, expired, refused, sos, unacknowledged, "
                                          "requests; key: the group, all when absent), each with its coverage and report_url",
                                          params=("period", "date", "from", "to", "group", "figure", "key"), result=OBJ,
                                          errors=(400, 401, 403))},
        "/api/openapi.json": {"get": _op("This document", public=True, result=OBJ, errors=())},
        "/whip/{unit_id}": {"parameters": _path_params("unit_id"),
                            "post": _op("WHIP ingest (RFC 9725); Bearer unit token", sdp=True, errors=(400, 401, 403, 404, 409, 413, 415))},
        "/whip/{unit_id}/{session_id}": {
            "parameters": _path_params("unit_id", "session_id"),
            "delete": _op("End the publishing session", errors=(400, 401, 404)),
            "patch": _op("Trickle ICE: not supported", errors=(405,)),
        },
        "/telemetry/{unit_id}": {"parameters": _path_params("unit_id"), "get": _telemetry_op()},
        "/whep/{unit_id}": {"parameters": _path_params("unit_id"),
                            "post": _op("WHEP playback; Bearer person token (or a node token: another node pulling "
                                        "the unit)", sdp=True, errors=(400, 401, 403, 404, 409, 413, 415, 503))},
        "/whep/{unit_id}/{session_id}": {
            "parameters": _path_params("unit_id", "session_id"),
            "delete": _op("End the viewing session", errors=(401, 403, 404)),
            "patch": _op("Trickle ICE: not supported", errors=(405,)),
        },
    }
    schemas = {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
        "Unit": {"type": "object", "properties": {k: {} for k in (
            "id", "kind", "name", "disabled", "online", "publishing", "reachable", "last_seen", "video_codec",
            "audio_codec", "position", "node", "action_id", "case_number")}},
        "UnitAdmin": {"type": "object", "properties": {k: {} for k in ("id", "kind", "name", "disabled", "created_at")}},
        "UnitToken": {"type": "object", "properties": {**{k: {} for k in ("id", "kind", "name", "disabled", "created_at")},
                                                       "token": {"type": "string", "description": "shown once"}}},
        "User": {"type": "object", "properties": {k: {} for k in ("username", "role", "disabled", "created_at", "sessions")}},
        "Action": {"type": "object", "properties": {
            "case_number": {"type": "string", "example": "（2026）冀0916执123号"},
            "title": {"type": "string"}, "type": {"enum": ["seizure", "search", "eviction", "service", "other"]},
            "address": {"type": "string"}, "area": {"type": ["object", "null"]},
            "planned_at": {"type": ["string", "null"], "format": "date-time"},
            "units": {"type": "array", "items": {"type": "string"}},
            "officers": {"type": "array", "items": {"type": "string"}}, "judge": {"type": "string"},
            "state": {"enum": ["planned", "running", "ended", "cancelled"], "readOnly": True}}},
        "NewInstruction": {"type": "object", "required": ["type"], "properties": {
            "unit": {"type": "string"}, "action": {"type": "string"}, "all": {"type": "boolean"},
            "type": {"enum": ["text", "goto", "record_start", "record_stop", "snapshot", "callback", "end_action"]},
            "text": {"type": "string", "maxLength": 2000}, "lat": {"type": "number"}, "lon": {"type": "number"},
            "note": {"type": "string"}, "priority": {"enum": ["low", "normal", "high", "urgent"]},
            "ttl_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 604800},
            "ack_deadline_s": {"type": "number", "minimum": 1, "maximum": 86400}}},
        "Instruction": {"type": "object", "properties": {k: {} for k in (
            "id", "seq", "unit_id", "action_id", "case_number", "type", "payload", "priority", "state", "created_by",
            "created_at", "expires_at", "delivered_at", "acknowledged_at", "done_at", "refused_at", "expired_at",
            "cancelled_at", "reason", "result")}},
        "Recording": {"type": "object", "properties": {k: {} for k in (
            "id", "unit_id", "action_id", "case_number", "officers", "category", "node", "codecs", "state", "opened_at",
            "closed_at", "close_reason", "end_cause", "segment_count", "deleted_segments", "bytes", "duration_s",
            "gap_count", "gap_s", "held", "segments", "gaps", "track", "markers")}},
        "Snapshot": {"type": "object", "properties": {k: {} for k in (
            "snapshot_id", "sha256", "bytes", "unit_id", "action_id", "case_number", "instruction_id", "taken_at",
            "received_at", "url", "image_url", "content_type", "held")}},
        "Stats": {"type": "object", "properties": {
            "period": {"type": "object", "properties": {k: {"type": "string"} for k in ("kind", "from", "to", "start", "end", "time_zone")}},
            "group": {"enum": ["type", "judge", "officer", "unit", "team"]}, "court_name": {"type": "string"},
            "totals": {"$ref": "#/components/schemas/StatsFigures"},
            "groups": {"type": "array", "items": {"allOf": [{"$ref": "#/components/schemas/StatsFigures"},
                                                            {"type": "object", "properties": {"key": {"type": "string"}}}]}},
            "evidence": {"type": ["object", "null"], "properties": {k: {} for k in (
                "archive_bytes", "segments_sealed", "sealed_bytes", "deleted_bytes", "growth_bytes", "last_verification")}},
            "generated_at": {"type": "string"}}},
        "StatsFigures": {"type": "object", "properties": {
            "actions": {"type": "object", "properties": {k: {} for k in ("planned", "started", "ended", "cancelled", "running", "duration_s")}},
            "recording": {"type": "object", "properties": {k: {} for k in ("recorded_s", "recorded_hours", "coverage", "gaps")}},
            "instructions": {"type": "object", "properties": {k: {} for k in (
                "total", "by_type", "by_state", "delivery_s", "ack_s", "expired", "refused")}},
            "alerts": {"type": "object", "properties": {k: {} for k in (
                "total", "by_kind", "sos", "sos_ack_s", "unacknowledged", "escalated")}},
            "requests": {"type": "object", "properties": {k: {} for k in (
                "received", "decided", "more_info", "decision_s", "exports", "downloads", "links_revoked")}}}},
        "ActionReport": {"type": "object", "properties": {k: {} for k in (
            "court_name", "time_zone", "generated_at", "generated_local", "provisional", "action", "team", "times",
            "rule", "coverage", "timeline", "gaps", "rule_breaks", "notice", "tracks", "instructions",
            "instructions_truncated", "alerts", "alerts_truncated", "evidence")}},
        "Hold": {"type": "object", "properties": {k: {} for k in ("case_number", "reason", "set_by", "set_at", "recordings")}},
        "Alert": {"type": "object", "properties": {k: {} for k in (
            "id", "kind", "code", "params", "unit_id", "action_id", "case_number", "position", "message", "state", "escalated",
            "created_at", "acknowledged_by", "acknowledged_at", "instruction_id")}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Court enforcement field dispatch server", "version": "0.1.0",
                 "description": "Live video (WHIP/WHEP), enforcement actions, instructions with exactly-once delivery, "
                                "alerts and talk-back. Live updates travel over Socket.IO; see docs/api.md."},
        "paths": paths,
        "components": {"schemas": schemas,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }


@routes.get("/api/openapi.json")
async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(document())
