"""Positions of field units: GPS fixes and their validation, distances, geofences, nearest-unit
search, WGS-84 ↔ GCJ-02, durable tracks and their GeoJSON/GPX forms. Pure library: no server imports."""
