"""``python -m cds_service.cli``: the console script."""

from . import main

raise SystemExit(main())
