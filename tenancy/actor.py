"""Who is acting: the one type every layer is handed explicitly.

An ``Actor`` is resolved once per request (``api.auth``, after the tenant context has
confirmed the membership and read its current role) and passed as an argument to every
record operation, the LLM gateway and the audit writer. Nothing reads the caller back from
session or request state.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from models.membership import ADMIN


@dataclass(frozen=True, slots=True, kw_only=True)
class Actor:
    """A member acting in one practice: ``role`` is the membership's role at entry;
    ``request_id`` the server's id of the request (``None`` outside a request),
    ``client_request_id`` the id the caller sent, if usable."""

    tenant_id: uuid.UUID
    user_id: str
    role: str
    request_id: str | None = None
    client_request_id: str | None = None  # the caller's X-Request-ID, validated

    @property
    def is_admin(self) -> bool:
        """Admins see every client of the practice; therapists only their own."""
        return self.role == ADMIN
