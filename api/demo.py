"""The demo practice of ``flask dev seed``: fixed, clearly fictional users and records.

The ids are constants so that the OpenAPI examples (``api/examples.py``) name users that
exist in the demo practice and work as written.

``seed`` builds the practice through the app's own API (``app.test_client()`` with tokens
from the development issuer), so validation, tenancy, role rules and the audit trail are
the real ones. It converges rather than repeats: a rerun finds the practice, the members,
the clients (by name), their sessions (by start time), the notes (by format and author)
and the clients' consents to AI assistance that exist already, creates only what is
missing, and mints fresh tokens.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
import shlex
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

DEMO_PRACTICE_NAME = "Demo-Praxis Sonnenschein (fictional)"
# Token subjects of the demo users, shaped like B2C object ids.
DEMO_ADMIN_ID = "00000000-0000-4000-8000-00000000ad01"
DEMO_THERAPIST_ID = "00000000-0000-4000-8000-0000000000e1"
DEMO_THERAPIST_EMAIL = "demo-therapeutin@example.org"
# Sent as X-Request-ID, so the seed's writes are recognisable in the audit trail.
SEED_REQUEST_ID = "demo-seed"
# Development tokens live this long (DevIssuer.mint's default).
TOKEN_LIFETIME = dt.timedelta(hours=8)

API = "/api/v1"
PAGE_SIZE = 100


class SeedError(RuntimeError):
    """The demo practice could not be created or found."""


@dataclass(frozen=True)
class DemoNote:
    format: str
    content: dict[str, str]
    signed: bool = False


@dataclass(frozen=True)
class DemoSession:
    started_at: str
    duration_minutes: int
    modality: str
    transcript: str
    notes: tuple[DemoNote, ...] = ()


@dataclass(frozen=True)
class DemoClient:
    first_name: str
    last_name: str
    date_of_birth: str
    contact: dict[str, str]
    # Who the client is assigned to, and who records its sessions and notes:
    # "therapist", "admin", or None (unassigned: only admins see the client).
    owner: str | None
    sessions: tuple[DemoSession, ...]
    status: str = "active"
    treatment_ended_on: str | None = None  # set by an admin; a discharged client has one


DEMO_CLIENTS: tuple[DemoClient, ...] = (
    DemoClient(
        first_name="Demo-Klientin", last_name="Beispiel", date_of_birth="1990-05-17",
        contact={"email": "demo-klientin@example.org", "phone": "+49 30 555 0101",
                 "address": "Beispielweg 1, 10115 Berlin (fiktiv)"},
        owner="therapist",
        sessions=(
            DemoSession(
                started_at="2026-10-05T10:00:00+02:00", duration_minutes=50,
                modality="in_person",
                transcript=(
                    "T: Welcome back. How has the past week been?\n"
                    "C: Busy. I slept badly on most nights because of a deadline at work.\n"
                    "T: What did you do when you could not sleep?\n"
                    "C: I looked at my phone until late. On the weekend it was better.\n"
                    "T: Let us try a wind-down routine without the phone this week.\n"
                    "C: I can try that. Reading helped me in the past."
                ),
                notes=(DemoNote("SOAP", {
                    "subjective": "Reports poor sleep during a work deadline; better at the "
                                  "weekend.",
                    "objective": "Tired but engaged, good rapport.",
                    "assessment": "Sleep problems linked to work stress.",
                    "plan": "Wind-down routine without the phone; review next week.",
                }, signed=True),),
            ),
            DemoSession(
                started_at="2026-10-12T10:00:00+02:00", duration_minutes=50, modality="video",
                transcript=(
                    "T: Last time we planned a wind-down routine. How did it go?\n"
                    "C: I read for half an hour before bed on four evenings.\n"
                    "C: I fell asleep faster on those nights.\n"
                    "T: That is a good start. What got in the way on the other evenings?\n"
                    "C: Emails from work. I answered them in bed.\n"
                    "T: Could you switch off work notifications after eight in the evening?\n"
                    "C: Yes, I will set that up tomorrow."
                ),
            ),
        ),
    ),
    DemoClient(
        first_name="Max", last_name="Mustermann (fiktiv)", date_of_birth="1978-11-02",
        contact={"email": "max.mustermann@example.org", "phone": "+49 30 555 0102"},
        owner="therapist",
        sessions=(
            DemoSession(
                started_at="2026-10-08T16:30:00+02:00", duration_minutes=25, modality="phone",
                transcript=(
                    "T: You asked for a short call. What is on your mind?\n"
                    "C: I had a panic attack on the train on Monday.\n"
                    "T: What helped you get through it?\n"
                    "C: The breathing exercise, after a few minutes.\n"
                    "T: Good. Let us practise it together once more now."
                ),
                notes=(DemoNote("DAP", {
                    "data": "Panic attack on the train on Monday; breathing exercise helped.",
                    "assessment": "Coping skill in use; symptoms still present.",
                    "plan": "Practise breathing daily; regular session next week.",
                }),),
            ),
        ),
    ),
    DemoClient(
        first_name="Erika", last_name="Musterfrau (fiktiv)", date_of_birth="1965-02-28",
        contact={"email": "erika.musterfrau@example.org", "phone": "+49 30 555 0103"},
        owner=None,
        sessions=(
            DemoSession(
                started_at="2026-09-30T09:00:00+02:00", duration_minutes=60,
                modality="in_person",
                transcript=(
                    "T: Thank you for coming in for the first meeting.\n"
                    "C: My doctor suggested I talk to someone about my low mood.\n"
                    "T: How long have you been feeling this way?\n"
                    "C: Since the spring, after I retired.\n"
                    "T: We will find a therapist with a free place for you."
                ),
            ),
        ),
    ),
    DemoClient(
        first_name="Kim", last_name="Beispielperson (fiktiv)", date_of_birth="2001-07-09",
        contact={"email": "kim.beispielperson@example.org", "phone": "+49 30 555 0104"},
        owner="admin", status="discharged", treatment_ended_on="2026-09-15",
        sessions=(
            DemoSession(
                started_at="2026-09-15T14:00:00+02:00", duration_minutes=50, modality="video",
                transcript=(
                    "T: This is our last planned session. How do you feel about ending?\n"
                    "C: Ready. The exam anxiety is manageable now.\n"
                    "T: What will you do if it comes back?\n"
                    "C: Use the plan we wrote and get in touch if I need to."
                ),
                notes=(DemoNote("BIRP", {
                    "behavior": "Calm, reflective about ending therapy.",
                    "intervention": "Reviewed the relapse-prevention plan.",
                    "response": "Confident in using the plan independently.",
                    "plan": "Discharged; may get in touch again if needed.",
                }, signed=True),),
            ),
        ),
    ),
)


@dataclass
class SeedResult:
    tenant_id: uuid.UUID
    admin_token: str
    therapist_token: str
    client_id: uuid.UUID  # a client assigned to the therapist
    session_id: uuid.UUID  # that client's latest session: a transcript, no note of the seed
    # What this run created, by kind ("practice", "member", "client", "session", "note",
    # "consent").
    created: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        if not self.created:
            return "found complete, nothing created"
        return "created " + ", ".join(f"{n} {kind}{'s' if n > 1 else ''}"
                                      for kind, n in self.created.items())

    def exports(self) -> str:
        """Shell lines: comments, then ``export`` lines (``eval`` or ``source`` them)."""
        hours = int(TOKEN_LIFETIME.total_seconds() // 3600)
        lines = [
            f"# {DEMO_PRACTICE_NAME} (practice {self.tenant_id}): {self.summary()}.",
            f"# Tokens expire after {hours} hours; rerun `flask dev seed` "
            "(or scripts/serve --demo) for fresh ones.",
            f"export CLINAI_TENANT_ID={self.tenant_id}",
            f"export ADMIN_TOKEN={shlex.quote(self.admin_token)}",
            f"export THERAPIST_TOKEN={shlex.quote(self.therapist_token)}",
            f"export CLIENT_ID={self.client_id}",
            f"export SESSION_ID={self.session_id}",
        ]
        return "\n".join(lines) + "\n"


def seed(app: Flask) -> SeedResult:
    """Create the demo practice, or complete and reuse it; return ids and fresh tokens.

    Development only (the tokens come from the development issuer). Runs in a fresh
    context, so each request gets its own app context even when the caller (a CLI
    command) has one pushed.
    """
    if app.config["APP_ENV"] != "development" or "clinai_dev_issuer" not in app.extensions:
        raise SeedError("the demo practice needs APP_ENV=development and no "
                        "AUTH_OIDC_METADATA_URL")
    previous = logging.root.manager.disable
    logging.disable(logging.INFO)  # no access line per seed request
    try:
        return contextvars.Context().run(_Seeder(app).run)
    finally:
        logging.disable(previous)


class _Seeder:
    def __init__(self, app: Flask) -> None:
        self.app = app
        self.client: FlaskClient = app.test_client()
        self.issuer = app.extensions["clinai_dev_issuer"]
        self.created: Counter[str] = Counter()

    def token(self, subject: str, tenant: uuid.UUID | None = None,
              role: str | None = None, email: str | None = None) -> str:
        minted: str = self.issuer.mint(
            subject=subject, tenant=str(tenant) if tenant else None, role=role, email=email,
            tenant_claim=self.app.config["AUTH_TENANT_CLAIM"],
            role_claim=self.app.config["AUTH_ROLE_CLAIM"], lifetime=TOKEN_LIFETIME)
        return minted

    def call(self, method: str, path: str, token: str, body: Any = None,
             expect: tuple[int, ...] = (200, 201)) -> Any:
        response = self.client.open(
            API + path, method=method, json=body,
            headers={"Authorization": f"Bearer {token}", "X-Request-ID": SEED_REQUEST_ID})
        payload = response.get_json(silent=True)
        if response.status_code not in expect:
            detail = payload.get("message") if isinstance(payload, dict) else response.text
            raise SeedError(f"{method} {API}{path} answered {response.status_code}: {detail}")
        return payload

    def every(self, path: str, token: str) -> Iterator[dict[str, Any]]:
        page = 1
        while True:
            sep = "&" if "?" in path else "?"
            items = self.call("GET", f"{path}{sep}page={page}&page_size={PAGE_SIZE}", token)
            yield from items
            if len(items) < PAGE_SIZE:
                return
            page += 1

    def tenant_of(self, user_id: str) -> uuid.UUID | None:
        """The active practice ``user_id`` belongs to, as the B2C connector finds it."""
        engine = self.app.extensions["clinai_db"].engine
        with engine.connect() as conn:
            row = conn.execute(text("SELECT * FROM public.claims_for_user(:u)"),
                               {"u": user_id}).first()
        if row is None:
            return None
        if row.member_role != "admin":
            raise SeedError(f"the demo admin {user_id} is a {row.member_role} of "
                            f"{row.tenant_id}, not its admin")
        tenant: uuid.UUID = row.tenant_id
        return tenant

    def practice(self) -> uuid.UUID:
        tenant_id = self.tenant_of(DEMO_ADMIN_ID)
        if tenant_id is not None:
            return tenant_id
        created = self.call("POST", "/onboarding/tenants", self.token(DEMO_ADMIN_ID),
                            {"name": DEMO_PRACTICE_NAME}, expect=(201, 409))
        if created.get("error") == "already_member":
            raise SeedError("the demo admin belongs to a practice that is not active; "
                            "`flask tenancy list` shows it, `flask tenancy activate ID` "
                            "reopens it")
        self.created["practice"] += 1
        return uuid.UUID(created["id"])

    def therapist(self, admin: str, tenant_id: uuid.UUID) -> None:
        members = {m["user_id"] for m in self.every("/admin/members", admin)}
        if DEMO_THERAPIST_ID in members:
            return
        invitation = self.call("POST", "/admin/invitations", admin,
                               {"email": DEMO_THERAPIST_EMAIL, "role": "therapist"})
        accepted = self.call("POST", f"/onboarding/invitations/{invitation['code']}/accept",
                             self.token(DEMO_THERAPIST_ID, email=DEMO_THERAPIST_EMAIL),
                             expect=(201, 409))
        if accepted.get("tenant_id") != str(tenant_id):
            raise SeedError(f"the demo therapist {DEMO_THERAPIST_ID} belongs to another "
                            "practice")
        self.created["member"] += 1

    def run(self) -> SeedResult:
        tenant_id = self.practice()
        admin = self.token(DEMO_ADMIN_ID, tenant_id, "admin")
        self.therapist(admin, tenant_id)
        therapist = self.token(DEMO_THERAPIST_ID, tenant_id, "therapist")
        tokens = {"admin": admin, "therapist": therapist, None: admin}
        authors = {"admin": DEMO_ADMIN_ID, "therapist": DEMO_THERAPIST_ID, None: DEMO_ADMIN_ID}

        existing = {(c["first_name"], c["last_name"]): c for c in self.every("/clients", admin)}
        made: dict[tuple[str, str], tuple[uuid.UUID, list[uuid.UUID]]] = {}
        for spec in DEMO_CLIENTS:
            token = tokens[spec.owner]
            client = existing.get((spec.first_name, spec.last_name))
            if client is None:
                client = self.call("POST", "/clients", token, {
                    "first_name": spec.first_name, "last_name": spec.last_name,
                    "date_of_birth": spec.date_of_birth, "contact": spec.contact,
                    "assigned_therapist_id": authors[spec.owner] if spec.owner else None,
                    "status": spec.status, "treatment_ended_on": spec.treatment_ended_on,
                })
                self.created["client"] += 1
            made[(spec.first_name, spec.last_name)] = (
                uuid.UUID(client["id"]),
                self.sessions(spec, client["id"], token, authors[spec.owner]))
        for spec in DEMO_CLIENTS:  # after the records, so the summary lists them first
            self.consent(made[(spec.first_name, spec.last_name)][0], tokens[spec.owner])
        featured = DEMO_CLIENTS[0]  # the therapist's client
        client_id, session_ids = made[(featured.first_name, featured.last_name)]
        return SeedResult(tenant_id=tenant_id, admin_token=admin, therapist_token=therapist,
                          client_id=client_id, session_id=session_ids[-1],
                          created=self.created)

    def consent(self, client_id: uuid.UUID, token: str) -> None:
        """Record the client's consent to AI assistance unless one is current (the demo
        practice is new, so it requires consent for note drafts and case chat)."""
        path = f"/clients/{client_id}/consents"
        if any(c["current"] and c["purpose"] == "ai_assistance"
               for c in self.every(path, token)):
            return
        self.call("POST", path, token, {
            "purpose": "ai_assistance",
            "document_reference": "Demo: Einwilligung (fiktiv), Akte S. 1"}, expect=(201,))
        self.created["consent"] += 1

    def sessions(self, spec: DemoClient, client_id: str, token: str,
                 author: str) -> list[uuid.UUID]:
        """Make the client's demo sessions and notes; return the session ids in spec order."""
        existing = {dt.datetime.fromisoformat(s["started_at"]): s
                    for s in self.every(f"/clients/{client_id}/sessions", token)}
        ids = []
        for demo in spec.sessions:
            record = existing.get(dt.datetime.fromisoformat(demo.started_at))
            if record is None:
                record = self.call("POST", f"/clients/{client_id}/sessions", token, {
                    "started_at": demo.started_at, "duration_minutes": demo.duration_minutes,
                    "modality": demo.modality, "transcript": demo.transcript,
                })
                self.created["session"] += 1
            ids.append(uuid.UUID(record["id"]))
            if demo.notes:
                self.notes(demo, record["id"], token, author)
        return ids

    def notes(self, demo: DemoSession, session_id: str, token: str, author: str) -> None:
        # A note the seed wrote: same format and author, written by hand (not an AI draft).
        existing = {n["format"]: n for n in self.every(f"/sessions/{session_id}/notes", token)
                    if n["author_id"] == author and n["source"] == "manual"}
        for note in demo.notes:
            record = existing.get(note.format)
            if record is None:
                record = self.call("POST", f"/sessions/{session_id}/notes", token,
                                   {"format": note.format, "content": note.content})
                self.created["note"] += 1
            if note.signed and record["status"] != "signed":
                self.call("POST", f"/notes/{record['id']}/sign", token)
