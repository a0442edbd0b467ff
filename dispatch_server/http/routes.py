"""Every route table of the HTTP edge, as ``create_app`` adds them (static pages come last)."""

from __future__ import annotations

from aiohttp import web

from . import (
    api_accounts,
    api_actions,
    api_alerts,
    api_audit,
    api_downloads,
    api_geo,
    api_holds,
    api_instructions,
    api_metrics,
    api_party,
    api_recordings,
    api_reports,
    api_requests,
    api_session,
    api_snapshots,
    api_stats,
    api_talk,
    api_telemetry,
    api_whip,
    openapi,
)

ROUTES: tuple[web.RouteTableDef, ...] = (
    api_session.routes, api_accounts.routes, api_metrics.routes, api_whip.routes, api_telemetry.routes, api_geo.routes,
    api_actions.routes, api_instructions.routes, api_alerts.routes, api_talk.routes, api_audit.routes,
    api_recordings.routes, api_holds.routes, api_snapshots.routes, openapi.routes,
    api_stats.routes,
    api_reports.routes,
)
# Party access needs the evidence archive (archive.enabled).
ARCHIVE_ROUTES: tuple[web.RouteTableDef, ...] = (api_party.routes, api_requests.routes, api_downloads.routes)
