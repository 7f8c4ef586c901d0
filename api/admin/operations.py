"""Practice administration: invitations, members, the audit trail."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from sqlalchemy import Select, any_, select
from sqlalchemy.orm import Session

from api.auth import Principal
from api.errors import abort
from api.onboarding.views import hash_code
from models import AuditEvent, Invitation, Membership


def create_invitation(db: Session, p: Principal, *, email: str, role: str,
                      ttl: dt.timedelta) -> tuple[Invitation, str]:
    """Issue a single-use invitation; return it with its code (stored only as a hash)."""
    code = secrets.token_urlsafe(24)
    invitation = Invitation(
        tenant_id=p.tenant_id, code_hash=hash_code(code), email=email, role=role,
        created_by=p.user_id, expires_at=dt.datetime.now(dt.UTC) + ttl,
    )
    db.add(invitation)
    db.flush()
    db.refresh(invitation)
    return invitation, code


def get_member(db: Session, p: Principal, user_id: str) -> Membership:
    member = db.get(Membership, (p.tenant_id, user_id))
    if member is None:
        abort(404, "not_found", "No such member.")
    return member


def _ensure_other_admin(db: Session, member: Membership) -> None:
    if member.role != "admin":
        return
    # Lock the practice's admin rows so two concurrent demotions can't both pass.
    admins = db.scalars(
        select(Membership.user_id).where(Membership.role == "admin").with_for_update()
    ).all()
    if len(admins) <= 1:
        abort(409, "last_admin", "A practice needs at least one admin.")


def change_role(db: Session, member: Membership, role: str) -> Membership:
    if member.role == "admin" and role != "admin":
        _ensure_other_admin(db, member)
    member.role = role
    db.flush()
    db.refresh(member)
    return member


def remove_member(db: Session, member: Membership) -> None:
    """Revoke a membership; the member's live tokens stop working with the next request."""
    _ensure_other_admin(db, member)
    db.delete(member)
    db.flush()


def members_query() -> Select[Membership]:
    return select(Membership).order_by(Membership.created_at, Membership.user_id)


def audit_query(args: dict[str, Any]) -> Select[AuditEvent]:
    query = select(AuditEvent).order_by(AuditEvent.id.desc())
    if "resource_id" in args:
        query = query.where(any_(AuditEvent.resource_ids) == args["resource_id"])
    if "actor_id" in args:
        query = query.where(AuditEvent.actor_id == args["actor_id"])
    if "action" in args:
        query = query.where(AuditEvent.action == args["action"])
    return query
