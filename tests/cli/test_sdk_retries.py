"""The SDK retries a 503 (honouring Retry-After) and gives up after its retries, against a real
HTTP server on a local port that answers 503 a set number of times."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from client import ApiError, Client
from client.sdk import DEFAULT_URL

JOB = {
    "id": "5b0f9a43-3f0c-4c4b-9d59-6a1d1c2c3e4f",
    "name": "j",
    "status": "queued",
    "attempt": 0,
    "max_attempts": 3,
    "progress": {"step": 0, "total": 10, "fraction": 0.0},
    "latest_metrics": {},
    "failure": None,
    "cancel_requested": False,
    "spec_hash": "0" * 64,
    "created_at": "2026-01-01T00:00:00Z",
    "started_at": None,
    "finished_at": None,
    "future_field": "ignored by older clients",
}


class Flaky(ThreadingHTTPServer):
    """Answers 503 (Retry-After: 0) `failures` times, then the job."""

    def __init__(self, failures: int) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.failures = failures
        self.requests = 0


class Handler(BaseHTTPRequestHandler):
    server: Flaky

    def do_GET(self) -> None:
        self.server.requests += 1
        if self.server.requests <= self.server.failures:
            body = json.dumps({"detail": "the database is unavailable; retry shortly"}).encode()
            self.send_response(503)
            self.send_header("Retry-After", "0")
        else:
            body = json.dumps(JOB).encode()
            self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


def serve(failures: int) -> Iterator[Flaky]:
    server = Flaky(failures)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def twice_down() -> Iterator[Flaky]:
    yield from serve(failures=2)


def url(server: Flaky) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def test_a_503_is_retried_until_the_answer_comes(twice_down: Flaky) -> None:
    with Client(url(twice_down), "key", retries=3, backoff=0.01) as client:
        job = client.job(JOB["id"])
    assert twice_down.requests == 3
    assert job.id == JOB["id"] and job.status == "queued" and job.progress.total == 10


def test_after_its_retries_the_client_raises_the_servers_503(twice_down: Flaky) -> None:
    with (
        Client(url(twice_down), "key", retries=1, backoff=0.01) as client,
        pytest.raises(ApiError) as caught,
    ):
        client.job(JOB["id"])
    assert twice_down.requests == 2
    assert caught.value.status_code == 503
    assert caught.value.message == "the database is unavailable; retry shortly"


def test_retry_after_sets_the_delay_capped_and_backoff_doubles_without_it() -> None:
    client = Client("http://127.0.0.1:9", "key", backoff=0.5, max_wait=30.0)
    request = httpx.Request("GET", "http://127.0.0.1:9/")
    assert client._delay(0, httpx.Response(503, headers={"Retry-After": "7"}, request=request)) == 7
    assert (
        client._delay(0, httpx.Response(503, headers={"Retry-After": "99"}, request=request)) == 30
    )
    assert [client._delay(n, None) for n in range(4)] == [0.5, 1.0, 2.0, 4.0]
    assert client._delay(10, None) == 30


def test_a_refused_connection_is_retried_then_raised() -> None:
    with (
        Client("http://127.0.0.1:9", "key", backoff=0.01) as client,
        pytest.raises(httpx.ConnectError),
    ):
        client.job(JOB["id"])


def test_field_errors_read_from_both_422_shapes() -> None:
    spec = ApiError(
        422, {"detail": "invalid job spec: a: b", "errors": [{"path": "a", "message": "b"}]}
    )
    assert spec.message == "invalid job spec: a: b"
    assert spec.errors == [{"path": "a", "message": "b"}]
    fastapi = ApiError(
        422,
        {
            "detail": [
                {"loc": ["body", "grid"], "msg": "Value error, no values"},
                {"loc": ["body"], "msg": "x"},
            ]
        },
    )
    assert fastapi.message == "invalid request"
    assert fastapi.errors == [
        {"path": "grid", "message": "no values"},
        {"path": "(request)", "message": "x"},
    ]


def test_from_env_reads_url_and_key_else_the_embedded_default_and_its_dev_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REGIMEN_URL", "http://example.invalid:1234")
    monkeypatch.setenv("REGIMEN_API_KEY", "rgm_from_env")
    with Client.from_env() as client:
        assert client.base_url == "http://example.invalid:1234"
        assert client._http.headers["Authorization"] == "Bearer rgm_from_env"

    monkeypatch.delenv("REGIMEN_URL")
    monkeypatch.delenv("REGIMEN_API_KEY")
    monkeypatch.setenv("REGIMEN_VAR_DIR", str(tmp_path))
    (tmp_path / "dev-api-key").write_text("rgm_dev_key\n")
    with Client.from_env() as client:
        assert client.base_url == DEFAULT_URL == "http://127.0.0.1:8000"
        assert client._http.headers["Authorization"] == "Bearer rgm_dev_key"
