#!/usr/bin/env bash
# Measures what issue 3 asks of `uid2 serve` with 1,048,576 salt buckets (release build):
# the time from launch to the first successful /ops/healthcheck, and the idle resident memory
# (VmRSS from /proc/PID/status) a few seconds after that, on a fresh store (which serve first
# initialises) and again on the existing store. Linux only (/proc).
#
#   scripts/measure-startup.sh            # BUCKETS=... to change the salt bucket count
set -euo pipefail
cd "$(dirname "$0")/.."
BUCKETS=${BUCKETS:-1048576}
IDLE_SECONDS=${IDLE_SECONDS:-3}

cargo build --release --quiet -p uid2
UID2=${CARGO_TARGET_DIR:-target}/release/uid2
work=$(mktemp -d)
trap '[ -z "$pid" ] || kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
pid=

now_ms() { date +%s%3N; }

# Starts serve on the store and sets READY (ms from launch to the first healthcheck answered),
# RSS (idle VmRSS, kB) and HWM (peak VmHWM, kB). Polls sleep 10 ms so they take no CPU from
# the starting operator on a small machine.
measure() {
  local out="$work/serve.out" started url
  : >"$out"
  started=$(now_ms)
  "$UID2" --store "sqlite://$work/uid2.db" --salt-buckets "$BUCKETS" \
    serve --listen 127.0.0.1:0 >"$out" 2>"$work/serve.err" &
  pid=$!
  url=
  while [ -z "$url" ]; do
    kill -0 "$pid" 2>/dev/null || { cat "$work/serve.err" >&2; exit 1; }
    url=$(sed -n 's/^uid2 operator listening on //p' "$out")
    [ -n "$url" ] || sleep 0.01
  done
  until curl -fsS "$url/ops/healthcheck" >/dev/null 2>&1; do sleep 0.01; done
  READY=$(( $(now_ms) - started ))
  sleep "$IDLE_SECONDS"
  RSS=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
  HWM=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status")
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=
}

report() {
  awk -v label="$1" -v ready="$READY" -v rss="$RSS" -v hwm="$HWM" 'BEGIN {
    printf "%-28s cold start to first healthcheck %6d ms   idle RSS %6.1f MB   peak RSS %6.1f MB\n",
      label, ready, rss / 1024, hwm / 1024 }'
}

echo "uid2 serve, $BUCKETS salt buckets, release build, idle after ${IDLE_SECONDS} s"
measure
report "fresh store (initialised):"
measure
report "existing store:"
