"""The domain layer stays Flask-free: operations can run from a CLI, a job or a test."""

from __future__ import annotations

import subprocess
import sys

import pytest

OPERATIONS = ["api.clients.operations", "api.sessions.operations", "api.notes.operations",
              "api.conversations.operations",
              "api.admin.operations", "api.domain"]


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
