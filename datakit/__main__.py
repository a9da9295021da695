"""`python -m datakit` runs the CLI."""

from datakit.cli import main

raise SystemExit(main())
