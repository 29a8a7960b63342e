"""The service's tables (SQLAlchemy models) and the plain values written into them.

The table and column names are the migrations' (``cds_service/migrations``): renaming a class
here never renames a table.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Boolean, Date, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Call(Base):
    """One hook call (never its body, token or the patient's id)."""

    __tablename__ = "calls"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    service_id: Mapped[str] = mapped_column(String(100))
    hook: Mapped[str] = mapped_column(String(40))
    hook_instance: Mapped[str] = mapped_column(String(100), index=True)
    patient_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    latency_ms: Mapped[float] = mapped_column(Float)
    silent: Mapped[bool] = mapped_column(Boolean, default=False)
    data_origin: Mapped[str] = mapped_column(String(400), default="")


class AuditedVerdict(Base):
    """One judged order of a call: the study, what the service decided and why."""

    __tablename__ = "verdicts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    order_ref: Mapped[str] = mapped_column(String(200))
    study: Mapped[str | None] = mapped_column(String(60), index=True)
    verdict: Mapped[str] = mapped_column(String(40))  # warn, info-..., silent, snoozed
    rule: Mapped[str] = mapped_column(String(120))
    indicator: Mapped[str | None] = mapped_column(String(20))  # of the card sent, if any
    card_uuid: Mapped[str | None] = mapped_column(String(64), unique=True)
    consult_id: Mapped[str | None] = mapped_column(String(100))
    suggestions: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of uuids
    # What decided a verdict that is not a warning: the record's type and the code or our
    # phrase that named the concept ("Condition words 'METASTA'"); never the chart's words.
    evidence: Mapped[str | None] = mapped_column(String(200))


class Feedback(Base):
    """One CDS Hooks feedback item, stored once per (card, outcome)."""

    __tablename__ = "feedback"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dedup_key: Mapped[str] = mapped_column(String(200), unique=True)
    service_id: Mapped[str] = mapped_column(String(100))
    card_uuid: Mapped[str | None] = mapped_column(String(64), index=True)
    outcome: Mapped[str] = mapped_column(String(20))
    outcome_timestamp: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    accepted_suggestions: Mapped[str] = mapped_column(Text, default="[]")
    override_code: Mapped[str | None] = mapped_column(String(100))
    override_system: Mapped[str | None] = mapped_column(String(300))
    override_display: Mapped[str | None] = mapped_column(String(300))
    user_comment: Mapped[str | None] = mapped_column(Text)
    missing: Mapped[str] = mapped_column(String(300), default="")  # fields the client left out
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class Snooze(Base):
    """No repeat warning for this patient (hash) and study until ``until``."""

    __tablename__ = "snoozes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_hash: Mapped[str] = mapped_column(String(64))
    study: Mapped[str] = mapped_column(String(60))
    until: Mapped[date] = mapped_column(Date)
    card_uuid: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    __table_args__ = (Index("ix_snoozes_patient_study", "patient_hash", "study"),)


class SeenToken(Base):
    """JWT ids already accepted (replay protection shared by every worker)."""

    __tablename__ = "seen_tokens"
    jti_key: Mapped[str] = mapped_column(String(128), primary_key=True)  # hash of iss + jti
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


def column_length(column: Any) -> int:
    """The declared length of a String column (what PostgreSQL enforces and SQLite does not)."""
    length: int = column.property.columns[0].type.length
    return length


@dataclass(frozen=True)
class VerdictRow:
    order_ref: str
    study: str | None
    verdict: str
    rule: str
    indicator: str | None = None
    card_uuid: str | None = None
    consult_id: str | None = None
    suggestions: Sequence[str] = ()
    evidence: str | None = None


@dataclass(frozen=True)
class FeedbackItem:
    card_uuid: str | None
    outcome: str
    outcome_timestamp: datetime | None
    accepted_suggestions: Sequence[str]
    override_code: str | None
    override_system: str | None
    override_display: str | None
    user_comment: str | None
    missing: Sequence[str]

    def dedup_key(self) -> str:
        if self.card_uuid:
            return f"{self.card_uuid}|{self.outcome}"
        # No card uuid (the sandbox dismissing a card without one): the item itself is the key.
        raw = json.dumps(
            [
                self.outcome,
                self.outcome_timestamp.isoformat() if self.outcome_timestamp else None,
                self.override_code,
                self.user_comment,
            ]
        )
        return "nocard|" + hashlib.sha256(raw.encode()).hexdigest()
