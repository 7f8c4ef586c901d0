from __future__ import annotations

import uuid

from sqlalchemy import CheckConstraint, ForeignKey, Integer
from sqlalchemy.orm import Mapped, mapped_column

from models.base import TenantBase, created_ts, str_64, str_255, tenant_fk, updated_ts, uuid_pk


class Conversation(TenantBase):
    """A case discussion with the model about one client."""

    __tablename__ = "conversations"

    id: Mapped[uuid_pk]
    tenant_id: Mapped[tenant_fk]
    client_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("clients.id", ondelete="CASCADE"), index=True
    )
    created_by: Mapped[str_255]
    created_at: Mapped[created_ts]
    updated_at: Mapped[updated_ts]


class ConversationMessage(TenantBase):
    """One turn of a conversation, as the user sees it (real names, never placeholders)."""

    __tablename__ = "conversation_messages"
    __table_args__ = (CheckConstraint("role IN ('user', 'assistant')", name="role"),)

    id: Mapped[uuid_pk]
    tenant_id: Mapped[tenant_fk]
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str_64]
    content: Mapped[str]
    author_id: Mapped[str_255 | None]
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[created_ts]
