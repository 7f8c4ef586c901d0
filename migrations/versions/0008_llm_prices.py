"""Versioned prices and artifacts on the usage ledger.

Revision ID: 0008_llm_prices
Revises: 0007_data_lifecycle
Create Date: 2026-12-01

``public.llm_usage`` gains
- ``price_version`` (varchar 64) and ``currency`` (char 3): the price version
  (``llm/prices.py``) the row's ``cost`` was rated with, and its currency. From now on
  ``cost`` is EUR at that version. Rows written before this revision were rated at the
  gateway's fixed USD list prices: they keep their cost and get ``price_version``
  ``legacy-usd`` and ``currency`` ``USD`` (the one UPDATE of the ledger, by the owner in
  this migration; the app role can still only SELECT and INSERT). Both are NOT NULL.
- ``artifact_kind`` (varchar 32, ``session`` | ``conversation``) and ``artifact_id``
  (uuid): the therapy session whose note was drafted, or the case chat conversation, that
  the call served. Never client data. Both or neither (a check constraint).
- ``erasure_trail()`` (the trigger of a client's erasure, migration 0007) also clears
  the artifact of the ledger rows that named the erased client's sessions or
  conversations: the rows and their tokens and cost stay for billing, no id of an erased
  record does. The function is 0007's, with that one UPDATE added (it runs as the owner;
  the app role still cannot update the ledger).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0008_llm_prices"
down_revision = "0007_data_lifecycle"
branch_labels = None
depends_on = None

LEGACY_VERSION = "legacy-usd"
_CLEAR_ARTIFACTS = """    UPDATE public.llm_usage SET artifact_kind = NULL, artifact_id = NULL
        WHERE tenant_id = OLD.tenant_id AND artifact_id = ANY(v_ids);
    PERFORM set_config('app.erasure_tombstone',"""


def _erasure_trail_0007() -> str:
    """The ``CREATE FUNCTION public.erasure_trail()`` statement of migration 0007."""
    path = Path(__file__).with_name("0007_data_lifecycle.py")
    spec = importlib.util.spec_from_file_location("clinai_public_0007", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    statements: list[str] = []

    class Recorder:
        def execute(self, statement: Any) -> None:
            statements.append(str(statement))

    module.op = Recorder()
    module._create_erasure_trail()
    create = next(s for s in statements if "FUNCTION public.erasure_trail()" in s)
    return create.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)


def _erasure_trail() -> str:
    original = _erasure_trail_0007()
    anchor = "    PERFORM set_config('app.erasure_tombstone',"
    if original.count(anchor) != 1:
        raise RuntimeError("erasure_trail() of 0007 changed; update migration 0008")
    return original.replace(anchor, _CLEAR_ARTIFACTS)


def upgrade() -> None:
    op.add_column("llm_usage", sa.Column("price_version", sa.String(64)), schema="public")
    op.add_column("llm_usage", sa.Column("currency", sa.CHAR(3)), schema="public")
    op.add_column("llm_usage", sa.Column("artifact_kind", sa.String(32)), schema="public")
    op.add_column("llm_usage", sa.Column("artifact_id", UUID(as_uuid=True)), schema="public")
    op.execute(f"UPDATE public.llm_usage SET price_version = '{LEGACY_VERSION}', "
               "currency = 'USD'")
    op.alter_column("llm_usage", "price_version", nullable=False, schema="public")
    op.alter_column("llm_usage", "currency", nullable=False, schema="public")
    op.create_check_constraint(
        "artifact", "llm_usage",
        "(artifact_kind IS NULL AND artifact_id IS NULL) OR "
        "(artifact_kind IS NOT NULL AND artifact_kind IN ('session', 'conversation') "
            "AND artifact_id IS NOT NULL)",
        schema="public")
    op.execute(_erasure_trail())


def downgrade() -> None:
    op.execute(_erasure_trail_0007())
    op.drop_constraint("ck_llm_usage_artifact", "llm_usage", schema="public")
    for column in ("artifact_id", "artifact_kind", "currency", "price_version"):
        op.drop_column("llm_usage", column, schema="public")
