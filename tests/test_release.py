"""scripts/release.py: App Service's release step migrates, except after a rollback."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy import Engine, text

from tests.conftest import db_config

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "release.py"


@pytest.fixture(scope="module")
def release() -> ModuleType:
    spec = importlib.util.spec_from_file_location("release", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _set_version(engine: Engine, table: str, revision: str) -> str:
    with engine.begin() as conn:
        before = conn.scalar(text(f"SELECT version_num FROM {table}"))
        conn.execute(text(f"UPDATE {table} SET version_num = :r"), {"r": revision})
    assert isinstance(before, str)
    return before


def test_a_migrated_database_is_not_ahead(release, app, database_url, make_practice):
    make_practice()
    assert release.database_ahead(db_config(database_url)) == []


def test_a_database_without_our_roles_is_new(release, app, database_url):
    config = db_config(database_url)
    fresh = type(config)(admin_url=config.admin_url, owner_role="clinai_nobody_owner")
    assert release.database_ahead(fresh) == []


@pytest.mark.parametrize("where", ["public", "tenant"])
def test_a_revision_this_code_does_not_know_is_a_rollback(release, app, database_url,
                                                          make_practice, owner_engine, where):
    practice = make_practice()
    table = ("public.alembic_version" if where == "public"
             else f"t_{practice.id.hex}.alembic_version")
    before = _set_version(owner_engine, table, "f0000000from_a_later_release")
    try:
        assert release.database_ahead(db_config(database_url)) == [
            "f0000000from_a_later_release"]
    finally:
        _set_version(owner_engine, table, before)
    assert release.database_ahead(db_config(database_url)) == []
