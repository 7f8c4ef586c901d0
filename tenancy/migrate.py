"""Migrate ``public`` and fan tenant migrations out over every tenant schema.

The fan-out reads every tenant's Alembic version in one query, skips tenants at
head, and migrates the rest in worker processes (Alembic's ``context`` and ``op``
proxies are process-global, so threads would share them), each tenant in its own
transaction. Every outcome is recorded in ``public.tenant_migrations``; a rerun
after a failure touches only the tenants that are not at head yet.
"""

from __future__ import annotations

import multiprocessing
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, func, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.pool import NullPool

from models import TenantBase, TenantMigration
from tenancy.context import enter_as_platform
from tenancy.database import DatabaseConfig, create_owner_engine
from tenancy.security import schema_name, secure_public, secure_tenant_schema

ROOT = Path(__file__).resolve().parent.parent
PUBLIC_SCRIPTS = ROOT / "migrations"
TENANT_SCRIPTS = ROOT / "tenant_migrations"


def _config(location: Path, extra_version_locations: Sequence[Path] = ()) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(location))
    locations = [str(location / "versions"), *map(str, extra_version_locations)]
    cfg.set_main_option("version_locations", " ".join(locations))
    cfg.set_main_option("path_separator", "space")
    return cfg


def tenant_script_directory(extra_version_locations: Sequence[Path] = ()) -> ScriptDirectory:
    return ScriptDirectory.from_config(_config(TENANT_SCRIPTS, extra_version_locations))


def upgrade_public(config: DatabaseConfig) -> None:
    """Migrate the shared schema to head and refresh its grants and platform policies."""
    engine = create_owner_engine(config, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            cfg = _config(PUBLIC_SCRIPTS)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            secure_public(conn, owner_role=config.owner_role, app_role=config.app_role)
    finally:
        engine.dispose()


@dataclass(slots=True)
class TenantOutcome:
    tenant_id: uuid.UUID
    status: str  # migrated | failed
    from_revision: str | None
    to_revision: str | None
    duration_ms: int
    error: str | None = None


@dataclass(slots=True)
class FanOutReport:
    head: str
    total: int = 0
    at_head: int = 0
    at_head_ids: list[uuid.UUID] = field(default_factory=list)
    outcomes: list[TenantOutcome] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> list[TenantOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]


def tenant_versions(conn: Any) -> dict[uuid.UUID, str | None]:
    """Return the current revision (None: schema not versioned) of each tenant that still
    has a schema: not deleted, and not offboarded or being offboarded (``erased``,
    ``closing``: its schema is gone or going; migrating it would fail or recreate it)."""
    tenants = [r.id for r in conn.execute(
        text("SELECT id FROM public.tenants "
             "WHERE status NOT IN ('deleted', 'erased', 'closing') ORDER BY created_at, id")
    )]
    # Filter schema names here, not with a regex in SQL: on freshly bulk-provisioned
    # catalogs without statistics the planner nests the regex scan per row (quadratic).
    versioned = set(conn.scalars(text(
        "SELECT c.relnamespace::regnamespace::text FROM pg_class c "
        "WHERE c.relname = 'alembic_version' AND c.relkind = 'r'"
    )))
    parts = [
        f"SELECT '{schema_name(t)}' AS s, version_num FROM \"{schema_name(t)}\".alembic_version"
        for t in tenants if schema_name(t) in versioned
    ]
    versions: dict[str, str] = {}
    if parts:
        versions = {r.s: r.version_num for r in conn.execute(text(" UNION ALL ".join(parts)))}
    return {t: versions.get(schema_name(t)) for t in tenants}


def upgrade_tenants(
    config: DatabaseConfig,
    *,
    jobs: int = 1,
    tenant_ids: Sequence[uuid.UUID] | None = None,
    extra_version_locations: Sequence[Path] = (),
    on_outcome: Callable[[TenantOutcome], None] | None = None,
) -> FanOutReport:
    """Bring every (or the given) tenant schema to the tenant lineage's head."""
    started = time.perf_counter()
    head = tenant_script_directory(extra_version_locations).get_current_head()
    assert head is not None
    report = FanOutReport(head=head)
    engine = create_owner_engine(config, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            versions = tenant_versions(conn)
    finally:
        engine.dispose()
    if tenant_ids is not None:
        wanted = set(tenant_ids)
        versions = {t: v for t, v in versions.items() if t in wanted}
    report.total = len(versions)
    todo = [(t, v) for t, v in versions.items() if v != head]
    report.at_head_ids = [t for t, v in versions.items() if v == head]
    report.at_head = len(report.at_head_ids)
    work = [(config, t, v, tuple(extra_version_locations)) for t, v in todo]
    for outcome in _run(work, jobs):
        report.outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)
    report.seconds = time.perf_counter() - started
    return report


def _run(work: list[tuple[Any, ...]], jobs: int) -> Iterator[TenantOutcome]:
    try:
        if jobs <= 1 or len(work) <= 1:
            yield from map(_migrate_one, work)
            return
        # fork: workers inherit the imported code. No pooled connection may be inherited:
        # the parent holds none (see finally), and each worker opens its own.
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx,
                                 initializer=_forget_inherited_engines) as pool:
            yield from pool.map(_migrate_one, work, chunksize=max(1, len(work) // (jobs * 8)))
    finally:
        _dispose_worker_engines()


_worker_engines: dict[str, Engine] = {}
_worker_scripts: dict[tuple[Path, ...], ScriptDirectory] = {}


def _dispose_worker_engines() -> None:
    for engine in _worker_engines.values():
        engine.dispose()
    _worker_engines.clear()


def _forget_inherited_engines() -> None:
    """In a forked worker: drop engines copied from the parent without touching their sockets."""
    for engine in _worker_engines.values():
        engine.dispose(close=False)
    _worker_engines.clear()


def _worker_engine(config: DatabaseConfig) -> Engine:
    engine = _worker_engines.get(config.admin_url)
    if engine is None:
        engine = _worker_engines[config.admin_url] = create_owner_engine(
            config, pool_size=1, max_overflow=0
        )
    return engine


def _migrate_one(item: tuple[Any, ...]) -> TenantOutcome:
    config, tenant_id, from_rev, extra = item
    script = _worker_scripts.get(extra)
    if script is None:
        script = _worker_scripts[extra] = tenant_script_directory(extra)
    schema = schema_name(tenant_id)
    engine = _worker_engine(config)
    started = time.perf_counter()
    head = script.get_current_head()
    try:
        with engine.begin() as conn:
            enter_as_platform(conn, tenant_id)

            def upgrade(rev: Any, _context: Any) -> Any:
                return script._upgrade_revs("head", rev)

            env = EnvironmentContext(_config(TENANT_SCRIPTS, extra), script, fn=upgrade,
                                     destination_rev="head")
            with env:
                env.configure(connection=conn, target_metadata=TenantBase.metadata,
                              version_table_schema=schema)
                with env.begin_transaction():
                    env.run_migrations()
            secure_tenant_schema(conn, schema, app_role=config.app_role)
            duration = int((time.perf_counter() - started) * 1000)
            _record(conn, tenant_id, "migrated", head, None, duration)
        return TenantOutcome(tenant_id, "migrated", from_rev, head, duration)
    except Exception as exc:
        duration = int((time.perf_counter() - started) * 1000)
        # Exception text from the database names objects and values of our own DDL, never
        # clinical data; keep the first line only.
        message = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        with engine.begin() as conn:
            _record(conn, tenant_id, "failed", from_rev, message, duration)
        return TenantOutcome(tenant_id, "failed", from_rev, None, duration, message)


def _record(conn: Any, tenant_id: uuid.UUID, status: str, revision: str | None,
            error: str | None, duration_ms: int) -> None:
    outcome = {"status": status, "revision": revision, "error": error,
               "duration_ms": duration_ms}
    conn.execute(
        insert(TenantMigration).values(tenant_id=tenant_id, **outcome)
        .on_conflict_do_update(index_elements=[TenantMigration.tenant_id],
                               set_={**outcome, "updated_at": func.now()}))
