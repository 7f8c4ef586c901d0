from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from models.base import TenantBase, created_ts, str_255, tenant_fk, uuid_pk


class NoteAmendment(TenantBase):
    """A correction of a signed note (§ 630f(1) BGB): the note's text as corrected, why,
    by whom and when. The note itself keeps its original content; amendments are
    append-only for the app role (public migration 0007)."""

    __tablename__ = "note_amendments"

    id: Mapped[uuid_pk]
    tenant_id: Mapped[tenant_fk]
    note_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("notes.id", ondelete="CASCADE"), index=True)
    content: Mapped[dict[str, Any]]
    reason: Mapped[str]
    author_id: Mapped[str_255]
    created_at: Mapped[created_ts]
