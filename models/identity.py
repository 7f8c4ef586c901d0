"""Searchable keys of a person's identifiers, and the same keys read out of a free text.

A client row stores the keys of its identifiers (``clients.identity_keys``, GIN-indexed);
before a text goes to the model, the keys found in the text select, with one indexed
lookup, the clients the text might mention, whatever the size of the practice. The keys
only select candidates: the pseudonymiser (``llm/pseudonymize.py``) then matches each
candidate's identifiers exactly. So a key may be looser than a match (a name token
alone, a date in either century), never stricter.

Keys: ``n:<token>`` for each word of the first and last name (casefolded, NFC, 2+
characters; "Anna-Lena Schulze-Hartmann" gives anna, lena, schulze, hartmann),
``d:<ISO date>`` for the date of birth, ``e:<address>`` for the e-mail (casefolded) and
``p:<digits>`` for the phone number in national notation (+49 30 ... -> 030...) and
``a:<word> <word>`` for the first two words of the postal address ("Hauptstraße 5").
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import re
import unicodedata

_WORD = re.compile(r"\w+")
_EMAIL = re.compile(r"[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+")
# A run of digits with the separators people write phone numbers with.
_DIGIT_RUN = re.compile(r"(?:\+|\b)\d[\d \-/().]*\d")
_DIGIT_GROUP = re.compile(r"\d+")
_MONTHS = {name.casefold(): number for number, names in enumerate((
    ("Januar", "January", "Jan"), ("Februar", "February", "Feb"), ("März", "March", "Mar"),
    ("April", "Apr"), ("Mai", "May"), ("Juni", "June", "Jun"), ("Juli", "July", "Jul"),
    ("August", "Aug"), ("September", "Sep", "Sept"), ("Oktober", "October", "Oct", "Okt"),
    ("November", "Nov"), ("Dezember", "December", "Dec", "Dez")), start=1) for name in names}
_MONTH = "(" + "|".join(sorted(map(re.escape, _MONTHS), key=len, reverse=True)) + ")"
_DATES = (
    (re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b"), ("y", "m", "d")),
    (re.compile(r"\b(\d{1,2})[./](\d{1,2})[./](\d{2}|\d{4})\b"), ("d", "m", "y")),
    (re.compile(rf"\b(\d{{1,2}})\.?\s+{_MONTH}\.?\s+(\d{{4}})\b", re.IGNORECASE), ("d", "M", "y")),
    (re.compile(rf"\b{_MONTH}\.?\s+(\d{{1,2}}),?\s+(\d{{4}})\b", re.IGNORECASE), ("M", "d", "y")),
)
# A digit run of more groups than this is not one phone number: only its spans count.
_MAX_GROUPS = 8


def _fold(text: str) -> str:
    return unicodedata.normalize("NFC", text).casefold()


def name_tokens(*names: str | None) -> set[str]:
    return {word for name in names if name for word in _WORD.findall(_fold(name))
            if len(word) >= 2}


def phone_key(digits: str, *, international: bool) -> str | None:
    """A phone number's digits in national notation, or None if too short to identify."""
    if digits.startswith("00"):
        digits, international = digits[2:], True
    if international and digits.startswith("49"):
        digits = "0" + digits[2:]
    return digits if len(digits) >= 5 else None


def address_key(address: str | None) -> str | None:
    words = _WORD.findall(_fold(address or ""))
    return f"a:{words[0]} {words[1]}" if len(words) >= 2 else None


def identity_keys(first_name: str | None, last_name: str | None,
                  date_of_birth: dt.date | None, email: str | None,
                  phone: str | None, address: str | None = None) -> list[str]:
    """The keys stored on a client row (sorted, for a stable value)."""
    keys = {f"n:{token}" for token in name_tokens(first_name, last_name)}
    if (key := address_key(address)) is not None:
        keys.add(key)
    if date_of_birth is not None:
        keys.add(f"d:{date_of_birth.isoformat()}")
    if email and email.strip():
        keys.add(f"e:{_fold(email.strip())}")
    if phone:
        key = phone_key(re.sub(r"\D", "", phone), international=phone.strip()[:1] == "+")
        if key:
            keys.add(f"p:{key}")
    return sorted(keys)


def _dates_in(text: str) -> set[str]:
    found: set[str] = set()
    for pattern, order in _DATES:
        for match in pattern.finditer(text):
            parts = dict(zip(order, match.groups(), strict=True))
            month = _MONTHS[parts["M"].casefold()] if "M" in parts else int(parts["m"])
            year = int(parts["y"])
            for full in ((1900 + year, 2000 + year) if year < 100 else (year,)):
                with contextlib.suppress(ValueError):
                    found.add(dt.date(full, month, int(parts["d"])).isoformat())
    return found


def _phones_in(text: str) -> set[str]:
    found: set[str] = set()
    for match in _DIGIT_RUN.finditer(text):
        groups = _DIGIT_GROUP.findall(match.group(0))[:_MAX_GROUPS * 2]
        international = match.group(0).startswith("+")
        # Every span of adjacent groups: a run may join a number to its neighbours.
        for start, end in itertools.combinations(range(len(groups) + 1), 2):
            if end - start > _MAX_GROUPS:
                continue
            key = phone_key("".join(groups[start:end]),
                            international=international and start == 0)
            if key:
                found.add(key)
    return found


def text_keys(text: str) -> list[str]:
    """The keys a text could match: its words, dates, e-mail addresses and phone numbers."""
    keys = {f"n:{token}" for token in name_tokens(text)}
    words = _WORD.findall(_fold(text))
    keys |= {f"a:{first} {second}" for first, second in itertools.pairwise(words)}
    keys |= {f"d:{day}" for day in _dates_in(text)}
    keys |= {f"e:{_fold(address)}" for address in _EMAIL.findall(text)}
    keys |= {f"p:{digits}" for digits in _phones_in(text)}
    return sorted(keys)
