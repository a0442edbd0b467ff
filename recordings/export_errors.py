"""Why a party export failed."""

from __future__ import annotations


class ExportError(Exception):
    """The export could not be made (unreadable segment, empty range, encoder failure)."""


class ExportCancelled(ExportError):
    """``cancel`` was set; nothing was written."""
