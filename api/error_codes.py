"""Every machine-readable ``error`` code the API answers with: its status and meaning.

The one source for the OpenAPI document (each operation's error responses and their
examples), for ``docs/ERRORS.md`` (``python -m api.error_codes > docs/ERRORS.md``; a test
keeps the file current) and for the test-suite check that every error a request really
got is a registered code with its status and documented on its operation.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ErrorCode:
    status: int
    meaning: str
    # The response carries Retry-After (seconds) when a retry can succeed later.
    retry_after: bool = False


ERROR_CODES: dict[str, ErrorCode] = {
    # Malformed requests
    "bad_request": ErrorCode(400, "The body is not valid JSON."),
    "payload_too_large": ErrorCode(
        413, "The body is larger than the server accepts (MAX_CONTENT_LENGTH, 1 MiB)."),
    "unsupported_media_type": ErrorCode(
        415, "The body is not sent as `Content-Type: application/json`."),
    "validation_failed": ErrorCode(
        422, "A field is missing or invalid; `errors` names each field and what is wrong."),
    "invalid_value": ErrorCode(
        422, "A value the database cannot store (an out-of-range date or number). A NUL "
             "character in a request field is `validation_failed`, naming the field."),
    "method_not_allowed": ErrorCode(405, "The path exists but not with this HTTP method."),
    "malformed_request": ErrorCode(
        400, "The HTTP request itself could not be parsed (request line, headers or chunked "
             "body); answered by the server before the API sees it."),
    "uri_too_long": ErrorCode(
        414, "The request line (method, path and query string) is longer than 4,094 bytes."),
    "headers_too_large": ErrorCode(
        431, "Too many request headers, or one longer than 8,190 bytes."),
    # Identity
    "missing_token": ErrorCode(401, "No bearer token was sent."),
    "invalid_token": ErrorCode(
        401, "The token's signature, issuer, audience or claims are not acceptable."),
    "token_expired": ErrorCode(401, "The token has expired; get a new one."),
    "unauthorized": ErrorCode(401, "The B2C connector's HTTP Basic credentials are wrong."),
    "identity_provider_unavailable": ErrorCode(
        503, "The identity provider's keys could not be fetched to check the token."),
    # Tenancy and roles
    "no_tenant": ErrorCode(
        403, "The token names no practice: onboard one or accept an invitation, then get a "
             "new token."),
    "tenant_unknown": ErrorCode(403, "The token names a practice that does not exist."),
    "tenant_inactive": ErrorCode(403, "The practice is suspended or closed."),
    "not_a_member": ErrorCode(403, "The caller is not (or no longer) a member of the practice."),
    "role_forbidden": ErrorCode(403, "The caller's role may not do this."),
    "not_note_author": ErrorCode(
        403, "Only the note's author or the client's assigned therapist may sign or amend "
             "it."),
    "not_billing_principal": ErrorCode(
        403, "Only the platform's billing principals (`BILLING_PRINCIPALS`) may read the "
             "cross-tenant billing summary; practice members, admins included, may not."),
    "already_member": ErrorCode(409, "The caller already belongs to a practice."),
    "unsafe_database_role": ErrorCode(
        503, "The server refuses to serve: its database role could bypass tenant isolation."),
    # Records
    "not_found": ErrorCode(
        404, "No such record in the caller's practice, or not visible to the caller (another "
             "practice's id is a 404 too)."),
    "precondition_required": ErrorCode(
        428, "A change needs the record's `ETag` in `If-Match`."),
    "precondition_failed": ErrorCode(
        412, "The record changed since it was read (stale `If-Match`); reload and retry."),
    "note_signed": ErrorCode(
        409, "A signed note cannot change; correct it with an amendment "
             "(`POST /notes/{note_id}/amendments`)."),
    "note_not_signed": ErrorCode(
        409, "A draft is changed with PATCH; only a signed note takes amendments."),
    "last_admin": ErrorCode(409, "The change would leave the practice without an admin."),
    "no_transcript": ErrorCode(422, "The session has no transcript to draft a note from."),
    # Data lifecycle (GDPR, § 630f BGB)
    "consent_required": ErrorCode(
        409, "The client has no current consent to AI assistance, and the practice requires "
             "one (`POST /clients/{client_id}/consents`)."),
    "client_restricted": ErrorCode(
        409, "The client's record is restricted (GDPR Art. 18): it can be read by admins, "
             "not changed or used for AI, until the restriction is lifted."),
    "retention_period_running": ErrorCode(
        409, "The client's treatment record must be kept (§ 630f(3) BGB) until "
             "`retain_until` (null while treatment is ongoing); restrict it instead, or "
             "give an `override_retention` reason."),
    "export_expired": ErrorCode(
        410, "The export's retention (`EXPORT_RETENTION_DAYS`) has passed and its file is "
             "deleted; request a new export."),
    # Invitations
    "invitation_invalid": ErrorCode(404, "No such invitation code, or it was already used."),
    "invitation_expired": ErrorCode(410, "The invitation code has expired."),
    "download_invalid": ErrorCode(404, "The download link is not valid (altered or unknown)."),
    "download_expired": ErrorCode(410, "The download link has expired; ask for a new one."),
    "offboarding_incomplete": ErrorCode(
        503, "The practice is closed, but erasing its data did not finish (storage down, or "
             "its records still in use); the platform's `flask gdpr purge` completes it."),
    "storage_unavailable": ErrorCode(
        503, "File storage could not be reached; nothing was changed. Retry later."),
    "invitation_wrong_account": ErrorCode(
        403, "The invitation was issued to another e-mail address than the token's."),
    # AI
    "token_budget_exhausted": ErrorCode(
        429, "The practice's monthly LLM token budget is used up.", retry_after=True),
    "rate_limited": ErrorCode(
        429, "Too many AI requests or tokens this minute for the practice.", retry_after=True),
    "request_too_large": ErrorCode(
        413, "One AI request needs more tokens than a per-minute limit allows."),
    "content_filtered": ErrorCode(422, "The AI provider's content filter refused the request."),
    "llm_unavailable": ErrorCode(
        503, "The AI service stayed unavailable after retries; nothing was saved.",
        retry_after=True),
    # Platform
    "connector_not_configured": ErrorCode(
        503, "The B2C API connector's credentials are not configured on the server."),
    "database_unavailable": ErrorCode(503, "The database is not reachable (readiness probe)."),
    "internal_error": ErrorCode(500, "An unexpected failure; the request id is in the logs."),
}


# Codes that only appear in the `error` event of a streamed (text/event-stream) reply,
# after the 201 and its headers were sent. The AI codes above can appear there too.
STREAM_ERROR_CODES: dict[str, str] = {
    "save_failed": "The reply was complete but could not be saved; nothing was kept.",
}


def markdown_table() -> str:
    """Return docs/ERRORS.md: every code with its status and meaning, by status."""
    lines = [
        "# Error codes",
        "",
        "Generated by `python -m api.error_codes > docs/ERRORS.md` from `api/error_codes.py`;",
        "do not edit by hand. Every error response has the same JSON shape:",
        "",
        "```json",
        '{"code": 404, "status": "Not Found", "message": "No such client.", '
        '"error": "not_found"}',
        "```",
        "",
        "`error` is the stable machine code below; `message` is for people and may change; "
        "`errors`, where present (400, 422), maps each location and field to what is wrong. "
        "Codes marked Retry-After may carry that header: the seconds after which a retry can "
        "succeed.",
        "",
        "| status | error | meaning |",
        "|---:|---|---|",
    ]
    for code, info in sorted(ERROR_CODES.items(), key=lambda kv: (kv[1].status, kv[0])):
        retry = " Retry-After." if info.retry_after else ""
        lines.append(f"| {info.status} | `{code}` | {info.meaning}{retry} |")
    lines += [
        "",
        "## In a stream",
        "",
        "A streamed AI reply (`Accept: text/event-stream`) has already answered 201 when it",
        "fails; it then ends with an `error` event, `{\"error\": code, \"message\": ...}`, and",
        "saves nothing. Its code is one of the AI codes above (`content_filtered`,",
        "`llm_unavailable`) or:",
        "",
        "| error | meaning |",
        "|---|---|",
    ]
    lines += [f"| `{code}` | {meaning} |" for code, meaning in STREAM_ERROR_CODES.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown_table())
