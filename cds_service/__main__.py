"""``python -m cds_service``: the same console script as ``cds-service``."""

from .cli import main

raise SystemExit(main())
