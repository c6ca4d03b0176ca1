"""``python -m metalab`` runs the command line."""

from metalab.cli import main

raise SystemExit(main())
