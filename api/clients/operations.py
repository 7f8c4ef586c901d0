"""Client records: visibility by role, creation, changes, and masking for the model."""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Select, bindparam, func, select, text
from sqlalchemy.orm import Session

from api.audit import audit
from api.domain import DomainError
from api.pagination import PageQuery, ReadAudit, fetch_page, page_query
from llm.pseudonymize import Identity, Pseudonymizer
from models import Client, Membership, TherapySession
from models.identity import name_tokens, text_keys
from tenancy.actor import Actor


def _clients_of(sees_all: bool, therapist_id: Any) -> Select[Client]:
    """All clients, or those assigned to ``therapist_id`` (a value or a bind parameter)
    whose record is not restricted (GDPR Art. 18: a restricted record is the admins')."""
    query = select(Client)
    if not sees_all:
        query = query.where(Client.assigned_therapist_id == therapist_id,
                            Client.restricted_at.is_(None))
    return query


def visible_client_ids(actor: Actor) -> Select[tuple[uuid.UUID]]:
    """The ids of the clients ``p`` may see: the one visibility rule that sessions, notes,
    conversations and the AI routes reuse."""
    return visible_clients(actor).with_only_columns(Client.id)


def visible_clients(actor: Actor) -> Select[Client]:
    """Select the clients ``p`` may see: all for admins, assigned ones for therapists."""
    return _clients_of(actor.is_admin, actor.user_id)


def get_client(db: Session, actor: Actor, client_id: uuid.UUID, *,
               write: bool = False) -> Client:
    """Return a client the caller may see, or stop with 404 (never 403: no existence leak).

    ``write``: the caller is about to change the client or something of it, or use it for
    AI; a restricted client stops that with 409 (``ensure_writable``)."""
    client = db.scalars(visible_clients(actor).where(Client.id == client_id)).one_or_none()
    if client is None:
        raise DomainError("not_found", "No such client.")
    check_restriction(db, actor, client.id, client.restricted_at, write=write)
    return client


def check_restriction(db: Session, actor: Actor, client_id: uuid.UUID,
                      restricted_at: dt.datetime | None, *, write: bool) -> None:
    """The restriction rule (GDPR Art. 18) for a client a caller reached, directly or
    through one of its records: only admins reach a restricted client (the visibility
    rule hides it from therapists); a write stops with 409, a read is audited as an
    access to a restricted record (``client.restricted_access``)."""
    if restricted_at is None:
        return
    if write:
        raise _restricted()
    audit(db, actor, "client.restricted_access", "client", [client_id])


def ensure_writable(client: Client) -> None:
    """Stop with 409 ``client_restricted`` when the client's record is restricted: it may
    be read (by admins), never changed or used for AI, until the restriction is lifted.
    Every write to a client or anything of it, and every AI route, calls this."""
    if client.restricted_at is not None:
        raise _restricted()


def _restricted() -> DomainError:
    return DomainError("client_restricted",
                       "The client's record is restricted; lift the restriction first.")


@functools.cache
def _client_pages(sees_all: bool, by_status: bool, include_restricted: bool) -> PageQuery:
    query = _clients_of(sees_all, bindparam("therapist_id"))
    if by_status:
        query = query.where(Client.status == bindparam("status"))
    if not include_restricted:
        query = query.where(Client.restricted_at.is_(None))
    return page_query(query, order_by=(Client.last_name, Client.id))


def list_clients(db: Session, actor: Actor, *, status: str | None, include_restricted: bool,
                 offset: int, limit: int, audit: ReadAudit) -> tuple[list[Client], int]:
    """A page of the clients ``p`` may see (as ``visible_clients``), by last name;
    restricted ones only for admins who ask (``include_restricted``)."""
    if include_restricted and not actor.is_admin:
        raise DomainError("role_forbidden", "Only admins may list restricted clients.")
    return fetch_page(db, _client_pages(actor.is_admin, status is not None,
                                        include_restricted and actor.is_admin),
                      params={"therapist_id": actor.user_id, "status": status},
                      offset=offset, limit=limit, audit=audit)


def _check_assignee(db: Session, actor: Actor, assignee: str | None) -> None:
    if not actor.is_admin and assignee != actor.user_id:
        raise DomainError("role_forbidden",
                          "Therapists may only assign clients to themselves.")
    if assignee is None:
        return
    member = db.get(Membership, (actor.tenant_id, assignee))
    if member is None:
        raise DomainError(
            "validation_failed", "assigned_therapist_id is not a member of the practice.",
            errors={"json": {"assigned_therapist_id": ["Not a member of the practice."]}})


# What an admin may still change on a restricted client: when the treatment ended (so
# that its retention can run out) and the status that goes with it.
RESTRICTED_WRITABLE = frozenset({"treatment_ended_on", "status"})


def _check_treatment_end(actor: Actor, data: dict[str, Any], client: Client | None) -> None:
    """``treatment_ended_on`` is set by admins (it starts the retention period); a
    discharged client needs one."""
    current = client.treatment_ended_on if client is not None else None
    if not actor.is_admin and data.get("treatment_ended_on", current) != current:
        raise DomainError("role_forbidden", "Only admins set treatment_ended_on.")
    ended = data.get("treatment_ended_on", current)
    status = data.get("status", client.status if client is not None else "active")
    if status == "discharged" and ended is None:
        raise DomainError(
            "validation_failed", "A discharged client needs treatment_ended_on.",
            errors={"json": {"treatment_ended_on": [
                "Required when status is discharged (the retention period starts then)."]}})
    born = data.get("date_of_birth", client.date_of_birth if client is not None else None)
    if ended is not None and born is not None and ended < born:
        raise DomainError("validation_failed", "treatment_ended_on is before date_of_birth.",
                          errors={"json": {"treatment_ended_on": ["Before date_of_birth."]}})


# A session's calendar day where the practice is (started_at is stored in UTC).
LOCAL_DAY = "Europe/Berlin"


def last_session_day(db: Session, client_id: uuid.UUID) -> dt.date | None:
    """The day of the client's latest session: a treatment cannot end before it."""
    day: dt.date | None = db.scalar(
        select(func.max(func.date(func.timezone(LOCAL_DAY, TherapySession.started_at))))
        .where(TherapySession.client_id == client_id))
    return day


def _check_end_after_sessions(db: Session, client: Client, data: dict[str, Any]) -> None:
    ended = data.get("treatment_ended_on")
    if ended is None:
        return
    # Lock the client's row first (not a refresh: the If-Match version stays the one
    # read): a session written at the same time holds it shared (``create_session``), so
    # one of the two sees the other.
    db.execute(select(Client.id).where(Client.id == client.id).with_for_update())
    last = last_session_day(db, client.id)
    if last is not None and ended < last:
        raise DomainError(
            "validation_failed", "treatment_ended_on is before the client's last session.",
            errors={"json": {"treatment_ended_on": [
                f"Before the last session ({last.isoformat()}); the retention period "
                "runs from the end of the treatment."]}})


def create_client(db: Session, actor: Actor, data: dict[str, Any]) -> Client:
    if not actor.is_admin and data.get("assigned_therapist_id") is None:
        data["assigned_therapist_id"] = actor.user_id
    _check_treatment_end(actor, data, None)
    _check_assignee(db, actor, data.get("assigned_therapist_id"))
    client = Client(**data)
    db.add(client)
    db.flush()
    db.refresh(client)
    return client


def update_client(db: Session, actor: Actor, client: Client, data: dict[str, Any]) -> Client:
    if client.restricted_at is not None:
        if not set(data) <= RESTRICTED_WRITABLE:
            ensure_writable(client)
        ended = data.get("treatment_ended_on", client.treatment_ended_on)
        if client.treatment_ended_on is not None and (
                ended is None or ended < client.treatment_ended_on):
            # An earlier end would shorten the retention of a record kept for it.
            raise DomainError("client_restricted", "A restricted client's treatment end "
                              "can only be recorded or moved later.")
    _check_treatment_end(actor, data, client)
    _check_end_after_sessions(db, client, data)
    if "assigned_therapist_id" in data:
        _check_assignee(db, actor, data["assigned_therapist_id"])
    for key, value in data.items():
        setattr(client, key, value)
    db.flush()
    db.refresh(client)
    return client


def identity_of(client: Client) -> Identity:
    contact = client.contact or {}
    return Identity(first_name=client.first_name, last_name=client.last_name,
                    date_of_birth=client.date_of_birth, email=contact.get("email"),
                    phone=contact.get("phone"), address=contact.get("address"),
                    keys=frozenset([client.id]))


# The other clients whose keys occur in the texts, with the keys that matched: an index
# range per key of ``client_identity_keys`` (models/client.py says why a table).
_CANDIDATES = text("""
SELECT c.id, c.first_name, c.last_name, c.date_of_birth, c.contact->>'email',
       c.contact->>'phone', c.contact->>'address', array_agg(k.key)
FROM client_identity_keys k JOIN clients c ON c.id = k.client_id
WHERE k.key = ANY(CAST(:keys AS text[])) AND k.client_id <> :case_id
GROUP BY c.id
""")


def _matched_parts(rows: Iterable[Any]) -> list[Identity]:
    """The identifiers of the candidates that a key of the text points at, one Identity
    per distinct set of values with the ids of every client that has it: only those
    values are matched exactly (a thousand clients called Anna add one pattern)."""
    groups: dict[tuple[Any, ...], set[uuid.UUID]] = {}
    for client_id, first, last, born, email, phone, address, matched in rows:
        keys = set(matched)
        kinds = {key[:2] for key in keys}
        parts = (first if any(f"n:{t}" in keys for t in name_tokens(first)) else None,
                 last if any(f"n:{t}" in keys for t in name_tokens(last)) else None,
                 born if "d:" in kinds else None, email if "e:" in kinds else None,
                 phone if "p:" in kinds else None, address if "a:" in kinds else None)
        groups.setdefault(parts, set()).add(client_id)
    return [Identity(first_name=first, last_name=last, date_of_birth=born, email=email,
                     phone=phone, address=address, keys=frozenset(ids))
            for (first, last, born, email, phone, address), ids in groups.items()]


def pseudonymizer_for(db: Session, client: Client, texts: Iterable[str]) -> Pseudonymizer:
    """Mask the case's client (``[PERSON_1_...]``) and every other client of the practice
    whose identifiers ``texts`` may mention.

    The other clients are found by an indexed lookup of the keys in the texts (their
    words, dates, e-mail addresses, phone numbers and word pairs; ``models/identity.py``),
    so the cost follows the text, not the size of the practice. They are read only to be
    masked, never shown: their placeholders restore to what the caller typed.
    """
    keys: set[str] = set()
    for text_ in texts:
        keys.update(text_keys(text_))
    rows = db.execute(_CANDIDATES, {"keys": sorted(keys), "case_id": client.id}) if keys else ()
    return Pseudonymizer.for_people([identity_of(client)],
                                    candidates=_matched_parts(rows))


def restrict_client(db: Session, actor: Actor, client: Client, reason: str) -> Client:
    """Restrict processing (GDPR Art. 18, and Art. 17(3)(b) with § 35(3) BDSG where the
    record must still be kept): hidden from therapists, read-only for admins, no AI."""
    db.refresh(client, with_for_update=True)  # one restriction at a time: the rest 409
    if client.restricted_at is not None:
        raise DomainError("client_restricted", "The client's record is already restricted.")
    client.restricted_at = dt.datetime.now(dt.UTC)
    client.restricted_by = actor.user_id
    client.restriction_reason = reason
    db.flush()
    db.refresh(client)
    return client


def lift_restriction(db: Session, client: Client) -> Client:
    db.refresh(client, with_for_update=True)
    if client.restricted_at is None:
        raise DomainError("not_found", "The client's record is not restricted.")
    client.restricted_at = None
    client.restricted_by = None
    client.restriction_reason = None
    db.flush()
    db.refresh(client)
    return client
