"""Prices set through the API, per deployment.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "prices",
        sa.Column("deployment", sa.String(200), primary_key=True),
        sa.Column("input", sa.Float, nullable=False),
        sa.Column("cached_input", sa.Float, nullable=False),
        sa.Column("output", sa.Float, nullable=False),
        sa.Column("request", sa.Float, nullable=False),
        sa.Column("embedding", sa.Float, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("prices")
