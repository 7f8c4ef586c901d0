"""Put a database transaction into one tenant's context: the one way into a tenant.

Two doors, both here:

- ``open_session`` (and ``enter_tenant`` beneath it) for a user's request: checks the
  tenant and the caller's membership and returns the ``Actor`` with the member's current
  role; ``reopen_session`` opens another session for that actor.
- ``enter_as_platform`` for platform work that acts for no user (provisioning,
  migrations): the same two walls, no membership. ``public_only`` is its row-level
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
from typing import Any

from sqlalchemy import Connection, event
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from tenancy.actor import Actor
from tenancy.errors import NotAMember, TenantInactive, TenantUnknown
from tenancy.fastpath import Statements, begin_with
from tenancy.security import schema_name

# The Actor whose context every transaction of a session re-enters.
ACTOR_KEY = "actor"
# Set on sessions of read-only requests: their only write is the audit event of the read.
RELAXED_COMMIT_KEY = "relaxed_commit"

# One statement (``migrations/versions/0004_enter_tenant.py``): set_config(..., true) of
# app.tenant_id, the tenant's status and the caller's membership read under the row-level
# security it sets up (a plan PL/pgSQL keeps per session), then the search_path. Sent with
# the transaction's BEGIN in one message (``tenancy.fastpath.begin_with``).
_ENTER = ("SELECT tenant_status, member_role "
          "FROM public.enter_tenant(%s::uuid, %s::text, %s::boolean)")

# Platform work: search_path (the tenant schema alone: owner paths create tables and
# Alembic's version table there) and app.tenant_id, transaction-locally.
_PLATFORM_ENTER = ("SELECT set_config('search_path', %(schema)s, true), "
                   "set_config('app.tenant_id', %(tenant)s, true)")
_PUBLIC_ENTER = "SELECT set_config('app.tenant_id', %(tenant)s, true)"


def enter_as_platform(connection: Connection | Statements, tenant_id: uuid.UUID, *,
                      public_only: bool = False) -> None:
    """Set both walls for ``tenant_id`` on the open transaction, acting for no user.

    ``public_only``: only the row-level security setting, for the tenant's rows of
    ``public`` tables. ``connection`` may be the statements of a ``pipelined`` transaction
    (the LLM ledger): the statement then joins them.
    """
    statement = _PUBLIC_ENTER if public_only else _PLATFORM_ENTER
    params = {"schema": schema_name(tenant_id), "tenant": str(tenant_id)}
    if isinstance(connection, Connection):
        connection.exec_driver_sql(statement, params)
    else:
        connection.execute(statement, params)


def enter_tenant(connection: Connection, tenant_id: uuid.UUID, user_id: str, *,
                 relaxed_commit: bool = False) -> str:
    """Set the tenant context on the open transaction; return the caller's current role.

    Raise ``TenantUnknown``, ``TenantInactive`` or ``NotAMember`` when the caller may not
    act in the tenant. ``relaxed_commit`` turns off the commit's wait for the WAL flush in
    this transaction only (see docs/decisions/audit-durability.md). A caller that keeps
    the same ``Connection`` across transactions must know that it is in autocommit mode
    after the first one, until it goes back to the pool (``tenancy.fastpath``).
    """
    cursor = begin_with(connection, _ENTER, (tenant_id, user_id, relaxed_commit))
    row = cursor.fetchone()
    tenant_status, member_role = row if row is not None else (None, None)
    if tenant_status is None:
        raise TenantUnknown("The token names an unknown practice.")
    if tenant_status != "active":
        raise TenantInactive(f"The practice is {tenant_status}.")
    if member_role is None:
        raise NotAMember("You are not (or no longer) a member of this practice.")
    return str(member_role)


def open_session(factory: sessionmaker[Session], tenant_id: uuid.UUID, user_id: str, *,
                 request_id: str | None = None, client_request_id: str | None = None,
                 relaxed_commit: bool = False) -> tuple[Session, Actor]:
    """Open a session in the tenant's context and return it with the ``Actor``.

    The first transaction begins here (one round trip: BEGIN, both walls, the membership
    check); every later transaction of the session re-enters the same context, and is
    refused if the membership's role changed in between.
    """
    session = factory(info={RELAXED_COMMIT_KEY: relaxed_commit})
    try:
        role = enter_tenant(session.connection(), tenant_id, user_id,
                            relaxed_commit=relaxed_commit)
    except BaseException:
        session.close()
        raise
    actor = Actor(tenant_id=tenant_id, user_id=user_id, role=role, request_id=request_id,
                  client_request_id=client_request_id)
    session.info[ACTOR_KEY] = actor
    return session, actor


def reopen_session(factory: sessionmaker[Session], actor: Actor) -> Session:
    """Open another session for ``actor`` (a streamed reply's save): same context, and
    refused if the membership or its role changed since the actor was resolved."""
    session = factory(info={ACTOR_KEY: actor})
    try:
        session.connection()
    except BaseException:
        session.close()
        raise
    return session


def install(factory: sessionmaker[Session]) -> None:
    """Enter the session's actor's context at the start of every transaction after
    ``open_session``'s first."""

    @event.listens_for(factory, "after_begin")
    def _after_begin(session: Session, _tx: SessionTransaction, connection: Connection) -> Any:
        actor: Actor | None = session.info.get(ACTOR_KEY)
        if actor is None:
            return  # open_session enters the first transaction itself
        role = enter_tenant(connection, actor.tenant_id, actor.user_id,
                            relaxed_commit=session.info.get(RELAXED_COMMIT_KEY, False))
        if role != actor.role:
            raise NotAMember("Your role in this practice changed; send the request again.")
