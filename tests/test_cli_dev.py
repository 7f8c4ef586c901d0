"""The ``flask`` CLI reports a configuration it refuses in one line, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _environment_without_database() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("DATABASE_", "AZURE_", "AUTH_", "FLASK_"))}
    env["APP_ENV"] = "development"
    return env


@pytest.mark.parametrize("command", [
    ["dev", "token", "--sub", "alice"],
    ["dev", "seed"],
    ["tenancy", "list"],
])
def test_cli_without_database_url_prints_one_line(command):
    result = subprocess.run(  # noqa: S603  (fixed arguments)
        [sys.executable, "-m", "flask", *command], cwd=ROOT, env=_environment_without_database(),
        capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip() == "Error: DATABASE_URL is not set", result.stderr


def test_server_import_still_refuses_without_database_url():
    """What gunicorn does (import wsgi) still fails: a server never starts half-configured."""
    result = subprocess.run(
        [sys.executable, "-c", "import wsgi"], cwd=ROOT, env=_environment_without_database(),
        capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode != 0
    assert "ConfigError: DATABASE_URL is not set" in result.stderr
