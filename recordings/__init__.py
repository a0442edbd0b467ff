"""Evidence archive: crash-safe, case-linked, tamper-evident recordings of what units publish.

A layer below the server: it imports neither ``dispatch_server`` nor ``media``. The server
wires :class:`recordings.archive.ArchiveService` to the relay (through the
:class:`recordings.source.FrameSource` protocol) and reads the archive through
:class:`recordings.catalog.Catalog`. Formats (segments, ``recording.json``, the ledger, signed
tree heads, export packages) are specified in ``docs/archive-format.md``.

- Recording: ``archive`` (the service), ``source``, ``recording``, ``segmenter``, ``timeline``,
  ``gaps``, ``sealer``, ``ledger_spool``, ``metadata``, ``recording_info``, ``segment``,
  ``recovery``, ``durable``.
- Stills (JPEGs units upload): ``snapshots``.
- Ledger: ``ledger``, ``merkle``, ``canonical`` (RFC 8785 lines), ``ledger_load`` and
  ``checkpoint`` (the start-up check and what it remembers outside the archive), ``witness_client``
  (tree heads to witnesses).
- Verifying offline (``dispatch-audit``): ``verify``, ``ledger_check``, ``archive_files``,
  ``known_heads`` (consistency with tree heads kept elsewhere), ``live_check``, ``sth_check``,
  ``findings``, ``audit_cli``, ``archive_config``; ``witness`` (a witness store and its HTTP server).
  A second verifier written from the specification alone is ``verifier/dispatch_verify.py``.
- Search and keeping: ``catalog`` (stills: ``still_catalog``; the operators' audit trail:
  ``audit_catalog``), ``retention``.
- Party exports: ``export``, ``export_timeline``, ``export_decoder``, ``export_encoder``,
  ``export_errors``, ``redaction``, ``watermark``, ``package``, ``package_verify``,
  ``package_format``, ``zip_layout``.
"""
