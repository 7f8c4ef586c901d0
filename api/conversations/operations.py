"""Case-chat conversations: which ones a caller may see."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.clients.operations import check_restriction, visible_client_ids
from api.domain import DomainError
from models import Client, Conversation
from tenancy.actor import Actor


def get_conversation(db: Session, actor: Actor, conversation_id: uuid.UUID, *,
                     write: bool = False) -> tuple[Conversation, Client]:
    """A conversation about a client ``p`` may see, with that client; else not found.
    ``write`` as in ``get_client``."""
    row = db.execute(
        select(Conversation, Client).join(Client, Client.id == Conversation.client_id)
        .where(Conversation.id == conversation_id)
        .where(Client.id.in_(visible_client_ids(actor)))
    ).one_or_none()
    if row is None:
        raise DomainError("not_found", "No such conversation.")
    check_restriction(db, actor, row[1].id, row[1].restricted_at, write=write)
    return row[0], row[1]
