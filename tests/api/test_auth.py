"""Bearer-token authentication and tenant authorisation.

Every rejected token below is otherwise a valid token of a real member, so a check that
went missing would turn the expected 401/403 into a 200.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import hmac
import json
import socket
import uuid
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from api import create_app
from api.settings import ConfigError
from api.tokens import KEY_REFRESH_INTERVAL
from tests.conftest import app_config, assert_error
from tests.oidc import AUDIENCE, LocalIssuer

CLIENTS = "/api/v1/clients"
MEMBERS = "/api/v1/admin/members"
ONBOARDING = "/api/v1/onboarding/tenants"

HOURS_2 = dt.timedelta(hours=2)


# --- helpers -----------------------------------------------------------------------------


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def numeric(claims: dict[str, Any]) -> dict[str, Any]:
    """Claims with datetimes as NumericDate, for hand-made tokens."""
    return {k: int(v.timestamp()) if isinstance(v, dt.datetime) else v
            for k, v in claims.items()}


def signing_input(header: dict[str, Any], claims: dict[str, Any]) -> bytes:
    parts = (json.dumps(header).encode(), json.dumps(numeric(claims)).encode())
    return ".".join(b64url(p) for p in parts).encode()


def unsigned(claims: dict[str, Any], alg: str = "none") -> str:
    """header.payload. with an empty signature."""
    return signing_input({"alg": alg, "kid": "k1", "typ": "JWT"}, claims).decode() + "."


def hs256(claims: dict[str, Any], secret: bytes, kid: str = "k1") -> str:
    """HS256 by hand: PyJWT refuses to use a PEM public key as an HMAC secret."""
    data = signing_input({"alg": "HS256", "kid": kid, "typ": "JWT"}, claims)
    return f"{data.decode()}.{b64url(hmac.new(secret, data, hashlib.sha256).digest())}"


def rs256(claims: dict[str, Any], key: rsa.RSAPrivateKey, header: dict[str, Any]) -> str:
    """RS256 by hand, for headers PyJWT would refuse to write."""
    data = signing_input({"alg": "RS256", "typ": "JWT", **header}, claims)
    signature = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return f"{data.decode()}.{b64url(signature)}"


@functools.cache
def stranger_key() -> rsa.RSAPrivateKey:
    """An RSA key the issuer never published."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(issuer: LocalIssuer, kid: str = "k1") -> bytes:
    return issuer.keys[kid].public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def member_claims(issuer: LocalIssuer, practice: Any, **overrides: Any) -> dict[str, Any]:
    """Valid claims of the practice's admin; ``overrides`` with None drop a claim."""
    return issuer.claims(practice.admin.sub, tenant=practice.id, role="admin", **overrides)


@pytest.fixture
def build_app(app, database_url, issuer):
    """Build extra apps over the (already migrated) test database; dispose them after."""
    built = []

    def build(**overrides: Any):
        application = create_app(app_config(database_url, issuer, **overrides))
        built.append(application)
        return application

    yield build
    for application in built:
        application.extensions["clinai_db"].dispose()


def tenancy_cli(app, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=["tenancy", *args])


# --- tokens that are not valid -----------------------------------------------------------

Forge = Callable[[LocalIssuer, Any], str]

INVALID_TOKENS: list[tuple[str, Forge, str]] = [
    ("bad_signature_same_kid",
     lambda i, p: i.sign(member_claims(i, p), kid="k1", key=stranger_key()),
     "invalid_token"),
    ("alg_none",
     lambda i, p: unsigned(member_claims(i, p)),
     "invalid_token"),
    ("alg_None_mixed_case",
     lambda i, p: unsigned(member_claims(i, p), alg="None"),
     "invalid_token"),
    ("alg_none_with_a_real_signature",
     lambda i, p: unsigned(member_claims(i, p)) + p.admin.token.rsplit(".", 1)[1],
     "invalid_token"),
    ("hs256_public_key_pem_as_secret",
     lambda i, p: hs256(member_claims(i, p), public_pem(i)),
     "invalid_token"),
    ("hs256_plain_secret",
     lambda i, p: jwt.encode(member_claims(i, p), "a-shared-secret-of-at-least-32-bytes!",
                             algorithm="HS256", headers={"kid": "k1"}),
     "invalid_token"),
    ("expired_2h_ago",
     lambda i, p: i.token(p.admin.sub, tenant=p.id, iat=now() - 3 * HOURS_2,
                          nbf=now() - 3 * HOURS_2, exp=now() - HOURS_2),
     "token_expired"),
    ("expired_just_beyond_leeway",
     lambda i, p: i.token(p.admin.sub, tenant=p.id, iat=now() - HOURS_2,
                          nbf=now() - HOURS_2, exp=now() - dt.timedelta(seconds=90)),
     "token_expired"),
    ("expired_and_bad_signature",  # the signature is checked before expiry is reported
     lambda i, p: i.sign(member_claims(i, p, exp=now() - HOURS_2), key=stranger_key()),
     "invalid_token"),
    ("nbf_2h_in_future",
     lambda i, p: i.token(p.admin.sub, tenant=p.id, nbf=now() + HOURS_2,
                          exp=now() + 2 * HOURS_2),
     "invalid_token"),
    ("iat_2h_in_future",
     lambda i, p: i.token(p.admin.sub, tenant=p.id, iat=now() + HOURS_2,
                          exp=now() + 2 * HOURS_2),
     "invalid_token"),
    ("wrong_issuer",
     lambda i, p: i.token(p.admin.sub, tenant=p.id, iss="https://evil.example/v2.0/"),
     "invalid_token"),
    ("issuer_without_trailing_slash",
     lambda i, p: i.token(p.admin.sub, tenant=p.id, iss=i.issuer.rstrip("/")),
     "invalid_token"),
    ("missing_issuer",
     lambda i, p: i.token(p.admin.sub, tenant=p.id, iss=None),
     "invalid_token"),
    ("wrong_audience",
     lambda i, p: i.token(p.admin.sub, tenant=p.id, aud="api://someone-else"),
     "invalid_token"),
    ("missing_audience",
     lambda i, p: i.token(p.admin.sub, tenant=p.id, aud=None),
     "invalid_token"),
    ("missing_exp",
     lambda i, p: i.token(p.admin.sub, tenant=p.id, exp=None),
     "invalid_token"),
    ("missing_sub",
     lambda i, p: i.sign({k: v for k, v in member_claims(i, p).items() if k != "sub"}),
     "invalid_token"),
    ("unknown_kid",
     lambda i, p: i.sign(member_claims(i, p), kid="nope", key=i.keys["k1"]),
     "invalid_token"),
    ("no_kid",
     lambda i, p: jwt.encode(member_claims(i, p), i.keys["k1"], algorithm="RS256"),
     "invalid_token"),
    ("kid_not_a_string",
     lambda i, p: rs256(member_claims(i, p), i.keys["k1"], {"kid": 1}),
     "invalid_token"),
    ("payload_tampered_after_signing",
     lambda i, p: ".".join([
         i.token(p.admin.sub).split(".")[0],
         signing_input({}, member_claims(i, p)).decode().split(".")[1],
         i.token(p.admin.sub).split(".")[2]]),
     "invalid_token"),
]


# flask-jwt-extended appends JWT_ALGORITHM to JWT_DECODE_ALGORITHMS; the app pins both to
# RS256, so HS256 tokens (incl. the public key PEM used as HMAC secret) are refused with 401.
@pytest.mark.parametrize(("forge", "error"), [
    pytest.param(f, e, id=name) for name, f, e in INVALID_TOKENS
])
def test_invalid_token_is_401(client, issuer, make_practice, forge, error):
    practice = make_practice()
    response = client.get(CLIENTS, headers=bearer(forge(issuer, practice)))
    assert_error(response, 401, error)


@pytest.mark.parametrize(("authorization", "error"), [
    (None, "missing_token"),
    ("", "missing_token"),
    ("Bearer ", "invalid_token"),
    ("Bearer abc", "invalid_token"),
    ("Bearer a.b.c", "invalid_token"),
    ("Bearer a.b", "invalid_token"),
    ("Bearer ..", "invalid_token"),
    ("Bearer one two", "invalid_token"),
    ("Basic Yjpj", "missing_token"),
], ids=["no_header", "empty_header", "empty_bearer", "abc", "a.b.c", "two_segments",
        "empty_segments", "two_tokens", "basic_scheme"])
def test_malformed_authorization_is_401(client, make_practice, authorization, error):
    make_practice()
    headers = {} if authorization is None else {"Authorization": authorization}
    assert_error(client.get(CLIENTS, headers=headers), 401, error)


def test_token_without_bearer_prefix_is_refused(client, make_practice):
    practice = make_practice()
    response = client.get(CLIENTS, headers={"Authorization": practice.admin.token})
    assert_error(response, 401, "missing_token")


# --- tokens that are valid ---------------------------------------------------------------

VALID_TOKENS: list[tuple[str, Forge]] = [
    ("baseline", lambda i, p: p.admin.token),
    ("exp_within_60s_leeway",
     lambda i, p: i.token(p.admin.sub, tenant=p.id, nbf=now() - HOURS_2,
                          iat=now() - HOURS_2, exp=now() - dt.timedelta(seconds=30))),
    ("nbf_within_60s_leeway",
     lambda i, p: i.token(p.admin.sub, tenant=p.id, nbf=now() + dt.timedelta(seconds=30))),
    ("audience_list", lambda i, p: i.token(p.admin.sub, tenant=p.id, aud=["x", AUDIENCE])),
    ("no_role_claim", lambda i, p: i.token(p.admin.sub, tenant=p.id)),
    ("role_claim_understates", lambda i, p: i.token(p.admin.sub, tenant=p.id,
                                                     role="therapist")),
    ("tenant_uuid_without_hyphens", lambda i, p: i.token(p.admin.sub, tenant=p.id.hex)),
    ("oid_is_the_member_sub_is_not",
     lambda i, p: i.token("someone-else-entirely", tenant=p.id, oid=p.admin.sub)),
]


@pytest.mark.parametrize("forge", [f for _, f in VALID_TOKENS],
                         ids=[name for name, _ in VALID_TOKENS])
@pytest.mark.parametrize("path", [CLIENTS, MEMBERS])
def test_valid_token_is_accepted(client, issuer, make_practice, forge, path):
    practice = make_practice()
    response = client.get(path, headers=bearer(forge(issuer, practice)))
    assert response.status_code == 200, response.get_json()
    assert isinstance(response.get_json(), list)


def test_subject_is_oid_not_sub(client, issuer, make_practice):
    """With both claims, oid names the caller: a member's sub next to a stranger's oid fails."""
    practice = make_practice()
    token = issuer.token(practice.admin.sub, tenant=practice.id, oid=f"stranger-{uuid.uuid4()}")
    assert_error(client.get(CLIENTS, headers=bearer(token)), 403, "not_a_member")
    onboarded = client.post(ONBOARDING, json={"name": "Praxis Oid"},
                            headers=bearer(issuer.token("ignored-sub", oid=f"o-{uuid.uuid4()}")))
    assert onboarded.status_code == 201, onboarded.get_json()
    members = client.get(MEMBERS, headers=bearer(issuer.token(
        "ignored-sub", tenant=onboarded.json["id"], oid=None)))
    assert_error(members, 403, "not_a_member")  # the admin is the oid, not "ignored-sub"


@pytest.mark.parametrize("oid", [12345, ["x"]], ids=["int", "list"])
def test_non_string_oid_is_rejected_not_500(build_app, issuer, make_practice, oid):
    practice = make_practice()
    c = build_app(PROPAGATE_EXCEPTIONS=False).test_client()  # what a real client sees
    token = issuer.token(practice.admin.sub, tenant=practice.id, oid=oid)
    assert_error(c.get(CLIENTS, headers=bearer(token)), 401, "invalid_token")


@pytest.mark.parametrize("subject", ["user\x00nul", "user\ud800", "user\nline", "x" * 256],
                         ids=["nul", "lone_surrogate", "control", "too_long"])
def test_unstorable_subject_is_401_not_500(build_app, issuer, make_practice, subject):
    practice = make_practice()
    c = build_app(PROPAGATE_EXCEPTIONS=False).test_client()  # what a real client sees
    token = issuer.token(subject, tenant=practice.id, role="admin")
    assert_error(c.get(CLIENTS, headers=bearer(token)), 401, "invalid_token")
    assert_error(c.post("/api/v1/onboarding/tenants", json={"name": "X"},
                        headers=bearer(token)), 401, "invalid_token")


# --- tenant and membership (403) --------------------------------------------------------

TENANT_CLAIMS: list[tuple[str, Callable[[Any], Any], str]] = [
    ("unknown_uuid", lambda p: uuid.uuid4(), "tenant_unknown"),
    ("not_a_uuid", lambda p: "not-a-uuid", "tenant_unknown"),
    ("uuid_with_junk", lambda p: f"{p.id}; DROP TABLE x", "tenant_unknown"),
    ("a_number", lambda p: 42, "tenant_unknown"),
    ("a_list", lambda p: [str(p.id)], "tenant_unknown"),
    ("absent", lambda p: None, "no_tenant"),
    ("empty_string", lambda p: "", "no_tenant"),
]


@pytest.mark.parametrize(("tenant", "error"), [(t, e) for _, t, e in TENANT_CLAIMS],
                         ids=[name for name, _, _ in TENANT_CLAIMS])
def test_tenant_claim_is_checked(client, issuer, make_practice, tenant, error):
    practice = make_practice()
    claims = member_claims(issuer, practice)
    claims.pop("extension_tenant_id")
    value = tenant(practice)
    if value is not None:
        claims["extension_tenant_id"] = str(value) if isinstance(value, uuid.UUID) else value
    response = client.get(CLIENTS, headers=bearer(issuer.sign(claims)))
    assert_error(response, 403, error)


def test_member_of_another_tenant_is_not_a_member(client, issuer, make_practice):
    mine, theirs = make_practice("Praxis A"), make_practice("Praxis B")
    token = issuer.token(mine.admin.sub, tenant=theirs.id, role="admin")
    assert_error(client.get(CLIENTS, headers=bearer(token)), 403, "not_a_member")
    assert client.get(CLIENTS, headers=theirs.admin.headers).status_code == 200


def test_suspended_tenant_is_refused_until_reactivated(app, client, make_practice):
    practice = make_practice()
    therapist = practice.add_member("therapist")
    assert client.get(CLIENTS, headers=practice.admin.headers).status_code == 200

    suspended = tenancy_cli(app, "suspend", str(practice.id))
    assert suspended.exit_code == 0, suspended.output
    assert "suspended" in suspended.output
    for actor in (practice.admin, therapist):
        assert_error(client.get(CLIENTS, headers=actor.headers), 403, "tenant_inactive")
    assert_error(client.get(MEMBERS, headers=practice.admin.headers), 403, "tenant_inactive")

    activated = tenancy_cli(app, "activate", str(practice.id))
    assert activated.exit_code == 0, activated.output
    assert "active" in activated.output
    for actor in (practice.admin, therapist):
        assert client.get(CLIENTS, headers=actor.headers).status_code == 200


def test_deleted_tenant_is_inactive(client, make_practice, admin_conn):
    practice = make_practice()
    admin_conn.execute("UPDATE public.tenants SET status = 'deleted' WHERE id = %s",
                       (practice.id,))
    assert_error(client.get(CLIENTS, headers=practice.admin.headers), 403, "tenant_inactive")


@pytest.mark.parametrize("args", [
    ["suspend", str(uuid.UUID(int=1))], ["suspend", "not-a-uuid"], ["activate", "x"],
], ids=["unknown_tenant", "bad_uuid", "activate_bad_uuid"])
def test_suspend_cli_refuses_bad_tenant(app, args):
    result = tenancy_cli(app, *args)
    assert result.exit_code != 0, result.output


@pytest.mark.parametrize("role", ["therapist", "admin"])
def test_removed_member_token_stops_working(client, make_practice, role):
    practice = make_practice()
    member = practice.add_member(role)
    path = MEMBERS if role == "admin" else CLIENTS
    assert client.get(path, headers=member.headers).status_code == 200

    removed = client.delete(f"{MEMBERS}/{member.sub}", headers=practice.admin.headers)
    assert removed.status_code == 204, removed.get_json()

    # The same token, still valid for an hour, no longer works.
    assert_error(client.get(path, headers=member.headers), 403, "not_a_member")
    assert_error(client.get(CLIENTS, headers=member.headers), 403, "not_a_member")
    listed = client.get(MEMBERS, headers=practice.admin.headers)
    assert member.sub not in {m["user_id"] for m in listed.json}


@pytest.mark.parametrize(("role_claim", "method", "path", "status"), [
    ("therapist", "get", MEMBERS, 403),
    ("admin", "get", MEMBERS, 403),  # the role claim is not trusted
    ("admin", "post", "/api/v1/admin/invitations", 403),
    ("admin", "get", "/api/v1/admin/audit-events", 403),
    (None, "get", MEMBERS, 403),
    ("therapist", "get", CLIENTS, 200),
    ("admin", "get", CLIENTS, 200),
], ids=["therapist_claim", "forged_admin_claim", "forged_admin_invites",
        "forged_admin_audit", "no_role_claim", "therapist_clients", "forged_admin_clients"])
def test_therapist_role_comes_from_membership(client, issuer, make_practice, role_claim,
                                              method, path, status):
    practice = make_practice()
    therapist = practice.add_member("therapist")
    token = issuer.token(therapist.sub, tenant=practice.id, role=role_claim)
    response = getattr(client, method)(path, headers=bearer(token),
                                       json={"email": "x@example.org", "role": "admin"}
                                       if method == "post" else None)
    if status == 403:
        assert_error(response, 403, "role_forbidden")
    else:
        assert response.status_code == 200, response.get_json()


@pytest.mark.parametrize(("start", "new_role", "members_status"), [
    ("therapist", "admin", 200),
    ("admin", "therapist", 403),
], ids=["promoted", "demoted"])
def test_role_change_takes_effect_with_the_old_token(client, make_practice, start, new_role,
                                                     members_status):
    practice = make_practice()
    member = practice.add_member(start)  # token carries the old role claim
    changed = client.patch(f"{MEMBERS}/{member.sub}", headers=practice.admin.headers,
                           json={"role": new_role})
    assert changed.status_code == 200, changed.get_json()
    assert changed.json["role"] == new_role
    response = client.get(MEMBERS, headers=member.headers)
    if members_status == 403:
        assert_error(response, 403, "role_forbidden")
    else:
        assert response.status_code == 200, response.get_json()


# --- JWKS: rotation, refresh rate limit -------------------------------------------------


def test_rotated_key_is_fetched_on_unknown_kid(build_app, issuer, make_practice):
    practice = make_practice()
    fresh = build_app()
    c = fresh.test_client()
    fetches = issuer.jwks_requests
    assert c.get(CLIENTS, headers=practice.admin.headers).status_code == 200
    assert issuer.jwks_requests == fetches + 1  # the first token loads the key set

    assert "k2" not in issuer.keys
    issuer.add_key("k2")
    rotated = issuer.sign(member_claims(issuer, practice), kid="k2")
    # The last refresh was more than KEY_REFRESH_INTERVAL ago:
    fresh.extensions["clinai_keys"]._fetched_at -= KEY_REFRESH_INTERVAL + 1
    response = c.get(CLIENTS, headers=bearer(rotated))
    assert response.status_code == 200, response.get_json()
    assert issuer.jwks_requests == fetches + 2

    # Both keys are now cached: no further fetches.
    assert c.get(CLIENTS, headers=bearer(rotated)).status_code == 200
    assert c.get(CLIENTS, headers=practice.admin.headers).status_code == 200
    assert issuer.jwks_requests == fetches + 2


def test_key_set_loaded_fresh_includes_new_key(build_app, issuer, make_practice):
    practice = make_practice()
    issuer.add_key("k3")
    c = build_app().test_client()
    token = issuer.sign(member_claims(issuer, practice), kid="k3")
    assert c.get(CLIENTS, headers=bearer(token)).status_code == 200


def test_unknown_kid_refresh_is_rate_limited(build_app, issuer, make_practice):
    practice = make_practice()
    fresh = build_app()
    c = fresh.test_client()
    unknown = issuer.sign(member_claims(issuer, practice), kid="nope", key=issuer.keys["k1"])

    assert c.get(CLIENTS, headers=practice.admin.headers).status_code == 200  # a refresh
    after_refresh = issuer.jwks_requests
    for _ in range(2):
        assert_error(c.get(CLIENTS, headers=bearer(unknown)), 401, "invalid_token")
    assert issuer.jwks_requests - after_refresh <= 1
    assert issuer.jwks_requests == after_refresh  # within 30 s of a refresh: none at all

    # Once the interval has passed, an unknown kid may refresh again -- once.
    fresh.extensions["clinai_keys"]._fetched_at -= KEY_REFRESH_INTERVAL + 1
    for _ in range(3):
        assert_error(c.get(CLIENTS, headers=bearer(unknown)), 401, "invalid_token")
    assert issuer.jwks_requests == after_refresh + 1


def test_unknown_kid_on_cold_cache_fetches_once(build_app, issuer, make_practice):
    practice = make_practice()
    c = build_app().test_client()
    unknown = issuer.sign(member_claims(issuer, practice), kid="nope", key=issuer.keys["k1"])
    before = issuer.jwks_requests
    for _ in range(2):
        assert_error(c.get(CLIENTS, headers=bearer(unknown)), 401, "invalid_token")
    assert issuer.jwks_requests == before + 1
    # The fetched set is usable: a known kid needs no further fetch.
    assert c.get(CLIENTS, headers=practice.admin.headers).status_code == 200
    assert issuer.jwks_requests == before + 1


def test_withdrawn_key_stops_being_trusted(build_app, issuer, make_practice):
    practice = make_practice()
    issuer.add_key("withdrawn")
    fresh = build_app()
    c = fresh.test_client()
    token = issuer.sign(member_claims(issuer, practice), kid="withdrawn")
    assert c.get(CLIENTS, headers=bearer(token)).status_code == 200
    issuer.keys.pop("withdrawn")  # the issuer revokes the key
    fresh.extensions["clinai_keys"]._fetched_at -= 24 * 3600  # a day later
    assert_error(c.get(CLIENTS, headers=bearer(token)), 401, "invalid_token")


def test_identity_provider_down_is_503(build_app, make_practice):
    practice = make_practice()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = build_app(AUTH_OIDC_METADATA_URL=f"http://127.0.0.1:{port}/.well-known/x").test_client()
    assert_error(c.get(CLIENTS, headers=practice.admin.headers), 503,
                 "identity_provider_unavailable")


# --- settings ----------------------------------------------------------------------------

SETTINGS: list[tuple[str, dict[str, Any], str | None]] = [
    ("production_without_metadata", {"APP_ENV": "production", "AUTH_OIDC_METADATA_URL": None},
     "AUTH_OIDC_METADATA_URL is not set"),
    ("test_without_metadata", {"APP_ENV": "test", "AUTH_OIDC_METADATA_URL": None},
     "AUTH_OIDC_METADATA_URL is not set"),
    ("plain_http_remote", {"APP_ENV": "production",
                           "AUTH_OIDC_METADATA_URL": "http://example.com/x"}, "must be https"),
    ("http_localhost_lookalike", {"AUTH_OIDC_METADATA_URL": "http://localhost.example.com/x"},
     "must be https"),
    ("http_userinfo_trick", {"AUTH_OIDC_METADATA_URL": "http://127.0.0.1@example.com/x"},
     "must be https"),
    ("ftp_scheme", {"AUTH_OIDC_METADATA_URL": "ftp://example.com/x"}, "must be https"),
    ("https_without_audience", {"AUTH_OIDC_METADATA_URL": "https://login.example.com/x",
                                "AUTH_AUDIENCE": None}, "AUTH_AUDIENCE is required"),
    ("no_database", {"DATABASE_URL": None}, "DATABASE_URL"),
    ("https_remote", {"APP_ENV": "production",
                      "AUTH_OIDC_METADATA_URL": "https://login.example.com/.well-known/x",
                      "AZURE_OPENAI_ENDPOINT": "https://clinai.openai.azure.com"}, None),
    ("production_without_llm_endpoint", {
        "APP_ENV": "production",
        "AUTH_OIDC_METADATA_URL": "https://login.example.com/.well-known/x"},
     "AZURE_OPENAI_ENDPOINT is not set"),
    ("http_loopback_v4", {"AUTH_OIDC_METADATA_URL": "http://127.0.0.1:1/x"}, None),
    ("http_loopback_name", {"AUTH_OIDC_METADATA_URL": "http://localhost:1/x"}, None),
    ("http_loopback_v6", {"AUTH_OIDC_METADATA_URL": "http://[::1]:1/x"}, None),
]


@pytest.mark.parametrize(("overrides", "refusal"), [(o, r) for _, o, r in SETTINGS],
                         ids=[name for name, _, _ in SETTINGS])
def test_settings_validation(app, database_url, issuer, overrides, refusal):
    config = app_config(database_url, issuer, **overrides)
    if refusal is not None:
        with pytest.raises(ConfigError, match=refusal):
            create_app(config)
        return
    created = create_app(config)  # no metadata fetch at create time
    try:
        assert created.extensions["clinai_keys"].metadata_url == overrides[
            "AUTH_OIDC_METADATA_URL"]
        assert "clinai_dev_issuer" not in created.extensions
    finally:
        created.extensions["clinai_db"].dispose()


def test_no_fetch_at_create_time(app, database_url, issuer):
    before = issuer.jwks_requests
    created = create_app(app_config(database_url, issuer))
    try:
        assert issuer.jwks_requests == before
    finally:
        created.extensions["clinai_db"].dispose()


# --- development issuer -----------------------------------------------------------------


def dev_token(application, *args: str) -> Any:
    return application.test_cli_runner().invoke(args=["dev", "token", *args])


def test_dev_token_is_accepted_by_the_development_app(build_app, client, issuer):
    dev = build_app(APP_ENV="development", AUTH_OIDC_METADATA_URL=None)
    assert "clinai_dev_issuer" in dev.extensions
    sub = f"alice-{uuid.uuid4()}"
    minted = dev_token(dev, "--sub", sub)
    assert minted.exit_code == 0, minted.output
    token = minted.output.strip()
    assert token.count(".") == 2
    assert jwt.get_unverified_header(token)["alg"] == "RS256"

    c = dev.test_client()
    created = c.post(ONBOARDING, json={"name": "Praxis Dev"}, headers=bearer(token))
    assert created.status_code == 201, created.get_json()
    assert created.json["role"] == "admin"

    tenant_token = dev_token(dev, "--sub", sub, "--tenant", created.json["id"],
                             "--role", "admin")
    assert tenant_token.exit_code == 0, tenant_token.output
    members = c.get(MEMBERS, headers=bearer(tenant_token.output.strip()))
    assert members.status_code == 200, members.get_json()
    assert [m["user_id"] for m in members.json] == [sub]

    # Development tokens mean nothing to an app that trusts a real issuer, and vice versa.
    assert_error(client.get(MEMBERS, headers=bearer(tenant_token.output.strip())), 401,
                 "invalid_token")
    oidc = issuer.token(sub, tenant=created.json["id"], role="admin")
    assert_error(c.get(MEMBERS, headers=bearer(oidc)), 401, "invalid_token")


@pytest.mark.parametrize("overrides", [
    {"APP_ENV": "production", "AZURE_OPENAI_ENDPOINT": "https://clinai.openai.azure.com"},
    {"APP_ENV": "test"},
    {"APP_ENV": "development"},  # with AUTH_OIDC_METADATA_URL set: no dev issuer
], ids=["production", "test", "development_with_oidc"])
def test_dev_token_refused_outside_development(build_app, overrides):
    application = build_app(**overrides)
    result = dev_token(application, "--sub", "alice")
    assert result.exit_code != 0
    assert "APP_ENV=development" in result.output
    assert "eyJ" not in result.output  # no token printed
