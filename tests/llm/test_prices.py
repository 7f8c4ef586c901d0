"""Versioned prices: loading and validating the price file, rating calls at their time.

Rating runs end to end: the app with a price file of its own, the real openai SDK against
the in-process simulator, the ledger read with a superuser connection. The gateway's
clock is injected to place calls before and after a mid-month price change.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import uuid
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from api import create_app
from api.settings import ConfigError
from llm.prices import (
    DEFAULT_PRICES_FILE,
    NoPrice,
    PriceFileError,
    PriceTable,
    PriceVersion,
    load_prices,
)
from tests.conftest import app_config
from tests.llm.test_metering import DEPLOYMENT, ledger_rows, make_case, post_draft

UTC = dt.UTC


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(UTC)


def entry(**fields: Any) -> dict[str, Any]:
    base = {"deployment": "gpt-4o-mini", "version": "v1", "currency": "EUR",
            "input": "0.138", "cached_input": "0.069", "output": "0.552",
            "valid_from": "2025-01-01T00:00:00Z"}
    return {**base, **fields}


def write_json(tmp_path: Path, *entries: dict[str, Any], name: str = "prices.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"prices": list(entries)}))
    return path


def toml_entry(**fields: Any) -> str:
    """One [[prices]] table; values are given as TOML literals."""
    base = {"deployment": '"gpt-4o-mini"', "version": '"v1"', "currency": '"EUR"',
            "input": '"0.138"', "cached_input": '"0.069"', "output": '"0.552"',
            "valid_from": "2025-01-01T00:00:00Z"}
    base.update(fields)
    return "[[prices]]\n" + "".join(f"{k} = {v}\n" for k, v in base.items() if v is not None)


def exact_cost(prompt: int, cached: int, completion: int, prices: tuple[str, str, str]) -> Decimal:
    """The formula, written out: per-1M prices, cached prompt tokens at the cached price."""
    inp, cached_inp, out = (Decimal(p) for p in prices)
    total = (Decimal(prompt - cached) * inp + Decimal(cached) * cached_inp
             + Decimal(completion) * out) / Decimal(1_000_000)
    return total.quantize(Decimal("0.00000001"), rounding=ROUND_HALF_EVEN)


# -- loading ---------------------------------------------------------------------------


def test_the_default_file_loads_with_prices_valid_now():
    table = load_prices()
    assert load_prices(None).source == str(DEFAULT_PRICES_FILE)
    now = dt.datetime.now(UTC)
    for deployment in ("gpt-4o-mini", "gpt-4o"):
        version = table.require(deployment, now)
        assert version.currency == "EUR"
        assert version.version.endswith("." + deployment)
        for price in (version.input, version.cached_input, version.output):
            assert isinstance(price, Decimal) and price > 0
        assert version.cached_input <= version.input < version.output
    mini = table.require("gpt-4o-mini", now)
    assert (mini.version, mini.input, mini.cached_input, mini.output) == (
        "2026-11-01.gpt-4o-mini", Decimal("0.138"), Decimal("0.069"), Decimal("0.552"))


def test_a_json_file_loads_like_toml(tmp_path):
    toml = tmp_path / "prices.toml"
    toml.write_text(toml_entry(valid_to="2025-01-14T23:00:00Z")
                    + toml_entry(version='"v2"', valid_from="2025-01-15T00:00:00+01:00"))
    as_json = write_json(tmp_path, entry(valid_to="2025-01-14T23:00:00Z"),
                         entry(version="v2", valid_from="2025-01-15T00:00:00+01:00"))
    for path in (toml, as_json):
        versions = load_prices(path).versions("gpt-4o-mini")
        assert [v.version for v in versions] == ["v1", "v2"]
        assert versions[1].valid_from == at("2025-01-14T23:00:00+00:00")  # normalised to UTC
        assert versions[0].valid_to == versions[1].valid_from
        assert versions[0].input == Decimal("0.138")


@pytest.mark.parametrize(("content", "message"), [
    # Overlapping validity of one deployment.
    (toml_entry() + toml_entry(version='"v2"', valid_from="2025-02-01T00:00:00Z"),
     "versions 'v1' and 'v2' of 'gpt-4o-mini' overlap"),
    (toml_entry(valid_to="2025-02-02T00:00:00Z")
     + toml_entry(version='"v2"', valid_from="2025-02-01T00:00:00Z"),
     "versions 'v1' and 'v2' of 'gpt-4o-mini' overlap"),
    # A float price (TOML float literal).
    (toml_entry(input="0.138"), "write prices as strings"),
    # A negative price.
    (toml_entry(output='"-0.552"'), "a price may not be negative"),
    # An unknown currency.
    (toml_entry(currency='"USD"'), "unknown currency 'USD'"),
    # Not a number, an integer, a naive timestamp, an unknown key, a missing key.
    (toml_entry(input='"cheap"'), "'cheap' is not a decimal number"),
    (toml_entry(input="1"), "a price must be a decimal string"),
    (toml_entry(input='"NaN"'), "not a finite decimal number"),
    (toml_entry(valid_from="2025-01-01T00:00:00"), "needs a UTC offset"),
    (toml_entry(vaild_to="2025-01-01T00:00:00Z"), "unknown key(s) vaild_to"),
    (toml_entry(output=None), "missing key(s) output"),
    (toml_entry(valid_to="2024-12-01T00:00:00Z"), "valid_to must be after valid_from"),
    (toml_entry() + toml_entry(deployment='"gpt-4o"'), "version 'v1' appears twice"),
    ("prices = []\n", "expected one non-empty list `prices`"),
    ("[[prices]\n", "not valid TOML"),
])
def test_a_bad_toml_file_is_refused_with_a_clear_message(tmp_path, content, message):
    path = tmp_path / "prices.toml"
    path.write_text(content)
    with pytest.raises(PriceFileError) as raised:
        load_prices(path)
    assert message in str(raised.value)
    assert str(raised.value).startswith(str(path))
    assert "\n" not in str(raised.value)


def test_a_float_in_json_is_refused(tmp_path):
    path = tmp_path / "prices.json"
    fields = {k: v for k, v in entry().items() if k != "output"}
    path.write_text('{"prices": [' + json.dumps(fields)[:-1] + ', "output": 0.552}]}')
    assert '"output": 0.552}' in path.read_text()
    with pytest.raises(PriceFileError, match="write prices as strings"):
        load_prices(path)


def test_a_missing_file_or_unknown_extension_is_refused(tmp_path):
    with pytest.raises(PriceFileError, match="no such price file"):
        load_prices(tmp_path / "absent.toml")
    other = tmp_path / "prices.yaml"
    other.write_text("prices: []")
    with pytest.raises(PriceFileError, match=r"must end in \.toml or \.json"):
        load_prices(other)


@pytest.mark.parametrize("problem", ["missing", "overlap", "float", "negative", "currency",
                                     "not_now", "deployment"])
def test_a_bad_price_file_stops_the_app_at_start_up(tmp_path, database_url, issuer, problem):
    files = {
        "missing": (tmp_path / "absent.toml", None, "no such price file"),
        "overlap": (tmp_path / "p.toml", toml_entry() + toml_entry(
            version='"v2"', valid_from="2025-06-01T00:00:00Z"), "overlap"),
        "float": (tmp_path / "p.toml", toml_entry(input="0.1"), "write prices as strings"),
        "negative": (tmp_path / "p.toml", toml_entry(input='"-1"'), "may not be negative"),
        "currency": (tmp_path / "p.toml", toml_entry(currency='"eur"'), "unknown currency"),
        # Valid, but the chat deployment's only version ended: nothing valid now.
        "not_now": (tmp_path / "p.toml", toml_entry(valid_to="2025-02-01T00:00:00Z"),
                    "no price version of deployment 'gpt-4o-mini' is valid now"),
        "deployment": (tmp_path / "p.toml", toml_entry(deployment='"gpt-4o"'),
                       "no price version of deployment 'gpt-4o-mini' is valid now"),
    }
    path, content, message = files[problem]
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError) as raised:
        create_app(app_config(database_url, issuer, LLM_PRICES_FILE=str(path)))
    text = raised.value.format_message()
    assert text.startswith(f"LLM_PRICES_FILE: {path}")
    assert message in text and "\n" not in text


# -- rating ----------------------------------------------------------------------------


def test_rate_picks_the_version_valid_then_and_falls_back_across_gaps():
    def version(name: str, start: str, end: str | None) -> PriceVersion:
        return PriceVersion(deployment="d", version=name, currency="EUR",
                            input=Decimal(1), cached_input=Decimal(1), output=Decimal(1),
                            valid_from=at(start), valid_to=at(end) if end else None)

    table = PriceTable([version("b", "2025-03-01T00:00:00Z", None),
                        version("a", "2025-01-01T00:00:00Z", "2025-02-01T00:00:00Z")])
    assert table.rate("d", at("2025-01-31T23:59:59.999999+00:00")).version == "a"
    assert table.rate("d", at("2025-02-15T00:00:00+00:00")).version == "a"  # the gap
    assert table.rate("d", at("2025-03-01T00:00:00+00:00")).version == "b"  # inclusive start
    assert table.rate("d", at("2025-03-01T00:30:00+01:00")).version == "a"  # 23:30 UTC
    with pytest.raises(NoPrice):
        table.rate("d", at("2024-12-31T23:59:59+00:00"))
    with pytest.raises(NoPrice):
        table.rate("other", at("2025-03-02T00:00:00+00:00"))
    with pytest.raises(PriceFileError, match="is valid now"):
        table.require("d", at("2025-02-15T00:00:00+00:00"))  # start-up wants an exact one


def test_cost_is_exact_and_rounds_half_to_even():
    version = PriceVersion(deployment="d", version="v", currency="EUR",
                           input=Decimal("0.005"), cached_input=Decimal("0.001"),
                           output=Decimal("123456.789"), valid_from=at("2025-01-01T00:00:00Z"))
    assert version.cost(1, 0, 0) == Decimal("0E-8")  # 0.000000005 -> 0 (half-up gives 1E-8)
    assert version.cost(3, 0, 0) == Decimal("0.00000002")  # 0.000000015 -> even
    assert version.cost(0, 0, 0) == Decimal(0)
    # Large token counts stay exact (no float, no 28-digit context rounding first).
    big = version.cost(2_000_000_001, 1, 7)
    assert big == exact_cost(2_000_000_001, 1, 7, ("0.005", "0.001", "123456.789"))
    assert str(big) == "10.86419752"  # 10.864197524


# Two versions of the chat deployment, the second from the 15th (prices in EUR per 1M).
FIRST = ("0.138", "0.069", "0.552")
SECOND = ("0.20", "0.10", "0.80")
LATER = ("0.30", "0.15", "1.20")


def two_versions(path: Path, *, with_third: bool = False) -> Path:
    text = (toml_entry(version='"2025-01-01.gpt-4o-mini"', valid_to="2025-01-15T00:00:00Z",
                       input=f'"{FIRST[0]}"', cached_input=f'"{FIRST[1]}"',
                       output=f'"{FIRST[2]}"')
            + toml_entry(version='"2025-01-15.gpt-4o-mini"',
                         valid_from="2025-01-15T00:00:00Z",
                         valid_to='"2025-01-25T00:00:00Z"' if with_third else None,
                         input=f'"{SECOND[0]}"', cached_input=f'"{SECOND[1]}"',
                         output=f'"{SECOND[2]}"'))
    if with_third:
        text += toml_entry(version='"2025-01-25.gpt-4o-mini"', valid_from="2025-01-25T00:00:00Z",
                           input=f'"{LATER[0]}"', cached_input=f'"{LATER[1]}"',
                           output=f'"{LATER[2]}"')
    path.write_text(text)
    return path


@pytest.fixture
def priced_app(database_url, issuer):
    made: list[Any] = []

    def make(path: Path) -> Any:
        application = create_app(app_config(database_url, issuer, LLM_PRICES_FILE=str(path)))
        made.append(application)
        return application

    yield make
    for application in made:
        application.extensions["clinai_db"].dispose()


def test_a_mid_month_price_change_rates_each_call_at_its_time(
        tmp_path, app, priced_app, make_practice, admin_conn):
    application = priced_app(two_versions(tmp_path / "prices.toml"))
    gw = application.extensions["clinai_llm"]
    http = application.test_client()
    practice = make_practice()
    _client, session = make_case(practice)
    starts = ["2025-01-10T12:00:00+00:00", "2025-01-14T23:59:59.999999+00:00",
              "2025-01-15T00:00:00+00:00", "2025-01-15T00:30:00+01:00",  # 14th, 23:30 UTC
              "2025-01-20T08:00:00+00:00"]
    for start in starts:
        gw.clock = lambda start=start: at(start)
        response = post_draft(http, practice.admin.headers, session["id"])
        assert response.status_code == 201, response.json
    stream_at = "2025-01-31T23:00:00+00:00"
    gw.clock = lambda: at(stream_at)
    response = post_draft(http, practice.admin.headers, session["id"], stream=True)
    assert response.status_code == 201
    assert "event: done" in response.get_data(as_text=True)

    rows = ledger_rows(admin_conn, practice.id)
    expected = ["2025-01-01", "2025-01-01", "2025-01-15", "2025-01-01", "2025-01-15",
                "2025-01-15"]
    assert [r["price_version"] for r in rows] == [f"{d}.{DEPLOYMENT}" for d in expected]
    assert {r["currency"] for r in rows} == {"EUR"}
    assert any(r["cached_tokens"] > 0 for r in rows)  # the cached price is exercised
    for row in rows:
        prices = FIRST if row["price_version"].startswith("2025-01-01") else SECOND
        assert row["cost"] == exact_cost(row["prompt_tokens"], row["cached_tokens"],
                                         row["completion_tokens"], prices), row
        assert row["cost"] > 0
    before = {r["id"]: (r["price_version"], r["currency"], r["cost"]) for r in rows}

    # The file changes later (the second version ends, a third begins): a new app rates
    # new calls with it, and the past rows keep their versions and costs.
    changed = priced_app(two_versions(tmp_path / "changed.toml", with_third=True))
    changed.extensions["clinai_llm"].clock = lambda: at("2025-01-28T00:00:00+00:00")
    response = post_draft(changed.test_client(), practice.admin.headers, session["id"])
    assert response.status_code == 201, response.json
    after = ledger_rows(admin_conn, practice.id)
    assert {r["id"]: (r["price_version"], r["currency"], r["cost"])
            for r in after[:-1]} == before
    last = after[-1]
    assert last["price_version"] == f"2025-01-25.{DEPLOYMENT}"
    assert last["cost"] == exact_cost(last["prompt_tokens"], last["cached_tokens"],
                                      last["completion_tokens"], LATER)

    # Each row keeps the instant it was rated for as its start, which bills it in January
    # and dates its line item; the month's file has one line per day and price version,
    # each the exact sum of its rows.
    timing = admin_conn.execute(
        "SELECT started_at, billing_period, price_version, cost FROM public.llm_usage "
        "WHERE tenant_id = %s ORDER BY id", (practice.id,)).fetchall()
    assert [row[0] for row in timing] == [at(s) for s in [*starts, stream_at,
                                                          "2025-01-28T00:00:00+00:00"]]
    assert {row[1] for row in timing} == {"2025-01"}
    expected_lines: dict[tuple[str, str], Decimal] = {}
    for started, _month, version, cost in timing:
        key = (started.astimezone(dt.UTC).date().isoformat(), version)
        expected_lines[key] = expected_lines.get(key, Decimal(0)) + cost
    result = app.test_cli_runner().invoke(args=["usage", "export", "--period", "2025-01"])
    assert result.exit_code == 0, result.output
    blob = app.extensions["clinai_storage"].get("billing", f"2025-01/{practice.id}.csv")
    lines = list(csv.DictReader(io.StringIO(blob.decode(), newline="")))
    assert {(line["date"], line["price_version"]): Decimal(line["cost"])
            for line in lines} == expected_lines


def test_a_call_without_a_price_is_refused_before_it_is_sent(
        tmp_path, app, priced_app, make_practice, admin_conn):
    application = priced_app(two_versions(tmp_path / "prices.toml"))
    sim = application.extensions["clinai_llm_simulator"]
    practice = make_practice()
    _client, session = make_case(practice)
    application.extensions["clinai_llm"].clock = lambda: at("2024-12-31T23:59:59+00:00")
    before = len(sim.requests)
    response = post_draft(application.test_client(), practice.admin.headers, session["id"])
    assert (response.status_code, response.json["error"]) == (503, "llm_unavailable")
    assert len(sim.requests) == before
    assert ledger_rows(admin_conn, practice.id) == []
    reserved = admin_conn.execute("SELECT coalesce(sum(reserved), 0) FROM public.llm_budgets "
                                  "WHERE tenant_id = %s", (practice.id,)).fetchone()[0]
    assert reserved == 0


def test_the_ledger_refuses_a_half_artifact(admin_conn, make_practice):
    practice = make_practice()
    insert = ("INSERT INTO public.llm_usage (tenant_id, user_id, feature, deployment, "
              "prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, cost, "
              "latency_ms, attempts, status, usage_source, price_version, currency, "
              "artifact_kind, artifact_id) VALUES (%s, 'u', 'f', 'd', 0, 0, 0, 0, 0, 0, 1, "
              "'ok', 'none', 'v', 'EUR', %s, %s)")
    for kind, artifact_id in (("session", None), (None, uuid.uuid4()), ("note", uuid.uuid4())):
        with pytest.raises(psycopg.errors.CheckViolation):
            admin_conn.execute(insert, (practice.id, kind, artifact_id))
    with pytest.raises(psycopg.errors.NotNullViolation):
        admin_conn.execute(insert.replace("'v', 'EUR'", "NULL, 'EUR'"),
                           (practice.id, None, None))
