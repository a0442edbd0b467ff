"""``python -m field_client``: same as the ``field-client`` console script."""

from .cli import main

raise SystemExit(main())
