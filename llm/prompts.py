"""Prompts. They carry only what the feature needs: the transcript for a draft, the
conversation for case chat; names are placeholders by the time they leave."""

from __future__ import annotations

import re
from typing import Any

from models.note import NOTE_FORMATS

DRAFT_MAX_TOKENS = 800
CHAT_MAX_TOKENS = 600
CHAT_HISTORY = 20
# The formats the model drafts: every structured one (free text has a single section).
DRAFT_FORMATS = tuple(name for name, sections in NOTE_FORMATS.items() if len(sections) > 1)


def _headings(note_format: str) -> list[str]:
    return [section.capitalize() for section in NOTE_FORMATS[note_format]]


def draft_messages(note_format: str, transcript: str, *, modality: str,
                   duration_minutes: int) -> list[dict[str, Any]]:
    headings = ", ".join(_headings(note_format))
    system = (
        "You are a clinical documentation assistant for a psychotherapy practice. Draft a "
        f"progress note in {note_format} format from the session transcript. Use only "
        "information in the transcript; do not invent diagnoses. Write one line per "
        "section, starting with the section name and a colon.\n"
        f"SECTIONS: {headings}"
    )
    user = (f"Session ({modality}, {duration_minutes} minutes). Transcript:\n{transcript}")
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def parse_draft(note_format: str, text: str) -> dict[str, str]:
    """Split a drafted note into the format's sections (keys as the notes API uses)."""
    sections = NOTE_FORMATS[note_format]
    by_heading = {s: s for s in sections}
    content: dict[str, list[str]] = {}
    current = sections[0]
    pattern = re.compile(r"^\s*\**\s*(" + "|".join(by_heading) + r")\s*\**\s*:\s*(.*)$", re.I)
    for line in text.splitlines():
        match = pattern.match(line)
        if match:
            current = by_heading[match.group(1).lower()]
            line = match.group(2)
        if line.strip():
            content.setdefault(current, []).append(line.strip())
    return {key: "\n".join(lines) for key, lines in content.items()}


def chat_messages(history: list[tuple[str, str]], question: str) -> list[dict[str, Any]]:
    system = (
        "You support a psychotherapist reflecting on one of their cases. Be concise and "
        "clinically careful; you do not diagnose. The client is referred to by name "
        "placeholders such as [PERSON_1_FIRST]."
    )
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}]
    messages += [{"role": role, "content": content} for role, content in
                 history[-CHAT_HISTORY:]]
    messages.append({"role": "user", "content": question})
    return messages
