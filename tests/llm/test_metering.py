"""LLM metering: an exact ledger, admission under concurrency, faults, roles and tenancy.

The simulator stands in for Azure and records what it was sent (``requests``) and the
usage it reported (``reported``); the ledger (``public.llm_usage``) and the budget row
(``public.llm_budgets``) are read with a superuser connection, past row-level security.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import time
import uuid
from decimal import Decimal
from typing import Any

import pytest

import llm.gateway as gateway_module
from api import create_app
from llm.errors import LLMUnavailable
from llm.prices import load_prices
from llm.prompts import DRAFT_MAX_TOKENS, draft_messages
from llm.pseudonymize import Identity, Pseudonymizer
from llm.simulator import CHUNK_WORDS, Fault, draft_for
from llm.tokens import count_messages, count_text, truncate
from tenancy.actor import Actor
from tests.conftest import app_config

DEPLOYMENT = "gpt-4o-mini"
TOPICS = ["sleep and appetite", "work stress and deadlines", "his sister and the phone calls",
          "walking in the park", "the breathing exercise", "worry before meetings",
          "the weekend routine", "cooking again"]
# Long enough that the prompt is over 1024 tokens (the simulator then reports cached
# tokens for a repeated system prompt) and the draft is cut at DRAFT_MAX_TOKENS.
TRANSCRIPT = " ".join(
    f"In part {k} Quenstedt spoke at length about "
    + ", about ".join((TOPICS[k % 8:] + TOPICS[:k % 8]) * 3)
    + ", and about how each of these felt different this week compared with last week."
    for k in range(10))
FIRST, LAST, DOB = "Quentin", "Quenstedt", "1985-04-12"
CONTACT = {"email": "q@example.org", "phone": "+49 30 1234567"}
MODALITY, DURATION = "video", 50
SSE = {"Accept": "text/event-stream"}


# -- helpers ---------------------------------------------------------------------------


def parse_sse(body: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def masked_draft_messages(note_format: str = "SOAP",
                          transcript: str = TRANSCRIPT) -> list[dict[str, Any]]:
    """The draft prompt as api/drafts/views.py builds and the gateway masks it."""
    identity = Identity(first_name=FIRST, last_name=LAST,
                        date_of_birth=dt.date.fromisoformat(DOB), email=CONTACT["email"],
                        phone=CONTACT["phone"])
    messages = draft_messages(note_format, transcript, modality=MODALITY,
                              duration_minutes=DURATION)
    return Pseudonymizer.for_people([identity]).pseudonymize_messages(messages)


def draft_reservation(note_format: str = "SOAP") -> int:
    return count_messages(masked_draft_messages(note_format)) + DRAFT_MAX_TOKENS


def sim_pieces(messages: list[dict[str, Any]], max_tokens: int) -> list[str]:
    """The content pieces the simulator streams for a request."""
    text = truncate(draft_for(messages), max_tokens)
    words = re.findall(r"\S+\s*", text)
    return ["".join(words[i:i + CHUNK_WORDS]) for i in range(0, len(words), CHUNK_WORDS)]


def make_case(practice: Any, *, therapist: Any = None,
              transcript: str | None = TRANSCRIPT) -> tuple[dict[str, Any], dict[str, Any]]:
    extra = {"assigned_therapist_id": therapist.sub} if therapist is not None else {}
    client = practice.create_client(first_name=FIRST, last_name=LAST, date_of_birth=DOB,
                                    contact=CONTACT, **extra)
    body: dict[str, Any] = {"started_at": "2026-11-20T09:00:00+01:00",
                            "duration_minutes": DURATION, "modality": MODALITY}
    if transcript is not None:
        body["transcript"] = transcript
    response = practice.client.post(f"/api/v1/clients/{client['id']}/sessions",
                                    headers=practice.admin.headers, json=body)
    assert response.status_code == 201, response.json
    return client, dict(response.json)


def post_draft(http: Any, headers: dict[str, str], session_id: str, *, fmt: str = "SOAP",
               stream: bool = False) -> Any:
    return http.post(f"/api/v1/sessions/{session_id}/note-drafts", json={"format": fmt},
                     headers={**headers, **(SSE if stream else {})})


def note_count(http: Any, headers: dict[str, str], session_id: str) -> int:
    response = http.get(f"/api/v1/sessions/{session_id}/notes", headers=headers)
    assert response.status_code == 200, response.json
    return len(response.json)


def ledger_rows(admin_conn: Any, tenant_id: uuid.UUID) -> list[dict[str, Any]]:
    cursor = admin_conn.execute(
        "SELECT id, user_id, feature, deployment, prompt_tokens, completion_tokens, "
        "cached_tokens, reasoning_tokens, cost, attempts, status, usage_source, "
        "price_version, currency, artifact_kind, artifact_id "
        "FROM public.llm_usage WHERE tenant_id = %s ORDER BY id", (tenant_id,))
    names = [c.name for c in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def budget_row(admin_conn: Any, tenant_id: uuid.UUID) -> tuple[int | None, int, int]:
    row = admin_conn.execute(
        "SELECT monthly_tokens, used, reserved FROM public.llm_budgets WHERE tenant_id = %s",
        (tenant_id,)).fetchone()
    assert row is not None
    return row[0], int(row[1]), int(row[2])


def set_budget(app: Any, tenant_id: uuid.UUID | str, tokens: int) -> Any:
    return app.test_cli_runner().invoke(
        args=["tenancy", "set-budget", str(tenant_id), "--monthly-tokens", str(tokens)])


def sleep_past_minute_edge() -> None:
    """Per-minute counters reset on the minute: keep a short test inside one minute."""
    now = dt.datetime.now()
    if now.second >= 55:
        time.sleep(60 - now.second - now.microsecond / 1e6 + 0.2)


@pytest.fixture
def make_app(app, database_url, issuer):
    """Build an app of its own (own simulator, own gateway) whose gateway records sleeps."""
    made = []

    def make(**overrides: Any) -> tuple[Any, list[float]]:
        application = create_app(app_config(database_url, issuer, **overrides))
        sleeps: list[float] = []
        application.extensions["clinai_llm"].sleep = sleeps.append
        made.append(application)
        return application, sleeps

    yield make
    for application in made:
        application.extensions["clinai_db"].dispose()


# -- 1. metering is exact --------------------------------------------------------------


def test_metering_is_exact_across_outcomes(make_app, make_practice, admin_conn):
    a, sleeps = make_app()
    sim = a.extensions["clinai_llm_simulator"]
    gw = a.extensions["clinai_llm"]
    http = a.test_client()
    practice = make_practice()
    client, session = make_case(practice)
    h, sid = practice.admin.headers, session["id"]
    masked = masked_draft_messages()
    # (status, usage_source, attempts, feature) of every gateway call, in order.
    expected: list[tuple[str, str, int, str]] = []

    # 1) A non-streamed draft.
    r = post_draft(http, h, sid)
    assert r.status_code == 201, r.json
    assert sim.requests[-1]["messages"] == masked  # what the reservation was counted on
    expected.append(("ok", "provider", 1, "note_draft"))

    # 2) A streamed draft; `done` carries the provider's usage.
    r = post_draft(http, h, sid, stream=True)
    assert r.status_code == 201
    events = parse_sse(r.get_data(as_text=True))
    assert events[-1][0] == "done", events[-3:]
    reported = sim.reported[-1]
    assert events[-1][1]["usage"] == {
        "prompt_tokens": reported["prompt_tokens"],
        "completion_tokens": reported["completion_tokens"],
        "total_tokens": reported["prompt_tokens"] + reported["completion_tokens"]}
    expected.append(("ok", "provider", 1, "note_draft"))

    # 3) A 429 with Retry-After: 1, then success; the gateway waits exactly 1 s.
    before = len(sim.requests)
    sim.inject(Fault("status", status=429, retry_after=1))
    r = post_draft(http, h, sid)
    assert r.status_code == 201, r.json
    assert sleeps == [1.0]
    assert len(sim.requests) == before + 2
    expected.append(("ok", "provider", 2, "note_draft"))

    # 4) 500 three times: 503 llm_unavailable after backing off twice; nothing saved.
    notes = note_count(http, h, sid)
    before = len(sim.requests)
    sim.inject(*[Fault("status", status=500)] * 3)
    r = post_draft(http, h, sid)
    assert r.status_code == 503
    assert r.json["error"] == "llm_unavailable"
    assert r.headers["Retry-After"] == "30"
    assert sleeps == [1.0, 0.5, 1.0]
    assert len(sim.requests) == before + 3
    assert note_count(http, h, sid) == notes
    expected.append(("failed", "none", 3, "note_draft"))

    # 5) A stream cut mid-way: SSE error, no note, tokens estimated from what was sent
    #    and received (the provider never reported usage for it).
    reported_before = len(sim.reported)
    sim.inject(Fault("cut_stream"))
    r = post_draft(http, h, sid, stream=True)
    assert r.status_code == 201
    events = parse_sse(r.get_data(as_text=True))
    assert [name for name, _ in events[:-1]] == ["delta"] * (len(events) - 1)
    assert events[-1][0] == "error" and events[-1][1]["error"] == "llm_unavailable"
    assert note_count(http, h, sid) == notes
    assert len(sim.reported) == reported_before
    pieces = sim_pieces(sim.requests[-1]["messages"], DRAFT_MAX_TOKENS)
    cut_estimate = (count_messages(masked),
                    count_text("".join(pieces[:len(pieces) // 2])))
    expected.append(("failed", "estimated", 1, "note_draft"))

    # 6) The user disconnects after the first piece: close() drains the upstream, so the
    #    provider's full usage is metered.
    stream = gw.stream(Actor(tenant_id=practice.id, user_id=practice.admin.sub, role="admin"),
                       "note_draft", masked, max_tokens=DRAFT_MAX_TOKENS)
    pieces_read = iter(stream)
    assert next(pieces_read)
    stream.close()
    assert len(sim.reported) == reported_before + 1
    assert stream.usage is not None and stream.usage.source == "provider"
    assert (stream.usage.prompt_tokens, stream.usage.completion_tokens) == (
        sim.reported[-1]["prompt_tokens"], sim.reported[-1]["completion_tokens"])
    expected.append(("disconnected", "provider", 1, "note_draft"))

    # 7) A complete stream without the usage chunk: counted locally, flagged estimated.
    sim.inject(Fault("no_usage"))
    r = post_draft(http, h, sid, stream=True)
    events = parse_sse(r.get_data(as_text=True))
    assert events[-1][0] == "done", events[-3:]
    assert len(sim.reported) == reported_before + 1
    full_text = truncate(draft_for(sim.requests[-1]["messages"]), DRAFT_MAX_TOKENS)
    no_usage_estimate = (count_messages(masked), count_text(full_text))
    assert events[-1][1]["usage"]["prompt_tokens"] == no_usage_estimate[0]
    assert events[-1][1]["usage"]["completion_tokens"] == no_usage_estimate[1]
    expected.append(("ok", "estimated", 1, "note_draft"))

    # 8) Case chat.
    conversation = http.post(f"/api/v1/clients/{client['id']}/conversations", headers=h)
    assert conversation.status_code == 201
    r = http.post(f"/api/v1/conversations/{conversation.json['id']}/messages",
                  json={"content": "How is Quenstedt doing?"}, headers=h)
    assert r.status_code == 201, r.json
    expected.append(("ok", "provider", 1, "case_chat"))

    # The ledger: one row per gateway call, exactly as expected.
    rows = ledger_rows(admin_conn, practice.id)
    assert [(x["status"], x["usage_source"], x["attempts"], x["feature"]) for x in rows] \
        == expected
    assert {x["deployment"] for x in rows} == {DEPLOYMENT}
    assert {x["user_id"] for x in rows} == {practice.admin.sub}
    provider = [x for x in rows if x["usage_source"] == "provider"]
    assert len(provider) == len(sim.reported) == 5
    for row, usage in zip(provider, sim.reported, strict=True):
        assert (row["prompt_tokens"], row["completion_tokens"], row["cached_tokens"]) == (
            usage["prompt_tokens"], usage["completion_tokens"],
            usage["prompt_tokens_details"]["cached_tokens"])
    assert rows[1]["cached_tokens"] > 0  # the repeated system prompt came from the cache
    failed = rows[3]
    assert (failed["prompt_tokens"], failed["completion_tokens"], failed["cached_tokens"],
            failed["cost"]) == (0, 0, 0, Decimal(0))
    assert (rows[4]["prompt_tokens"], rows[4]["completion_tokens"]) == cut_estimate
    assert (rows[6]["prompt_tokens"], rows[6]["completion_tokens"]) == no_usage_estimate
    assert rows[4]["cached_tokens"] == rows[6]["cached_tokens"] == 0
    price = load_prices().rate(DEPLOYMENT, dt.datetime.now(dt.UTC))
    for row in rows:
        assert (row["price_version"], row["currency"]) == (price.version, "EUR")
        assert row["cost"] == price.cost(row["prompt_tokens"], row["cached_tokens"],
                                         row["completion_tokens"])

    # The budget counts exactly the ledger, and nothing is left reserved.
    prompt = sum(x["prompt_tokens"] for x in rows)
    completion = sum(x["completion_tokens"] for x in rows)
    _monthly, used, reserved = budget_row(admin_conn, practice.id)
    assert (used, reserved) == (prompt + completion, 0)

    # The usage report agrees with the ledger.
    report = http.get("/api/v1/admin/usage", headers=h)
    assert report.status_code == 200, report.json
    body = report.json

    def totals(selected: list[dict[str, Any]]) -> dict[str, Any]:
        p = sum(x["prompt_tokens"] for x in selected)
        c = sum(x["completion_tokens"] for x in selected)
        return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c,
                "calls": len(selected), "cost": sum((x["cost"] for x in selected), Decimal(0))}

    def reported_totals(part: dict[str, Any]) -> dict[str, Any]:
        return {key: Decimal(part[key]) if key == "cost" else part[key]
                for key in ("prompt_tokens", "completion_tokens", "total_tokens", "calls",
                            "cost")}

    assert reported_totals(body) == totals(rows)
    assert reported_totals(body["by_feature"]["note_draft"]) == totals(
        [x for x in rows if x["feature"] == "note_draft"])
    assert reported_totals(body["by_feature"]["case_chat"]) == totals(
        [x for x in rows if x["feature"] == "case_chat"])
    assert set(body["by_feature"]) == {"note_draft", "case_chat"}
    assert set(body["by_model"]) == {DEPLOYMENT}
    assert reported_totals(body["by_model"][DEPLOYMENT]) == totals(rows)
    assert body["budget"]["used"] == prompt + completion
    assert body["budget"]["reserved"] == 0
    assert body["budget"]["remaining"] == body["budget"]["monthly_tokens"] - used


# -- 2. admission under concurrency ----------------------------------------------------


@pytest.mark.parametrize("budget_from", ["set-budget", "default"])
def test_concurrent_drafts_never_exceed_the_budget(budget_from, app, make_app, make_practice,
                                                    admin_conn):
    practice = make_practice()
    _client, session = make_case(practice)
    reservation = draft_reservation()
    monthly = 10 * reservation + reservation // 2
    if budget_from == "set-budget":
        result = set_budget(app, practice.id, monthly)
        assert result.exit_code == 0, result.output
    else:  # no budget row yet: 30 first calls race to create it
        app, _sleeps = make_app(LLM_DEFAULT_MONTHLY_TOKEN_BUDGET=monthly)
    sim = app.extensions["clinai_llm_simulator"]
    before = len(sim.requests)

    workers, barrier = 30, threading.Barrier(30)
    responses: list[Any] = [None] * workers
    errors: list[BaseException] = []

    def work(i: int) -> None:
        http = app.test_client()
        try:
            barrier.wait(timeout=10)
            responses[i] = post_draft(http, practice.admin.headers, session["id"])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    sim.latency = 0.05  # admitted calls are in flight while the others try to reserve
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        sim.latency = 0.0
    assert not errors, errors
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 10 + [429] * 20
    to_next_month = (dt.datetime.now(dt.UTC).replace(day=28) + dt.timedelta(days=4)
                     ).replace(day=1, hour=0, minute=0, second=0, microsecond=0) \
        - dt.datetime.now(dt.UTC)
    for r in responses:
        if r.status_code == 429:
            assert r.json["error"] == "token_budget_exhausted"
            assert 1 <= int(r.headers["Retry-After"]) <= to_next_month.total_seconds() + 5
    assert len(sim.requests) == before + 10  # refused drafts never left
    assert count_messages(sim.requests[-1]["messages"]) + DRAFT_MAX_TOKENS == reservation

    rows = ledger_rows(admin_conn, practice.id)
    assert len(rows) == 10
    assert {x["status"] for x in rows} == {"ok"}
    monthly_tokens, used, reserved = budget_row(admin_conn, practice.id)
    assert monthly_tokens == (monthly if budget_from == "set-budget" else None)
    assert used == sum(x["prompt_tokens"] + x["completion_tokens"] for x in rows)
    assert used <= monthly
    assert reserved == 0
    assert note_count(practice.client, practice.admin.headers, session["id"]) == 10


def test_requests_per_minute_limit(make_app, make_practice, admin_conn):
    a, _sleeps = make_app(LLM_TENANT_REQUESTS_PER_MINUTE=2)
    sim = a.extensions["clinai_llm_simulator"]
    http = a.test_client()
    practice = make_practice()
    _client, session = make_case(practice)
    sleep_past_minute_edge()
    for _ in range(2):
        r = post_draft(http, practice.admin.headers, session["id"])
        assert r.status_code == 201, r.json
    r = post_draft(http, practice.admin.headers, session["id"])
    assert r.status_code == 429
    assert r.json["error"] == "rate_limited"
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    assert len(sim.requests) == 2
    assert len(ledger_rows(admin_conn, practice.id)) == 2
    assert budget_row(admin_conn, practice.id)[2] == 0


# -- 3. faults -------------------------------------------------------------------------


@pytest.fixture
def fault_case(make_app, make_practice, admin_conn):
    a, sleeps = make_app()
    practice = make_practice()
    _client, session = make_case(practice)
    sim = a.extensions["clinai_llm_simulator"]
    yield a, sleeps, sim, practice, session
    assert not sim.faults, "every injected fault was consumed"
    assert budget_row(admin_conn, practice.id)[2] == 0, "no reservation is left behind"


def test_fault_429_retry_after_is_honoured(fault_case, admin_conn):
    a, sleeps, sim, practice, session = fault_case
    http, h = a.test_client(), practice.admin.headers
    sim.inject(Fault("status", status=429, retry_after=1))
    r = post_draft(http, h, session["id"])
    assert r.status_code == 201, r.json
    assert sleeps == [1.0]
    assert len(sim.requests) == 2
    assert note_count(http, h, session["id"]) == 1
    rows = ledger_rows(admin_conn, practice.id)
    assert [(x["status"], x["attempts"]) for x in rows] == [("ok", 2)]
    assert budget_row(admin_conn, practice.id)[2] == 0


def test_fault_500_three_times_is_503_without_note(fault_case, admin_conn):
    a, sleeps, sim, practice, session = fault_case
    http, h = a.test_client(), practice.admin.headers
    sim.inject(*[Fault("status", status=500)] * 3)
    r = post_draft(http, h, session["id"])
    assert r.status_code == 503
    assert r.json["error"] == "llm_unavailable"
    assert r.headers["Retry-After"] == "30"
    assert sleeps == [0.5, 1.0]
    assert len(sim.requests) == 3
    assert note_count(http, h, session["id"]) == 0
    assert budget_row(admin_conn, practice.id)[1:] == (0, 0)
    rows = ledger_rows(admin_conn, practice.id)
    assert [(x["status"], x["attempts"], x["prompt_tokens"], x["completion_tokens"])
            for x in rows] == [("failed", 3, 0, 0)]


def test_fault_timeouts_are_503(fault_case, admin_conn):
    a, sleeps, sim, practice, session = fault_case
    http, h = a.test_client(), practice.admin.headers
    sim.inject(*[Fault("timeout")] * 3)
    r = post_draft(http, h, session["id"])
    assert r.status_code == 503
    assert r.json["error"] == "llm_unavailable"
    assert sleeps == [0.5, 1.0]
    assert len(sim.requests) == 3
    assert note_count(http, h, session["id"]) == 0
    assert budget_row(admin_conn, practice.id)[1:] == (0, 0)
    assert [(x["status"], x["attempts"]) for x in ledger_rows(admin_conn, practice.id)] \
        == [("failed", 3)]


def test_fault_content_filter_is_422(fault_case, admin_conn):
    a, sleeps, sim, practice, session = fault_case
    http, h = a.test_client(), practice.admin.headers
    sim.inject(Fault("content_filter"))
    r = post_draft(http, h, session["id"])
    assert r.status_code == 422
    assert r.json["error"] == "content_filtered"
    assert sleeps == []  # not retried
    assert len(sim.requests) == 1
    assert note_count(http, h, session["id"]) == 0
    assert budget_row(admin_conn, practice.id)[1:] == (0, 0)
    assert [(x["status"], x["attempts"], x["prompt_tokens"] + x["completion_tokens"])
            for x in ledger_rows(admin_conn, practice.id)] == [("filtered", 1, 0)]


def test_fault_content_filter_in_stream(fault_case, admin_conn):
    a, _sleeps, sim, practice, session = fault_case
    http, h = a.test_client(), practice.admin.headers
    sim.inject(Fault("content_filter"))
    r = post_draft(http, h, session["id"], stream=True)
    events = parse_sse(r.get_data(as_text=True))
    assert [(name, data["error"]) for name, data in events] == [("error", "content_filtered")]
    assert note_count(http, h, session["id"]) == 0
    rows = ledger_rows(admin_conn, practice.id)
    assert [(x["status"], x["usage_source"]) for x in rows] == [("filtered", "estimated")]
    assert (rows[0]["prompt_tokens"], rows[0]["completion_tokens"]) == (
        count_messages(masked_draft_messages()), 0)


def test_fault_stream_cut_is_an_sse_error(fault_case, admin_conn):
    a, _sleeps, sim, practice, session = fault_case
    http, h = a.test_client(), practice.admin.headers
    r = post_draft(http, h, session["id"])  # one note exists already
    assert r.status_code == 201
    sim.inject(Fault("cut_stream"))
    r = post_draft(http, h, session["id"], stream=True)
    assert r.status_code == 201
    assert r.mimetype == "text/event-stream"
    events = parse_sse(r.get_data(as_text=True))
    names = [name for name, _ in events]
    assert names.count("delta") >= 1 and "done" not in names
    assert events[-1][0] == "error"
    assert events[-1][1]["error"] == "llm_unavailable"
    assert note_count(http, h, session["id"]) == 1
    assert len(sim.reported) == 1
    rows = ledger_rows(admin_conn, practice.id)
    assert [(x["status"], x["usage_source"]) for x in rows] == [
        ("ok", "provider"), ("failed", "estimated")]


# -- 4. a zero budget ------------------------------------------------------------------


def test_zero_budget_refuses_before_calling_the_provider(app, make_practice, admin_conn):
    practice = make_practice()
    _client, session = make_case(practice)
    sim = app.extensions["clinai_llm_simulator"]
    result = set_budget(app, practice.id, 0)
    assert result.exit_code == 0, result.output
    before = len(sim.requests)
    for stream in (False, True):
        r = post_draft(practice.client, practice.admin.headers, session["id"], stream=stream)
        assert r.status_code == 429
        assert r.json["error"] == "token_budget_exhausted"
        assert int(r.headers["Retry-After"]) >= 1
    assert len(sim.requests) == before
    assert ledger_rows(admin_conn, practice.id) == []
    assert budget_row(admin_conn, practice.id) == (0, 0, 0)
    usage = practice.client.get("/api/v1/admin/usage", headers=practice.admin.headers).json
    assert usage["budget"] == {"monthly_tokens": 0, "used": 0, "reserved": 0, "remaining": 0}


def test_set_budget_unknown_tenant_fails(app):
    result = set_budget(app, uuid.uuid4(), 1000)
    assert result.exit_code != 0
    result = set_budget(app, "not-a-uuid", 1000)
    assert result.exit_code != 0


# -- 5. roles and tenancy --------------------------------------------------------------


def test_drafts_and_chat_respect_assignment_and_tenancy(app, make_practice, admin_conn):
    practice = make_practice()
    assigned = practice.add_member("therapist")
    stranger = practice.add_member("therapist")
    client, session = make_case(practice, therapist=assigned)
    other = make_practice("Praxis Fremd")
    http = practice.client
    sim = app.extensions["clinai_llm_simulator"]
    conversation = http.post(f"/api/v1/clients/{client['id']}/conversations",
                             headers=practice.admin.headers)
    assert conversation.status_code == 201
    messages = f"/api/v1/conversations/{conversation.json['id']}/messages"
    before = len(sim.requests)

    for actor in (stranger, other.admin):
        r = post_draft(http, actor.headers, session["id"])
        assert r.status_code == 404, (actor.role, r.json)
        assert r.json["error"] == "not_found"
        r = http.post(messages, json={"content": "How is Quenstedt doing?"},
                      headers=actor.headers)
        assert r.status_code == 404, (actor.role, r.json)
        assert r.json["error"] == "not_found"
    assert len(sim.requests) == before
    assert ledger_rows(admin_conn, practice.id) == []
    assert ledger_rows(admin_conn, other.id) == []

    # The assigned therapist may.
    r = post_draft(http, assigned.headers, session["id"])
    assert r.status_code == 201, r.json
    r = http.post(messages, json={"content": "How is Quenstedt doing?"}, headers=assigned.headers)
    assert r.status_code == 201, r.json
    assert len(sim.requests) == before + 2
    assert [x["user_id"] for x in ledger_rows(admin_conn, practice.id)] == [assigned.sub] * 2


def test_draft_validation(app, make_practice, admin_conn):
    practice = make_practice()
    client, session = make_case(practice)
    bare = practice.client.post(f"/api/v1/clients/{client['id']}/sessions",
                                headers=practice.admin.headers,
                                json={"started_at": "2026-11-21T09:00:00+01:00",
                                      "duration_minutes": 50, "modality": "video"})
    assert bare.status_code == 201, bare.json
    sim = app.extensions["clinai_llm_simulator"]
    before = len(sim.requests)
    h = practice.admin.headers

    r = post_draft(practice.client, h, bare.json["id"])
    assert r.status_code == 422
    assert r.json["error"] == "no_transcript"
    for body in ({"format": "PIRP"}, {"format": "soap"}, {}):
        r = practice.client.post(f"/api/v1/sessions/{session['id']}/note-drafts", json=body,
                                 headers=h)
        assert r.status_code == 422, body
        assert r.json["error"] == "validation_failed"
        assert "format" in json.dumps(r.json["errors"])
    assert len(sim.requests) == before
    assert ledger_rows(admin_conn, practice.id) == []


def test_sse_client_disconnect_is_metered_in_full(make_app, make_practice, admin_conn):
    a, _sleeps = make_app()
    sim = a.extensions["clinai_llm_simulator"]
    http = a.test_client()
    practice = make_practice()
    _client, session = make_case(practice)
    r = http.post(f"/api/v1/sessions/{session['id']}/note-drafts", json={"format": "SOAP"},
                  headers={**practice.admin.headers, **SSE}, buffered=False)
    assert r.status_code == 201
    first = next(iter(r.response))
    assert first.startswith(b"event: delta\n")
    r.close()  # the user went away after the first piece
    assert len(sim.reported) == 1  # the upstream was read to its usage chunk
    rows = ledger_rows(admin_conn, practice.id)
    assert [(x["status"], x["usage_source"], x["prompt_tokens"], x["completion_tokens"])
            for x in rows] == [("disconnected", "provider", sim.reported[0]["prompt_tokens"],
                                sim.reported[0]["completion_tokens"])]
    assert rows[0]["completion_tokens"] == DRAFT_MAX_TOKENS  # the whole reply, not one piece
    assert budget_row(admin_conn, practice.id)[1:] == (
        rows[0]["prompt_tokens"] + rows[0]["completion_tokens"], 0)
    assert note_count(http, practice.admin.headers, session["id"]) == 0


def test_last_months_usage_does_not_count(app, make_practice, admin_conn):
    practice = make_practice()
    _client, session = make_case(practice)
    monthly = draft_reservation() + 10  # room for exactly one draft this month
    assert set_budget(app, practice.id, monthly).exit_code == 0
    # Last month the practice used everything and a reservation was never settled.
    admin_conn.execute("UPDATE public.llm_budgets SET period = '2000-01', used = %s, "
                       "reserved = 500, updated_at = now() - interval '40 days' "
                       "WHERE tenant_id = %s", (monthly, practice.id))
    r = post_draft(practice.client, practice.admin.headers, session["id"])
    assert r.status_code == 201, r.json
    rows = ledger_rows(admin_conn, practice.id)
    actual = rows[0]["prompt_tokens"] + rows[0]["completion_tokens"]
    period = admin_conn.execute("SELECT period FROM public.llm_budgets WHERE tenant_id = %s",
                                (practice.id,)).fetchone()[0]
    assert period == dt.datetime.now(dt.UTC).strftime("%Y-%m")
    assert budget_row(admin_conn, practice.id) == (monthly, actual, 0)
    r = post_draft(practice.client, practice.admin.headers, session["id"])
    assert r.status_code == 429
    assert r.json["error"] == "token_budget_exhausted"


def test_long_retry_after_is_honoured_not_shortened(app, database_url, issuer, make_practice):
    """A retry-after longer than the call's deadline ends the call with that wait passed on."""
    from api import create_app
    from llm.simulator import Fault
    from tests.conftest import app_config

    fresh = create_app(app_config(database_url, issuer, LLM_TIMEOUT_SECONDS=5))
    slept: list[float] = []
    fresh.extensions["clinai_llm"].sleep = slept.append
    try:
        practice = make_practice()
        client_id = practice.create_client()["id"]
        c, h = fresh.test_client(), practice.admin.headers
        session = c.post(f"/api/v1/clients/{client_id}/sessions", headers=h, json={
            "started_at": "2026-11-20T09:00:00+01:00", "duration_minutes": 50,
            "modality": "video", "transcript": "Slept well. Walked daily."}).json
        fresh.extensions["clinai_llm_simulator"].inject(
            Fault("status", status=429, retry_after=20))
        response = c.post(f"/api/v1/sessions/{session['id']}/note-drafts", headers=h,
                          json={"format": "SOAP"})
        assert (response.status_code, response.json["error"]) == (503, "llm_unavailable")
        assert response.headers["Retry-After"] == "20"
        assert slept == []  # no early retry
    finally:
        fresh.extensions["clinai_db"].dispose()


def test_in_flight_reservation_counts_across_the_rollover(app, make_practice, admin_conn):
    """A call reserved last month and still running blocks this month's budget too."""
    practice = make_practice()
    _client, session = make_case(practice)
    monthly = draft_reservation() + 10
    assert set_budget(app, practice.id, monthly).exit_code == 0
    admin_conn.execute("UPDATE public.llm_budgets SET period = '2000-01', used = %s, "
                       "reserved = %s, updated_at = now() WHERE tenant_id = %s",
                       (monthly, draft_reservation(), practice.id))
    r = post_draft(practice.client, practice.admin.headers, session["id"])
    assert (r.status_code, r.json["error"]) == (429, "token_budget_exhausted")


def test_stream_is_cut_off_at_its_time_limit(app, make_practice, monkeypatch):
    """A reply streamed past STREAM_MAX_SECONDS ends as failed and releases its reservation."""
    practice = make_practice()
    gw = app.extensions["clinai_llm"]
    stream = gw.stream(Actor(tenant_id=practice.id, user_id=practice.admin.sub, role="admin"),
                       "note_draft",
                       [{"role": "user", "content": "Walked daily. Slept well. " * 50}],
                       max_tokens=DRAFT_MAX_TOKENS)
    monkeypatch.setattr(gateway_module, "STREAM_MAX_SECONDS", -1.0)
    with pytest.raises(LLMUnavailable):
        list(stream)
    assert stream.usage is not None and stream.usage.source == "estimated"
    assert gw.ledger.budget(practice.id)["reserved"] == 0


@pytest.mark.parametrize(("idle_minutes", "admitted"), [(14, False), (16, True)])
def test_an_unsettled_reservation_expires_after_15_idle_minutes(app, make_practice, admin_conn,
                                                                 idle_minutes, admitted):
    """A crashed process's reservation blocks the budget only until the row is 15 min idle."""
    practice = make_practice()
    _client, session = make_case(practice)
    monthly = draft_reservation() + 10
    assert set_budget(app, practice.id, monthly).exit_code == 0
    admin_conn.execute(
        "UPDATE public.llm_budgets SET period = to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM'), "
        "used = 0, reserved = %s, updated_at = now() - make_interval(mins => %s) "
        "WHERE tenant_id = %s", (draft_reservation(), idle_minutes, practice.id))
    r = post_draft(practice.client, practice.admin.headers, session["id"])
    if admitted:
        assert r.status_code == 201, r.json
    else:
        assert (r.status_code, r.json["error"]) == (429, "token_budget_exhausted")
    usage = practice.client.get("/api/v1/admin/usage", headers=practice.admin.headers).json
    assert usage["budget"]["reserved"] == (0 if admitted else draft_reservation())


# -- 6. cost per artifact --------------------------------------------------------------


def artifact_listing(http: Any, headers: dict[str, str], query: str = "") -> Any:
    return http.get(f"/api/v1/admin/usage/artifacts{query}", headers=headers)


def test_each_call_records_its_artifact_and_the_admin_lists_cost_per_artifact(
        make_app, make_practice, admin_conn):
    a, _sleeps = make_app()
    sim = a.extensions["clinai_llm_simulator"]
    http = a.test_client()
    practice = make_practice()
    therapist = practice.add_member("therapist")
    client, session = make_case(practice, therapist=therapist)
    h = practice.admin.headers
    # Note drafts for the session: plain, streamed, and one whose stream breaks off (its
    # tokens are estimated, and stay apart from the provider-reported ones).
    assert post_draft(http, h, session["id"]).status_code == 201
    assert "event: done" in post_draft(http, h, session["id"], stream=True).get_data(
        as_text=True)
    sim.inject(Fault("cut_stream"))
    assert "event: error" in post_draft(http, h, session["id"], stream=True).get_data(
        as_text=True)
    # Case chat: plain and streamed.
    conversation = http.post(f"/api/v1/clients/{client['id']}/conversations", headers=h)
    assert conversation.status_code == 201
    conversation_id = conversation.json["id"]
    messages = f"/api/v1/conversations/{conversation_id}/messages"
    assert http.post(messages, json={"content": "How is Quenstedt doing?"},
                     headers=h).status_code == 201
    assert "event: done" in http.post(messages, json={"content": "And his sleep?"},
                                      headers={**h, **SSE}).get_data(as_text=True)
    # Another practice's draft: its artifact is never listed for this one.
    other = make_practice("Praxis Fremd")
    _other_client, other_session = make_case(other)
    assert post_draft(http, other.admin.headers, other_session["id"]).status_code == 201

    rows = ledger_rows(admin_conn, practice.id)
    assert [(r["feature"], r["artifact_kind"], str(r["artifact_id"])) for r in rows] == (
        [("note_draft", "session", session["id"])] * 3
        + [("case_chat", "conversation", conversation_id)] * 2)
    assert [r["usage_source"] for r in rows] == [
        "provider", "provider", "estimated", "provider", "provider"]
    other_rows = ledger_rows(admin_conn, other.id)
    assert [(r["artifact_kind"], str(r["artifact_id"])) for r in other_rows] == [
        ("session", other_session["id"])]

    listed = artifact_listing(http, h)
    assert listed.status_code == 200, listed.json
    assert '"total": 2' in listed.headers["X-Pagination"]

    def expected(selected: list[dict[str, Any]], kind: str, artifact_id: str,
                 feature: str) -> dict[str, Any]:
        provider = [r for r in selected if r["usage_source"] == "provider"]
        estimated = [r for r in selected if r["usage_source"] == "estimated"]
        return {"kind": kind, "id": artifact_id, "feature": feature,
                "requests": len(selected),
                "prompt_tokens": sum(r["prompt_tokens"] for r in provider),
                "completion_tokens": sum(r["completion_tokens"] for r in provider),
                "cached_tokens": sum(r["cached_tokens"] for r in provider),
                "estimated_tokens": sum(r["prompt_tokens"] + r["completion_tokens"]
                                        for r in estimated),
                "cost": str(sum((r["cost"] for r in selected), Decimal(0))),
                "currency": "EUR"}

    drafts = expected(rows[:3], "session", session["id"], "note_draft")
    chats = expected(rows[3:], "conversation", conversation_id, "case_chat")
    assert drafts["estimated_tokens"] > 0 and drafts["cached_tokens"] > 0
    by_cost = sorted([drafts, chats], key=lambda x: Decimal(x["cost"]), reverse=True)
    assert Decimal(by_cost[0]["cost"]) > Decimal(by_cost[1]["cost"])
    assert listed.json == by_cost
    # The totals add up to the month's report, whose estimated tokens are kept apart too.
    report = http.get("/api/v1/admin/usage", headers=h).json
    assert Decimal(report["cost"]) == sum(Decimal(x["cost"]) for x in listed.json)
    assert (report["currency"], Decimal(report["legacy_cost_usd"])) == ("EUR", Decimal(0))
    assert report["estimated_tokens"] == drafts["estimated_tokens"]
    assert report["by_feature"]["note_draft"]["estimated_tokens"] == drafts["estimated_tokens"]
    assert report["by_feature"]["case_chat"]["estimated_tokens"] == 0

    # Paginated, most expensive first.
    page = artifact_listing(http, h, "?page=2&page_size=1")
    assert page.status_code == 200
    assert page.json == by_cost[1:]
    assert '"total": 2' in page.headers["X-Pagination"]
    assert artifact_listing(http, h, "?page=5&page_size=1").json == []
    # Another month has none; the other practice sees only its own.
    assert artifact_listing(http, h, "?period=2000-01").json == []
    theirs = artifact_listing(http, other.admin.headers).json
    assert [(x["kind"], x["id"]) for x in theirs] == [("session", other_session["id"])]
    assert theirs[0]["cost"] == str(other_rows[0]["cost"])
    # Admins only; a bad period is a 422.
    forbidden = artifact_listing(http, therapist.headers)
    assert forbidden.status_code == 403, forbidden.json
    assert artifact_listing(http, h, "?period=2026-13").status_code == 422
