"""Practice administration: invitations, members, the audit trail, the settings."""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, any_, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from api.domain import DomainError
from api.practice_rules import practice_rules
from models import AuditEvent, Invitation, Membership, PracticeSettings, SecurityEvent
from models.membership import ADMIN
from tenancy.actor import Actor
from tenancy.provisioning import hash_invitation_code


def create_invitation(db: Session, actor: Actor, *, email: str, role: str,
                      ttl: dt.timedelta) -> tuple[Invitation, str]:
    """Issue a single-use invitation; return it with its code (stored only as a hash)."""
    code = secrets.token_urlsafe(24)
    invitation = Invitation(
        tenant_id=actor.tenant_id, code_hash=hash_invitation_code(code), email=email, role=role,
        created_by=actor.user_id, expires_at=dt.datetime.now(dt.UTC) + ttl,
    )
    db.add(invitation)
    db.flush()
    db.refresh(invitation)
    return invitation, code


def pending_invitations_query() -> Select[Invitation]:
    """The practice's open invitations (row-level security scopes them), newest first."""
    return (select(Invitation)
            .where(Invitation.accepted_at.is_(None), Invitation.expires_at > func.now())
            .order_by(Invitation.created_at.desc(), Invitation.id))


def revoke_invitation(db: Session, invitation_id: uuid.UUID) -> None:
    """Delete an open invitation of the practice; its code stops working at once."""
    invitation = db.scalars(pending_invitations_query()
                            .where(Invitation.id == invitation_id)).one_or_none()
    if invitation is None:
        raise DomainError("not_found", "No such open invitation.")
    db.delete(invitation)
    db.flush()


def get_member(db: Session, actor: Actor, user_id: str) -> Membership:
    member = db.get(Membership, (actor.tenant_id, user_id))
    if member is None:
        raise DomainError("not_found", "No such member.")
    return member


def _ensure_other_admin(db: Session, member: Membership) -> None:
    if member.role != ADMIN:
        return
    # Lock the practice's admin rows so two concurrent demotions can't both pass.
    admins = db.scalars(
        select(Membership.user_id).where(Membership.role == ADMIN).with_for_update()
    ).all()
    if len(admins) <= 1:
        raise DomainError("last_admin", "A practice needs at least one admin.")


def change_role(db: Session, member: Membership, role: str) -> Membership:
    if member.role == ADMIN and role != ADMIN:
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


def security_query(args: dict[str, Any]) -> Select[SecurityEvent]:
    query = select(SecurityEvent).order_by(SecurityEvent.id.desc())
    if "resource_id" in args:
        query = query.where(any_(SecurityEvent.resource_ids) == args["resource_id"])
    if "actor_id" in args:
        query = query.where(SecurityEvent.actor_id == args["actor_id"])
    return query


def usage_report(db: Session, period: str) -> dict[str, Any]:
    """Sum the tenant's LLM usage ledger for one month (UTC), with breakdowns.

    The month's calls are those its invoice bills (``billing_period``, migration 0010):
    the calls that started in it, plus late settlements of an already closed month, which
    keep their own (earlier) day in ``by_day``.

    ``cost`` sums the rows rated in EUR (versioned prices); rows rated before prices were
    versioned (``legacy-usd``) are summed apart in ``legacy_cost_usd``, never added to
    EUR. ``estimated_tokens`` is the part of ``total_tokens`` counted locally because the
    provider reported no usage.
    """
    rows = db.execute(text("""
SELECT feature, deployment, to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day,
       sum(prompt_tokens) AS prompt, sum(completion_tokens) AS completion,
       coalesce(sum(prompt_tokens + completion_tokens)
                FILTER (WHERE usage_source = 'estimated'), 0) AS estimated,
       coalesce(sum(cost) FILTER (WHERE currency = 'EUR'), 0) AS cost,
       coalesce(sum(cost) FILTER (WHERE currency = 'USD'), 0) AS legacy_usd,
       count(*) AS calls
FROM public.llm_usage WHERE billing_period = :period
GROUP BY 1, 2, 3 ORDER BY 3, 1, 2
"""), {"period": period}).all()

    def empty() -> dict[str, Any]:
        return {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0,
                "estimated_tokens": 0, "cost": Decimal(0), "calls": 0}

    def add(into: dict[str, Any], row: Any) -> None:
        into["prompt_tokens"] += int(row.prompt)
        into["completion_tokens"] += int(row.completion)
        into["total_tokens"] += int(row.prompt) + int(row.completion)
        into["estimated_tokens"] += int(row.estimated)
        into["cost"] += row.cost
        into["calls"] += int(row.calls)

    report: dict[str, Any] = {"period": period, **empty(), "currency": "EUR",
                              "legacy_cost_usd": Decimal(0), "by_feature": {},
                              "by_model": {}, "by_day": {}}
    for row in rows:
        add(report, row)
        report["legacy_cost_usd"] += row.legacy_usd
        for key, name in (("by_feature", row.feature), ("by_model", row.deployment),
                          ("by_day", row.day)):
            add(report[key].setdefault(name, empty()), row)
    return report


# One row per artifact (session or conversation), feature and currency of the month, most
# expensive first. Provider-reported and locally estimated tokens are summed apart.
_ARTIFACT_USAGE = """
SELECT artifact_kind AS kind, artifact_id AS id, feature, currency,
       count(*) AS requests,
       coalesce(sum(prompt_tokens) FILTER (WHERE usage_source = 'provider'), 0)
           AS prompt_tokens,
       coalesce(sum(completion_tokens) FILTER (WHERE usage_source = 'provider'), 0)
           AS completion_tokens,
       coalesce(sum(cached_tokens) FILTER (WHERE usage_source = 'provider'), 0)
           AS cached_tokens,
       coalesce(sum(prompt_tokens + completion_tokens)
                FILTER (WHERE usage_source = 'estimated'), 0) AS estimated_tokens,
       sum(cost) AS cost,
       count(*) OVER () AS total
FROM public.llm_usage
WHERE tenant_id = :tenant AND billing_period = :period AND artifact_id IS NOT NULL
GROUP BY artifact_kind, artifact_id, feature, currency
ORDER BY sum(cost) DESC, artifact_kind, artifact_id, feature, currency
LIMIT :limit OFFSET :offset
"""
_ARTIFACT_COUNT = """
SELECT count(*) FROM (SELECT 1 FROM public.llm_usage
    WHERE tenant_id = :tenant AND billing_period = :period AND artifact_id IS NOT NULL
    GROUP BY artifact_kind, artifact_id, feature, currency) AS groups
"""


def artifact_usage(db: Session, tenant_id: uuid.UUID, period: str, *, offset: int,
                   limit: int) -> tuple[list[dict[str, Any]], int]:
    """One page of the month's usage per artifact (the therapy session a note was drafted
    for, the case chat conversation), most expensive first, and the number of rows."""
    params: dict[str, Any] = {"tenant": tenant_id, "period": period}
    rows = db.execute(text(_ARTIFACT_USAGE),
                      {**params, "limit": limit, "offset": offset}).mappings().all()
    if rows:
        total = int(rows[0]["total"])
    else:
        total = 0 if offset == 0 else int(db.scalar(text(_ARTIFACT_COUNT), params) or 0)
    return [{key: value for key, value in row.items() if key != "total"} for row in rows], total


def settings(db: Session, minimum_retention_years: int) -> dict[str, Any]:
    """The practice's settings in force (its row, or the defaults where it has none)."""
    rules = practice_rules(db, minimum_retention_years)
    return {"ai_consent_required": rules.ai_consent_required,
            "record_retention_years": rules.record_retention_years,
            "minimum_record_retention_years": minimum_retention_years}


def update_settings(db: Session, data: dict[str, Any]) -> None:
    """Change the fields in ``data`` of the practice's one settings row, creating it with
    the defaults for the others if it does not exist yet (one upsert)."""
    statement = insert(PracticeSettings).values(**data)
    db.execute(statement.on_conflict_do_update(
        index_elements=[PracticeSettings.id],
        set_={**{key: statement.excluded[key] for key in data}, "updated_at": func.now()}))
