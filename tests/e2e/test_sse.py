"""GET /v1/jobs/{id}/events against a live uvicorn + Celery worker on PostgreSQL and Redis.

Every status change arrives in order, metric batches cover every logged step once, and a
client reconnecting with Last-Event-ID gets exactly the rest: nothing twice, nothing missed.
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from client import Client
from client.models import Event
from service.auth import create_key
from service.db import SessionFactory, transaction
from tests.e2e.conftest import LiveService

pytestmark = pytest.mark.e2e

SPEC: dict[str, Any] = {
    "name": "sse-test",
    "data": {"name": "digits", "batch_size": 32},
    "model": {"name": "mlp", "hidden": [32]},
    "optimizer": {"name": "adamw", "lr": 1e-3},
    "train": {"steps": 120, "log_every": 10, "eval_every": 40, "checkpoint_every": 60},
}


@pytest.fixture
def sdk(live_service: LiveService, team_key: tuple[str, str]) -> Client:
    return Client(live_service.base_url, team_key[1])


def read(
    client: httpx.Client, job_id: str, last_event_id: str | None = None, limit: int | None = None
) -> list[Event]:
    """Events of one connection: to the end of the stream, or the first `limit` of them."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    events: list[Event] = []
    with connect_sse(client, "GET", f"/v1/jobs/{job_id}/events", headers=headers) as source:
        assert source.response.status_code == 200
        for sse in source.iter_sse():
            if not sse.data:
                continue  # a keep-alive comment
            events.append(Event(id=sse.id, event=sse.event, data=sse.json()))
            if limit is not None and len(events) == limit:
                break
    return events


def flatten(events: list[Event]) -> list[tuple[Any, ...]]:
    """Each job event by its id, each metric point by (step, name): what a client learns."""
    items: list[tuple[Any, ...]] = []
    for e in events:
        if e.event == "metrics":
            items += [
                ("metric", p["step"], name, value)
                for p in e.data["points"]
                for name, value in p["values"].items()
            ]
        else:
            items.append(("event", e.data["id"], e.event, e.data["status"]))
    return items


def cursor(e: Event) -> tuple[int, int]:
    event_id, step = e.id.split("-")
    return int(event_id), int(step)


def test_a_client_receives_every_status_change_in_order_and_every_metric_once(
    sdk: Client, live_service: LiveService, team_key: tuple[str, str]
) -> None:
    job = sdk.submit(SPEC)
    events = list(sdk.events(job.id))

    statuses = [e.status for e in events if e.event == "status"]
    assert statuses == ["queued", "running", "succeeded"]
    assert events[-1].status == "succeeded"

    headers = {"Authorization": f"Bearer {team_key[1]}"}
    history = httpx.get(
        f"{live_service.base_url}/v1/jobs/{job.id}/events/history", headers=headers
    ).json()
    assert [e.data["id"] for e in events if e.event != "metrics"] == [h["id"] for h in history]
    assert [e.event for e in events if e.event == "checkpoint"] == ["checkpoint"] * 2

    # Cursors never go back; metric steps strictly increase across batches.
    cursors = [cursor(e) for e in events]
    assert all(a[0] <= b[0] and a[1] <= b[1] for a, b in itertools.pairwise(cursors))
    steps = [p["step"] for e in events if e.event == "metrics" for p in e.data["points"]]
    assert steps == list(range(10, 121, 10))
    stored = sdk.metrics(job.id)
    streamed = {
        (s, n): v for s, n, v in ((i[1], i[2], i[3]) for i in flatten(events) if i[0] == "metric")
    }
    assert streamed == {
        (s, name): v for name, series in stored.series.items() for s, v in series.points
    }
    last_batch = [e for e in events if e.event == "metrics"][-1]
    assert last_batch.data["step"] == last_batch.data["total"] == 120


@pytest.mark.parametrize("cut", [1, 4])
def test_reconnecting_with_last_event_id_replays_nothing_twice_and_misses_nothing(
    sdk: Client, live_service: LiveService, team_key: tuple[str, str], cut: int
) -> None:
    headers = {"Authorization": f"Bearer {team_key[1]}"}
    job = sdk.submit(SPEC)
    with httpx.Client(base_url=live_service.base_url, headers=headers, timeout=60) as http:
        first = read(http, job.id, limit=cut)  # then the connection drops
        rest = read(http, job.id, last_event_id=first[-1].id)
        replay = read(http, job.id)  # the whole story, from the start, after the end

    resumed = flatten(first) + flatten(rest)
    assert len(resumed) == len(set(resumed)), "an event was delivered twice"
    assert sorted(resumed) == sorted(flatten(replay))
    assert [e.status for e in first + rest if e.event == "status"] == [
        "queued",
        "running",
        "succeeded",
    ]
    # Reconnecting after the end: the stream closes at once with nothing.
    with httpx.Client(base_url=live_service.base_url, headers=headers, timeout=60) as http:
        assert read(http, job.id, last_event_id=replay[-1].id) == []


def test_the_stream_is_private_to_the_team_and_rejects_foreign_cursors(
    sdk: Client, live_service: LiveService, session_factory: SessionFactory
) -> None:
    job = sdk.submit({**SPEC, "train": {"steps": 10}})
    with transaction(session_factory) as session:
        other = create_key(session, f"other-{uuid.uuid4().hex[:8]}")
    url = f"{live_service.base_url}/v1/jobs/{job.id}/events"
    assert httpx.get(url, headers={"Authorization": f"Bearer {other}"}).status_code == 404
    assert httpx.get(url).status_code == 401
    response = httpx.get(
        url, headers={"Authorization": f"Bearer {sdk_key(sdk)}", "Last-Event-ID": "nonsense"}
    )
    assert response.status_code == 400
    assert "Last-Event-ID" in response.json()["detail"]
    sdk.cancel(job.id)
    assert [e.status for e in sdk.events(job.id) if e.event == "status"][-1] == "cancelled"


def sdk_key(sdk: Client) -> str:
    return sdk._http.headers["Authorization"].removeprefix("Bearer ")
