"""Therapy sessions: visible through the client they belong to."""

from __future__ import annotations

import functools
import uuid
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, bindparam, select
from sqlalchemy.orm import Session

from api.clients.operations import LOCAL_DAY, check_restriction, visible_client_ids
from api.domain import DomainError
from api.pagination import PageQuery, ReadAudit, fetch_page, page_query
from models import Client, TherapySession
from tenancy.actor import Actor


def visible_sessions(actor: Actor) -> Select[TherapySession]:
    """Sessions of the clients ``p`` may see."""
    return select(TherapySession).where(TherapySession.client_id.in_(visible_client_ids(actor)))


def get_session(db: Session, actor: Actor, session_id: uuid.UUID, *,
                write: bool = False) -> TherapySession:
    """A session of a client the caller may see, else 404; ``write`` as in ``get_client``
    (a restricted client's sessions are read-only, and their reads audited)."""
    row = db.execute(visible_sessions(actor).add_columns(Client.restricted_at)
                     .join(Client, Client.id == TherapySession.client_id)
                     .where(TherapySession.id == session_id)).one_or_none()
    if row is None:
        raise DomainError("not_found", "No such session.")
    found: TherapySession = row[0]
    check_restriction(db, actor, found.client_id, row[1], write=write)
    return found


@functools.cache
def _session_pages() -> PageQuery:
    return page_query(
        select(TherapySession).where(TherapySession.client_id == bindparam("client_id")),
        order_by=(TherapySession.started_at.desc(), TherapySession.id))


def list_sessions(db: Session, client: Client, *, offset: int, limit: int,
                  audit: ReadAudit) -> tuple[list[TherapySession], int]:
    return fetch_page(db, _session_pages(), params={"client_id": client.id},
                      offset=offset, limit=limit, audit=audit)


def _check_within_treatment(db: Session, client: Client, data: dict[str, Any]) -> None:
    """A session cannot start after the client's treatment ended (the retention period
    runs from that end): record the later end first. The end is read under a share lock
    of the client's row, so a change of the end at the same time waits for this write
    (``api.clients.operations._check_end_after_sessions``)."""
    started = data.get("started_at")
    if started is None:
        return
    ended = db.scalar(select(Client.treatment_ended_on).where(Client.id == client.id)
                      .with_for_update(read=True))
    if ended is None:
        return
    if started.astimezone(ZoneInfo(LOCAL_DAY)).date() > ended:
        raise DomainError(
            "validation_failed", "started_at is after the client's treatment ended.",
            errors={"json": {"started_at": [
                f"After treatment_ended_on ({ended.isoformat()}); an admin must move the "
                "treatment's end first."]}})


def create_session(db: Session, client: Client, data: dict[str, Any]) -> TherapySession:
    _check_within_treatment(db, client, data)
    record = TherapySession(client_id=client.id, **data)
    db.add(record)
    db.flush()
    db.refresh(record)
    return record


def update_session(db: Session, record: TherapySession, data: dict[str, Any]) -> TherapySession:
    if "started_at" in data:
        client = db.get(Client, record.client_id)
        assert client is not None
        _check_within_treatment(db, client, data)
    for key, value in data.items():
        setattr(record, key, value)
    db.flush()
    db.refresh(record)
    return record
