"""The household's privacy routes: its data exported, its transparency report, its erasure."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from cloud.api.dependencies import HOUSEHOLD_ERRORS, OWN, ClockDep, SessionDep, household_or_404
from cloud.api.schemas.consents import ErasurePublic
from cloud.commerce import privacy

__all__ = ["router"]

router = APIRouter(tags=["privacy"])


@router.get("/households/{household_id}/export", dependencies=OWN, responses=HOUSEHOLD_ERRORS)
def export(household_id: str, session: SessionDep) -> dict[str, Any]:
    """Return every row the cloud holds about the household, by table (GDPR Art. 15 and 20);
    only the hashes of secrets are left out."""
    household_or_404(session, household_id)
    return privacy.export(session.connection(), household_id)


@router.get("/households/{household_id}/transparency", dependencies=OWN, responses=HOUSEHOLD_ERRORS)
def transparency(household_id: str, session: SessionDep) -> dict[str, Any]:
    """Return what was shared with whom and when, which offers were shown and why, which
    experiments the household was in, and its consents."""
    household_or_404(session, household_id)
    return privacy.transparency(session.connection(), household_id)


@router.delete("/households/{household_id}", dependencies=OWN, status_code=202, responses=HOUSEHOLD_ERRORS)
def erase(household_id: str, session: SessionDep, clock: ClockDep) -> ErasurePublic:
    """Erase the household (GDPR Art. 17): every row tied to it goes, but for the documented
    retention; its fridges are told to wipe themselves, and their credentials are revoked once
    they confirm. The token used for this request stops working."""
    household_or_404(session, household_id)
    erasure_id = privacy.erase(session.connection(), household_id, clock.now())
    session.commit()
    return ErasurePublic(
        erasure_id=erasure_id, household_hash=privacy.household_hash(household_id), kept=privacy.RETENTION
    )
