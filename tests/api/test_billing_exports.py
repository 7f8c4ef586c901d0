"""The billing month's files (flask usage export / close) and the practice's download.

Ledger rows are written as the database superuser, as the gateway would have metered
them, with the start time that decides their month; expected figures are summed here in
Python from the raw rows. Each test uses months of its own (the run's database is shared
by the tests of a worker, and a closed month stays closed).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import threading
import time
import uuid
from collections import defaultdict
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from flask import Flask

from api.billing.files import FOCUS_COLUMNS, LINE_COLUMNS, SUMMARY_COLUMNS
from api.billing.periods import BillingError, close_period
from storage.base import BILLING_CONTAINER
from tests.api.test_billing import ledger_totals as ledger
from tests.conftest import Practice, _conninfo, assert_error

TOKENS = ("prompt_tokens", "cached_tokens", "completion_tokens", "estimated_tokens")
URL = "/api/v1/admin/usage-exports"


def at(period: str, day: int, hour: int = 12) -> dt.datetime:
    year, month = map(int, period.split("-"))
    return dt.datetime(year, month, day, hour, tzinfo=dt.UTC)


def add_row(conn: psycopg.Connection[Any], tenant: uuid.UUID, started: dt.datetime, *,
            feature: str = "note_draft", source: str = "provider", prompt: int = 1000,
            cached: int = 0, completion: int = 100, cost: str = "0.00010000",
            currency: str = "EUR", version: str = "test-eur-1",
            metered: dt.datetime | None = None) -> None:
    status = {"provider": "ok", "estimated": "disconnected", "none": "failed"}[source]
    conn.execute(
        "INSERT INTO public.llm_usage (tenant_id, user_id, feature, deployment, "
        "prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, cost, latency_ms, "
        "attempts, status, usage_source, price_version, currency, started_at, created_at) "
        "VALUES (%s, 'someone', %s, 'gpt-4o-mini', %s, %s, %s, 0, %s, 10, 1, %s, %s, %s, %s, "
        "%s, coalesce(%s, now()))",
        (tenant, feature, prompt, completion, cached, Decimal(cost), status, source, version,
         currency, started, metered))


def seed_month(conn: psycopg.Connection[Any], tenant: uuid.UUID, period: str) -> None:
    """A month of varied usage: two features, two days, an estimated and a failed call, a
    mid-month price change, a legacy USD row."""
    add_row(conn, tenant, at(period, 3), prompt=1200, cached=256, completion=300,
            cost="0.00031200")
    add_row(conn, tenant, at(period, 3, 15), feature="case_chat", prompt=800,
            completion=90, cost="0.00017400")
    add_row(conn, tenant, at(period, 3, 16), feature="case_chat", source="estimated",
            prompt=640, cached=128, completion=40, cost="0.00012000")
    add_row(conn, tenant, at(period, 17), source="none", prompt=0, completion=0,
            cost="0.00000000")
    add_row(conn, tenant, at(period, 17, 9), prompt=2000, completion=500, cost="0.00061000",
            version="test-eur-2")
    add_row(conn, tenant, at(period, 17, 10), prompt=1500, completion=100,
            cost="0.00026000", version="test-eur-2")
    add_row(conn, tenant, at(period, 28), prompt=700, completion=70, cost="0.00015000",
            currency="USD", version="legacy-usd")


def sum_lines(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    totals: dict[str, dict[str, Any]] = {}
    for line in lines:
        t = totals.setdefault(line["currency"], {"requests": 0, **dict.fromkeys(TOKENS, 0),
                                                 "cost": Decimal(0)})
        t["requests"] += int(line["requests"])
        t["cost"] += Decimal(line["cost"])
        for key in TOKENS:
            t[key] += int(line[key])
    return totals


def stored(app: Flask, period: str, name: str) -> bytes:
    data: bytes = app.extensions["clinai_storage"].get(BILLING_CONTAINER, f"{period}/{name}")
    return data


def month_files(app: Flask, period: str) -> dict[str, bytes]:
    store = app.extensions["clinai_storage"]
    return {name: store.get(BILLING_CONTAINER, name)
            for name in store.list(BILLING_CONTAINER, prefix=f"{period}/")}


def csv_rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode(), newline="")))


def usage(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=["usage", *args])


# -- the files add up ------------------------------------------------------------------


def test_every_file_adds_up_to_the_ledger_and_estimates_stay_apart(
        app, make_practice, admin_conn):
    period = "2023-01"
    first, second = make_practice("Praxis Rechnung A"), make_practice("Praxis Rechnung B")
    seed_month(admin_conn, first.id, period)
    seed_month(admin_conn, second.id, period)
    add_row(admin_conn, second.id, at(period, 31, 23))
    # Rows of the neighbouring months are not this month's.
    add_row(admin_conn, first.id, at("2022-12", 31, 23), cost="1.00000000")
    add_row(admin_conn, first.id, at("2023-02", 1, 0), cost="1.00000000")

    result = usage(app, "export", "--period", period)
    assert result.exit_code == 0, result.output
    assert "2023-01: open" in result.output and "2 practice(s)" in result.output

    for practice in (first, second):
        expected = ledger(admin_conn, practice.id, period)
        lines = csv_rows(stored(app, period, f"{practice.id}.csv"))
        assert list(lines[0]) == list(LINE_COLUMNS)
        assert {line["tenant_id"] for line in lines} == {str(practice.id)}
        assert sum_lines(lines) == expected
        document = json.loads(stored(app, period, f"{practice.id}.json"))
        assert document["period"] == period and document["tenant_id"] == str(practice.id)
        assert sum_lines(document["line_items"]) == expected
        assert [list(item) for item in document["line_items"]] == [list(LINE_COLUMNS)] * len(
            lines)
        for currency, total in document["totals"].items():
            assert total["requests"] == expected[currency]["requests"]
            assert Decimal(total["cost"]) == expected[currency]["cost"]
        assert all(item["charge_class"] is None for item in document["line_items"])

    # The estimated call's tokens (and its non-zero cached count) are only in
    # estimated_tokens: the provider columns hold the provider-reported rows alone.
    first_lines = csv_rows(stored(app, period, f"{first.id}.csv"))
    chat = [line for line in first_lines if line["feature"] == "case_chat"]
    assert len(chat) == 1
    assert (chat[0]["prompt_tokens"], chat[0]["cached_tokens"], chat[0]["completion_tokens"],
            chat[0]["estimated_tokens"], chat[0]["requests"]) == ("800", "0", "90", "680", "2")
    # One line per day x feature x deployment x price version x currency; the price change
    # on the 17th gives the day two lines, one per version.
    day17 = [(line["price_version"], line["requests"], line["cost"])
             for line in first_lines if line["date"] == "2023-01-17"]
    assert day17 == [("test-eur-1", "1", "0.00000000"), ("test-eur-2", "2", "0.00087000")]
    assert [line["date"] for line in first_lines] == sorted(
        line["date"] for line in first_lines)

    summary = {(row["tenant_id"], row["currency"]): row
               for row in csv_rows(stored(app, period, "summary.csv"))}
    assert list(next(iter(summary.values()))) == list(SUMMARY_COLUMNS)
    assert set(summary) == {(str(p.id), c) for p in (first, second) for c in ("EUR", "USD")}
    for practice in (first, second):
        for currency, total in ledger(admin_conn, practice.id, period).items():
            row = summary[(str(practice.id), currency)]
            assert {"requests": int(row["requests"]), "cost": Decimal(row["cost"]),
                    **{k: int(row[k]) for k in TOKENS}} == total
            assert (row["correction_requests"], row["correction_cost"]) == ("0", "0.00000000")

    focus = csv_rows(stored(app, period, "focus.csv"))
    assert list(focus[0]) == list(FOCUS_COLUMNS)
    for practice in (first, second):
        mine = [row for row in focus if row["SubAccountId"] == str(practice.id)]
        for currency, total in ledger(admin_conn, practice.id, period).items():
            rows = [row for row in mine if row["BillingCurrency"] == currency]
            assert sum(Decimal(row["BilledCost"]) for row in rows) == total["cost"]
            assert sum(int(row["x_Requests"]) for row in rows) == total["requests"]
            assert sum(int(row["x_EstimatedTokens"]) for row in rows) == total[
                "estimated_tokens"]
            assert sum(int(row["ConsumedQuantity"]) for row in rows) == (
                total["prompt_tokens"] + total["completion_tokens"]
                + total["estimated_tokens"])
    assert {(row["BillingPeriodStart"], row["BillingPeriodEnd"]) for row in focus} == {
        ("2023-01-01T00:00:00Z", "2023-02-01T00:00:00Z")}
    assert {row["ChargeCategory"] for row in focus} == {"Usage"}
    assert {row["ChargeClass"] for row in focus} == {""}
    assert all(row["ChargePeriodStart"] == f"{row['x_UsageDate']}T00:00:00Z" for row in focus)

    manifest = json.loads(stored(app, period, "manifest.json"))
    assert (manifest["period"], manifest["closed"], manifest["closed_at"]) == (
        period, False, None)
    names = [f["name"] for f in manifest["files"]]
    assert names == sorted(names) and len(names) == 2 * 2 + 2
    for entry in manifest["files"]:
        data = stored(app, *entry["name"].split("/"))
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        rows = (len(json.loads(data)["line_items"]) if entry["name"].endswith(".json")
                else len(csv_rows(data)))
        assert entry["rows"] == rows
    both = {c: {k: 0 for k in ("rows", *TOKENS)} | {"cost": Decimal(0)}
            for c in ("EUR", "USD")}
    for practice in (first, second):
        for currency, total in ledger(admin_conn, practice.id, period).items():
            both[currency]["rows"] += total["requests"]
            both[currency]["cost"] += total["cost"]
            for key in TOKENS:
                both[currency][key] += total[key]
    assert {c: {k: (Decimal(v) if k == "cost" else v) for k, v in t.items()
                if k != "correction_rows"}
            for c, t in manifest["ledger"].items()} == both


def test_a_rerun_gives_the_same_bytes(app, make_practice, admin_conn):
    period = "2022-06"
    practice = make_practice("Praxis Gleich")
    seed_month(admin_conn, practice.id, period)
    assert usage(app, "export", "--period", period).exit_code == 0
    first = month_files(app, period)
    assert len(first) == 5
    time.sleep(1.1)  # a generation timestamp would now differ
    assert usage(app, "export", "--period", period).exit_code == 0
    assert month_files(app, period) == first
    # New usage of an open month changes its files (it is not closed).
    add_row(admin_conn, practice.id, at(period, 20))
    assert usage(app, "export", "--period", period).exit_code == 0
    assert month_files(app, period)[f"{period}/{practice.id}.csv"] != first[
        f"{period}/{practice.id}.csv"]


# -- closing a month ---------------------------------------------------------------------


def test_closing_waits_for_the_grace_window(app, owner_engine, make_practice, admin_conn):
    store = app.extensions["clinai_storage"]
    practice = make_practice("Praxis Frist")
    add_row(admin_conn, practice.id, at("2023-03", 5))
    end = dt.datetime(2023, 4, 1, tzinfo=dt.UTC)
    with pytest.raises(BillingError, match=r"2023-03 can be closed from 2023-04-03T00:00:00Z"):
        close_period(owner_engine, store, "2023-03", now=end + dt.timedelta(hours=47, minutes=59),
                     grace_hours=48)
    with pytest.raises(BillingError, match="2023-04-01T05:00:00Z"):
        close_period(owner_engine, store, "2023-03", now=end, grace_hours=5)
    assert admin_conn.execute("SELECT count(*) FROM public.billing_periods "
                              "WHERE period = '2023-03'").fetchone() == (0,)
    outcome = close_period(owner_engine, store, "2023-03", now=end + dt.timedelta(hours=48),
                           grace_hours=48)
    assert outcome.closed_now and outcome.report.closed

    # The CLI uses the current time and BILLING_GRACE_HOURS: the current month is refused.
    this_month = dt.datetime.now(dt.UTC).strftime("%Y-%m")
    result = usage(app, "close", "--period", this_month)
    assert result.exit_code == 1
    assert f"{this_month} can be closed from" in result.output
    assert "BILLING_GRACE_HOURS (48 h)" in result.output
    for bad in ("2023-13", "23-01", "2023-1", "x"):
        result = usage(app, "close", "--period", bad)
        assert result.exit_code == 2 and "not a month" in result.output
    assert usage(app, "export").exit_code == 2  # --period is required


def test_a_closed_month_never_changes_and_late_usage_is_a_correction(
        app, make_practice, admin_conn, billing_as_principal):
    closed, late, later = "2023-05", "2023-06", "2023-07"
    practice = make_practice("Praxis Abschluss")
    seed_month(admin_conn, practice.id, closed)
    result = usage(app, "close", "--period", closed)
    assert result.exit_code == 0, result.output
    assert f"{closed}: closed now" in result.output
    before = month_files(app, closed)
    manifest = json.loads(before[f"{closed}/manifest.json"])
    assert manifest["closed"] is True and manifest["closed_at"].endswith("Z")
    billed_at_close = ledger(admin_conn, practice.id, closed)

    # A settlement that arrives now for a call that started on the closed month's last
    # day, and one of the still open next month.
    add_row(admin_conn, practice.id, at(closed, 31, 23), feature="case_chat", prompt=390,
            completion=88, cost="0.00012210")
    add_row(admin_conn, practice.id, at(late, 2))
    assert admin_conn.execute(
        "SELECT billing_period FROM public.llm_usage WHERE tenant_id = %s AND started_at = %s",
        (practice.id, at(closed, 31, 23))).fetchone() == (late,)

    # The closed month: the same bytes, only checked, whatever is run.
    result = usage(app, "export", "--period", closed)
    assert result.exit_code == 0, result.output
    assert "5 file(s) unchanged since the close" in result.output
    assert usage(app, "close", "--period", closed).exit_code == 0  # again: checks only
    assert month_files(app, closed) == before
    assert sum_lines(csv_rows(before[f"{closed}/{practice.id}.csv"])) == billed_at_close

    # The next month carries the late row as a correction that names its original day.
    assert usage(app, "export", "--period", late).exit_code == 0
    lines = csv_rows(stored(app, late, f"{practice.id}.csv"))
    assert [(line["date"], line["charge_class"], line["cost"]) for line in lines] == [
        (f"{late}-02", "", "0.00010000"), (f"{closed}-31", "correction", "0.00012210")]
    focus = [row for row in csv_rows(stored(app, late, "focus.csv"))
             if row["SubAccountId"] == str(practice.id)]
    correction = next(row for row in focus if row["ChargeClass"] == "Correction")
    assert (correction["ChargePeriodStart"], correction["ChargePeriodEnd"],
            correction["BillingPeriodStart"]) == (
        "2023-05-31T00:00:00Z", "2023-06-01T00:00:00Z", "2023-06-01T00:00:00Z")
    summary = next(row for row in csv_rows(stored(app, late, "summary.csv"))
                   if row["tenant_id"] == str(practice.id))
    assert (summary["requests"], summary["correction_requests"],
            summary["correction_cost"]) == ("2", "1", "0.00012210")
    assert json.loads(stored(app, late, "manifest.json"))["ledger"]["EUR"][
        "correction_rows"] == 1
    read = billing_as_principal(late)
    entry = next(e for e in read["practices"] if e["tenant_id"] == str(practice.id))
    assert (entry["requests"], entry["correction_requests"], entry["correction_cost"]) == (
        2, 1, "0.00012210")
    assert read["closed"] is False and billing_as_principal(closed)["closed"] is True
    # The billing read gives what summary.csv gives (two sums of the same rows).
    for month in (closed, late):
        rows = {(r["tenant_id"], r["currency"]): r
                for r in csv_rows(stored(app, month, "summary.csv"))}
        for entry in billing_as_principal(month)["practices"]:
            row = rows[(entry["tenant_id"], entry["currency"])]
            for key in ("requests", *TOKENS, "correction_requests"):
                assert entry[key] == int(row[key]), (month, key)
            assert (entry["cost"], entry["correction_cost"]) == (row["cost"],
                                                                 row["correction_cost"])

    # With the next month closed too, a late row of the first goes to the first open one.
    end_late = usage(app, "close", "--period", late)
    assert end_late.exit_code == 0, end_late.output
    add_row(admin_conn, practice.id, at(closed, 15), cost="0.00000700")
    assert admin_conn.execute(
        "SELECT billing_period FROM public.llm_usage WHERE tenant_id = %s AND cost = %s",
        (practice.id, Decimal("0.00000700"))).fetchone() == (later,)

    # Over all months the files add up to the whole ledger.
    for month in (later,):
        assert usage(app, "export", "--period", month).exit_code == 0
    billed: list[dict[str, Any]] = []
    for month in (closed, late, later):
        billed += csv_rows(stored(app, month, f"{practice.id}.csv"))
    assert sum_lines(billed) == ledger(admin_conn, practice.id)


def test_a_closed_months_file_is_restored_if_missing_and_never_overwritten(
        app, make_practice, admin_conn):
    period = "2023-08"
    practice = make_practice("Praxis Unverändert")
    seed_month(admin_conn, practice.id, period)
    assert usage(app, "close", "--period", period).exit_code == 0
    store = app.extensions["clinai_storage"]
    original = month_files(app, period)
    store.delete(BILLING_CONTAINER, f"{period}/{practice.id}.json")
    store.put(BILLING_CONTAINER, f"{period}/{practice.id}.csv", b"date,tenant_id\r\n")
    result = usage(app, "export", "--period", period)
    assert result.exit_code == 1
    assert f"restored missing {period}/{practice.id}.json" in result.output
    assert f"error: stored {period}/{practice.id}.csv differs" in result.output
    now = month_files(app, period)
    assert now[f"{period}/{practice.id}.json"] == original[f"{period}/{practice.id}.json"]
    assert now[f"{period}/{practice.id}.csv"] == b"date,tenant_id\r\n"  # left for a human


def test_a_close_waits_for_ledger_inserts_under_way(app, owner_engine, make_practice,
                                                    database_url):
    """Settlements keep arriving while the month is closed: every row is billed exactly
    once, and none lands in the closed month after its files were written."""
    period, following = "2023-09", "2023-10"
    practice = make_practice("Praxis Gleichzeitig")
    stop = threading.Event()
    inserted: list[int] = []

    def settle() -> None:
        with psycopg.connect(_conninfo(database_url), autocommit=True) as conn:
            while not stop.is_set():
                with conn.transaction():  # a settlement that takes a moment to commit
                    add_row(conn, practice.id, at(period, 30, 23))
                    time.sleep(0.1)
                inserted.append(1)

    worker = threading.Thread(target=settle)
    worker.start()
    try:
        time.sleep(0.3)
        outcome = close_period(owner_engine, app.extensions["clinai_storage"], period,
                               now=dt.datetime.now(dt.UTC), grace_hours=48)
        time.sleep(0.3)
    finally:
        stop.set()
        worker.join()
    assert outcome.closed_now
    files = month_files(app, period)
    billed_closed = csv_rows(files[f"{period}/{practice.id}.csv"])
    closed_rows = sum(int(line["requests"]) for line in billed_closed)
    assert usage(app, "export", "--period", following).exit_code == 0
    billed_next = csv_rows(stored(app, following, f"{practice.id}.csv"))
    late_rows = sum(int(line["requests"]) for line in billed_next)
    assert closed_rows > 0 and late_rows > 0
    assert {line["charge_class"] for line in billed_next} == {"correction"}
    assert closed_rows + late_rows == len(inserted)
    result = usage(app, "export", "--period", period)
    assert result.exit_code == 0 and month_files(app, period) == files


def test_the_app_role_cannot_choose_a_rows_month(app, make_practice, admin_conn,
                                                 app_role_conn):
    practice = make_practice("Praxis Schlau")
    add_row(admin_conn, practice.id, at("2023-11", 2))
    admin_conn.execute("INSERT INTO public.billing_periods (period) VALUES ('2023-11')")
    with app_role_conn.transaction():
        app_role_conn.execute("SELECT set_config('app.tenant_id', %s, true)",
                              (str(practice.id),))
        app_role_conn.execute(
            "INSERT INTO public.llm_usage (tenant_id, user_id, feature, deployment, "
            "prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, cost, "
            "latency_ms, attempts, status, usage_source, price_version, currency, "
            "started_at, billing_period) VALUES (%s, 'u', 'note_draft', 'gpt-4o-mini', 1, 1, "
            "0, 0, 0, 1, 1, 'ok', 'provider', 'v', 'EUR', %s, '2023-11')",
            (practice.id, at("2023-11", 20)))
        with pytest.raises(psycopg.errors.InsufficientPrivilege), \
                app_role_conn.transaction():
            app_role_conn.execute("INSERT INTO public.billing_periods (period) "
                                  "VALUES ('2023-12')")
        with pytest.raises(psycopg.errors.InsufficientPrivilege), \
                app_role_conn.transaction():
            app_role_conn.execute("DELETE FROM public.billing_periods")
    months = [row[0] for row in admin_conn.execute(
        "SELECT billing_period FROM public.llm_usage WHERE tenant_id = %s ORDER BY id",
        (practice.id,))]
    assert months == ["2023-11", "2023-12"]


def test_an_offboarded_practice_is_still_in_the_files(app, make_practice, admin_conn):
    period = "2024-01"
    practice = make_practice("Praxis Weg")
    seed_month(admin_conn, practice.id, period)
    done = practice.client.delete("/api/v1/admin/tenant", headers=practice.admin.headers,
                                  json={"confirm": "Praxis Weg"})
    assert done.status_code == 200, done.json
    assert usage(app, "export", "--period", period).exit_code == 0
    assert sum_lines(csv_rows(stored(app, period, f"{practice.id}.csv"))) == ledger(
        admin_conn, practice.id, period)


# -- the practice's download ---------------------------------------------------------------


def download(practice: Practice, headers: dict[str, str], period: str,
             fmt: str | None = None) -> Any:
    query = {"period": period} | ({"format": fmt} if fmt else {})
    return practice.client.get(URL, headers=headers, query_string=query)


def test_an_admin_downloads_the_practices_own_line_items(app, make_practice, admin_conn,
                                                         issuer):
    period, closed = "2024-02", "2024-03"
    mine, other = make_practice("Praxis Eigen"), make_practice("Praxis Fremd")
    for practice in (mine, other):
        seed_month(admin_conn, practice.id, period)
        seed_month(admin_conn, practice.id, closed)
    add_row(admin_conn, other.id, at(period, 9), cost="0.99000000")

    response = download(mine, mine.admin.headers, period)
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.headers["X-Billing-Period"] == "open"
    assert 'filename="clinai-usage-2024-02.csv"' in response.headers["Content-Disposition"]
    lines = csv_rows(response.data)
    assert {line["tenant_id"] for line in lines} == {str(mine.id)}
    assert sum_lines(lines) == ledger(admin_conn, mine.id, period)
    as_json = download(mine, mine.admin.headers, period, "json")
    assert as_json.status_code == 200 and as_json.mimetype == "application/json"
    assert sum_lines(as_json.json["line_items"]) == ledger(admin_conn, mine.id, period)
    # An open month's download is what the export writes.
    assert usage(app, "export", "--period", period).exit_code == 0
    assert response.data == stored(app, period, f"{mine.id}.csv")
    assert as_json.data == stored(app, period, f"{mine.id}.json")

    # A closed month: the stored bytes, as invoiced.
    assert usage(app, "close", "--period", closed).exit_code == 0
    store = app.extensions["clinai_storage"]
    name = f"{closed}/{mine.id}.csv"
    marked = stored(app, closed, f"{mine.id}.csv") + b"# stored\r\n"
    store.put(BILLING_CONTAINER, name, marked)  # shows the bytes come from the store
    response = download(mine, mine.admin.headers, closed)
    assert response.headers["X-Billing-Period"] == "closed"
    assert response.data == marked
    store.delete(BILLING_CONTAINER, name)  # a missing stored file: built (same bytes)
    assert usage(app, "export", "--period", closed).exit_code == 0
    assert download(mine, mine.admin.headers, closed).data == stored(
        app, closed, f"{mine.id}.csv")

    # A month without usage: the header alone.
    empty = download(mine, mine.admin.headers, "2019-01")
    assert empty.status_code == 200 and csv_rows(empty.data) == []
    assert empty.data.decode().startswith("date,tenant_id,feature")
    assert download(mine, mine.admin.headers, "2019-01", "json").json["line_items"] == []


def test_only_a_practice_admin_may_download(app, make_practice, issuer):
    practice = make_practice("Praxis Rollen")
    therapist = practice.add_member("therapist")
    assert_error(download(practice, therapist.headers, "2024-02"), 403, "role_forbidden")
    nobody = {"Authorization": f"Bearer {issuer.token('billing-team-1')}"}
    response = practice.client.get(URL, headers=nobody)
    assert response.status_code == 403
    assert_error(practice.client.get(URL), 401, "missing_token")
    for query in ({"period": "2024-13"}, {"format": "xlsx"}, {"period": "2024-02-01"}):
        body = assert_error(practice.client.get(URL, headers=practice.admin.headers,
                                                query_string=query), 422, "validation_failed")
        assert set(body["errors"]["query"]) <= {"period", "format"}


# -- the billing principal's read (see test_billing.py for the rest) ------------------------


@pytest.fixture
def billing_as_principal(app: Flask, database_url: str, issuer: Any) -> Any:
    from api import create_app
    from tests.conftest import app_config

    application = create_app(app_config(database_url, issuer,
                                        BILLING_PRINCIPALS="billing-team-1"))
    http = application.test_client()
    headers = {"Authorization": f"Bearer {issuer.token('billing-team-1')}"}

    def get(period: str) -> dict[str, Any]:
        response = http.get("/api/v1/billing/usage", headers=headers,
                            query_string={"period": period})
        assert response.status_code == 200, response.json
        body: dict[str, Any] = response.json
        return body

    yield get
    application.extensions["clinai_exports"].shutdown()
    application.extensions["clinai_db"].dispose()


def test_months_by_start_time(app, make_practice, admin_conn):
    """A call is billed in the month it started (UTC), whenever it was metered."""
    practice = make_practice("Praxis Mitternacht")
    add_row(admin_conn, practice.id, dt.datetime(2024, 4, 30, 23, 59, 59, tzinfo=dt.UTC))
    add_row(admin_conn, practice.id, dt.datetime(2024, 5, 1, 0, 0, tzinfo=dt.UTC))
    months = defaultdict(list)
    for month, started in admin_conn.execute(
            "SELECT billing_period, started_at FROM public.llm_usage WHERE tenant_id = %s",
            (practice.id,)):
        months[month].append(started)
    assert sorted(months) == ["2024-04", "2024-05"]
    for month in ("2024-04", "2024-05"):
        assert usage(app, "export", "--period", month).exit_code == 0
        assert [line["date"] for line in csv_rows(stored(app, month, f"{practice.id}.csv"))
                ] == [f"{month}-{'30' if month == '2024-04' else '01'}"]


def test_malformed_and_future_months_are_refused(app, make_practice, billing_as_principal):
    practice = make_practice("Praxis Zeilenumbruch")
    for query in ({"period": "2026-12\n"}, {"period": "2026-12\r\n"}, {"period": " 2026-12"}):
        body = assert_error(practice.client.get(URL, headers=practice.admin.headers,
                                                query_string=query), 422, "validation_failed")
        assert "period" in body["errors"]["query"]
        usage_read = practice.client.get("/api/v1/admin/usage", headers=practice.admin.headers,
                                         query_string=query)
        assert_error(usage_read, 422, "validation_failed")
    for command in ("export", "close"):
        result = usage(app, command, "--period", "2026-12\n")
        assert result.exit_code == 2 and "not a month" in result.output
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(days=62)).strftime("%Y-%m")
    result = usage(app, "export", "--period", future)
    assert result.exit_code == 1 and "has not begun" in result.output
    assert month_files(app, future) == {}


def test_a_month_closed_but_not_yet_written_is_built_from_the_ledger(app, make_practice,
                                                                     admin_conn):
    period = "2024-08"
    practice = make_practice("Praxis Halb")
    seed_month(admin_conn, practice.id, period)
    assert usage(app, "export", "--period", period).exit_code == 0  # interim files
    add_row(admin_conn, practice.id, at(period, 30))  # more usage before the close
    interim = stored(app, period, f"{practice.id}.csv")
    # A close whose file writing was cut short: closed, not sealed, interim files stored.
    admin_conn.execute("INSERT INTO public.billing_periods (period) VALUES (%s)", (period,))
    response = download(practice, practice.admin.headers, period)
    assert response.headers["X-Billing-Period"] == "closed"
    assert response.data != interim
    assert sum_lines(csv_rows(response.data)) == ledger(admin_conn, practice.id, period)
    # Running close again writes, seals, and from then on the stored bytes are served.
    assert usage(app, "close", "--period", period).exit_code == 0
    assert stored(app, period, f"{practice.id}.csv") == response.data
    assert admin_conn.execute("SELECT sealed_at IS NOT NULL FROM public.billing_periods "
                              "WHERE period = %s", (period,)).fetchone() == (True,)


def test_the_practice_dashboard_counts_a_call_in_the_month_its_invoice_does(
        app, make_practice, admin_conn):
    practice = make_practice("Praxis Dashboard")
    add_row(admin_conn, practice.id, dt.datetime(2024, 9, 30, 23, 59, 59, tzinfo=dt.UTC),
            metered=dt.datetime(2024, 10, 1, 0, 0, 1, tzinfo=dt.UTC), cost="0.00029170")
    add_row(admin_conn, practice.id, at("2024-10", 2), cost="0.00000345")
    h = practice.admin.headers
    september = practice.client.get("/api/v1/admin/usage", headers=h,
                                    query_string={"period": "2024-09"}).json
    october = practice.client.get("/api/v1/admin/usage", headers=h,
                                  query_string={"period": "2024-10"}).json
    assert (september["calls"], september["cost"]) == (1, "0.00029170")
    assert list(september["by_day"]) == ["2024-09-30"]
    assert (october["calls"], october["cost"]) == (1, "0.00000345")
    for month, dashboard in (("2024-09", september), ("2024-10", october)):
        lines = csv_rows(download(practice, h, month).data)
        assert sum(Decimal(line["cost"]) for line in lines) == Decimal(dashboard["cost"])
