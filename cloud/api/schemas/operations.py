"""The API's models of the worker's own state: ingestion, dead letters, readiness."""

from __future__ import annotations

from pydantic import BaseModel, Field

from cloud.api.schemas.common import StoredTime
from cloud.ingest.deadletters import MAX_DEAD_LETTER_BYTES


class IngestStatsPublic(BaseModel):
    """Ingestion counters since the worker started."""

    received: int
    stored: int
    duplicates: int
    rejected: dict[str, int]
    batches: int
    last_commit_ms: float
    broker_connected: bool


class DeadLetterPublic(BaseModel):
    """A message ingestion refused, as kept in the dead-letter table."""

    id: int
    received_at: StoredTime
    topic: str
    device_id: str | None = Field(description="The device the topic or event names; null if none could.")
    reason: str = Field(description="The rejection reason it was counted under in frigo_ingest_rejected.")
    detail: str
    payload: str = Field(
        description=f"The payload (its first {MAX_DEAD_LETTER_BYTES} bytes at most) as UTF-8 text; bytes "
        "that are not UTF-8 appear as \\xNN escapes."
    )
    payload_size: int = Field(description="Size of the payload as received, in bytes.")
    payload_truncated: bool = Field(description="Whether `payload` is only the start of it.")


class CheckPublic(BaseModel):
    """One dependency's readiness."""

    ready: bool
    detail: str


class ReadinessPublic(BaseModel):
    """Whether the worker can do its job, and if not, which dependency is missing."""

    ready: bool
    database: CheckPublic
    broker: CheckPublic
