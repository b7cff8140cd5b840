"""A small typed client over httpx: submit, read, wait, cancel, metrics."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx

FINAL = frozenset({"succeeded", "failed", "cancelled"})
DEFAULT_URL = "http://127.0.0.1:8000"


class ApiError(RuntimeError):
    """The server's answer to a failed call: status code and its message."""

    def __init__(self, status_code: int, detail: Any) -> None:
        self.status_code = status_code
        self.detail = detail
        super().__init__(f"HTTP {status_code}: {detail}")


class Client:
    def __init__(self, base_url: str, api_key: str, *, timeout: float = 30.0) -> None:
        self._http = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout,
        )

    @classmethod
    def from_env(cls) -> Client:
        """REGIMEN_URL and REGIMEN_API_KEY; defaults to the embedded default and its dev key."""
        url = os.environ.get("REGIMEN_URL", DEFAULT_URL)
        key = os.environ.get("REGIMEN_API_KEY")
        if key is None:
            key_file = Path(os.environ.get("REGIMEN_VAR_DIR", "var")) / "dev-api-key"
            key = key_file.read_text().strip() if key_file.is_file() else ""
        return cls(url, key)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.is_error:
            try:
                detail = response.json()
            except ValueError:
                detail = response.text
            raise ApiError(response.status_code, detail)
        return response.json()

    def submit(self, spec: dict[str, Any], *, idempotency_key: str | None = None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        result: dict[str, Any] = self._call("POST", "/v1/jobs", json=spec, headers=headers)
        return result

    def job(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/v1/jobs/{job_id}")
        return result

    def cancel(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/v1/jobs/{job_id}/cancel")
        return result

    def metrics(self, job_id: str, *names: str, max_points: int | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"name": list(names)} if names else {}
        if max_points:
            params["max_points"] = max_points
        result: dict[str, Any] = self._call("GET", f"/v1/jobs/{job_id}/metrics", params=params)
        return result

    def wait(self, job_id: str, *, timeout: float = 3600.0, poll: float = 1.0) -> dict[str, Any]:
        """Poll until the job ends; returns its final state."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["status"] in FINAL:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout} s")
            time.sleep(poll)
