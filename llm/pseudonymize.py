"""Replace a client's identifiers by stable placeholders before text leaves the process.

Names are matched as whole words, case-insensitively, also alone (surname or first
name), with titles ("Mr. Quenstedt", "Frau Quenstedt") and possessives
("Quenstedt's"), because the placeholder replaces only the name itself. Dates of birth
are matched in ISO and German notation; e-mail, phone and address literally (phone
ignoring spacing). The mapping lives only in this object: it is never logged or sent.

The case's client (``people``) gets numbered placeholders (``[PERSON_1_LAST]``; another
written form of the same identifier ``[PERSON_1_LAST_2]``), each restored to the text it
replaced: a date typed 17.5.1990 stays 17.5.1990, a partial name stays partial. Every other client
(``others``) is masked per typed form (``[OTHER_1]``, ``[OTHER_2]``, ...: one placeholder
per distinct text the caller wrote, none grouped by person), and restored to exactly what
the caller typed, never to the stored value: a guess typed into a chat comes back as
typed, neither completed nor normalised, so the reply confirms nothing. ``masked`` holds
the keys (client ids) of the other people whose identifiers were masked, for the audit.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Identity:
    """The known identifiers of one person in the prompt."""

    first_name: str | None = None
    last_name: str | None = None
    date_of_birth: dt.date | None = None
    email: str | None = None
    phone: str | None = None
    address: str | None = None
    # The ids of the people (clients) these identifiers belong to, reported in
    # ``Pseudonymizer.masked`` when masked: several people may share the same values.
    keys: frozenset[Any] = frozenset()


_MONTHS_DE = ("Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August",
              "September", "Oktober", "November", "Dezember")
_MONTHS_EN = ("January", "February", "March", "April", "May", "June", "July", "August",
              "September", "October", "November", "December")


def _date_variants(day: dt.date) -> list[str]:
    d, m, y, yy = day.day, day.month, day.year, day.year % 100
    de, en = _MONTHS_DE[m - 1], _MONTHS_EN[m - 1]
    return [
        day.isoformat(),
        f"{d:02d}.{m:02d}.{y}", f"{d}.{m}.{y}", f"{d:02d}.{m:02d}.{yy:02d}", f"{d}.{m}.{yy:02d}",
        f"{d:02d}/{m:02d}/{y}", f"{d}/{m}/{y}",
        f"{d}. {de} {y}", f"{d:02d}. {de} {y}", f"{d} {en} {y}", f"{en} {d}, {y}",
    ]


def _phone_pattern(phone: str) -> str | None:
    digits = re.sub(r"\D", "", phone)
    if digits.startswith("00"):
        digits = digits[2:]
    if len(digits) < 5:
        return None
    variants = {digits}
    if phone.strip().startswith(("+", "00")) and digits.startswith("49"):
        variants.add("0" + digits[2:])  # German national notation of +49 numbers
        variants.add("0049" + digits[2:])
    elif digits.startswith("0"):
        variants.add("49" + digits[1:])
    # Any spacing or punctuation between the digits; optional leading +.
    alternatives = ("[\\s\\-/().]*".join(re.escape(d) for d in v) for v in sorted(variants))
    return r"\+?(?:" + "|".join(alternatives) + r")(?!\d)"


# Text that looks like one of our placeholders is defused before masking, so a user can't
# type "[PERSON_2_LAST]" and have the reply "restored" into someone else's name.
_PLACEHOLDER_LIKE = re.compile(r"\[(PERSON_\d+_[A-Z]+(?:_\d+)?|OTHER_\d+)\]", re.IGNORECASE)


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def _mentions(person: Identity, text: str, digits: str) -> bool:
    """Cheap pre-check (substring tests): could ``text`` mention ``person`` at all?"""
    lowered = text.casefold()
    words = [w for v in (person.first_name, person.last_name) if v
             for w in [v, *re.split(r"[\s\-]+", v)] if len(w) >= 2]
    if any(_nfc(w).casefold() in lowered for w in words):
        return True
    if person.email and person.email.casefold() in lowered:
        return True
    if person.address and _nfc(person.address.strip()).casefold() in lowered:
        return True
    if person.date_of_birth and any(v.casefold() in lowered
                                    for v in _date_variants(person.date_of_birth)):
        return True
    phone = re.sub(r"\D", "", person.phone or "")
    return len(phone) >= 5 and phone[-5:] in digits


# A rule: priority (contact details before names), pattern, and the placeholder of the
# case's client or None for another client's identifier (replaced per typed form), with
# the keys of the other people the pattern belongs to.
_Rule = tuple[int, re.Pattern[str], str | None, frozenset[Any]]


@dataclass
class Pseudonymizer:
    """Maps identifiers to placeholders and back (see the module's docstring).

    ``others`` (the practice's other clients that the text may mention) get their
    patterns only once a cheap substring check finds one of their identifiers in a text.
    Only placeholders this object produced are ever restored.
    """

    _rules: list[_Rule] = field(default_factory=list)
    _other_rules: dict[str, int] = field(default_factory=dict)
    _originals: dict[str, str] = field(default_factory=dict)
    _pending: dict[int, Identity] = field(default_factory=dict)
    _used: set[str] = field(default_factory=set)
    _typed: dict[str, str] = field(default_factory=dict)
    _case_forms: dict[tuple[str, str], str] = field(default_factory=dict)
    _case_counts: dict[str, int] = field(default_factory=dict)
    masked: set[Any] = field(default_factory=set)

    @classmethod
    def for_people(cls, people: Iterable[Identity], others: Iterable[Identity] = (), *,
                   candidates: Iterable[Identity] = ()) -> Pseudonymizer:
        """``people``: the case's client(s). ``others``: other people, checked against
        each text first; ``candidates``: other people already known to be mentioned
        (found by their keys), whose patterns are built at once."""
        self = cls()
        known = list(people)
        for number, person in enumerate(known, start=1):
            self._add_person(number, person)
        start = len(known) + 1
        for number, person in enumerate(candidates, start=start):
            self._add_person(number, person, other=True)
            start = number + 1
        self._pending = dict(enumerate(others, start=start))
        self._sort()
        return self

    def _sort(self) -> None:
        # Contact details before names (an e-mail address contains the surname), then
        # longest first, so "Anna-Lena" wins over "Anna".
        self._rules.sort(key=lambda rule: (rule[0], -len(rule[1].pattern)))

    def _add(self, pattern: str, placeholder: str, *, words: bool,
             other: Identity | None) -> None:
        pattern = _nfc(pattern)
        if words:
            # A whole word, or followed by the German genitive "s" ("Quenstedts Mutter"):
            # only the name is replaced, so the "s" survives the round trip.
            pattern = rf"(?<![\w]){pattern}(?=s?(?![\w]))"
        priority = 1 if placeholder.endswith(("_FIRST]", "_LAST]")) else 0
        if other is None:
            self._rules.append((priority, re.compile(pattern, re.IGNORECASE), placeholder,
                                frozenset()))
            return
        keys = other.keys
        index = self._other_rules.get(pattern)
        if index is None:  # one rule per pattern, whoever else shares the identifier
            self._other_rules[pattern] = len(self._rules)
            self._rules.append((priority, re.compile(pattern, re.IGNORECASE), None, keys))
        else:
            rule = self._rules[index]
            self._rules[index] = (rule[0], rule[1], None, rule[3] | keys)

    def _add_person(self, n: int, person: Identity, *, other: bool = False) -> None:
        who = person if other else None
        for part, value in (("FIRST", person.first_name), ("LAST", person.last_name)):
            if value and len(value.strip()) >= 2:
                value = value.strip()
                self._add(re.escape(value), f"[PERSON_{n}_{part}]", words=True, other=who)
                # Hyphenated or double names: each part alone identifies too.
                for piece in re.split(r"[\s\-]+", value):
                    if len(piece) >= 3 and piece != value:
                        self._add(re.escape(piece), f"[PERSON_{n}_{part}]", words=True,
                                  other=who)
        if person.date_of_birth:
            for variant in _date_variants(person.date_of_birth):
                self._add(re.escape(variant), f"[PERSON_{n}_DOB]", words=True, other=who)
        if person.email:
            self._add(re.escape(person.email), f"[PERSON_{n}_EMAIL]", words=False,
                      other=who)
        if person.phone and (pattern := _phone_pattern(person.phone)):
            self._add(pattern, f"[PERSON_{n}_PHONE]", words=False, other=who)
        if person.address and len(person.address.strip()) >= 4:
            self._add(re.escape(person.address.strip()), f"[PERSON_{n}_ADDRESS]",
                      words=False, other=who)

    def _as_typed(self, match: re.Match[str]) -> str:
        """Another client's identifier: a placeholder that restores to the typed text."""
        typed = match.group(0)
        placeholder = self._typed.get(typed)
        if placeholder is None:
            placeholder = f"[OTHER_{len(self._typed) + 1}]"
            self._typed[typed] = placeholder
            self._originals[placeholder] = typed
        self._used.add(placeholder)
        return placeholder

    def _as_typed_form(self, base: str, match: re.Match[str]) -> str:
        """The case's client: ``[PERSON_1_FIRST]`` for the first form typed, then
        ``[PERSON_1_FIRST_2]`` ... for other forms, each restoring to its own text (a
        transcript quoted in a draft keeps its wording: "Klientin" stays "Klientin")."""
        typed = match.group(0)
        placeholder = self._case_forms.get((base, typed))
        if placeholder is None:
            count = self._case_counts.get(base, 0) + 1
            self._case_counts[base] = count
            placeholder = base if count == 1 else f"{base[:-1]}_{count}]"
            self._case_forms[(base, typed)] = placeholder
            self._originals[placeholder] = typed
        self._used.add(placeholder)
        return placeholder

    def pseudonymize(self, text: str) -> str:
        text = _PLACEHOLDER_LIKE.sub(r"(\1)", _nfc(text))
        if self._pending:
            digits = re.sub(r"\D", "", text)
            found = [n for n, person in self._pending.items() if _mentions(person, text, digits)]
            for number in found:
                self._add_person(number, self._pending.pop(number), other=True)
            if found:
                self._sort()
        for _priority, pattern, placeholder, keys in self._rules:
            if placeholder is None:
                text, count = pattern.subn(self._as_typed, text)
                if count:
                    self.masked |= keys
                continue
            text = pattern.sub(functools.partial(self._as_typed_form, placeholder), text)
        return text

    def pseudonymize_messages(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{**m, "content": self.pseudonymize(m["content"])}
                if isinstance(m.get("content"), str) else dict(m) for m in messages]

    def restore(self, text: str) -> str:
        for placeholder in self._used:
            text = text.replace(placeholder, self._originals[placeholder])
        return text

    def restore_stream(self, pieces: Iterable[str]) -> Iterator[str]:
        """Restore placeholders in streamed text, also when one is split across pieces."""
        pending = ""
        for piece in pieces:
            pending += piece
            cut = pending.rfind("[")
            if cut != -1 and "]" not in pending[cut:] and len(pending) - cut <= 32:
                ready, pending = pending[:cut], pending[cut:]
            else:
                ready, pending = pending, ""
            if ready:
                yield self.restore(ready)
        if pending:
            yield self.restore(pending)
