"""Teams and API keys. A key is shown once; only its SHA-256 is stored."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import ApiKey, Team

KEY_PREFIX = "rgm_"


def hash_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def get_or_create_team(session: Session, name: str) -> Team:
    team = session.scalar(select(Team).where(Team.name == name))
    if team is None:
        team = Team(name=name)
        session.add(team)
        session.flush()
    return team


def create_key(session: Session, team_name: str, label: str | None = None) -> str:
    """Create a key for the team (creating the team if needed); returns the key in clear, once."""
    team = get_or_create_team(session, team_name)
    raw = generate_key()
    session.add(ApiKey(team_id=team.id, key_hash=hash_key(raw), prefix=raw[:10], label=label))
    session.flush()
    return raw


def add_known_key(session: Session, team_name: str, raw_key: str, label: str | None) -> None:
    """Register a key chosen elsewhere (the embedded default's dev key) if not yet stored."""
    digest = hash_key(raw_key)
    if session.scalar(select(ApiKey.id).where(ApiKey.key_hash == digest)) is None:
        team = get_or_create_team(session, team_name)
        session.add(ApiKey(team_id=team.id, key_hash=digest, prefix=raw_key[:10], label=label))
        session.flush()


def authenticate_key(session: Session, raw_key: str) -> ApiKey | None:
    """The stored key, or None for an unknown or revoked one."""
    if not raw_key:
        return None
    return session.scalar(
        select(ApiKey).where(ApiKey.key_hash == hash_key(raw_key), ApiKey.revoked_at.is_(None))
    )


def set_max_priority(session: Session, prefix: str, priority: str) -> int:
    """Let the keys starting with `prefix` submit up to `priority`; how many keys changed."""
    keys = list(session.scalars(select(ApiKey).where(ApiKey.prefix.startswith(prefix))))
    for key in keys:
        key.max_priority = priority
    return len(keys)


def authenticate(session: Session, raw_key: str) -> Team | None:
    """The key's team, or None for an unknown or revoked key."""
    if not raw_key:
        return None
    row = session.execute(
        select(Team)
        .join(ApiKey, ApiKey.team_id == Team.id)
        .where(ApiKey.key_hash == hash_key(raw_key), ApiKey.revoked_at.is_(None))
    ).scalar_one_or_none()
    return row
