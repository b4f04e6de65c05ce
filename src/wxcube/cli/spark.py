"""`wxcube spark-rollup` (SPEC §7). pyspark is imported lazily, only by the command."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
