"""Exceptions raised by the tenancy layer.

    TenancyError
    ├── TenantAccessDenied        the caller may not act in this tenant (HTTP 403)
    │   ├── TenantUnknown         no such tenant
    │   ├── TenantInactive        suspended or deleted
    │   └── NotAMember            no (or no longer a) membership
    ├── TenantConflict            the request contradicts the registry (HTTP 409)
    └── UnsafeDatabaseRole        the app role could bypass isolation: refuse to serve

Every exception carries a machine-readable ``code``; messages never contain PII. The
codes of the classes raised in requests are registered in ``api/error_codes.py``
(``tests/api/test_layers.py`` checks); ``TenancyError`` and ``TenantAccessDenied`` are
only bases and never raised themselves.
"""

from __future__ import annotations


class TenancyError(Exception):
    code = "tenancy_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class TenantAccessDenied(TenancyError):
    code = "tenant_access_denied"


class TenantUnknown(TenantAccessDenied):
    code = "tenant_unknown"


class TenantInactive(TenantAccessDenied):
    code = "tenant_inactive"


class NotAMember(TenantAccessDenied):
    code = "not_a_member"


class TenantConflict(TenancyError):
    code = "already_member"


class UnsafeDatabaseRole(TenancyError):
    code = "unsafe_database_role"
