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

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0008_llm_prices"
down_revision = "0007_data_lifecycle"
branch_labels = None
depends_on = None

LEGACY_VERSION = "legacy-usd"
# Frozen copies (a migration never imports another): erasure_trail() as migration 0007
# created it, and with the ledger's artifact ids cleared for the erased client's records.
_ERASURE_TRAIL_0007 = """
CREATE OR REPLACE FUNCTION public.erasure_trail() RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    v_schema text := TG_TABLE_SCHEMA;
    v_by text := NULLIF(current_setting('app.erasure_by', true), '');
    v_reason text := NULLIF(current_setting('app.erasure_reason', true), '');
    v_retain date := NULLIF(current_setting('app.erasure_retain_until', true), '')::date;
    v_ids uuid[];
    v_counts jsonb;
    v_messages bigint;
    v_tombstone uuid;
    v_audit integer;
    v_security integer;
BEGIN
    IF v_by IS NULL OR v_reason IS NULL THEN
        RAISE EXCEPTION 'a client is deleted only by an erasure (app.erasure_by and '
                        'app.erasure_reason are not set)';
    END IF;
    EXECUTE format('WITH r AS (
SELECT ''therapy_sessions'' AS kind, s.id FROM %1$I.therapy_sessions s WHERE s.client_id = $1
UNION ALL SELECT ''notes'', n.id FROM %1$I.notes n
  JOIN %1$I.therapy_sessions s ON s.id = n.session_id WHERE s.client_id = $1
UNION ALL SELECT ''note_amendments'', a.id FROM %1$I.note_amendments a
  JOIN %1$I.notes n ON n.id = a.note_id
  JOIN %1$I.therapy_sessions s ON s.id = n.session_id WHERE s.client_id = $1
UNION ALL SELECT ''conversations'', v.id FROM %1$I.conversations v WHERE v.client_id = $1
UNION ALL SELECT ''client_consents'', k.id FROM %1$I.client_consents k WHERE k.client_id = $1
UNION ALL SELECT ''data_exports'', e.id FROM %1$I.data_exports e WHERE e.client_id = $1
) SELECT '
                   '(SELECT array_agg(id) FROM r), '
                   '(SELECT jsonb_object_agg(kind, n) FROM '
                   '   (SELECT kind, count(*) AS n FROM r GROUP BY kind) c)', v_schema)
        INTO v_ids, v_counts USING OLD.id;
    EXECUTE format('SELECT count(*) FROM %1$I.conversation_messages m '
                   'JOIN %1$I.conversations v ON v.id = m.conversation_id '
                   'WHERE v.client_id = $1', v_schema) INTO v_messages USING OLD.id;
    v_counts := jsonb_build_object(
        'clients', 1, 'therapy_sessions', 0, 'notes', 0, 'note_amendments', 0,
        'conversations', 0, 'client_consents', 0, 'data_exports', 0)
        || coalesce(v_counts, '{}'::jsonb)
        || jsonb_build_object('conversation_messages', v_messages);
    v_ids := array_append(coalesce(v_ids, '{}'::uuid[]), OLD.id);
    EXECUTE format('INSERT INTO %I.erasure_tombstones (tenant_id, erased_by, reason, '
                   'record_counts, retain_until) VALUES ($1, $2, $3, $4, $5) RETURNING id',
                   v_schema)
        INTO v_tombstone USING OLD.tenant_id, v_by, v_reason, v_counts, v_retain;
    EXECUTE format('UPDATE %I.audit_events SET resource_ids = ARRAY(SELECT DISTINCT '
                   'CASE WHEN x = ANY($1) THEN $2 ELSE x END FROM unnest(resource_ids) x) '
                   'WHERE resource_ids && $1', v_schema) USING v_ids, v_tombstone;
    GET DIAGNOSTICS v_audit = ROW_COUNT;
    EXECUTE format('UPDATE %I.security_events SET resource_ids = ARRAY(SELECT DISTINCT '
                   'CASE WHEN x = ANY($1) THEN $2 ELSE x END FROM unnest(resource_ids) x) '
                   'WHERE resource_ids && $1', v_schema) USING v_ids, v_tombstone;
    GET DIAGNOSTICS v_security = ROW_COUNT;
    PERFORM set_config('app.erasure_tombstone', v_tombstone::text, true),
            set_config('app.erasure_repointed', (v_audit + v_security)::text, true);
    RETURN OLD;
END
$$"""
_ERASURE_TRAIL = """
CREATE OR REPLACE FUNCTION public.erasure_trail() RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    v_schema text := TG_TABLE_SCHEMA;
    v_by text := NULLIF(current_setting('app.erasure_by', true), '');
    v_reason text := NULLIF(current_setting('app.erasure_reason', true), '');
    v_retain date := NULLIF(current_setting('app.erasure_retain_until', true), '')::date;
    v_ids uuid[];
    v_counts jsonb;
    v_messages bigint;
    v_tombstone uuid;
    v_audit integer;
    v_security integer;
BEGIN
    IF v_by IS NULL OR v_reason IS NULL THEN
        RAISE EXCEPTION 'a client is deleted only by an erasure (app.erasure_by and '
                        'app.erasure_reason are not set)';
    END IF;
    EXECUTE format('WITH r AS (
SELECT ''therapy_sessions'' AS kind, s.id FROM %1$I.therapy_sessions s WHERE s.client_id = $1
UNION ALL SELECT ''notes'', n.id FROM %1$I.notes n
  JOIN %1$I.therapy_sessions s ON s.id = n.session_id WHERE s.client_id = $1
UNION ALL SELECT ''note_amendments'', a.id FROM %1$I.note_amendments a
  JOIN %1$I.notes n ON n.id = a.note_id
  JOIN %1$I.therapy_sessions s ON s.id = n.session_id WHERE s.client_id = $1
UNION ALL SELECT ''conversations'', v.id FROM %1$I.conversations v WHERE v.client_id = $1
UNION ALL SELECT ''client_consents'', k.id FROM %1$I.client_consents k WHERE k.client_id = $1
UNION ALL SELECT ''data_exports'', e.id FROM %1$I.data_exports e WHERE e.client_id = $1
) SELECT '
                   '(SELECT array_agg(id) FROM r), '
                   '(SELECT jsonb_object_agg(kind, n) FROM '
                   '   (SELECT kind, count(*) AS n FROM r GROUP BY kind) c)', v_schema)
        INTO v_ids, v_counts USING OLD.id;
    EXECUTE format('SELECT count(*) FROM %1$I.conversation_messages m '
                   'JOIN %1$I.conversations v ON v.id = m.conversation_id '
                   'WHERE v.client_id = $1', v_schema) INTO v_messages USING OLD.id;
    v_counts := jsonb_build_object(
        'clients', 1, 'therapy_sessions', 0, 'notes', 0, 'note_amendments', 0,
        'conversations', 0, 'client_consents', 0, 'data_exports', 0)
        || coalesce(v_counts, '{}'::jsonb)
        || jsonb_build_object('conversation_messages', v_messages);
    v_ids := array_append(coalesce(v_ids, '{}'::uuid[]), OLD.id);
    EXECUTE format('INSERT INTO %I.erasure_tombstones (tenant_id, erased_by, reason, '
                   'record_counts, retain_until) VALUES ($1, $2, $3, $4, $5) RETURNING id',
                   v_schema)
        INTO v_tombstone USING OLD.tenant_id, v_by, v_reason, v_counts, v_retain;
    EXECUTE format('UPDATE %I.audit_events SET resource_ids = ARRAY(SELECT DISTINCT '
                   'CASE WHEN x = ANY($1) THEN $2 ELSE x END FROM unnest(resource_ids) x) '
                   'WHERE resource_ids && $1', v_schema) USING v_ids, v_tombstone;
    GET DIAGNOSTICS v_audit = ROW_COUNT;
    EXECUTE format('UPDATE %I.security_events SET resource_ids = ARRAY(SELECT DISTINCT '
                   'CASE WHEN x = ANY($1) THEN $2 ELSE x END FROM unnest(resource_ids) x) '
                   'WHERE resource_ids && $1', v_schema) USING v_ids, v_tombstone;
    GET DIAGNOSTICS v_security = ROW_COUNT;
    UPDATE public.llm_usage SET artifact_kind = NULL, artifact_id = NULL
        WHERE tenant_id = OLD.tenant_id AND artifact_id = ANY(v_ids);
    PERFORM set_config('app.erasure_tombstone', v_tombstone::text, true),
            set_config('app.erasure_repointed', (v_audit + v_security)::text, true);
    RETURN OLD;
END
$$"""


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
    op.execute(_ERASURE_TRAIL)


def downgrade() -> None:
    op.execute(_ERASURE_TRAIL_0007)
    op.drop_constraint("ck_llm_usage_artifact", "llm_usage", schema="public")
    for column in ("artifact_id", "artifact_kind", "currency", "price_version"):
        op.drop_column("llm_usage", column, schema="public")
