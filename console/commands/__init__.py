"""Commands kept outside `console.cli`, each module adding its own to `COMMANDS`."""

from __future__ import annotations

import click

# Every click command here is registered on the `segops` group by `console.cli`.
COMMANDS: list[click.Command] = []
