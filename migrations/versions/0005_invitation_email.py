"""Bind an invitation to the invited e-mail address: ``public.accept_invitation``.

Revision ID: 0005_invitation_email
Revises: 0004_enter_tenant
Create Date: 2026-12-01

Until now anyone holding an invitation's code could accept it, an admin invitation
included. The function now also takes the caller's verified e-mail addresses (from the
token's ``emails`` or ``email`` claim) and accepts only when one of them equals the
invited address, case-insensitively; otherwise the outcome is ``wrong_account`` and the
invitation stays open for the right person.
"""

from __future__ import annotations

from alembic import op

revision = "0005_invitation_email"
down_revision = "0004_enter_tenant"
branch_labels = None
depends_on = None

_BODY = """
RETURNS TABLE (outcome text, tenant_id uuid, member_role text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    inv public.invitations%ROWTYPE;
    t_status text;
BEGIN
    SELECT * INTO inv FROM public.invitations i WHERE i.code_hash = p_code_hash FOR UPDATE;
    IF NOT FOUND OR inv.accepted_at IS NOT NULL THEN
        RETURN QUERY SELECT 'invalid'::text, NULL::uuid, NULL::text; RETURN;
    END IF;
    IF inv.expires_at <= now() THEN
        RETURN QUERY SELECT 'expired'::text, NULL::uuid, NULL::text; RETURN;
    END IF;
    {email_check}
    SELECT t.status INTO t_status FROM public.tenants t WHERE t.id = inv.tenant_id;
    IF t_status IS DISTINCT FROM 'active' THEN
        RETURN QUERY SELECT 'tenant_inactive'::text, NULL::uuid, NULL::text; RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM public.memberships m WHERE m.user_id = p_user) THEN
        RETURN QUERY SELECT 'already_member'::text, NULL::uuid, NULL::text; RETURN;
    END IF;
    INSERT INTO public.memberships (tenant_id, user_id, role)
        VALUES (inv.tenant_id, p_user, inv.role);
    UPDATE public.invitations SET accepted_at = now(), accepted_by = p_user
        WHERE id = inv.id;
    RETURN QUERY SELECT 'accepted'::text, inv.tenant_id, inv.role::text;
END
$$"""
_EMAIL_CHECK = """IF NOT EXISTS (SELECT 1 FROM unnest(p_emails) AS e(address)
                   WHERE lower(e.address) = lower(inv.email)) THEN
        RETURN QUERY SELECT 'wrong_account'::text, NULL::uuid, NULL::text; RETURN;
    END IF;"""


def upgrade() -> None:
    op.execute("DROP FUNCTION public.accept_invitation(text, text)")
    op.execute("CREATE FUNCTION public.accept_invitation(p_code_hash text, p_user text, "
               "p_emails text[])" + _BODY.replace("{email_check}", _EMAIL_CHECK))
    op.execute("REVOKE ALL ON FUNCTION public.accept_invitation(text, text, text[]) "
               "FROM PUBLIC")


def downgrade() -> None:
    op.execute("DROP FUNCTION public.accept_invitation(text, text, text[])")
    op.execute("CREATE FUNCTION public.accept_invitation(p_code_hash text, p_user text)"
               + _BODY.replace("{email_check}", ""))
    op.execute("REVOKE ALL ON FUNCTION public.accept_invitation(text, text) FROM PUBLIC")
