"""``python -m engine``: the same as the ``sluice`` command."""

from engine.cli.main import main

raise SystemExit(main())
