"""Tokens, key responses and envelopes cross between `uid2-proto` and the official Python SDK.

Tokens minted by the SDK's own `UID2TokenGenerator` decode in Rust; tokens and key-endpoint JSON
made in Rust decrypt with the SDK's `BidstreamClient`, `SharingClient` and `decrypt_token`;
envelopes sealed by the SDK open in Rust and the reverse.
"""

import base64
import datetime as dt
import json
import os

import pytest
from uid2_client import (
    BidstreamClient,
    DecryptionStatus,
    EncryptionKey,
    EncryptionKeysCollection,
    IdentityScope,
    SharingClient,
    Uid2Response,
    UID2TokenGenerator,
    decrypt_token,
)
from uid2_client.client_type import ClientType
from uid2_client.encryption import _decrypt_gcm
from uid2_client.request_response_util import create_envelope, parse_response
from uid2_client.uid2_token_generator import Params

UTC = dt.timezone.utc
NOW = dt.datetime.now(tz=UTC).replace(microsecond=0)
FAR = dt.datetime(2100, 1, 1, tzinfo=UTC)
PAST = dt.datetime(2020, 1, 1, tzinfo=UTC)

MASTER_SECRET = base64.b64decode("iyXxrRJcJOilqBcSJsN7XKCIuShbraXdqBCppCaLCJs=")
SITE_SECRET = base64.b64decode("IPsHwoSa+lbKdGgdg8CL1zCkC0HibqcObDP+fUEYF4U=")
MASTER = EncryptionKey(164, -1, PAST, PAST, FAR, MASTER_SECRET, keyset_id=9999999)
SITE = EncryptionKey(165, 9000, PAST, PAST, FAR, SITE_SECRET, keyset_id=99999)

# Raw UIDs: a 32-byte v2 one, and 33-byte v3 ones for UID2 email/phone and EUID email/phone.
RAW_UIDS = {
    (IdentityScope.UID2, 0): ["ywsvDNINiZOVSsfkHpLpSJzXzhr6Jx9Z/4Q0+lsEUvM=", "AKCoNGWPYng/whjBIwANJHKvvGlGyzARtDIAk95FlJyb"],
    (IdentityScope.UID2, 1): ["BEOGxroPLdcY7LrSiwjY52+X05V0ryELpJmoWAyXiwbZ"],
    (IdentityScope.EUID, 0): ["EKCoNGWPYng/whjBIwANJHKvvGlGyzARtDIAk95FlJyb"],
    (IdentityScope.EUID, 1): ["FEOGxroPLdcY7LrSiwjY52+X05V0ryELpJmoWAyXiwbZ"],
}


def ms(t):
    return int(t.timestamp() * 1000)


def rust_keys():
    """The same two keys as bridge JSON (times in seconds)."""
    return [
        {"id": 164, "site_id": -1, "keyset_id": 9999999, "created": ms(PAST) // 1000, "activates": ms(PAST) // 1000,
         "expires": ms(FAR) // 1000, "secret": base64.b64encode(MASTER_SECRET).decode()},
        {"id": 165, "site_id": 9000, "keyset_id": 99999, "created": ms(PAST) // 1000, "activates": ms(PAST) // 1000,
         "expires": ms(FAR) // 1000, "secret": base64.b64encode(SITE_SECRET).decode()},
    ]


# v2 tokens only ever carried UID2 email identities.
TOKEN_CASES = [(2, (IdentityScope.UID2, 0))] + [(v, st) for v in (3, 4) for st in RAW_UIDS]


@pytest.mark.parametrize("version,scope_and_type", TOKEN_CASES)
def test_sdk_minted_tokens_decode_in_rust(bridge, version, scope_and_type):
    scope, identity_type = scope_and_type
    for raw_uid in RAW_UIDS[scope_and_type]:
        established = NOW - dt.timedelta(days=3)
        expires = NOW + dt.timedelta(hours=1)
        params = Params(expiry=expires, identity_scope=scope.value, token_generated=NOW, identity_established=established)
        if version == 2:
            token = UID2TokenGenerator.generate_uid2_token_v2(raw_uid, MASTER, 9000, SITE, params)
        elif version == 3:
            token = UID2TokenGenerator.generate_uid2_token_v3(raw_uid, MASTER, 9000, SITE, params)
        else:
            token = UID2TokenGenerator.generate_uid2_token_v4(raw_uid, MASTER, 9000, SITE, params)

        out = bridge(op="decode_token", token=token, keys=rust_keys(), now_ms=ms(NOW))
        assert "error" not in out, out
        assert out["version"] == {2: 2, 3: 112, 4: 128}[version]
        assert out["raw_uid"] == raw_uid
        assert out["site_id"] == 9000
        assert out["site_key_id"] == 165
        assert out["expires_ms"] == ms(expires)
        assert out["established_ms"] == ms(established)
        if version == 2:
            assert out["created_ms"] is None
        else:
            assert out["created_ms"] == ms(NOW)
            assert out["identity_scope"] == scope.name
            assert out["identity_type"] == identity_type

        # The same token, once expired, is reported as such.
        late = bridge(op="decode_token", token=token, keys=rust_keys(), now_ms=ms(expires) + 1)
        assert late == {"error": f"Expired {{ expires_ms: {ms(expires)} }}"}
        # Without the site key it cannot be read.
        only_master = bridge(op="decode_token", token=token, keys=rust_keys()[:1], now_ms=ms(NOW))
        assert only_master == {"error": "UnknownSiteKey(165)"}


def mint_in_rust(bridge, raw_uid, version=4, scope="UID2", identity_type=0, privacy_bits=1,
                 expires=None, created=None):
    created = created or NOW
    expires = expires or NOW + dt.timedelta(hours=1)
    return bridge(op="encode_token", version=version, keys=rust_keys(), master_key_id=164, site_key_id=165,
                  site_id=9000, raw_uid=raw_uid, identity_scope=scope, identity_type=identity_type,
                  expires_ms=ms(expires), created_ms=ms(created), established_ms=ms(created - dt.timedelta(days=1)),
                  privacy_bits=privacy_bits)["token"]


@pytest.mark.parametrize("version", [3, 4])
def test_rust_minted_tokens_decrypt_with_every_sdk_client(bridge, version):
    raw_uid = "ywsvDNINiZOVSsfkHpLpSJzXzhr6Jx9Z/4Q0+lsEUvM="
    token = mint_in_rust(bridge, raw_uid, version=version)
    assert token[:2] == ("A4" if version == 4 else "A3")

    bidstream = BidstreamClient("http://unused", "key", base64.b64encode(b"\0" * 32).decode())
    refreshed = bidstream._refresh_json(json.dumps(bridge(op="keys_response", kind="bidstream", keys=rust_keys())))
    assert refreshed.success, refreshed.reason
    result = bidstream._decrypt_token_into_raw_uid(token, "example.com", NOW)
    assert result.status == DecryptionStatus.SUCCESS
    assert result.uid == raw_uid
    assert result.site_id == 9000
    assert result.established == NOW - dt.timedelta(days=1)

    sharing = SharingClient("http://unused", "key", base64.b64encode(b"\0" * 32).decode())
    sharing_json = bridge(op="keys_response", kind="sharing", keys=rust_keys(), caller_site_id=9000,
                          default_keyset_id=99999)
    assert sharing._refresh_json(json.dumps(sharing_json)).success
    result = sharing._decrypt_token_into_raw_uid(token, NOW)
    assert result.status == DecryptionStatus.SUCCESS
    assert result.uid == raw_uid

    # The SDK's own sharing encryption with keys described by Rust decodes back in Rust.
    shared = sharing.encrypt_raw_uid_into_token(raw_uid)
    assert shared.success
    decoded = bridge(op="decode_token", token=shared.encrypted_data, keys=rust_keys(), now_ms=ms(NOW))
    assert decoded["raw_uid"] == raw_uid and decoded["site_id"] == 9000

    # The legacy free function with a key collection built by the SDK itself.
    keys = EncryptionKeysCollection([MASTER, SITE])
    legacy = decrypt_token(token, keys, None, ClientType.LEGACY_WITHOUT_DOMAIN_CHECK, NOW)
    assert legacy.uid == raw_uid


def test_rust_minted_euid_phone_token_and_lifetime_checks(bridge):
    raw_uid = "FEOGxroPLdcY7LrSiwjY52+X05V0ryELpJmoWAyXiwbZ"
    token = mint_in_rust(bridge, raw_uid, scope="EUID", identity_type=1)
    assert token.startswith("F4")
    bidstream = BidstreamClient("http://unused", "key", base64.b64encode(b"\0" * 32).decode())
    body = bridge(op="keys_response", kind="bidstream", keys=rust_keys(), identity_scope="EUID",
                  max_bidstream_lifetime_seconds=3600 + 10)
    bidstream._refresh_json(json.dumps(body))
    ok = bidstream._decrypt_token_into_raw_uid(token, None, NOW)
    assert ok.status == DecryptionStatus.SUCCESS and ok.uid == raw_uid

    # A token living longer than the advertised maximum is refused by the SDK.
    long_lived = mint_in_rust(bridge, raw_uid, scope="EUID", identity_type=1, expires=NOW + dt.timedelta(days=5))
    assert bidstream._decrypt_token_into_raw_uid(long_lived, None, NOW).status == DecryptionStatus.INVALID_TOKEN_LIFETIME
    # An expired one is reported as expired.
    expired = mint_in_rust(bridge, raw_uid, scope="EUID", identity_type=1,
                           created=NOW - dt.timedelta(hours=2), expires=NOW - dt.timedelta(hours=1))
    assert bidstream._decrypt_token_into_raw_uid(expired, None, NOW).status == DecryptionStatus.EXPIRED_TOKEN


def test_sdk_request_envelopes_open_in_rust(bridge):
    secret = os.urandom(32)
    payload = json.dumps({"email_hash": "tMmiiTI7IaAcPpQPFQ65uMVCWH8av9jw4cwf/F5HVRQ="}).encode()
    envelope = create_envelope(secret, NOW, payload)
    out = bridge(op="open_request", secret=base64.b64encode(secret).decode(),
                 envelope=envelope.envelope.decode(), now_ms=ms(NOW))
    assert out["timestamp_ms"] == ms(NOW)
    assert base64.b64decode(out["nonce"]) == envelope.nonce
    assert json.loads(out["payload"]) == json.loads(payload)

    # Key requests carry no payload.
    empty = create_envelope(secret, NOW)
    assert bridge(op="open_request", secret=base64.b64encode(secret).decode(),
                  envelope=empty.envelope.decode(), now_ms=ms(NOW))["payload"] == ""

    # Wrong secret and a stale clock are refused.
    wrong = bridge(op="open_request", secret=base64.b64encode(os.urandom(32)).decode(),
                   envelope=envelope.envelope.decode(), now_ms=ms(NOW))
    assert wrong == {"error": "DecryptionFailed"}
    stale = bridge(op="open_request", secret=base64.b64encode(secret).decode(),
                   envelope=envelope.envelope.decode(), now_ms=ms(NOW) + 120_000)
    assert stale == {"error": "StaleTimestamp"}


def test_rust_sealed_responses_parse_in_the_sdk(bridge):
    secret = os.urandom(32)
    nonce = os.urandom(8)
    body = json.dumps({"status": "success", "body": {"x": 1}})
    sealed = bridge(op="seal_response", secret=base64.b64encode(secret).decode(),
                    nonce=base64.b64encode(nonce).decode(), json=body, now_ms=ms(NOW))["response"]
    assert json.loads(parse_response(secret, Uid2Response.from_string(sealed), nonce)) == json.loads(body)
    # The binary form (what the v3 identity map client receives).
    raw = base64.b64decode(sealed)
    assert json.loads(parse_response(secret, Uid2Response.from_bytes(raw), nonce)) == json.loads(body)
    with pytest.raises(ValueError):
        parse_response(secret, Uid2Response.from_string(sealed), os.urandom(8))

    # Refresh responses: GCM under refresh_response_key, no timestamp and no nonce.
    key = os.urandom(32)
    sealed = bridge(op="seal_refresh_response", key=base64.b64encode(key).decode(), json=body)["response"]
    assert json.loads(_decrypt_gcm(base64.b64decode(sealed), key)) == json.loads(body)
