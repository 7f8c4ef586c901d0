"""Put a database transaction into one tenant's context.

Every transaction a request opens starts with one statement that sets both walls
(``search_path`` to the tenant schema, ``app.tenant_id`` for row-level security),
transaction-locally, and in the same round trip reads the tenant's status and the
caller's current membership. The settings die with the transaction, so a pooled
connection never carries one tenant into the next request.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, event
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from tenancy.errors import NotAMember, TenantInactive, TenantUnknown
from tenancy.security import schema_name

CONTEXT_KEY = "tenant_context"
ROLE_KEY = "member_role"
# Set on sessions of read-only requests: their only write is the audit event of the read.
RELAXED_COMMIT_KEY = "relaxed_commit"

# Two statements, sent with psycopg's implicit BEGIN in one pipelined round trip:
# set_config(..., true) is transaction-local; then the tenant's status and the caller's
# membership are read under the row-level security the first statement just set up
# (both tables only show the current tenant's rows), with prepared, cached plans.
_SET_CONTEXT = """
SELECT set_config('search_path', %(search_path)s::text, true),
       set_config('app.tenant_id', %(tenant_id)s::text, true),
       CASE WHEN %(relaxed)s THEN set_config('synchronous_commit', 'off', true) END
"""
_MEMBERSHIP = """
SELECT t.status, m.role
FROM public.tenants t
LEFT JOIN public.memberships m ON m.tenant_id = t.id AND m.user_id = %(user_id)s::text
WHERE t.id = %(tenant_id)s::uuid
"""


@dataclass(frozen=True, slots=True)
class TenantContext:
    """Who is acting, in which tenant."""

    tenant_id: uuid.UUID
    user_id: str

    @property
    def schema(self) -> str:
        return schema_name(self.tenant_id)


def enter_tenant(connection: Connection, context: TenantContext, *,
                 relaxed_commit: bool = False) -> str:
    """Set the tenant context on the open transaction; return the caller's current role.

    Raise ``TenantUnknown``, ``TenantInactive`` or ``NotAMember`` when the caller may not
    act in the tenant. ``relaxed_commit`` turns off the commit's wait for the WAL flush in
    this transaction only (see docs/decisions/audit-durability.md).
    """
    driver = connection.connection.driver_connection
    params = {
        "search_path": f"{context.schema}, public",
        "tenant_id": str(context.tenant_id),
        "user_id": context.user_id,
        "relaxed": relaxed_commit,
    }
    with driver.pipeline():  # type: ignore[union-attr]
        driver.execute(_SET_CONTEXT, params)  # type: ignore[union-attr]
        cursor = driver.execute(_MEMBERSHIP, params)  # type: ignore[union-attr]
    row = cursor.fetchone()
    tenant_status, member_role = row if row is not None else (None, None)
    if tenant_status is None:
        raise TenantUnknown("the token names an unknown tenant")
    if tenant_status != "active":
        raise TenantInactive(f"the tenant is {tenant_status}")
    if member_role is None:
        raise NotAMember("the caller is not a member of this tenant")
    return str(member_role)


def install(factory: sessionmaker[Session]) -> None:
    """Re-enter the session's tenant context at the start of every transaction."""

    @event.listens_for(factory, "after_begin")
    def _after_begin(session: Session, _tx: SessionTransaction, connection: Connection) -> Any:
        context = session.info.get(CONTEXT_KEY)
        if context is not None:
            session.info[ROLE_KEY] = enter_tenant(
                connection, context, relaxed_commit=session.info.get(RELAXED_COMMIT_KEY, False)
            )
