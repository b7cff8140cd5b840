"""POST /v1/datasets and GET /v1/datasets on the real PostgreSQL (TestClient in-process), and a
job on an uploaded set trained through the service's data set resolver."""

from __future__ import annotations

import io
import math
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.main import create_app
from models import Dataset, Job, Team
from service.datasets import FOLDER, dataset_resolver, stored_path
from service.db import SessionFactory
from service.settings import Settings
from service.storage import ArtifactStore
from trainlib import parse_spec, train

LIMIT = 64_000


@pytest.fixture(scope="module")
def upload_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "task_queue": f"{settings.task_queue}-uploads-{uuid.uuid4().hex[:6]}",
            "max_upload_bytes": LIMIT,
        }
    )


@pytest.fixture(scope="module")
def client(upload_settings: Settings, redis_url: str) -> Iterator[TestClient]:
    broker = redis.Redis.from_url(f"{redis_url}/0")
    with TestClient(create_app(upload_settings)) as test_client:
        yield test_client
    broker.delete(upload_settings.task_queue)  # the jobs submitted here are never run by Celery
    broker.close()


@pytest.fixture
def store(upload_settings: Settings) -> ArtifactStore:
    return ArtifactStore(upload_settings.resolved_artifact_dir)


@pytest.fixture
def auth(team_key: tuple[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {team_key[1]}"}


@pytest.fixture
def team_id(team_key: tuple[str, str], session_factory: SessionFactory) -> uuid.UUID:
    with session_factory() as session:
        found = session.scalar(select(Team.id).where(Team.name == team_key[0]))
    assert found is not None
    return found


def blobs(n: int = 240, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three well-separated Gaussian blobs in 6 dimensions."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centres = rng.normal(0, 4, (3, 6))
    return (centres[y] + rng.normal(0, 1, (n, 6))).astype(np.float32), y


def npz(**arrays: Any) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # allow_pickle=True by default: object arrays go in pickled
    return buffer.getvalue()


def upload(client: TestClient, auth: dict[str, str], body: Any, name: str) -> Any:
    return client.post("/v1/datasets", params={"name": name}, content=body, headers=auth)


def stored_files(store: ArtifactStore) -> set[Path]:
    folder = store.root / FOLDER
    return {p for p in folder.rglob("*") if p.is_file()} if folder.is_dir() else set()


def count_rows(session_factory: SessionFactory, team_id: uuid.UUID) -> int:
    with session_factory() as session:
        query = select(func.count()).select_from(Dataset).where(Dataset.team_id == team_id)
        return int(session.scalar(query) or 0)


def test_a_good_npz_is_stored_once_and_listed(
    client: TestClient,
    auth: dict[str, str],
    store: ArtifactStore,
    team_key: tuple[str, str],
    session_factory: SessionFactory,
    team_id: uuid.UUID,
) -> None:
    x, y = blobs(seed=1)
    body = npz(x=x, y=y)
    first = upload(client, auth, body, "blobs.npz")
    assert first.status_code == 201, first.text
    out = first.json()
    assert out["format"] == "npz" and out["size_bytes"] == len(body)
    assert out["info"] == {
        "samples": 240,
        "input_shape": [6],
        "task": "classification",
        "num_classes": 3,
        "x_dtype": "float32",
        "y_dtype": "int64",
    }
    path = stored_path(store, out["content_hash"], "npz")
    assert path.read_bytes() == body

    again = upload(client, auth, body, "blobs-again.npz")
    assert again.status_code == 200 and again.json()["id"] == out["id"]
    assert count_rows(session_factory, team_id) == 1

    listed = client.get("/v1/datasets", headers=auth)
    assert listed.status_code == 200 and [d["id"] for d in listed.json()] == [out["id"]]

    other = {"Authorization": "Bearer " + new_key(session_factory)}
    theirs = upload(client, other, body, "same-bytes.npz")
    assert theirs.status_code == 201 and theirs.json()["id"] != out["id"]
    assert [p for p in stored_files(store) if p.name.startswith(out["content_hash"])] == [path]
    assert [d["id"] for d in client.get("/v1/datasets", headers=other).json()] == [
        theirs.json()["id"]
    ]


def new_key(session_factory: SessionFactory) -> str:
    from service.auth import create_key
    from service.db import transaction

    with transaction(session_factory) as session:
        return create_key(session, f"uploads-{uuid.uuid4().hex[:8]}")


def job_spec(dataset_id: str, **data: Any) -> dict[str, Any]:
    return {
        "data": {"name": "upload", "dataset": dataset_id, "batch_size": 32, **data},
        "model": {"name": "mlp", "hidden": [16]},
        "optimizer": {"name": "adamw", "lr": 1e-2},
        "train": {"steps": 60, "eval_every": 60, "device": "cpu"},
    }


def test_a_job_on_an_upload_trains(
    client: TestClient,
    auth: dict[str, str],
    store: ArtifactStore,
    session_factory: SessionFactory,
    team_id: uuid.UUID,
) -> None:
    x, y = blobs(seed=2)
    dataset_id = upload(client, auth, npz(x=x, y=y), "train.npz").json()["id"]
    submitted = client.post("/v1/jobs", json=job_spec(dataset_id, label_noise=0.1), headers=auth)
    assert submitted.status_code == 201, submitted.text
    with session_factory() as session:
        job = session.get(Job, uuid.UUID(submitted.json()["id"]))
        assert job is not None
        spec = parse_spec(job.resolved_spec)
    result = train(spec, resolve_dataset=dataset_resolver(session_factory, team_id, store))
    assert result.status == "completed"
    assert result.final_metrics["val_accuracy"] > 0.9
    assert math.isfinite(result.final_metrics["val_loss"])


def test_a_csv_with_float_targets_is_a_regression_set(
    client: TestClient,
    auth: dict[str, str],
    store: ArtifactStore,
    team_id: uuid.UUID,
    session_factory: SessionFactory,
) -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(80, 3))
    target = x @ np.array([1.0, -2.0, 0.5])
    lines = ["a,b,c,y"] + [f"{r[0]},{r[1]},{r[2]},{t}" for r, t in zip(x, target, strict=True)]
    response = upload(client, auth, "\n".join(lines).encode(), "linear.csv")
    assert response.status_code == 201, response.text
    info = response.json()["info"]
    assert info["task"] == "regression" and info["targets"] == 1 and info["input_shape"] == [3]
    resolve = dataset_resolver(session_factory, team_id, store)
    path, fmt = resolve(response.json()["id"])
    assert fmt == "csv" and path.is_file()


def test_jobs_may_only_name_the_teams_data_sets(
    client: TestClient, auth: dict[str, str], session_factory: SessionFactory
) -> None:
    other = {"Authorization": "Bearer " + new_key(session_factory)}
    x, y = blobs(seed=4)
    theirs = upload(client, other, npz(x=x, y=y), "theirs.npz").json()["id"]
    for dataset_id in (theirs, str(uuid.uuid4())):
        response = client.post("/v1/jobs", json=job_spec(dataset_id), headers=auth)
        assert response.status_code == 422
        (error,) = response.json()["errors"]
        assert error["path"] == "data.dataset" and "no data set" in error["message"]


def parquet(columns: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    return buffer.getvalue()


def test_a_parquet_table_is_a_data_set_that_trains(
    client: TestClient,
    auth: dict[str, str],
    session_factory: SessionFactory,
    team_id: uuid.UUID,
    store: ArtifactStore,
) -> None:
    x, y = blobs(seed=5)
    columns = {f"f{i}": pa.array(x[:, i]) for i in range(x.shape[1])}
    columns["label"] = pa.array(y)  # the target by name, not by position
    columns = {"label": columns.pop("label"), **columns}
    response = upload(client, auth, parquet(columns), "blobs.parquet")
    assert response.status_code == 201, response.text
    info = response.json()["info"]
    assert info["task"] == "classification" and info["num_classes"] == 3
    assert info["input_shape"] == [6] and info["samples"] == len(y)
    assert response.json()["format"] == "parquet"
    result = train(
        parse_spec(job_spec(response.json()["id"])),
        resolve_dataset=dataset_resolver(session_factory, team_id, store),
    )
    assert result.status == "completed" and result.final_metrics["val_accuracy"] > 0.9


def ragged_npz() -> bytes:
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = [1.0, 2.0], [3.0]
    return npz(x=ragged, y=np.array([0, 1]))


BAD_FILES: list[tuple[str, bytes, str, int, str]] = [
    (
        "wrong x dtype",
        npz(x=np.array([["a", "b"], ["c", "d"]]), y=np.array([0, 1])),
        "f.npz",
        422,
        "x has dtype <U1",
    ),
    (
        "bool labels",
        npz(x=np.ones((4, 2)), y=np.array([True, False, True, False])),
        "f.npz",
        422,
        "y has dtype bool",
    ),
    ("ragged array", ragged_npz(), "f.npz", 422, "pickled object array"),
    (
        "pickle inside",
        npz(x=np.array([{"evil": 1}, {}], dtype=object), y=np.array([0, 1])),
        "f.npz",
        422,
        "pickles are never loaded",
    ),
    ("unequal lengths", npz(x=np.ones((5, 2)), y=np.array([0, 1, 0])), "f.npz", 422, "must match"),
    ("NaN", npz(x=np.array([[1.0, np.nan], [0.0, 1.0]]), y=np.array([0, 1])), "f.npz", 422, "NaN"),
    ("negative label", npz(x=np.ones((3, 2)), y=np.array([0, -1, 1])), "f.npz", 422, "0..C-1"),
    ("missing y", npz(x=np.ones((3, 2))), "f.npz", 422, "needs arrays x and y"),
    ("not a zip", b"\x80\x04K\x01.", "f.npz", 422, "not an .npz file"),
    ("ragged csv", b"a,b,y\n1,2,0\n3,1\n4,5,1\n", "f.csv", 422, "line 3 has 2 fields"),
    ("text in csv", b"a,b,y\n1,2,0\n3,x,1\n4,5,1\n", "f.csv", 422, "'x' is not a number"),
    ("not parquet", b"PAR1 not really", "f.parquet", 422, "not a .parquet file"),
    (
        "text in parquet",
        parquet({"a": pa.array(["x", "y"]), "y": pa.array([0, 1])}),
        "f.parquet",
        422,
        "column 'a' has type string",
    ),
    (
        "missing values in parquet",
        parquet({"a": pa.array([1.0, None, 2.0]), "y": pa.array([0, 1, 0])}),
        "f.parquet",
        422,
        "missing values",
    ),
    ("no extension", b"x", "data", 400, "extension"),
]


@pytest.mark.parametrize(
    ("body", "name", "code", "message"),
    [case[1:] for case in BAD_FILES],
    ids=[case[0] for case in BAD_FILES],
)
def test_bad_files_are_refused_and_nothing_is_stored(
    client: TestClient,
    auth: dict[str, str],
    store: ArtifactStore,
    session_factory: SessionFactory,
    team_id: uuid.UUID,
    body: bytes,
    name: str,
    code: int,
    message: str,
) -> None:
    before = stored_files(store)
    response = upload(client, auth, body, name)
    assert response.status_code == code, response.text
    assert message in response.json()["detail"]
    assert stored_files(store) == before
    assert count_rows(session_factory, team_id) == 0


@pytest.mark.parametrize("streamed", [False, True])
def test_an_oversize_file_is_413_and_nothing_is_stored(
    client: TestClient,
    auth: dict[str, str],
    store: ArtifactStore,
    session_factory: SessionFactory,
    team_id: uuid.UUID,
    streamed: bool,
) -> None:
    body = npz(x=np.zeros((LIMIT // 8 + 10, 1)), y=np.zeros(LIMIT // 8 + 10, dtype=np.int64))
    assert len(body) > LIMIT
    before = stored_files(store)
    chunks = (body[i : i + 4096] for i in range(0, len(body), 4096))
    # a generator has no Content-Length: the limit is enforced while the chunks arrive
    response = upload(client, auth, chunks if streamed else body, "big.npz")
    assert response.status_code == 413
    assert str(LIMIT) in response.json()["detail"]
    assert stored_files(store) == before
    assert count_rows(session_factory, team_id) == 0


def test_uploads_need_a_valid_key(client: TestClient, store: ArtifactStore) -> None:
    before = stored_files(store)
    x, y = blobs(seed=5)
    for headers in ({}, {"Authorization": "Bearer rgm_not-a-real-key"}):
        response = upload(client, headers, npz(x=x, y=y), "blobs.npz")
        assert response.status_code == 401
        assert client.get("/v1/datasets", headers=headers).status_code == 401
    assert stored_files(store) == before
