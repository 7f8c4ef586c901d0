"""Put a database transaction into one tenant's context: the one way into a tenant.

Two doors, both here:

- ``enter_tenant`` for a user's request: checks the tenant and the caller's membership.
- ``enter_as_platform`` for platform work that acts for no user (provisioning,
  migrations): the same two walls, no membership. ``PUBLIC_ENTER`` is its row-level
  security half alone, for work on the tenant's rows of ``public`` tables (the LLM
  ledger): a search_path that changes with the tenant would make PostgreSQL replan the
  connection's prepared statements each time it moves to another tenant.

Every transaction a request opens starts with one statement that sets both walls
(``search_path`` to the tenant schema, ``app.tenant_id`` for row-level security),
transaction-locally, and reads the tenant's status and the caller's current membership;
it travels with the transaction's BEGIN in one round trip. The settings die with the
transaction, so a pooled connection never carries one tenant into the next request.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import ClientCursor
from psycopg.pq import TransactionStatus
from sqlalchemy import Connection, event
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from tenancy.errors import NotAMember, TenantInactive, TenantUnknown
from tenancy.security import schema_name

CONTEXT_KEY = "tenant_context"
ROLE_KEY = "member_role"
# Set on sessions of read-only requests: their only write is the audit event of the read.
RELAXED_COMMIT_KEY = "relaxed_commit"

# One statement (``migrations/versions/0004_enter_tenant.py``): set_config(..., true) of
# app.tenant_id, the tenant's status and the caller's membership read under the row-level
# security it sets up (a plan PL/pgSQL keeps per session), then the search_path.
_ENTER = ("SELECT tenant_status, member_role "
          "FROM public.enter_tenant(%s::uuid, %s::text, %s::boolean)")
# The same with the transaction's BEGIN, as one simple-protocol message: one round trip
# and no pipeline bookkeeping in the driver. Parameters are bound (escaped) client-side.
_BEGIN_AND_ENTER = "BEGIN; " + _ENTER


# Platform work: search_path (the tenant schema alone: owner paths create tables and
# Alembic's version table there) and app.tenant_id, transaction-locally. psycopg's
# parameter style, so the ledger can send it in its own pipeline.
PLATFORM_ENTER = ("SELECT set_config('search_path', %(schema)s, true), "
                  "set_config('app.tenant_id', %(tenant)s, true)")


PUBLIC_ENTER = "SELECT set_config('app.tenant_id', %(tenant)s, true)"


def platform_params(tenant_id: uuid.UUID) -> dict[str, str]:
    """The parameters of ``PLATFORM_ENTER`` for ``tenant_id``."""
    return {"schema": schema_name(tenant_id), "tenant": str(tenant_id)}


def enter_as_platform(connection: Connection, tenant_id: uuid.UUID, *,
                      public_only: bool = False) -> None:
    """Set both walls for ``tenant_id`` on the open transaction, acting for no user.

    ``public_only``: only the row-level security setting, for ``public`` tables.
    """
    connection.exec_driver_sql(PUBLIC_ENTER if public_only else PLATFORM_ENTER,
                               platform_params(tenant_id))


@dataclass(frozen=True, slots=True)
class TenantContext:
    """Who is acting, in which tenant."""

    tenant_id: uuid.UUID
    user_id: str


def enter_tenant(connection: Connection, context: TenantContext, *,
                 relaxed_commit: bool = False) -> str:
    """Set the tenant context on the open transaction; return the caller's current role.

    Raise ``TenantUnknown``, ``TenantInactive`` or ``NotAMember`` when the caller may not
    act in the tenant. ``relaxed_commit`` turns off the commit's wait for the WAL flush in
    this transaction only (see docs/decisions/audit-durability.md). A caller that keeps
    the same ``Connection`` across transactions must know that it is in autocommit mode
    after the first one, until it goes back to the pool (see below).
    """
    driver = connection.connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    params = (context.tenant_id, context.user_id, relaxed_commit)
    cursor: psycopg.Cursor[Any]
    if (driver.info.transaction_status == TransactionStatus.IDLE
            and driver.isolation_level is None and driver.read_only is None):
        # Nothing sent yet: send BEGIN ourselves, with the context. In autocommit mode the
        # driver adds no BEGIN of its own; COMMIT and ROLLBACK work as always. The
        # connection stays in autocommit mode until it goes back to the pool, whose
        # checkout hook turns it off (``tenancy.database.create_app_engine``): the ORM
        # session returns it at every commit and rollback. (A connection configured with
        # an isolation level or read-only mode takes the path below, so the driver's own
        # BEGIN carries them.)
        driver.autocommit = True
        cursor = ClientCursor(driver)
        cursor.execute(_BEGIN_AND_ENTER, params)
        cursor.nextset()
    else:
        cursor = driver.execute(_ENTER, params)
    row = cursor.fetchone()
    tenant_status, member_role = row if row is not None else (None, None)
    if tenant_status is None:
        raise TenantUnknown("The token names an unknown practice.")
    if tenant_status != "active":
        raise TenantInactive(f"The practice is {tenant_status}.")
    if member_role is None:
        raise NotAMember("You are not (or no longer) a member of this practice.")
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
