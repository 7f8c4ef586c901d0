"""Re-secure the schema: policies evaluate the tenant setting once per query.

Revision ID: t0003_rls_initplan
Revises: t0002_conversations
Create Date: 2026-11-25

No DDL of its own: the runner applies ``public.secure_tenant_schema`` (rewritten by
``0003_rls_initplan``) after every tenant upgrade, which now rewrites existing
``tenant_isolation`` policies too. This revision makes every existing tenant pass
through it once.
"""

from __future__ import annotations

revision = "t0003_rls_initplan"
down_revision = "t0002_conversations"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
