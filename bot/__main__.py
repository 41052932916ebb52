"""`python -m bot` is the `newsdigest` command."""

from bot.cli import main

raise SystemExit(main())
