#!/usr/bin/env bash
# Runs every fuzz target (the protocol decoders and what the SDK reads from an operator) for RUNS executions each (default 1,000,000)
# and prints the execution counts. Not part of CI (it takes minutes per target).
# Needs cargo-fuzz (`cargo install cargo-fuzz`); on a stable toolchain RUSTC_BOOTSTRAP=1 lets it
# use the sanitizer flags it needs.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
RUNS=${RUNS:-1000000}
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# A key answer holding the keys the client_answers target mints its token with.
mkdir -p corpus/client_answers
printf '\000{"body":{"identity_scope":"UID2","caller_site_id":9000,"master_keyset_id":9999999,"default_keyset_id":99999,"token_expiry_seconds":"2592000","max_bidstream_lifetime_seconds":3700,"allow_clock_skew_seconds":1800,"keys":[{"id":1,"keyset_id":9999999,"created":0,"activates":0,"expires":4000000000,"secret":"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="},{"id":2,"site_id":9000,"keyset_id":99999,"created":0,"activates":0,"expires":4000000000,"secret":"AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="}],"site_data":[{"id":9000,"domain_names":["example.com"]}]}}' > corpus/client_answers/seed-keys
for target in advertising_token refresh_token envelope cstg_request tcf_consent client_answers; do
  mkdir -p "corpus/$target"
  log=$(mktemp)
  cargo fuzz run "$target" "corpus/$target" -- -runs="$RUNS" -max_len=4096 2>&1 | tee "$log" | grep -E "^(#[0-9]+[[:space:]]+DONE|==[0-9]+== ERROR|SUMMARY)" || true
  if grep -q "ERROR" "$log"; then echo "$target: FAILED"; exit 1; fi
  done_line=$(grep -E "^#[0-9]+[[:space:]]+DONE" "$log" | tail -1 || true)
  [ -n "$done_line" ] || { echo "$target: did not finish"; exit 1; }
  echo "$target: $(echo "$done_line" | awk '{print substr($1, 2)}') executions, clean"
  rm -f "$log"
done
