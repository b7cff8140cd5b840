"""`python -m service.admin create-key`: a key is printed once and only its SHA-256 is stored."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import uuid
from pathlib import Path

from sqlalchemy import inspect, select, text

from models import ApiKey, Team
from service.auth import authenticate
from service.db import SessionFactory
from service.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]


def admin(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGIMEN_")}
    env["REGIMEN_DATABASE_URL"] = settings.resolved_database_url
    env["PYTHONPATH"] = str(REPO_ROOT)
    return subprocess.run(
        [sys.executable, "-m", "service.admin", *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_create_key_prints_a_key_stored_only_as_its_hash(
    settings: Settings, session_factory: SessionFactory
) -> None:
    team = f"admin-{uuid.uuid4().hex[:8]}"
    result = admin(settings, "create-key", "--team", team, "--label", "ci")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    key = lines[0].strip()
    assert key.startswith("rgm_")
    assert len(key) >= 40  # 32 random bytes, base64url

    digest = hashlib.sha256(key.encode()).hexdigest()
    with session_factory() as session:
        row = session.scalar(
            select(ApiKey).join(Team, Team.id == ApiKey.team_id).where(Team.name == team)
        )
        assert row is not None
        assert row.key_hash == digest
        assert row.label == "ci"
        assert key.startswith(row.prefix) and len(row.prefix) < len(key) // 2

        # the key in clear is in no column of any row of api_keys (nor anywhere in teams)
        for table in ("api_keys", "teams"):
            columns = [c["name"] for c in inspect(session.get_bind()).get_columns(table)]
            for column in columns:
                hits = session.execute(
                    text(f'SELECT count(*) FROM {table} WHERE CAST("{column}" AS TEXT) LIKE :k'),
                    {"k": f"%{key[4:]}%"},
                ).scalar()
                assert hits == 0, f"{table}.{column} holds the key in clear"

        found = authenticate(session, key)
        assert found is not None and found.name == team
        assert authenticate(session, key + "x") is None
        assert authenticate(session, digest) is None  # the stored hash is not a key
        assert authenticate(session, "") is None


def test_a_second_key_for_the_same_team(
    settings: Settings, session_factory: SessionFactory
) -> None:
    team = f"admin-{uuid.uuid4().hex[:8]}"
    first = admin(settings, "create-key", "--team", team)
    second = admin(settings, "create-key", "--team", team)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    key1, key2 = first.stdout.strip(), second.stdout.strip()
    assert key1 != key2
    with session_factory() as session:
        teams = session.scalars(select(Team).where(Team.name == team)).all()
        assert len(teams) == 1
        a, b = authenticate(session, key1), authenticate(session, key2)
        assert a is not None and b is not None and a.id == b.id == teams[0].id


def test_create_key_needs_a_team(settings: Settings) -> None:
    result = admin(settings, "create-key")
    assert result.returncode != 0
    assert "--team" in result.stderr + result.stdout
