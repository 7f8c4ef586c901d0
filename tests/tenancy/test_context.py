"""Entering a tenant: BEGIN and the context travel together; the pool restores the rest.

``enter_tenant`` opens the transaction itself (one message: ``BEGIN; SELECT ... FROM
public.enter_tenant(...)``) and leaves the driver in autocommit mode for it; the app
engine's checkout hook must give every later user of the connection the driver's
implicit transactions back.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from flask import Flask
from psycopg.pq import TransactionStatus
from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import sessionmaker

from tenancy.context import enter_tenant, install, open_session, reopen_session
from tenancy.database import DatabaseConfig, create_app_engine
from tenancy.errors import NotAMember, TenantInactive, TenantUnknown
from tests.conftest import APP_PASSWORD, APP_ROLE, OWNER_ROLE


@pytest.fixture
def engine(app: Flask, database_url: str) -> Iterator[Engine]:
    """The request engine's configuration, with a single pooled connection."""
    del app  # migrated the database
    config = DatabaseConfig(admin_url=database_url, app_password=APP_PASSWORD,
                            owner_role=OWNER_ROLE, app_role=APP_ROLE, pool_size=1)
    eng = create_app_engine(config)
    yield eng
    eng.dispose()


def driver_of(conn: Connection) -> psycopg.Connection[Any]:
    driver = conn.connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    return driver


def settings(conn: Connection) -> tuple[str, str, str]:
    row = conn.execute(text(
        "SELECT coalesce(current_setting('app.tenant_id', true), ''), current_schema(), "
        "current_setting('synchronous_commit')")).one()
    return row[0], row[1], row[2]


def test_the_context_opens_the_transaction_and_ends_with_it(
    engine: Engine, make_practice: Callable[..., Any],
) -> None:
    practice = make_practice("Kontext")
    with engine.connect() as conn:
        default_commit = settings(conn)[2]
        conn.rollback()
        driver = driver_of(conn)
        assert driver.info.transaction_status == TransactionStatus.IDLE
        role = enter_tenant(conn, practice.id, practice.admin.sub,
                            relaxed_commit=True)
        assert role == "admin"
        assert driver.info.transaction_status == TransactionStatus.INTRANS
        assert settings(conn) == (str(practice.id), f"t_{practice.id.hex}", "off")
        conn.rollback()
        assert driver.info.transaction_status == TransactionStatus.IDLE
        tenant, schema, commit = settings(conn)
        assert (tenant, commit) == ("", default_commit)
        assert schema != f"t_{practice.id.hex}"
        conn.rollback()
        # Without relaxing, the commit keeps the server's setting.
        enter_tenant(conn, practice.id, practice.admin.sub)
        assert settings(conn) == (str(practice.id), f"t_{practice.id.hex}", default_commit)
        driver.rollback()


def test_a_connection_with_an_isolation_level_gets_it(
    engine: Engine, make_practice: Callable[..., Any],
) -> None:
    practice = make_practice("Isolation")
    with engine.connect() as conn:
        driver = driver_of(conn)
        driver.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        try:
            enter_tenant(conn, practice.id, practice.admin.sub)
            assert not driver.autocommit
            assert conn.scalar(text("SHOW transaction_isolation")) == "repeatable read"
            assert settings(conn)[0] == str(practice.id)
            driver.rollback()
        finally:
            driver.isolation_level = None


def test_a_checked_out_connection_has_implicit_transactions_again(
    engine: Engine, make_practice: Callable[..., Any],
) -> None:
    practice = make_practice("Rueckgabe")
    with engine.connect() as conn:
        enter_tenant(conn, practice.id, practice.admin.sub)
        driver = driver_of(conn)
        assert driver.autocommit  # enter_tenant sent BEGIN itself
        driver.commit()
        assert driver.info.transaction_status == TransactionStatus.IDLE
        assert driver.autocommit  # until the connection goes back to the pool
    with engine.connect() as conn:  # the pool's only connection, checked out again
        driver = driver_of(conn)
        assert not driver.autocommit
        conn.execute(text("SELECT 1"))
        assert driver.info.transaction_status == TransactionStatus.INTRANS
        conn.rollback()
    # A block of work is still atomic: its rollback takes back what it did.
    with pytest.raises(RuntimeError), engine.begin() as conn:
        conn.execute(text("CREATE TEMP TABLE atomicity_probe (x int)"))
        raise RuntimeError("roll back")
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT to_regclass('pg_temp.atomicity_probe')")) is None


def test_entering_inside_an_open_transaction(
    engine: Engine, make_practice: Callable[..., Any],
) -> None:
    practice = make_practice("Offen")
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))  # the driver's implicit BEGIN
        driver = driver_of(conn)
        assert not driver.autocommit
        assert enter_tenant(conn, practice.id, practice.admin.sub) == "admin"
        assert settings(conn)[:2] == (str(practice.id), f"t_{practice.id.hex}")
        conn.rollback()
        assert settings(conn)[0] == ""


def test_who_may_not_enter(engine: Engine, make_practice: Callable[..., Any],
                           admin_conn: psycopg.Connection[Any]) -> None:
    practice, other = make_practice("Eigene"), make_practice("Fremde")
    cases: list[tuple[tuple[uuid.UUID, str], type[Exception]]] = [
        ((uuid.uuid4(), practice.admin.sub), TenantUnknown),
        ((practice.id, other.admin.sub), NotAMember),
        ((practice.id, "nobody"), NotAMember),
    ]
    for context, error in cases:
        with engine.connect() as conn:
            with pytest.raises(error):
                enter_tenant(conn, *context)
            conn.rollback()
        with engine.connect() as conn:  # the refused transaction left nothing behind
            assert settings(conn)[0] == ""
            assert not driver_of(conn).autocommit
    admin_conn.execute("UPDATE public.tenants SET status = 'suspended' WHERE id = %s",
                       (practice.id,))
    with engine.connect() as conn, pytest.raises(TenantInactive):
        enter_tenant(conn, practice.id, practice.admin.sub)


def test_a_session_re_enters_as_its_actor_and_refuses_a_changed_role(
    engine: Engine, make_practice: Callable[..., Any], admin_conn: psycopg.Connection[Any],
) -> None:
    """The Actor is resolved once; every later transaction re-enters as that actor, and a
    membership whose role changed in between is refused rather than acted on."""
    practice = make_practice("Rolle")
    factory = sessionmaker(engine)
    install(factory)
    session, actor = open_session(factory, practice.id, practice.admin.sub, request_id="r-1")
    try:
        assert (actor.tenant_id, actor.user_id, actor.role, actor.request_id) == (
            practice.id, practice.admin.sub, "admin", "r-1")
        session.commit()  # the next statement opens a second transaction: re-entered
        assert settings(session.connection())[:2] == (str(practice.id),
                                                      f"t_{practice.id.hex}")
        session.rollback()
        reopened = reopen_session(factory, actor)
        assert settings(reopened.connection())[0] == str(practice.id)
        reopened.close()
        admin_conn.execute("UPDATE public.memberships SET role = 'therapist' "
                           "WHERE tenant_id = %s AND user_id = %s",
                           (practice.id, practice.admin.sub))
        with pytest.raises(NotAMember, match="role"):
            session.connection()
        session.rollback()
        with pytest.raises(NotAMember, match="role"):
            reopen_session(factory, actor)
    finally:
        session.close()
