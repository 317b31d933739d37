"""Offers by campaign: an index, for each campaign's budget check in every offer run and for the
retailer page's live marks.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_offers_campaign_id", "offers", ["campaign_id"])


def downgrade() -> None:
    op.drop_index("ix_offers_campaign_id", table_name="offers")
