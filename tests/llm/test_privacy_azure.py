"""Privacy of the AI features and the Azure endpoint path over real HTTP.

Privacy: whatever way a transcript or a chat message mentions the client (full name,
surname alone, title, possessive, first name, date of birth in German notation, phone in
national notation, e-mail, address), none of it reaches the provider, the user sees the
real names, and nothing identifying or clinical is written to the logs, even at DEBUG.

Azure: the same features against ``llm.simulator.serve`` on loopback, configured as a
real Azure endpoint (``AZURE_OPENAI_ENDPOINT`` + API key), with faults over real HTTP.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from flask import Flask

from api import create_app
from api.logs import JsonFormatter
from api.settings import ConfigError
from llm.simulator import Fault, Simulator, serve
from tests.conftest import app_config
from tests.llm.test_features import parse_sse

FIRST, LAST = "Quirin", "Vandersloot"
DOB_ISO, DOB_DE = "1979-03-08", "08.03.1979"
EMAIL = "quirin.vandersloot@example.org"
PHONE, PHONE_NATIONAL = "+49 30 98765432", "030 98765432"
ADDRESS = "Kastanienallee 17, 10435 Berlin"

# Clinical content without identifiers: must never be logged.
CLINICAL = (
    "arrived on time and described a calmer week",
    "reported sleeping seven hours on most nights",
    "sister had visited from hamburg",
    "the breathing exercise helped before meetings",
    "was confirmed for the insurance form",
    "asked to be reached at",
    "walks to the park daily",
    "wants to continue the weekly sessions",
    "avoidance before team meetings",
    "exposure exercises at work",
)
TRANSCRIPT = (
    f"{FIRST} {LAST} arrived on time and described a calmer week. "
    f"Mr. {LAST} reported sleeping seven hours on most nights. "
    f"{LAST}'s sister had visited from Hamburg over the weekend. "
    f"{FIRST} said the breathing exercise helped before meetings. "
    f"His date of birth {DOB_DE} was confirmed for the insurance form. "
    f"He asked to be reached at {PHONE_NATIONAL} or {EMAIL} for scheduling. "
    f"He still lives at {ADDRESS} and walks to the park daily. "
    f"{LAST.upper()} wants to continue the weekly sessions."
)
QUESTIONS = (
    f"How should I address {FIRST} {LAST}'s avoidance before team meetings? Mr. {LAST} "
    f"(born {DOB_DE}) can be called on {PHONE_NATIONAL}.",
    f"Would exposure exercises at work suit {FIRST} {LAST}? His e-mail is {EMAIL}, "
    f"he lives at {ADDRESS}.",
)
# What must not reach the provider (checked case-insensitively).
IDENTIFIERS = (FIRST, LAST, DOB_ISO, DOB_DE, "8.3.1979", EMAIL, "98765432", "Kastanienallee",
               "10435")


def _leaks(text: str, secrets: tuple[str, ...]) -> list[str]:
    lowered = text.lower()
    return [s for s in secrets if s.lower() in lowered]


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []
        self.loggers: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        self.loggers.add(record.name)
        self.lines.append(self.format(record))


@contextmanager
def all_logs() -> Iterator[_Collector]:
    """Collect every log line (root at DEBUG) as the app would emit it."""
    collector = _Collector()
    root = logging.getLogger()
    level = root.level
    root.addHandler(collector)
    root.setLevel(logging.DEBUG)
    try:
        yield collector
    finally:
        root.removeHandler(collector)
        root.setLevel(level)


def _new_case(practice: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    client = practice.create_client(first_name=FIRST, last_name=LAST, date_of_birth=DOB_ISO,
                                    contact={"email": EMAIL, "phone": PHONE,
                                             "address": ADDRESS})
    session = practice.client.post(
        f"/api/v1/clients/{client['id']}/sessions", headers=practice.admin.headers,
        json={"started_at": "2026-11-20T09:00:00+01:00", "duration_minutes": 50,
              "modality": "video", "transcript": TRANSCRIPT})
    assert session.status_code == 201, session.json
    return client, dict(session.json)


def _sse_text(body: str) -> tuple[str, list[tuple[str, dict[str, Any]]]]:
    events = parse_sse(body)
    return "".join(e[1]["text"] for e in events if e[0] == "delta"), events


# -- privacy -------------------------------------------------------------------------------


def test_no_identifier_reaches_the_provider_or_the_logs(app, make_practice):
    simulator = app.extensions["clinai_llm_simulator"]
    practice = make_practice()
    c, h = practice.client, practice.admin.headers
    before, root_level = len(simulator.requests), logging.getLogger().level
    with all_logs() as logs:
        client, session = _new_case(practice)
        drafts = f"/api/v1/sessions/{session['id']}/note-drafts"

        plain = c.post(drafts, json={"format": "SOAP"}, headers=h)
        assert plain.status_code == 201, plain.json
        streamed = c.post(drafts, json={"format": "BIRP"},
                          headers={**h, "Accept": "text/event-stream"})
        assert streamed.status_code == 201
        streamed_text, events = _sse_text(streamed.get_data(as_text=True))
        assert events[-1][0] == "done", events[-1]

        conversation = c.post(f"/api/v1/clients/{client['id']}/conversations", headers=h)
        assert conversation.status_code == 201, conversation.json
        messages = f"/api/v1/conversations/{conversation.json['id']}/messages"
        answer = c.post(messages, json={"content": QUESTIONS[0]}, headers=h)
        assert answer.status_code == 201, answer.json
        streamed_answer = c.post(messages, json={"content": QUESTIONS[1]},
                                 headers={**h, "Accept": "text/event-stream"})
        assert streamed_answer.status_code == 201
        answer_text, answer_events = _sse_text(streamed_answer.get_data(as_text=True))
        assert answer_events[-1][0] == "done", answer_events[-1]
        history = c.get(messages, headers=h)
        assert history.status_code == 200

    # The provider saw placeholders only, in all four calls (the second chat turn also
    # carried the first turn, real names restored, as history).
    sent = simulator.requests[before:]
    assert len(sent) == 4
    body = json.dumps(sent, ensure_ascii=False)
    assert _leaks(body, IDENTIFIERS) == [], body
    for marker in ("[PERSON_1_FIRST]", "[PERSON_1_LAST]", "[PERSON_1_DOB]",
                   "[PERSON_1_PHONE]", "[PERSON_1_EMAIL]", "[PERSON_1_ADDRESS]"):
        assert marker in body
    assert "arrived on time" in body  # the transcript itself was sent, masked

    # The user sees the real names, no placeholder.
    shown = {
        "draft": json.dumps(plain.json["content"], ensure_ascii=False),
        "streamed draft": streamed_text,
        "chat": answer.json["content"],
        "streamed chat": answer_text,
    }
    for what, text in shown.items():
        assert "[PERSON_" not in text, (what, text)
        assert LAST in text and FIRST in text, (what, text)
    note = c.get(f"/api/v1/notes/{events[-1][1]['note_id']}", headers=h)
    assert note.status_code == 200, note.json
    for stored in (json.dumps(history.json, ensure_ascii=False),
                   json.dumps(note.json["content"], ensure_ascii=False)):
        assert "[PERSON_" not in stored and LAST in stored, stored

    # Logs: lines were captured (access lines at INFO, SDK/transport lines at DEBUG) ...
    assert "clinai.access" in logs.loggers
    assert any(json.loads(line)["level"] == "DEBUG" for line in logs.lines), logs.loggers
    # ... and none carries an identifier or clinical text, masked or not.
    logged = "\n".join(logs.lines)
    secrets = (*IDENTIFIERS, PHONE, PHONE_NATIONAL, *CLINICAL, *TRANSCRIPT.split(". "),
               *QUESTIONS)
    assert _leaks(logged, secrets) == [], logged
    assert logging.getLogger().level == root_level  # restored


@pytest.mark.parametrize("mention, secret", [
    pytest.param(f"{FIRST}s Mutter rief in der Praxis an.", FIRST, id="genitive-first-name"),
    pytest.param(f"Herrn {LAST}s Stimmung ist heute besser.", LAST, id="genitive-surname"),
    pytest.param("Er ist am 08.03.79 geboren.", "08.03.79", id="dob-two-digit-year"),
    pytest.param("Er ist am 8. März 1979 geboren.", "8. März 1979", id="dob-month-name"),
    pytest.param(f"Frau {LAST} kam pünktlich.", LAST, id="title-frau"),
    pytest.param(f"{FIRST.upper()} {LAST.upper()} kam pünktlich.", LAST, id="upper-case"),
])
def test_german_mentions_do_not_reach_the_provider(app, make_practice, mention, secret):
    """A German transcript names the client in the ways German speech does."""
    simulator = app.extensions["clinai_llm_simulator"]
    practice = make_practice()
    client = practice.create_client(first_name=FIRST, last_name=LAST, date_of_birth=DOB_ISO)
    session = practice.client.post(
        f"/api/v1/clients/{client['id']}/sessions", headers=practice.admin.headers,
        json={"started_at": "2026-11-20T09:00:00+01:00", "duration_minutes": 50,
              "modality": "in_person", "transcript": f"Die Woche war ruhiger. {mention}"})
    assert session.status_code == 201, session.json
    before = len(simulator.requests)
    draft = practice.client.post(f"/api/v1/sessions/{session.json['id']}/note-drafts",
                                 json={"format": "SOAP"}, headers=practice.admin.headers)
    assert draft.status_code == 201, draft.json
    sent = json.dumps(simulator.requests[before:], ensure_ascii=False)
    assert "Die Woche war ruhiger" in sent
    assert secret.lower() not in sent.lower(), sent


# -- the Azure endpoint path over real HTTP ------------------------------------------------


@dataclass
class Azure:
    app: Flask
    simulator: Simulator
    seen: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture(scope="module")
def azure(app, database_url, issuer) -> Iterator[Azure]:
    """An app whose AZURE_OPENAI_ENDPOINT is the simulator served on loopback."""
    simulator = Simulator()
    server = serve(simulator)
    seen: list[dict[str, Any]] = []
    served = server.RequestHandlerClass

    class Recording(served):  # type: ignore[misc,valid-type]
        def do_POST(self) -> None:
            seen.append({"path": self.path, "api_key": self.headers.get("api-key"),
                         "authorization": self.headers.get("authorization")})
            super().do_POST()

    server.RequestHandlerClass = Recording
    port = server.server_address[1]
    azure_app = None
    try:
        azure_app = create_app(app_config(
            database_url, issuer, AZURE_OPENAI_ENDPOINT=f"http://127.0.0.1:{port}",
            AZURE_OPENAI_API_KEY="test-key", AZURE_OPENAI_CHAT_DEPLOYMENT="gpt-4o-mini"))
        yield Azure(azure_app, simulator, seen)
    finally:
        if azure_app is not None:
            azure_app.extensions["clinai_llm"].client.close()
            azure_app.extensions["clinai_db"].dispose()
        server.shutdown()
        server.server_close()


def _azure_case(azure: Azure, make_practice) -> tuple[Any, dict[str, str], str, str]:
    """A practice made through the shared app; its client and session, used via Azure."""
    practice = make_practice()
    client, session = _new_case(practice)
    return azure.app.test_client(), practice.admin.headers, client["id"], session["id"]


def test_azure_endpoint_drafts_and_chat(azure, make_practice):
    assert "clinai_llm_simulator" not in azure.app.extensions  # no in-process simulator
    c, h, client_id, session_id = _azure_case(azure, make_practice)
    before, seen_before = len(azure.simulator.requests), len(azure.seen)

    with all_logs() as logs:
        plain = c.post(f"/api/v1/sessions/{session_id}/note-drafts", json={"format": "SOAP"},
                       headers=h)
        assert plain.status_code == 201, plain.json
        assert (plain.json["source"], plain.json["status"]) == ("ai", "draft")
        assert set(plain.json["content"]) <= {"subjective", "objective", "assessment", "plan"}
        assert LAST in json.dumps(plain.json["content"])

        streamed = c.post(f"/api/v1/sessions/{session_id}/note-drafts", json={"format": "DAP"},
                          headers={**h, "Accept": "text/event-stream"})
        assert streamed.status_code == 201
        text, events = _sse_text(streamed.get_data(as_text=True))
        assert events[-1][0] == "done", events[-1]
        usage = events[-1][1]["usage"]
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
        assert LAST in text and "[PERSON_" not in text

        conversation = c.post(f"/api/v1/clients/{client_id}/conversations", headers=h)
        assert conversation.status_code == 201, conversation.json
        reply = c.post(f"/api/v1/conversations/{conversation.json['id']}/messages",
                       json={"content": QUESTIONS[0]}, headers=h)
        assert reply.status_code == 201, reply.json
        assert FIRST in reply.json["content"]

    # Nothing identifying, clinical or secret in the logs of the real-HTTP transport.
    assert "httpx2" in logs.loggers
    assert _leaks("\n".join(logs.lines), (*IDENTIFIERS, *CLINICAL, "test-key")) == []

    # The HTTP server's simulator got the three requests, masked, on Azure's path, with
    # the API key in the api-key header.
    sent = azure.simulator.requests[before:]
    assert len(sent) == 3
    assert _leaks(json.dumps(sent, ensure_ascii=False), IDENTIFIERS) == []
    assert [bool(r.get("stream")) for r in sent] == [False, True, False]
    seen = azure.seen[seen_before:]
    assert len(seen) == 3
    for request in seen:
        path, _, query = request["path"].partition("?")
        assert path == "/openai/deployments/gpt-4o-mini/chat/completions"
        assert "api-version=2024-10-21" in query
        assert request["api_key"] == "test-key"
        assert request["authorization"] is None

    usage_report = c.get("/api/v1/admin/usage", headers=h)
    assert usage_report.status_code == 200, usage_report.json
    assert usage_report.json["by_feature"]["note_draft"]["calls"] == 2
    assert usage_report.json["by_feature"]["case_chat"]["calls"] == 1
    assert usage_report.json["budget"]["reserved"] == 0


def test_azure_rate_limit_retry_after_over_http(azure, make_practice, monkeypatch):
    c, h, _client_id, session_id = _azure_case(azure, make_practice)
    gateway = azure.app.extensions["clinai_llm"]
    sleeps: list[float] = []
    monkeypatch.setattr(gateway, "sleep", sleeps.append)
    drafts = f"/api/v1/sessions/{session_id}/note-drafts"

    # One 429 with Retry-After: the gateway waits as told and the retry succeeds.
    before = len(azure.simulator.requests)
    azure.simulator.inject(Fault("status", status=429, retry_after=2))
    ok = c.post(drafts, json={"format": "SOAP"}, headers=h)
    assert ok.status_code == 201, ok.json
    assert sleeps == [2.0]
    assert len(azure.simulator.requests) - before == 2

    # 429 on every attempt: 503 with Retry-After, nothing saved.
    sleeps.clear()
    before = len(azure.simulator.requests)
    azure.simulator.inject(*[Fault("status", status=429, retry_after=2)] * 3)
    refused = c.post(drafts, json={"format": "SOAP"}, headers=h)
    assert refused.status_code == 503, refused.json
    assert refused.json["error"] == "llm_unavailable"
    assert refused.headers["Retry-After"] == "30"
    assert sleeps == [2.0, 2.0]
    assert len(azure.simulator.requests) - before == 3
    assert not azure.simulator.faults
    notes = c.get(f"/api/v1/sessions/{session_id}/notes", headers=h)
    assert notes.status_code == 200, notes.json
    assert len(notes.json) == 1  # the successful draft only


def test_azure_stream_cut_over_http(azure, make_practice):
    c, h, _client_id, session_id = _azure_case(azure, make_practice)
    azure.simulator.inject(Fault("cut_stream"))
    response = c.post(f"/api/v1/sessions/{session_id}/note-drafts", json={"format": "SOAP"},
                      headers={**h, "Accept": "text/event-stream"})
    assert response.status_code == 201  # the stream had started
    _text, events = _sse_text(response.get_data(as_text=True))
    assert events[0][0] == "delta"
    assert events[-1] == ("error", {"error": "llm_unavailable",
                                    "message": "the AI reply broke off; nothing was saved"})
    assert "done" not in [name for name, _ in events]
    usage = c.get("/api/v1/admin/usage", headers=h).json
    assert usage["budget"]["reserved"] == 0

    # The connection was dropped; the next call opens a new one and works.
    again = c.post(f"/api/v1/sessions/{session_id}/note-drafts", json={"format": "SOAP"},
                   headers={**h, "Accept": "text/event-stream"})
    assert parse_sse(again.get_data(as_text=True))[-1][0] == "done"


@pytest.mark.parametrize("endpoint", ["http://example.com", "http://10.0.0.5:8080",
                                      "ftp://127.0.0.1"])
def test_plain_http_azure_endpoint_is_refused(database_url, issuer, endpoint):
    with pytest.raises(ConfigError, match="AZURE_OPENAI_ENDPOINT"):
        create_app(app_config(database_url, issuer, AZURE_OPENAI_ENDPOINT=endpoint,
                              AZURE_OPENAI_API_KEY="test-key"))
