"""A typed client over httpx: submit, validate, list, read, cancel, metrics, events, sweeps.

503 answers (the database or broker briefly away) and refused connections are retried with
exponential backoff, honouring Retry-After; the server did not act on either, so even a POST
is safe to repeat. `events` follows the job's Server-Sent Events and reconnects with
Last-Event-ID, so a dropped connection loses and repeats nothing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import SSEError, connect_sse

from client.models import (
    Event,
    Job,
    JobPage,
    Metrics,
    Sweep,
    Validation,
)

DEFAULT_URL = "http://127.0.0.1:8000"
CONNECT_RETRIES = 2


class ApiError(RuntimeError):
    """The server's answer to a failed call: status code and its message."""

    def __init__(self, status_code: int, detail: Any) -> None:
        self.status_code = status_code
        self.detail = detail
        super().__init__(f"HTTP {status_code}: {self.message}")

    @property
    def message(self) -> str:
        """The server's `detail` as text."""
        if isinstance(self.detail, dict):
            inner = self.detail.get("detail", self.detail)
            if isinstance(inner, list):  # FastAPI's request validation: see `errors`
                return "invalid request"
            return inner if isinstance(inner, str) else str(inner)
        return str(self.detail)

    @property
    def errors(self) -> list[dict[str, Any]]:
        """Field errors: a spec's `{path, message}` list, or FastAPI's `{loc, msg}` list."""
        if not isinstance(self.detail, dict):
            return []
        if isinstance(self.detail.get("errors"), list):
            return list(self.detail["errors"])
        found = self.detail.get("detail")
        if isinstance(found, list):
            return [
                {
                    "path": ".".join(str(p) for p in e.get("loc", [])[1:]) or "(request)",
                    "message": str(e.get("msg", "")).removeprefix("Value error, "),
                }
                for e in found
                if isinstance(e, dict)
            ]
        return []


class Client:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        retries: int = 4,
        backoff: float = 0.5,
        max_wait: float = 30.0,
    ) -> None:
        self.base_url = base_url
        self._http = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout,
        )
        self._retries = retries
        self._backoff = backoff
        self._max_wait = max_wait

    @classmethod
    def from_env(cls, url: str | None = None, api_key: str | None = None) -> Client:
        """REGIMEN_URL and REGIMEN_API_KEY; defaults to the embedded default and its dev key."""
        url = url or os.environ.get("REGIMEN_URL") or DEFAULT_URL
        key = api_key or os.environ.get("REGIMEN_API_KEY")
        if not key:
            key_file = Path(os.environ.get("REGIMEN_VAR_DIR", "var")) / "dev-api-key"
            key = key_file.read_text().strip() if key_file.is_file() else ""
        return cls(url, key)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------ transport

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        header: str | None = None if response is None else response.headers.get("Retry-After")
        if header is not None and header.strip().isdigit():
            return min(float(header), self._max_wait)
        return min(self._backoff * 2.0**attempt, self._max_wait)

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        for attempt in range(self._retries + 1):
            last = attempt == self._retries
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.ConnectError:
                # Refused: maybe restarting. Fewer tries than for a 503, to fail fast when down.
                if attempt >= min(self._retries, CONNECT_RETRIES):
                    raise
                time.sleep(self._delay(attempt, None))
                continue
            if response.status_code != 503 or last:
                return response
            time.sleep(self._delay(attempt, response))
        raise AssertionError("unreachable")

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        if response.is_error:
            raise _error(response)
        return response.json()

    # ---------------------------------------------------------------------------------- jobs

    def submit(self, spec: dict[str, Any], *, idempotency_key: str | None = None) -> Job:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return Job.model_validate(self._call("POST", "/v1/jobs", json=spec, headers=headers))

    def validate(self, spec: dict[str, Any]) -> Validation:
        """The resolved spec and estimate; ApiError 422 with `errors` if it is invalid."""
        return Validation.model_validate(self._call("POST", "/v1/jobs/validate", json=spec))

    def jobs(
        self, *, status: str | None = None, name: str | None = None, limit: int = 50
    ) -> list[Job]:
        """The newest jobs first, up to `limit` (following the server's pages)."""
        found: list[Job] = []
        cursor: str | None = None
        while len(found) < limit:
            params: dict[str, Any] = {"limit": limit - len(found)}
            params.update({k: v for k, v in (("status", status), ("name", name)) if v})
            if cursor:
                params["cursor"] = cursor
            page = JobPage.model_validate(self._call("GET", "/v1/jobs", params=params))
            found += page.jobs
            cursor = page.next_cursor
            if cursor is None:
                break
        return found

    def job(self, job_id: str) -> Job:
        return Job.model_validate(self._call("GET", f"/v1/jobs/{job_id}"))

    def cancel(self, job_id: str) -> Job:
        return Job.model_validate(self._call("POST", f"/v1/jobs/{job_id}/cancel"))

    def metrics(self, job_id: str, *names: str, max_points: int | None = None) -> Metrics:
        params: dict[str, Any] = {"name": list(names)} if names else {}
        if max_points:
            params["max_points"] = max_points
        return Metrics.model_validate(
            self._call("GET", f"/v1/jobs/{job_id}/metrics", params=params)
        )

    def events(
        self, job_id: str, *, last_event_id: str | None = None, read_timeout: float = 60.0
    ) -> Iterator[Event]:
        """The job's events until its final status; reconnects after a dropped connection.

        The server sends a keep-alive at least every 15 s, so `read_timeout` only fires on a
        dead connection; it is then reopened from the last event received.
        """
        failures = 0
        while True:
            headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
            timeout = httpx.Timeout(self._http.timeout.connect, read=read_timeout)
            try:
                with connect_sse(
                    self._http,
                    "GET",
                    f"/v1/jobs/{job_id}/events",
                    headers=headers,
                    timeout=timeout,
                ) as source:
                    if source.response.is_error:
                        source.response.read()
                        if source.response.status_code != 503:
                            raise _error(source.response)
                    else:
                        for sse in source.iter_sse():
                            failures = 0
                            if not sse.data:
                                continue  # a keep-alive comment (httpx-sse yields it empty)
                            event = Event(id=sse.id, event=sse.event, data=sse.json())
                            last_event_id = event.id or last_event_id
                            yield event
                            if event.is_final:
                                return
            except (httpx.TransportError, SSEError):
                if failures >= self._retries:
                    raise
            time.sleep(self._delay(failures, None))
            failures += 1

    def wait(self, job_id: str, *, timeout: float | None = None) -> Job:
        """Follow the job's events until it ends; returns its final state."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for _event in self.events(job_id):
            if deadline is not None and time.monotonic() > deadline:
                break
        job = self.job(job_id)
        if not job.done:
            raise TimeoutError(f"job {job_id} still {job.status} after {timeout} s")
        return job

    # ---------------------------------------------------------------------- catalog, datasets

    def components(self, kind: str | None = None) -> Any:
        """Every kind's entries (a dict), or one kind's list; each with schema and paper."""
        return self._call("GET", f"/v1/components/{kind}" if kind else "/v1/components")

    def upload_dataset(
        self, path: Path, *, name: str | None = None, format: str | None = None
    ) -> dict[str, Any]:
        """Upload an .npz, .csv or .parquet file as the raw body; its id goes in `data.dataset`.

        The bytes are read once so that a retried request sends them again in full.
        """
        params = {"name": name or path.name}
        if format:
            params["format"] = format
        headers = {"Content-Type": "application/octet-stream"}
        result: dict[str, Any] = self._call(
            "POST", "/v1/datasets", params=params, content=path.read_bytes(), headers=headers
        )
        return result

    def datasets(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/v1/datasets")
        return result

    # -------------------------------------------------------------------------------- sweeps

    def create_sweep(
        self,
        spec: dict[str, Any],
        *,
        name: str = "sweep",
        grid: dict[str, list[Any]] | None = None,
        random: dict[str, dict[str, Any]] | None = None,
        trials: int | None = None,
        metric: str = "val_accuracy",
        goal: str = "max",
        seed: int = 0,
    ) -> Sweep:
        body = {
            "name": name,
            "spec": spec,
            "grid": grid or {},
            "random": random or {},
            "trials": trials,
            "metric": metric,
            "goal": goal,
            "seed": seed,
        }
        return Sweep.model_validate(self._call("POST", "/v1/sweeps", json=body))

    def sweep(self, sweep_id: str) -> Sweep:
        return Sweep.model_validate(self._call("GET", f"/v1/sweeps/{sweep_id}"))

    def sweeps(self, limit: int = 50) -> list[Sweep]:
        return [
            Sweep.model_validate(s)
            for s in self._call("GET", "/v1/sweeps", params={"limit": limit})
        ]

    def wait_sweep(
        self, sweep_id: str, *, timeout: float | None = None, poll: float = 1.0
    ) -> Sweep:
        """Poll the summary until every child has ended."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            sweep = self.sweep(sweep_id)
            if sweep.done:
                return sweep
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"sweep {sweep_id} not done after {timeout} s")
            time.sleep(poll)


def _error(response: httpx.Response) -> ApiError:
    try:
        detail = response.json()
    except ValueError:
        detail = response.text
    return ApiError(response.status_code, detail)
