"""Therapy sessions: visible through the client they belong to."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from api.auth import Principal
from api.errors import abort
from api.pagination import ReadAudit, fetch_page
from models import Client, TherapySession


def visible_sessions(p: Principal) -> Select[TherapySession]:
    query = select(TherapySession)
    if p.role != "admin":
        query = query.join(Client, Client.id == TherapySession.client_id).where(
            Client.assigned_therapist_id == p.user_id
        )
    return query


def get_session(db: Session, p: Principal, session_id: uuid.UUID) -> TherapySession:
    found = db.scalars(visible_sessions(p).where(TherapySession.id == session_id)).one_or_none()
    if found is None:
        abort(404, "not_found", "No such session.")
    return found


def list_sessions(db: Session, client: Client, *, offset: int, limit: int,
                  audit: ReadAudit) -> tuple[list[TherapySession], int]:
    query = select(TherapySession).where(TherapySession.client_id == client.id)
    return fetch_page(db, query, order_by=(TherapySession.started_at.desc(), TherapySession.id),
                      offset=offset, limit=limit, audit=audit)


def create_session(db: Session, client: Client, data: dict[str, Any]) -> TherapySession:
    record = TherapySession(client_id=client.id, **data)
    db.add(record)
    db.flush()
    db.refresh(record)
    return record


def update_session(db: Session, record: TherapySession, data: dict[str, Any]) -> TherapySession:
    for key, value in data.items():
        setattr(record, key, value)
    db.flush()
    db.refresh(record)
    return record
