"""Administration: API keys, team quotas and priorities.

`python -m service.admin create-key --team NAME` prints a new API key;
`python -m service.admin set-quota --team NAME --max-gpus 4 ...` sets a team's limits.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Team
from service.auth import create_key, set_max_priority
from service.db import make_engine, make_session_factory, transaction
from service.scheduler import set_quota
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


@cli.command("set-quota")
def set_quota_command(
    team: str = typer.Option(..., "--team", help="team name"),
    max_running_jobs: int | None = typer.Option(None, min=0, help="running jobs at once"),
    max_gpus: int | None = typer.Option(None, min=0, help="GPUs in use at once"),
    max_queued_jobs: int | None = typer.Option(None, min=0, help="queued jobs (over it: 429)"),
    weight: float | None = typer.Option(None, min=0.01, help="fair-share weight (default 1)"),
) -> None:
    """Set TEAM's limits (a limit left out is unlimited) and its fair-share weight."""
    with _session() as session:
        found = session.scalar(select(Team).where(Team.name == team))
        if found is None:
            raise typer.BadParameter(f"no team {team!r}", param_hint="--team")
        quota = set_quota(
            session,
            found,
            max_running_jobs=max_running_jobs,
            max_gpus=max_gpus,
            max_queued_jobs=max_queued_jobs,
            weight=weight,
        )
        typer.echo(
            f"{team}: max_running_jobs={quota.max_running_jobs} max_gpus={quota.max_gpus} "
            f"max_queued_jobs={quota.max_queued_jobs} weight={quota.weight}"
        )


@cli.command("set-priority")
def set_priority_command(
    key_prefix: str = typer.Argument(..., help="the key's first characters (shown at creation)"),
    priority: str = typer.Argument(..., help="highest priority it may submit: normal or high"),
) -> None:
    """Let a key submit jobs up to PRIORITY (`high` jumps the queue: give it sparingly)."""
    if priority not in ("low", "normal", "high"):
        raise typer.BadParameter("choose low, normal or high", param_hint="PRIORITY")
    if len(key_prefix) < 8:
        raise typer.BadParameter("give at least 8 characters of the key", param_hint="KEY_PREFIX")
    with _session() as session:
        changed = set_max_priority(session, key_prefix[:10], priority)
    if not changed:
        raise typer.BadParameter(f"no key starts with {key_prefix!r}", param_hint="KEY_PREFIX")
    typer.echo(f"{changed} key(s) may now submit priority {priority}")


@contextmanager
def _session() -> Iterator[Session]:
    engine = make_engine(Settings())
    try:
        with transaction(make_session_factory(engine)) as session:
            yield session
    finally:
        engine.dispose()


@cli.command("version")
def version() -> None:
    """Print the version."""
    typer.echo("regimen 0.1.0")


if __name__ == "__main__":
    cli()
