"""Administration: `python -m service.admin create-key --team NAME` prints a new API key."""

from __future__ import annotations

import typer

from service.auth import create_key
from service.db import make_engine, make_session_factory, transaction
from service.settings import Settings

cli = typer.Typer(add_completion=False, no_args_is_help=True, help="Regimen administration")


@cli.command("create-key")
def create_key_command(
    team: str = typer.Option(..., "--team", help="team name (created if it does not exist)"),
    label: str | None = typer.Option(None, "--label", help="a note to recognise the key by"),
) -> None:
    """Create an API key for TEAM and print it (it is stored hashed: copy it now)."""
    settings = Settings()
    engine = make_engine(settings)
    with transaction(make_session_factory(engine)) as session:
        key = create_key(session, team, label)
    engine.dispose()
    typer.echo(key)


@cli.command("version")
def version() -> None:
    """Print the version."""
    typer.echo("regimen 0.1.0")


if __name__ == "__main__":
    cli()
