#!/usr/bin/env python3
"""Prints criterion results as ratios to the primitives measured in the same run.

Reads target/criterion/<group>/<bench>/new/estimates.json (median). Run after
`cargo bench -p uid2-proto --bench proto` (and the client bench, when present).
"""

import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
CRITERION = ROOT / "target" / "criterion"

# operation -> the primitives it is built from (their medians are summed)
RATIOS = {
    "operation/token_encode_v4": ["primitive/gcm_seal_site_layer", "primitive/gcm_seal_master_layer"],
    "operation/token_decode_v4": ["primitive/gcm_open_site_layer", "primitive/gcm_open_master_layer"],
    "operation/envelope_open_and_seal": ["primitive/gcm_open_request", "primitive/gcm_seal_response"],
    "operation/email_normalise_and_hash": ["primitive/sha256_email"],
    "operation/raw_uid_derivation": ["primitive/sha256_88", "primitive/sha256_88"],
    "client/decrypt_v4_1_thread": ["client_primitive/gcm_open_token_size"],
    "client/decrypt_v4_2_threads": ["client_primitive/gcm_open_token_size"],
}


def median_ns(name):
    path = CRITERION / name / "new" / "estimates.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())["median"]["point_estimate"]


def main():
    rows = []
    for op, prims in RATIOS.items():
        op_ns = median_ns(op)
        prim_ns = [median_ns(p) for p in prims]
        if op_ns is None or None in prim_ns:
            continue
        base = sum(prim_ns)
        rows.append((op, op_ns, " + ".join(p.split("/")[1] for p in prims), base, op_ns / base))
    if not rows:
        sys.exit("no criterion results found; run cargo bench first")
    print(f"{'operation':40} {'ns':>9}  {'baseline (same run)':52} {'ns':>9}  ratio")
    for op, op_ns, prims, base, ratio in rows:
        print(f"{op:40} {op_ns:9.1f}  {prims:52} {base:9.1f}  {ratio:5.2f}x")


if __name__ == "__main__":
    main()
