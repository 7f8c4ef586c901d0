"""Requests through a transaction-mode pooler: Debian's PgBouncer, as Azure's built-in one.

This module's ``app`` connects its requests to PgBouncer (``DATABASE_APP_URL``,
``DATABASE_APP_POOLER=transaction``) in transaction mode with three server connections,
so consecutive transactions of one request usually run on different server connections,
and one server connection serves many tenants' requests in turn. Migrations and
provisioning keep their direct connection (``DATABASE_URL``).

Every test of ``test_isolation.py`` (the outsider matrix) and the pool's two-tenant
concurrency test run here again with this app; then a load test hammers the list and a
write path of two practices from many threads, AI replies are metered (the ledger's
one-round-trip transactions) and streamed (SSE), a billing download reads a server-side
cursor, and afterwards no server connection keeps anything of a request. Last, the
ledger's transactions leave no server connection linked to an idle client even when the
client's last message arrives late (a proxy holds it back), and roll back whole.

Without the ``pgbouncer`` binary the tests skip locally and fail in CI (``CI`` set;
``.ci/run`` installs it).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from flask import Flask
from sqlalchemy.engine import make_url

from api import create_app
from api.db import get_db
from tenancy.context import enter_as_platform
from tenancy.database import DatabaseConfig, create_app_engine
from tenancy.fastpath import pipelined
from tests.conftest import APP_PASSWORD, APP_ROLE, _conninfo, app_config
from tests.pgbouncer import Bouncer, binary, late_flush_proxy, pgbouncer

if binary() is None and os.environ.get("CI"):
    raise RuntimeError("Debian's pgbouncer is required in CI (.ci/run installs it)")
pytestmark = pytest.mark.skipif(binary() is None, reason="no pgbouncer on this machine")

# The isolation matrix and the pool's concurrency test, again, with this module's app.
from tests.api.test_isolation import *  # noqa: E402, F403
from tests.api.test_pool import test_concurrent_requests_of_two_tenants  # noqa: E402, F401

SERVER_CONNECTIONS = 3


@pytest.fixture(scope="module")
def bouncer(database_url: str) -> Iterator[Bouncer]:
    with pgbouncer(database_url, [APP_ROLE], pool_size=SERVER_CONNECTIONS) as running:
        yield running


@pytest.fixture(scope="module")
def app(app: Flask, bouncer: Bouncer, database_url: str, issuer: Any) -> Iterator[Flask]:
    """This module's app: requests through PgBouncer (the session's ``app`` migrated the
    database and keeps serving the other modules directly)."""
    pooled = create_app(app_config(
        database_url, issuer, DATABASE_POOL_SIZE=8,
        DATABASE_APP_URL=bouncer.url(database_url, username=APP_ROLE, password=APP_PASSWORD),
        DATABASE_APP_POOLER="transaction"))
    yield pooled
    pooled.extensions["clinai_exports"].shutdown()
    pooled.extensions["clinai_db"].dispose()


def test_requests_go_through_the_pooler(app: Flask, bouncer: Bouncer) -> None:
    with app.app_context():
        engines = [get_db().engine, *get_db().extra_engines]
    assert len(engines) == 2  # requests, and the LLM ledger's own pool
    for engine in engines:
        assert engine.url.port == bouncer.port
        with engine.connect() as conn:
            # psycopg never prepares a statement on a server connection it does not keep.
            assert conn.connection.driver_connection.prepare_threshold is None


_STATE = ("SELECT pg_backend_pid(), coalesce(current_setting('app.tenant_id', true), ''), "
          "current_setting('search_path'), current_setting('synchronous_commit'), "
          "current_user, (SELECT count(*) FROM pg_prepared_statements), "
          "(SELECT count(*) FROM pg_cursors), "
          "(SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
          "AND pid = pg_backend_pid()), pg_my_temp_schema() <> 0, "
          "(SELECT count(*) FROM pg_listening_channels())")


def _assert_nothing_left(bouncer: Bouncer, database_url: str,
                         admin_conn: psycopg.Connection[Any]) -> None:
    """Every server connection of the app role's pool is as a new one would be: no tenant,
    no session setting, prepared statement, cursor, advisory lock, temporary table or
    LISTEN left by the requests it served."""
    url = _conninfo(bouncer.url(database_url, username=APP_ROLE, password=APP_PASSWORD))
    clients = [psycopg.connect(url, prepare_threshold=None)
               for _ in range(SERVER_CONNECTIONS)]
    try:
        # Each client opens a transaction and holds it: together they hold every server
        # connection the pool may have.
        states = [conn.execute(_STATE).fetchone() for conn in clients]
    finally:
        for conn in clients:
            conn.rollback()  # (closing a client inside a transaction drops its server)
            conn.close()
    assert len({state[0] for state in states}) == SERVER_CONNECTIONS
    for _pid, tenant, path, sync, user, *held in states:
        assert (tenant, sync, user, held) == ("", "on", APP_ROLE, [0, 0, 0, False, 0])
        assert "t_" not in path
    # No backend of the app role is left inside a transaction or holds an advisory lock.
    rows = admin_conn.execute(
        "SELECT a.state, count(l.*) FROM pg_stat_activity a LEFT JOIN pg_locks l ON "
        "l.pid = a.pid AND l.locktype = 'advisory' WHERE a.usename = %s "
        "AND a.datname = current_database() GROUP BY a.pid, a.state", (APP_ROLE,)).fetchall()
    assert rows and all(row == ("idle", 0) for row in rows), rows


def test_load_of_two_practices(app: Flask, make_practice: Any, bouncer: Bouncer,
                               database_url: str, admin_conn: psycopg.Connection[Any]) -> None:
    """Threads list and create clients of two practices at once: every response is 200
    or 201, each practice only ever sees its own clients, and every read and write is in
    the practice's own audit trail."""
    practices = {"A": make_practice("Last A"), "B": make_practice("Last B")}
    seeds = {key: {practice.create_client(last_name=f"{key}-seed-{i}", ai_consent=False)["id"]
                   for i in range(3)} for key, practice in practices.items()}
    created = {key: set(ids) for key, ids in seeds.items()}
    lock = threading.Lock()
    failures: list[str] = []
    counts = {"GET": 0, "POST": 0}
    reads, writes = 40, 12

    def reader(key: str) -> None:
        client, headers = app.test_client(), practices[key].admin.headers
        other = "B" if key == "A" else "A"
        for _ in range(reads):
            response = client.get("/api/v1/clients?page_size=100", headers=headers)
            with lock:
                counts["GET"] += 1
                if response.status_code != 200:
                    failures.append(f"GET {key}: {response.status_code} {response.json}")
                    continue
                names = sorted(c["last_name"] for c in response.json)
                ids = {c["id"] for c in response.json}
                # Only its own clients, and at least those that existed before the load.
                if (any(not n.startswith(f"{key}-") for n in names) or ids & created[other]
                        or not seeds[key] <= ids):
                    failures.append(f"GET {key} saw {names}")

    def writer(key: str, worker: int) -> None:
        client, headers = app.test_client(), practices[key].admin.headers
        for i in range(writes):
            response = client.post("/api/v1/clients", headers=headers, json={
                "first_name": "Load", "last_name": f"{key}-w{worker}-{i}"})
            with lock:
                counts["POST"] += 1
                if response.status_code != 201:
                    failures.append(f"POST {key}: {response.status_code} {response.json}")
                else:
                    created[key].add(response.json["id"])

    threads = [threading.Thread(target=reader, args=(k,)) for k in ("A", "B") * 3]
    threads += [threading.Thread(target=writer, args=(k, w)) for k in ("A", "B")
                for w in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert counts == {"GET": 6 * reads, "POST": 4 * writes}
    for key, practice in practices.items():
        listed = practice.client.get("/api/v1/clients?page_size=100",
                                     headers=practice.admin.headers)
        assert {c["id"] for c in listed.json} == created[key]
        assert len(created[key]) == 3 + 2 * writes
        # Each request's audit event, in the practice's own schema: a create per client,
        # a list event per read (the load's, then the one above).
        audit = dict(admin_conn.execute(
            f"SELECT action, count(*) FROM t_{practice.id.hex}.audit_events "
            "WHERE action IN ('client.create', 'client.list') GROUP BY action").fetchall())
        assert audit == {"client.create": 3 + 2 * writes, "client.list": 3 * reads + 1}
        foreign = admin_conn.execute(
            f"SELECT count(*) FROM t_{practice.id.hex}.audit_events "
            "WHERE resource_ids && %s::uuid[] OR tenant_id <> %s",
            (sorted(created["B" if key == "A" else "A"]), practice.id)).fetchone()
        assert foreign == (0,)
    _assert_nothing_left(bouncer, database_url, admin_conn)


def _parse_sse(body: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def test_metered_and_streamed_replies(app: Flask, make_practice: Any, bouncer: Bouncer,
                                      database_url: str,
                                      admin_conn: psycopg.Connection[Any]) -> None:
    """The ledger's pipelined reserve and settle, streamed replies saved in a session of
    their own, and the billing download's server-side cursor, from threads at once."""
    practices = [make_practice("Chat A"), make_practice("Chat B")]
    conversations = {}
    for practice in practices:
        client = practice.create_client(first_name="Quentin", last_name="Quenstedt")
        conversations[practice.id] = practice.client.post(
            f"/api/v1/clients/{client['id']}/conversations", json={},
            headers=practice.admin.headers).json["id"]
    failures: list[str] = []
    replies = 4

    def chat(practice: Any, streamed: bool) -> None:
        client = app.test_client()
        path = f"/api/v1/conversations/{conversations[practice.id]}/messages"
        for i in range(replies):
            headers = dict(practice.admin.headers)
            if streamed:
                headers["Accept"] = "text/event-stream"
            response = client.post(path, json={"content": f"How is Quenstedt? ({i})"},
                                   headers=headers)
            if response.status_code != 201:
                failures.append(f"{response.status_code} {response.get_data(as_text=True)}")
            elif streamed and _parse_sse(response.get_data(as_text=True))[-1][0] != "done":
                failures.append(response.get_data(as_text=True)[-300:])

    threads = [threading.Thread(target=chat, args=(p, s)) for p in practices
               for s in (False, True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    for practice in practices:
        c, h = practice.client, practice.admin.headers
        history = c.get(f"/api/v1/conversations/{conversations[practice.id]}/messages"
                        "?page_size=100", headers=h).json
        assert [m["role"] for m in history].count("assistant") == 2 * replies
        usage = c.get("/api/v1/admin/usage", headers=h).json
        assert usage["by_feature"]["case_chat"]["calls"] == 2 * replies
        assert usage["budget"]["reserved"] == 0
        assert usage["total_tokens"] == usage["budget"]["used"] > 0
        download = c.get("/api/v1/admin/usage-exports?format=csv", headers=h)
        assert download.status_code == 200
        lines = download.get_data(as_text=True).splitlines()
        assert len(lines) >= 2 and all(str(practice.id) in line for line in lines[1:])
        assert sum(int(line.split(",")[4]) for line in lines[1:]) == 2 * replies
    _assert_nothing_left(bouncer, database_url, admin_conn)


class _Waiter:
    """A new client asking PgBouncer for a server connection (in a thread)."""

    def __init__(self, bouncer: Bouncer, database_url: str) -> None:
        url = bouncer.url(database_url, username=APP_ROLE, password=APP_PASSWORD)
        self.conn = psycopg.connect(_conninfo(url), autocommit=True, prepare_threshold=None)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._ask, daemon=True)
        self.thread.start()

    def _ask(self) -> None:
        try:
            self.conn.execute("SELECT 1")
            self.done.set()
        except psycopg.Error:
            pass

    def served(self, within: float) -> bool:
        return self.done.wait(within)

    def close(self) -> None:
        self.thread.join(10)
        self.conn.close()


def _app_engine(url: str, database_url: str) -> Any:
    return create_app_engine(DatabaseConfig(
        admin_url=database_url, app_url=url, app_role=APP_ROLE, app_pooler="transaction"))


def test_a_pipelined_transaction_leaves_no_server_linked(database_url: str,
                                                         make_practice: Any) -> None:
    """The ledger's one-round-trip transactions (``tenancy.fastpath.pipelined``) behind a
    pooler with a single server connection: afterwards another client gets it at once.

    The control shows why they are not in psycopg's pipeline mode there: a pipeline ends
    with a Flush after its last Sync; when the Flush reaches PgBouncer after the Sync's
    ReadyForQuery released the server connection (here: held back 50 ms by a proxy; under
    load: a busy client), PgBouncer links a server connection to the lone Flush and keeps
    it until that client speaks again."""
    tenant = make_practice("Eine Verbindung").id
    with pgbouncer(database_url, [APP_ROLE], pool_size=1) as single, \
            late_flush_proxy(single.port) as port:
        late = make_url(single.url(database_url, username=APP_ROLE, password=APP_PASSWORD)
                        ).set(port=port).render_as_string(hide_password=False)
        pinned = psycopg.connect(_conninfo(late), prepare_threshold=None)
        with pinned.pipeline(), pinned.transaction():
            pinned.execute("SELECT 1")
        time.sleep(0.3)  # the held-back Flush arrives
        waiter = _Waiter(single, database_url)
        try:
            assert not waiter.served(1.0), "PgBouncer released the server after a late Flush"
            pinned.close()  # the pinned client goes: PgBouncer drops its server connection
            assert waiter.served(10.0)
        finally:
            pinned.close()
            waiter.close()

        engine = _app_engine(late, database_url)
        try:
            for _ in range(3):
                with pipelined(engine) as statements:
                    enter_as_platform(statements, tenant, public_only=True)
                    first = statements.execute("SELECT current_setting('app.tenant_id')")
                    second = statements.execute("SELECT %(a)s::int + %(b)s::int",
                                                {"a": 40, "b": 2})
                assert (first.fetchone(), second.fetchall()) == ((str(tenant),), [(42,)])
                time.sleep(0.3)
                waiter = _Waiter(single, database_url)
                try:
                    assert waiter.served(2.0), "a pipelined transaction left a server linked"
                finally:
                    engine.dispose()  # (unblocks the waiter if it failed)
                    waiter.close()
        finally:
            engine.dispose()


def test_a_failed_pipelined_transaction_rolls_back(app: Flask, bouncer: Bouncer,
                                                   database_url: str, make_practice: Any,
                                                   admin_conn: psycopg.Connection[Any]) -> None:
    tenant = make_practice("Halb und halb").id
    admin_conn.execute("DELETE FROM public.llm_budgets WHERE tenant_id = %s", (tenant,))
    engine = _app_engine(bouncer.url(database_url, username=APP_ROLE, password=APP_PASSWORD),
                         database_url)
    insert = ("INSERT INTO public.llm_budgets (tenant_id, period) VALUES (%(t)s, '2026-01') "
              "ON CONFLICT (tenant_id) DO NOTHING RETURNING period")
    try:
        with pytest.raises(psycopg.errors.DivisionByZero), pipelined(engine) as statements:
            enter_as_platform(statements, tenant, public_only=True)
            inserted = statements.execute(insert, {"t": tenant})
            statements.execute("SELECT 1 / %(zero)s::int", {"zero": 0})
        with pytest.raises(RuntimeError, match="after the pipelined block"):
            inserted.fetchone()
        assert admin_conn.execute("SELECT count(*) FROM public.llm_budgets WHERE tenant_id = %s",
                                  (tenant,)).fetchone() == (0,)
        # The connection went back to the pool rolled back, and works again.
        with pipelined(engine) as statements:
            enter_as_platform(statements, tenant, public_only=True)
            inserted = statements.execute(insert + " -- a statement may end in a comment",
                                          {"t": tenant})
        assert inserted.fetchall() == [("2026-01",)]
    finally:
        engine.dispose()
        admin_conn.execute("DELETE FROM public.llm_budgets WHERE tenant_id = %s", (tenant,))


class _Rotating:
    """Key Vault stand-in: DATABASE_APP_URL is rotating (the engine's ``do_connect`` hook)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def rotating(self, setting: str) -> bool:
        return setting == "DATABASE_APP_URL"

    def get(self, setting: str, default: str | None = None) -> str | None:
        return self.url if setting == "DATABASE_APP_URL" else default

    def refresh(self, setting: str) -> bool:
        return False


@pytest.mark.parametrize("rotating", [False, True])
def test_only_a_pooled_engine_turns_prepared_statements_off(app: Flask, bouncer: Bouncer,
                                                            database_url: str,
                                                            rotating: bool) -> None:
    pooled = bouncer.url(database_url, username=APP_ROLE, password=APP_PASSWORD)
    direct = make_url(database_url).set(username=APP_ROLE, password=APP_PASSWORD
                                        ).render_as_string(hide_password=False)
    for url, pooler, threshold in ((pooled, "transaction", None), (direct, None, 5)):
        config = DatabaseConfig(admin_url=database_url, app_url=None if rotating else url,
                                app_role=APP_ROLE, app_pooler=pooler,
                                secrets=_Rotating(url) if rotating else None)
        engine = create_app_engine(config)
        try:
            with engine.connect() as conn:
                assert conn.connection.driver_connection.prepare_threshold == threshold
                assert conn.connection.driver_connection.info.port == make_url(url).port
        finally:
            engine.dispose()
