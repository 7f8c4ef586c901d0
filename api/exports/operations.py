"""Data exports (GDPR Art. 15 access, Art. 20 portability; a whole practice): the rows,
the records they copy, and the ZIP archive.

A client's export is one ZIP with ``data.json`` (``clinai.client-export/1``: every record
held about the client) and ``record.html`` (the same, readable in a browser, headings in
German and English). A practice's export holds ``practice.json``
(``clinai.practice-export/1``), ``index.html`` and both files of every client under
``clients/<client id>/``.

Records are read in chunks of clients (``CLIENT_CHUNK``), one query per table and chunk,
and written into the ZIP file one client at a time, each ``data.json`` element by element:
the memory an export needs follows the largest chunk, never the practice. Flask-free: the
job (``api.exports.jobs``), a benchmark or the CLI call it with a session in the tenant's
context.
"""

from __future__ import annotations

import datetime as dt
import html
import io
import json
import uuid
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

from sqlalchemy import RowMapping, select
from sqlalchemy.orm import Session

from api.clients.operations import get_client
from api.domain import DomainError
from api.practice_rules import practice_rules, retain_until
from models import (
    AuditEvent,
    Client,
    ClientConsent,
    Conversation,
    ConversationMessage,
    DataExport,
    Membership,
    Note,
    NoteAmendment,
    PracticeSettings,
    Tenant,
    TherapySession,
)
from models.note import NOTE_FORMATS
from tenancy.actor import Actor

CLIENT_FORMAT = "clinai.client-export/1"
PRACTICE_FORMAT = "clinai.practice-export/1"
# Clients read per round of queries in a practice export.
CLIENT_CHUNK = 25


def blob_name(export_id: uuid.UUID) -> str:
    """Where an export's ZIP lives in the practice's container."""
    return f"exports/{export_id}.zip"


def download_filename(export: DataExport) -> str:
    return f"clinai-{export.kind}-export-{export.id}.zip"


# --- The export rows ---------------------------------------------------------------

def create_export(db: Session, actor: Actor, *, kind: str, client_id: uuid.UUID | None,
                  retention: dt.timedelta) -> DataExport:
    """A pending export of one client (404 when the caller may not see the client) or of
    the whole practice; its file may be kept ``retention`` long."""
    if kind == "client":
        assert client_id is not None
        get_client(db, actor, client_id)  # admins see restricted clients too (Art. 15)
    now = dt.datetime.now(dt.UTC)
    export = DataExport(kind=kind, client_id=client_id, status="pending",
                        requested_by=actor.user_id, created_at=now, expires_at=now + retention)
    db.add(export)
    db.flush()
    return export


def get_export(db: Session, export_id: uuid.UUID, *,
               now: dt.datetime | None = None) -> DataExport:
    """The export, or 404 (another practice's id too); 410 ``export_expired`` when its
    retention has passed (its file is, or is about to be, deleted)."""
    export = db.get(DataExport, export_id)
    if export is None:
        raise DomainError("not_found", "No such export.")
    if export.expires_at <= (now or dt.datetime.now(dt.UTC)):
        raise DomainError("export_expired", "This export has expired; request a new one.")
    return export


def purge_expired_exports(db: Session, delete_blob: Callable[[str], None], *,
                          now: dt.datetime | None = None) -> int:
    """Delete the files of the practice's exports whose ``expires_at`` has passed
    (``flask gdpr purge``); return how many. The rows stay, without a file: who asked for
    which export and when is the practice's record of having answered (Art. 15), and
    ``GET /exports/{id}`` keeps answering 410 ``export_expired``. ``delete_blob(name)``
    deletes one file of the practice's container (a missing file counts as deleted). The
    caller commits; a storage failure stops before the row of the file it could not
    delete."""
    expired = db.scalars(select(DataExport)
                         .where(DataExport.expires_at <= (now or dt.datetime.now(dt.UTC)),
                                DataExport.blob_name.is_not(None))
                         .order_by(DataExport.expires_at, DataExport.id)
                         .with_for_update()).all()
    for export in expired:
        delete_blob(export.blob_name or blob_name(export.id))
        export.blob_name = None
    db.flush()
    return len(expired)


# --- Reading the records -------------------------------------------------------------

def _utc(value: dt.datetime | None) -> dt.datetime | None:
    return value.astimezone(dt.UTC) if value is not None else None


def _json_default(value: object) -> object:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dumps(value: object) -> str:
    """JSON as exported: UTF-8 text, keys in the order built, ISO dates, UTC times."""
    return json.dumps(value, ensure_ascii=False, default=_json_default)


def _ordered_sections(note_format: str, content: Mapping[str, Any]) -> dict[str, Any]:
    """A note's sections in its format's order, then any others by name."""
    known = NOTE_FORMATS.get(note_format, ())
    keys = [k for k in known if k in content] + sorted(k for k in content if k not in known)
    return {k: content[k] for k in keys}


def _rows(db: Session, statement: Any) -> list[RowMapping]:
    return list(db.execute(statement).mappings())


@dataclass(frozen=True, slots=True)
class PracticeInfo:
    id: uuid.UUID
    name: str
    record_retention_years: int


def practice_info(db: Session, tenant_id: uuid.UUID, default_retention_years: int
                  ) -> PracticeInfo:
    name = db.scalars(select(Tenant.name).where(Tenant.id == tenant_id)).one()
    years = practice_rules(db, default_retention_years).record_retention_years
    return PracticeInfo(id=tenant_id, name=name, record_retention_years=years)


def client_documents(db: Session, client_ids: Sequence[uuid.UUID], practice: PracticeInfo,
                     exported_at: dt.datetime) -> Iterator[dict[str, Any]]:
    """The ``data.json`` documents of ``client_ids`` (one chunk), in the order given.

    One query per table for the whole chunk; every list ordered by time, then id.
    """
    ids = list(client_ids)
    clients = {r["id"]: r for r in _rows(db, select(Client.__table__)
                                          .where(Client.id.in_(ids)))}
    consents = _rows(db, select(ClientConsent.__table__)
                     .where(ClientConsent.client_id.in_(ids))
                     .order_by(ClientConsent.given_at, ClientConsent.id))
    sessions = _rows(db, select(TherapySession.__table__)
                     .where(TherapySession.client_id.in_(ids))
                     .order_by(TherapySession.started_at, TherapySession.id))
    notes = _rows(db, select(Note.__table__, TherapySession.client_id)
                  .join(TherapySession, TherapySession.id == Note.session_id)
                  .where(TherapySession.client_id.in_(ids))
                  .order_by(Note.created_at, Note.id))
    amendments = _rows(db, select(NoteAmendment.__table__)
                       .join(Note, Note.id == NoteAmendment.note_id)
                       .join(TherapySession, TherapySession.id == Note.session_id)
                       .where(TherapySession.client_id.in_(ids))
                       .order_by(NoteAmendment.created_at, NoteAmendment.id))
    conversations = _rows(db, select(Conversation.__table__)
                          .where(Conversation.client_id.in_(ids))
                          .order_by(Conversation.created_at, Conversation.id))
    # A question and its reply are saved in one transaction (the same created_at):
    # the question first.
    messages = _rows(db, select(ConversationMessage.__table__)
                     .join(Conversation, Conversation.id == ConversationMessage.conversation_id)
                     .where(Conversation.client_id.in_(ids))
                     .order_by(ConversationMessage.created_at,
                               (ConversationMessage.role != "user"), ConversationMessage.id))
    exports = _rows(db, select(DataExport.id, DataExport.client_id, DataExport.kind,
                               DataExport.status, DataExport.requested_by,
                               DataExport.created_at, DataExport.finished_at,
                               DataExport.expires_at)
                    .where(DataExport.client_id.in_(ids))
                    .order_by(DataExport.created_at, DataExport.id))

    # Which client each record belongs to.
    owner: dict[uuid.UUID, uuid.UUID] = {cid: cid for cid in clients}
    sessions = [s for s in sessions if s["client_id"] in clients]
    conversations = [c for c in conversations if c["client_id"] in clients]
    consents = [c for c in consents if c["client_id"] in clients]
    exports = [e for e in exports if e["client_id"] in clients]
    session_owner = {s["id"]: s["client_id"] for s in sessions}
    conversation_owner = {c["id"]: c["client_id"] for c in conversations}
    note_owner = {n["id"]: n["client_id"] for n in notes if n["session_id"] in session_owner}
    owner.update(session_owner)
    owner.update(conversation_owner)
    owner.update(note_owner)
    owner.update({c["id"]: c["client_id"] for c in consents})
    owner.update({e["id"]: e["client_id"] for e in exports})
    # Each table is read by its own statement: a record added between two of them
    # (a note of a session the session query did not see yet) is left for the next
    # export rather than failing this one.
    amendments = [a for a in amendments if a["note_id"] in note_owner]
    messages = [m for m in messages if m["conversation_id"] in conversation_owner]
    notes = [n for n in notes if n["session_id"] in session_owner]
    owner.update({a["id"]: note_owner[a["note_id"]] for a in amendments})
    owner.update({m["id"]: conversation_owner[m["conversation_id"]] for m in messages})

    access = _rows(db, select(AuditEvent.occurred_at, AuditEvent.actor_id,
                              AuditEvent.actor_role, AuditEvent.action,
                              AuditEvent.resource_type, AuditEvent.resource_ids)
                   .where(AuditEvent.resource_ids.overlap(list(owner)))
                   .order_by(AuditEvent.occurred_at, AuditEvent.id))

    by_client: dict[uuid.UUID, dict[str, list[Any]]] = {
        cid: {"consents": [], "sessions": [], "conversations": [], "exports": [],
              "access_log": []} for cid in clients}
    session_docs: dict[uuid.UUID, dict[str, Any]] = {}
    for s in sessions:
        doc = {"id": s["id"], "started_at": s["started_at"],
               "duration_minutes": s["duration_minutes"], "modality": s["modality"],
               "transcript": s["transcript"], "version": s["version"],
               "created_at": s["created_at"], "updated_at": s["updated_at"], "notes": []}
        session_docs[s["id"]] = doc
        by_client[s["client_id"]]["sessions"].append(doc)
    amendments_of: dict[uuid.UUID, list[RowMapping]] = {}
    for a in amendments:
        amendments_of.setdefault(a["note_id"], []).append(a)
    ai_notes: dict[uuid.UUID, int] = dict.fromkeys(clients, 0)
    for n in notes:
        current = dict(n["content"])
        changes = []
        for a in amendments_of.get(n["id"], []):
            current.update(a["content"])
            changes.append({"id": a["id"], "content": _ordered_sections(n["format"],
                                                                        a["content"]),
                            "reason": a["reason"], "author_id": a["author_id"],
                            "created_at": a["created_at"]})
        if n["source"] == "ai":
            ai_notes[n["client_id"]] += 1
        session_docs[n["session_id"]]["notes"].append({
            "id": n["id"], "format": n["format"], "status": n["status"],
            "source": n["source"], "author_id": n["author_id"],
            "signed_by": n["signed_by"], "signed_at": n["signed_at"],
            "version": n["version"], "created_at": n["created_at"],
            "updated_at": n["updated_at"],
            # As the API serves a note: the current text, the original as signed, and
            # every amendment (§ 630f(1) BGB).
            "content": _ordered_sections(n["format"], current),
            "original_content": _ordered_sections(n["format"], n["content"]),
            "amendments": changes})
    conversation_docs: dict[uuid.UUID, dict[str, Any]] = {}
    for c in conversations:
        doc = {"id": c["id"], "created_by": c["created_by"], "created_at": c["created_at"],
               "updated_at": c["updated_at"], "messages": []}
        conversation_docs[c["id"]] = doc
        by_client[c["client_id"]]["conversations"].append(doc)
    usage = {cid: {"chat_questions": 0, "chat_replies": 0, "prompt_tokens": 0,
                   "completion_tokens": 0} for cid in clients}
    for m in messages:
        conversation_docs[m["conversation_id"]]["messages"].append({
            "id": m["id"], "role": m["role"], "content": m["content"],
            "author_id": m["author_id"], "prompt_tokens": m["prompt_tokens"],
            "completion_tokens": m["completion_tokens"], "created_at": m["created_at"]})
        counts = usage[conversation_owner[m["conversation_id"]]]
        if m["role"] == "user":
            counts["chat_questions"] += 1
        else:
            counts["chat_replies"] += 1
            counts["prompt_tokens"] += m["prompt_tokens"] or 0
            counts["completion_tokens"] += m["completion_tokens"] or 0
    for c in consents:
        by_client[c["client_id"]]["consents"].append({
            "id": c["id"], "purpose": c["purpose"],
            "document_reference": c["document_reference"], "recorded_by": c["recorded_by"],
            "given_at": c["given_at"], "withdrawn_at": c["withdrawn_at"],
            "withdrawn_by": c["withdrawn_by"]})
    for e in exports:
        by_client[e["client_id"]]["exports"].append(
            {k: e[k] for k in ("id", "kind", "status", "requested_by", "created_at",
                               "finished_at", "expires_at")})
    for event in access:
        # An event may name several clients' records (a list read): each client's log
        # names only that client's own ids.
        named: dict[uuid.UUID, list[uuid.UUID]] = {}
        for rid in event["resource_ids"]:
            if (cid := owner.get(rid)) is not None:
                named.setdefault(cid, []).append(rid)
        for cid, rids in named.items():
            by_client[cid]["access_log"].append({
                "occurred_at": event["occurred_at"], "actor_id": event["actor_id"],
                "actor_role": event["actor_role"], "action": event["action"],
                "resource_type": event["resource_type"], "resource_ids": rids})

    for cid in ids:
        found = clients.get(cid)
        if found is None:
            continue  # erased since the chunk was listed
        c = found
        parts = by_client[cid]
        yield {
            "format": CLIENT_FORMAT,
            "exported_at": exported_at,
            "practice": {"id": practice.id, "name": practice.name},
            "client": {
                "id": c["id"], "first_name": c["first_name"], "last_name": c["last_name"],
                "date_of_birth": c["date_of_birth"],
                "contact": {k: c["contact"][k] for k in sorted(c["contact"] or {})},
                "assigned_therapist_id": c["assigned_therapist_id"], "status": c["status"],
                "treatment_ended_on": c["treatment_ended_on"],
                "retain_until": retain_until(c["treatment_ended_on"],
                                             practice.record_retention_years),
                "restricted_at": c["restricted_at"], "restricted_by": c["restricted_by"],
                "restriction_reason": c["restriction_reason"], "version": c["version"],
                "created_at": c["created_at"], "updated_at": c["updated_at"]},
            "consents": parts["consents"],
            "sessions": parts["sessions"],
            "conversations": parts["conversations"],
            "ai_usage": {"ai_drafted_notes": ai_notes[cid], **usage[cid]},
            "exports": parts["exports"],
            "access_log": parts["access_log"],
        }


# --- Writing the archive -------------------------------------------------------------

def write_json(out: IO[str], document: Mapping[str, Any]) -> None:
    """``document`` as one JSON object, written key by key and list element by element
    (each small part serialised by the C encoder): never one string of the whole."""
    out.write("{")
    for i, (key, value) in enumerate(document.items()):
        out.write(("," if i else "") + "\n" + dumps(key) + ": ")
        if isinstance(value, list):
            out.write("[")
            for j, item in enumerate(value):
                out.write(("," if j else "") + "\n  " + dumps(item))
            out.write("\n]" if value else "]")
        else:
            out.write(dumps(value))
    out.write("\n}\n")


def _text_entry(zf: zipfile.ZipFile, name: str) -> io.TextIOWrapper:
    return io.TextIOWrapper(zf.open(name, "w", force_zip64=True), encoding="utf-8",
                            newline="\n")


def write_client(zf: zipfile.ZipFile, prefix: str, document: Mapping[str, Any]) -> None:
    """``<prefix>data.json`` and ``<prefix>record.html`` of one client's document."""
    with _text_entry(zf, f"{prefix}data.json") as out:
        write_json(out, document)
    with _text_entry(zf, f"{prefix}record.html") as out:
        write_record_html(out, document)


def write_client_archive(db: Session, zf: zipfile.ZipFile, client_id: uuid.UUID,
                         practice: PracticeInfo, exported_at: dt.datetime) -> None:
    """A client's export: ``data.json`` and ``record.html`` at the root of the ZIP."""
    for document in client_documents(db, [client_id], practice, exported_at):
        write_client(zf, "", document)
        return
    raise DomainError("not_found", "No such client.")


def _client_id_chunks(db: Session, size: int) -> Iterator[list[uuid.UUID]]:
    """Every client id of the practice, in id order, ``size`` at a time (keyset)."""
    last: uuid.UUID | None = None
    while True:
        query = select(Client.id).order_by(Client.id).limit(size)
        if last is not None:
            query = query.where(Client.id > last)
        chunk = list(db.scalars(query))
        if not chunk:
            return
        yield chunk
        last = chunk[-1]


def write_practice_archive(db: Session, zf: zipfile.ZipFile, practice: PracticeInfo,
                           exported_at: dt.datetime, *, chunk: int = CLIENT_CHUNK) -> int:
    """A practice's export; returns the number of clients written."""
    written: list[uuid.UUID] = []
    for ids in _client_id_chunks(db, chunk):
        for document in client_documents(db, ids, practice, exported_at):
            write_client(zf, f"clients/{document['client']['id']}/", document)
            written.append(document["client"]["id"])
    settings = db.execute(select(PracticeSettings.ai_consent_required,
                                 PracticeSettings.record_retention_years)).one_or_none()
    members = db.execute(select(Membership.user_id, Membership.role, Membership.created_at)
                         .where(Membership.tenant_id == practice.id)
                         .order_by(Membership.user_id)).all()
    with _text_entry(zf, "practice.json") as out:
        write_json(out, {
            "format": PRACTICE_FORMAT,
            "exported_at": exported_at,
            "practice": {"id": practice.id, "name": practice.name},
            "settings": {
                "ai_consent_required": True if settings is None
                else bool(settings.ai_consent_required),
                "record_retention_years": practice.record_retention_years,
                "record_retention_years_configured": None if settings is None
                else settings.record_retention_years},
            "members": [{"user_id": m.user_id, "role": m.role, "created_at": m.created_at}
                        for m in members],
            "clients": written,
        })
    with _text_entry(zf, "index.html") as out:
        write_index_html(out, practice, exported_at, written)
    return len(written)


# --- record.html -----------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;
max-width:60rem;padding:0 1rem;color:#1b1b1b;line-height:1.45}
h1{font-size:1.6rem}h2{font-size:1.3rem;border-bottom:2px solid #ccc;margin-top:2.2rem}
h3{font-size:1.1rem;margin-top:1.5rem}h4{font-size:1rem;margin:1rem 0 .3rem}
table{border-collapse:collapse;width:100%;margin:.4rem 0}
th,td{border:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f4f4f4;width:16rem}.text{white-space:pre-wrap;background:#fafafa;
border:1px solid #e4e4e4;padding:.5rem;overflow-wrap:anywhere}.none{color:#666}
.meta{color:#555;font-size:.9rem}
"""
# No script may run, nothing may be fetched: even if a value were ever left unescaped.
_CSP = "default-src 'none'; style-src 'unsafe-inline'"

HEADINGS = {
    "profile": "Stammdaten / Profile",
    "consents": "Einwilligungen / Consents",
    "sessions": "Sitzungen / Sessions",
    "notes": "Notizen / Notes",
    "amendments": "Korrekturen / Amendments",
    "conversations": "KI-Gespräche / AI conversations",
    "ai_usage": "KI-Nutzung / AI usage",
    "exports": "Datenexporte / Data exports",
    "access_log": "Zugriffsprotokoll / Access log",
}


def _s(value: object) -> str:
    """A value as escaped HTML text."""
    if value is None:
        return "—"
    if isinstance(value, dt.datetime):
        return html.escape(value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"))
    if isinstance(value, bool):
        return "ja / yes" if value else "nein / no"
    if isinstance(value, list):
        return html.escape(", ".join(str(v) for v in value))
    return html.escape(str(value))


def _table(rows: Iterable[tuple[str, object]]) -> str:
    return "<table>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{_s(v)}</td></tr>"
                               for k, v in rows) + "</table>"


def _grid(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_s(v)}</td>" for v in row) + "</tr>"
                   for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _text(value: str | None) -> str:
    return f'<div class="text">{_s(value)}</div>' if value else '<p class="none">—</p>'


def _sections(content: Mapping[str, Any]) -> str:
    return "".join(f"<h4>{_s(name)}</h4>{_text(str(text))}" for name, text in content.items())


_NONE = '<p class="none">Keine Einträge / No entries</p>'


def _page_start(title: str) -> str:
    return ('<!DOCTYPE html>\n<html lang="de">\n<head>\n<meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n")


def write_record_html(out: IO[str], doc: Mapping[str, Any]) -> None:
    """A client's record as one self-contained page: no scripts, no external assets,
    every value escaped, each section headed in German and English."""
    c = doc["client"]
    name = f"{c['first_name']} {c['last_name']}"
    out.write(_page_start(f"Patientenakte / Client record - {name}"))
    out.write(f"<h1>Patientenakte / Client record: {_s(name)}</h1>\n")
    out.write(f'<p class="meta">{_s(doc["practice"]["name"])} · exportiert / exported '
              f'{_s(doc["exported_at"])} · {_s(doc["format"])}</p>\n')

    contact = c["contact"] or {}
    out.write(f'<section id="profile"><h2>{HEADINGS["profile"]}</h2>')
    out.write(_table([
        ("Kennung / ID", c["id"]), ("Vorname / First name", c["first_name"]),
        ("Nachname / Last name", c["last_name"]),
        ("Geburtsdatum / Date of birth", c["date_of_birth"]),
        ("E-Mail / E-mail", contact.get("email")), ("Telefon / Phone", contact.get("phone")),
        ("Adresse / Address", contact.get("address")),
        *((f"Kontakt / Contact: {k}", v) for k, v in contact.items()
          if k not in ("email", "phone", "address")),
        ("Behandelnde Person / Assigned therapist", c["assigned_therapist_id"]),
        ("Status", c["status"]),
        ("Behandlungsende / Treatment ended", c["treatment_ended_on"]),
        ("Aufbewahrung bis / Retained until", c["retain_until"]),
        ("Eingeschränkt seit / Restricted since", c["restricted_at"]),
        ("Eingeschränkt von / Restricted by", c["restricted_by"]),
        ("Grund der Einschränkung / Restriction reason", c["restriction_reason"]),
        ("Angelegt / Created", c["created_at"]), ("Geändert / Updated", c["updated_at"])]))
    out.write("</section>\n")

    out.write(f'<section id="consents"><h2>{HEADINGS["consents"]}</h2>')
    out.write(_grid(["Zweck / Purpose", "Erteilt / Given", "Erfasst von / Recorded by",
                     "Dokument / Document", "Widerrufen / Withdrawn",
                     "Widerrufen von / Withdrawn by"],
                    [(x["purpose"], x["given_at"], x["recorded_by"], x["document_reference"],
                      x["withdrawn_at"], x["withdrawn_by"]) for x in doc["consents"]])
              if doc["consents"] else _NONE)
    out.write("</section>\n")

    sessions = doc["sessions"]
    out.write(f'<section id="sessions"><h2>{HEADINGS["sessions"]}</h2>')
    if not sessions:
        out.write(_NONE)
    for s in sessions:
        out.write(f"<h3>{_s(s['started_at'])} · {_s(s['modality'])} · "
                  f"{_s(s['duration_minutes'])} min</h3>"
                  f'<p class="meta">{_s(s["id"])}</p>{_text(s["transcript"])}')
    out.write("</section>\n")

    notes = [(s, n) for s in sessions for n in s["notes"]]
    out.write(f'<section id="notes"><h2>{HEADINGS["notes"]}</h2>')
    if not notes:
        out.write(_NONE)
    for s, n in notes:
        out.write(f"<h3>{_s(n['format'])} · {_s(s['started_at'])}</h3>")
        out.write(_table([("Kennung / ID", n["id"]), ("Status", n["status"]),
                          ("Quelle / Source", n["source"]), ("Autor / Author", n["author_id"]),
                          ("Unterzeichnet von / Signed by", n["signed_by"]),
                          ("Unterzeichnet am / Signed at", n["signed_at"]),
                          ("Korrekturen / Amendments", len(n["amendments"]))]))
        out.write(_sections(n["content"]))
    out.write("</section>\n")

    amended = [(n, a) for _s_, n in notes for a in n["amendments"]]
    out.write(f'<section id="amendments"><h2>{HEADINGS["amendments"]}</h2>')
    if not amended:
        out.write(_NONE)
    for n, a in amended:
        out.write(f"<h3>{_s(a['created_at'])} · {_s(a['author_id'])}</h3>")
        out.write(_table([("Notiz / Note", n["id"]), ("Grund / Reason", a["reason"])]))
        out.write("<p><strong>Ursprünglicher Text / Original text</strong></p>")
        out.write(_sections({k: v for k, v in n["original_content"].items()
                             if k in a["content"]}))
        out.write("<p><strong>Korrigierter Text / Corrected text</strong></p>")
        out.write(_sections(a["content"]))
    out.write("</section>\n")

    out.write(f'<section id="conversations"><h2>{HEADINGS["conversations"]}</h2>')
    if not doc["conversations"]:
        out.write(_NONE)
    for conv in doc["conversations"]:
        out.write(f"<h3>{_s(conv['created_at'])} · {_s(conv['created_by'])}</h3>")
        for m in conv["messages"]:
            who = "KI / AI" if m["role"] == "assistant" else f"Frage / Question ({m['author_id']})"
            out.write(f'<h4>{_s(who)} · {_s(m["created_at"])}</h4>{_text(m["content"])}')
    out.write("</section>\n")

    u = doc["ai_usage"]
    out.write(f'<section id="ai_usage"><h2>{HEADINGS["ai_usage"]}</h2>')
    out.write(_table([("KI-Notizentwürfe / AI-drafted notes", u["ai_drafted_notes"]),
                      ("Fragen im KI-Gespräch / Chat questions", u["chat_questions"]),
                      ("KI-Antworten / AI replies", u["chat_replies"]),
                      ("Eingabe-Tokens / Prompt tokens", u["prompt_tokens"]),
                      ("Antwort-Tokens / Completion tokens", u["completion_tokens"])]))
    out.write("</section>\n")

    out.write(f'<section id="exports"><h2>{HEADINGS["exports"]}</h2>')
    out.write(_grid(["Kennung / ID", "Angefordert / Requested", "Von / By", "Status"],
                    [(e["id"], e["created_at"], e["requested_by"], e["status"])
                     for e in doc["exports"]]) if doc["exports"] else _NONE)
    out.write("</section>\n")

    out.write(f'<section id="access_log"><h2>{HEADINGS["access_log"]}</h2>')
    out.write(_grid(["Zeit / Time", "Person / Actor", "Rolle / Role", "Aktion / Action",
                     "Art / Type", "Datensätze / Records"],
                    [(e["occurred_at"], e["actor_id"], e["actor_role"], e["action"],
                      e["resource_type"], e["resource_ids"]) for e in doc["access_log"]])
              if doc["access_log"] else _NONE)
    out.write("</section>\n</body>\n</html>\n")


def write_index_html(out: IO[str], practice: PracticeInfo, exported_at: dt.datetime,
                     client_ids: Iterable[uuid.UUID]) -> None:
    """The practice export's table of contents: each client's record, by id."""
    out.write(_page_start(f"Praxisexport / Practice export - {practice.name}"))
    out.write(f"<h1>Praxisexport / Practice export: {_s(practice.name)}</h1>\n"
              f'<p class="meta">exportiert / exported {_s(exported_at)} · '
              f"{PRACTICE_FORMAT} · practice.json</p>\n"
              "<h2>Klientinnen und Klienten / Clients</h2>\n<ul>\n")
    for cid in client_ids:
        out.write(f'<li><a href="clients/{cid}/record.html">{cid}</a> '
                  f'(<a href="clients/{cid}/data.json">data.json</a>)</li>\n')
    out.write("</ul>\n</body>\n</html>\n")
