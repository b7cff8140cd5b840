"""The dashboard in a real browser: Debian's chromium, headless, driven by Playwright.

A quickstart job runs to the end on the live service (uvicorn + a Celery worker); the browser
logs in with a key, finds the job in the table, opens it and checks that the loss chart drew
as many points as GET /v1/jobs/{id}/metrics returned (the chart code writes the counts of what
it drew to the figure's data-points attribute).
"""

from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.e2e.conftest import LiveService
from tests.support.processes import REPO_ROOT, wait_job, wait_until

pytestmark = pytest.mark.e2e
# The quickstart spec, shortened: the test needs a finished job with curves, not 97 %.
SPEC = (
    (REPO_ROOT / "examples" / "quickstart.yaml").read_bytes().replace(b"steps: 600", b"steps: 200")
)

TINY = {
    "data": {"name": "digits", "batch_size": 32},
    "model": {"name": "mlp", "hidden": [8]},
    "optimizer": {"name": "sgd", "lr": 0.1},
    "train": {"steps": 10},
}
HOSTILE_NAME = "<img src=x onerror=window.pwned=1>"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    assert chromium, (
        "Debian's chromium is missing: `make test` installs it (apt-get install chromium)"
    )
    with sync_playwright() as playwright:
        # --no-sandbox: CI containers run as root, where chromium's sandbox cannot start.
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert errors == [], f"JavaScript errors: {errors}"


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


def test_login_table_and_loss_curve(
    live_service: LiveService,
    service_logs: Path,
    team_key: tuple[str, str],
    page: Page,
    tmp_path: Path,
) -> None:
    key = team_key[1]
    with httpx.Client(
        base_url=live_service.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    ) as api:
        created = api.post("/v1/jobs", content=SPEC, headers={"Content-Type": "application/yaml"})
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]
        assert wait_job(api, job_id, {"succeeded", "failed", "cancelled"})["status"] == "succeeded"
        series = api.get(f"/v1/jobs/{job_id}/metrics").json()["series"]
        # A name that would run script if the page ever parsed it as HTML; cancelled (at once
        # if still queued, else at its next step).
        hostile = api.post("/v1/jobs", json={**TINY, "name": HOSTILE_NAME}).json()["id"]
        assert api.post(f"/v1/jobs/{hostile}/cancel").status_code == 200
    losses = {name: len(s["steps"]) for name, s in series.items() if name.endswith("loss")}
    worker_lines = [
        json.loads(line)
        for line in (service_logs / "worker.log").read_text().splitlines()
        if line.startswith("{")
    ]
    supervised = [e for e in worker_lines if e.get("job_id") == job_id]
    assert supervised, "the worker logged no JSON line carrying the job id"
    from_supervisor = [e for e in supervised if e["logger"] == "regimen.supervisor"]
    assert from_supervisor and all(e.get("attempt") == 1 for e in from_supervisor)
    assert losses["loss"] == 10  # logged every 20 of 200 steps

    page.goto(live_service.base_url + "/")
    page.fill("#api-key", "rgm_not-a-key")
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#login-error:has-text('not accepted')")

    page.fill("#api-key", key)
    page.click("#login-form button[type=submit]")
    row = page.wait_for_selector(f"#jobs-table tr[data-job-id='{job_id}']")
    assert row.get_attribute("data-status") == "succeeded"
    assert page.evaluate("sessionStorage.getItem('regimen.apiKey')") == key
    assert page.evaluate("localStorage.length") == 0  # gone when the tab closes
    hostile_row = page.wait_for_selector(f"#jobs-table tr[data-job-id='{hostile}']")
    assert hostile_row.query_selector("a.job-link").text_content() == HOSTILE_NAME
    assert page.query_selector("#jobs-table img") is None
    assert page.evaluate("window.pwned") is None
    page.screenshot(path=tmp_path / "jobs.png")

    page.click(f"#jobs-table tr[data-job-id='{job_id}'] a.job-link")
    chart = page.wait_for_selector("figure[data-chart='loss'][data-drawn='true']")
    assert json.loads(chart.get_attribute("data-points") or "{}") == losses
    assert chart.query_selector("canvas") is not None
    # The log-scale toggle redraws the chart; losses are positive, so every point stays.
    chart.evaluate("figure => { figure.dataset.drawn = 'false'; }")
    chart.query_selector("input.log-toggle").click()
    page.wait_for_selector("figure[data-chart='loss'][data-drawn='true']")
    assert json.loads(chart.get_attribute("data-points") or "{}") == losses
    page.wait_for_selector(".job[data-status='succeeded']")
    shot = tmp_path / "job.png"
    page.screenshot(path=shot, full_page=True)
    width, height = png_size(shot)
    assert width == 1400 and height >= 1000

    page.goto(f"{live_service.base_url}/#/compare?ids={job_id}&metric=val_accuracy")
    compare = page.wait_for_selector("figure[data-chart='compare'][data-drawn='true']")
    assert json.loads(compare.get_attribute("data-points") or "{}") == {
        job_id: len(series["val_accuracy"]["steps"])
    }


def test_component_catalog_lists_every_entry(
    live_service: LiveService, team_key: tuple[str, str], page: Page
) -> None:
    key = team_key[1]
    catalog = httpx.get(
        live_service.base_url + "/v1/components", headers={"Authorization": f"Bearer {key}"}
    ).json()
    page.goto(live_service.base_url + "/")
    page.fill("#api-key", key)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#jobs-table")
    page.goto(live_service.base_url + "/#/components/optimizer")
    page.wait_for_selector("article.component[data-kind='optimizer']")
    names = page.eval_on_selector_all("article.component", "els => els.map(e => e.dataset.name)")
    assert names == [entry["name"] for entry in catalog["optimizer"]]
    assert page.locator("article.component cite").count() == sum(
        1 for entry in catalog["optimizer"] if entry.get("paper")
    )


def test_a_running_job_page_streams_its_curve(
    live_service: LiveService, team_key: tuple[str, str], page: Page
) -> None:
    """The job page of a running job follows its event stream (fetch with the key: EventSource
    cannot send one) and the loss curve grows to every point the API has."""
    key = team_key[1]
    streamed: list[str] = []
    page.on("request", lambda r: streamed.append(r.url) if r.url.endswith("/events") else None)
    page.goto(live_service.base_url + "/")
    page.fill("#api-key", key)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#jobs-table")
    with httpx.Client(
        base_url=live_service.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    ) as api:
        long = SPEC.replace(b"steps: 200", b"steps: 800")  # SPEC is the 200-step quickstart
        job_id = api.post(
            "/v1/jobs", content=long, headers={"Content-Type": "application/yaml"}
        ).json()["id"]
        wait_until(
            lambda: api.get(f"/v1/jobs/{job_id}").json()["progress"]["step"] > 0,
            120,
            "the job training",
            poll=0.05,
        )
        page.goto(f"{live_service.base_url}/#/jobs/{job_id}")
        page.wait_for_selector(".job[data-live='stream']")
        drawn: set[int] = set()
        while page.query_selector(".job[data-status='succeeded']") is None:
            figure = page.query_selector("figure[data-chart='loss'][data-drawn='true']")
            if figure is not None:
                drawn.add(json.loads(figure.get_attribute("data-points") or "{}").get("loss", 0))
            assert page.query_selector(".job[data-status='failed']") is None
            page.wait_for_timeout(100)
        total = len(api.get(f"/v1/jobs/{job_id}/metrics").json()["series"]["loss"]["steps"])
    assert total == 40  # logged every 20 of 800 steps
    final = page.wait_for_selector("figure[data-chart='loss'][data-drawn='true']")
    assert json.loads(final.get_attribute("data-points") or "{}")["loss"] == total
    assert len(drawn - {total}) >= 2, f"the curve never grew while the job ran: {drawn}"
    assert streamed == [f"{live_service.base_url}/v1/jobs/{job_id}/events"]
