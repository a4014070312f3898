"""`python -m toggler` entry point."""

from toggler.cli import main

raise SystemExit(main())
