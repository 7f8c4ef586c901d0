"""Onboarding, invitations and member management."""

from __future__ import annotations

import uuid

import pytest


def _bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_onboarding_makes_caller_admin(client, issuer):
    sub = f"founder-{uuid.uuid4()}"
    created = client.post("/api/v1/onboarding/tenants", json={"name": "Praxis Nord"},
                          headers=_bearer(issuer.token(sub)))
    assert created.status_code == 201
    body = created.json
    assert (body["name"], body["status"], body["role"]) == ("Praxis Nord", "active", "admin")
    token = issuer.token(sub, tenant=body["id"], role="admin")
    assert client.get("/api/v1/tenant", headers=_bearer(token)).json["id"] == body["id"]
    members = client.get("/api/v1/admin/members", headers=_bearer(token)).json
    assert [(m["user_id"], m["role"]) for m in members] == [(sub, "admin")]
    again = client.post("/api/v1/onboarding/tenants", json={"name": "Second"},
                        headers=_bearer(issuer.token(sub)))
    assert (again.status_code, again.json["error"]) == (409, "already_member")


@pytest.mark.parametrize("body", [{}, {"name": ""}, {"name": "x" * 256},
                                  {"name": "ok", "status": "active"},
                                  {"name": "ok", "id": str(uuid.uuid4())}])
def test_onboarding_validation(client, issuer, body):
    response = client.post("/api/v1/onboarding/tenants", json=body,
                           headers=_bearer(issuer.token(f"u-{uuid.uuid4()}")))
    assert (response.status_code, response.json["error"]) == (422, "validation_failed")


def test_onboarding_needs_a_token(client):
    response = client.post("/api/v1/onboarding/tenants", json={"name": "x"})
    assert (response.status_code, response.json["error"]) == (401, "missing_token")


def test_invitation_is_single_use(make_practice, issuer):
    practice = make_practice()
    c = practice.client
    invite = c.post("/api/v1/admin/invitations", headers=practice.admin.headers,
                    json={"email": "neu@example.org", "role": "therapist"}).json
    first, second = f"u-{uuid.uuid4()}", f"u-{uuid.uuid4()}"
    accept = f"/api/v1/onboarding/invitations/{invite['code']}/accept"
    ok = c.post(accept, headers=_bearer(issuer.token(first)))
    assert ok.status_code == 201
    assert ok.json == {"tenant_id": str(practice.id), "user_id": first, "role": "therapist"}
    reused = c.post(accept, headers=_bearer(issuer.token(second)))
    assert (reused.status_code, reused.json["error"]) == (404, "invitation_invalid")
    unknown = c.post("/api/v1/onboarding/invitations/made-up-code/accept",
                     headers=_bearer(issuer.token(second)))
    assert unknown.status_code == 404


def test_expired_invitation(make_practice, issuer, admin_conn):
    practice = make_practice()
    invite = practice.client.post("/api/v1/admin/invitations", headers=practice.admin.headers,
                                  json={"email": "late@example.org", "role": "therapist"}).json
    admin_conn.execute("UPDATE public.invitations SET expires_at = now() - interval '1 minute' "
                       "WHERE id = %s", (invite["id"],))
    late = practice.client.post(f"/api/v1/onboarding/invitations/{invite['code']}/accept",
                                headers=_bearer(issuer.token(f"u-{uuid.uuid4()}")))
    assert (late.status_code, late.json["error"]) == (410, "invitation_expired")


def test_member_of_one_practice_cannot_join_another(make_practice, issuer):
    a, b = make_practice("A"), make_practice("B")
    invite = b.client.post("/api/v1/admin/invitations", headers=b.admin.headers,
                           json={"email": "x@example.org", "role": "admin"}).json
    response = b.client.post(f"/api/v1/onboarding/invitations/{invite['code']}/accept",
                             headers=_bearer(issuer.token(a.admin.sub)))
    assert (response.status_code, response.json["error"]) == (409, "already_member")


def test_invitation_codes_are_stored_hashed(make_practice, admin_conn):
    practice = make_practice()
    invite = practice.client.post("/api/v1/admin/invitations", headers=practice.admin.headers,
                                  json={"email": "h@example.org", "role": "therapist"}).json
    stored = admin_conn.execute("SELECT code_hash FROM public.invitations WHERE id = %s",
                                (invite["id"],)).fetchone()
    assert stored is not None
    assert invite["code"] not in stored[0]
    assert len(stored[0]) == 64


def test_role_change_and_last_admin(make_practice):
    practice = make_practice()
    therapist = practice.add_member("therapist")
    c, h = practice.client, practice.admin.headers
    promoted = c.patch(f"/api/v1/admin/members/{therapist.sub}", json={"role": "admin"},
                       headers=h)
    assert (promoted.status_code, promoted.json["role"]) == (200, "admin")
    # The promoted member may use admin routes at once, with the token they already hold.
    assert c.get("/api/v1/admin/members", headers=therapist.headers).status_code == 200
    demoted = c.patch(f"/api/v1/admin/members/{therapist.sub}", json={"role": "therapist"},
                      headers=h)
    assert demoted.status_code == 200
    assert c.get("/api/v1/admin/members", headers=therapist.headers).status_code == 403
    last = c.patch(f"/api/v1/admin/members/{practice.admin.sub}", json={"role": "therapist"},
                   headers=h)
    assert (last.status_code, last.json["error"]) == (409, "last_admin")
    remove_self = c.delete(f"/api/v1/admin/members/{practice.admin.sub}", headers=h)
    assert (remove_self.status_code, remove_self.json["error"]) == (409, "last_admin")
    bad_role = c.patch(f"/api/v1/admin/members/{therapist.sub}", json={"role": "owner"},
                       headers=h)
    assert bad_role.status_code == 422
    missing = c.delete("/api/v1/admin/members/nobody", headers=h)
    assert missing.status_code == 404


def test_revocation_is_immediate(make_practice):
    practice = make_practice()
    therapist = practice.add_member("therapist")
    c = practice.client
    assert c.get("/api/v1/clients", headers=therapist.headers).status_code == 200
    assert c.delete(f"/api/v1/admin/members/{therapist.sub}",
                    headers=practice.admin.headers).status_code == 204
    response = c.get("/api/v1/clients", headers=therapist.headers)
    assert (response.status_code, response.json["error"]) == (403, "not_a_member")
