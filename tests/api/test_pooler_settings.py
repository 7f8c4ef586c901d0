"""``DATABASE_APP_POOLER``: which values mean what, and the URLs it needs.

The requests through a real PgBouncer are in ``test_pooler.py``.
"""

from __future__ import annotations

from typing import Any

import pytest

from api import create_app
from api.settings import ConfigError, pooler_mode, validate
from tests.conftest import app_config

DIRECT = "postgresql://admin@127.0.0.1:5432/clinai"
POOLED = "postgresql://clinai_app:secret@127.0.0.1:6432/clinai"


@pytest.mark.parametrize(("value", "mode"), [
    (None, None), ("", None), ("none", None), (" None ", None),
    ("transaction", "transaction"), ("Transaction", "transaction"),
])
def test_values(value: Any, mode: str | None) -> None:
    assert pooler_mode(value) == mode


@pytest.mark.parametrize("value", ["session", "statement", "yes", "pgbouncer"])
def test_other_values_are_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="DATABASE_APP_POOLER must be empty, 'none' or "
                                          "'transaction'"):
        pooler_mode(value)


def _settings(**overrides: Any) -> dict[str, Any]:
    return {"APP_ENV": "development", "DATABASE_URL": DIRECT, **overrides}


@pytest.mark.parametrize(("overrides", "refusal"), [
    ({"DATABASE_APP_POOLER": "transaction", "DATABASE_APP_URL": POOLED}, None),
    ({"DATABASE_APP_POOLER": "", "DATABASE_APP_URL": POOLED}, None),
    ({"DATABASE_APP_POOLER": "none"}, None),
    ({"DATABASE_APP_POOLER": "session", "DATABASE_APP_URL": POOLED}, "must be empty"),
    # The pooler named without its address: the app would go wherever DATABASE_URL goes.
    ({"DATABASE_APP_POOLER": "transaction"}, "needs DATABASE_APP_URL"),
    # DATABASE_URL on the pooler too: migrations' SET ROLE and session locks would break.
    ({"DATABASE_URL": "postgresql://admin@127.0.0.1:6432/clinai",
      "DATABASE_APP_POOLER": "transaction", "DATABASE_APP_URL": POOLED}, "direct connection"),
    ({"DATABASE_URL": "postgresql://admin@localhost/clinai",
      "DATABASE_APP_POOLER": "transaction",
      "DATABASE_APP_URL": "postgresql://clinai_app@LOCALHOST/clinai"},
     "direct connection"),
])
def test_validation(overrides: dict[str, Any], refusal: str | None) -> None:
    if refusal is None:
        validate(_settings(**overrides))
    else:
        with pytest.raises(ConfigError, match=refusal):
            validate(_settings(**overrides))


def test_the_app_engine_learns_the_mode(app: Any, database_url: str, issuer: Any) -> None:
    for value, mode in (("transaction", "transaction"), ("none", None)):
        created = create_app(app_config(database_url, issuer, DATABASE_APP_POOLER=value,
                                        DATABASE_APP_URL=POOLED))
        try:
            assert created.extensions["clinai_db"].config.app_pooler == mode
        finally:
            created.extensions["clinai_exports"].shutdown()
            created.extensions["clinai_db"].dispose()


def test_port_6432_without_the_setting_is_logged(app: Any, database_url: str, issuer: Any,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    for value, warned in (("", True), ("transaction", False)):
        caplog.clear()
        created = create_app(app_config(database_url, issuer, DATABASE_APP_POOLER=value,
                                        DATABASE_APP_URL=POOLED))
        try:
            assert ("DATABASE_APP_POOLER is not set" in caplog.text) is warned
        finally:
            created.extensions["clinai_exports"].shutdown()
            created.extensions["clinai_db"].dispose()
