"""Evidence archive: crash-safe, case-linked, tamper-evident recordings (not built yet; see the archive issue)."""
