#!/usr/bin/env python3
"""Times the official Python SDK's `BidstreamClient` decryption of a v4 token, for scale next to
the Rust SDK's `cargo bench -p uid2-client --bench decrypt` (`client/decrypt_v4_1_thread`).

Same shape of work: warm keys (a master key, the token's site key and 50 other sites' keys), a v4
token with a 33-byte raw UID minted by the SDK's own `UID2TokenGenerator`, one decryption per call.

    .venv/bin/python scripts/python-decrypt-bench.py [iterations]
"""

import base64
import datetime as dt
import json
import os
import statistics
import sys
import time

from uid2_client import BidstreamClient, DecryptionStatus, EncryptionKey, UID2TokenGenerator
from uid2_client.uid2_token_generator import Params

UTC = dt.timezone.utc


def main():
    iterations = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    now = dt.datetime.now(tz=UTC)
    past, far = now - dt.timedelta(days=1), now + dt.timedelta(days=1)
    master = EncryptionKey(1, -1, past, past, far, os.urandom(32))
    site = EncryptionKey(2, 1001, past, past, far, os.urandom(32))
    others = [EncryptionKey(100 + i, 2000 + i, past, past, far, os.urandom(32)) for i in range(50)]
    keys = [{"id": k.key_id, "created": int(past.timestamp()), "activates": int(past.timestamp()),
             "expires": int(far.timestamp()), "secret": base64.b64encode(k.secret).decode()}
            for k in [master, site, *others]]
    body = {"max_bidstream_lifetime_seconds": 259210, "identity_scope": "UID2", "allow_clock_skew_seconds": 1800,
            "keys": keys, "site_data": [{"id": 1001, "domain_names": ["example.com"]}]}
    client = BidstreamClient("http://unused", "key", base64.b64encode(b"\0" * 32).decode())
    assert client._refresh_json(json.dumps({"body": body})).success

    raw_uid = base64.b64encode(b"\0" * 33).decode()
    token = UID2TokenGenerator.generate_uid2_token_v4(raw_uid, master, 1001, site,
                                                      Params(expiry=now + dt.timedelta(days=2), token_generated=now))
    assert client.decrypt_token_into_raw_uid(token, None).status == DecryptionStatus.SUCCESS

    decrypt = client.decrypt_token_into_raw_uid
    rounds = []
    for _ in range(5):
        start = time.perf_counter_ns()
        for _ in range(iterations):
            decrypt(token, None)
        rounds.append((time.perf_counter_ns() - start) / iterations)
    print(f"python uid2-client BidstreamClient.decrypt_token_into_raw_uid (v4): "
          f"median {statistics.median(rounds):,.0f} ns/op, best {min(rounds):,.0f} ns/op "
          f"({iterations:,} decryptions x 5 rounds, single thread)")


if __name__ == "__main__":
    main()
