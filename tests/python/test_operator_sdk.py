"""The real `uid2 serve`, driven by the official Python SDK (`uid2-client` from PyPI).

Publisher generate/refresh, bidstream and sharing decryption, identity map v2/v3 agreeing on the
raw UID, the special test identities, auth failures, validate/logout/opt-out status through the
SDK's envelope helpers, and the legacy v1 endpoints over plain HTTP.
"""

import base64
import datetime as dt
import json
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest
from uid2_client import (
    BidstreamClient,
    DecryptionStatus,
    IdentityMapClient,
    IdentityMapInput,
    IdentityMapV3Client,
    IdentityMapV3Input,
    SharingClient,
    TokenGenerateInput,
    Uid2PublisherClient,
)
from uid2_client.input_util import normalize_and_hash_email
from uid2_client.request_response_util import auth_headers, create_envelope, make_request, parse_response

UTC = dt.timezone.utc


def unique_email():
    return f"user-{uuid.uuid4().hex[:12]}@example.com"


def publisher(op):
    return Uid2PublisherClient(op.url, op.publisher["key"], op.publisher["secret"])


def call(op, client, path, payload=None):
    """An envelope request with the SDK's own helpers; returns the decrypted JSON."""
    secret = base64.b64decode(client["secret"])
    data = json.dumps(payload).encode() if payload is not None else None
    envelope = create_envelope(secret, dt.datetime.now(tz=UTC), data)
    response = make_request(op.url, path, auth_headers(client["key"]), envelope)
    return json.loads(parse_response(secret, response, envelope.nonce))


def http(op, method, path, body=None, headers=None):
    """A plain HTTP request; returns (status, body bytes, headers)."""
    req = urllib.request.Request(op.url + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers


def test_generate_refresh_decrypt_and_map_agree_on_the_raw_uid(operator):
    email = unique_email()
    generated = publisher(operator).generate_token(TokenGenerateInput.from_email(email))
    assert generated.is_success()
    identity = generated.get_identity()
    assert identity.get_advertising_token().startswith("A4")
    assert len(identity.get_refresh_token()) == 388
    assert len(base64.b64decode(identity.get_refresh_response_key())) == 32
    assert identity.get_identity_expires() > identity.get_refresh_from()
    assert identity.get_refresh_expires() >= identity.get_identity_expires()

    refreshed = publisher(operator).refresh_token(identity)
    assert refreshed.is_success()
    new_token = refreshed.get_identity().get_advertising_token()
    assert new_token != identity.get_advertising_token()

    bidstream = BidstreamClient(operator.url, operator.dsp["key"], operator.dsp["secret"])
    assert bidstream.refresh().success
    from_bidstream = bidstream.decrypt_token_into_raw_uid(new_token, "localhost")
    assert from_bidstream.status == DecryptionStatus.SUCCESS, from_bidstream.status
    assert from_bidstream.site_id == 1001

    sharing = SharingClient(operator.url, operator.sharer["key"], operator.sharer["secret"])
    assert sharing.refresh().success
    from_sharing = sharing.decrypt_token_into_raw_uid(identity.get_advertising_token())
    assert from_sharing.status == DecryptionStatus.SUCCESS
    assert from_sharing.uid == from_bidstream.uid

    v2 = IdentityMapClient(operator.url, operator.advertiser["key"], operator.advertiser["secret"])
    mapped = v2.generate_identity_map(IdentityMapInput.from_emails([email]))
    assert mapped.mapped_identities[email].get_raw_uid() == from_bidstream.uid
    assert mapped.mapped_identities[email].get_bucket_id().startswith("b")

    v3 = IdentityMapV3Client(operator.url, operator.advertiser["key"], operator.advertiser["secret"])
    mapped3 = v3.generate_identity_map(IdentityMapV3Input.from_emails([email]))
    assert mapped3.mapped_identities[email].current_raw_uid == from_bidstream.uid
    assert mapped3.mapped_identities[email].refresh_from > dt.datetime.now(tz=UTC)

    # Hashed input maps to the same raw UID as the raw email.
    hashed = normalize_and_hash_email(email)
    by_hash = v2.generate_identity_map(IdentityMapInput.from_hashed_emails([hashed]))
    assert by_hash.mapped_identities[hashed].get_raw_uid() == from_bidstream.uid


def test_sharing_client_encrypts_tokens_the_bidstream_client_cannot_read_but_it_can(operator):
    sharing = SharingClient(operator.url, operator.sharer["key"], operator.sharer["secret"])
    assert sharing.refresh().success
    raw_uid = base64.b64encode(bytes(range(32))).decode()
    shared = sharing.encrypt_raw_uid_into_token(raw_uid)
    assert shared.success, shared.status
    assert sharing.decrypt_token_into_raw_uid(shared.encrypted_data).uid == raw_uid


def test_phone_and_hashed_inputs(operator):
    client = publisher(operator)
    for make in (lambda: TokenGenerateInput.from_phone("+15551234567"),
                 lambda: TokenGenerateInput.from_hashed_email(normalize_and_hash_email(unique_email()))):
        response = client.generate_token(make())
        assert response.is_success()
    phone = client.generate_token(TokenGenerateInput.from_phone("+15551234567")).get_identity()
    assert phone.get_advertising_token().startswith("B4")


@pytest.mark.parametrize("identity,generate_optout,refresh_optout", [
    ("optout@example.com", True, None),
    ("+00000000000", True, None),
    ("refresh-optout@example.com", False, True),
    ("+00000000002", False, True),
    ("validate@example.com", False, False),
    ("+12345678901", False, False),
])
def test_special_identities(operator, identity, generate_optout, refresh_optout):
    make = TokenGenerateInput.from_phone if identity.startswith("+") else TokenGenerateInput.from_email
    generated = publisher(operator).generate_token(make(identity))
    assert generated.is_optout() == generate_optout
    if generate_optout:
        return
    refreshed = publisher(operator).refresh_token(generated.get_identity())
    assert refreshed.is_optout() == refresh_optout
    assert refreshed.is_success() == (not refresh_optout)


def test_wrong_key_is_401_and_wrong_secret_is_400(operator):
    wrong_key = Uid2PublisherClient(operator.url, "UID2-C-L-1001-nosuch.key", operator.publisher["secret"])
    with pytest.raises(urllib.error.HTTPError) as e:
        wrong_key.generate_token(TokenGenerateInput.from_email(unique_email()))
    assert e.value.code == 401
    assert json.loads(e.value.read()) == {"status": "unauthorized"}

    wrong_secret = Uid2PublisherClient(operator.url, operator.publisher["key"], base64.b64encode(b"\1" * 32).decode())
    with pytest.raises(urllib.error.HTTPError) as e:
        wrong_secret.generate_token(TokenGenerateInput.from_email(unique_email()))
    assert e.value.code == 400
    body = json.loads(e.value.read())
    assert body["status"] == "client_error"
    assert "ClientSecret" in body["message"]

    # A client without the role is refused like an unknown one.
    dsp_as_publisher = Uid2PublisherClient(operator.url, operator.dsp["key"], operator.dsp["secret"])
    with pytest.raises(urllib.error.HTTPError) as e:
        dsp_as_publisher.generate_token(TokenGenerateInput.from_email(unique_email()))
    assert e.value.code == 401


def test_validate(operator):
    email = unique_email()
    token = publisher(operator).generate_token(TokenGenerateInput.from_email(email)).get_identity().get_advertising_token()
    assert call(operator, operator.publisher, "/v2/token/validate", {"token": token, "email": email}) == \
        {"status": "success", "body": True}
    assert call(operator, operator.publisher, "/v2/token/validate", {"token": token, "email": unique_email()}) == \
        {"status": "success", "body": False}


def test_logout_opts_out_everywhere(operator):
    email = unique_email()
    before = publisher(operator).generate_token(TokenGenerateInput.from_email(email)).get_identity()
    raw_uid = IdentityMapClient(operator.url, operator.advertiser["key"], operator.advertiser["secret"]) \
        .generate_identity_map(IdentityMapInput.from_emails([email])).mapped_identities[email].get_raw_uid()

    # Only the OPTOUT role may log out.
    with pytest.raises(urllib.error.HTTPError) as e:
        call(operator, operator.publisher, "/v2/token/logout", {"email": email})
    assert e.value.code == 401
    assert call(operator, operator.optout_portal, "/v2/token/logout", {"email": email}) == \
        {"status": "success", "body": {"optout": "OK"}}

    assert publisher(operator).generate_token(TokenGenerateInput.from_email(email)).is_optout()
    assert publisher(operator).refresh_token(before).is_optout()
    mapped = IdentityMapClient(operator.url, operator.advertiser["key"], operator.advertiser["secret"]) \
        .generate_identity_map(IdentityMapInput.from_emails([email]))
    assert mapped.unmapped_identities[email].get_reason() == "optout"
    v3 = IdentityMapV3Client(operator.url, operator.advertiser["key"], operator.advertiser["secret"]) \
        .generate_identity_map(IdentityMapV3Input.from_emails([email]))
    assert v3.unmapped_identities[email].raw_reason == "optout"

    status = call(operator, operator.advertiser, "/v2/optout/status",
                  {"advertising_ids": [raw_uid, base64.b64encode(b"\0" * 32).decode()]})
    assert status["status"] == "success"
    assert [o["advertising_id"] for o in status["body"]["opted_out"]] == [raw_uid]
    assert status["body"]["opted_out"][0]["opted_out_since"] % 1000 == 0


def test_cli_optout_reaches_the_running_operator(operator):
    email = unique_email()
    identity = publisher(operator).generate_token(TokenGenerateInput.from_email(email)).get_identity()
    operator.cli("optout", "add", "--email", email)
    # The operator polls the store every 250 ms; allow a few sync rounds.
    import time
    deadline = time.time() + 5
    while time.time() < deadline:
        if publisher(operator).refresh_token(identity).is_optout():
            break
        time.sleep(0.1)
    assert publisher(operator).refresh_token(identity).is_optout()


def test_a_base_url_with_a_trailing_slash_works(operator):
    # The SDKs join base_url + "/v2/…", so this base URL asks for "//v2/…"; the official
    # operator routes it (Vert.x normalises paths), and so must we.
    base = operator.url + "/"
    generated = Uid2PublisherClient(base, operator.publisher["key"], operator.publisher["secret"]).generate_token(
        TokenGenerateInput.from_email(unique_email())
    )
    assert generated.is_success()
    bidstream = BidstreamClient(base, operator.dsp["key"], operator.dsp["secret"])
    assert bidstream.refresh().success
    decrypted = bidstream.decrypt_token_into_raw_uid(generated.get_identity().get_advertising_token(), "localhost")
    assert decrypted.status == DecryptionStatus.SUCCESS, decrypted.status


def test_buckets(operator):
    client = IdentityMapClient(operator.url, operator.advertiser["key"], operator.advertiser["secret"])
    all_buckets = client.get_identity_buckets(dt.datetime(2000, 1, 1, tzinfo=UTC))
    assert len(all_buckets.buckets) == 4096
    assert all(b.get_bucket_id().startswith("b") for b in all_buckets.buckets[:10])
    future = client.get_identity_buckets(dt.datetime.now(tz=UTC) + dt.timedelta(days=1))
    assert future.buckets == []


def test_key_endpoints_shapes(operator):
    sharing = call(operator, operator.sharer, "/v2/key/sharing")["body"]
    assert sharing["caller_site_id"] == 1001
    assert sharing["master_keyset_id"] == 9999999
    assert isinstance(sharing["token_expiry_seconds"], str)
    assert sharing["default_keyset_id"] is not None
    assert any(k.get("keyset_id") == 9999999 for k in sharing["keys"])
    assert [k["id"] for k in sharing["keys"]] == sorted(k["id"] for k in sharing["keys"])
    bidstream = call(operator, operator.dsp, "/v2/key/bidstream")["body"]
    assert bidstream["max_bidstream_lifetime_seconds"] == 259200 + 10
    assert all("keyset_id" not in k for k in bidstream["keys"])
    assert {"id": 1001, "domain_names": ["localhost"]} in bidstream["site_data"]
    # Refresh keys never leave the operator: the key id inside a refresh token (bytes 2..6 of the
    # bare v1 token, bytes 1..5 of the v2 wrapper) is in neither key list.
    auth = {"Authorization": "Bearer " + operator.publisher["key"]}
    _, body, _ = http(operator, "GET", "/v1/token/generate?email=" + urllib.parse.quote(unique_email()), headers=auth)
    bare = base64.b64decode(json.loads(body)["body"]["refresh_token"])
    wrapper = base64.b64decode(publisher(operator).generate_token(
        TokenGenerateInput.from_email(unique_email())).get_identity().get_refresh_token())
    refresh_key_ids = {int.from_bytes(bare[2:6], "big"), int.from_bytes(wrapper[1:5], "big")}
    handed_out = {k["id"] for k in bidstream["keys"]} | {k["id"] for k in sharing["keys"]}
    assert refresh_key_ids and not refresh_key_ids & handed_out


def test_legacy_v1_endpoints(operator):
    auth = {"Authorization": "Bearer " + operator.publisher["key"]}
    email = unique_email()
    status, body, _ = http(operator, "GET", "/v1/token/generate?" + urllib.parse.urlencode({"email": email}), headers=auth)
    assert status == 200
    generated = json.loads(body)
    assert generated["status"] == "success"
    identity = generated["body"]
    assert "refresh_response_key" not in identity
    assert len(identity["refresh_token"]) == 168

    # v1 generate checks opt-outs as v2 does (upstream's v1 minted tokens for opted-out users).
    status, body, _ = http(operator, "GET", "/v1/token/generate?email=optout%40example.com", headers=auth)
    assert status == 200 and json.loads(body) == {"status": "optout"}
    # The v1 refresh of an identity that opted out after it was issued.
    status, body, _ = http(operator, "GET", "/v1/token/generate?email=refresh-optout%40example.com", headers=auth)
    refresh_optout_identity = json.loads(body)["body"]
    status, body, _ = http(operator, "GET", "/v1/token/refresh?" + urllib.parse.urlencode(
        {"refresh_token": refresh_optout_identity["refresh_token"]}))
    assert json.loads(body) == {"status": "optout"}

    status, body, _ = http(operator, "GET", "/v1/token/refresh?" + urllib.parse.urlencode(
        {"refresh_token": identity["refresh_token"]}))
    assert status == 200 and json.loads(body)["status"] == "success"

    status, body, _ = http(operator, "GET", "/v1/token/validate?" + urllib.parse.urlencode(
        {"token": identity["advertising_token"], "email": email}))
    assert json.loads(body) == {"status": "success", "body": False}  # v1 validated only the test identity
    status, body, _ = http(operator, "GET", "/v1/token/generate?email=validate%40example.com", headers=auth)
    validate_token = json.loads(body)["body"]["advertising_token"]
    status, body, _ = http(operator, "GET", "/v1/token/validate?" + urllib.parse.urlencode(
        {"token": validate_token, "email": "validate@example.com"}))
    assert json.loads(body) == {"status": "success", "body": True}

    mapper = {"Authorization": "Bearer " + operator.advertiser["key"]}
    status, body, _ = http(operator, "GET", "/v1/identity/map?" + urllib.parse.urlencode({"email": email}), headers=mapper)
    one = json.loads(body)["body"]
    assert one["identifier"] == email
    status, body, _ = http(operator, "POST", "/v1/identity/map", json.dumps({"email": [email]}).encode(), mapper)
    many = json.loads(body)["body"]
    assert many["mapped"][0]["advertising_id"] == one["advertising_id"]

    status, body, _ = http(operator, "GET", "/v1/token/generate?email=" + email)
    assert status == 401


def test_browser_refresh_without_api_key_and_cors(operator):
    identity = publisher(operator).generate_token(TokenGenerateInput.from_email(unique_email())).get_identity()
    status, body, headers = http(operator, "POST", "/v2/token/refresh?client=uid2-rs-sdk-0.1.0",
                                 identity.get_refresh_token().encode(),
                                 {"Content-Type": "text/plain", "Origin": "https://publisher.example"})
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == "https://publisher.example"
    key = base64.b64decode(identity.get_refresh_response_key())
    from uid2_client.encryption import _decrypt_gcm
    assert json.loads(_decrypt_gcm(base64.b64decode(body), key))["status"] == "success"

    status, body, headers = http(operator, "POST", "/v2/token/refresh", b"A" * 168,
                                 {"Origin": "https://publisher.example"})
    assert status == 400
    assert json.loads(body) == {"status": "error", "message": "Error refreshing token"}
    assert headers["Access-Control-Allow-Origin"] == "https://publisher.example"

    # With an API key, the same junk is invalid_token.
    status, body, _ = http(operator, "POST", "/v2/token/refresh", b"A" * 168,
                           {"Authorization": "Bearer " + operator.publisher["key"]})
    assert status == 400 and json.loads(body)["status"] == "invalid_token"


def test_refresh_of_an_expired_token_is_expired_token():
    from conftest import standard_operator
    op = standard_operator(serve_args=["--identity-token-expires-after", "1", "--refresh-token-expires-after", "1",
                                       "--refresh-identity-token-after", "1"])
    try:
        identity = publisher(op).generate_token(TokenGenerateInput.from_email(unique_email())).get_identity()
        import time
        time.sleep(2.1)
        auth = {"Authorization": "Bearer " + op.publisher["key"]}
        status, body, _ = http(op, "POST", "/v2/token/refresh", identity.get_refresh_token().encode(), auth)
        assert status == 400 and json.loads(body)["status"] == "expired_token"
        status, body, _ = http(op, "POST", "/v2/token/refresh", identity.get_refresh_token().encode())
        assert status == 400 and json.loads(body)["status"] == "error"
    finally:
        op.stop()
