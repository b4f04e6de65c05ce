"""Operations commands: `backup`, `restore`."""

from __future__ import annotations

from pathlib import Path

import click

from . import handle_errors, settings


@click.command("backup")
@click.argument("directory", type=click.Path(path_type=Path))
@click.pass_context
@handle_errors
def backup_cmd(ctx: click.Context, directory: Path) -> None:
    """Copy the database (apps, tokens, users, activity) into DIRECTORY, from one snapshot.

    DIRECTORY must be new or empty. It holds one Parquet file per table and a manifest with
    row counts and checksums; it contains secret and token hashes, so keep it private.
    A running server holds the database: stop it first.
    """
    from ..backup import backup

    s = backup(settings(ctx).db, directory)
    click.echo(f"backed up {s.describe()} from {s.db} to {s.directory}")


@click.command("restore")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Replace a database that already holds data.")
@click.pass_context
@handle_errors
def restore_cmd(ctx: click.Context, directory: Path, force: bool) -> None:
    """Restore a backup made by `wxcube backup` into --db.

    Checks the manifest and checksums, refuses a backup from a newer wxcube, and refuses to
    replace a database that holds data unless --force. The new file is swapped in only once
    it is complete. A running server holds the database: stop it first.
    """
    from ..backup import restore

    s = restore(directory, settings(ctx).db, force=force)
    click.echo(f"restored {s.describe()} from {s.directory} into {s.db}")


COMMANDS: list[click.Command] = [backup_cmd, restore_cmd]
