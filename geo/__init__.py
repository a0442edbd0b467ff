"""Positions of field units: GPS fixes, validation, and (later) tracks, geofences and nearest-unit search."""
