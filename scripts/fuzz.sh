#!/usr/bin/env bash
# Runs every fuzz target of the protocol decoders for RUNS executions each (default 1,000,000)
# and prints the execution counts. Not part of CI (it takes minutes per target).
# Needs cargo-fuzz (`cargo install cargo-fuzz`); on a stable toolchain RUSTC_BOOTSTRAP=1 lets it
# use the sanitizer flags it needs.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
RUNS=${RUNS:-1000000}
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
for target in advertising_token refresh_token envelope cstg_request tcf_consent; do
  mkdir -p "corpus/$target"
  log=$(mktemp)
  cargo fuzz run "$target" "corpus/$target" -- -runs="$RUNS" -max_len=4096 2>&1 | tee "$log" | grep -E "^(#[0-9]+[[:space:]]+DONE|==[0-9]+== ERROR|SUMMARY)" || true
  if grep -q "ERROR" "$log"; then echo "$target: FAILED"; exit 1; fi
  done_line=$(grep -E "^#[0-9]+[[:space:]]+DONE" "$log" | tail -1 || true)
  [ -n "$done_line" ] || { echo "$target: did not finish"; exit 1; }
  echo "$target: $(echo "$done_line" | awk '{print substr($1, 2)}') executions, clean"
  rm -f "$log"
done
