"""A client's consent to AI assistance: record, list, withdraw, and the gate of the AI routes.

The consent history is kept (a withdrawn consent stays as the practice's proof); at most
one consent per client and purpose is current (``withdrawn_at`` null), which a partial
unique index enforces. Withdrawing deletes what the AI processing produced that is not
yet the therapist's record: the client's conversations and unsigned AI drafts.
"""

from __future__ import annotations

import functools
import uuid

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from api.clients.operations import ensure_writable
from api.domain import DomainError
from api.pagination import PageQuery, ReadAudit, fetch_page, page_query
from api.practice_rules import PracticeRules
from models import Client, ClientConsent, Conversation, Note, TherapySession
from models.consent import CONSENT_PURPOSES
from tenancy.actor import Actor

AI_ASSISTANCE = "ai_assistance"
assert AI_ASSISTANCE in CONSENT_PURPOSES


def current_consent(db: Session, client_id: uuid.UUID, purpose: str, *,
                    lock: bool = False) -> ClientConsent | None:
    """The client's current (not withdrawn) consent to ``purpose``, if any.

    ``lock`` takes a share lock on it until the transaction ends: a withdrawal running
    at the same time waits for the caller's commit (and then deletes what it saved), or
    has committed already (and then the consent is not current any more).
    """
    query = select(ClientConsent).where(ClientConsent.client_id == client_id,
                                        ClientConsent.purpose == purpose,
                                        ClientConsent.withdrawn_at.is_(None))
    if lock:
        query = query.with_for_update(read=True)
    return db.scalars(query).one_or_none()


def record_consent(db: Session, actor: Actor, client: Client, purpose: str,
                   document_reference: str | None) -> tuple[ClientConsent, bool]:
    """Record the client's consent; return it and whether it is new.

    A client who consented already keeps the current consent (returned, with False):
    one INSERT ... ON CONFLICT on the partial unique index, so two requests at the same
    time cannot make two current consents or fail on each other.
    """
    ensure_writable(client)
    for _attempt in range(3):  # a withdrawal between the two statements: insert again
        inserted = db.scalars(
            insert(ClientConsent)
            .values(client_id=client.id, purpose=purpose,
                    document_reference=document_reference, recorded_by=actor.user_id)
            .on_conflict_do_nothing(index_elements=["client_id", "purpose"],
                                    index_where=ClientConsent.withdrawn_at.is_(None))
            .returning(ClientConsent.id)).one_or_none()
        if inserted is not None:
            consent = db.get(ClientConsent, inserted)
            assert consent is not None
            return consent, True
        consent = current_consent(db, client.id, purpose)
        if consent is not None:
            return consent, False
    raise RuntimeError("the current consent kept changing while it was recorded")


@functools.cache
def _consent_pages() -> PageQuery:
    return page_query(
        select(ClientConsent).where(ClientConsent.client_id == bindparam("client_id")),
        order_by=(ClientConsent.given_at.desc(), ClientConsent.id))


def list_consents(db: Session, client: Client, *, offset: int, limit: int,
                  audit: ReadAudit) -> tuple[list[ClientConsent], int]:
    """A page of the client's consents, current and withdrawn, newest first."""
    return fetch_page(db, _consent_pages(), params={"client_id": client.id},
                      offset=offset, limit=limit, audit=audit)


def withdraw_consent(db: Session, actor: Actor, client: Client, purpose: str,
                     ) -> tuple[ClientConsent, list[uuid.UUID], list[uuid.UUID]]:
    """Withdraw the client's current consent to ``purpose`` (404 when there is none).

    For AI assistance, in the same transaction: delete every conversation of the client
    (their messages cascade) and the client's unsigned AI drafts (``source`` ai,
    ``status`` draft). Signed notes and notes written by hand stay. Refused for a
    restricted client (409 ``client_restricted``: nothing of its record may change, and
    no AI processes it anyway). Returns the consent and the ids of the deleted
    conversations and notes.
    """
    ensure_writable(client)
    consent = db.scalars(
        update(ClientConsent)
        .where(ClientConsent.client_id == client.id, ClientConsent.purpose == purpose,
               ClientConsent.withdrawn_at.is_(None))
        .values(withdrawn_at=func.now(), withdrawn_by=actor.user_id)
        .returning(ClientConsent),
        execution_options={"synchronize_session": False}).one_or_none()
    if consent is None:
        raise DomainError("not_found", "The client has no current consent to this purpose.")
    if purpose != AI_ASSISTANCE:
        return consent, [], []
    conversations = list(db.scalars(
        delete(Conversation).where(Conversation.client_id == client.id)
        .returning(Conversation.id), execution_options={"synchronize_session": False}))
    notes = list(db.scalars(
        delete(Note)
        .where(Note.session_id.in_(select(TherapySession.id)
                                   .where(TherapySession.client_id == client.id)),
               Note.source == "ai", Note.status == "draft")
        .returning(Note.id), execution_options={"synchronize_session": False}))
    return consent, conversations, notes


def require_ai_consent(db: Session, client: Client, rules: PracticeRules) -> bool:
    """The gate of every AI route, before anything is masked, committed or reserved.

    409 ``client_restricted`` for a restricted client; 409 ``consent_required`` when the
    practice requires consent (``rules.ai_consent_required``) and the client has no
    current consent to AI assistance. Returns whether consent was required, so that the
    save of the reply can check it again (``recheck_ai_consent``).
    """
    ensure_writable(client)
    if rules.ai_consent_required:
        recheck_ai_consent(db, client.id, lock=False)
    return rules.ai_consent_required


def recheck_ai_consent(db: Session, client_id: uuid.UUID, *, lock: bool = True) -> None:
    """409 ``consent_required`` unless the client has a current consent to AI assistance.

    Run with ``lock`` in the transaction that saves a reply: a consent withdrawn while
    the model wrote stops the save, and a withdrawal that starts after the check waits
    for the save's commit and then deletes what it saved.
    """
    if current_consent(db, client_id, AI_ASSISTANCE, lock=lock) is None:
        raise DomainError(
            "consent_required",
            "The client has not consented to AI assistance; record the consent first "
            "(POST /api/v1/clients/{client_id}/consents).")


def recheck_before_save(db: Session, client_id: uuid.UUID, consent_required: bool) -> None:
    """In the transaction that saves an AI reply: the client still exists (404), is not
    restricted (409 ``client_restricted``) and, where the practice requires it, still
    consents (409 ``consent_required``). The client row is share-locked, so a
    restriction or erasure that starts now waits for this save."""
    restricted = db.execute(select(Client.restricted_at).where(Client.id == client_id)
                            .with_for_update(read=True)).one_or_none()
    if restricted is None:
        raise DomainError("not_found", "The client no longer exists; nothing was saved.")
    if restricted[0] is not None:
        raise DomainError("client_restricted", "The client's record was restricted while "
                          "the model wrote; nothing was saved.")
    if consent_required:  # withdrawn while the model wrote: keep nothing
        recheck_ai_consent(db, client_id)


def is_current(consent: ClientConsent) -> bool:
    return consent.withdrawn_at is None

