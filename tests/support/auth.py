"""Bearer tokens for tests that call the HTTP API."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlmodel import Session

from cloud.identity.tokens import Role, issue_token


def bearer(engine: Engine, role: Role = "admin", household_id: str | None = None) -> dict[str, str]:
    """Return the Authorization header of a new token (an operator's by default)."""
    with Session(engine) as session:
        token = issue_token(session, role, household_id, datetime.now(UTC))
        session.commit()
    return {"Authorization": f"Bearer {token}"}
