"""The Azure AD B2C API connector: POST /api/v1/b2c/claims behind HTTP Basic auth."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import pytest

from api import create_app
from tests.conftest import app_config, assert_error

CLAIMS = "/api/v1/b2c/claims"
USERNAME, PASSWORD = "b2c", "connector-secret"
CONTINUE = {"version": "1.0.0", "action": "Continue"}


def basic(username: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


GOOD = basic(USERNAME, PASSWORD)


def b2c_body(object_id: str | None) -> dict[str, Any]:
    """What B2C sends at PreTokenIssuance: many attributes, only objectId matters."""
    body: dict[str, Any] = {
        "email": "someone@example.org",
        "identities": [{"signInType": "federated", "issuer": "facebook.com",
                        "issuerAssignedId": "0123456789"}],
        "displayName": "Some One",
        "step": "PreTokenIssuance",
        "client_id": "00000000-0000-0000-0000-000000000000",
        "ui_locales": "de-DE",
    }
    if object_id is not None:
        body["objectId"] = object_id
    return body


# --- authentication ----------------------------------------------------------------------

UNAUTHORISED: list[tuple[str, dict[str, str], Any]] = [
    ("no_auth", {}, b2c_body("x")),
    ("wrong_password", basic(USERNAME, "wrong"), b2c_body("x")),
    ("password_prefix", basic(USERNAME, PASSWORD[:-1]), b2c_body("x")),
    ("password_with_suffix", basic(USERNAME, PASSWORD + "x"), b2c_body("x")),
    ("wrong_username", basic("admin", PASSWORD), b2c_body("x")),
    ("swapped", basic(PASSWORD, USERNAME), b2c_body("x")),
    ("empty_credentials", basic("", ""), b2c_body("x")),
    ("username_only", {"Authorization": "Basic " + base64.b64encode(b"b2c").decode()},
     b2c_body("x")),
    ("bearer_scheme", {"Authorization": "Bearer connector-secret"}, b2c_body("x")),
    ("garbage_basic", {"Authorization": "Basic !!!not-base64!!!"}, b2c_body("x")),
    ("bad_creds_bad_body", basic(USERNAME, "wrong"), {"nothing": "useful"}),
    ("no_auth_no_objectid", {}, b2c_body(None)),
    ("no_auth_not_json", {}, "not json at all"),
]


@pytest.mark.parametrize(("headers", "body"), [
    pytest.param(h, b, id=name) for name, h, b in UNAUTHORISED
])
def test_bad_credentials_are_401_before_the_body_is_read(client, headers, body):
    if isinstance(body, str):
        response = client.post(CLAIMS, headers={**headers, "Content-Type": "application/json"},
                               data=body)
    else:
        response = client.post(CLAIMS, headers=headers, json=body)
    assert_error(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"] == 'Basic realm="b2c-connector"'


@pytest.mark.parametrize("overrides", [
    {"B2C_CONNECTOR_PASSWORD": None},
    {"B2C_CONNECTOR_USERNAME": None},
    {"B2C_CONNECTOR_PASSWORD": ""},
], ids=["no_password", "no_username", "empty_password"])
def test_unconfigured_connector_is_503(app, database_url, issuer, overrides):
    unconfigured = create_app(app_config(database_url, issuer, **overrides))
    try:
        # Even an empty username/password pair must not match an unset secret.
        for headers in (basic(USERNAME, PASSWORD), basic("", ""), {}):
            response = unconfigured.test_client().post(CLAIMS, headers=headers,
                                                       json=b2c_body("x"))
            assert_error(response, 503, "connector_not_configured")
            assert "not configured" in response.json["message"]
    finally:
        unconfigured.extensions["clinai_db"].dispose()


# --- claims ------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["admin", "therapist"])
def test_member_gets_tenant_and_role_claims(client, make_practice, role):
    practice = make_practice()
    member = practice.admin if role == "admin" else practice.add_member(role)
    response = client.post(CLAIMS, headers=GOOD, json=b2c_body(member.sub))
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {
        **CONTINUE,
        "extension_tenant_id": str(practice.id),
        "extension_role": role,
    }


def test_claims_follow_the_current_role(client, make_practice):
    practice = make_practice()
    member = practice.add_member("therapist")
    promoted = client.patch(f"/api/v1/admin/members/{member.sub}",
                            headers=practice.admin.headers, json={"role": "admin"})
    assert promoted.status_code == 200, promoted.get_json()
    response = client.post(CLAIMS, headers=GOOD, json=b2c_body(member.sub))
    assert response.get_json()["extension_role"] == "admin"


@pytest.mark.parametrize("object_id", [
    str(uuid.uuid4()),
    "x" * 255,
    "' OR '1'='1",
    "%",
], ids=["unknown_uuid", "max_length", "sql_quote", "like_wildcard"])
def test_non_member_gets_no_claims(client, make_practice, object_id):
    make_practice()  # somebody is a member; this caller is not
    response = client.post(CLAIMS, headers=GOOD, json=b2c_body(object_id))
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == CONTINUE


def test_suspended_tenant_member_gets_no_claims(app, client, make_practice):
    practice = make_practice()
    therapist = practice.add_member("therapist")
    runner = app.test_cli_runner()
    suspended = runner.invoke(args=["tenancy", "suspend", str(practice.id)])
    assert suspended.exit_code == 0, suspended.output
    for sub in (practice.admin.sub, therapist.sub):
        response = client.post(CLAIMS, headers=GOOD, json=b2c_body(sub))
        assert response.status_code == 200, response.get_json()
        assert response.get_json() == CONTINUE

    activated = runner.invoke(args=["tenancy", "activate", str(practice.id)])
    assert activated.exit_code == 0, activated.output
    response = client.post(CLAIMS, headers=GOOD, json=b2c_body(practice.admin.sub))
    assert response.get_json() == {**CONTINUE, "extension_tenant_id": str(practice.id),
                                   "extension_role": "admin"}


def test_removed_member_gets_no_claims(client, make_practice):
    practice = make_practice()
    therapist = practice.add_member("therapist")
    removed = client.delete(f"/api/v1/admin/members/{therapist.sub}",
                            headers=practice.admin.headers)
    assert removed.status_code == 204, removed.get_json()
    response = client.post(CLAIMS, headers=GOOD, json=b2c_body(therapist.sub))
    assert response.get_json() == CONTINUE


# --- validation (credentials are good) --------------------------------------------------

INVALID_BODIES: list[tuple[str, Any]] = [
    ("missing_objectid", b2c_body(None)),
    ("empty_objectid", b2c_body("")),
    ("objectid_too_long", b2c_body("x" * 256)),
    ("objectid_number", {**b2c_body(None), "objectId": 42}),
    ("objectid_null", {**b2c_body(None), "objectId": None}),
    ("empty_object", {}),
]


@pytest.mark.parametrize("body", [pytest.param(b, id=name) for name, b in INVALID_BODIES])
def test_invalid_body_with_good_credentials_is_422(client, body):
    response = client.post(CLAIMS, headers=GOOD, json=body)
    error = assert_error(response, 422, "validation_failed")
    assert "objectId" in str(error.get("errors")), error
    assert "extension_tenant_id" not in response.get_data(as_text=True)
