"""The dashboard's routes in-process: the page, its modules, the vendored chart library."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.routes.dashboard import STATIC_DIR
from service.settings import Settings


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


def test_index_needs_no_key_and_forbids_foreign_scripts(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/static/js/main.js">' in response.text
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy


def test_every_module_the_page_imports_is_served(client: TestClient) -> None:
    for path in sorted((STATIC_DIR / "js").glob("*.js")):
        response = client.get(f"/static/js/{path.name}")
        assert response.status_code == 200, path.name
        assert "javascript" in response.headers["content-type"]


def test_uplot_ships_with_its_license(client: TestClient) -> None:
    license_text = client.get("/static/vendor/uplot/LICENSE").text
    assert "MIT License" in license_text and "Leon Sorokin" in license_text
    assert client.get("/static/vendor/uplot/uPlot.esm.js").status_code == 200


def test_the_dashboard_code_never_parses_html() -> None:
    # Everything shown comes from users (job names, specs, failure messages): text nodes only.
    # uPlot, too, sets its title and legend labels with textContent.
    sinks = ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(")
    for path in [
        *sorted((STATIC_DIR / "js").glob("*.js")),
        STATIC_DIR / "vendor/uplot/uPlot.esm.js",
    ]:
        code = path.read_text()
        assert [s for s in sinks if s in code] == [], path.name


def test_static_files_stay_inside_the_static_folder(client: TestClient) -> None:
    assert client.get("/static/../main.py").status_code == 404
    assert client.get("/static/%2e%2e/main.py").status_code == 404
