"""Every trick of the request path that reaches below the libraries' idiom, in one file.

Each one exists because a benchmark showed it (numbers and commands in
docs/PERFORMANCE.md) and each is pinned by tests (``tests/tenancy/test_context.py``,
``tests/api/test_commit.py``, ``tests/api/test_pagination.py``, ``tests/llm/``). When
upgrading psycopg, SQLAlchemy, flask-smorest or Alembic, check this file first.

1. ``begin_with`` -- BEGIN and a transaction's first statement as one simple-protocol
   message. The tenant context (``tenancy.context.enter_tenant``) travels with BEGIN in
   one round trip. psycopg would send its own BEGIN first, so the idle connection is put
   in autocommit mode and the BEGIN is ours; COMMIT and ROLLBACK work as always.
   Measured with (2): Python CPU of context + audit 426 -> 162 us per request, wall
   679 -> 409 us on one connection; clinai/baseline throughput median 1.18 over six runs.
2. ``restore_implicit_transactions`` -- the pool ``checkout`` hook that undoes (1): a
   connection leaves the pool with the driver's implicit BEGIN on again, so every other
   user of a pooled connection sees ordinary psycopg.
3. ``commit_with`` -- a final statement (the request's audit INSERT) and COMMIT as one
   simple-protocol message, parameters bound client-side. If the statement fails, the
   server skips the COMMIT and the transaction rolls back with it. ``session.commit()``
   after it is SQLAlchemy's bookkeeping only. Gain: with (1).
4. ``install_statement_rewrite`` / ``REWRITE_OPTION`` -- a ``before_cursor_execute`` hook
   that lets one statement be rewritten by the object passed in its execution options.
   ``api.pagination`` uses it to wrap a clinical list's page in a data-modifying CTE that
   writes the read's audit event: backend CPU 545 -> 417 us per list (395 us with no
   audit at all); PostgreSQL CPU per request 846 -> 639 us under load.
5. ``pipelined`` -- a whole short transaction in psycopg's pipeline mode (the LLM
   ledger's reserve and settle): one round trip each; gateway overhead p50 2.57 ms.
   Behind a transaction pooler (``POOLER_OPTION``) the same transaction is one
   simple-protocol message instead, ``BEGIN; ...; COMMIT`` with parameters bound
   client-side: psycopg ends a pipeline with a Flush after its last Sync, and when that
   Flush reaches PgBouncer (1.18 measured) after the Sync's ReadyForQuery released the
   server connection, PgBouncer links a server connection to it and keeps it until the
   client speaks again -- an idle pooled client holds a server connection.

Library internals used elsewhere (not tricks for speed, but what an upgrade can break):
``api/blueprint.py`` overrides flask-smorest's webargs parser hooks ``_get_schema`` (one
schema instance per class: ~100 us per request) and ``_raw_load_json`` (refuse JSON the
parser cannot hold before parsing); ``api/apidoc.py`` writes to flask-smorest's
``_apidoc`` store on view functions (error declarations); ``tenancy/migrate.py`` calls
Alembic's ``ScriptDirectory._upgrade_revs`` (the steps from a tenant's revision to head).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import psycopg
from psycopg import ClientCursor
from psycopg.pq import TransactionStatus
from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import ExecutionContext
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session

# Execution option naming a ``Rewrite`` for one statement (trick 4).
REWRITE_OPTION = "clinai_rewrite"
# Engine execution option: the transaction pooler in front of the engine's server, if any
# (``tenancy.database.create_app_engine`` sets it from ``DATABASE_APP_POOLER``).
POOLER_OPTION = "clinai_pooler"
Rewrite = Callable[[str, Mapping[str, Any]], tuple[str, Mapping[str, Any]]]


def driver_of(connection: Connection) -> psycopg.Connection[Any]:
    driver = connection.connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    return driver


def begin_with(connection: Connection, statement: str,
               params: Sequence[Any]) -> psycopg.Cursor[Any]:
    """Run ``statement`` first in ``connection``'s transaction, with its BEGIN when nothing
    was sent yet (trick 1); return the cursor on ``statement``'s result.

    A connection configured with an isolation level or read-only mode keeps the driver's
    own BEGIN, which carries them; inside an open transaction the statement runs alone.
    The connection stays in autocommit mode until it goes back to the pool.
    """
    driver = driver_of(connection)
    if (driver.info.transaction_status == TransactionStatus.IDLE
            and driver.isolation_level is None and driver.read_only is None):
        driver.autocommit = True
        cursor: psycopg.Cursor[Any] = ClientCursor(driver)
        cursor.execute("BEGIN; " + statement, params)
        cursor.nextset()
        return cursor
    return driver.execute(statement, params)


def restore_implicit_transactions(engine: Engine) -> None:
    """Turn the driver's implicit BEGIN back on at every checkout from ``engine``'s pool
    (trick 2)."""

    @event.listens_for(engine, "checkout")
    def _implicit_transactions(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        if dbapi_conn.autocommit:
            try:
                dbapi_conn.autocommit = False
            except psycopg.Error as exc:  # not idle: a broken connection; the pool retries
                raise DisconnectionError("connection not idle at checkout") from exc


def commit_with(session: Session, statement: str, params: Sequence[Any]) -> None:
    """Flush ``session``, then send ``statement`` and COMMIT as one message (trick 3)."""
    session.flush()
    driver = driver_of(session.connection())
    ClientCursor(driver).execute(statement + "; COMMIT", params)
    session.commit()  # SQLAlchemy's bookkeeping; the transaction has already ended


def _rewrite(_conn: Connection, _cursor: Any, statement: str, parameters: Any,
             context: ExecutionContext | None, executemany: bool) -> tuple[str, Any]:
    rewrite = context.execution_options.get(REWRITE_OPTION) if context is not None else None
    if rewrite is None or executemany:
        return statement, parameters
    return rewrite(statement, parameters)  # type: ignore[no-any-return]


def install_statement_rewrite(engine: Engine) -> None:
    """Let a statement executed with ``execution_options={REWRITE_OPTION: f}`` be sent as
    ``f(statement, parameters)`` on ``engine`` (trick 4). Callers must check that ``f``
    ran if skipping it would be unsafe."""
    event.listen(engine, "before_cursor_execute", _rewrite, retval=True)


class Statements(Protocol):
    """Where ``pipelined`` queues a transaction's statements: ``execute`` returns an object
    whose ``fetchone``/``fetchall`` work after the block."""

    def execute(self, query: str, params: Any = None) -> Any: ...


class _Result:
    """One statement's rows, filled when the batch has been sent."""

    rows: list[tuple[Any, ...]] | None = None

    def fetchall(self) -> list[tuple[Any, ...]]:
        if self.rows is None:
            raise RuntimeError("results are available after the pipelined block")
        return self.rows

    def fetchone(self) -> tuple[Any, ...] | None:
        rows = self.fetchall()
        return rows[0] if rows else None


class _Batch:
    """A transaction's statements, bound client-side and sent as one simple-protocol
    message ``BEGIN; ...; COMMIT`` (trick 5 behind a transaction pooler). A statement that
    fails stops the rest; the COMMIT never runs and the connection's return to the pool
    rolls the transaction back."""

    def __init__(self, driver: psycopg.Connection[Any]) -> None:
        self._driver = driver
        self._cursor: psycopg.ClientCursor[Any] = ClientCursor(driver)
        self._statements: list[str] = []
        self._results: list[_Result] = []

    def execute(self, query: str, params: Any = None) -> _Result:
        self._statements.append(self._cursor.mogrify(query, params))
        result = _Result()
        self._results.append(result)
        return result

    def send(self) -> None:
        driver, cursor = self._driver, self._cursor
        if driver.info.transaction_status != TransactionStatus.IDLE:
            raise RuntimeError("a pipelined transaction needs an idle connection")
        driver.autocommit = True  # the BEGIN is ours (trick 2 undoes this at checkout)
        # One statement per line: a statement's trailing comment ends with its line.
        cursor.execute("BEGIN;\n" + ";\n".join(self._statements) + ";\nCOMMIT")
        cursor.nextset()  # BEGIN's
        for result in self._results:
            result.rows = cursor.fetchall() if cursor.description is not None else []
            cursor.nextset()


@contextmanager
def pipelined(engine: Engine) -> Iterator[Statements]:
    """One transaction in one round trip (trick 5): everything executed in the block is
    sent at its end; fetch results after the block. Directly: psycopg's pipeline mode,
    and the block gets the psycopg connection. Behind a transaction pooler: one
    simple-protocol message, and the block gets a ``Statements`` that queues them."""
    with engine.connect() as conn:
        driver = driver_of(conn)
        if engine.get_execution_options().get(POOLER_OPTION) == "transaction":
            batch = _Batch(driver)
            yield batch
            batch.send()
            return
        with driver.pipeline(), driver.transaction():
            yield driver
