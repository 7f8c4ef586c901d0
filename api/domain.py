"""What the record operations (``api/*/operations.py``) know of a request, without Flask.

The caller is a ``tenancy.actor.Actor``, resolved once per request by ``api.auth`` and
passed to every operation as its second argument, after the session.

``DomainError(code, message, errors=None)``: the one exception the operations raise.
``code`` is a registered machine code (``api.error_codes``), which also fixes the HTTP
status; ``api.errors`` maps it, together with the tenancy and LLM errors, to the one error
shape in one place. Messages never carry clinical text or personal data.
"""

from __future__ import annotations

from typing import Any

from api.error_codes import ERROR_CODES


class DomainError(Exception):
    def __init__(self, code: str, message: str, *, errors: dict[str, Any] | None = None):
        if code not in ERROR_CODES:
            raise KeyError(f"unregistered error code {code!r}: add it to api/error_codes.py")
        super().__init__(message)
        self.code = code
        self.message = message
        self.errors = errors
