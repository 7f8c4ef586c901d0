"""Engines and the per-request database session.

Requests use the app role only. The owner engine (admin login acting as the owner
role) is created on first use, for onboarding's provisioning step.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask, Response, current_app, g
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api import security_events
from api.audit import AUDIT_KEY
from api.secrets import current_secrets
from api.settings import pooler_mode
from models.audit_event import AUDIT_INSERT, AUDIT_WRITE_COLUMNS
from tenancy import context as tenant_context
from tenancy.actor import Actor
from tenancy.database import DatabaseConfig, app_url, create_app_engine, create_owner_engine
from tenancy.fastpath import commit_with
from tenancy.security import verify_app_role

log = logging.getLogger(__name__)
EXTENSION = "clinai_db"
_AUDIT_INSERT = AUDIT_INSERT + " VALUES "
_AUDIT_ROW = "(%s, %s, %s, %s, %s::uuid[], %s, %s)"  # AUDIT_WRITE_COLUMNS, in order


@dataclass
class Database:
    config: DatabaseConfig
    engine: Engine
    sessions: sessionmaker[Session]
    _owner: Engine | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _verified: bool = False
    extra_engines: list[Engine] = field(default_factory=list)

    @property
    def owner_engine(self) -> Engine:
        with self._lock:
            if self._owner is None:
                self._owner = create_owner_engine(self.config)
            return self._owner

    def dispose(self) -> None:
        """Close every pooled connection (tests, shutdown)."""
        self.engine.dispose()
        for engine in self.extra_engines:
            engine.dispose()
        if self._owner is not None:
            self._owner.dispose()

    def verify(self) -> None:
        """Run the app role's safety check once per process."""
        if self._verified:
            return
        with self._lock:
            if not self._verified:
                verify_app_role(self.engine)
                self._verified = True


def database_config(app: Flask) -> DatabaseConfig:
    c = app.config
    return DatabaseConfig(
        admin_url=c["DATABASE_URL"],
        app_url=c["DATABASE_APP_URL"],
        app_password=c["DATABASE_APP_PASSWORD"],
        owner_role=c["DATABASE_OWNER_ROLE"],
        app_role=c["DATABASE_APP_ROLE"],
        password_file=Path(app.instance_path) / "database-app-password",
        pool_size=c["DATABASE_POOL_SIZE"],
        app_pooler=pooler_mode(c.get("DATABASE_APP_POOLER")),
        secrets=current_secrets(app),
    )


def get_db_config(app: Flask) -> DatabaseConfig:
    db: Database = app.extensions[EXTENSION]
    return db.config


def init_app(app: Flask) -> None:
    config = database_config(app)
    if config.app_pooler is None and app_url(config).port == 6432:
        # The app cannot tell a pooler from a server; Azure's PgBouncer listens on 6432.
        log.warning("DATABASE_APP_URL names port 6432 (Azure's PgBouncer) but "
                    "DATABASE_APP_POOLER is not set: set it to 'transaction' if a "
                    "transaction pooler is in front (docs/decisions/pooler.md)")
    engine = create_app_engine(config)
    factory = sessionmaker(engine, expire_on_commit=False)
    tenant_context.install(factory)
    app.extensions[EXTENSION] = Database(config=config, engine=engine, sessions=factory)

    @app.after_request
    def _commit(response: Response) -> Response:
        session: Session | None = g.pop("db_session", None)
        if session is not None:
            try:
                if response.status_code < 400:
                    commit_request(session)
                elif (event := security_events.refused_attempt(response)) is not None:
                    _record_refusal(session, event)
            finally:
                session.close()
        return response

    @app.teardown_appcontext
    def _close(_exc: BaseException | None) -> None:
        session: Session | None = g.pop("db_session", None)
        if session is not None:
            session.close()


def _record_refusal(session: Session, event: dict[str, Any]) -> None:
    """Roll the request's work back and append its security event instead. A failure
    here is logged (by type) and never changes the refusal the caller gets."""
    try:
        session.rollback()
        session.info.pop(AUDIT_KEY, None)
        security_events.record(session, event)
    except Exception as exc:
        log.error("recording a security event failed (%s)", type(exc).__name__)


def commit_request(session: Session) -> None:
    """Commit the request's work with its audit events: INSERT and COMMIT in one round trip
    (``tenancy.fastpath.commit_with``): if the INSERT fails, the work rolls back with it."""
    events = session.info.pop(AUDIT_KEY, [])
    if not events:
        session.commit()
        return
    params: list[Any] = []
    for event in events:
        row = {**event, "resource_ids": "{" + ",".join(map(str, event["resource_ids"])) + "}"}
        params += [row[column] for column in AUDIT_WRITE_COLUMNS]
    commit_with(session, _AUDIT_INSERT + ", ".join([_AUDIT_ROW] * len(events)), params)


def get_db() -> Database:
    db: Database = current_app.extensions[EXTENSION]
    return db


def open_request_session(tenant_id: uuid.UUID, user_id: str, *,
                         read_only: bool = False) -> Actor:
    """Open the request's session in the tenant (``session()`` returns it; the request
    commits and closes it) and return the request's ``Actor``.

    ``read_only`` requests change no record: their one write is the audit event of the
    read, which may skip the wait for the WAL flush (docs/decisions/audit-durability.md).
    """
    g.db_session, actor = tenant_context.open_session(
        get_db().sessions, tenant_id, user_id, request_id=g.get("request_id"),
        client_request_id=g.get("client_request_id"), relaxed_commit=read_only)
    return actor


def open_actor_session(actor: Actor) -> Session:
    """Another session for ``actor`` that the caller commits and closes (a streamed
    reply's save, after the request's own session has been committed)."""
    return tenant_context.reopen_session(get_db().sessions, actor)


def end_request_session() -> None:
    """Commit and close the request's session now (with its audit events); the request
    touches the database no further through it."""
    db: Session | None = g.pop("db_session", None)
    if db is not None:
        try:
            commit_request(db)
        finally:
            db.close()


def session() -> Session:
    """Return the request's tenant-scoped session."""
    s: Session = g.db_session
    return s
