"""The domain layer stays Flask-free: operations can run from a CLI, a job or a test."""

from __future__ import annotations

import subprocess
import sys

import pytest

OPERATIONS = ["api.clients.operations", "api.sessions.operations", "api.notes.operations",
              "api.conversations.operations",
              "api.admin.operations", "api.billing.operations", "api.exports.operations",
              "api.exports.jobs",
              "api.domain"]


@pytest.mark.parametrize("module", OPERATIONS)
def test_operations_import_no_web_framework(module):
    code = (f"import sys, {module}; print(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('flask', 'werkzeug', 'flask_smorest', 'webargs')))")
    # The module names are the fixed list above.
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,  # noqa: S603
                            check=True)
    assert result.stdout.strip() == "[]", result.stdout


def test_domain_errors_use_registered_codes():
    from api.domain import DomainError

    with pytest.raises(KeyError):
        DomainError("no_such_code", "x")
    assert DomainError("not_found", "No such client.").code == "not_found"


def _subclasses(cls: type) -> list[type]:
    return [cls, *(s for sub in cls.__subclasses__() for s in _subclasses(sub))]


def test_every_exception_a_request_can_raise_has_a_registered_code():
    """api.errors maps exceptions by their registered code: an unregistered one would be a
    500. Only the abstract bases (never raised) may lack one."""
    from api.error_codes import ERROR_CODES
    from api.tokens import IdentityProviderUnavailable
    from llm.errors import AdmissionRefused, LLMError
    from storage.base import StorageError
    from tenancy.errors import TenancyError, TenantAccessDenied

    bases = {TenancyError, TenantAccessDenied, LLMError, AdmissionRefused, StorageError}
    classes = [*_subclasses(TenancyError), *_subclasses(LLMError), *_subclasses(StorageError),
               IdentityProviderUnavailable]
    unregistered = sorted(c.__name__ for c in classes
                          if c not in bases and c.code not in ERROR_CODES)
    assert unregistered == []


def test_no_actor_is_read_back_from_session_or_request_state():
    """One Actor, passed explicitly: the record operations take it as an argument, and no
    module reads a role or tenant back from session.info or flask.g except api.auth
    (which sets it) and tenancy.context (which re-enters it)."""
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[2]
    readers = []
    for path in [*root.glob("api/**/*.py"), *root.glob("llm/*.py"), *root.glob("tenancy/*.py")]:
        text = path.read_text()
        rel = path.relative_to(root).as_posix()
        if rel in ("api/auth.py", "tenancy/context.py", "api/logs.py",
                   "api/security_events.py"):  # the response-side hooks
            continue
        for needle in ('g.actor', 'g.get("actor")', "ACTOR_KEY", "ROLE_KEY", "g.principal"):
            if needle in text:
                readers.append((rel, needle))
    assert readers == []
