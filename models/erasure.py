from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import CheckConstraint
from sqlalchemy.orm import Mapped

from models.base import TenantBase, created_ts, str_64, str_255, tenant_fk, uuid_pk

# Why an erasure may override a running retention period (Art. 17(3) GDPR does not apply).
OVERRIDE_REASONS = ("created_in_error", "legal_order", "other_legal_basis")
ERASURE_REASONS = ("no_clinical_record", "retention_ended", *OVERRIDE_REASONS)


class ErasureTombstone(TenantBase):
    """What remains of an erased client: when, by whom, why and how many records of each
    kind, never the client's id or any personal data. Audit events that named the
    client's records name this tombstone instead. Written only by the database's
    ``erasure_trail`` trigger when a client row is deleted (public migration 0007)."""

    __tablename__ = "erasure_tombstones"
    __table_args__ = (CheckConstraint(f"reason IN {ERASURE_REASONS!r}", name="reason"),)

    id: Mapped[uuid_pk]
    tenant_id: Mapped[tenant_fk]
    erased_at: Mapped[created_ts]
    erased_by: Mapped[str_255]  # a member's user id, or "system:purge"
    reason: Mapped[str_64]
    record_counts: Mapped[dict[str, Any]]
    retain_until: Mapped[dt.date | None]
