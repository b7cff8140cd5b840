"""`regimen`: the command line over the SDK (typer + rich).

Exit codes: 0 success (for --wait/watch: the job succeeded), 1 a failed job or an error,
2 an invalid spec or usage. Errors print the server's message, never a traceback.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import httpx
import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from client.models import Job, Sweep
from client.progress import JobProgress, ProgressSink
from client.sdk import ApiError, Client
from client.spec_paths import PathError, apply_overrides, parse_assignment, parse_values

app = typer.Typer(
    name="regimen",
    help="Regimen: training as a service for optimization and regularization research.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
datasets_app = typer.Typer(help="Uploaded data sets.", no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")

PIPE_WIDTH = 200
P = ParamSpec("P")
R = TypeVar("R")

SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="override a spec value: PATH=VALUE (YAML), repeatable"),
]


def _console(stderr: bool = False, markup: bool = True) -> Console:
    options: dict[str, Any] = {"stderr": stderr, "highlight": False, "soft_wrap": True}
    console = Console(markup=markup, **options)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # Piped or captured: keep ids and table rows whole rather than 80 columns wide.
        console = Console(markup=markup, width=PIPE_WIDTH, **options)
    return console


def _out() -> Console:
    # No markup: names, messages and specs come from users and servers; styles go in Text.
    return _console(markup=False)


def _err() -> Console:
    return _console(stderr=True)


class _Failed(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def handled(command: Callable[P, R]) -> Callable[P, R]:
    """Known errors become a message on stderr and an exit code, never a traceback."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        err = _err()
        try:
            return command(*args, **kwargs)
        except ApiError as exc:
            if exc.errors:  # a headline, then one line per field: "path: message"
                headline = exc.message.split(": ")[0]
                err.print(f"[red]error[/red] ({exc.status_code}): {escape(headline)}")
                for e in exc.errors:
                    err.print(escape(f"  {e.get('path')}: {e.get('message')}"))
            else:
                err.print(f"[red]error[/red] ({exc.status_code}): {escape(exc.message)}")
            raise typer.Exit(2 if exc.status_code == 422 else 1) from None
        except httpx.ConnectError as exc:
            err.print(f"[red]error[/red]: cannot reach the service ({escape(str(exc))}); is it up?")
            raise typer.Exit(1) from None
        except httpx.HTTPError as exc:
            err.print(f"[red]error[/red]: {type(exc).__name__}: {escape(str(exc))}")
            raise typer.Exit(1) from None
        except (PathError, yaml.YAMLError, OSError) as exc:
            err.print(f"[red]error[/red]: {escape(str(exc))}")
            raise typer.Exit(2 if isinstance(exc, PathError | yaml.YAMLError) else 1) from None
        except _Failed as exc:
            err.print(Text(str(exc), style="red"))
            raise typer.Exit(exc.code) from None

    return run


@contextmanager
def _client(ctx: typer.Context) -> Iterator[Client]:
    url, key = ctx.obj or (None, None)
    with Client.from_env(url, key) as client:
        yield client


@app.callback()
def main(
    ctx: typer.Context,
    url: Annotated[
        str | None, typer.Option(envvar="REGIMEN_URL", help="the API (default local)")
    ] = None,
    api_key: Annotated[
        str | None, typer.Option(envvar="REGIMEN_API_KEY", help="default: var/dev-api-key")
    ] = None,
) -> None:
    ctx.obj = (url, api_key)


def load_spec(path: Path, sets: list[str] | None) -> dict[str, Any]:
    """A YAML (or JSON) spec file with `--set PATH=VALUE` overrides applied."""
    doc = yaml.safe_load(path.read_text())
    if not isinstance(doc, dict):
        raise PathError(f"{path}: a job spec must be a mapping")
    overrides = dict(parse_assignment(s) for s in sets or [])
    return apply_overrides(doc, overrides)


def follow(client: Client, job_id: str, console: Console) -> Job:
    """A live bar from the job's event stream until it ends; its final state."""
    job = client.job(job_id)
    try:
        with JobProgress(console, job.name, job.progress.total) as bar:
            for event in client.events(job_id):
                bar.on_event(event)
    except KeyboardInterrupt:
        raise _Failed(f"stopped watching; the job goes on: regimen watch {job_id}", 130) from None
    return client.job(job_id)


def _finish(job: Job, console: Console) -> None:
    metrics = "  ".join(f"{k}={v:.4g}" for k, v in sorted(job.latest_metrics.items()))
    if job.succeeded:
        console.print(Text.assemble(("succeeded", "green"), f" {job.id}  {metrics}"))
        return
    raise _Failed(f"{job.status} {job.id}: {job.failure_text()}")


# ------------------------------------------------------------------------------------- jobs


@app.command()
@handled
def submit(
    ctx: typer.Context,
    spec: Annotated[Path, typer.Argument(help="a YAML or JSON job spec")],
    set_: SetOption = None,
    wait: Annotated[bool, typer.Option("--wait", "-w", help="follow it to the end")] = False,
) -> None:
    """Submit a job; with --wait, show a live progress bar and exit 0 only if it succeeds."""
    console = _out()
    with _client(ctx) as client:
        job = client.submit(load_spec(spec, set_))
        console.print(f"submitted {job.id} ({job.name})")
        if wait:
            _finish(follow(client, job.id, console), console)


@app.command()
@handled
def watch(ctx: typer.Context, job_id: str) -> None:
    """Follow a job live until it ends; exit 0 only if it succeeded."""
    console = _out()
    with _client(ctx) as client:
        _finish(follow(client, job_id, console), console)


@app.command()
@handled
def validate(ctx: typer.Context, spec: Path, set_: SetOption = None) -> None:
    """Check a spec on the server (exit 2 with each field's error if invalid)."""
    console = _out()
    with _client(ctx) as client:
        result = client.validate(load_spec(spec, set_))
    console.print(Text.assemble(("valid", "green"), f"  spec_hash {result.spec_hash}"))
    for key, value in result.estimate.items():
        console.print(f"  {key}: {value}")


@app.command("ls")
@handled
def list_jobs(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="only jobs in this state")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 20,
) -> None:
    """The newest jobs."""
    with _client(ctx) as client:
        jobs = client.jobs(status=status, limit=limit)
    table = Table("id", "name", "status", "progress", "loss", "val_accuracy", "created")
    for j in jobs:
        total = j.progress.total or "?"
        table.add_row(
            j.id,
            j.name,
            j.status,
            f"{j.progress.step}/{total}",
            _num(j.latest_metrics.get("loss")),
            _num(j.latest_metrics.get("val_accuracy")),
            j.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    _out().print(table)


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


@app.command()
@handled
def status(ctx: typer.Context, job_id: str) -> None:
    """One job: state, progress, latest metrics, failure."""
    with _client(ctx) as client:
        job = client.job(job_id)
    console = _out()
    total = job.progress.total or "?"
    console.print(f"{job.id}  {job.name}")
    console.print(f"  status    {job.status} (attempt {job.attempt} of {job.max_attempts})")
    console.print(f"  progress  {job.progress.step}/{total}")
    for name, value in sorted(job.latest_metrics.items()):
        console.print(f"  {name:<10}{value:.6g}")
    if job.failure is not None:
        console.print(f"  failure   {job.failure_text()}")


@app.command()
@handled
def cancel(ctx: typer.Context, job_id: str) -> None:
    """Cancel a job (queued: at once; running: at its next step)."""
    with _client(ctx) as client:
        job = client.cancel(job_id)
    pending = " (cancel requested)" if job.cancel_requested and not job.done else ""
    _out().print(f"{job.id} {job.status}{pending}")


@app.command()
@handled
def metrics(
    ctx: typer.Context,
    job_id: str,
    name: Annotated[list[str] | None, typer.Option(help="series to show; all by default")] = None,
    as_csv: Annotated[bool, typer.Option("--csv", help="CSV on stdout")] = False,
) -> None:
    """A job's metric series, one row per step."""
    with _client(ctx) as client:
        result = client.metrics(job_id, *(name or []))
    names = sorted(result.series)
    rows: dict[int, dict[str, float]] = {}
    for n in names:
        for step, value in result.series[n].points:
            rows.setdefault(step, {})[n] = value
    if as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["step", *names])
        for step in sorted(rows):
            writer.writerow([step, *(_csv(rows[step].get(n)) for n in names)])
        return
    table = Table("step", *names)
    for step in sorted(rows):
        table.add_row(str(step), *(_num(rows[step].get(n)) for n in names))
    _out().print(table)


def _csv(value: float | None) -> str:
    return "" if value is None else repr(value)


# --------------------------------------------------------------------------- catalog, local


@app.command()
@handled
def components(
    ctx: typer.Context,
    kind: Annotated[str | None, typer.Argument(help="optimizer, regularizer, model, ...")] = None,
    name: Annotated[str | None, typer.Argument(help="one component: its schema and paper")] = None,
) -> None:
    """The component catalog: kinds, names, papers; one component's settings schema."""
    console = _out()
    with _client(ctx) as client:
        found = client.components(kind)
    entries: list[dict[str, Any]] = (
        [e for entries in found.values() for e in entries] if kind is None else found
    )
    if name is None:
        table = Table("kind", "name", "summary", "paper")
        for e in entries:
            table.add_row(e["kind"], e["name"], e.get("summary", ""), e.get("paper") or "")
        console.print(table)
        return
    entry = next((e for e in entries if e["name"] == name), None)
    if entry is None:
        names = ", ".join(e["name"] for e in entries)
        raise _Failed(f"no {kind} named {name!r}; known: {names}", code=2)
    title = f"{entry['kind']} {entry['name']}"
    console.print(Text.assemble((title, "bold"), f": {entry.get('summary', '')}"))
    console.print(f"paper: {entry.get('paper') or '-'}")
    if "tasks" in entry:
        console.print(f"data tasks: {', '.join(entry['tasks'])}")
    console.print_json(json.dumps(entry.get("schema", {})))


@app.command()
@handled
def run(
    spec: Annotated[Path, typer.Argument(help="a YAML or JSON job spec")],
    set_: SetOption = None,
    out: Annotated[Path | None, typer.Option(help="folder for the final checkpoint")] = None,
) -> None:
    """Train locally, without the service (trainlib.loop.train), with a progress bar."""
    # Imported here: torch is slow to import and no other command needs it.
    from trainlib.errors import TrainingError
    from trainlib.loop import train
    from trainlib.spec import SpecError, parse_spec

    console = _out()
    try:
        job_spec = parse_spec(load_spec(spec, set_))
    except SpecError as exc:
        raise _Failed(
            "invalid job spec:\n" + "\n".join(f"  {e['path']}: {e['message']}" for e in exc.errors),
            code=2,
        ) from None
    with JobProgress(console, job_spec.name, job_spec.train.steps) as bar:
        try:
            result = train(job_spec, ProgressSink(bar), out_dir=out)
        except TrainingError as exc:
            raise _Failed(f"failed: {exc.reason}: {exc}") from None
    metrics_text = "  ".join(f"{k}={v:.4g}" for k, v in sorted(result.final_metrics.items()))
    console.print(
        Text.assemble(
            (result.status, "green"), f" {result.step}/{result.total_steps}  {metrics_text}"
        )
    )
    if result.checkpoint is not None:
        console.print(f"checkpoint: {result.checkpoint}")


@datasets_app.command("upload")
@handled
def upload(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help=".npz, .csv or .parquet")
    ],
    name: Annotated[str | None, typer.Option(help="default: the file's name")] = None,
    format: Annotated[
        str | None, typer.Option(help="npz, csv or parquet; default: the extension")
    ] = None,
) -> None:
    """Upload a data set file; prints its id, to use as `data: {name: upload, dataset: ID}`."""
    with _client(ctx) as client:
        result = client.upload_dataset(file, name=name, format=format)
    console = _out()
    console.print(f"dataset {result['id']} ({result['name']}, {result['size_bytes']} bytes)")
    console.print_json(json.dumps(result.get("info", {}), default=str))


@datasets_app.command("ls")
@handled
def list_datasets(ctx: typer.Context) -> None:
    """The team's uploaded data sets."""
    with _client(ctx) as client:
        rows = client.datasets()
    table = Table("id", "name", "format", "bytes", "created")
    for r in rows:
        table.add_row(r["id"], r["name"], r["format"], str(r["size_bytes"]), r["created_at"])
    _out().print(table)


# ----------------------------------------------------------------------------------- sweeps


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """`optimizer.lr=1e-3,1e-2` -> {'optimizer.lr': [0.001, 0.01]}."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        path, sep, values = item.partition("=")
        if not sep:
            raise PathError(f"{item!r}: expected PATH=V1,V2,..., e.g. optimizer.lr=1e-3,1e-2")
        grid[path.strip()] = parse_values(values)
    return grid


def parse_random(items: list[str]) -> dict[str, dict[str, Any]]:
    """`optimizer.lr=1e-4:1e-1:log` -> {'optimizer.lr': {low, high, log: True}} (also `int`)."""
    ranges: dict[str, dict[str, Any]] = {}
    for item in items:
        path, sep, spec = item.partition("=")
        parts = spec.split(":")
        flags = set(parts[2:])
        if not sep or len(parts) < 2 or not flags <= {"log", "int"}:
            raise PathError(f"{item!r}: expected PATH=LOW:HIGH[:log][:int], e.g. lr=1e-4:1e-1:log")
        try:
            low, high = float(parts[0]), float(parts[1])
        except ValueError:
            raise PathError(f"{item!r}: LOW and HIGH must be numbers") from None
        ranges[path.strip()] = {
            "low": low,
            "high": high,
            "log": "log" in flags,
            "integer": "int" in flags,
        }
    return ranges


@app.command()
@handled
def sweep(
    ctx: typer.Context,
    spec: Annotated[Path, typer.Argument(help="the base job spec")],
    grid: Annotated[
        list[str] | None, typer.Option(help="PATH=V1,V2,... (repeat for a product)")
    ] = None,
    random: Annotated[
        list[str] | None, typer.Option(help="PATH=LOW:HIGH[:log][:int], drawn --trials times")
    ] = None,
    trials: Annotated[int | None, typer.Option(min=1, help="random draws")] = None,
    metric: Annotated[str, typer.Option(help="the metric that ranks children")] = "val_accuracy",
    goal: Annotated[str, typer.Option(help="max or min")] = "max",
    name: Annotated[str | None, typer.Option(help="default: the spec's name")] = None,
    set_: SetOption = None,
    wait: Annotated[bool, typer.Option("--wait", "-w", help="wait for every child")] = False,
) -> None:
    """Create a sweep of child jobs over spec paths; with --wait, print the best child."""
    console = _out()
    base = load_spec(spec, set_)
    with _client(ctx) as client:
        created = client.create_sweep(
            base,
            name=name or str(base.get("name", "sweep")),
            grid=parse_grid(grid or []),
            random=parse_random(random or []),
            trials=trials,
            metric=metric,
            goal=goal,
        )
        console.print(f"sweep {created.id}: {len(created.children)} jobs")
        summary = client.wait_sweep(created.id) if wait else created
    _print_sweep(summary, console)
    if wait and summary.counts.get("succeeded", 0) != len(summary.children):
        raise _Failed("some children did not succeed")


@app.command()
@handled
def sweeps(
    ctx: typer.Context,
    sweep_id: Annotated[str | None, typer.Argument(help="one sweep's children and best")] = None,
) -> None:
    """The team's sweeps, or one sweep's summary."""
    console = _out()
    with _client(ctx) as client:
        if sweep_id is not None:
            _print_sweep(client.sweep(sweep_id), console)
            return
        found = client.sweeps()
    table = Table("id", "name", "method", "metric", "jobs", "best")
    for s in found:
        counts = ", ".join(f"{n} {state}" for state, n in sorted(s.counts.items()))
        best = f"{_num(s.best.value)} ({s.best.job_id})" if s.best else ""
        table.add_row(s.id, s.name, s.method, f"{s.goal} {s.metric}", counts, best)
    console.print(table)


def _print_sweep(summary: Sweep, console: Console) -> None:
    table = Table("job", "status", "overrides", summary.metric)
    best = summary.best.job_id if summary.best else None
    for c in summary.children:
        overrides = ", ".join(f"{k}={v}" for k, v in c.overrides.items())
        cell = Text(_num(c.value))
        if c.job_id == best:
            cell.append(" best", style="bold green")
        table.add_row(c.job_id, c.status, overrides, cell)
    console.print(table)
    if summary.best is not None:
        overrides = ", ".join(f"{k}={v}" for k, v in summary.best.overrides.items())
        value = _num(summary.best.value)
        console.print(
            f"best ({summary.goal} {summary.metric}): {summary.best.job_id}  {overrides}  {value}"
        )


if __name__ == "__main__":
    app()
