"""Request and response examples of the OpenAPI document: one fictional practice.

The ids hang together (the client's session, the session's note, ...) and the users are
the demo practice's (``api.demo``), so a request example works as written against
``flask dev seed``'s practice (``tests/test_demo.py`` sends each one).
"""

from __future__ import annotations

from typing import Any

from api.demo import DEMO_ADMIN_ID, DEMO_THERAPIST_ID

TENANT_ID = "6f1d2c3b-4a59-4e7d-8c1b-2a3f4e5d6c7b"
CLIENT_ID = "3c9e1f2a-7b4d-4e8a-9f1c-5d6e7a8b9c0d"
SESSION_ID = "8a7b6c5d-4e3f-4a1b-9c2d-1e0f9a8b7c6d"
NOTE_ID = "9b3f2d4e-8a71-4c55-b0e2-6d1f8c3a7e90"
CONVERSATION_ID = "c4d5e6f7-a8b9-4c0d-8e1f-2a3b4c5d6e7f"
MESSAGE_ID = "d1e2f3a4-b5c6-4d7e-8f9a-0b1c2d3e4f5a"
INVITATION_ID = "e7f8a9b0-c1d2-4e3f-8a4b-5c6d7e8f9a0b"
AMENDMENT_ID = "f2a3b4c5-d6e7-4f80-9a1b-2c3d4e5f6a7b"
CONSENT_ID = "f2a3b4c5-d6e7-4f8a-9b0c-1d2e3f4a5b6c"
CREATED = "2026-11-20T08:05:12.123456+00:00"
UPDATED = "2026-11-20T10:12:40.654321+00:00"
AMENDED = "2026-11-23T14:30:05.246810+00:00"


def _record(**fields: Any) -> dict[str, Any]:
    return {**fields, "created_at": CREATED, "updated_at": UPDATED}


# --- Onboarding and the practice --------------------------------------------------
TENANT_CREATE = {"name": "Praxis Dr. Beispiel"}
TENANT = {"id": TENANT_ID, "name": "Praxis Dr. Beispiel", "status": "active", "role": "admin",
          "created_at": CREATED}
MEMBERSHIP = {"tenant_id": TENANT_ID, "user_id": DEMO_THERAPIST_ID, "role": "therapist"}

# --- Administration --------------------------------------------------------------
INVITATION_CREATE = {"email": "kollegin@example.org", "role": "therapist"}
INVITATION = {"id": INVITATION_ID, "code": "k3XvQ9pL2mN8rT5wY7zA1bC4dE6fG0hJ",
              "email": "kollegin@example.org", "role": "therapist",
              "expires_at": "2026-11-27T08:05:12.123456+00:00", "created_at": CREATED}
SECURITY_EVENTS = [
    {"id": 17, "occurred_at": UPDATED, "actor_id": DEMO_THERAPIST_ID,
     "actor_role": "therapist", "method": "GET", "route": "/api/v1/clients/<uuid:client_id>",
     "status": 404, "error": "not_found", "resource_ids": [CLIENT_ID],
     "request_id": "7d2c4b1a9e8f40c3b5a6d7e8f9012345", "client_request_id": None},
]
PENDING_INVITATIONS = [{k: v for k, v in INVITATION.items() if k != "code"}]
MEMBER_PATCH = {"role": "therapist"}
MEMBER = _record(user_id=DEMO_THERAPIST_ID, role="therapist")
MEMBERS = [_record(user_id=DEMO_ADMIN_ID, role="admin"), MEMBER]
AUDIT_EVENTS = [
    {"id": 1042, "occurred_at": UPDATED, "actor_id": DEMO_THERAPIST_ID,
     "actor_role": "therapist", "action": "note.update", "resource_type": "note",
     "resource_ids": [NOTE_ID], "request_id": "3f1c9a7e52d84b0c9e6f1d2a7b4c8e01",
     "client_request_id": "praxis-app-4711"},
    {"id": 1041, "occurred_at": CREATED, "actor_id": DEMO_THERAPIST_ID,
     "actor_role": "therapist", "action": "client.list", "resource_type": "client",
     "resource_ids": [CLIENT_ID], "request_id": "0a9b8c7d6e5f40312a1b2c3d4e5f6a7b",
     "client_request_id": None},
]
_TOTALS = {"prompt_tokens": 18_240, "completion_tokens": 4_410, "total_tokens": 22_650,
           "estimated_tokens": 0, "cost": "0.00495144", "calls": 31}
USAGE = {
    "period": "2026-11", **_TOTALS, "currency": "EUR", "legacy_cost_usd": "0",
    "by_feature": {
        "note_draft": {"prompt_tokens": 12_800, "completion_tokens": 3_300,
                       "total_tokens": 16_100, "estimated_tokens": 0, "cost": "0.00358800",
                       "calls": 12},
        "case_chat": {"prompt_tokens": 5_440, "completion_tokens": 1_110,
                      "total_tokens": 6_550, "estimated_tokens": 0, "cost": "0.00136344",
                      "calls": 19}},
    "by_model": {"gpt-4o-mini": _TOTALS},
    "by_day": {"2026-11-20": _TOTALS},
    "budget": {"monthly_tokens": 2_000_000, "used": 22_650, "reserved": 0,
               "remaining": 1_977_350},
}
USAGE_ARTIFACTS = [
    {"kind": "session", "id": SESSION_ID, "feature": "note_draft", "requests": 2,
     "prompt_tokens": 2_140, "completion_tokens": 610, "cached_tokens": 1_024,
     "estimated_tokens": 0, "cost": "0.00056138", "currency": "EUR"},
    {"kind": "conversation", "id": CONVERSATION_ID, "feature": "case_chat", "requests": 3,
     "prompt_tokens": 860, "completion_tokens": 180, "cached_tokens": 0,
     "estimated_tokens": 0, "cost": "0.00021804", "currency": "EUR"},
]
SETTINGS_PATCH = {"ai_consent_required": True, "record_retention_years": 12}
SETTINGS = {"ai_consent_required": True, "record_retention_years": 12,
            "minimum_record_retention_years": 10}

# --- Clinical records (fictional people, example.org addresses) --------------------
CLIENT_CREATE = {
    "first_name": "Erika", "last_name": "Mustermann", "date_of_birth": "1985-04-12",
    "contact": {"email": "erika.mustermann@example.org", "phone": "+49 30 5550123"},
    "assigned_therapist_id": DEMO_THERAPIST_ID}
CLIENT_PATCH = {"status": "inactive"}
CLIENT = _record(id=CLIENT_ID, first_name="Erika", last_name="Mustermann",
                 date_of_birth="1985-04-12",
                 contact={"email": "erika.mustermann@example.org", "phone": "+49 30 5550123"},
                 assigned_therapist_id=DEMO_THERAPIST_ID, status="active",
                 treatment_ended_on=None, retain_until=None, restricted=False,
                 restricted_at=None, restriction_reason=None, version=1)
RESTRICTION = {"reason": "Erasure requested on 2026-11-30; record kept until retention ends"}
RESTRICTED_CLIENT = {**CLIENT, "status": "discharged", "treatment_ended_on": "2026-06-30",
                     "retain_until": "2036-06-30", "restricted": True,
                     "restricted_at": "2026-11-30T10:00:00+00:00",
                     "restriction_reason": RESTRICTION["reason"], "version": 3}
ERASURE = {"confirm": CLIENT_ID}
TOMBSTONE = {"id": "7d1c6a52-3b8e-4f0a-9c51-0e2f4b6d8a10",
             "erased_at": "2026-11-30T10:05:00+00:00", "erased_by": DEMO_ADMIN_ID,
             "reason": "no_clinical_record", "retain_until": None,
             "record_counts": {"clients": 1, "therapy_sessions": 0, "notes": 0,
                               "note_amendments": 0, "conversations": 0,
                               "conversation_messages": 0, "client_consents": 1,
                               "data_exports": 0},
             "events_repointed": 3}

SESSION_CREATE = {"started_at": "2026-11-20T09:00:00+01:00", "duration_minutes": 50,
                  "modality": "video",
                  "transcript": "T: How was your week?\nC: Better. I slept through most "
                                "nights and went to the bakery on my own twice."}
SESSION_PATCH = {"duration_minutes": 45}
SESSION = _record(id=SESSION_ID, client_id=CLIENT_ID, started_at="2026-11-20T08:00:00+00:00",
                  duration_minutes=50, modality="video",
                  transcript=SESSION_CREATE["transcript"], version=1)

_NOTE_CONTENT = {
    "subjective": "Reports better sleep; went out alone twice.",
    "objective": "Calm, good eye contact, on time.",
    "assessment": "Avoidance decreasing; exposure tasks effective.",
    "plan": "Continue graded exposure; next session in two weeks."}
NOTE_CREATE = {"format": "SOAP", "content": _NOTE_CONTENT}
_PATCH_CONTENT = {"plan": "Fortnightly from January."}
NOTE_PATCH = {"content": _PATCH_CONTENT}
NOTE = _record(id=NOTE_ID, session_id=SESSION_ID, format="SOAP",
               content=_NOTE_CONTENT, original_content=_NOTE_CONTENT,
               amendments=[], status="draft", source="manual",
               author_id=DEMO_THERAPIST_ID, signed_by=None, signed_at=None, version=1)
_PATCHED_CONTENT = {**_NOTE_CONTENT, **_PATCH_CONTENT}
PATCHED_NOTE = {**NOTE, "content": _PATCHED_CONTENT, "original_content": _PATCHED_CONTENT,
                "version": 2}
SIGNED_NOTE = {**NOTE, "status": "signed", "signed_by": DEMO_THERAPIST_ID,
               "signed_at": UPDATED, "version": 2}
# A correction of the signed note (§ 630f(1) BGB): the original stays beside it.
_AMENDED_CONTENT = {"assessment": "Avoidance decreasing; exposure tasks effective. Sleep "
                                  "improved since the medication change, not through "
                                  "exposure."}
AMENDMENT_CREATE = {
    "content": _AMENDED_CONTENT,
    "reason": "Einschätzung korrigiert: Medikamentenwechsel war nicht dokumentiert."}
AMENDED_NOTE = {
    **SIGNED_NOTE, "content": {**_NOTE_CONTENT, **_AMENDED_CONTENT},
    "amendments": [{"id": AMENDMENT_ID, **AMENDMENT_CREATE, "author_id": DEMO_THERAPIST_ID,
                    "created_at": AMENDED}],
    "version": 3, "updated_at": AMENDED}

CONSENT_CREATE = {"purpose": "ai_assistance",
                  "document_reference": "Einwilligung vom 3.11.2026, Akte S. 4"}
CONSENT = {"id": CONSENT_ID, "client_id": CLIENT_ID, **CONSENT_CREATE,
           "recorded_by": DEMO_THERAPIST_ID, "given_at": CREATED, "withdrawn_at": None,
           "withdrawn_by": None, "current": True}
CONSENTS = [CONSENT, {**CONSENT, "id": "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f",
                      "document_reference": None,
                      "given_at": "2026-10-01T09:12:00.000000+00:00",
                      "withdrawn_at": "2026-10-20T14:30:00.000000+00:00",
                      "withdrawn_by": DEMO_THERAPIST_ID, "current": False}]

# --- AI -------------------------------------------------------------------------
DRAFT_REQUEST = {"format": "SOAP"}
_AI_CONTENT = {
    "subjective": "Client reports sleeping through most nights and going out alone twice.",
    "objective": "Video session, 50 minutes.",
    "assessment": "Progress with avoidance; sleep improved.",
    "plan": "Continue graded exposure."}
AI_NOTE = {**NOTE, "source": "ai", "content": _AI_CONTENT, "original_content": _AI_CONTENT}
CONVERSATION_CREATE: dict[str, Any] = {}
CONVERSATION = {"id": CONVERSATION_ID, "client_id": CLIENT_ID, "created_by": DEMO_THERAPIST_ID,
                "created_at": CREATED}
MESSAGE_CREATE = {"content": "How could I address the avoidance pattern next session?"}
MESSAGE = {"id": MESSAGE_ID, "conversation_id": CONVERSATION_ID, "role": "assistant",
           "content": "Consider continuing graded exposure with a slightly harder step ...",
           "author_id": None,
           "usage": {"prompt_tokens": 412, "completion_tokens": 96, "total_tokens": 508},
           "created_at": UPDATED}
MESSAGES = [{**MESSAGE_CREATE, "id": "a0b1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c4d",
             "conversation_id": CONVERSATION_ID, "role": "user",
             "author_id": DEMO_THERAPIST_ID, "usage": None, "created_at": CREATED}, MESSAGE]

# --- Data exports -----------------------------------------------------------------
EXPORT_ID = "f2a3b4c5-d6e7-4f80-9a1b-2c3d4e5f6a7b"
PRACTICE_EXPORT_ID = "0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e"
EXPORT_CREATED = {"id": EXPORT_ID, "status": "pending"}
PRACTICE_EXPORT_CREATED = {"id": PRACTICE_EXPORT_ID, "status": "pending"}
EXPORT = {"id": EXPORT_ID, "kind": "client", "client_id": CLIENT_ID, "status": "ready",
          "error": None, "created_at": CREATED, "finished_at": "2026-11-20T08:05:13.402117+00:00",
          "expires_at": "2026-12-20T08:05:12.123456+00:00", "size_bytes": 48_213,
          "sha256": "9f2c4e6a8b0d1f3a5c7e9b1d3f5a7c9e1b3d5f7a9c1e3b5d7f9a1c3e5b7d9f1a",
          "download_url": "https://clinai.example.org/api/v1/downloads/eyJjIjoidC02ZjFk..."
                          "Ii4wN2Q",
          "download_expires_at": "2026-11-20T10:27:40.654321+00:00"}

# --- B2C API connector ------------------------------------------------------------
CONNECTOR_REQUEST = {"objectId": DEMO_THERAPIST_ID, "email": "therapeutin@example.org",
                     "step": "PreTokenIssuance",
                     "client_id": "00000000-0000-0000-0000-000000000000"}
CONNECTOR_RESPONSE = {"version": "1.0.0", "action": "Continue",
                      "extension_tenant_id": TENANT_ID, "extension_role": "therapist"}

OFFBOARDING = {"confirm": "Demo-Praxis Sonnenschein (fictional)"}
OFFBOARDED = {"id": "3f2b8c4e-9a41-4d7e-8b2a-5c6d7e8f9a01", "status": "erased"}

# --- Billing (the platform's billing team) ----------------------------------------
_BILLED_EUR = {"requests": 8, "prompt_tokens": 5_120, "cached_tokens": 0,
               "completion_tokens": 1_380, "estimated_tokens": 412, "cost": "0.00160230",
               "correction_requests": 0, "correction_cost": "0.00000000"}
_BILLED_USD = {"requests": 2, "prompt_tokens": 900, "cached_tokens": 0,
               "completion_tokens": 210, "estimated_tokens": 0, "cost": "0.00026100",
               "correction_requests": 0, "correction_cost": "0.00000000"}
_ACTIVE_EUR = {"requests": 31, "prompt_tokens": 18_240, "cached_tokens": 1_024,
               "completion_tokens": 4_410, "estimated_tokens": 0, "cost": "0.00495144",
               "correction_requests": 0, "correction_cost": "0.00000000"}
BILLING_USAGE = {
    "period": "2026-11",
    "closed": True,
    "closed_at": "2026-12-03T02:00:04.118203+00:00",
    "practices": [
        {"tenant_id": OFFBOARDED["id"], "name": "Praxis am Markt (fictional)",
         "status": "erased", "currency": "EUR", **_BILLED_EUR},
        {"tenant_id": OFFBOARDED["id"], "name": "Praxis am Markt (fictional)",
         "status": "erased", "currency": "USD", **_BILLED_USD},
        {"tenant_id": TENANT_ID, "name": "Demo-Praxis Sonnenschein (fictional)",
         "status": "active", "currency": "EUR", **_ACTIVE_EUR},
    ],
    "totals": {
        "EUR": {"practices": 2, "requests": 39, "prompt_tokens": 23_360,
                "cached_tokens": 1_024, "completion_tokens": 5_790, "estimated_tokens": 412,
                "cost": "0.00655374", "correction_requests": 0,
                "correction_cost": "0.00000000"},
        "USD": {"practices": 1, **_BILLED_USD},
    },
}

# --- A practice's billing line items (GET /admin/usage-exports) ----------------------
USAGE_EXPORT_CSV = (
    "date,tenant_id,feature,deployment,requests,prompt_tokens,cached_tokens,"
    "completion_tokens,estimated_tokens,cost,currency,price_version,charge_class\r\n"
    f"2026-12-02,{TENANT_ID},case_chat,gpt-4o-mini,4,2210,0,520,0,0.00059202,EUR,"
    "2026-11-01.gpt-4o-mini,\r\n"
    f"2026-12-02,{TENANT_ID},note_draft,gpt-4o-mini,2,1480,512,610,0,0.00050563,EUR,"
    "2026-11-01.gpt-4o-mini,\r\n"
    f"2026-11-30,{TENANT_ID},case_chat,gpt-4o-mini,1,390,0,88,0,0.00010240,EUR,"
    "2026-11-01.gpt-4o-mini,correction\r\n")
USAGE_EXPORT_JSON = {
    "period": "2026-12", "tenant_id": TENANT_ID,
    "line_items": [
        {"date": "2026-12-02", "tenant_id": TENANT_ID, "feature": "case_chat",
         "deployment": "gpt-4o-mini", "requests": 4, "prompt_tokens": 2210,
         "cached_tokens": 0, "completion_tokens": 520, "estimated_tokens": 0,
         "cost": "0.00059202", "currency": "EUR", "price_version": "2026-11-01.gpt-4o-mini",
         "charge_class": None},
    ],
    "totals": {"EUR": {"line_items": 1, "requests": 4, "prompt_tokens": 2210,
                       "cached_tokens": 0, "completion_tokens": 520, "estimated_tokens": 0,
                       "cost": "0.00059202", "correction_requests": 0,
                       "correction_cost": "0.00000000"}},
}
