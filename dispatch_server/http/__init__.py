"""The HTTP edge: JSON API, WHIP/WHEP, talk-back, the telemetry websocket, OpenAPI, static pages.

Handlers parse and validate what arrives (bodies into typed values, query parameters, tokens),
call one domain service, and turn its answer into a response. Errors become JSON through
:mod:`dispatch_server.http.middleware`. No domain rule lives here.
"""
