"""What the record operations (``api/*/operations.py``) know of a request, without Flask.

``Principal``: the caller, resolved once per request by ``api.auth``.

``DomainError(code, message, errors=None)``: the one exception the operations raise.
``code`` is a registered machine code (``api.error_codes``), which also fixes the HTTP
status; ``api.errors`` maps it, together with the tenancy and LLM errors, to the one error
shape in one place. Messages never carry clinical text or personal data.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from api.error_codes import ERROR_CODES
from models.membership import ADMIN


class DomainError(Exception):
    def __init__(self, code: str, message: str, *, errors: dict[str, Any] | None = None):
        if code not in ERROR_CODES:
            raise KeyError(f"unregistered error code {code!r}: add it to api/error_codes.py")
        super().__init__(message)
        self.code = code
        self.message = message
        self.errors = errors


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller; ``role`` is the membership's current role, when in a tenant."""

    user_id: str
    tenant_id: uuid.UUID | None
    role: str | None

    @property
    def is_admin(self) -> bool:
        """Admins see every client of the practice; therapists only their own."""
        return self.role == ADMIN
