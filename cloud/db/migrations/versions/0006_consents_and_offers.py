"""Consents and offers: each household's consent to a recipient for a purpose, with its data and
its text; the offers made under them, and the categories households asked not to be offered;
retailers' campaigns and each household's arm in them; erasures; each
catalog item's category and each household's time zone (for quiet hours).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "consents",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("household_id", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("recipient", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("purpose", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("data_categories", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("text_version", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["household_id"], ["households.id"]),
        sa.ForeignKeyConstraint(["recipient"], ["retailers.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_consents_household_id", "consents", ["household_id"])
    op.create_index("ix_consents_recipient", "consents", ["recipient"])
    op.create_table(
        "offers",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("household_id", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("retailer_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("consent_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("gtin", sqlmodel.sql.sqltypes.AutoString(length=14), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("category", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("data_categories", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("planned_order_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True),
        sa.Column("campaign_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True),
        sa.Column("arm", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
        sa.ForeignKeyConstraint(["consent_id"], ["consents.id"]),
        sa.ForeignKeyConstraint(["household_id"], ["households.id"]),
        sa.ForeignKeyConstraint(["planned_order_id"], ["planned_orders.id"]),
        sa.ForeignKeyConstraint(["retailer_id"], ["retailers.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_offers_created_at", "offers", ["created_at"])
    op.create_index("ix_offers_household_id", "offers", ["household_id"])
    op.create_index("ix_offers_retailer_id", "offers", ["retailer_id"])
    op.create_table(
        "offer_suppressions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("household_id", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("category", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["household_id"], ["households.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("household_id", "category"),
    )
    op.create_index("ix_offer_suppressions_household_id", "offer_suppressions", ["household_id"])
    op.create_table(
        "campaigns",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("retailer_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("gtin", sqlmodel.sql.sqltypes.AutoString(length=14), nullable=False),
        sa.Column("budget", sa.Integer(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("holdout_share", sa.Float(), nullable=False),
        sa.Column("min_sample", sa.Integer(), nullable=False),
        sa.Column("variants", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["retailer_id"], ["retailers.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_campaigns_retailer_id", "campaigns", ["retailer_id"])
    op.create_table(
        "campaign_assignments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("household_id", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("arm", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"]),
        sa.ForeignKeyConstraint(["household_id"], ["households.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("campaign_id", "household_id"),
    )
    op.create_index("ix_campaign_assignments_campaign_id", "campaign_assignments", ["campaign_id"])
    op.create_index("ix_campaign_assignments_household_id", "campaign_assignments", ["household_id"])
    op.create_table(
        "erasures",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("household_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("wipes", sa.Text(), nullable=False),
        sa.Column("confirmed", sa.Text(), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_erasures_household_hash", "erasures", ["household_hash"])
    op.add_column(
        "catalog_items", sa.Column("category", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True)
    )
    op.add_column(
        "households",
        sa.Column(
            "timezone", sqlmodel.sql.sqltypes.AutoString(length=64), server_default="UTC", nullable=False
        ),
    )


def downgrade() -> None:
    with op.batch_alter_table("households") as batch:
        batch.drop_column("timezone")
    with op.batch_alter_table("catalog_items") as batch:
        batch.drop_column("category")
    op.drop_table("erasures")
    op.drop_table("campaign_assignments")
    op.drop_table("campaigns")
    op.drop_table("offer_suppressions")
    op.drop_table("offers")
    op.drop_table("consents")
