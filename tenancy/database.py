"""Database URLs, roles and engines.

``DATABASE_URL`` carries an administrative login (Azure's server admin). From it we
derive two identities:

- the *owner* role (NOLOGIN): owns every schema and table. Migrations and tenant
  provisioning connect with the admin login and ``SET ROLE`` to it, so objects are
  owned by the owner role, never by a person's login.
- the *app* role (LOGIN, NOSUPERUSER, NOBYPASSRLS, owns nothing, DML only): what
  requests connect as.

Requests may reach the server through a transaction-mode pooler (``DATABASE_APP_URL``
pointing at PgBouncer, ``DATABASE_APP_POOLER=transaction``): each transaction may then
run on another server connection, so the app engine keeps nothing on a session -- no
server-side prepared statements (``prepare_threshold=None``), and the tenant context is
transaction-local anyway. The owner engine needs its session (``SET ROLE``, session
advisory locks) and always connects directly (``DATABASE_URL``). docs/decisions/pooler.md.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psycopg
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from tenancy.errors import TenancyError
from tenancy.fastpath import (
    POOLER_OPTION,
    install_statement_rewrite,
    restore_implicit_transactions,
)

log = logging.getLogger(__name__)


class CurrentSecrets(Protocol):
    """Settings that may be rotated while the app runs (``api.secrets.Secrets``)."""

    def rotating(self, setting: str) -> bool: ...

    def get(self, setting: str, default: str | None = None) -> str | None: ...

    def refresh(self, setting: str) -> bool: ...


@dataclass(frozen=True, kw_only=True)
class DatabaseConfig:
    """Where the database is and which roles to use.

    With ``secrets``, the URLs and the app password are looked up again for every new
    connection (``DATABASE_URL``, ``DATABASE_APP_URL``, ``DATABASE_APP_PASSWORD`` from
    Key Vault, rotated without a restart); the fields hold the values read at start-up.
    """

    admin_url: str
    app_url: str | None = None
    app_password: str | None = None
    owner_role: str = "clinai_owner"
    app_role: str = "clinai_app"
    password_file: Path | None = None
    pool_size: int = 10
    # The pooler in front of ``app_url`` (``DATABASE_APP_POOLER``): None or "transaction".
    app_pooler: str | None = None
    secrets: CurrentSecrets | None = field(default=None, compare=False, repr=False)

    def current(self, setting: str, value: str | None) -> str | None:
        return self.secrets.get(setting, value) if self.secrets is not None else value

    def resolved_app_password(self) -> str | None:
        password = self.current("DATABASE_APP_PASSWORD", self.app_password)
        if password:
            return password
        if self.password_file is not None and self.password_file.exists():
            return self.password_file.read_text().strip()
        return None


def sqlalchemy_url(url: str) -> URL:
    """Return ``url`` as a SQLAlchemy URL that uses psycopg 3."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise TenancyError("DATABASE_URL must be a postgresql:// URL", code="bad_database_url")
    return parsed.set(drivername="postgresql+psycopg")


def admin_url(config: DatabaseConfig) -> URL:
    """The administrative login's URL (``DATABASE_URL``), as it is now."""
    url = config.current("DATABASE_URL", config.admin_url)
    assert url is not None
    return sqlalchemy_url(url)


def app_url(config: DatabaseConfig) -> URL:
    """Return the URL requests connect with: ``DATABASE_APP_URL`` or derived from the admin's."""
    configured = config.current("DATABASE_APP_URL", config.app_url)
    if configured:
        return sqlalchemy_url(configured)
    return admin_url(config).set(
        username=config.app_role, password=config.resolved_app_password()
    )


def _login_refused(exc: psycopg.OperationalError) -> bool:
    # 28P01 invalid_password, 28000 invalid_authorization_specification; a failed
    # connection attempt does not always carry the SQLSTATE, its message does say it.
    return (getattr(exc, "sqlstate", None) in {"28P01", "28000"}
            or "password authentication failed" in str(exc))


def _follow_rotation(engine: Engine, config: DatabaseConfig, settings: tuple[str, ...],
                     url: Callable[[DatabaseConfig], URL]) -> None:
    """Connect with the current credentials; after a refused login, re-read them from
    Key Vault and try once more (the secret was rotated). Pooled connections stay."""
    secrets_ = config.secrets
    if secrets_ is None or not any(secrets_.rotating(s) for s in settings):
        return

    @event.listens_for(engine, "do_connect")
    def _connect(dialect: Any, _record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        used = url(config)
        cparams.update(dialect.create_connect_args(used)[1])
        try:
            return dialect.connect(*cargs, **cparams)
        except psycopg.OperationalError as exc:
            if not _login_refused(exc):
                raise
            for setting in settings:
                secrets_.refresh(setting)
            # New credentials, whether this thread or another one just re-read them.
            if url(config) == used:
                raise
        log.warning("database login refused; retrying with credentials re-read from Key "
                    "Vault")
        cparams.update(dialect.create_connect_args(url(config))[1])
        return dialect.connect(*cargs, **cparams)


def create_app_engine(config: DatabaseConfig, **kwargs: Any) -> Engine:
    """Create the pooled engine requests use."""
    options: dict[str, Any] = {
        # Bound parameters carry clinical text: keep them out of exception messages.
        "hide_parameters": True,
        "pool_size": config.pool_size,
        "max_overflow": 0,
        "pool_pre_ping": False,
        "pool_timeout": 10,
    }
    options.update(kwargs)
    if config.app_pooler == "transaction":
        # psycopg prepares a statement on the server after its fifth execution on a
        # connection and later runs it by name; behind a transaction pooler that name is
        # unknown to (or, worse, another statement on) the next server connection.
        options["connect_args"] = {**options.get("connect_args", {}),
                                   "prepare_threshold": None}
    engine = create_engine(app_url(config), **options)
    if config.app_pooler is not None:
        engine.update_execution_options(**{POOLER_OPTION: config.app_pooler})
    _follow_rotation(engine, config,
                     ("DATABASE_APP_URL", "DATABASE_APP_PASSWORD", "DATABASE_URL"), app_url)

    # The request path's tricks (BEGIN with the tenant context; one statement rewritten
    # per execution; the ledger's one-round-trip transactions, which behind a pooler are
    # one message): ``tenancy/fastpath.py``.
    restore_implicit_transactions(engine)
    install_statement_rewrite(engine)
    return engine


def create_owner_engine(config: DatabaseConfig, **kwargs: Any) -> Engine:
    """Create an engine whose connections act as the owner role (provisioning, migrations)."""
    options: dict[str, Any] = {"hide_parameters": True} | (
        dict(kwargs) if "poolclass" in kwargs else {"pool_size": 2, "max_overflow": 2, **kwargs}
    )
    engine = create_engine(admin_url(config), **options)
    _follow_rotation(engine, config, ("DATABASE_URL",), admin_url)
    owner = config.owner_role

    @event.listens_for(engine, "connect")
    def _become_owner(dbapi_conn: Any, _record: Any) -> None:
        with dbapi_conn.cursor() as cur:
            cur.execute(f'SET ROLE "{owner}"')
        dbapi_conn.commit()

    return engine


def _quote(identifier: str) -> str:
    if not identifier.replace("_", "").isalnum():
        raise TenancyError(f"invalid role name {identifier!r}", code="bad_role_name")
    return f'"{identifier}"'


def ensure_roles(config: DatabaseConfig) -> str | None:
    """Create the owner and app roles if missing and (re)set the app password.

    Return the generated password when one had to be generated (and was stored in
    ``config.password_file``), else None.
    """
    owner, app = _quote(config.owner_role), _quote(config.app_role)
    if config.secrets is not None:
        # A rotation: the vault's newest version, even if this process started with the
        # old one (a Key Vault reference resolved into the environment before it).
        config.secrets.refresh("DATABASE_APP_PASSWORD")
        config.secrets.refresh("DATABASE_URL")
    password = config.current("DATABASE_APP_PASSWORD", config.app_password)
    generated = None
    if not password:
        password = config.resolved_app_password()
        if not password:
            password = generated = secrets.token_urlsafe(32)
            if config.password_file is not None:
                config.password_file.parent.mkdir(parents=True, exist_ok=True)
                config.password_file.touch(mode=0o600)
                config.password_file.write_text(password)
    engine = create_engine(admin_url(config), poolclass=NullPool)
    try:
        with engine.begin() as conn:
            existing = set(
                conn.scalars(
                    text("SELECT rolname FROM pg_roles WHERE rolname IN (:o, :a)"),
                    {"o": config.owner_role, "a": config.app_role},
                )
            )
            if config.owner_role not in existing:
                conn.execute(text(f"CREATE ROLE {owner} NOLOGIN"))
            if config.app_role not in existing:
                conn.execute(text(f"CREATE ROLE {app} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB "
                                  "NOCREATEROLE"))
            # Only a SCRAM verifier computed here travels in the DDL, never the password
            # (a failed or logged statement would show it in the server's log).
            raw = conn.connection.driver_connection
            verifier = raw.pgconn.encrypt_password(  # type: ignore[union-attr]
                password.encode(), config.app_role.encode(), b"scram-sha-256").decode()
            quoted = conn.scalar(text("SELECT quote_literal(:p)"), {"p": verifier})
            # As sent: text() would read the verifier's ":..." as bind parameters.
            conn.exec_driver_sql(f"ALTER ROLE {app} WITH LOGIN PASSWORD {quoted}")
            # The admin login must be able to SET ROLE to the owner to act as it.
            conn.execute(text(f"GRANT {owner} TO CURRENT_USER"))
            db = conn.scalar(text("SELECT current_database()"))
            conn.execute(text(f'GRANT CONNECT, CREATE ON DATABASE "{db}" TO {owner}'))
            conn.execute(text(f'GRANT CONNECT ON DATABASE "{db}" TO {app}'))
            conn.execute(text(f"GRANT USAGE, CREATE ON SCHEMA public TO {owner}"))
            conn.execute(text(f"GRANT USAGE ON SCHEMA public TO {app}"))
            conn.execute(text("REVOKE CREATE ON SCHEMA public FROM PUBLIC"))
    finally:
        engine.dispose()
    return generated
