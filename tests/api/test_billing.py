"""The billing team's cross-tenant usage summary (GET /api/v1/billing/usage).

Practices use AI through the API (the offline simulator); the summary is compared with
the ledger as the database superuser sees it, summed here in Python. The route's app
lists two billing principals (``BILLING_PRINCIPALS``, a comma-separated string as the
environment gives it); the session-wide app lists none.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from flask import Flask

from api import create_app
from api.settings import ConfigError, parse_principals
from tests.conftest import APP_ROLE, Practice, app_config, assert_error
from tests.llm.test_metering import make_case, post_draft

PRINCIPAL = "billing-team-1"
TOKENS = ("prompt_tokens", "cached_tokens", "completion_tokens", "estimated_tokens")
URL = "/api/v1/billing/usage"


@pytest.fixture(scope="module")
def billing_app(app: Flask, database_url: str, issuer: Any) -> Iterator[Flask]:
    """The app over the same (migrated) database, with billing principals configured."""
    application = create_app(app_config(
        database_url, issuer, BILLING_PRINCIPALS=f" {PRINCIPAL} ,billing-team-2,,"))
    yield application
    application.extensions["clinai_exports"].shutdown()
    application.extensions["clinai_db"].dispose()


@pytest.fixture
def billing(billing_app: Flask, issuer: Any) -> Any:
    """GET the summary as the billing principal (a token without a practice)."""
    http = billing_app.test_client()
    headers = {"Authorization": f"Bearer {issuer.token(PRINCIPAL)}"}

    def get(period: str | None = None) -> dict[str, Any]:
        response = http.get(URL, headers=headers,
                            query_string={"period": period} if period else None)
        assert response.status_code == 200, response.get_json()
        body: dict[str, Any] = response.get_json()
        return body

    return get


def this_month() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m")


def ledger_totals(admin_conn: psycopg.Connection[Any], tenant_id: uuid.UUID,
                  period: str | None = None) -> dict[str, dict[str, Any]]:
    """The tenant's raw ledger rows summed per currency in Python: all of them, or those
    that started in ``period`` (UTC)."""
    rows = admin_conn.execute(
        "SELECT currency, usage_source, prompt_tokens, cached_tokens, completion_tokens, "
        "cost, started_at FROM public.llm_usage WHERE tenant_id = %s", (tenant_id,)).fetchall()
    totals: dict[str, dict[str, Any]] = {}
    for currency, source, prompt, cached, completion, cost, started in rows:
        if period is not None and started.astimezone(dt.UTC).strftime("%Y-%m") != period:
            continue
        t = totals.setdefault(currency.strip(), {"requests": 0, **dict.fromkeys(TOKENS, 0),
                                                 "cost": Decimal(0)})
        t["requests"] += 1
        t["cost"] += cost
        if source == "provider":
            t["prompt_tokens"] += prompt
            t["cached_tokens"] += cached
            t["completion_tokens"] += completion
        elif source == "estimated":
            t["estimated_tokens"] += prompt + completion
    return totals


def served(summary: dict[str, Any], tenant_id: uuid.UUID) -> dict[str, dict[str, Any]]:
    """The summary's entries of one tenant, per currency, cost as a Decimal."""
    return {e["currency"]: {"requests": e["requests"], **{k: e[k] for k in TOKENS},
                            "cost": Decimal(e["cost"])}
            for e in summary["practices"] if e["tenant_id"] == str(tenant_id)}


def insert_row(admin_conn: psycopg.Connection[Any], tenant_id: uuid.UUID, *,
               source: str = "provider", currency: str = "EUR", prompt: int = 1000,
               cached: int = 0, completion: int = 100, cost: str = "0.00010000",
               created_at: dt.datetime | None = None) -> None:
    """A ledger row written as the superuser (as the gateway would have metered it)."""
    admin_conn.execute(
        "INSERT INTO public.llm_usage (tenant_id, user_id, feature, deployment, "
        "prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, cost, latency_ms, "
        "attempts, status, usage_source, price_version, currency, created_at) "
        "VALUES (%s, 'someone', 'note_draft', 'gpt-4o-mini', %s, %s, %s, 0, %s, 10, 1, "
        "%s, %s, %s, %s, coalesce(%s::timestamptz, now()))",
        (tenant_id, prompt, completion, cached, Decimal(cost),
         "ok" if source == "provider" else "failed", source,
         "legacy-usd" if currency == "USD" else "test-eur", currency, created_at))


def use_ai(practice: Practice) -> None:
    """A note draft and a case chat message through the API (the simulator answers)."""
    client, session = make_case(practice)
    h = practice.admin.headers
    assert post_draft(practice.client, h, session["id"]).status_code == 201
    conversation = practice.client.post(f"/api/v1/clients/{client['id']}/conversations",
                                        headers=h)
    assert conversation.status_code == 201, conversation.json
    reply = practice.client.post(f"/api/v1/conversations/{conversation.json['id']}/messages",
                                 json={"content": "How is Quenstedt doing?"}, headers=h)
    assert reply.status_code == 201, reply.json


# -- totals ----------------------------------------------------------------------------


def test_summary_lists_every_practice_with_its_ledger_totals(make_practice, billing,
                                                             admin_conn):
    first, second = make_practice("Praxis Eins"), make_practice("Praxis Zwei")
    use_ai(first)
    use_ai(second)
    use_ai(second)
    # A broken-off stream of the first practice, counted locally (its cached count is
    # made non-zero here so that mixing it into the provider counts would show), and a
    # call of the second rated before prices were versioned (legacy USD).
    insert_row(admin_conn, first.id, source="estimated", prompt=1234, cached=512,
               completion=56, cost="0.00020000")
    insert_row(admin_conn, second.id, currency="USD", prompt=700, cached=0, completion=70,
               cost="0.00015000")
    period = this_month()
    summary = billing(period)
    assert summary["period"] == period
    assert billing() == summary  # the default period is the current month (UTC)

    ledger_first = ledger_totals(admin_conn, first.id, period)
    ledger_second = ledger_totals(admin_conn, second.id, period)
    assert set(ledger_first) == {"EUR"} and set(ledger_second) == {"EUR", "USD"}
    assert served(summary, first.id) == ledger_first
    assert served(summary, second.id) == ledger_second
    assert ledger_second["EUR"]["requests"] == 4 and ledger_first["EUR"]["requests"] == 3
    # The estimated row's tokens are only in estimated_tokens; the provider counts are
    # those of the two API calls alone.
    eur = served(summary, first.id)["EUR"]
    assert eur["estimated_tokens"] == 1234 + 56
    provider_rows = admin_conn.execute(
        "SELECT sum(prompt_tokens), sum(cached_tokens), sum(completion_tokens) "
        "FROM public.llm_usage WHERE tenant_id = %s AND usage_source = 'provider'",
        (first.id,)).fetchone()
    assert (eur["prompt_tokens"], eur["cached_tokens"], eur["completion_tokens"]) == tuple(
        provider_rows)
    assert eur["prompt_tokens"] > 0 and eur["completion_tokens"] > 0

    entries = {e["tenant_id"]: e for e in summary["practices"] if e["currency"] == "EUR"}
    assert (entries[str(first.id)]["name"], entries[str(first.id)]["status"]) == (
        "Praxis Eins", "active")
    assert isinstance(entries[str(first.id)]["cost"], str)
    keys = [(e["tenant_id"], e["currency"]) for e in summary["practices"]]
    assert keys == sorted(keys) and len(keys) == len(set(keys))
    # Totals per currency are the entries' sums; EUR and USD are never added.
    for currency, total in summary["totals"].items():
        mine = [e for e in summary["practices"] if e["currency"] == currency]
        assert total["practices"] == len(mine)
        for key in ("requests", *TOKENS):
            assert total[key] == sum(e[key] for e in mine), (currency, key)
        assert Decimal(total["cost"]) == sum(Decimal(e["cost"]) for e in mine)
    assert {"EUR", "USD"} <= set(summary["totals"])


def test_a_month_is_its_utc_bounds(make_practice, billing, admin_conn):
    practice = make_practice("Praxis Vergangen")
    start = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)
    inside = [start, start + dt.timedelta(days=30, hours=23, minutes=59, seconds=59)]
    outside = [start - dt.timedelta(microseconds=1), dt.datetime(2025, 4, 1, tzinfo=dt.UTC)]
    for moment in inside:
        insert_row(admin_conn, practice.id, created_at=moment, prompt=100, cached=10,
                   completion=10, cost="0.00000100")
    for moment in outside:
        insert_row(admin_conn, practice.id, created_at=moment, prompt=9999, cost="1.00000000")
    march = served(billing("2025-03"), practice.id)
    assert march == {"EUR": {"requests": 2, "prompt_tokens": 200, "cached_tokens": 20,
                             "completion_tokens": 20, "estimated_tokens": 0,
                             "cost": Decimal("0.00000200")}}
    assert march == ledger_totals(admin_conn, practice.id, "2025-03")
    assert served(billing("2025-02"), practice.id)["EUR"]["requests"] == 1
    assert served(billing("2025-05"), practice.id) == {}


def test_an_offboarded_practice_is_still_billed(make_practice, billing, admin_conn):
    practice = make_practice("Praxis Abgemeldet")
    use_ai(practice)
    before = served(billing(this_month()), practice.id)
    assert before["EUR"]["requests"] == 2
    done = practice.client.delete("/api/v1/admin/tenant", headers=practice.admin.headers,
                                  json={"confirm": "Praxis Abgemeldet"})
    assert done.status_code == 200, done.json
    summary = billing(this_month())
    assert served(summary, practice.id) == before
    assert served(summary, practice.id) == ledger_totals(admin_conn, practice.id, this_month())
    entry = next(e for e in summary["practices"] if e["tenant_id"] == str(practice.id))
    assert (entry["name"], entry["status"]) == ("Praxis Abgemeldet", "erased")


# -- who may read ----------------------------------------------------------------------


def test_only_billing_principals_may_read(app, billing_app, make_practice, issuer):
    practice = make_practice("Praxis Neugierig")
    therapist = practice.add_member("therapist")
    http = billing_app.test_client()
    for who in (practice.admin.headers, therapist.headers,
                {"Authorization": f"Bearer {issuer.token('someone-without-a-practice')}"}):
        assert_error(http.get(URL, headers=who), 403, "not_billing_principal")
    # A practice admin is refused even for a well-formed period, and before the period is
    # looked at.
    assert_error(http.get(URL, headers=practice.admin.headers,
                          query_string={"period": "2026-13"}), 403, "not_billing_principal")
    assert_error(http.get(URL), 401, "missing_token")
    # The second listed subject may read too.
    other = {"Authorization": f"Bearer {issuer.token('billing-team-2')}"}
    assert http.get(URL, headers=other).status_code == 200
    # The session-wide app lists no principal: nobody may read there.
    principal = {"Authorization": f"Bearer {issuer.token(PRINCIPAL)}"}
    assert_error(app.test_client().get(URL, headers=principal), 403, "not_billing_principal")


@pytest.mark.parametrize("period", ["2026-13", "26-01", "2026-1", "2026-00", "2026-01-01",
                                    "x"])
def test_period_must_be_a_month(billing_app, issuer, period):
    response = billing_app.test_client().get(
        URL, query_string={"period": period},
        headers={"Authorization": f"Bearer {issuer.token(PRINCIPAL)}"})
    body = assert_error(response, 422, "validation_failed")
    assert "period" in body["errors"]["query"]


def test_billing_principals_setting_is_parsed():
    assert parse_principals("") == frozenset()
    assert parse_principals(None) == frozenset()
    assert parse_principals(" a, b ,,a") == frozenset({"a", "b"})
    assert parse_principals(["x"]) == frozenset({"x"})
    with pytest.raises(ConfigError):
        parse_principals("ok,bad\x00subject")


# -- the function relaxed nothing -------------------------------------------------------


def test_the_app_role_still_sees_one_practice_only(make_practice, admin_conn, app_role_conn):
    first, second = make_practice("Praxis A"), make_practice("Praxis B")
    insert_row(admin_conn, first.id)
    insert_row(admin_conn, second.id)
    assert admin_conn.execute("SELECT count(DISTINCT tenant_id) FROM public.llm_usage "
                              "WHERE tenant_id = ANY(%s)",
                              ([first.id, second.id],)).fetchone() == (2,)
    with app_role_conn.transaction():
        app_role_conn.execute("SELECT set_config('app.tenant_id', %s, true)", (str(first.id),))
        seen = {row[0] for row in app_role_conn.execute(
            "SELECT tenant_id FROM public.llm_usage").fetchall()}
        assert seen == {first.id}
        # Nor can it change the ledger.
        with pytest.raises(psycopg.errors.InsufficientPrivilege), \
                app_role_conn.transaction():
            app_role_conn.execute("UPDATE public.llm_usage SET cost = 0")
    with app_role_conn.transaction():  # no practice context: nothing
        assert app_role_conn.execute("SELECT count(*) FROM public.llm_usage").fetchone() == (0,)

    # The function is the only way across: SECURITY DEFINER, pinned search_path, executable
    # by the app role and not by PUBLIC; the app role's table privileges are unchanged.
    fn = "public.billing_usage_summary(text)"
    row = admin_conn.execute(
        "SELECT prosecdef, proconfig, has_function_privilege(%s, %s::regprocedure, 'EXECUTE'),"
        " has_function_privilege('public', %s::regprocedure, 'EXECUTE') "
        "FROM pg_proc WHERE oid = %s::regprocedure", (APP_ROLE, fn, fn, fn)).fetchone()
    assert row == (True, ["search_path=pg_catalog, public"], True, False)
    privileges = admin_conn.execute(
        "SELECT table_name, string_agg(privilege_type, ',' ORDER BY privilege_type) "
        "FROM information_schema.role_table_grants WHERE grantee = %s "
        "AND table_schema = 'public' GROUP BY table_name ORDER BY table_name",
        (APP_ROLE,)).fetchall()
    assert dict(privileges) == {
        "billing_periods": "SELECT",
        "invitations": "DELETE,INSERT,SELECT,UPDATE", "llm_budgets": "INSERT,SELECT,UPDATE",
        "llm_usage": "INSERT,SELECT", "memberships": "DELETE,INSERT,SELECT,UPDATE",
        "tenants": "SELECT"}
    policies = admin_conn.execute(
        "SELECT polname, polroles::regrole[]::text[] FROM pg_policy "
        "WHERE polrelid = 'public.llm_usage'::regclass ORDER BY polname").fetchall()
    assert [name for name, _roles in policies] == ["platform_access", "tenant_isolation"]
    assert APP_ROLE not in dict(policies)["platform_access"]
    assert admin_conn.execute("SELECT rolbypassrls FROM pg_roles WHERE rolname = %s",
                              (APP_ROLE,)).fetchone() == (False,)
