"""Create tenants and change their status (the owner's privileged path).

A new tenant schema is built from the models at head in one transaction (create
tables, stamp the Alembic version, secure) instead of replaying the migration
history statement by statement; ``tests/tenancy/test_drift.py`` proves both paths
produce the same schema.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from functools import cache

from alembic.script import ScriptDirectory
from sqlalchemy import Engine, insert, text
from sqlalchemy.exc import IntegrityError

from models import TenantBase, TenantMigration
from tenancy.context import enter_as_platform
from tenancy.errors import TenantConflict, TenantUnknown
from tenancy.migrate import tenant_script_directory
from tenancy.security import schema_name, secure_tenant_schema


def hash_invitation_code(code: str) -> str:
    """The stored form of an invitation code: only its SHA-256 is kept."""
    return hashlib.sha256(code.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class TenantRecord:
    id: uuid.UUID
    name: str
    schema_name: str
    status: str


@cache
def tenant_head() -> str:
    script: ScriptDirectory = tenant_script_directory()
    head = script.get_current_head()
    assert head is not None, "the tenant lineage has no head revision"
    return head


def create_tenant(
    owner_engine: Engine, *, name: str, admin_user_id: str, app_role: str
) -> TenantRecord:
    """Register a practice, build its schema and make ``admin_user_id`` its admin."""
    tenant_id = uuid.uuid4()
    schema = schema_name(tenant_id)
    try:
        with owner_engine.begin() as conn:
            taken = conn.scalar(
                text("SELECT 1 FROM public.memberships WHERE user_id = :u"), {"u": admin_user_id}
            )
            if taken:
                raise TenantConflict("The user already belongs to a practice.")
            conn.execute(
                text("INSERT INTO public.tenants (id, name, schema_name) VALUES (:i, :n, :s)"),
                {"i": tenant_id, "n": name, "s": schema},
            )
            conn.execute(
                text("INSERT INTO public.memberships (tenant_id, user_id, role) "
                     "VALUES (:i, :u, 'admin')"),
                {"i": tenant_id, "u": admin_user_id},
            )
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            enter_as_platform(conn, tenant_id)
            TenantBase.metadata.create_all(conn, checkfirst=False)
            conn.execute(text(
                "CREATE TABLE alembic_version (version_num varchar(32) NOT NULL, "
                "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
            ))
            conn.execute(text("INSERT INTO alembic_version VALUES (:v)"), {"v": tenant_head()})
            secure_tenant_schema(conn, schema, app_role=app_role)
            conn.execute(insert(TenantMigration).values(
                tenant_id=tenant_id, status="provisioned", revision=tenant_head(),
                duration_ms=0))
    except IntegrityError as exc:
        raise TenantConflict("The user already belongs to a practice.") from exc
    return TenantRecord(id=tenant_id, name=name, schema_name=schema, status="active")


def list_tenants(owner_engine: Engine) -> list[TenantRecord]:
    """Return every tenant, oldest first."""
    with owner_engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT id, name, schema_name, status FROM public.tenants ORDER BY created_at, id"
        ))
        return [TenantRecord(id=r.id, name=r.name, schema_name=r.schema_name, status=r.status)
                for r in rows]


def set_tenant_status(owner_engine: Engine, tenant_id: uuid.UUID, status: str) -> TenantRecord:
    """Suspend, reactivate or mark a tenant deleted. Takes effect on the next request."""
    with owner_engine.begin() as conn:
        row = conn.execute(
            text("UPDATE public.tenants SET status = :s, updated_at = now() WHERE id = :i "
                 "AND status NOT IN ('closing', 'erased') "
                 "RETURNING id, name, schema_name, status"),
            {"s": status, "i": tenant_id},
        ).one_or_none()
        if row is None and conn.scalar(text("SELECT 1 FROM public.tenants WHERE id = :i"),
                                       {"i": tenant_id}):
            raise TenantConflict("The practice is being or has been offboarded; its status "
                                 "can no longer change.")
    if row is None:
        raise TenantUnknown("no such tenant")
    return TenantRecord(id=row.id, name=row.name, schema_name=row.schema_name, status=row.status)


def set_token_budget(owner_engine: Engine, tenant_id: uuid.UUID, monthly_tokens: int) -> None:
    """Set a tenant's monthly LLM token budget (the platform's decision, not the tenant's)."""
    with owner_engine.begin() as conn:
        exists = conn.scalar(text("SELECT 1 FROM public.tenants WHERE id = :i"), {"i": tenant_id})
        if not exists:
            raise TenantUnknown("no such tenant")
        conn.execute(text("""
INSERT INTO public.llm_budgets (tenant_id, monthly_tokens, period)
VALUES (:i, :m, to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM'))
ON CONFLICT (tenant_id) DO UPDATE SET monthly_tokens = EXCLUDED.monthly_tokens,
    updated_at = now()
"""), {"i": tenant_id, "m": monthly_tokens})
