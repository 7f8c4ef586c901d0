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
    ok = c.post(accept, headers=_bearer(issuer.token(first, emails=["neu@example.org"])))
    assert ok.status_code == 201
    assert ok.json == {"tenant_id": str(practice.id), "user_id": first, "role": "therapist"}
    reused = c.post(accept, headers=_bearer(issuer.token(second, emails=["neu@example.org"])))
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
                                headers=_bearer(issuer.token(f"u-{uuid.uuid4()}",
                                                             email="late@example.org")))
    assert (late.status_code, late.json["error"]) == (410, "invitation_expired")


def test_member_of_one_practice_cannot_join_another(make_practice, issuer):
    a, b = make_practice("A"), make_practice("B")
    invite = b.client.post("/api/v1/admin/invitations", headers=b.admin.headers,
                           json={"email": "x@example.org", "role": "admin"}).json
    response = b.client.post(f"/api/v1/onboarding/invitations/{invite['code']}/accept",
                             headers=_bearer(issuer.token(a.admin.sub, email="x@example.org")))
    assert (response.status_code, response.json["error"]) == (409, "already_member")


@pytest.mark.parametrize("claims", [
    {},  # no e-mail claim at all
    {"emails": ["someone.else@example.org"]},
    {"email": "chef@example.org.evil"},
    {"emails": "chef@example.org"},  # not a list: B2C sends a list
    {"emails": [None, 5]},
])
def test_an_invitation_is_accepted_only_by_the_invited_address(make_practice, issuer, claims):
    """Issue 10, 7: holding the code is not enough; the token must carry the address."""
    practice = make_practice()
    c = practice.client
    invite = c.post("/api/v1/admin/invitations", headers=practice.admin.headers,
                    json={"email": "Chef@Example.org", "role": "admin"}).json
    accept = f"/api/v1/onboarding/invitations/{invite['code']}/accept"
    thief = c.post(accept, headers=_bearer(issuer.token(f"u-{uuid.uuid4()}", **claims)))
    if claims.get("emails") == "chef@example.org":  # a string is read as one address
        assert thief.status_code == 201
        return
    assert (thief.status_code, thief.json["error"]) == (403, "invitation_wrong_account")
    # The invitation stays open for the invited person (case-insensitive match).
    owner = c.post(accept, headers=_bearer(issuer.token(f"u-{uuid.uuid4()}",
                                                        emails=["chef@example.ORG"])))
    assert (owner.status_code, owner.json["role"]) == (201, "admin")


def test_pending_invitations_are_listed_without_codes_and_can_be_revoked(make_practice,
                                                                         issuer):
    practice, other = make_practice("Liste"), make_practice("Andere")
    c, h = practice.client, practice.admin.headers
    pending = c.post("/api/v1/admin/invitations", headers=h,
                     json={"email": "p@example.org", "role": "therapist"}).json
    used = c.post("/api/v1/admin/invitations", headers=h,
                  json={"email": "u@example.org", "role": "therapist"}).json
    assert c.post(f"/api/v1/onboarding/invitations/{used['code']}/accept",
                  headers=_bearer(issuer.token(f"u-{uuid.uuid4()}", email="u@example.org"))
                  ).status_code == 201
    listed = c.get("/api/v1/admin/invitations", headers=h)
    assert listed.status_code == 200
    assert [i["id"] for i in listed.json] == [pending["id"]]
    assert set(listed.json[0]) == {"id", "email", "role", "expires_at", "created_at"}
    assert pending["code"] not in listed.get_data(as_text=True)
    # Another practice's admin sees none of them and cannot revoke them (404).
    assert c.get("/api/v1/admin/invitations", headers=other.admin.headers).json == []
    assert c.delete(f"/api/v1/admin/invitations/{pending['id']}",
                    headers=other.admin.headers).status_code == 404
    therapist = practice.add_member("therapist")
    assert c.get("/api/v1/admin/invitations", headers=therapist.headers).status_code == 403
    assert c.delete(f"/api/v1/admin/invitations/{used['id']}", headers=h).status_code == 404
    assert c.delete(f"/api/v1/admin/invitations/{pending['id']}", headers=h).status_code == 204
    assert c.delete(f"/api/v1/admin/invitations/{pending['id']}", headers=h).status_code == 404
    late = c.post(f"/api/v1/onboarding/invitations/{pending['code']}/accept",
                  headers=_bearer(issuer.token(f"u-{uuid.uuid4()}", email="p@example.org")))
    assert (late.status_code, late.json["error"]) == (404, "invitation_invalid")
    assert [i["id"] for i in c.get("/api/v1/admin/invitations", headers=h).json] == [
        i["id"] for i in listed.json if i["id"] != pending["id"]]


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
