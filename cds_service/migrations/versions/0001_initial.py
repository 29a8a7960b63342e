"""Initial schema: calls, verdicts, feedback, snoozes, seen tokens.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "calls",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("service_id", sa.String(100), nullable=False),
        sa.Column("hook", sa.String(40), nullable=False),
        sa.Column("hook_instance", sa.String(100), nullable=False),
        sa.Column("patient_hash", sa.String(64)),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("silent", sa.Boolean, nullable=False),
        sa.Column("data_origin", sa.String(400), nullable=False),
    )
    op.create_index("ix_calls_received_at", "calls", ["received_at"])
    op.create_index("ix_calls_hook_instance", "calls", ["hook_instance"])
    op.create_index("ix_calls_patient_hash", "calls", ["patient_hash"])
    op.create_table(
        "verdicts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "call_id", sa.Integer, sa.ForeignKey("calls.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("order_ref", sa.String(200), nullable=False),
        sa.Column("study", sa.String(60)),
        sa.Column("verdict", sa.String(40), nullable=False),
        sa.Column("rule", sa.String(120), nullable=False),
        sa.Column("indicator", sa.String(20)),
        sa.Column("card_uuid", sa.String(64), unique=True),
        sa.Column("consult_id", sa.String(100)),
        sa.Column("suggestions", sa.Text, nullable=False),
    )
    op.create_index("ix_verdicts_call_id", "verdicts", ["call_id"])
    op.create_index("ix_verdicts_study", "verdicts", ["study"])
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("dedup_key", sa.String(200), nullable=False, unique=True),
        sa.Column("service_id", sa.String(100), nullable=False),
        sa.Column("card_uuid", sa.String(64)),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("outcome_timestamp", sa.DateTime(timezone=True)),
        sa.Column("accepted_suggestions", sa.Text, nullable=False),
        sa.Column("override_code", sa.String(100)),
        sa.Column("override_system", sa.String(300)),
        sa.Column("override_display", sa.String(300)),
        sa.Column("user_comment", sa.Text),
        sa.Column("missing", sa.String(300), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_feedback_card_uuid", "feedback", ["card_uuid"])
    op.create_index("ix_feedback_received_at", "feedback", ["received_at"])
    op.create_table(
        "snoozes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("patient_hash", sa.String(64), nullable=False),
        sa.Column("study", sa.String(60), nullable=False),
        sa.Column("until", sa.Date, nullable=False),
        sa.Column("card_uuid", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_snoozes_patient_study", "snoozes", ["patient_hash", "study"])
    op.create_table(
        "seen_tokens",
        sa.Column("jti_key", sa.String(128), primary_key=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_seen_tokens_expires_at", "seen_tokens", ["expires_at"])


def downgrade() -> None:
    for table in ("seen_tokens", "snoozes", "feedback", "verdicts", "calls"):
        op.drop_table(table)
