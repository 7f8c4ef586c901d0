from __future__ import annotations

from typing import Any

import marshmallow as ma
from marshmallow import validate

from api.notes.operations import AmendedNote
from models import Note
from models.note import NOTE_FORMATS

MAX_SECTION_CHARS = 50_000
MAX_REASON_CHARS = 2_000
SECTIONS_DESCRIPTION = ("Sections of the format: SOAP subjective/objective/assessment/plan; "
                        "DAP data/assessment/plan; BIRP behavior/intervention/response/plan; "
                        "free text")


def _sections(**kwargs: Any) -> ma.fields.Dict:
    return ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.String(validate=validate.Length(max=MAX_SECTION_CHARS)), **kwargs)


def _not_blank(value: str) -> None:
    if not value.strip():
        raise ma.ValidationError("Give the reason for the correction.")


class AmendmentSchema(ma.Schema):
    """A correction of a signed note: the sections it replaces and why."""

    id = ma.fields.UUID(dump_only=True)
    content = _sections(
        required=True, validate=validate.Length(min=1),
        metadata={"description": "The sections this amendment replaces (at least one), each "
                                 "with its whole corrected text; other sections stay as "
                                 "they were. " + SECTIONS_DESCRIPTION})
    reason = ma.fields.String(
        required=True, validate=[validate.Length(min=1, max=MAX_REASON_CHARS), _not_blank],
        metadata={"description": "Why the note is corrected (shown with the amendment)"})
    author_id = ma.fields.String(dump_only=True,
                                 metadata={"description": "Who made the correction"})
    created_at = ma.fields.DateTime(dump_only=True,
                                    metadata={"description": "When it was made"})


class NoteSchema(ma.Schema):
    id = ma.fields.UUID(dump_only=True)
    session_id = ma.fields.UUID(dump_only=True)
    format = ma.fields.String(required=True, validate=validate.OneOf(list(NOTE_FORMATS)))
    content = _sections(
        required=True,
        metadata={"description": SECTIONS_DESCRIPTION + ". In a response: the current text, "
                                 "`original_content` with every amendment applied in order; "
                                 "what a reader must act on."})
    original_content = ma.fields.Dict(
        dump_only=True,
        metadata={"description": "The text as signed (a draft's as written), kept unchanged "
                                 "(§ 630f(1) BGB); equal to `content` when not amended"})
    amendments = ma.fields.List(
        ma.fields.Nested(AmendmentSchema), dump_only=True,
        metadata={"description": "Corrections of the signed note, oldest first: the sections "
                                 "each replaced, why, by whom and when (empty when none)"})
    status = ma.fields.String(dump_only=True)
    source = ma.fields.String(dump_only=True)
    author_id = ma.fields.String(dump_only=True)
    signed_by = ma.fields.String(dump_only=True, allow_none=True,
                                 metadata={"description": "Who signed it; null for a draft"})
    signed_at = ma.fields.DateTime(dump_only=True, allow_none=True,
                                   metadata={"description": "When it was signed; null for a draft"})
    version = ma.fields.Integer(dump_only=True)
    created_at = ma.fields.DateTime(dump_only=True)
    updated_at = ma.fields.DateTime(
        dump_only=True, metadata={"description": "When the note last changed or was amended"})

    @ma.pre_dump
    def _as_served(self, note: Note | AmendedNote, **_kwargs: Any) -> AmendedNote:
        """A bare ``Note`` is served only as a draft (which has no amendments): a signed
        note's text is not its row's content once amended (``operations.served``)."""
        if isinstance(note, AmendedNote):
            return note
        if note.status != "draft":
            raise TypeError("serve a signed note with its amendments (operations.served)")
        return AmendedNote(note)

    def get_attribute(self, obj: AmendedNote, attr: str, default: Any) -> Any:
        if attr in _SERVED_FIELDS:
            return getattr(obj, attr)
        return super().get_attribute(obj.note, attr, default)


_SERVED_FIELDS = frozenset({"content", "original_content", "amendments"})


class NotePatchSchema(NoteSchema):
    format = ma.fields.String(validate=validate.OneOf(list(NOTE_FORMATS)))
    content = _sections()
