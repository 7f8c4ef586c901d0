"""Client identifiers never leave the process; replies come back with real names."""

from __future__ import annotations

import datetime as dt

import pytest

from llm.pseudonymize import Identity, Pseudonymizer

PERSON = Identity(first_name="Quentin", last_name="Quenstedt", date_of_birth=dt.date(1985, 4, 12),
                  email="q.quenstedt@example.org", phone="+49 30 1234567",
                  address="Hauptstraße 5, 10115 Berlin")


@pytest.fixture
def p() -> Pseudonymizer:
    return Pseudonymizer.for_people([PERSON])


@pytest.mark.parametrize("mention", [
    "Quentin Quenstedt", "Quenstedt", "Quentin", "QUENSTEDT", "quentin",
    "Quenstedt's", "Mr. Quenstedt", "Herr Quenstedt", "Frau Quenstedt",
    "1985-04-12", "12.04.1985", "12.4.1985", "q.quenstedt@example.org",
    "+49 30 1234567", "030 1234567", "030/123 45 67", "+49 (30) 123-4567", "0049301234567",
    "Hauptstraße 5, 10115 Berlin",
])
def test_identifier_is_replaced(p, mention):
    text = f"Session notes: {mention} talked about work."
    masked = p.pseudonymize(text)
    for secret in ("Quenstedt", "Quentin", "1985", "1234567", "example.org", "Hauptstraße"):
        assert secret.lower() not in masked.lower(), masked
    assert "[PERSON_1_" in masked


def test_words_containing_the_name_are_kept(p):
    text = "Quenstedtstrasse and Quentinsburg are places."
    assert p.pseudonymize(text) == text


def test_restore_roundtrip(p):
    text = "Mr. Quenstedt's sister called Quentin on 030 1234567."
    masked = p.pseudonymize(text)
    assert masked == "Mr. [PERSON_1_LAST]'s sister called [PERSON_1_FIRST] on [PERSON_1_PHONE]."
    # Restored as written, not normalised to the record (+49 30 1234567).
    assert p.restore(masked) == text


def test_each_written_form_of_the_case_client_restores_to_itself():
    """Outside test, session 5: a draft must not misquote the transcript ("Klientin"
    became "Demo-Klientin", 17.5.1990 became 1990-05-17)."""
    p = Pseudonymizer.for_people([Identity(first_name="Demo-Klientin", last_name="Beispiel",
                                           date_of_birth=dt.date(1990, 5, 17))])
    text = "Klientin sagt hallo. Demo-Klientin, geboren 17.5.1990 (1990-05-17)."
    masked = p.pseudonymize(text)
    # Longer forms are matched first, so the full name holds the first placeholder.
    assert masked == ("[PERSON_1_FIRST_2] sagt hallo. [PERSON_1_FIRST], geboren "
                      "[PERSON_1_DOB_2] ([PERSON_1_DOB]).")
    assert p.restore(masked) == text
    assert p.restore("[PERSON_1_FIRST] und [PERSON_1_FIRST_2]") == "Demo-Klientin und Klientin"


def test_restore_stream_handles_split_placeholders(p):
    p.pseudonymize("Quentin Quenstedt")  # only placeholders this prompt produced come back
    pieces = ["Today [PERS", "ON_1_LA", "ST] said ", "[PERSON_1_FIRST]", " is fine [x"]
    assert "".join(p.restore_stream(pieces)) == "Today Quenstedt said Quentin is fine [x"


def test_hyphenated_first_name_parts():
    p = Pseudonymizer.for_people([Identity(first_name="Anna-Lena", last_name="Schmidt")])
    masked = p.pseudonymize("Anna-Lena, also called Lena or Anna, met Ms Schmidt.")
    assert "Anna" not in masked and "Lena" not in masked and "Schmidt" not in masked


def test_messages_are_copied_not_mutated(p):
    messages = [{"role": "user", "content": "Quenstedt"}]
    masked = p.pseudonymize_messages(messages)
    assert masked == [{"role": "user", "content": "[PERSON_1_LAST]"}]
    assert messages == [{"role": "user", "content": "Quenstedt"}]


def test_german_genitive_roundtrip(p):
    masked = p.pseudonymize("Quenstedts Mutter und Quentins Schwester.")
    assert masked == "[PERSON_1_LAST]s Mutter und [PERSON_1_FIRST]s Schwester."
    assert p.restore(masked) == "Quenstedts Mutter und Quentins Schwester."


@pytest.mark.parametrize("written", ["12.04.85", "12. April 1985", "April 12, 1985",
                                     "12 April 1985", "12/4/1985"])
def test_more_birth_date_notations(p, written):
    assert p.pseudonymize(f"geboren {written}.") == "geboren [PERSON_1_DOB]."


def test_typed_placeholders_are_defused_and_never_restored():
    p = Pseudonymizer.for_people([PERSON], others=[Identity(first_name="Hildegard",
                                                            last_name="Zwetschke")])
    masked = p.pseudonymize("Who is [PERSON_2_FIRST] [person_2_last]?")
    assert "[PERSON_2" not in masked.upper().replace("(PERSON_2", "")
    # Even if the model answers with another person's placeholder, it stays a placeholder.
    assert p.restore("[PERSON_2_FIRST] [PERSON_2_LAST]") == "[PERSON_2_FIRST] [PERSON_2_LAST]"


def _alpha(i: int) -> str:
    return chr(97 + i % 26) + chr(97 + i // 26)


def test_other_clients_names_masked_in_one_pass():
    others = [Identity(first_name=f"Vor{_alpha(i)}", last_name=f"Nach{_alpha(i)}")
              for i in range(500)]
    p = Pseudonymizer.for_people([PERSON], others=others)
    text = f"Nach{_alpha(250)}s Mutter traf Vor{_alpha(7)} und Quenstedt. " * 2000
    masked = p.pseudonymize(text)
    assert f"Nach{_alpha(250)}" not in masked and f"Vor{_alpha(7)}" not in masked
    assert masked.startswith("[OTHER_1]s Mutter traf [OTHER_2] und [PERSON_1_LAST].")
    assert p.restore(masked) == text


OTHERS = [
    Identity(first_name="Anna-Lena", last_name="Meyer-Schmidt"),
    Identity(first_name="Siobhan", last_name="O'Neill", email="s.oneill@example.org"),
    Identity(first_name="Marie Claire", last_name="van der Berg",
             date_of_birth=dt.date(1990, 7, 3), phone="0171 2345678"),
    Identity(first_name="Li", last_name="Ng"),
    Identity(first_name="Jürgen", last_name="Mu\u0308hle"),  # decomposed umlaut in the record
]


@pytest.mark.parametrize(("mention", "secret"), [
    ("Lena kam heute.", "Lena"),
    ("Frau Schmidt rief an.", "Schmidt"),
    ("Mrs O'Neill's call.", "O'Neill"),
    ("Berg war da.", "Berg"),
    ("Marie Claire lachte.", "Claire"),
    ("Li und Ng kamen.", "Ng"),
    ("Herr Mühle (precomposed) kam.", "Mühle"),
    ("Jürgen-Paul ist ein anderer.", "Jürgen"),
    ("geboren 03.07.1990", "03.07.1990"),
    ("mail s.oneill@example.org", "oneill"),
    ("Tel. 0171 234 56 78", "234 56 78"),
])
def test_other_clients_identifiers_are_masked(mention, secret):
    p = Pseudonymizer.for_people([PERSON], others=OTHERS)
    assert secret.casefold() not in p.pseudonymize(mention).casefold()


def test_longest_name_wins_across_case_and_other_clients():
    p = Pseudonymizer.for_people([Identity(first_name="Anna", last_name="Beck")],
                                 others=[Identity(first_name="Anna-Lena", last_name="Kurz")])
    assert p.pseudonymize("Anna-Lena und Anna") == "[OTHER_1] und [PERSON_1_FIRST]"
